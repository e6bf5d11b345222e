-- Hand-written equivalent of the two weight rules (sync_rules.toml): every change of a pet's
-- weight appends a measurement; the pet's weight and its latest health record's weight are kept
-- equal both ways, the newer write winning (pets.updated_at vs health_records.recorded_at).
CREATE FUNCTION bench_pet_weight() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.weight_kg IS NOT NULL THEN
        INSERT INTO pet_measurements (pet_id, weight_kg, measured_at) VALUES (NEW.id, NEW.weight_kg, now());
    END IF;
    UPDATE health_records h SET weight = NEW.weight_kg
    WHERE h.pet_id = NEW.id AND h.weight IS DISTINCT FROM NEW.weight_kg
      AND NOT EXISTS (SELECT FROM health_records n WHERE n.pet_id = h.pet_id AND n.recorded_at > h.recorded_at)
      AND (NEW.updated_at < h.recorded_at) IS NOT TRUE;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_pet_weight AFTER UPDATE OF weight_kg ON pets
    FOR EACH ROW WHEN (OLD.weight_kg IS DISTINCT FROM NEW.weight_kg) EXECUTE FUNCTION bench_pet_weight();

CREATE FUNCTION bench_record_weight() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;  -- the pet trigger's own write
    END IF;
    UPDATE pets p SET weight_kg = NEW.weight, updated_at = NEW.recorded_at
    WHERE p.id = NEW.pet_id AND p.weight_kg IS DISTINCT FROM NEW.weight
      AND NOT EXISTS (SELECT FROM health_records n WHERE n.pet_id = NEW.pet_id AND n.recorded_at > NEW.recorded_at)
      AND (NEW.recorded_at < p.updated_at) IS NOT TRUE;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_record_weight_ins AFTER INSERT ON health_records
    FOR EACH ROW EXECUTE FUNCTION bench_record_weight();
CREATE TRIGGER bench_record_weight_upd AFTER UPDATE OF weight ON health_records
    FOR EACH ROW WHEN (OLD.weight IS DISTINCT FROM NEW.weight) EXECUTE FUNCTION bench_record_weight();
