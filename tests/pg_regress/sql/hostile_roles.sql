-- Hostile roles: nobody gains rights through a rule. Roles:
--   ds_h_owner    owns the rule's tables (h.users -> h.pets, where status = 'lost')
--   ds_h_writer   INSERT/UPDATE on h.users only
--   ds_h_reader   SELECT on both tables
--   ds_h_stranger no rights on either
--   ds_h_owner2   a second table owner, with tables and rules of its own
-- Attack code records who it ran as in public.hostile_seen: every check below asserts that code
-- a role controls ran as that role, or not at all.
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY terse
CREATE ROLE ds_h_owner;
CREATE ROLE ds_h_writer;
CREATE ROLE ds_h_reader;
CREATE ROLE ds_h_stranger;
CREATE ROLE ds_h_owner2;
CREATE TABLE public.hostile_seen (who name, what text, superuser boolean);
GRANT INSERT ON public.hostile_seen TO PUBLIC;
CREATE FUNCTION public.hostile_note(what text) RETURNS boolean LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
    AS $$ INSERT INTO public.hostile_seen SELECT current_user, what, rolsuper FROM pg_roles
          WHERE rolname = current_user RETURNING true $$;
CREATE SCHEMA h AUTHORIZATION ds_h_owner;
CREATE SCHEMA h2 AUTHORIZATION ds_h_owner2;
CREATE SCHEMA wr AUTHORIZATION ds_h_writer;
GRANT USAGE ON SCHEMA h TO ds_h_writer, ds_h_reader, ds_h_stranger, ds_h_owner2;

SET ROLE ds_h_owner;
CREATE TABLE h.users (id bigint PRIMARY KEY, phone text);
CREATE TABLE h.pets (id bigint PRIMARY KEY, owner_id bigint, status text, contact_phone text
                      CHECK (contact_phone IS DISTINCT FROM '000'));
INSERT INTO h.users VALUES (1, '111'), (2, '222');
INSERT INTO h.pets VALUES (10, 1, 'lost', '111'), (11, 1, 'home', 'x'), (20, 2, 'lost', '222');
GRANT SELECT, INSERT, UPDATE ON h.users TO ds_h_writer;
GRANT SELECT ON h.users, h.pets TO ds_h_reader;
SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "h.users"
key = "id"

[[rule]]
name = "phone"
source = "h.users"
target = "h.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
where = "status = 'lost'"
mode = "strict"
$$);
RESET ROLE;

-- 1. Trigger functions act only in data_sync's own triggers on the rule's own tables. A role
--    without rights on them attaches them to a table of its own, named and shaped like the
--    rule's, to write the target as its owner or read the source through a fill: refused.
SET ROLE ds_h_stranger;
CREATE TEMP TABLE users (id bigint, phone text);
CREATE TEMP TABLE pets (id bigint, owner_id bigint, status text, contact_phone text);
CREATE TEMP TABLE odd (id text, phone int);
CREATE TRIGGER data_sync_phone_sr AFTER INSERT ON users FOR EACH ROW
    EXECUTE FUNCTION data_sync.source_row_trigger('phone');
CREATE TRIGGER data_sync_phone_ss AFTER INSERT ON users FOR EACH STATEMENT
    EXECUTE FUNCTION data_sync.source_statement_trigger('phone');
CREATE TRIGGER data_sync_phone_tf BEFORE INSERT ON pets FOR EACH ROW
    EXECUTE FUNCTION data_sync.target_fill_trigger('phone');
CREATE TRIGGER data_sync_phone_sr AFTER INSERT ON odd FOR EACH ROW
    EXECUTE FUNCTION data_sync.source_row_trigger('phone');
SAVEPOINT s;
INSERT INTO users VALUES (1, 'pwned');
ROLLBACK TO SAVEPOINT s;
INSERT INTO pets VALUES (99, 1, 'lost', NULL) RETURNING contact_phone;
ROLLBACK TO SAVEPOINT s;
-- (columns of other types: an error, not a crash)
INSERT INTO odd VALUES ('1', 42);
ROLLBACK TO SAVEPOINT s;
DROP TABLE users, pets, odd;
RESET ROLE;
-- ...and the owner's own table, with data_sync's functions under names data_sync never gives,
-- or on the wrong side, is refused too.
SET ROLE ds_h_owner;
CREATE TABLE h.scratch (id bigint, phone text);
CREATE TRIGGER mine AFTER INSERT ON h.scratch FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('phone');
SAVEPOINT s;
INSERT INTO h.scratch VALUES (1, 'pwned');
ROLLBACK TO SAVEPOINT s;
DROP TRIGGER mine ON h.scratch;
RESET ROLE;
-- (data_sync's event trigger would re-create the rule's triggers at once: switched off here)
ALTER EVENT TRIGGER data_sync_ddl DISABLE;
SET ROLE ds_h_owner;
CREATE TRIGGER data_sync_phone_tf AFTER INSERT ON h.users FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger('phone');
INSERT INTO h.users VALUES (3, '333');
ROLLBACK TO SAVEPOINT s;
-- ...and a row function attached at statement level, under a name data_sync gave in an earlier
-- build (a statement has no row: an error, not a crash)
CREATE TRIGGER data_sync_phone_sis AFTER INSERT ON h.users FOR EACH STATEMENT EXECUTE FUNCTION data_sync.source_row_trigger('phone');
INSERT INTO h.users VALUES (3, '333');
ROLLBACK TO SAVEPOINT s;
CREATE TRIGGER data_sync_phone_rir AFTER INSERT ON h.pets FOR EACH STATEMENT EXECUTE FUNCTION data_sync.target_fill_trigger('phone');
INSERT INTO h.pets VALUES (30, 1, 'lost', NULL);
ROLLBACK TO SAVEPOINT s;
RESET ROLE;
ALTER EVENT TRIGGER data_sync_ddl ENABLE;
SELECT * FROM h.pets ORDER BY id;

-- 2. A writer's search_path cannot capture what data_sync runs as the target's owner: catalog
--    look-ups when a rule's statements are first built in a session, and the rule's own `where`.
--    The writer puts its own "char" and text `=` first in search_path. (A change of h.users makes
--    this session build the rule's statements again, in the writer's session.)
SET ROLE ds_h_owner;
ALTER TABLE h.users SET (fillfactor = 100);
SET ROLE ds_h_writer;
CREATE FUNCTION wr.eq_char("char", "char") RETURNS boolean LANGUAGE sql
    AS $$ SELECT public.hostile_note('writer''s "char" =') AND $1::text OPERATOR(pg_catalog.=) $2::text $$;
CREATE OPERATOR wr.= (LEFTARG = "char", RIGHTARG = "char", FUNCTION = wr.eq_char);
CREATE FUNCTION wr.eq_text(text, text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT public.hostile_note('writer''s text =') AND $1 OPERATOR(pg_catalog.=) $2 $$;
CREATE OPERATOR wr.= (LEFTARG = text, RIGHTARG = text, FUNCTION = wr.eq_text);
GRANT USAGE ON SCHEMA wr TO PUBLIC;
SET search_path = wr, pg_catalog;
UPDATE h.users SET phone = '999' WHERE id = 1;
INSERT INTO h.users VALUES (5, '555');
RESET search_path;
RESET ROLE;
SELECT * FROM h.pets ORDER BY id;
SELECT who, what FROM public.hostile_seen;

-- 3. The settings a DBA relies on are not the writer's to change: every propagation logged,
--    failures isolated or strict as configured, events announced where the DBA said.
SET ROLE ds_h_writer;
SAVEPOINT s;
SET data_sync.log_level = 'none';
ROLLBACK TO SAVEPOINT s;
SET data_sync.failure_mode = 'async';
ROLLBACK TO SAVEPOINT s;
SET data_sync.notify_channel = 'leak';
ROLLBACK TO SAVEPOINT s;
RESET ROLE;

-- 4. An error raised as the target's owner keeps its DETAIL only for a writer who may read the
--    rule's tables: `Failing row contains (…)` would show the target row to the writer.
\set VERBOSITY default
SET ROLE ds_h_writer;
SAVEPOINT s;
UPDATE h.users SET phone = '000' WHERE id = 2;
ROLLBACK TO SAVEPOINT s;
RESET ROLE;
SAVEPOINT s;
UPDATE h.users SET phone = '000' WHERE id = 2;
ROLLBACK TO SAVEPOINT s;
-- ...nor for a writer who may read the target but from whom row-level security hides that row
SAVEPOINT s;
GRANT SELECT ON h.pets TO ds_h_writer;
ALTER TABLE h.pets ENABLE ROW LEVEL SECURITY;
CREATE POLICY writer_sees_10 ON h.pets TO ds_h_writer USING (id = 10);
SET ROLE ds_h_writer;
UPDATE h.users SET phone = '000' WHERE id = 2;
ROLLBACK TO SAVEPOINT s;
\set VERBOSITY terse

-- 5. Queue keys are read back as the owner of the table they came from: a key column of a
--    domain whose CHECK is the second owner's code runs it as that owner, not as the role that
--    processes the queue (the background worker connects as the bootstrap superuser), nor as
--    a superuser re-syncing a key range. Error messages stored in the log and the queue are
--    bounded.
SET ROLE ds_h_owner2;
CREATE FUNCTION h2.spy(bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT public.hostile_note('domain check') $$;
CREATE DOMAIN h2.key AS bigint CHECK (h2.spy(VALUE));
CREATE TABLE h2.src (id h2.key PRIMARY KEY, v text);
CREATE TABLE h2.tgt (id bigint PRIMARY KEY, src_id h2.key, v text);
CREATE FUNCTION h2.loud() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.v = 'loud' THEN RAISE EXCEPTION '%', pg_catalog.repeat('x', 5000); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER loud BEFORE UPDATE ON h2.tgt FOR EACH ROW EXECUTE FUNCTION h2.loud();
INSERT INTO h2.src VALUES (1, 'a'), (2, 'b');
INSERT INTO h2.tgt VALUES (100, 1, 'a'), (200, 2, 'b');
SELECT * FROM data_sync.add_rule('evil', 'h2.src', 'h2.tgt', '{"src_id": "id"}', '{"v": "v"}', NULL,
                                 '{"mode": "isolated"}');
UPDATE h2.src SET v = 'loud' WHERE id = 1;
RESET ROLE;
SELECT rule_name, status, length(error_message) FROM data_sync.sync_log WHERE rule_name = 'evil';
SELECT rule_name, keys, status, length(last_error) FROM data_sync.queue;
DELETE FROM public.hostile_seen;
SET ROLE ds_h_owner2;
DROP TRIGGER loud ON h2.tgt;
RESET ROLE;
SELECT processed, succeeded FROM data_sync.retry_failed('evil');
SELECT data_sync.sync_all('evil', '1', '2');
SELECT * FROM h2.tgt ORDER BY id;
SELECT DISTINCT who, what, superuser FROM public.hostile_seen;
SET ROLE ds_h_owner2;
SELECT * FROM data_sync.drop_rule('evil');
RESET ROLE;

-- 6. Schema changes that rename a rule's table or column through ALTER INDEX or ALTER VIEW
--    disable it like ALTER TABLE does; a rule on a partitioned table can be dropped, and does
--    not block later changes of its table.
SET ROLE ds_h_owner;
CREATE TABLE h.parts (id bigint, owner_id bigint, status text, contact_phone text) PARTITION BY RANGE (id);
CREATE TABLE h.parts_1 PARTITION OF h.parts FOR VALUES FROM (0) TO (100);
SELECT * FROM data_sync.add_rule('parts', 'h.users', 'h.parts', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
SELECT * FROM data_sync.drop_rule('parts');
SELECT * FROM data_sync.add_rule('parts', 'h.users', 'h.parts', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ALTER TABLE h.parts ADD COLUMN note text;
ALTER VIEW h.parts RENAME COLUMN contact_phone TO phone_copy;
ALTER INDEX h.pets RENAME TO pets_renamed;
ALTER INDEX h.pets_renamed RENAME TO pets;
RESET ROLE;
SELECT name, enabled, disabled_reason FROM data_sync.rules ORDER BY name;
SELECT tgname, tgrelid::regclass FROM pg_trigger WHERE tgname LIKE 'data_sync_parts%' ORDER BY 1, 2;
SET ROLE ds_h_owner;
SELECT * FROM data_sync.load_rules('');
RESET ROLE;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgname LIKE 'data_sync%';

-- 7. Shapes that would run one owner's code as another role are refused when loaded: a target
--    owner without USAGE on the source's schema, row-level security on a table read as the other
--    table's owner. Enabling row-level security later disables the rule.
SET ROLE ds_h_owner2;
CREATE TABLE h2.copy (id bigint PRIMARY KEY, user_id bigint, phone text);
RESET ROLE;
GRANT SELECT ON h.users TO ds_h_owner2;
REVOKE USAGE ON SCHEMA h FROM ds_h_owner2;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('cross', 'h.users', 'h2.copy', '{"user_id": "id"}', '{"phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
GRANT USAGE ON SCHEMA h TO ds_h_owner2;
ALTER TABLE h.users ENABLE ROW LEVEL SECURITY;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('cross', 'h.users', 'h2.copy', '{"user_id": "id"}', '{"phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
ALTER TABLE h.users DISABLE ROW LEVEL SECURITY;
SELECT * FROM data_sync.add_rule('cross', 'h.users', 'h2.copy', '{"user_id": "id"}', '{"phone": "phone"}');
ALTER TABLE h.users ENABLE ROW LEVEL SECURITY;
SELECT name, enabled, disabled_reason FROM data_sync.rules WHERE name = 'cross';
ALTER TABLE h.users DISABLE ROW LEVEL SECURITY;
SELECT * FROM data_sync.drop_rule('cross');

-- 8. Re-syncs and checks read and write as the tables' owners, so a caller whom row-level
--    security would hide rows from is refused instead of counting or rewriting them.
SET ROLE ds_h_owner;
SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "h.users"
key = "id"

[[rule]]
name = "phone"
source = "h.users"
target = "h.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }

[[rule]]
name = "off"
source = "h.users"
target = "h.pets"
match = { id = "id" }
set = { status = "phone" }
enabled = false
$$);
ALTER TABLE h.pets ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_sees_little ON h.pets TO ds_h_reader USING (id < 11);
ALTER TABLE h.users ENABLE ROW LEVEL SECURITY;
CREATE POLICY writer_sees_own ON h.users TO ds_h_writer USING (id = 1);
RESET ROLE;
SET ROLE ds_h_reader;
SAVEPOINT s;
SELECT * FROM data_sync.check('phone');
ROLLBACK TO SAVEPOINT s;
RESET ROLE;
SET ROLE ds_h_writer;
SAVEPOINT s;
SELECT data_sync.sync_all('phone');
ROLLBACK TO SAVEPOINT s;
RESET ROLE;
SET ROLE ds_h_owner;
SELECT * FROM data_sync.check('phone');
ALTER TABLE h.pets DISABLE ROW LEVEL SECURITY;
ALTER TABLE h.users DISABLE ROW LEVEL SECURITY;
RESET ROLE;

-- 9. Every SQL-callable function of data_sync, and every trigger function attached by a role to
--    a table of its own, tried by each role against the owner's rule: what each may do (ok) and
--    what it is refused (SQLSTATE). Each call is rolled back, so none sees another's effects.
--    The README's role table is this table. The last query fails the suite when a function of
--    data_sync is missing from the list.
CREATE TEMP TABLE calls (fn text, call text[]);
INSERT INTO calls VALUES
  ('load_rules', '{"SELECT * FROM data_sync.load_rules('''')"}'),
  ('add_rule', $${"SELECT * FROM data_sync.add_rule('steal', 'h.users', 'h.scratch', '{\"id\": \"id\"}', '{\"phone\": \"phone\"}')"}$$),
  ('drop_rule', '{"SELECT * FROM data_sync.drop_rule(''phone'')"}'),
  ('disable_rule', '{"SELECT * FROM data_sync.disable_rule(''phone'')"}'),
  ('enable_rule', '{"SELECT * FROM data_sync.enable_rule(''off'')"}'),
  ('fire_on_replica', '{"SELECT * FROM data_sync.fire_on_replica(true, ''phone'')"}'),
  ('sync_all', '{"SELECT data_sync.sync_all(''phone'')"}'),
  ('sync_entity', '{"SELECT data_sync.sync_entity(''user'', 1::bigint)"}'),
  ('sync_entity_comprehensive', '{"SELECT data_sync.sync_entity_comprehensive(''user'', 1::bigint)"}'),
  ('check', '{"SELECT * FROM data_sync.check(''phone'')"}'),
  ('explain', '{"SELECT count(*) FROM data_sync.explain(''phone'')"}'),
  ('revalidate_rules', '{"SELECT data_sync.revalidate_rules()"}'),
  ('process_queue', '{"SELECT * FROM data_sync.process_queue()"}'),
  ('retry_failed', '{"SELECT * FROM data_sync.retry_failed()"}'),
  ('clear_failed', '{"SELECT data_sync.clear_failed()"}'),
  ('purge_log', '{"SELECT data_sync.purge_log(''1 day'')"}'),
  ('status', '{"SELECT count(*) FROM data_sync.status()"}'),
  ('health', '{"SELECT count(*) FROM data_sync.health()"}'),
  ('failure_stats', '{"SELECT count(*) FROM data_sync.failure_stats()"}'),
  ('history', '{"SELECT count(*) FROM data_sync.history()"}'),
  ('log_id_since', '{"SELECT data_sync.log_id_since(now())"}'),
  ('ddl_watch', '{"SELECT data_sync.ddl_watch()"}'),
  ('source_row_trigger', '{"CREATE TEMP TABLE t (id bigint, phone text)",
     "CREATE TRIGGER data_sync_phone_sr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION data_sync.source_row_trigger(''phone'')",
     "INSERT INTO t VALUES (1, ''pwned'')"}'),
  ('source_statement_trigger', '{"CREATE TEMP TABLE t (id bigint, phone text)",
     "CREATE TRIGGER data_sync_phone_ss AFTER INSERT ON t EXECUTE FUNCTION data_sync.source_statement_trigger(''phone'')",
     "INSERT INTO t VALUES (1, ''pwned'')"}'),
  ('target_fill_trigger', '{"CREATE TEMP TABLE t (id bigint, owner_id bigint, status text, contact_phone text)",
     "CREATE TRIGGER data_sync_phone_tf BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION data_sync.target_fill_trigger(''phone'')",
     "INSERT INTO t VALUES (1, 1, ''lost'', NULL)"}'),
  ('target_statement_trigger', '{"CREATE TEMP TABLE t (id bigint, owner_id bigint, status text, contact_phone text)",
     "CREATE TRIGGER data_sync_phone_ts AFTER INSERT ON t EXECUTE FUNCTION data_sync.target_statement_trigger(''phone'')",
     "INSERT INTO t VALUES (1, 1, ''lost'', NULL)"}'),
  ('reverse_row_trigger', '{"CREATE TEMP TABLE t (id bigint, owner_id bigint, status text, contact_phone text)",
     "CREATE TRIGGER data_sync_phone_rr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION data_sync.reverse_row_trigger(''phone'')",
     "INSERT INTO t VALUES (1, 1, ''lost'', ''pwned'')"}'),
  ('reverse_statement_trigger', '{"CREATE TEMP TABLE t (id bigint, owner_id bigint, status text, contact_phone text)",
     "CREATE TRIGGER data_sync_phone_rs AFTER INSERT ON t EXECUTE FUNCTION data_sync.reverse_statement_trigger(''phone'')",
     "INSERT INTO t VALUES (1, 1, ''lost'', ''pwned'')"}');
CREATE TEMP TABLE outcomes (fn text, role text, outcome text);
GRANT INSERT ON outcomes TO PUBLIC;
DO $$
DECLARE
    c record;
    r text;
    stmt text;
    state text;
BEGIN
    FOR c IN SELECT * FROM calls LOOP
        FOREACH r IN ARRAY ARRAY['ds_h_owner', 'ds_h_writer', 'ds_h_reader', 'ds_h_stranger', 'ds_h_owner2'] LOOP
            BEGIN
                EXECUTE format('SET LOCAL ROLE %I', r);
                FOREACH stmt IN ARRAY c.call LOOP
                    EXECUTE stmt;
                END LOOP;
                RAISE EXCEPTION USING ERRCODE = 'XX900', MESSAGE = 'undo';
            EXCEPTION WHEN OTHERS THEN
                state := CASE WHEN SQLSTATE = 'XX900' THEN 'ok' ELSE SQLSTATE END;
            END;
            INSERT INTO outcomes VALUES (c.fn, r, state);
        END LOOP;
    END LOOP;
END
$$;
SELECT fn AS function,
       max(outcome) FILTER (WHERE role = 'ds_h_owner') AS owner,
       max(outcome) FILTER (WHERE role = 'ds_h_writer') AS writer,
       max(outcome) FILTER (WHERE role = 'ds_h_reader') AS reader,
       max(outcome) FILTER (WHERE role = 'ds_h_stranger') AS stranger,
       max(outcome) FILTER (WHERE role = 'ds_h_owner2') AS owner2
FROM outcomes GROUP BY fn ORDER BY fn;
-- nothing of it stayed: the rule, the tables and the log are as they were
SELECT name, enabled FROM data_sync.rules ORDER BY name;
SELECT * FROM h.pets ORDER BY id;
SELECT proname FROM pg_proc WHERE pronamespace = 'data_sync'::regnamespace
EXCEPT SELECT fn FROM calls;
ROLLBACK;
