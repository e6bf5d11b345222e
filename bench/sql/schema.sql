-- Benchmark data (bench/run.py fills in {users} and {per_user}): users with their phone, and
-- {per_user} lost_pets per user carrying a copy of it; pets with a weight, one health record each
-- (the latest, carrying the same weight) and an empty measurement history.
CREATE TABLE users (id int PRIMARY KEY, phone text NOT NULL, last_login timestamptz);
CREATE TABLE lost_pets (id int PRIMARY KEY, owner_id int NOT NULL, contact_phone text);
CREATE INDEX lost_pets_owner_idx ON lost_pets (owner_id);
INSERT INTO users SELECT g, '+1-555-' || g, now() FROM generate_series(1, {users}) g;
INSERT INTO lost_pets
SELECT g, (g - 1) / {per_user} + 1, '+1-555-' || ((g - 1) / {per_user} + 1)
FROM generate_series(1, {users} * {per_user}) g;

CREATE TABLE pets (id int PRIMARY KEY, owner_id int NOT NULL, weight_kg numeric(6,2),
                   updated_at timestamptz NOT NULL);
CREATE TABLE health_records (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pet_id int NOT NULL,
                             weight numeric(6,2), recorded_at timestamptz NOT NULL);
CREATE INDEX health_records_pet_idx ON health_records (pet_id, recorded_at);
CREATE TABLE pet_measurements (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pet_id int NOT NULL,
                               weight_kg numeric(6,2) NOT NULL, measured_at timestamptz NOT NULL);
INSERT INTO pets SELECT g, g, 10 + g % 30, now() - interval '1 day' FROM generate_series(1, {users}) g;
INSERT INTO health_records (pet_id, weight, recorded_at)
SELECT id, weight_kg, updated_at FROM pets;
VACUUM ANALYZE;
