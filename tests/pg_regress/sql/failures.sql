-- A propagation that fails (here: a CHECK constraint on the target) fails the writing statement
-- like a foreign key would, with an error that names the rule and the target and keeps the
-- cause's SQLSTATE; nothing of the statement is applied. (Isolated and queued failure modes,
-- which let the write commit and log the failure, are issue 4's.)
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA f;
CREATE TABLE f.users (id int PRIMARY KEY, phone text);
CREATE TABLE f.pets (id int PRIMARY KEY, owner_id int, contact_phone text
                     CONSTRAINT phone_digits CHECK (contact_phone ~ '^[0-9]+$'));
INSERT INTO f.users VALUES (1, '111'), (2, '222');
INSERT INTO f.pets VALUES (10, 1, '111'), (20, 2, '222');
SELECT * FROM data_sync.add_rule('phone', 'f.users', 'f.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');

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
ROLLBACK;
