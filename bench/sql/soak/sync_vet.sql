-- re-sync one vet's copies (clinic to health_records, name to user_events)
\set vid random(1, :vets)
SELECT public.sync_all_veterinarian_data(:vid::bigint);
