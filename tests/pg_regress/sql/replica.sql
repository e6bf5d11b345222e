-- fire_on_replica: rule triggers that also fire under session_replication_role = replica (as
-- logical replication's apply worker runs), set by the rules file or by fire_on_replica().
-- Real publisher/subscriber clusters: tests/tap/t/004_logical_replication.pl.
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY terse
CREATE TABLE public.users (id bigint PRIMARY KEY, phone text);
CREATE TABLE public.pets (id bigint PRIMARY KEY, owner_id bigint, contact_phone text);
INSERT INTO public.users VALUES (1, '111');
INSERT INTO public.pets VALUES (10, 1, '111');
CREATE FUNCTION pg_temp.firing() RETURNS TABLE (tgname name, tgenabled "char") LANGUAGE sql
    AS $$ SELECT tgname, tgenabled FROM pg_trigger WHERE tgname LIKE 'data_sync%' ORDER BY 1 $$;

-- 1. By default the triggers fire for local writes only: a write in replica role does not propagate.
SELECT * FROM data_sync.add_rule('phone', 'public.users', 'public.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
SELECT DISTINCT tgenabled FROM pg_temp.firing();
SET LOCAL session_replication_role = replica;
UPDATE public.users SET phone = '222';
RESET session_replication_role;
SELECT * FROM public.pets;

-- 2. fire_on_replica() makes them ENABLE ALWAYS: now it propagates (and the catalog says so).
SELECT * FROM data_sync.fire_on_replica();
SELECT * FROM pg_temp.firing();
SELECT name, fire_on_replica FROM data_sync.rules;
SET LOCAL session_replication_role = replica;
UPDATE public.users SET phone = '333';
INSERT INTO public.pets VALUES (11, 1, NULL);
RESET session_replication_role;
SELECT * FROM public.pets ORDER BY id;
-- calling it again changes nothing; an unknown rule is an error
SELECT * FROM data_sync.fire_on_replica(true, 'phone');
SAVEPOINT s;
SELECT * FROM data_sync.fire_on_replica(true, 'nope');
ROLLBACK TO SAVEPOINT s;

-- 3. The rules file says the same with fire_on_replica = true; load_rules installs what it says.
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "public.users"
target = "public.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
SELECT DISTINCT tgenabled FROM pg_temp.firing();
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "public.users"
target = "public.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
fire_on_replica = true
$$);
SELECT DISTINCT tgenabled FROM pg_temp.firing();
SELECT * FROM data_sync.fire_on_replica(false);
SELECT DISTINCT tgenabled FROM pg_temp.firing();
ROLLBACK;
