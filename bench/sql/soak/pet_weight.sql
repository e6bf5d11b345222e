-- the owner app records a new weight: the latest health record and the weight history follow
\set pid random(1, :pets)
UPDATE public.pets SET weight_kg = round((1 + random() * 49)::numeric, 2), updated_at = clock_timestamp()
WHERE id = :pid;
