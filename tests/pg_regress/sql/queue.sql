-- The queue: failed propagations retried with exponential backoff until they succeed or are
-- marked dead; retry_failed / clear_failed; async rules (queued, coalesced); monitoring.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA q;
CREATE TABLE q.users (id int PRIMARY KEY, phone text);
CREATE TABLE q.pets (id int PRIMARY KEY, owner_id int, contact_phone text
                     CONSTRAINT phone_digits CHECK (contact_phone ~ '^[0-9]+$'));
INSERT INTO q.users VALUES (1, '111'), (2, '222'), (3, '333');
INSERT INTO q.pets VALUES (10, 1, '111'), (20, 2, '222'), (30, 3, '333');
SELECT * FROM data_sync.add_rule('phone', 'q.users', 'q.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
-- due items by hand: "time passes"
CREATE FUNCTION pg_temp.time_passes() RETURNS void LANGUAGE sql
    AS $$ UPDATE data_sync.queue SET next_attempt_at = clock_timestamp() - interval '1 ms' $$;
-- seconds until the item's next attempt, rounded
CREATE FUNCTION pg_temp.wait_s() RETURNS TABLE (attempts int, status text, wait_s numeric) LANGUAGE sql
    AS $$ SELECT attempts, status, round(extract(epoch FROM next_attempt_at - clock_timestamp()))
          FROM data_sync.queue ORDER BY id $$;

SHOW data_sync.max_retries;
SHOW data_sync.retry_delay;
SHOW data_sync.retry_delay_max;

-- 1. A failure waits 1 s, then 2 s, then 4 s; after the third retry it is dead.
UPDATE q.users SET phone = 'x1' WHERE id = 1;
SELECT * FROM pg_temp.wait_s();
-- not due yet: nothing to do
SELECT * FROM data_sync.process_queue();
SELECT pg_temp.time_passes();
SELECT * FROM data_sync.process_queue();
SELECT * FROM pg_temp.wait_s();
SELECT pg_temp.time_passes();
SELECT * FROM data_sync.process_queue();
SELECT * FROM pg_temp.wait_s();
SELECT pg_temp.time_passes();
SELECT * FROM data_sync.process_queue();
SELECT * FROM pg_temp.wait_s();
-- dead items are not retried any more
SELECT pg_temp.time_passes();
SELECT * FROM data_sync.process_queue();
-- every attempt is logged, with its number
SELECT rule_name, operation, source_key, status, sqlstate, attempt FROM data_sync.sync_log ORDER BY id;

-- 2. The cause is fixed; retry_failed gives the dead item a fresh start and applies it now.
ALTER TABLE q.pets DROP CONSTRAINT phone_digits;
SELECT * FROM data_sync.retry_failed('phone');
SELECT * FROM q.pets ORDER BY id;
SELECT count(*) AS queued FROM data_sync.queue;
SELECT status, attempt, rows_changed FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;

-- 3. Items of one rule are applied together: each key once, with the source's current value.
ALTER TABLE q.pets ADD CONSTRAINT phone_digits CHECK (contact_phone ~ '^[0-9]+$') NOT VALID;
UPDATE q.users SET phone = 'a' WHERE id = 1;
UPDATE q.users SET phone = 'b' WHERE id = 1;
UPDATE q.users SET phone = 'c' WHERE id IN (1, 2);
SELECT keys, attempts FROM data_sync.queue ORDER BY id;
ALTER TABLE q.pets DROP CONSTRAINT phone_digits;
SELECT pg_temp.time_passes();
SELECT * FROM data_sync.process_queue();
SELECT * FROM q.pets ORDER BY id;
SELECT source_key, source_rows, rows_changed, status, attempt FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;

-- 4. One bad item does not hold back the others: a failing group is retried item by item.
ALTER TABLE q.pets ADD CONSTRAINT not_zzz CHECK (contact_phone <> 'zzz');
ALTER TABLE q.pets ADD CONSTRAINT no_yyy CHECK (contact_phone <> 'yyy');
UPDATE q.users SET phone = 'zzz' WHERE id = 1;
UPDATE q.users SET phone = 'yyy' WHERE id = 3;
UPDATE q.users SET phone = 'ok' WHERE id = 2;   -- succeeds at once
ALTER TABLE q.pets DROP CONSTRAINT no_yyy;      -- user 3's item can now succeed, user 1's cannot
SELECT pg_temp.time_passes();
SELECT * FROM data_sync.process_queue();
SELECT keys, attempts, status, last_error FROM data_sync.queue ORDER BY id;
SELECT * FROM q.pets ORDER BY id;

-- 5. clear_failed forgets dead items (pending ones only when asked).
SELECT data_sync.clear_failed();
SELECT data_sync.clear_failed('phone', pending => true);
SELECT count(*) AS queued FROM data_sync.queue;
ALTER TABLE q.pets DROP CONSTRAINT not_zzz;
-- what the cleared item owed is restored by a re-sync
SELECT data_sync.sync_all('phone');
SELECT * FROM q.pets ORDER BY id;

-- 6. Items of a disabled rule wait without using up attempts.
ALTER TABLE q.pets ADD CONSTRAINT phone_digits CHECK (contact_phone ~ '^[0-9]+$') NOT VALID;
UPDATE q.users SET phone = 'nope' WHERE id = 2;
SELECT * FROM data_sync.disable_rule('phone');
SELECT pg_temp.time_passes();
SELECT * FROM data_sync.process_queue();
SELECT attempts, status, last_error FROM data_sync.queue;
SELECT * FROM data_sync.enable_rule('phone');
-- enabled again, the parked item is due at once (not after the longest backoff), and is tried
SELECT next_attempt_at <= clock_timestamp() AS due FROM data_sync.queue;
SELECT * FROM data_sync.process_queue();
SELECT attempts, status FROM data_sync.queue;
SELECT data_sync.clear_failed(pending => true);
UPDATE q.users SET phone = '2000' WHERE id = 2;

-- 7. Async: writes only queue their keys; the processor applies them after commit (here: in the
-- same transaction), repeated changes of one row coalesced into one change of the target.
CREATE TABLE q.target_writes (pet_id int, contact_phone text);
CREATE FUNCTION q.count_writes() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN INSERT INTO q.target_writes VALUES (NEW.id, NEW.contact_phone); RETURN NULL; END $$;
CREATE TRIGGER count_writes AFTER UPDATE ON q.pets FOR EACH ROW EXECUTE FUNCTION q.count_writes();
UPDATE q.users SET phone = '1000' WHERE id = 1;  -- isolated: applied at once
SET data_sync.failure_mode = async;
SHOW data_sync.failure_mode;
TRUNCATE data_sync.sync_log;
UPDATE q.users SET phone = '1001' WHERE id = 1;
UPDATE q.users SET phone = '1002' WHERE id = 1;
UPDATE q.users SET phone = '1003' WHERE id = 1;
SELECT keys, attempts, sqlstate FROM data_sync.queue ORDER BY id;
SELECT * FROM q.pets WHERE owner_id = 1;
SELECT * FROM data_sync.process_queue();
SELECT * FROM q.pets WHERE owner_id = 1;
SELECT * FROM q.target_writes ORDER BY pet_id, contact_phone;
SELECT rule_name, operation, source_key, source_rows, rows_changed, status, attempt FROM data_sync.sync_log;
RESET data_sync.failure_mode;
-- the rule's own mode overrides the setting
SELECT * FROM data_sync.drop_rule('phone');
SELECT * FROM data_sync.add_rule('phone', 'q.users', 'q.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}',
                                 options => '{"mode": "async"}');
SELECT name, mode FROM data_sync.rules;
UPDATE q.users SET phone = '1004' WHERE id = 1;
SELECT count(*) AS queued FROM data_sync.queue;
SELECT * FROM data_sync.process_queue();
SELECT * FROM q.pets WHERE owner_id = 1;
-- a re-sync of an async rule runs at once
UPDATE q.pets SET contact_phone = '0' WHERE id = 10;
SELECT data_sync.sync_all('phone');
SELECT * FROM q.pets WHERE owner_id = 1;
-- a failing async item is retried like a failed isolated one
UPDATE q.users SET phone = 'bad' WHERE id = 1;
SELECT * FROM data_sync.process_queue();
SELECT * FROM pg_temp.wait_s();
SELECT * FROM data_sync.add_rule('phone2', 'q.users', 'q.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}',
                                 options => '{"mode": "sideways"}');
ROLLBACK;

-- 8. Monitoring.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA q;
CREATE TABLE q.users (id int PRIMARY KEY, phone text);
CREATE TABLE q.pets (id int PRIMARY KEY, owner_id int, contact_phone text
                     CONSTRAINT phone_digits CHECK (contact_phone ~ '^[0-9]+$'));
INSERT INTO q.users SELECT g, '1' FROM generate_series(1, 10) g;
INSERT INTO q.pets SELECT 10 * g, g, '1' FROM generate_series(1, 10) g;
SELECT * FROM data_sync.add_rule('phone', 'q.users', 'q.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
SELECT * FROM data_sync.health();
UPDATE q.users SET phone = '2' WHERE id <= 3;
UPDATE q.users SET phone = '3' WHERE id = 4;
UPDATE q.users SET phone = 'x' WHERE id = 5;
SELECT rule_name, enabled, mode, pending, in_progress, dead, failures,
       last_success IS NOT NULL AS succeeded, last_failure IS NOT NULL AS failed, last_error
FROM data_sync.status();
SELECT healthy, propagations, failures, failure_rate, pending, dead, message,
       recent_failures -> 0 ->> 'error' AS last_error
FROM data_sync.health();
SELECT healthy, message FROM data_sync.health(max_failure_rate => 0.5);
SELECT * FROM data_sync.failure_stats();
SELECT * FROM data_sync.failure_stats(interval '1 hour');
SELECT source_key, status FROM data_sync.history();
SELECT source_key, status FROM data_sync.history(1, 'phone');
SELECT count(*) FROM data_sync.history(rule_name => 'no such rule');
-- purge_log keeps what is younger than the given age (the log's oldest rows: ids grow with time)
UPDATE data_sync.sync_log SET logged_at = logged_at - interval '2 days'
WHERE id <= (SELECT id FROM data_sync.sync_log WHERE source_key = '4');
SELECT data_sync.purge_log(interval '1 day');
SELECT source_key, status FROM data_sync.history();
-- a dropped rule's queue items go with it
SELECT * FROM data_sync.drop_rule('phone');
SELECT count(*) AS queued FROM data_sync.queue;
SELECT * FROM data_sync.status();
ROLLBACK;

-- 9. One subtransaction per rule per statement, never one per row: a 10,000-row UPDATE whose
-- propagation fails uses a handful of transaction ids (each subtransaction that writes takes
-- one), not 10,000. (PostgreSQL 15 has no pg_stat_get_backend_subxact().)
CREATE EXTENSION data_sync;
CREATE SCHEMA q;
CREATE TABLE q.users (id int PRIMARY KEY, phone text);
CREATE TABLE q.pets (id int PRIMARY KEY, owner_id int, contact_phone text
                     CONSTRAINT phone_digits CHECK (contact_phone ~ '^[0-9]+$'));
INSERT INTO q.users SELECT g, '1' FROM generate_series(1, 10000) g;
INSERT INTO q.pets SELECT g, g, '1' FROM generate_series(1, 10000) g;
SELECT count(*) FROM data_sync.add_rule('phone', 'q.users', 'q.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
SELECT pg_current_xact_id()::text::bigint AS before \gset
UPDATE q.users SET phone = 'x' || id;
SELECT pg_current_xact_id()::text::bigint - :before AS xids_used;
SELECT source_rows, status FROM data_sync.sync_log;
SELECT jsonb_array_length(keys) AS keys FROM data_sync.queue;
DROP SCHEMA q CASCADE;
DROP EXTENSION data_sync;
