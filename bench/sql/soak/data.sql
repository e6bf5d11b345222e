-- Soak data (bench/soak.py): runs after examples/tailtracker/schema.sql, before CREATE EXTENSION.
-- :users generated users (on top of the example's 4), each with 3 pets, 2 lost-pet reports,
-- 2 health records per pet and an appointment; one user in 40 is a vet, plus :users/40 vets
-- who are not users. Deterministic (setseed). About one copied value in ten is stale or NULL,
-- so the initial sync_all has real work to do.
SET client_min_messages = warning;
SELECT setseed(0.4242);

INSERT INTO public.users (auth_user_id, email, full_name, phone, is_veterinarian, last_login)
SELECT md5('soak-user-' || g)::uuid, 'soak' || g || '@example.com', 'Soak User ' || g,
       '+1-555-' || lpad(g::text, 6, '0'), g % 40 = 0, now() - g * interval '1 minute'
FROM generate_series(1, :users) g;

INSERT INTO public.veterinarians (user_id, name, clinic_name, phone, email)
SELECT id, full_name, 'Clinic ' || id % 17, CASE WHEN id % 3 = 0 THEN 'stale' ELSE phone END, email
FROM public.users WHERE is_veterinarian AND email LIKE 'soak%' ORDER BY id;
INSERT INTO public.veterinarians (user_id, name, clinic_name, phone)
SELECT NULL, 'Dr. Soak ' || g, 'Clinic ' || g % 17, '+1-666-' || g
FROM generate_series(1, :users / 40) g;

-- pets: the emergency contact is another user (one pet in 8 has none)
INSERT INTO public.pets (owner_id, name, species, weight_kg, emergency_contact_user_id, updated_at)
SELECT u.id, 'Pet ' || u.id || '-' || n, (ARRAY['dog', 'cat', 'rabbit'])[n],
       round((1 + random() * 49)::numeric, 2),
       CASE WHEN random() < 0.125 THEN NULL
            ELSE (SELECT max(id) FROM public.users) - (u.id * 7 + n) % (SELECT max(id) FROM public.users) END,
       now() - interval '2 days'
FROM public.users u CROSS JOIN generate_series(1, 3) n
WHERE u.email LIKE 'soak%' ORDER BY u.id, n;
UPDATE public.pets p SET emergency_contact_phone = CASE WHEN random() < 0.1 THEN 'stale' ELSE u.phone END
FROM public.users u WHERE u.id = p.emergency_contact_user_id AND p.name LIKE 'Pet %';

-- two lost-pet reports per user (for two of the three pets)
INSERT INTO public.lost_pets (pet_id, owner_id, status, last_seen_location, contact_phone, reported_at)
SELECT p.id, p.owner_id, CASE WHEN random() < 0.3 THEN 'found' ELSE 'lost' END, 'Soak street ' || p.id,
       CASE WHEN random() < 0.1 THEN NULL ELSE u.phone END, now() - interval '1 day'
FROM public.pets p JOIN public.users u ON u.id = p.owner_id
WHERE p.name LIKE 'Pet %' AND p.species <> 'rabbit' ORDER BY p.id;

-- two health records per pet; the latest (by recorded_at) carries the pet's weight
INSERT INTO public.health_records (pet_id, veterinarian_id, clinic_name, record_type, weight, notes, recorded_at)
SELECT p.id, v.id, CASE WHEN random() < 0.1 THEN 'Old clinic' ELSE v.clinic_name END,
       (ARRAY['checkup', 'vaccination'])[n],
       CASE WHEN n = 2 THEN p.weight_kg ELSE round((1 + random() * 49)::numeric, 2) END,
       'soak', now() - interval '3 days' + n * interval '1 hour'
FROM public.pets p CROSS JOIN generate_series(1, 2) n
JOIN public.veterinarians v ON v.id = 1 + (p.id * 13 + n) % (SELECT max(id) FROM public.veterinarians)
WHERE p.name LIKE 'Pet %' ORDER BY p.id, n;

INSERT INTO public.user_events (user_id, pet_id, veterinarian_id, veterinarian_name, event_type, scheduled_at)
SELECT p.owner_id, p.id, v.id, CASE WHEN random() < 0.1 THEN NULL ELSE v.name END, 'appointment',
       now() + interval '1 week'
FROM public.pets p
JOIN public.veterinarians v ON v.id = 1 + p.id % (SELECT max(id) FROM public.veterinarians)
WHERE p.name LIKE 'Pet %' AND p.species = 'dog' ORDER BY p.id;

-- every pet's weight history ends with its current weight (the append rule keeps it so)
INSERT INTO public.pet_measurements (pet_id, weight_kg, measured_at)
SELECT id, weight_kg, updated_at FROM public.pets p
WHERE weight_kg IS NOT NULL
  AND (SELECT m.weight_kg FROM public.pet_measurements m WHERE m.pet_id = p.id ORDER BY m.id DESC LIMIT 1)
      IS DISTINCT FROM p.weight_kg
ORDER BY id;

VACUUM ANALYZE;
