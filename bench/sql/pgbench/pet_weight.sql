\set id random(1, :users)
UPDATE pets SET weight_kg = round((random() * 50)::numeric, 2), updated_at = clock_timestamp() WHERE id = :id;
