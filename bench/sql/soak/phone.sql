-- a user changes their phone: lost_pets, pets (emergency contacts) and veterinarians follow
\set uid random(1, :users)
UPDATE public.users SET phone = '+1-' || :uid || '-' || (random() * 1000000)::int WHERE id = :uid;
