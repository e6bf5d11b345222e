\set id random(1, :users)
INSERT INTO health_records (pet_id, weight, recorded_at)
VALUES (:id, round((random() * 50)::numeric, 2), clock_timestamp());
