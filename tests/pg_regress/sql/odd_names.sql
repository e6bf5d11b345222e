-- Quoted, mixed-case and non-public names, composite keys, several rules on one source table.
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA "Clinic";
CREATE TABLE "Clinic"."Owners" ("Id" int, "Branch" text, "Phone Number" text, "select" text,
                                PRIMARY KEY ("Id", "Branch"));
CREATE TABLE "Clinic"."Visits" (id int PRIMARY KEY, "owner Id" int, branch text, phone text, "Select" text);
CREATE TABLE public.cards (id int PRIMARY KEY, owner int, branch text, phone text);
INSERT INTO "Clinic"."Owners" VALUES (1, 'north', '111', 'a'), (1, 'south', '222', 'b');
INSERT INTO "Clinic"."Visits" VALUES (10, 1, 'north', NULL, NULL), (11, 1, 'south', NULL, NULL);
INSERT INTO public.cards VALUES (100, 1, 'south', NULL);

SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "owner_phone_to_visits"
source = '"Clinic"."Owners"'
target = '"Clinic"."Visits"'
match = { "owner Id" = "Id", branch = "Branch" }
set = { phone = "Phone Number", Select = "select" }

[[rule]]
name = "owner_phone_to_cards"
source = '"Clinic"."Owners"'
target = "PUBLIC.CARDS"
match = { owner = "Id", branch = "Branch" }
set = { phone = "Phone Number" }
$$);
SELECT name, source_schema, source_table, target_schema, target_table, target_keys, source_keys
FROM data_sync.rules ORDER BY name;

SELECT data_sync.sync_all();
SELECT * FROM "Clinic"."Visits" ORDER BY id;
SELECT * FROM public.cards;

-- one UPDATE of two composite-keyed source rows: both rules propagate, one statement each
UPDATE "Clinic"."Owners" SET "Phone Number" = "Phone Number" || '-new', "select" = upper("select");
SELECT * FROM "Clinic"."Visits" ORDER BY id;
SELECT * FROM public.cards;
SELECT rule_name, operation, source_key, source_rows, rows_changed FROM data_sync.sync_log ORDER BY id;

-- a single composite key is logged in row form; a target insert is filled through both key columns
UPDATE "Clinic"."Owners" SET "Phone Number" = 'x' WHERE "Id" = 1 AND "Branch" = 'north';
SELECT source_key FROM data_sync.sync_log ORDER BY id DESC LIMIT 1;
INSERT INTO "Clinic"."Visits" VALUES (12, 1, 'north', NULL, NULL), (13, 1, 'east', NULL, NULL);
SELECT * FROM "Clinic"."Visits" WHERE id >= 12 ORDER BY id;
SELECT * FROM data_sync.check();

-- the generated SQL quotes every identifier
SELECT statement FROM data_sync.explain('owner_phone_to_visits') WHERE step = 'propagate many source rows';
ROLLBACK;
