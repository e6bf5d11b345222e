-- With Citus, a rule on a table Citus manages (distributed, reference or Citus-local) is refused
-- when it is defined: Citus runs such a table's writes and triggers on the workers' shards, where
-- the rules are not, and the copies would silently drift (seen on a real cluster: the TAP test
-- tests/tap/t/005_citus.pl). Here the one thing data_sync reads from Citus is mocked, so that
-- every major runs this: the pg_dist_partition catalog (its columns as in Citus) and
-- column_to_column_name().
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY default
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
CREATE TABLE cit.clinics (id bigint PRIMARY KEY, name text);
CREATE TABLE cit.branches (id bigint PRIMARY KEY, phone text);
CREATE TABLE cit.events (id bigint PRIMARY KEY, user_id bigint, phone text);
CREATE TABLE cit.notes (id bigint PRIMARY KEY, user_id bigint, phone text);
CREATE TABLE cit.plain (id bigint PRIMARY KEY, phone text);
INSERT INTO pg_catalog.pg_dist_partition (logicalrelid, partmethod, partkey, colocationid, repmodel) VALUES
    ('cit.users', 'h', 'id', 1, 's'), ('cit.lost_pets', 'h', 'owner_id', 1, 's'),
    ('cit.clinics', 'n', NULL, 3, 't'), ('cit.branches', 'n', NULL, 0, 's'),
    ('cit.events', 'a', 'user_id', 4, 'c');
INSERT INTO cit.users VALUES (1, '111', 'a@x');
INSERT INTO cit.plain VALUES (1, '111');
INSERT INTO cit.notes VALUES (10, 1, NULL);

-- 1. refused, naming the rule, the table and how Citus manages it (0A000), nothing installed:
--    even co-located hash tables matched on their distribution columns,
\set VERBOSITY sqlstate
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('phone', 'cit.users', 'cit.lost_pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
\set VERBOSITY default
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('phone', 'cit.users', 'cit.lost_pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
--    a reference-table source,
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('clinic', 'cit.clinics', 'cit.lost_pets', '{"clinic_id": "id"}', '{"clinic_name": "name"}');
ROLLBACK TO SAVEPOINT s;
--    a Citus-local source (partmethod 'n' like a reference table, told apart by repmodel),
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('branch', 'cit.branches', 'cit.notes', '{"user_id": "id"}', '{"phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
--    a plain source with a distributed target, and an append-distributed table
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('notes', 'cit.plain', 'cit.lost_pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "fine"
source = "cit.plain"
target = "cit.notes"
match = { user_id = "id" }
set = { phone = "phone" }

[[rule]]
name = "events"
source = "cit.plain"
target = "cit.events"
match = { user_id = "id" }
set = { phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT count(*) AS rules FROM data_sync.rules;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname LIKE 'data_sync%';

-- 2. plain tables on a Citus node: accepted, and they propagate
SELECT * FROM data_sync.add_rule('fine', 'cit.plain', 'cit.notes', '{"user_id": "id"}', '{"phone": "phone"}');
UPDATE cit.plain SET phone = '222';
SELECT id, phone FROM cit.notes;

-- 3. a copy of the rule's trigger on another table (as Citus would copy it onto a shard,
--    `<name>_<shardid>`) is refused, not acted on
CREATE TABLE cit.plain_102008 (id bigint PRIMARY KEY, phone text);
CREATE TRIGGER data_sync_fine_sr_102008 AFTER INSERT OR UPDATE OF id, phone ON cit.plain_102008
    FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('fine');
SAVEPOINT s;
INSERT INTO cit.plain_102008 VALUES (1, '333');
ROLLBACK TO SAVEPOINT s;
SELECT id, phone FROM cit.notes;
ROLLBACK;
