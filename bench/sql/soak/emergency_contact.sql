-- a pet gets another emergency contact (re-parenting: the phone is filled from the new contact)
\set pid random(1, :pets)
\set uid random(1, :users)
UPDATE public.pets SET emergency_contact_user_id = :uid WHERE id = :pid;
