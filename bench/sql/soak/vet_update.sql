-- a vet moves clinic or changes display name: health_records and user_events follow
\set vid random(1, :vets)
UPDATE public.veterinarians
SET clinic_name = 'Clinic ' || (random() * 40)::int,
    name = CASE WHEN random() < 0.5 THEN name ELSE 'Dr. ' || :vid || ' ' || (random() * 1000)::int END
WHERE id = :vid;
