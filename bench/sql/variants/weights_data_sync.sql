CREATE EXTENSION data_sync;
SELECT count(*) FROM data_sync.load_rules($toml$
[[rule]]
name = "pet_weight_history"
kind = "append"
source = "public.pets"
target = "public.pet_measurements"
set = { pet_id = "id", weight_kg = "weight_kg" }
values = { measured_at = "now()" }
where = "weight_kg IS NOT NULL"

[[rule]]
name = "pet_weight_latest_record"
source = "public.pets"
target = "public.health_records"
match = { pet_id = "id" }
set = { weight = "weight_kg" }
latest_by = "recorded_at"
bidirectional = true
source_timestamp = "updated_at"
target_timestamp = "recorded_at"
$toml$);
