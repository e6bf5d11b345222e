-- The pet-weight story: an append rule keeps a measurement history, a bidirectional copy rule
-- keeps pets.weight_kg and the latest health record's weight equal, last write winning by the
-- timestamps on each side.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA w;
CREATE TABLE w.pets (id int PRIMARY KEY, name text, weight_kg numeric(5,2), weight_updated_at timestamptz);
CREATE TABLE w.health_records (id int PRIMARY KEY, pet_id int, weight numeric(5,2), recorded_at timestamptz,
                               note text);
CREATE TABLE w.pet_measurements (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pet_id int,
                                 weight_kg numeric(5,2), measured_at timestamptz, origin text);
INSERT INTO w.pets VALUES (1, 'Rex', 30.00, '2026-01-01'), (2, 'Tom', 4.00, '2026-01-01');
INSERT INTO w.health_records VALUES
    (10, 1, 29.00, '2025-06-01', 'old visit'),
    (11, 1, 30.00, '2026-01-01', 'latest visit'),
    (20, 2, 4.00, '2026-01-01', 'latest visit');

SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "pet_weight_history"
kind = "append"
source = "w.pets"
target = "w.pet_measurements"
set = { pet_id = "id", weight_kg = "weight_kg", measured_at = "weight_updated_at" }
values = { origin = "'pets.' || name" }
on_insert = true

[[rule]]
name = "pet_weight_latest_record"
source = "w.pets"
target = "w.health_records"
match = { pet_id = "id" }
set = { weight = "weight_kg" }
latest_by = "recorded_at"
bidirectional = true
source_timestamp = "weight_updated_at"
target_timestamp = "recorded_at"
$$);
SELECT tgname FROM pg_trigger WHERE tgname LIKE 'data_sync_%' ORDER BY 1;

CREATE VIEW w.state AS
SELECT p.id, p.weight_kg, p.weight_updated_at,
       (SELECT string_agg(h.id || ':' || coalesce(h.weight::text, 'null'), ' ' ORDER BY h.id)
        FROM w.health_records h WHERE h.pet_id = p.id) AS records,
       (SELECT string_agg(m.weight_kg || '@' || m.origin, ' ' ORDER BY m.id)
        FROM w.pet_measurements m WHERE m.pet_id = p.id) AS history
FROM w.pets p ORDER BY p.id;

-- 1. The pet's weight changes: one history row, the latest record follows; the older record keeps
--    its weight (history), and a change of another column appends nothing.
UPDATE w.pets SET weight_kg = 31.00, weight_updated_at = '2026-02-01' WHERE id = 1;
UPDATE w.pets SET name = 'Rexy' WHERE id = 1;
SELECT * FROM w.state;

-- 2. A vet records a newer visit with a weight: the pet follows (last write wins), which appends
--    a history row in turn.
INSERT INTO w.health_records VALUES (12, 1, 32.50, '2026-03-01', 'new visit');
SELECT * FROM w.state;

-- 3. A late entry of an older visit is history: it neither becomes latest nor changes the pet.
INSERT INTO w.health_records VALUES (13, 1, 28.00, '2025-12-01', 'late entry');
-- 4. A new visit without a weight is filled from the pet.
INSERT INTO w.health_records VALUES (14, 1, NULL, '2026-04-01', 'weight not taken');
SELECT * FROM w.state;

-- 5. A correction of the latest record whose own timestamp is older than the pet's newest weight
--    loses: the pet keeps its weight, the skip is logged as a conflict, and the record takes the
--    pet's weight back (last write wins on both sides: they converge).
UPDATE w.pets SET weight_kg = 33.00, weight_updated_at = '2026-05-01' WHERE id = 1;
UPDATE w.health_records SET weight = 31.00 WHERE id = 14;
SELECT * FROM w.state;
-- ...and a pet weight older than the latest record does not overwrite it either: the pet takes
--    the record's newer weight (and timestamp) instead
UPDATE w.health_records SET weight = 4.50, recorded_at = '2026-06-01' WHERE id = 20;
UPDATE w.pets SET weight_kg = 4.20, weight_updated_at = '2026-05-15' WHERE id = 2;
SELECT * FROM w.state;

-- 6. A multi-row update: one statement per rule, one log row per rule.
UPDATE w.pets SET weight_kg = weight_kg + 1, weight_updated_at = '2026-07-01';
SELECT * FROM w.state;
-- 7. A new pet appends its first measurement (on_insert).
INSERT INTO w.pets VALUES (3, 'Kit', 2.00, '2026-07-02');
SELECT * FROM w.state;

-- 8. A record moved to another pet (re-parented) and now that pet's latest: last write wins as
--    for any other write. Newer than the pet's weight: the pet takes the record's weight; older:
--    the record takes the pet's.
INSERT INTO w.health_records VALUES (30, 2, 9.00, '2026-08-01', 'wrong pet'), (31, 2, 8.00, '2026-01-15', 'old');
UPDATE w.health_records SET pet_id = 3 WHERE id = 30;
UPDATE w.health_records SET pet_id = 3, recorded_at = '2026-07-03' WHERE id = 31;
SELECT id, weight_kg, weight_updated_at FROM w.pets WHERE id = 3;
SELECT id, pet_id, weight, recorded_at FROM w.health_records WHERE id IN (30, 31) ORDER BY id;
DELETE FROM w.health_records WHERE id = 30;
UPDATE w.health_records SET pet_id = 2 WHERE id = 31;    -- back, older than pet 2's weight
SELECT id, pet_id, weight, recorded_at FROM w.health_records WHERE id = 31;
SELECT * FROM data_sync.check();

SELECT rule_name, operation, source_table, source_key, source_rows, target_table, rows_changed, status
FROM data_sync.sync_log ORDER BY id;
-- drift: none (append rules are not checked: their rows are history)
SELECT * FROM data_sync.check();
ROLLBACK;

-- An append rule's `where` and `values` read the source row (qualified or not, whole-row too),
-- the same whether the statement changed one row (appended from its new values) or several
-- (read back from the table).
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA a;
CREATE TABLE a.items (id int PRIMARY KEY, name text, price numeric(8,2), hidden boolean NOT NULL DEFAULT false);
CREATE TABLE a.price_history (id serial PRIMARY KEY, item_id int, price numeric(8,2), label text, snapshot jsonb);
INSERT INTO a.items VALUES (1, 'pen', 1.50, false), (2, 'ink', 9.99, true), (3, 'pad', 3.00, false);
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "prices"
kind = "append"
source = "a.items"
target = "a.price_history"
set = { item_id = "id", price = "price" }
values = { label = "items.name || ' at ' || price", snapshot = "pg_catalog.to_jsonb(items) - 'hidden'" }
where = "NOT items.hidden AND price IS NOT NULL"
$$);
UPDATE a.items SET price = 1.75 WHERE id = 1;                 -- one row: appended
UPDATE a.items SET price = 10.50 WHERE id = 2;                -- one row, hidden: not appended
UPDATE a.items SET price = price + 1 WHERE id IN (1, 2, 3);   -- three rows: two appended
UPDATE a.items SET price = NULL WHERE id = 3;                 -- NULL price: not appended
SELECT item_id, price, label, snapshot FROM a.price_history ORDER BY id;
-- values that need the table itself (a system column) cannot read the one changed row's values:
-- such a rule reads the row from the table, for one row as for many
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "prices"
kind = "append"
source = "a.items"
target = "a.price_history"
set = { item_id = "id", price = "price" }
values = { label = "items.tableoid::regclass::text" }
$$);
UPDATE a.items SET price = 5 WHERE id = 1;
UPDATE a.items SET price = 6 WHERE id IN (1, 3);
SELECT item_id, price, label FROM a.price_history WHERE label = 'a.items' ORDER BY id;
SELECT status, count(*) FROM data_sync.sync_log GROUP BY 1;
ROLLBACK;
