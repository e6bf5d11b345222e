-- Validation: every bad rule set is refused with a message naming the rule and the field, and
-- the installed rule set (catalog rows, triggers, generated functions) is left exactly as it was.
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY terse
CREATE SCHEMA val;
CREATE TABLE val.users (id bigint PRIMARY KEY, email text UNIQUE, phone text, code integer, nick varchar(10));
CREATE TABLE val.pets (id bigint PRIMARY KEY, owner_id bigint, status text, contact_phone text,
                       owner_email text, code_text text, nick text);
-- for the cycle: a.x is copied to b.y, b.y back to a.x (b.a_id is unique so both keys are valid)
CREATE TABLE val.a (id bigint PRIMARY KEY, x text);
CREATE TABLE val.b (id bigint PRIMARY KEY, a_id bigint UNIQUE, y text);
INSERT INTO val.users VALUES (1, 'a@x', '111', 7, 'ann');
INSERT INTO val.pets VALUES (10, 1, 'lost', NULL, NULL, NULL, NULL);

-- What is installed: rules, entities, data_sync triggers (per rule and table), generated functions.
CREATE TEMP VIEW installed AS
    SELECT 'rule' AS kind, name || CASE WHEN enabled THEN '' ELSE ' (disabled)' END AS what
    FROM data_sync.rules
    UNION ALL
    SELECT 'entity', format('%s: %s.%s key %s', name, table_schema, table_name, key_column) FROM data_sync.entities
    UNION ALL
    SELECT 'triggers', format('%s_{%s} on %s', substring(tgname FROM '^(.*)_[a-z]+$'),
                              string_agg(substring(tgname FROM '_([a-z]+)$'), ',' ORDER BY tgname), tgrelid::regclass)
    FROM pg_trigger
    WHERE tgrelid IN ('val.users'::regclass, 'val.pets'::regclass, 'val.a'::regclass, 'val.b'::regclass)
      AND NOT tgisinternal
    GROUP BY substring(tgname FROM '^(.*)_[a-z]+$'), tgrelid
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'val'::regnamespace;

-- The valid starting point: two rules and an entity.
SELECT * FROM data_sync.load_rules($$
[entity.vuser]
table = "val.users"
key = "email"

[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }

[[rule]]
name = "email"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { owner_email = "email" }
$$);
SELECT * FROM installed ORDER BY 1, 2;
SELECT id, contact_phone, owner_email FROM val.pets;

-- 1. TOML syntax error: the message has line and column.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "broken"
source =
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 2. Unknown key in a rule: names the rule and the key.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
sett = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 3. Unknown top-level key.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rules]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 4. Unknown table.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "val.users"
target = "val.no_such_table"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 5. Unqualified table name (even one that the search_path would find).
SAVEPOINT s;
SET LOCAL search_path = val, public;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 6. Unknown column, in `set` and in `match`.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "fone" }
$$);
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner = "id" }
set = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 7. Type mismatch: integer onto text, and varchar(10) onto text (no implicit casts).
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "code"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { code_text = "code" }
$$);
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "nick"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { nick = "nick" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 8. A match on a source column that no unique index covers.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "by_phone"
source = "val.users"
target = "val.pets"
match = { contact_phone = "phone" }
set = { owner_email = "email" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 9. Duplicate rule names in one document.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }

[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { owner_email = "email" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 10. A rule copying a column onto itself.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "self"
source = "val.users"
target = "val.users"
match = { id = "id" }
set = { phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 11. A cycle between two rules: a.x -> b.y and b.y -> a.x. Refused as a whole, naming both.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "a_to_b"
source = "val.a"
target = "val.b"
match = { a_id = "id" }
set = { y = "x" }

[[rule]]
name = "b_to_a"
source = "val.b"
target = "val.a"
match = { id = "a_id" }
set = { x = "y" }
$$);
ROLLBACK TO SAVEPOINT s;
-- the same cycle closed by add_rule on top of an installed half
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('a_to_b', 'val.a', 'val.b', '{"a_id": "id"}', '{"y": "x"}');
SELECT * FROM data_sync.add_rule('b_to_a', 'val.b', 'val.a', '{"id": "a_id"}', '{"x": "y"}');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 12. Hostile names: nothing is executed, the names are refused.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = 'x"; DROP TABLE val.pets; --'
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('x"; DROP TABLE val.pets; --', 'val.users', 'val.pets',
    '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "hostile_table"
source = "val.users; DROP TABLE val.pets"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "hostile_column"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = 'phone"; DROP TABLE val.pets; --' }
$$);
ROLLBACK TO SAVEPOINT s;
-- a rule name too long for trigger names, and one with upper case
SAVEPOINT s;
SELECT * FROM data_sync.add_rule(repeat('a', 49), 'val.users', 'val.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('Phone', 'val.users', 'val.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
SELECT to_regclass('val.pets') AS pets_still_there;
SELECT * FROM installed ORDER BY 1, 2;

-- 13. A bad `where` predicate: unknown column; a predicate that tries to end the statement.
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "open_only"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
where = "no_such_column = 'lost'"
$$);
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('open_only', 'val.users', 'val.pets', '{"owner_id": "id"}',
    '{"contact_phone": "phone"}', $$true); DROP TABLE val.pets; SELECT (1$$);
ROLLBACK TO SAVEPOINT s;
-- A predicate that closes the parenthesis it is wrapped in and opens another one: it must be
-- refused (else `(keys AND drift AND (status = 'lost') OR (true)` updates every target row
-- from every source row). Checked through a DO block so the exact wording is free.
SAVEPOINT s;
DO $do$
BEGIN
    PERFORM data_sync.add_rule('open_only', 'val.users', 'val.pets', '{"owner_id": "id"}',
        '{"contact_phone": "phone"}', $$status = 'lost') OR (true$$);
    RAISE NOTICE 'accepted';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'refused, naming the rule and the field: %', SQLERRM LIKE 'data_sync: rule "open_only": where:%';
END
$do$;
ROLLBACK TO SAVEPOINT s;
SELECT to_regclass('val.pets') AS pets_still_there;
SELECT * FROM installed ORDER BY 1, 2;

-- ...while one expression with a trailing comment, or with its own parentheses and a subquery, is fine
-- (both taken back in the same savepoint).
SAVEPOINT s;
SELECT * FROM data_sync.drop_rule('phone');
SELECT * FROM data_sync.add_rule('open_only', 'val.users', 'val.pets', '{"owner_id": "id"}',
    '{"contact_phone": "phone"}', $$status = 'lost' -- only open reports$$);
SELECT * FROM data_sync.add_rule('open_only_2', 'val.a', 'val.b', '{"a_id": "id"}', '{"y": "x"}',
    $$(y IS NULL) OR (id IN (SELECT p.id FROM val.pets p WHERE p.status = 'lost'))$$);
UPDATE val.users SET phone = phone || '!';
ROLLBACK TO SAVEPOINT s;
-- 14. add_rule with a name that is already installed.
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('phone', 'val.users', 'val.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 15. add_rule with bad jsonb: a non-string column, a non-object, an empty object. The message
--     must name the rule and the argument (as load_rules says "in `set.a`" for the same mistake);
--     checked through a DO block so the exact wording is free.
DO $do$
BEGIN
    BEGIN
        PERFORM data_sync.add_rule('bad_json', 'val.users', 'val.pets', '{"owner_id": "id"}', '{"a": 1}');
        RAISE NOTICE 'set_columns {"a": 1}: accepted';
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'set_columns {"a": 1}: refused; names the rule: %, names set: %',
            SQLERRM LIKE 'data_sync: rule "bad_json": %', SQLERRM ~ '\mset(_columns)?\M';
    END;
    BEGIN
        PERFORM data_sync.add_rule('bad_json', 'val.users', 'val.pets', '["owner_id", "id"]', '{"contact_phone": "phone"}');
        RAISE NOTICE 'match_columns [...]: accepted';
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'match_columns [...]: refused; names the rule: %, names match: %',
            SQLERRM LIKE 'data_sync: rule "bad_json": %', SQLERRM ~ '\mmatch(_columns)?\M';
    END;
    BEGIN
        PERFORM data_sync.add_rule('bad_json', 'val.users', 'val.pets', '{"owner_id": "id"}', NULL);
        RAISE NOTICE 'set_columns NULL: accepted';
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'set_columns NULL: refused; names the rule: %, names set: %',
            SQLERRM LIKE 'data_sync: rule "bad_json": %', SQLERRM ~ '\mset(_columns)?\M';
    END;
END
$do$;
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('bad_json', 'val.users', 'val.pets', '{"owner_id": "id"}', '{}');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 16. drop_rule / enable_rule / disable_rule of a rule that does not exist.
SAVEPOINT s;
SELECT * FROM data_sync.drop_rule('no_such_rule');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.enable_rule('no_such_rule');
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.disable_rule('no_such_rule');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;

-- 17. One bad rule among good ones: nothing of the document is applied (here the good rule
--     `phone` would have changed and a new rule `nick_ok` would have been added).
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
where = "status = 'lost'"

[[rule]]
name = "nick_ok"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { code_text = "email" }

[[rule]]
name = "zzz_bad"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { nick = "nick" }
$$);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM installed ORDER BY 1, 2;
SELECT name, where_clause FROM data_sync.rules ORDER BY 1;

-- 18. Loading the same document twice: everything 'unchanged', nothing rebuilt.
SELECT array_agg(oid ORDER BY tgname) AS trigger_oids FROM pg_trigger
WHERE tgrelid IN ('val.users'::regclass, 'val.pets'::regclass) AND NOT tgisinternal \gset
SELECT * FROM data_sync.load_rules($$
[entity.vuser]
table = "val.users"
key = "email"

[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }

[[rule]]
name = "email"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { owner_email = "email" }
$$);
SELECT array_agg(oid ORDER BY tgname) = :'trigger_oids' AS same_triggers FROM pg_trigger
WHERE tgrelid IN ('val.users'::regclass, 'val.pets'::regclass) AND NOT tgisinternal;
SELECT * FROM installed ORDER BY 1, 2;

-- 19. A document without `email`: reported 'removed', its triggers are gone, `phone` keeps working.
SELECT * FROM data_sync.load_rules($$
[entity.vuser]
table = "val.users"
key = "email"

[[rule]]
name = "phone"
source = "val.users"
target = "val.pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$$);
SELECT * FROM installed ORDER BY 1, 2;
UPDATE val.users SET phone = '222', email = 'new@x' WHERE id = 1;
SELECT id, contact_phone, owner_email FROM val.pets;

-- 20. An empty document removes every rule, entity, trigger and generated function.
SELECT * FROM data_sync.load_rules('');
SELECT * FROM installed ORDER BY 1, 2;
SELECT count(*) AS rules_left FROM data_sync.rules;
ROLLBACK;
