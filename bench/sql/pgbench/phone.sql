\set id random(1, :users)
UPDATE users SET phone = '+1-' || :id || '-' || random() WHERE id = :id;
