-- Hand-written propagation with a statement trigger and transition tables (which PostgreSQL
-- does not allow with UPDATE OF column lists: it fires on every UPDATE of users).
CREATE FUNCTION bench_phone_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lost_pets lp SET contact_phone = n.phone
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE lp.owner_id = n.id AND n.phone IS DISTINCT FROM o.phone
      AND lp.contact_phone IS DISTINCT FROM n.phone;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_phone_stmt AFTER UPDATE ON users
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bench_phone_stmt();
