-- Hand-written propagation, as the seeds do it: a row trigger filtered by UPDATE OF … WHEN.
CREATE FUNCTION bench_phone_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lost_pets SET contact_phone = NEW.phone
    WHERE owner_id = NEW.id AND contact_phone IS DISTINCT FROM NEW.phone;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_phone_row AFTER UPDATE OF phone ON users
    FOR EACH ROW WHEN (OLD.phone IS DISTINCT FROM NEW.phone) EXECUTE FUNCTION bench_phone_row();
