-- Schema changes: a rule whose table or column is dropped, renamed or retyped is disabled (its
-- triggers dropped) with a WARNING and a log row, writes keep working, other rules are untouched,
-- and loading the corrected rule enables it again.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA d;
CREATE TABLE d.users (id int PRIMARY KEY, phone text, email text);
CREATE TABLE d.lost_pets (id int PRIMARY KEY, owner_id int, contact_phone text);
CREATE TABLE d.vets (id int PRIMARY KEY, user_id int, email text);
INSERT INTO d.users VALUES (1, '111', 'a@x');
INSERT INTO d.lost_pets VALUES (10, 1, '111');
INSERT INTO d.vets VALUES (100, 1, 'a@x');
CREATE FUNCTION pg_temp.rules_toml(phone_column text) RETURNS text LANGUAGE sql AS $$
SELECT format($toml$
[[rule]]
name = "phone"
source = "d.users"
target = "d.lost_pets"
match = { owner_id = "id" }
set = { %s = "phone" }

[[rule]]
name = "email"
source = "d.users"
target = "d.vets"
match = { user_id = "id" }
set = { email = "email" }
$toml$, phone_column) $$;
SELECT * FROM data_sync.load_rules(pg_temp.rules_toml('contact_phone'));
CREATE VIEW pg_temp.state AS
    SELECT r.name, r.enabled, r.disabled_reason,
           (SELECT count(*) FROM pg_trigger t WHERE t.tgname LIKE 'data_sync_' || r.name || '_%') AS triggers
    FROM data_sync.rules r ORDER BY r.name;
SELECT * FROM pg_temp.state;

-- a change that breaks nothing disables nothing
ALTER TABLE d.lost_pets ADD COLUMN notes text;
SELECT * FROM pg_temp.state;

-- 1. A copied column is renamed: the rule is disabled and says why.
ALTER TABLE d.lost_pets RENAME COLUMN contact_phone TO phone_number;
SELECT * FROM pg_temp.state;
SELECT rule_name, operation, source_table, target_table, status, error_message FROM data_sync.sync_log;
-- writes keep working; the other rule still propagates
UPDATE d.users SET phone = '222', email = 'b@x' WHERE id = 1;
INSERT INTO d.lost_pets (id, owner_id) VALUES (11, 1);
SELECT * FROM d.lost_pets ORDER BY id;
SELECT * FROM d.vets;
-- other rules can still be changed while the broken one is installed
SELECT * FROM data_sync.disable_rule('email');
SELECT * FROM data_sync.enable_rule('email');
-- enabling it as it is fails, and says why
SAVEPOINT s;
SELECT * FROM data_sync.enable_rule('phone');
ROLLBACK TO SAVEPOINT s;
-- 2. Loading the corrected rules enables it again.
SELECT * FROM data_sync.load_rules(pg_temp.rules_toml('phone_number'));
SELECT * FROM pg_temp.state;
SELECT data_sync.sync_all('phone');
UPDATE d.users SET phone = '333' WHERE id = 1;
SELECT id, owner_id, phone_number FROM d.lost_pets ORDER BY id;

-- 3. A type change that no longer fits.
ALTER TABLE d.lost_pets ALTER COLUMN phone_number TYPE int USING NULL;
SELECT * FROM pg_temp.state;
ALTER TABLE d.lost_pets ALTER COLUMN phone_number TYPE text;
SELECT * FROM data_sync.load_rules(pg_temp.rules_toml('phone_number'));

-- 4. The source table is renamed; then the target table is dropped.
ALTER TABLE d.users RENAME TO customers;
SELECT * FROM pg_temp.state;
UPDATE d.customers SET phone = '444', email = 'c@x';
ALTER TABLE d.customers RENAME TO users;
SELECT * FROM data_sync.load_rules(pg_temp.rules_toml('phone_number'));
SELECT * FROM pg_temp.state;
DROP TABLE d.lost_pets;
SELECT * FROM pg_temp.state;
UPDATE d.users SET phone = '555';
SELECT rule_name, status, error_message FROM data_sync.sync_log WHERE status = 'disabled' ORDER BY id;
-- a rule whose table is gone can be dropped
SELECT * FROM data_sync.drop_rule('phone');
SELECT * FROM pg_temp.state;
-- 5. Dropping a column used in a where predicate.
ALTER TABLE d.vets ADD COLUMN active boolean DEFAULT true;
SELECT * FROM data_sync.drop_rule('email');
SELECT * FROM data_sync.add_rule('email', 'd.users', 'd.vets', '{"user_id": "id"}', '{"email": "email"}', 'active');
ALTER TABLE d.vets DROP COLUMN active;
SELECT * FROM pg_temp.state;
UPDATE d.users SET email = 'd@x';
SELECT * FROM d.vets;
ROLLBACK;
