-- Entities: sync_all_<entity>_data(key) and sync_all_<entity>_data_comprehensive(key), which
-- also re-syncs related entities' rows (transitively, each entity once, even when related
-- entities point back).
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA e;
CREATE TABLE e.users (id int PRIMARY KEY, login text UNIQUE, phone text);
CREATE TABLE e.pets (id int PRIMARY KEY, owner_id int, name text);
CREATE TABLE e.lost_pets (id int PRIMARY KEY, owner_id int, pet_id int, contact_phone text, pet_name text);
INSERT INTO e.users VALUES (1, 'alice', '111'), (2, 'bob', '222');
INSERT INTO e.pets VALUES (10, 1, 'Rex'), (20, 2, 'Tom');
INSERT INTO e.lost_pets VALUES (100, 1, 10, 'stale', 'stale'), (200, 2, 20, 'stale', 'stale');

SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "e.users"
key = "login"
related.pet = { owner_id = "id" }

[entity.pet]
table = "e.pets"
key = "id"
related.user = { id = "owner_id" }    # back to the owner: visited once, no loop

[[rule]]
name = "phone"
source = "e.users"
target = "e.lost_pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }

[[rule]]
name = "pet_name"
source = "e.pets"
target = "e.lost_pets"
match = { pet_id = "id" }
set = { pet_name = "name" }
$$);
SELECT name, key_column, related FROM data_sync.entities ORDER BY name;
SELECT p.oid::regprocedure, obj_description(p.oid, 'pg_proc') FROM pg_proc p
WHERE p.pronamespace = 'e'::regnamespace ORDER BY 1;

-- the plain function re-syncs the user's own rules only
SELECT e.sync_all_user_data('alice');
SELECT * FROM e.lost_pets ORDER BY id;
-- the comprehensive one also re-syncs alice's pets (and not bob's)
SELECT e.sync_all_user_data_comprehensive('alice');
SELECT * FROM e.lost_pets ORDER BY id;
-- starting from a pet reaches its owner
SELECT e.sync_all_pet_data_comprehensive(20);
SELECT * FROM e.lost_pets ORDER BY id;
-- The query of a link's related rows is kept for the session and planned again after one of
-- its tables changes: a new pet is found, and once pets.owner_id is renamed the link fails
-- naming the entity instead of running the old query.
INSERT INTO e.pets VALUES (11, 1, 'Kit');
INSERT INTO e.lost_pets VALUES (110, 1, 11, NULL, NULL);
UPDATE e.lost_pets SET contact_phone = 'stale', pet_name = 'stale' WHERE id = 110;
SELECT e.sync_all_user_data_comprehensive('alice');
SELECT * FROM e.lost_pets WHERE id = 110;
SAVEPOINT s;
ALTER TABLE e.pets RENAME COLUMN owner_id TO owner_ref;
SELECT e.sync_all_user_data_comprehensive('alice');
ROLLBACK TO SAVEPOINT s;
SELECT e.sync_all_user_data_comprehensive('alice');

-- a related entity that is not in the document, and a type mismatch, are refused
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "e.users"
key = "login"
related.pet = { owner_id = "id" }
$$);
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s;
SELECT * FROM data_sync.load_rules($$
[entity.user]
table = "e.users"
key = "login"
related.pet = { owner_id = "login" }
[entity.pet]
table = "e.pets"
key = "id"
$$);
ROLLBACK TO SAVEPOINT s;
ROLLBACK;
