-- TailTracker: example schema for data_sync (a pet-care app).
--
-- Several tables keep *copies* of values owned by another table (a user's
-- phone, a clinic name, a vet's name) so the app can read them without joins.
-- sync_rules.toml tells data_sync how to keep those copies in step:
--   users.phone               -> lost_pets.contact_phone
--                             -> pets.emergency_contact_phone
--                             -> veterinarians.phone (for vets who are users)
--   veterinarians.clinic_name -> health_records.clinic_name
--   veterinarians.name        -> user_events.veterinarian_name
--
-- The seed rows below are deliberately partly stale/NULL in those copied
-- columns so the demo can show data_sync.sync_all() repairing them.
--
-- Re-runnable: drops and recreates everything (example data, not an extension script).

SET client_min_messages = warning;  -- hide "does not exist, skipping" notices

BEGIN;

DROP TABLE IF EXISTS public.pet_measurements CASCADE;
DROP TABLE IF EXISTS public.user_events CASCADE;
DROP TABLE IF EXISTS public.health_records CASCADE;
DROP TABLE IF EXISTS public.lost_pets CASCADE;
DROP TABLE IF EXISTS public.pets CASCADE;
DROP TABLE IF EXISTS public.veterinarians CASCADE;
DROP TABLE IF EXISTS public.users CASCADE;

-- App users; auth_user_id is the id issued by the auth provider.
CREATE TABLE public.users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    auth_user_id    uuid        NOT NULL UNIQUE,
    email           text        NOT NULL UNIQUE,
    full_name       text        NOT NULL,
    phone           text,
    is_veterinarian boolean     NOT NULL DEFAULT false,
    last_login      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Vets; a vet may also be an app user (user_id), in which case phone copies users.phone.
CREATE TABLE public.veterinarians (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint UNIQUE REFERENCES public.users (id) ON DELETE SET NULL,
    name        text NOT NULL,
    clinic_name text NOT NULL,
    phone       text,
    email       text
);

CREATE TABLE public.pets (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id                  bigint NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    name                      text   NOT NULL,
    species                   text   NOT NULL,
    breed                     text,
    birth_date                date,
    weight_kg                 numeric(6,2) CHECK (weight_kg > 0),
    emergency_contact_user_id bigint REFERENCES public.users (id) ON DELETE SET NULL,
    emergency_contact_phone   text,   -- copy of users.phone of the emergency contact
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pets_owner_id_idx ON public.pets (owner_id);
CREATE INDEX pets_emergency_contact_user_id_idx ON public.pets (emergency_contact_user_id);

CREATE TABLE public.lost_pets (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pet_id             bigint NOT NULL REFERENCES public.pets (id) ON DELETE CASCADE,
    owner_id           bigint NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    status             text   NOT NULL DEFAULT 'lost' CHECK (status IN ('lost', 'found')),
    last_seen_location text,
    contact_phone      text,   -- copy of the owner's users.phone
    reported_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lost_pets_pet_id_idx ON public.lost_pets (pet_id);
CREATE INDEX lost_pets_owner_id_idx ON public.lost_pets (owner_id);

CREATE TABLE public.health_records (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pet_id          bigint NOT NULL REFERENCES public.pets (id) ON DELETE CASCADE,
    veterinarian_id bigint REFERENCES public.veterinarians (id) ON DELETE SET NULL,
    clinic_name     text,   -- copy of veterinarians.clinic_name (free text when no vet)
    record_type     text NOT NULL,
    weight          numeric(6,2),
    notes           text,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX health_records_pet_id_idx ON public.health_records (pet_id);
CREATE INDEX health_records_veterinarian_id_idx ON public.health_records (veterinarian_id);

CREATE TABLE public.user_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
    pet_id            bigint REFERENCES public.pets (id) ON DELETE CASCADE,
    veterinarian_id   bigint REFERENCES public.veterinarians (id) ON DELETE SET NULL,
    veterinarian_name text,   -- copy of veterinarians.name
    event_type        text NOT NULL,
    scheduled_at      timestamptz
);
CREATE INDEX user_events_user_id_idx ON public.user_events (user_id);
CREATE INDEX user_events_pet_id_idx ON public.user_events (pet_id);
CREATE INDEX user_events_veterinarian_id_idx ON public.user_events (veterinarian_id);

CREATE TABLE public.pet_measurements (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pet_id      bigint       NOT NULL REFERENCES public.pets (id) ON DELETE CASCADE,
    weight_kg   numeric(6,2) NOT NULL CHECK (weight_kg > 0),
    measured_at timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX pet_measurements_pet_id_idx ON public.pet_measurements (pet_id);

-- ---------------------------------------------------------------------------
-- Seed data. Tables were just recreated, so identity ids start at 1 and the
-- literal foreign keys below are stable.
-- ---------------------------------------------------------------------------

-- users: 1 Alice, 2 Bob, 3 Dr. Carol (a vet), 4 Dave
INSERT INTO public.users (auth_user_id, email, full_name, phone, is_veterinarian, last_login) VALUES
    ('11111111-1111-1111-1111-111111111111', 'alice@example.com', 'Alice Johnson',    '+1-555-0101', false, '2024-05-01 09:15+00'),
    ('22222222-2222-2222-2222-222222222222', 'bob@example.com',   'Bob Martinez',     '+1-555-0102', false, '2024-05-02 18:40+00'),
    ('33333333-3333-3333-3333-333333333333', 'carol@example.com', 'Dr. Carol Nguyen', '+1-555-0103', true,  '2024-05-03 07:05+00'),
    ('44444444-4444-4444-4444-444444444444', 'dave@example.com',  'Dave Patel',       '+1-555-0104', false, NULL);

-- veterinarians: 1 Dr. Carol (also user 3; phone is stale), 2 Dr. Ethan (not a user)
INSERT INTO public.veterinarians (user_id, name, clinic_name, phone, email) VALUES
    (3,    'Dr. Carol Nguyen', 'Happy Paws Clinic',         '+1-555-0999', 'carol@happypaws.example'),
    (NULL, 'Dr. Ethan Brooks', 'Riverside Animal Hospital', '+1-555-0200', 'ethan@riverside.example');

-- pets: 1 Bella, 2 Milo (Alice); 3 Rocky (Bob); 4 Pepper (Carol); 5 Luna, 6 Max (Dave)
INSERT INTO public.pets (owner_id, name, species, breed, birth_date, weight_kg,
                         emergency_contact_user_id, emergency_contact_phone) VALUES
    (1, 'Bella',  'dog',    'Golden Retriever', '2019-04-12', 29.50, 2,    '+1-555-0000'),  -- stale
    (1, 'Milo',   'cat',    'Maine Coon',       '2021-08-03',  6.80, 2,    NULL),           -- missing
    (2, 'Rocky',  'dog',    'Boxer',            '2018-01-20', 31.20, 1,    '+1-555-0101'),  -- correct
    (3, 'Pepper', 'rabbit', 'Holland Lop',      '2022-03-14',  1.70, NULL, NULL),
    (4, 'Luna',   'cat',    'Siamese',          '2020-11-30',  4.10, 3,    NULL),           -- missing
    (4, 'Max',    'dog',    'Beagle',           '2017-06-05', 12.40, NULL, NULL);

-- lost_pets: contact_phone copies the owner's phone
INSERT INTO public.lost_pets (pet_id, owner_id, status, last_seen_location, contact_phone, reported_at) VALUES
    (2, 1, 'lost',  'Elm Street park, near the pond', NULL,          '2024-05-04 20:30+00'),  -- missing
    (3, 2, 'found', 'Behind the Oak Ave grocery',     '+1-555-0002', '2024-04-18 08:00+00'),  -- stale
    (5, 4, 'lost',  'Maple Court parking lot',        '+1-555-0104', '2024-05-05 06:45+00');  -- correct

-- health_records: clinic_name copies the vet's clinic (free text when there is no vet)
INSERT INTO public.health_records (pet_id, veterinarian_id, clinic_name, record_type, weight, notes, recorded_at) VALUES
    (1, 1,    NULL,                        'checkup',     29.50, 'Healthy, teeth cleaning advised', '2024-03-10 10:00+00'),  -- missing
    (2, 1,    'Happy Paws Vet',            'vaccination',  6.80, 'FVRCP booster',                   '2024-03-22 15:30+00'),  -- stale
    (3, 2,    'Riverside Animal Hospital', 'surgery',     31.20, 'Removed benign lump',             '2024-02-02 09:00+00'),  -- correct
    (5, 2,    NULL,                        'dental',       4.10, 'Two extractions',                 '2024-04-15 11:15+00'),  -- missing
    (4, NULL, 'Downtown Exotic Pets',      'checkup',      1.70, 'Nail trim',                       '2024-04-01 14:00+00');  -- no vet: untouched

-- user_events: veterinarian_name copies veterinarians.name
INSERT INTO public.user_events (user_id, pet_id, veterinarian_id, veterinarian_name, event_type, scheduled_at) VALUES
    (1, 1, 1,    'Dr. C. Nguyen',    'appointment',          '2024-06-01 09:00+00'),  -- stale
    (2, 3, 2,    NULL,               'vaccination_reminder', '2024-06-15 12:00+00'),  -- missing
    (4, 5, 2,    'Dr. Ethan Brooks', 'appointment',          '2024-05-20 16:30+00'),  -- correct
    (4, 6, NULL, NULL,               'grooming',             '2024-05-25 10:00+00'),
    (1, 2, NULL, NULL,               'medication_reminder',  '2024-05-06 08:00+00');

INSERT INTO public.pet_measurements (pet_id, weight_kg, measured_at) VALUES
    (1, 28.90, '2024-01-10 10:00+00'),
    (1, 29.50, '2024-03-10 10:00+00'),
    (2,  6.80, '2024-03-22 15:30+00'),
    (3, 31.20, '2024-02-02 09:00+00'),
    (5,  4.10, '2024-04-15 11:15+00'),
    (6, 12.40, '2024-04-20 17:00+00');

COMMIT;
