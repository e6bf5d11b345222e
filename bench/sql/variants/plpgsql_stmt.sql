-- Hand-written propagation with a statement trigger and transition tables (which PostgreSQL
-- does not allow with UPDATE OF column lists: it fires on every UPDATE of users).
-- (Joining old_rows to new_rows to skip unchanged phones would make the planner, which has no
-- statistics on transition tables, pick a nested loop: quadratic on bulk updates. Every updated
-- user is carried over instead; IS DISTINCT FROM skips the lost_pets already equal.)
CREATE FUNCTION bench_phone_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lost_pets lp SET contact_phone = n.phone
    FROM new_rows n
    WHERE lp.owner_id = n.id AND lp.contact_phone IS DISTINCT FROM n.phone;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_phone_stmt AFTER UPDATE ON users
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bench_phone_stmt();
