-- a lost-pet report, half of them with a wrong phone typed in: the fill sets the owner's
\set pid random(1, :pets)
INSERT INTO public.lost_pets (pet_id, owner_id, last_seen_location, contact_phone)
SELECT id, owner_id, 'soak report', CASE WHEN random() < 0.5 THEN 'typed-by-hand' END
FROM public.pets WHERE id = :pid;
