-- an import changes 20 neighbouring users' phones in one statement (overlaps other writers)
\set uid random(1, :users)
UPDATE public.users SET phone = '+1-bulk-' || id || '-' || (random() * 1000000)::int
WHERE id BETWEEN :uid AND :uid + 19;
