-- Multi-hop propagation (users -> vets -> records) within one statement, the max_depth guard,
-- users' own triggers on the same tables, and add_rule's options argument.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA c;
CREATE TABLE c.users (id int PRIMARY KEY, phone text);
CREATE TABLE c.vets (id int PRIMARY KEY, user_id int UNIQUE, phone text);
CREATE TABLE c.records (id int PRIMARY KEY, vet_id int, vet_phone text, touched int NOT NULL DEFAULT 0);
CREATE TABLE c.phone_history (id int GENERATED ALWAYS AS IDENTITY, user_id int, phone text);
CREATE TABLE c.audit (tbl text, op text, n int);
INSERT INTO c.users VALUES (1, '111'), (2, '222');
INSERT INTO c.vets VALUES (10, 1, '111'), (20, 2, '222');
INSERT INTO c.records VALUES (100, 10, '111'), (101, 10, '111'), (200, 20, '222');

SELECT * FROM data_sync.add_rule('user_to_vet', 'c.users', 'c.vets', '{"user_id": "id"}', '{"phone": "phone"}');
SELECT * FROM data_sync.add_rule('vet_to_record', 'c.vets', 'c.records', '{"vet_id": "id"}', '{"vet_phone": "phone"}');
-- options: an append rule through add_rule (no match columns)
SELECT * FROM data_sync.add_rule('phone_history', 'c.users', 'c.phone_history', NULL,
    '{"user_id": "id", "phone": "phone"}', NULL, '{"kind": "append"}');
SELECT name, kind, watch_columns, source_keys FROM data_sync.rules ORDER BY name;

-- Users' own triggers: a row trigger auditing vets updates, and a BEFORE trigger on records.
CREATE FUNCTION c.audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO c.audit VALUES (TG_TABLE_NAME, TG_OP, 1);
    RETURN NULL;
END $$;
CREATE FUNCTION c.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.touched := OLD.touched + 1;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_vets AFTER UPDATE ON c.vets FOR EACH ROW EXECUTE FUNCTION c.audit();
CREATE TRIGGER touch_records BEFORE UPDATE ON c.records FOR EACH ROW EXECUTE FUNCTION c.touch();

-- 1. One UPDATE of a user reaches the vet and the vet's records in the same statement; each
--    hop is one statement; users' triggers fire once per changed row, neither more nor less.
UPDATE c.users SET phone = '999' WHERE id = 1;
SELECT * FROM c.vets ORDER BY id;
SELECT * FROM c.records ORDER BY id;
SELECT * FROM c.phone_history ORDER BY id;
SELECT tbl, op, sum(n) FROM c.audit GROUP BY 1, 2;
SELECT rule_name, operation, source_table, source_key, target_table, rows_changed, status
FROM data_sync.sync_log ORDER BY id;

-- 2. A multi-row update: one statement per rule per hop.
TRUNCATE data_sync.sync_log;
UPDATE c.users SET phone = phone || '0';
SELECT * FROM c.records ORDER BY id;
SELECT rule_name, source_rows, rows_changed FROM data_sync.sync_log ORDER BY id;

-- 3. A chain deeper than data_sync.max_depth fails, naming the chain; in strict mode the
--    statement fails and nothing is applied; in isolated mode the propagation is logged as failed.
SET data_sync.max_depth = 1;
SET data_sync.failure_mode = strict;
SAVEPOINT s;
UPDATE c.users SET phone = '555' WHERE id = 2;
ROLLBACK TO SAVEPOINT s;
RESET data_sync.failure_mode;
SAVEPOINT s;
UPDATE c.users SET phone = '555' WHERE id = 2;
SELECT rule_name, status, sqlstate, error_message FROM data_sync.sync_log WHERE status <> 'ok';
SELECT rule_name, keys FROM data_sync.queue;
ROLLBACK TO SAVEPOINT s;
RESET data_sync.max_depth;
SELECT u.phone AS user_phone, v.phone AS vet_phone FROM c.users u JOIN c.vets v ON v.user_id = u.id WHERE u.id = 2;

-- 4. A direct write to a copied column is kept and counted as drift; the next change of the
--    source at the start of the chain puts the rule's value back.
UPDATE c.records SET vet_phone = 'typed by hand' WHERE id = 200;
SELECT * FROM data_sync.check() ORDER BY 1;
UPDATE c.users SET phone = '777' WHERE id = 2;
SELECT * FROM c.records WHERE id = 200;
SELECT * FROM data_sync.check() ORDER BY 1;
ROLLBACK;
