-- A propagation that fails (here: a CHECK constraint on the target).
-- strict: the writing statement fails like a foreign key would, with an error that names the rule
-- and the target and keeps the cause's SQLSTATE; nothing of the statement is applied.
-- isolated (the default): the propagation alone is rolled back, logged as failed and queued; the
-- write commits.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA f;
CREATE TABLE f.users (id int PRIMARY KEY, phone text);
CREATE TABLE f.pets (id int PRIMARY KEY, owner_id int, contact_phone text
                     CONSTRAINT phone_digits CHECK (contact_phone ~ '^[0-9]+$'));
INSERT INTO f.users VALUES (1, '111'), (2, '222');
INSERT INTO f.pets VALUES (10, 1, '111'), (20, 2, '222');
SELECT * FROM data_sync.add_rule('phone', 'f.users', 'f.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');

SET data_sync.failure_mode = strict;
\set VERBOSITY default
SAVEPOINT s;
UPDATE f.users SET phone = 'not a number' WHERE id = 1;
ROLLBACK TO SAVEPOINT s;
-- a filled row is checked like any row: the insert fails with the value the fill gave it
ALTER TABLE f.pets DROP CONSTRAINT phone_digits;
UPDATE f.users SET phone = 'x' WHERE id = 2;
ALTER TABLE f.pets ADD CONSTRAINT phone_digits CHECK (contact_phone ~ '^[0-9]+$') NOT VALID;
SAVEPOINT s;
INSERT INTO f.pets VALUES (21, 2, NULL);
ROLLBACK TO SAVEPOINT s;
\set VERBOSITY terse
-- nothing of the failed statements was applied
SELECT * FROM f.users ORDER BY id;
SELECT * FROM f.pets ORDER BY id;
SELECT rule_name, operation, source_key, rows_changed, status FROM data_sync.sync_log ORDER BY id;

-- isolated: the user's write commits, the target keeps its value, the failure is logged and queued
RESET data_sync.failure_mode;
SHOW data_sync.failure_mode;
UPDATE f.pets SET contact_phone = '222' WHERE id = 20;
UPDATE f.users SET phone = '222' WHERE id = 2;
TRUNCATE data_sync.sync_log;
UPDATE f.users SET phone = 'not a number' WHERE id = 1;
SELECT * FROM f.users ORDER BY id;
SELECT * FROM f.pets ORDER BY id;
SELECT rule_name, operation, source_key, source_rows, rows_changed, status, sqlstate, error_message
FROM data_sync.sync_log ORDER BY id;
SELECT rule_name, reverse, operation, keys, status, attempts, sqlstate FROM data_sync.queue ORDER BY id;
-- a multi-row statement: one subtransaction, one log row and one queue item for the rule
UPDATE f.users SET phone = 'x' || id;
SELECT rule_name, source_rows, status FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;
SELECT keys FROM data_sync.queue ORDER BY id DESC LIMIT 1;

-- A statement that fails after data_sync noted its row (a later trigger raises) and is rolled
-- back to a savepoint leaves nothing behind that a later statement could propagate: the noted
-- row's values were never committed.
ALTER TABLE f.pets DROP CONSTRAINT phone_digits;
UPDATE f.users SET phone = '111' WHERE id = 1;
CREATE FUNCTION f.boom() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN IF NEW.phone = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NULL; END $$;
CREATE TRIGGER zz_boom AFTER UPDATE ON f.users FOR EACH ROW EXECUTE FUNCTION f.boom();
SAVEPOINT s;
UPDATE f.users SET phone = 'boom' WHERE id = 1;
ROLLBACK TO SAVEPOINT s;
UPDATE f.users SET phone = phone WHERE false;
UPDATE f.users SET phone = '112' WHERE id = 2;
SELECT u.id, u.phone, p.contact_phone FROM f.users u JOIN f.pets p ON p.owner_id = u.id ORDER BY u.id;

-- Log rows are written straight into the log's own two indexes (the failures index only for
-- rows that are not 'ok'); read back through each index, they are all there. An index a DBA
-- adds to the log is kept up to date too (the rows then take the executor's way).
SET LOCAL enable_seqscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT count(*) AS by_id FROM data_sync.sync_log WHERE id > 0;
SELECT count(*) AS failures_by_index FROM data_sync.sync_log WHERE status <> 'ok' AND logged_at > '-infinity';
CREATE INDEX sync_log_rule_idx ON data_sync.sync_log (rule_name);
UPDATE f.users SET phone = '113' WHERE id = 2;
SELECT count(*) AS by_rule_index FROM data_sync.sync_log WHERE rule_name = 'phone';
SELECT count(*) AS by_id FROM data_sync.sync_log WHERE id > 0;
RESET enable_bitmapscan;
RESET enable_seqscan;
SELECT count(*) AS all_rows, count(*) FILTER (WHERE status <> 'ok') AS failures FROM data_sync.sync_log;
ROLLBACK;
