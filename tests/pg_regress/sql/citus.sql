-- With Citus, a rule is accepted only if Citus can run its statements shard by shard: source and
-- target co-located and matched on their distribution columns, or a reference-table source.
-- Citus is not installable here, so the two things data_sync reads from it are mocked: the
-- pg_dist_partition catalog (its columns as in Citus) and column_to_column_name().
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY terse
SET LOCAL allow_system_table_mods = on;
CREATE TABLE pg_catalog.pg_dist_partition (logicalrelid regclass NOT NULL, partmethod "char" NOT NULL,
                                           partkey text, colocationid integer NOT NULL,
                                           repmodel "char" NOT NULL DEFAULT 's');
CREATE FUNCTION pg_catalog.column_to_column_name(regclass, text) RETURNS text LANGUAGE sql AS 'SELECT $2';
RESET allow_system_table_mods;
CREATE SCHEMA cit;
CREATE TABLE cit.users (id bigint PRIMARY KEY, phone text, email text UNIQUE);
CREATE TABLE cit.lost_pets (id bigint, owner_id bigint, contact_phone text, owner_email text, clinic_id bigint,
                            clinic_name text, PRIMARY KEY (owner_id, id));
CREATE TABLE cit.visits (id bigint PRIMARY KEY, user_id bigint, phone text);
CREATE TABLE cit.clinics (id bigint PRIMARY KEY, name text);
CREATE TABLE cit.notes (id bigint PRIMARY KEY, user_id bigint, phone text);
INSERT INTO pg_catalog.pg_dist_partition (logicalrelid, partmethod, partkey, colocationid) VALUES
    ('cit.users', 'h', 'id', 1), ('cit.lost_pets', 'h', 'owner_id', 1),
    ('cit.visits', 'h', 'user_id', 2), ('cit.clinics', 'n', NULL, 3);
INSERT INTO cit.users VALUES (1, '111', 'a@x');
INSERT INTO cit.clinics VALUES (7, 'North');
INSERT INTO cit.lost_pets VALUES (10, 1, NULL, NULL, 7, NULL);

-- 1. co-located, matched on the distribution columns: accepted, and it propagates
SELECT * FROM data_sync.add_rule('phone', 'cit.users', 'cit.lost_pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
-- 2. a reference table as the source of a distributed target: accepted
SELECT * FROM data_sync.add_rule('clinic', 'cit.clinics', 'cit.lost_pets', '{"clinic_id": "id"}', '{"clinic_name": "name"}');
UPDATE cit.users SET phone = '222';
UPDATE cit.clinics SET name = 'South';
SELECT * FROM cit.lost_pets;
-- 3. refused, naming the rule and why; nothing installed
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('visits', 'cit.users', 'cit.visits', '{"user_id": "id"}', '{"phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('email', 'cit.users', 'cit.lost_pets', '{"owner_email": "email"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('notes', 'cit.users', 'cit.notes', '{"user_id": "id"}', '{"phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('back', 'cit.users', 'cit.clinics', '{"id": "id"}', '{"name": "phone"}');
ROLLBACK TO SAVEPOINT s;
SELECT name FROM data_sync.rules ORDER BY 1;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname LIKE 'data_sync%';
-- 4. Citus fires a distributed table's triggers on its shards (`<table>_<shardid>`, listed in
--    pg_dist_shard), whose columns may be numbered differently: data_sync's trigger functions act
--    there as on the table, reading columns by name, and refuse a look-alike that is no shard of
--    it. (Mocked: pg_dist_shard, and a shard table carrying the rule's trigger as Citus copies it.)
SET LOCAL allow_system_table_mods = on;
CREATE TABLE pg_catalog.pg_dist_shard (logicalrelid regclass NOT NULL, shardid bigint NOT NULL);
GRANT SELECT ON pg_catalog.pg_dist_shard TO PUBLIC;  -- (as in Citus)
RESET allow_system_table_mods;
CREATE TABLE cit.users_102008 (id bigint PRIMARY KEY, gone int, phone text, email text);
ALTER TABLE cit.users_102008 DROP COLUMN gone;
CREATE TABLE cit.users_999 (LIKE cit.users_102008);
INSERT INTO pg_catalog.pg_dist_shard VALUES ('cit.users', 102008);
CREATE TRIGGER data_sync_phone_sr AFTER INSERT OR UPDATE OF id, phone ON cit.users_102008
    FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('phone');
CREATE TRIGGER data_sync_phone_sr AFTER INSERT OR UPDATE OF id, phone ON cit.users_999
    FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('phone');
INSERT INTO cit.users_102008 VALUES (1, '333', 'b@x');
SELECT id, contact_phone FROM cit.lost_pets;
SAVEPOINT s;
INSERT INTO cit.users_999 VALUES (1, '444', 'c@x');
ROLLBACK TO SAVEPOINT s;
-- A shard's copy of a trigger is named `<name>_<shardid>` by Citus: accepted on the shard. A table
-- named and listed like a shard but owned by another role is no shard (anyone may read
-- pg_dist_shard and create a table in a schema open to it).
CREATE TRIGGER data_sync_phone_sr_102008 AFTER INSERT OR UPDATE OF id, phone ON cit.users_102008
    FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('phone');
DROP TRIGGER data_sync_phone_sr ON cit.users_102008;
UPDATE cit.users_102008 SET phone = '555' WHERE id = 1;
SELECT id, contact_phone FROM cit.lost_pets;
CREATE ROLE ds_cit_other;
GRANT CREATE, USAGE ON SCHEMA cit TO ds_cit_other;
INSERT INTO pg_catalog.pg_dist_shard VALUES ('cit.users', 102009);
SET ROLE ds_cit_other;
CREATE TABLE cit.users_102009 (id bigint, phone text, email text);
CREATE TRIGGER data_sync_phone_sr AFTER INSERT ON cit.users_102009
    FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('phone');
SAVEPOINT s;
INSERT INTO cit.users_102009 VALUES (1, 'evil', 'e@x');
ROLLBACK TO SAVEPOINT s;
RESET ROLE;
SELECT id, contact_phone FROM cit.lost_pets;
ROLLBACK;
