\set id random(1, :users)
UPDATE users SET last_login = now() WHERE id = :id;
