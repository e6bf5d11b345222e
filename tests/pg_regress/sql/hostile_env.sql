-- A hostile environment: an attacker schema first in search_path (before pg_catalog) holding
-- operators and functions named like the built-ins data_sync's statements use, temporary and
-- public tables named like the rule tables and like data_sync's own. Every object planted here
-- raises an error when used, so the expected output (no such error anywhere) proves that
-- propagation, fills, re-syncs, the queue and every SQL function reach only the right objects.
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY terse
CREATE SCHEMA app;
CREATE TABLE app.users (id bigint PRIMARY KEY, phone text, name text);
CREATE TABLE app.pets (id bigint PRIMARY KEY, owner_id bigint, contact_phone text,
                       CONSTRAINT phone_digits CHECK (contact_phone !~ 'x'));
CREATE TABLE app.profiles (id bigint PRIMARY KEY, user_id bigint UNIQUE, display_name text);
INSERT INTO app.users VALUES (1, '111', 'ann'), (2, '222', 'bob');
INSERT INTO app.pets VALUES (10, 1, NULL), (11, 1, NULL), (20, 2, NULL);
INSERT INTO app.profiles VALUES (100, 1, NULL);

CREATE SCHEMA evil;
CREATE FUNCTION evil.boom() RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'captured by an attacker object'; END $$;
-- operators for the key and value types, as (for `=`) a superset of what a query could use
CREATE FUNCTION evil.op(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT evil.boom()';
CREATE FUNCTION evil.op(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT evil.boom()';
CREATE FUNCTION evil.op(integer, integer) RETURNS boolean LANGUAGE sql AS 'SELECT evil.boom()';
CREATE FUNCTION evil.op(bigint[], bigint[]) RETURNS boolean LANGUAGE sql AS 'SELECT evil.boom()';
CREATE FUNCTION evil.op(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS 'SELECT evil.boom()';
DO $$
DECLARE
    sym text;
    typ text;
BEGIN
    FOREACH sym IN ARRAY ARRAY['=', '<>', '<', '>', '<=', '>='] LOOP
        FOREACH typ IN ARRAY ARRAY['bigint', 'text', 'integer', 'bigint[]', 'timestamptz'] LOOP
            EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.op)',
                           sym, typ, typ);
        END LOOP;
    END LOOP;
END $$;
-- functions and aggregates named like built-ins
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT evil.boom(); SELECT NULL::timestamptz';
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql
    AS 'SELECT evil.boom(); SELECT NULL::timestamptz';
CREATE FUNCTION evil.pg_current_xact_id() RETURNS xid8 LANGUAGE sql AS 'SELECT evil.boom(); SELECT NULL::xid8';
CREATE FUNCTION evil.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE sql
    AS 'SELECT evil.boom(); SELECT NULL::text::anyelement';
CREATE FUNCTION evil.cardinality(anyarray) RETURNS integer LANGUAGE sql AS 'SELECT evil.boom(); SELECT 0';
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS 'SELECT evil.boom(); SELECT $1';
CREATE FUNCTION evil.length(text) RETURNS integer LANGUAGE sql AS 'SELECT evil.boom(); SELECT 0';
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE sql AS 'SELECT evil.boom(); SELECT 0::bigint';
CREATE FUNCTION evil.sfunc(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT evil.boom(); SELECT 0::bigint';
CREATE FUNCTION evil.sfunc(bigint, anyelement) RETURNS bigint LANGUAGE sql AS 'SELECT evil.boom(); SELECT 0::bigint';
CREATE AGGREGATE evil.count(*) (SFUNC = evil.sfunc, STYPE = bigint);
CREATE AGGREGATE evil.count(anyelement) (SFUNC = evil.sfunc, STYPE = bigint);
CREATE AGGREGATE evil.max(anyelement) (SFUNC = evil.sfunc, STYPE = bigint);
CREATE AGGREGATE evil.min(anyelement) (SFUNC = evil.sfunc, STYPE = bigint);
CREATE AGGREGATE evil.sum(anyelement) (SFUNC = evil.sfunc, STYPE = bigint);
CREATE AGGREGATE evil.array_agg(anyelement) (SFUNC = evil.sfunc, STYPE = bigint);
-- tables named like data_sync's own and like the rule tables, in public and in pg_temp (which
-- is searched first for tables)
CREATE FUNCTION evil.trap() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN PERFORM evil.boom(); RETURN NULL; END $$;
CREATE TABLE public.rules (name text);
CREATE TABLE public.sync_log (id bigint);
CREATE TABLE public.queue (id bigint);
CREATE TEMP TABLE users (id bigint PRIMARY KEY, phone text, name text);
CREATE TEMP TABLE pets (id bigint PRIMARY KEY, owner_id bigint, contact_phone text);
CREATE TEMP TABLE profiles (id bigint PRIMARY KEY, user_id bigint, display_name text);
CREATE TEMP TABLE sync_log (id bigint);
CREATE TEMP TABLE queue (id bigint);
INSERT INTO users VALUES (1, 'temp', 'temp');
INSERT INTO pets VALUES (10, 1, 'temp');
INSERT INTO profiles VALUES (100, 1, 'temp');
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['public.rules', 'public.sync_log', 'public.queue', 'pg_temp.users',
                             'pg_temp.pets', 'pg_temp.profiles', 'pg_temp.sync_log', 'pg_temp.queue'] LOOP
        EXECUTE format('CREATE TRIGGER trap BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION evil.trap()', t);
    END LOOP;
END $$;
-- the attacker's objects do work when reached:
SAVEPOINT s;
SELECT 1::bigint = 1::bigint;
ROLLBACK TO SAVEPOINT s;
SET search_path = evil, pg_catalog, public;
SAVEPOINT s;
SELECT 1::bigint = 1::bigint;
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT count(*) FROM app.users;
ROLLBACK TO SAVEPOINT s;

-- 1. Rules and an entity loaded under that search_path.
SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "app.users"
key = "id"

[[rule]]
name = "phone"
source = "app.users"
target = "app.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
mode = "isolated"

[[rule]]
name = "owner_name"
source = "app.users"
target = "app.profiles"
match = { user_id = "id" }
set = { display_name = "name" }
bidirectional = true
$$);

-- Every function data_sync made (its own, and the generated sync_all_* ones) pins search_path,
-- except its C trigger functions, whose statements are all qualified (see README "Security").
SELECT p.oid::regprocedure AS unpinned
FROM pg_catalog.pg_proc p
WHERE (p.oid OPERATOR(pg_catalog.=) ANY (SELECT d.objid FROM pg_catalog.pg_depend d
                     JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
                     WHERE e.extname OPERATOR(pg_catalog.=) 'data_sync' AND d.deptype OPERATOR(pg_catalog.=) 'e')
       OR pg_catalog.obj_description(p.oid, 'pg_proc') OPERATOR(pg_catalog.~~) 'data_sync: %')
  AND (pg_catalog.array_to_string(p.proconfig, ',') OPERATOR(pg_catalog.~~) '%search_path=%') IS NOT TRUE
  AND p.prorettype OPERATOR(pg_catalog.<>) 'pg_catalog.trigger'::pg_catalog.regtype;
SELECT p.proname, l.lanname
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid OPERATOR(pg_catalog.=) p.prolang
WHERE p.pronamespace OPERATOR(pg_catalog.=) 'data_sync'::pg_catalog.regnamespace
  AND p.prorettype OPERATOR(pg_catalog.=) 'pg_catalog.trigger'::pg_catalog.regtype
ORDER BY 1;
SELECT pg_catalog.count(*) AS generated_functions_checked FROM pg_catalog.pg_proc p
WHERE pg_catalog.obj_description(p.oid, 'pg_proc') OPERATOR(pg_catalog.~~) 'data_sync: %';

-- 2. Re-sync, then propagation of updates (one row, many rows), fills of new target rows and
--    the way back of a bidirectional rule.
SELECT data_sync.sync_all();
UPDATE app.users SET phone = '112' WHERE id = 1;
UPDATE app.users SET phone = phone OPERATOR(pg_catalog.||) '9', name = upper(name);
INSERT INTO app.pets VALUES (12, 1, NULL);
INSERT INTO app.profiles VALUES (200, 2, NULL);
UPDATE app.profiles SET display_name = 'Bobby' WHERE id = 200;
SELECT * FROM app.users ORDER BY id;
SELECT * FROM app.pets ORDER BY id;
SELECT * FROM app.profiles ORDER BY id;

-- 3. A failing propagation (isolated: queued), fixed, retried; every monitoring function.
UPDATE app.users SET phone = 'x' WHERE id = 2;
SELECT rule_name, keys, status FROM data_sync.queue;
ALTER TABLE app.pets DROP CONSTRAINT phone_digits;
SELECT * FROM data_sync.retry_failed('phone');
SELECT * FROM app.pets WHERE owner_id = 2;
SELECT rule_name, enabled, mode, pending, dead, failures FROM data_sync.status() ORDER BY 1;
SELECT healthy, propagations, failures, pending FROM data_sync.health();
SELECT dimension, value, failures FROM data_sync.failure_stats() ORDER BY 1, 2;
SELECT rule_name, status FROM data_sync.history(3);
SELECT * FROM data_sync.check();
SELECT step FROM data_sync.explain('phone') LIMIT 1;
SELECT * FROM data_sync.process_queue();
SELECT data_sync.clear_failed();
SELECT data_sync.purge_log('1 day');
SELECT pg_catalog.count(*) FROM data_sync.running_syncs;

-- 4. The generated entity functions, a key-range re-sync, rule changes, a schema change.
UPDATE app.pets SET contact_phone = 'drift';
SELECT app.sync_all_user_data(1), app.sync_all_user_data_comprehensive(2);
SELECT data_sync.sync_all('phone', '1', '2');
SELECT * FROM data_sync.disable_rule('owner_name');
SELECT * FROM data_sync.enable_rule('owner_name');
ALTER TABLE app.profiles RENAME COLUMN display_name TO label;
SELECT name, enabled FROM data_sync.rules ORDER BY 1;
SELECT * FROM data_sync.drop_rule('owner_name');
SELECT * FROM app.pets ORDER BY id;
SELECT * FROM app.profiles ORDER BY id;
RESET search_path;
-- the attacker's temporary tables were never touched
SELECT * FROM pg_temp.users;
SELECT * FROM pg_temp.pets;
SELECT * FROM pg_temp.profiles;
SELECT rule_name, operation, source_key, source_rows, rows_changed, status FROM data_sync.sync_log ORDER BY id;
ROLLBACK;
