-- Security: rules are defined by the owner of both tables; propagation runs as the target's
-- owner, so a role that may only update the source still propagates and gains no access to the
-- target; a role that owns neither table can neither define nor remove rules on them.
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY terse
CREATE ROLE ds_regress_owner;
CREATE ROLE ds_regress_app;
CREATE ROLE ds_regress_other;
CREATE SCHEMA sec AUTHORIZATION ds_regress_owner;
CREATE SCHEMA oth AUTHORIZATION ds_regress_other;
-- Everybody may use schema data_sync and call its functions (they check rights themselves) and
-- read the rule definitions; nobody but the owner may write the catalog or read the sync log.
SELECT p.grantee::regrole, p.privilege_type
FROM pg_namespace n, aclexplode(n.nspacl) p
WHERE n.nspname = 'data_sync' AND p.grantee <> n.nspowner ORDER BY 1, 2;
SELECT c.relname, p.grantee::regrole, p.privilege_type
FROM pg_class c, aclexplode(c.relacl) p
WHERE c.relnamespace = 'data_sync'::regnamespace AND p.grantee <> c.relowner ORDER BY 1, 2, 3;
-- ...except the functions that act on the queue or the log as their owner: not for PUBLIC
SELECT p.oid::regprocedure
FROM pg_proc p
WHERE p.pronamespace = 'data_sync'::regnamespace
  AND NOT EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
ORDER BY 1::text;
GRANT USAGE ON SCHEMA sec TO ds_regress_app, ds_regress_other;

SET ROLE ds_regress_owner;
CREATE TABLE sec.users (id bigint PRIMARY KEY, phone text);
CREATE TABLE sec.pets (id bigint PRIMARY KEY, owner_id bigint, contact_phone text);
INSERT INTO sec.users VALUES (1, '111'), (2, '222');
INSERT INTO sec.pets VALUES (10, 1, '111'), (11, 1, '111'), (20, 2, '222');
GRANT SELECT, UPDATE ON sec.users TO ds_regress_app;

-- 1. The owner of both tables defines the rule.
SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "sec.users"
key = "id"

[[rule]]
name = "phone"
source = "sec.users"
target = "sec.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
RESET ROLE;
SELECT name, defined_by FROM data_sync.rules ORDER BY 1;
SELECT tgname, tgrelid::regclass FROM pg_trigger WHERE tgname LIKE 'data_sync_%' ORDER BY 1;

-- 2. The app role (SELECT, UPDATE on sec.users only) updates the source: it propagates.
SET ROLE ds_regress_app;
UPDATE sec.users SET phone = '999' WHERE id = 1;
SELECT current_user;
-- ...and the app role gained no access to the target or to data_sync's tables.
SAVEPOINT s;
SELECT * FROM sec.pets;
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
UPDATE sec.pets SET contact_phone = 'x';
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT count(*) FROM data_sync.sync_log;
ROLLBACK TO SAVEPOINT s;
-- It may read the rule definitions, and re-sync rules it could cause by writing the source...
SELECT name, source_table, target_table FROM data_sync.rules;
SELECT sec.sync_all_user_data(1), data_sync.sync_all('phone');
-- ...but not count drift in a table it cannot read.
SAVEPOINT s;
SELECT * FROM data_sync.check('phone');
ROLLBACK TO SAVEPOINT s;
RESET ROLE;
SELECT * FROM sec.pets ORDER BY id;
SELECT rule_name, operation, source_table, source_key, source_rows, target_table, rows_changed, status, role_name
FROM data_sync.sync_log ORDER BY id;

-- 3. A role that owns neither table cannot define rules on them...
SET ROLE ds_regress_other;
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "sec.users"
target = "sec.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }

[[rule]]
name = "steal"
source = "sec.users"
target = "sec.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
-- (the error must name the rule being added, not another installed rule)
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('steal', 'sec.users', 'sec.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
-- ...nor drop, disable or replace the owner's rule.
SAVEPOINT s;
SELECT * FROM data_sync.drop_rule('phone');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.disable_rule('phone');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.load_rules('');
ROLLBACK TO SAVEPOINT s;
-- ...nor change data_sync's catalog directly.
SAVEPOINT s;
DELETE FROM data_sync.rules;
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
INSERT INTO data_sync.rules (name, source_schema, source_table, target_schema, target_table,
                             target_keys, source_keys, target_columns, source_columns)
VALUES ('steal', 'sec', 'users', 'sec', 'pets', '{owner_id}', '{id}', '{contact_phone}', '{phone}');
ROLLBACK TO SAVEPOINT s;
-- ...nor re-sync or check rules over tables it may not write or read.
SAVEPOINT s;
SELECT data_sync.sync_all();
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.check();
ROLLBACK TO SAVEPOINT s;
RESET ROLE;
-- nothing changed, and the rule still propagates
SELECT name, defined_by, enabled FROM data_sync.rules ORDER BY 1;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname LIKE 'data_sync_phone_%';
SET ROLE ds_regress_app;
UPDATE sec.users SET phone = '888' WHERE id = 2;
RESET ROLE;
SELECT * FROM sec.pets ORDER BY id;

-- 4. The other role defines a rule on tables it owns, next to the owner's rule.
SET ROLE ds_regress_other;
CREATE TABLE oth.a (id bigint PRIMARY KEY, v text);
CREATE TABLE oth.b (id bigint PRIMARY KEY, a_id bigint, v text);
INSERT INTO oth.a VALUES (1, 'one');
INSERT INTO oth.b VALUES (100, 1, NULL);
SELECT * FROM data_sync.add_rule('mine', 'oth.a', 'oth.b', '{"a_id": "id"}', '{"v": "v"}');
UPDATE oth.a SET v = 'uno';
SELECT * FROM oth.b;
RESET ROLE;
SELECT name, defined_by FROM data_sync.rules ORDER BY 1;

-- 5. Propagation runs as the target's owner, so a rule whose target owner cannot read the
--    source is refused up front, even for a superuser, instead of failing on every write.
SET ROLE ds_regress_other;
CREATE TABLE oth.c (id bigint PRIMARY KEY, user_id bigint, phone text);
INSERT INTO oth.c VALUES (1, 1, NULL);
RESET ROLE;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('cross', 'sec.users', 'oth.c', '{"user_id": "id"}', '{"phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
GRANT SELECT (id, phone) ON sec.users TO ds_regress_other;
SELECT * FROM data_sync.add_rule('cross', 'sec.users', 'oth.c', '{"user_id": "id"}', '{"phone": "phone"}');
SET ROLE ds_regress_app;
UPDATE sec.users SET phone = '777' WHERE id = 1;
RESET ROLE;
SELECT * FROM oth.c;

-- 6. Row-level security on the target. Propagation writes as the target's owner, and policies
--    do not apply to a table's owner: a policy that hides every row from the writing role does
--    not stop its changes from reaching the copies.
ALTER TABLE sec.pets ENABLE ROW LEVEL SECURITY;
CREATE POLICY app_sees_nothing ON sec.pets TO ds_regress_app USING (false);
SET ROLE ds_regress_app;
UPDATE sec.users SET phone = '555' WHERE id = 1;
RESET ROLE;
SELECT * FROM sec.pets ORDER BY id;
--    With FORCE ROW LEVEL SECURITY the owner's own policies apply to propagation too: rows they
--    hide from the owner are neither updated nor counted as drift by check(), which also reads
--    as the owner. The log's rows_changed shows what was reached.
ALTER TABLE sec.pets FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_sees_owner_1 ON sec.pets TO ds_regress_owner USING (owner_id = 1);
SET ROLE ds_regress_app;
UPDATE sec.users SET phone = '666';
RESET ROLE;
SELECT * FROM sec.pets ORDER BY id;
SELECT source_rows, rows_changed FROM data_sync.sync_log WHERE rule_name = 'phone' ORDER BY id DESC LIMIT 1;
SELECT * FROM data_sync.check('phone');
ROLLBACK;
