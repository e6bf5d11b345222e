-- Objects that exist before data_sync: CREATE EXTENSION refuses a schema named data_sync that a
-- non-superuser owns or that already holds objects (they could capture calls), and loading an
-- entity never replaces a function of the same name that the user wrote.
BEGIN;
\set VERBOSITY terse
-- (an earlier test's DROP EXTENSION leaves the empty schema behind, as it always does)
SET LOCAL client_min_messages = warning;
DROP SCHEMA IF EXISTS data_sync;
RESET client_min_messages;
CREATE ROLE ds_regress_squatter;
CREATE SCHEMA data_sync AUTHORIZATION ds_regress_squatter;
SAVEPOINT s;
CREATE EXTENSION data_sync;
ROLLBACK TO SAVEPOINT s;
ALTER SCHEMA data_sync OWNER TO CURRENT_USER;
CREATE FUNCTION data_sync.status() RETURNS text LANGUAGE sql AS $$ SELECT 'planted' $$;
SAVEPOINT s;
CREATE EXTENSION data_sync;
ROLLBACK TO SAVEPOINT s;
CREATE TABLE data_sync.queue (id int);
DROP FUNCTION data_sync.status();
SAVEPOINT s;
CREATE EXTENSION data_sync;
ROLLBACK TO SAVEPOINT s;
-- an empty schema that a superuser made (as pg_dump's output does) is fine
DROP TABLE data_sync.queue;
CREATE EXTENSION data_sync;
SELECT e.extname, e.extnamespace::regnamespace FROM pg_extension e WHERE e.extname = 'data_sync';

-- A function named like a generated sync_all_<entity>_data already exists: the rule set is
-- refused as a whole, and the user's function is untouched.
CREATE TABLE public.users (id bigint PRIMARY KEY, phone text);
CREATE TABLE public.pets (id bigint PRIMARY KEY, owner_id bigint, contact_phone text);
CREATE FUNCTION public.sync_all_user_data(key bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 42::bigint';
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "public.users"
key = "id"

[[rule]]
name = "phone"
source = "public.users"
target = "public.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT count(*) AS rules FROM data_sync.rules;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname LIKE 'data_sync%';
SELECT public.sync_all_user_data(1);
ROLLBACK;
