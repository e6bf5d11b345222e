-- a vet adds a record: clinic_name is filled from the vet; its weight (if given) flows back to
-- the pet (bidirectional, newer wins), a NULL weight is filled from the pet
\set pid random(1, :pets)
\set vid random(1, :vets)
INSERT INTO public.health_records (pet_id, veterinarian_id, record_type, weight, recorded_at)
VALUES (:pid, :vid, 'checkup',
        CASE WHEN random() < 0.25 THEN NULL ELSE round((1 + random() * 49)::numeric, 2) END,
        clock_timestamp());
