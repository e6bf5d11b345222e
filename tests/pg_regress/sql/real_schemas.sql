-- Schemas shaped like real applications': partitions laid out unlike their parent, rules on a
-- partition or an inheritance child, several rules filling one row, related entities with several
-- rows, queue keys under other session settings, users' own BEFORE UPDATE and AFTER row triggers.
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY terse
CREATE SCHEMA rs;
CREATE TABLE rs.users (id bigint PRIMARY KEY, phone text, email text);
INSERT INTO rs.users VALUES (1, '111', 'a@x'), (2, '222', 'b@x');

-- 1. A partition created after its parent lost a column has its own attribute numbers: the
--    rule's columns are found by name in the partition a trigger fires on (a crash before), for
--    a target (fill on INSERT through the partition or the parent) and for a source (an UPDATE
--    through the partition propagates).
CREATE TABLE rs.pets (id bigint, gone int, owner_id bigint, contact_phone text) PARTITION BY RANGE (id);
ALTER TABLE rs.pets DROP COLUMN gone;
CREATE TABLE rs.pets_low PARTITION OF rs.pets FOR VALUES FROM (0) TO (100);
CREATE TABLE rs.pets_high (id bigint, owner_id bigint, contact_phone text);
ALTER TABLE rs.pets ATTACH PARTITION rs.pets_high FOR VALUES FROM (100) TO (1000);
SELECT * FROM data_sync.add_rule('phone', 'rs.users', 'rs.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
INSERT INTO rs.pets_low VALUES (10, 1, NULL);
INSERT INTO rs.pets VALUES (11, 2, NULL), (110, 1, NULL);
INSERT INTO rs.pets_high VALUES (120, 2, NULL);
UPDATE rs.users SET phone = '112' WHERE id = 1;
SELECT tableoid::regclass, * FROM rs.pets ORDER BY id;
CREATE TABLE rs.accounts (id bigint PRIMARY KEY, gone text, user_id bigint, phone text) PARTITION BY LIST (id);
ALTER TABLE rs.accounts DROP COLUMN gone;
CREATE TABLE rs.accounts_1 PARTITION OF rs.accounts FOR VALUES IN (7);
CREATE TABLE rs.accounts_2 PARTITION OF rs.accounts FOR VALUES IN (8);
CREATE TABLE rs.account_copies (account_id bigint PRIMARY KEY, phone text);
INSERT INTO rs.accounts VALUES (7, 1, '7'), (8, 2, '8');
INSERT INTO rs.account_copies VALUES (7, NULL), (8, NULL);
SELECT * FROM data_sync.add_rule('account', 'rs.accounts', 'rs.account_copies', '{"account_id": "id"}', '{"phone": "phone"}');
UPDATE rs.accounts_2 SET phone = '8b' WHERE id = 8;
UPDATE rs.accounts SET phone = '7b' WHERE id = 7;
SELECT * FROM rs.account_copies ORDER BY account_id;
SELECT * FROM data_sync.check('account');

-- 2. A rule whose source is one partition, or an inheritance child, propagates the rows written
--    through the parent (whose statements fire the child's row triggers, not its statement
--    triggers). A rule on an inheritance parent with children is refused: its children's rows
--    would not fire the rule's triggers.
CREATE TABLE rs.copies_2 (account_id bigint PRIMARY KEY, phone text);
INSERT INTO rs.copies_2 VALUES (8, NULL);
SELECT * FROM data_sync.add_rule('part2', 'rs.accounts_2', 'rs.copies_2', '{"account_id": "id"}', '{"phone": "phone"}');
UPDATE rs.accounts SET phone = '8c' WHERE id = 8;
SELECT * FROM rs.copies_2;
CREATE TABLE rs.people (id bigint PRIMARY KEY, phone text);
CREATE TABLE rs.staff (badge text, PRIMARY KEY (id)) INHERITS (rs.people);
CREATE TABLE rs.staff_cards (staff_id bigint PRIMARY KEY, phone text);
INSERT INTO rs.staff VALUES (5, '5', 'b5');
INSERT INTO rs.staff_cards VALUES (5, NULL);
SELECT * FROM data_sync.add_rule('staff', 'rs.staff', 'rs.staff_cards', '{"staff_id": "id"}', '{"phone": "phone"}');
UPDATE rs.people SET phone = '5b' WHERE id = 5;
SELECT * FROM rs.staff_cards;
CREATE TABLE rs.people_cards (person_id bigint PRIMARY KEY, phone text);
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('people', 'rs.people', 'rs.people_cards', '{"person_id": "id"}', '{"phone": "phone"}');
ROLLBACK TO SAVEPOINT s;
-- ...and a rule's table that becomes an inheritance parent later disables the rule
SELECT * FROM data_sync.add_rule('cards', 'rs.users', 'rs.people_cards', '{"person_id": "id"}', '{"phone": "phone"}');
CREATE TABLE rs.vip_cards (level int) INHERITS (rs.people_cards);
SELECT name, enabled, disabled_reason FROM data_sync.rules WHERE name = 'cards';

-- 3. A target row re-parented by one statement and filled by two rules (here from one source)
--    gets both rules' columns: the second fill finds the row the first one rewrote.
CREATE TABLE rs.tickets (id bigint PRIMARY KEY, user_id bigint, phone text, email text);
INSERT INTO rs.tickets VALUES (1, 1, NULL, NULL);
SELECT * FROM data_sync.load_rules($$
[[rule]]
name = "t_phone"
source = "rs.users"
target = "rs.tickets"
match = { user_id = "id" }
set = { phone = "phone" }

[[rule]]
name = "t_email"
source = "rs.users"
target = "rs.tickets"
match = { user_id = "id" }
set = { email = "email" }
$$) ORDER BY 2;
SELECT * FROM rs.tickets;
UPDATE rs.tickets SET user_id = 2;
SELECT * FROM rs.tickets;

-- 4. Two rules writing one column are refused, naming both.
SAVEPOINT s;
SELECT * FROM data_sync.add_rule('t_phone_2', 'rs.users', 'rs.tickets', '{"user_id": "id"}', '{"phone": "email"}');
ROLLBACK TO SAVEPOINT s;

-- 5. A comprehensive re-sync visits every related row: a user with two pets re-syncs the
--    vaccinations of both.
CREATE TABLE rs.owners (id bigint PRIMARY KEY, phone text);
CREATE TABLE rs.animals (id bigint PRIMARY KEY, owner_id bigint, name text);
CREATE TABLE rs.shots (id bigint PRIMARY KEY, animal_id bigint, animal_name text);
INSERT INTO rs.owners VALUES (1, '1');
INSERT INTO rs.animals VALUES (10, 1, 'Rex'), (11, 1, 'Tom');
INSERT INTO rs.shots VALUES (100, 10, 'Rex'), (101, 11, 'Tom');
SELECT * FROM data_sync.load_rules($$
[entity.owner]
table = "rs.owners"
key = "id"
related.animal = { owner_id = "id" }

[entity.animal]
table = "rs.animals"
key = "id"
related.shot = { animal_id = "id" }

[entity.shot]
table = "rs.shots"
key = "id"

[[rule]]
name = "shot_name"
source = "rs.animals"
target = "rs.shots"
match = { animal_id = "id" }
set = { animal_name = "name" }
$$) ORDER BY 1, 2;
SELECT * FROM data_sync.disable_rule('shot_name');
UPDATE rs.animals SET name = name || '!';
SELECT * FROM data_sync.enable_rule('shot_name');
SELECT rs.sync_all_owner_data_comprehensive(1);
SELECT * FROM rs.shots ORDER BY id;

-- 6. Queue items name their rows whatever the session settings of the writer and the processor:
--    a date key written under DateStyle DMY is the same day when processed under MDY.
CREATE TABLE rs.days (day date PRIMARY KEY, note text);
CREATE TABLE rs.day_copies (id int PRIMARY KEY, day date, note text);
INSERT INTO rs.days VALUES ('2026-02-03', 'a'), ('2026-03-02', 'b');
INSERT INTO rs.day_copies VALUES (1, '2026-02-03', 'a'), (2, '2026-03-02', 'b');
SELECT * FROM data_sync.add_rule('days', 'rs.days', 'rs.day_copies', '{"day": "day"}', '{"note": "note"}', NULL,
                                 '{"mode": "async"}');
SET LOCAL DateStyle = 'SQL, DMY';
UPDATE rs.days SET note = 'a2' WHERE day = '2026-02-03';
SET LOCAL DateStyle = 'SQL, MDY';
SELECT processed, succeeded FROM data_sync.process_queue();
RESET DateStyle;
SELECT * FROM rs.day_copies ORDER BY id;

-- 7. A user's BEFORE UPDATE trigger that sets a copied column from others: an UPDATE that does
--    not name the column still propagates it (the rule watches such a table without column lists,
--    and re-creates its triggers when such a trigger is added later).
CREATE TABLE rs.contacts (id bigint PRIMARY KEY, area text, local text, phone text);
CREATE TABLE rs.contact_copies (contact_id bigint PRIMARY KEY, phone text);
INSERT INTO rs.contacts VALUES (1, '01', '234', '01-234');
INSERT INTO rs.contact_copies VALUES (1, '01-234');
SELECT * FROM data_sync.add_rule('contact', 'rs.contacts', 'rs.contact_copies', '{"contact_id": "id"}', '{"phone": "phone"}');
CREATE FUNCTION rs.derive_phone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.phone := NEW.area || '-' || NEW.local;
    RETURN NEW;
END $$;
CREATE TRIGGER derive BEFORE INSERT OR UPDATE ON rs.contacts FOR EACH ROW EXECUTE FUNCTION rs.derive_phone();
SELECT tgname, pg_get_triggerdef(oid) LIKE '%UPDATE OF%' AS column_list
FROM pg_trigger WHERE tgname LIKE 'data_sync_contact_s%' ORDER BY 1;
UPDATE rs.contacts SET local = '999';
SELECT * FROM rs.contact_copies;
-- ...and the same for a target: a user's BEFORE INSERT trigger that puts a new row into the rule's
-- scope runs after data_sync's in-place fill would (triggers fire in name order), so such a target
-- is filled after the insert, like a re-parented row.
CREATE TABLE rs.requests (id bigint PRIMARY KEY, contact_id bigint, phone text, state text);
SELECT * FROM data_sync.add_rule('request', 'rs.contacts', 'rs.requests', '{"contact_id": "id"}', '{"phone": "phone"}',
                                 $$state = 'open'$$);
CREATE FUNCTION rs.open_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.state := coalesce(NEW.state, 'open');
    RETURN NEW;
END $$;
CREATE TRIGGER open_it BEFORE INSERT ON rs.requests FOR EACH ROW EXECUTE FUNCTION rs.open_request();
INSERT INTO rs.requests (id, contact_id) VALUES (1, 1);
SELECT * FROM rs.requests;
-- a row entering the `where` scope by an update of a column the `where` names is filled too
INSERT INTO rs.requests (id, contact_id, state) VALUES (2, 1, 'draft');
UPDATE rs.requests SET state = 'open' WHERE id = 2;
SELECT * FROM rs.requests ORDER BY id;
-- ...also when the target's own statement trigger brings rows into the scope while data_sync
-- itself writes the target (its propagation of a source change)
INSERT INTO rs.requests (id, contact_id, state) VALUES (3, 1, 'draft'), (4, 1, 'open');
CREATE FUNCTION rs.open_drafts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM rs.requests WHERE state = 'draft') THEN
        UPDATE rs.requests SET state = 'open' WHERE state = 'draft';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER open_drafts AFTER UPDATE ON rs.requests FOR EACH STATEMENT EXECUTE FUNCTION rs.open_drafts();
UPDATE rs.contacts SET local = '000';
SELECT * FROM rs.requests ORDER BY id;
DROP TRIGGER open_drafts ON rs.requests;

-- 8. latest_by: when the newest row of a key is deleted, re-parented away or stops being the
--    newest, the row that becomes the newest is filled (it was not maintained before).
CREATE TABLE rs.readings (id bigint PRIMARY KEY, contact_id bigint, at int, phone text);
INSERT INTO rs.readings VALUES (1, 1, 1, NULL), (2, 1, 2, NULL), (3, 1, 3, NULL);
SELECT * FROM data_sync.add_rule('reading', 'rs.contacts', 'rs.readings', '{"contact_id": "id"}', '{"phone": "phone"}',
                                 NULL, '{"latest_by": "at"}');
SELECT data_sync.sync_all('reading');
UPDATE rs.contacts SET local = '777';
SELECT * FROM rs.readings ORDER BY id;
DELETE FROM rs.readings WHERE id = 3;
SELECT * FROM rs.readings ORDER BY id;
UPDATE rs.readings SET contact_id = 9 WHERE id = 2;
UPDATE rs.readings SET at = 0 WHERE id = 1;
SELECT * FROM rs.readings ORDER BY id;
SELECT * FROM data_sync.check('reading');

-- 9. A user's AFTER row trigger that writes the row again, firing before data_sync's own (name
--    order): data_sync's trigger then holds a row version already replaced, and propagates the
--    current one (copy and append rules), not the stale values it was handed.
CREATE TABLE rs.members (id bigint PRIMARY KEY, phone text);
CREATE TABLE rs.member_cards (id bigint PRIMARY KEY, member_id bigint, phone text);
CREATE TABLE rs.member_phones (n bigserial PRIMARY KEY, member_id bigint, phone text);
INSERT INTO rs.member_cards VALUES (1, 5, NULL);
SELECT * FROM data_sync.add_rule('card', 'rs.members', 'rs.member_cards', '{"member_id": "id"}', '{"phone": "phone"}');
SELECT * FROM data_sync.add_rule('member_phones', 'rs.members', 'rs.member_phones', NULL,
    '{"member_id": "id", "phone": "phone"}', NULL, '{"kind": "append", "on_insert": true}');
CREATE FUNCTION rs.default_phone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rs.members SET phone = 'unknown' WHERE id = NEW.id AND phone IS NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER aa_default_phone AFTER INSERT OR UPDATE ON rs.members FOR EACH ROW EXECUTE FUNCTION rs.default_phone();
INSERT INTO rs.members VALUES (5, NULL);
UPDATE rs.members SET phone = NULL WHERE id = 5;
SELECT * FROM rs.members;
SELECT * FROM rs.member_cards;
SELECT member_id, phone FROM rs.member_phones ORDER BY n DESC LIMIT 1;

-- 10. A bidirectional rule's own write is not carried back, but what the other table's own
--     triggers write meanwhile is: the way back sets nicks.nick, the user's AFTER trigger on
--     nicks rewrites it (in a statement of its own), and that change flows forward again
--     (found by the differential tester: the trigger's change used to be taken for the echo).
CREATE TABLE rs.nicks (id bigint PRIMARY KEY, nick text);
CREATE TABLE rs.badges (id bigint PRIMARY KEY, nick_id bigint UNIQUE, nick text);
INSERT INTO rs.nicks VALUES (1, 'ANN');
INSERT INTO rs.badges VALUES (1, 1, 'ANN');
SELECT * FROM data_sync.add_rule('badge', 'rs.nicks', 'rs.badges', '{"nick_id": "id"}', '{"nick": "nick"}',
                                 NULL, '{"bidirectional": true}');
CREATE FUNCTION rs.upper_nick() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rs.nicks SET nick = upper(nick) WHERE id = NEW.id AND nick <> upper(nick);
    RETURN NULL;
END $$;
CREATE TRIGGER zz_upper AFTER INSERT OR UPDATE ON rs.nicks FOR EACH ROW EXECUTE FUNCTION rs.upper_nick();
UPDATE rs.badges SET nick = 'bob' WHERE id = 1;
SELECT * FROM rs.nicks;
SELECT * FROM rs.badges;
SELECT * FROM data_sync.check('badge');
ROLLBACK;

-- 8. status() works in a session that has not called into the library yet, and DROP EXTENSION
--    takes the generated sync_all_* functions with it.
CREATE EXTENSION data_sync;
CREATE SCHEMA rs8;
CREATE TABLE rs8.users (id bigint PRIMARY KEY, phone text);
SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "rs8.users"
key = "id"
$$);
\c
SELECT count(*) FROM data_sync.status();
DROP EXTENSION data_sync;
SELECT proname FROM pg_proc WHERE pronamespace = 'rs8'::regnamespace;
DROP SCHEMA rs8 CASCADE;
