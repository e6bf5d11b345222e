-- Copy rules: what the triggers do on every kind of write.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA app;
CREATE TABLE app.users (id bigint PRIMARY KEY, email text UNIQUE, phone text, last_login timestamptz);
-- no foreign key on purpose: targets may point at a source row that does not exist (yet)
CREATE TABLE app.lost_pets (id bigint PRIMARY KEY, owner_id bigint, status text NOT NULL DEFAULT 'lost', contact_phone text);
INSERT INTO app.users VALUES (1, 'a@x', '111', NULL), (2, 'b@x', '222', NULL), (3, 'c@x', NULL, NULL);
INSERT INTO app.lost_pets VALUES (10, 1, 'lost', 'stale'), (11, 1, 'lost', '111'), (12, 2, 'lost', NULL), (13, 3, 'found', 'x');

SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "app.users"
key = "email"

[[rule]]
name = "phone"
source = "app.users"
target = "app.lost_pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);

-- The rule's triggers: source rows note keys, statements propagate, target rows are filled.
SELECT tgname, tgrelid::regclass FROM pg_trigger WHERE tgname LIKE 'data_sync_%' ORDER BY 1;

-- check() reports drift, sync_all() repairs it.
SELECT * FROM data_sync.check();
SELECT data_sync.sync_all();
SELECT * FROM data_sync.check();
SELECT * FROM app.lost_pets ORDER BY id;
CREATE TEMP TABLE seen AS SELECT id, xmin::text AS old_xmin FROM app.lost_pets;

-- 1. Source UPDATE of a copied column: every matching target row follows, one log row.
UPDATE app.users SET phone = '999' WHERE id = 1;
SELECT * FROM app.lost_pets ORDER BY id;
SELECT rule_name, operation, source_table, source_key, source_rows, target_table, rows_changed, status
FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;

-- 2. Rows already equal are not rewritten (IS DISTINCT FROM): only pets of user 2 change.
TRUNCATE seen; INSERT INTO seen SELECT id, xmin::text FROM app.lost_pets;
UPDATE app.lost_pets SET contact_phone = '333' WHERE id = 12;   -- a direct write, allowed
UPDATE app.users SET phone = '333' WHERE id = 2;                 -- same value already there
SELECT rows_changed FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;

-- 3. NULLs propagate.
UPDATE app.users SET phone = NULL WHERE id = 1;
SELECT id, contact_phone FROM app.lost_pets WHERE owner_id = 1 ORDER BY id;

-- 4. An UPDATE that changes no copied column does no target work and logs nothing.
SELECT count(*) AS log_rows_before FROM data_sync.sync_log \gset
TRUNCATE seen; INSERT INTO seen SELECT id, xmin::text FROM app.lost_pets;
UPDATE app.users SET last_login = now();
UPDATE app.users SET phone = phone;
SELECT count(*) - :log_rows_before AS new_log_rows FROM data_sync.sync_log;
SELECT count(*) AS target_rows_rewritten FROM app.lost_pets l JOIN seen s USING (id) WHERE l.xmin::text <> s.old_xmin;

-- 5. A multi-row UPDATE propagates in one statement: one log row with source_rows = 3.
UPDATE app.users SET phone = 'p' || id;
SELECT operation, source_key, source_rows, rows_changed FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;
SELECT * FROM app.lost_pets ORDER BY id;

-- 6. Target INSERT is filled from the source row; no source row: left as written.
INSERT INTO app.lost_pets VALUES (20, 2, 'lost', NULL), (21, 2, 'lost', 'typed by app'), (22, 99, 'lost', 'kept');
SELECT * FROM app.lost_pets WHERE id >= 20 ORDER BY id;
SELECT operation, source_rows, rows_changed FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;

-- 7. Re-parenting a target row (UPDATE of its match column) fills it from the new source, at
--    the end of the statement (RETURNING still shows the value the row had).
UPDATE app.lost_pets SET owner_id = 3 WHERE id = 20 RETURNING contact_phone AS returned;
SELECT * FROM app.lost_pets WHERE id = 20;
-- several rows in one statement, one of them to a source row that does not exist: left as is
UPDATE app.lost_pets SET owner_id = CASE id WHEN 20 THEN 1 WHEN 12 THEN 1 ELSE 98 END WHERE id IN (12, 20, 22);
SELECT * FROM app.lost_pets WHERE id IN (12, 20, 22) ORDER BY id;
SELECT operation, source_key, source_rows, rows_changed FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;
UPDATE app.lost_pets SET owner_id = CASE id WHEN 20 THEN 3 WHEN 12 THEN 2 ELSE 99 END WHERE id IN (12, 20, 22);
-- only the re-parented rows are re-filled: a value written by hand into another row of the new
-- owner stays (until sync_all*)
UPDATE app.lost_pets SET contact_phone = 'by hand' WHERE id = 12;
UPDATE app.lost_pets SET owner_id = 2 WHERE id = 20;
SELECT * FROM app.lost_pets WHERE owner_id = 2 ORDER BY id;
UPDATE app.lost_pets SET owner_id = 3 WHERE id = 20;
-- an UPDATE of the target that does not touch the match column leaves copies alone
UPDATE app.lost_pets SET status = 'found', contact_phone = 'manual' WHERE id = 21;
SELECT * FROM app.lost_pets WHERE id = 21;

-- 8. Source INSERT fills targets that already point at the new key.
INSERT INTO app.users VALUES (99, 'z@x', 'new-99', NULL);
SELECT * FROM app.lost_pets WHERE owner_id = 99;

-- 9. Source DELETE: targets keep their values.
DELETE FROM app.users WHERE id = 99;
SELECT * FROM app.lost_pets WHERE owner_id = 99;

-- 10. Direct writes to a copied column are allowed; sync_all_<entity>_data (created in the
--     entity table's schema) puts them back.
UPDATE app.lost_pets SET contact_phone = 'typo' WHERE id IN (10, 11);
SELECT * FROM data_sync.check('phone');
SELECT app.sync_all_user_data('a@x');
SELECT id, contact_phone FROM app.lost_pets WHERE owner_id = 1 ORDER BY id;
SELECT app.sync_all_user_data('nobody@x');

-- 11. A disabled rule keeps its catalog row but has no triggers; enabling restores them.
SELECT * FROM data_sync.disable_rule('phone');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname LIKE 'data_sync_phone_%';
UPDATE app.users SET phone = 'while-disabled' WHERE id = 2;
SELECT id, contact_phone FROM app.lost_pets WHERE owner_id = 2 ORDER BY id;
SELECT * FROM data_sync.enable_rule('phone');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname LIKE 'data_sync_phone_%';
SELECT data_sync.sync_all('phone');
SELECT id, contact_phone FROM app.lost_pets WHERE owner_id = 2 ORDER BY id;

-- 12. A `where` predicate restricts which target rows the rule maintains.
SELECT * FROM data_sync.drop_rule('phone');
SELECT * FROM data_sync.add_rule('open_cases_phone', 'app.users', 'app.lost_pets',
    '{"owner_id": "id"}', '{"contact_phone": "phone"}', $$status = 'lost'$$);
UPDATE app.users SET phone = 'only-open' WHERE id = 3;
SELECT id, status, contact_phone FROM app.lost_pets WHERE owner_id = 3 ORDER BY id;
INSERT INTO app.lost_pets VALUES (30, 3, 'found', NULL), (31, 3, 'lost', NULL);
SELECT id, status, contact_phone FROM app.lost_pets WHERE id IN (30, 31) ORDER BY id;
SELECT * FROM data_sync.check();

-- Every log row of this story.
SELECT rule_name, operation, source_key, source_rows, target_table, rows_changed, status, role_name
FROM data_sync.sync_log ORDER BY id;
ROLLBACK;

-- Rules installed by an earlier build have eight triggers, among them a BEFORE UPDATE fill on
-- the target: they still work, and re-loading the rules replaces them with the current five.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA old;
CREATE TABLE old.users (id bigint PRIMARY KEY, phone text);
CREATE TABLE old.pets (id bigint PRIMARY KEY, owner_id bigint, contact_phone text);
INSERT INTO old.users VALUES (1, '111'), (2, '222');
INSERT INTO old.pets VALUES (10, 1, '111');
SELECT count(*) FROM data_sync.add_rule('phone', 'old.users', 'old.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
-- what 0.2.0 installed
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT tgname, tgrelid::regclass AS tab FROM pg_trigger WHERE tgname LIKE 'data\_sync\_phone\_%' LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.tab);
    END LOOP;
END $$;
CREATE TRIGGER data_sync_phone_sur AFTER UPDATE OF id, phone ON old.users FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('phone');
CREATE TRIGGER data_sync_phone_sus AFTER UPDATE OF id, phone ON old.users FOR EACH STATEMENT EXECUTE FUNCTION data_sync.source_statement_trigger('phone');
CREATE TRIGGER data_sync_phone_sir AFTER INSERT ON old.users FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('phone');
CREATE TRIGGER data_sync_phone_sis AFTER INSERT ON old.users FOR EACH STATEMENT EXECUTE FUNCTION data_sync.source_statement_trigger('phone');
CREATE TRIGGER data_sync_phone_tfi BEFORE INSERT ON old.pets FOR EACH ROW EXECUTE FUNCTION data_sync.target_fill_trigger('phone');
CREATE TRIGGER data_sync_phone_tfu BEFORE UPDATE OF owner_id ON old.pets FOR EACH ROW EXECUTE FUNCTION data_sync.target_fill_trigger('phone');
CREATE TRIGGER data_sync_phone_tis AFTER INSERT ON old.pets FOR EACH STATEMENT EXECUTE FUNCTION data_sync.target_statement_trigger('phone');
CREATE TRIGGER data_sync_phone_tus AFTER UPDATE OF owner_id ON old.pets FOR EACH STATEMENT EXECUTE FUNCTION data_sync.target_statement_trigger('phone');
-- they work: propagation, insert fill, in-place re-parenting fill (RETURNING shows it)
UPDATE old.users SET phone = '112' WHERE id = 1;
INSERT INTO old.pets (id, owner_id) VALUES (11, 2);
UPDATE old.pets SET owner_id = 2 WHERE id = 10 RETURNING contact_phone AS returned;
SELECT * FROM old.pets ORDER BY id;
SELECT operation, source_key, source_rows, rows_changed FROM data_sync.sync_log ORDER BY id;
-- re-loading the unchanged rule installs the current triggers
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "old.users"
target = "old.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
SELECT tgname, tgrelid::regclass FROM pg_trigger WHERE tgname LIKE 'data\_sync\_phone\_%' ORDER BY 1;
UPDATE old.pets SET owner_id = 1 WHERE id = 10;
SELECT * FROM old.pets ORDER BY id;
SELECT * FROM data_sync.drop_rule('phone');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname LIKE 'data\_sync\_%';
ROLLBACK;

-- Partitioned tables: rows written through a partition fire the partition's (cloned) row
-- triggers but not the partitioned table's statement triggers, so they propagate row by row.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA part;
CREATE TABLE part.users (id bigint PRIMARY KEY, phone text) PARTITION BY RANGE (id);
CREATE TABLE part.users_1 PARTITION OF part.users FOR VALUES FROM (1) TO (100);
CREATE TABLE part.users_2 PARTITION OF part.users FOR VALUES FROM (100) TO (200);
CREATE TABLE part.pets (id bigint, owner_id bigint, contact_phone text, PRIMARY KEY (id, owner_id)) PARTITION BY LIST (owner_id);
CREATE TABLE part.pets_a PARTITION OF part.pets FOR VALUES IN (1, 101);
CREATE TABLE part.pets_b PARTITION OF part.pets FOR VALUES IN (2, 102);
INSERT INTO part.users VALUES (1, '1'), (2, '2'), (101, '101'), (102, '102');
SELECT count(*) FROM data_sync.add_rule('phone', 'part.users', 'part.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
INSERT INTO part.pets (id, owner_id) VALUES (10, 1), (11, 2), (12, 101);   -- filled
INSERT INTO part.pets_b (id, owner_id) VALUES (13, 102);                     -- through a partition
UPDATE part.users SET phone = phone || 'x';                                   -- the partitioned table
UPDATE part.users_2 SET phone = phone || 'y' WHERE id = 101;                  -- a partition
UPDATE part.pets SET owner_id = 101 WHERE id = 10;                            -- re-parented
UPDATE part.pets_b SET contact_phone = 'by hand' WHERE id = 13;
UPDATE part.pets_b SET owner_id = 2 WHERE id = 13;                            -- re-parented in a partition
SELECT p.tableoid::regclass, p.* FROM part.pets p ORDER BY id;
SELECT * FROM data_sync.check();
SELECT operation, source_key, source_rows, rows_changed FROM data_sync.sync_log ORDER BY id;
ROLLBACK;
