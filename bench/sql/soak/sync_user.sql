-- re-sync one user's copies (should find nothing to repair)
\set uid random(1, :users)
SELECT public.sync_all_user_data(auth_user_id) FROM public.users WHERE id = :uid;
