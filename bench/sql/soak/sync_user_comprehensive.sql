-- re-sync one user, their pets and (if a vet) their vet row
\set uid random(1, :users)
SELECT public.sync_all_user_data_comprehensive(auth_user_id) FROM public.users WHERE id = :uid;
