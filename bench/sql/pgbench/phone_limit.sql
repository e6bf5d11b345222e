\set id random(1, :users)
WITH u AS (UPDATE users SET phone = '+1-' || :id || '-' || random() WHERE id = :id RETURNING id, phone)
UPDATE lost_pets lp SET contact_phone = u.phone FROM u
WHERE lp.owner_id = u.id AND lp.contact_phone IS DISTINCT FROM u.phone;
