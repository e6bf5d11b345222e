-- TailTracker walkthrough for data_sync. Run by scripts/demo.sh after schema.sql:
--   psql -v ON_ERROR_STOP=1 -X -v rules="$(cat sync_rules.toml)" -f demo.sql
\set QUIET on
\pset null '(null)'
\pset footer off
SET client_min_messages = warning;
\set QUIET off

\echo
\echo '=== 1. Install data_sync and load the TailTracker rules (sync_rules.toml) ==='
CREATE EXTENSION data_sync;
SELECT * FROM data_sync.load_rules(:'rules');

\echo
\echo '=== 2. Before: the seed data has stale or missing copies ==='
\echo '--- users (the source of the phone numbers)'
SELECT id, auth_user_id, full_name, phone, is_veterinarian FROM users ORDER BY id;

\echo '--- lost_pets.contact_phone should equal the owner''s phone'
SELECT lp.id, p.name AS pet, lp.status, u.phone AS owner_phone, lp.contact_phone,
       lp.contact_phone IS NOT DISTINCT FROM u.phone AS in_sync
FROM lost_pets lp JOIN pets p ON p.id = lp.pet_id JOIN users u ON u.id = lp.owner_id
ORDER BY lp.id;

\echo '--- pets.emergency_contact_phone should equal the emergency contact''s phone'
SELECT p.id, p.name AS pet, u.full_name AS emergency_contact, u.phone AS contact_user_phone,
       p.emergency_contact_phone,
       p.emergency_contact_phone IS NOT DISTINCT FROM u.phone AS in_sync
FROM pets p JOIN users u ON u.id = p.emergency_contact_user_id
ORDER BY p.id;

\echo '--- veterinarians.phone should equal the phone of the vet''s user account'
SELECT v.id, v.name, u.phone AS user_phone, v.phone, v.phone IS NOT DISTINCT FROM u.phone AS in_sync
FROM veterinarians v JOIN users u ON u.id = v.user_id
ORDER BY v.id;

\echo '--- health_records.clinic_name should equal the vet''s clinic'
SELECT h.id, p.name AS pet, h.record_type, v.clinic_name AS vet_clinic, h.clinic_name,
       h.clinic_name IS NOT DISTINCT FROM v.clinic_name AS in_sync
FROM health_records h JOIN pets p ON p.id = h.pet_id JOIN veterinarians v ON v.id = h.veterinarian_id
ORDER BY h.id;

\echo '--- user_events.veterinarian_name should equal the vet''s name'
SELECT e.id, e.event_type, v.name AS vet_name, e.veterinarian_name,
       e.veterinarian_name IS NOT DISTINCT FROM v.name AS in_sync
FROM user_events e JOIN veterinarians v ON v.id = e.veterinarian_id
ORDER BY e.id;

\echo '--- data_sync.check(): drifted rows per rule'
SELECT * FROM data_sync.check();

\echo
\echo '=== 3. Repair one user: sync_all_user_data(auth_user_id) for Alice ==='
SELECT sync_all_user_data('11111111-1111-1111-1111-111111111111');
\echo '--- Alice''s lost Milo now carries her phone'
SELECT lp.id, p.name AS pet, lp.status, lp.contact_phone
FROM lost_pets lp JOIN pets p ON p.id = lp.pet_id
WHERE lp.owner_id = 1 ORDER BY lp.id;

\echo
\echo '=== 4. Repair everything else: data_sync.sync_all() ==='
SELECT data_sync.sync_all();
SELECT * FROM data_sync.check();

\echo
\echo '=== 5. Writes are now kept in sync automatically ==='
\echo '--- Alice changes her phone number'
UPDATE users SET phone = '+1-555-7777' WHERE auth_user_id = '11111111-1111-1111-1111-111111111111';
SELECT lp.id, p.name AS pet, lp.contact_phone
FROM lost_pets lp JOIN pets p ON p.id = lp.pet_id WHERE lp.owner_id = 1 ORDER BY lp.id;
SELECT id, name AS pet, emergency_contact_phone FROM pets WHERE emergency_contact_user_id = 1 ORDER BY id;

\echo '--- Dave reports Max lost without giving a contact phone: it is filled from his profile'
INSERT INTO lost_pets (pet_id, owner_id, last_seen_location)
VALUES (6, 4, 'Dog park on 5th Avenue')
RETURNING id, pet_id, owner_id, status, contact_phone;

\echo '--- Dr. Carol''s clinic is renamed'
UPDATE veterinarians SET clinic_name = 'Happy Paws Veterinary Center' WHERE id = 1;
SELECT h.id, p.name AS pet, h.record_type, h.clinic_name
FROM health_records h JOIN pets p ON p.id = h.pet_id ORDER BY h.id;

\echo '--- Bella weighs in at home: a measurement is appended, her latest health record follows'
UPDATE pets SET weight_kg = 30.10, updated_at = now() WHERE id = 1;
SELECT id, name AS pet, weight_kg FROM pets WHERE id = 1;
SELECT id, pet_id, record_type, weight, recorded_at FROM health_records WHERE pet_id = 1 ORDER BY recorded_at;
SELECT pet_id, weight_kg FROM pet_measurements WHERE pet_id = 1 ORDER BY id;

\echo '--- The vet records a newer checkup with a weight: Bella''s weight follows (the newer write wins)'
INSERT INTO health_records (pet_id, veterinarian_id, record_type, weight, notes, recorded_at)
VALUES (1, 1, 'checkup', 30.60, 'Weight check', now() + interval '1 minute')
RETURNING id, pet_id, clinic_name, weight;
SELECT id, name AS pet, weight_kg FROM pets WHERE id = 1;
SELECT pet_id, weight_kg FROM pet_measurements WHERE pet_id = 1 ORDER BY id;

\echo '--- Re-sync one user with everything related (pets, vet account): sync_all_user_data_comprehensive'
SELECT sync_all_user_data_comprehensive('11111111-1111-1111-1111-111111111111');

\echo
\echo '=== 6. After ==='
\echo '--- lost_pets'
SELECT lp.id, p.name AS pet, lp.status, u.phone AS owner_phone, lp.contact_phone
FROM lost_pets lp JOIN pets p ON p.id = lp.pet_id JOIN users u ON u.id = lp.owner_id
ORDER BY lp.id;
\echo '--- pets'
SELECT p.id, p.name AS pet, p.emergency_contact_user_id, p.emergency_contact_phone
FROM pets p ORDER BY p.id;
\echo '--- veterinarians'
SELECT id, name, clinic_name, phone FROM veterinarians ORDER BY id;
\echo '--- health_records'
SELECT id, pet_id, veterinarian_id, clinic_name, record_type FROM health_records ORDER BY id;
\echo '--- user_events'
SELECT id, user_id, veterinarian_id, veterinarian_name, event_type FROM user_events ORDER BY id;

\echo '--- data_sync.check(): no drift left'
SELECT * FROM data_sync.check();

\echo '--- data_sync.sync_log: what data_sync did'
SELECT id, rule_name, operation, source_key, target_table, rows_changed, status
FROM data_sync.sync_log ORDER BY id;

\echo
\echo '=== 7. A failure, retried with backoff and healed ==='
\echo '--- lost_pets gets a phone format check that (wrongly) rejects letters'
ALTER TABLE lost_pets ADD CONSTRAINT contact_phone_format CHECK (contact_phone ~ '^[+0-9 -]*$') NOT VALID;
\echo '--- Alice picks a vanity number: her write commits, the copy to lost_pets fails and is queued'
-- (retries wait 1 s, 2 s, 4 s ...; shortened here so the demo does not have to wait)
SET data_sync.retry_delay = '300ms';
UPDATE users SET phone = '+1-555-PETS' WHERE id = 1;
SELECT id, phone FROM users WHERE id = 1;
SELECT id, contact_phone FROM lost_pets WHERE owner_id = 1 ORDER BY id;
SELECT rule_name, keys, attempts, status, last_error FROM data_sync.queue;
SELECT healthy, message FROM data_sync.health();
\echo '--- The queue processor retries (a background worker or pg_cron calls process_queue): still failing'
SELECT pg_sleep(0.4);
SELECT * FROM data_sync.process_queue();
SELECT rule_name, attempts, status, round(extract(epoch FROM next_attempt_at - clock_timestamp()), 1) AS retry_in_s
FROM data_sync.queue;
\echo '--- The DBA fixes the check; the next retry heals the copy'
ALTER TABLE lost_pets DROP CONSTRAINT contact_phone_format;
ALTER TABLE lost_pets ADD CONSTRAINT contact_phone_format CHECK (contact_phone ~ '^[+0-9A-Z -]*$') NOT VALID;
SELECT pg_sleep(0.7);
SELECT * FROM data_sync.process_queue();
SELECT id, contact_phone FROM lost_pets WHERE owner_id = 1 ORDER BY id;
SELECT logged_at::time(0) AS at, rule_name, source_key, status, attempt, error_message
FROM data_sync.history(4, 'user_phone_to_lost_pets');
SELECT rule_name, pending, dead, failures, last_error IS NOT NULL AS has_failed FROM data_sync.status();
