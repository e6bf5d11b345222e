-- re-sync one pet's copies (its weight to the latest health record)
\set pid random(1, :pets)
SELECT public.sync_all_pet_data(:pid::bigint);
