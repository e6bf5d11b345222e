-- Schema changes that break a rule (a table or column dropped or renamed, a type changed)
-- disable it, with a WARNING and a sync log row, instead of leaving triggers that fail every
-- write (see data_sync.revalidate_rules).
CREATE FUNCTION data_sync.ddl_watch()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM data_sync.revalidate_rules();
END
$$;

-- ALTER INDEX, ALTER VIEW, ALTER MATERIALIZED VIEW and ALTER FOREIGN TABLE can rename a table or
-- its columns too; a rule's `where` or `values` may call functions and operators; CREATE TABLE can
-- make a rule's table an inheritance parent; a trigger of the table's owner changes what the
-- rule's triggers must watch.
CREATE EVENT TRIGGER data_sync_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'ALTER SCHEMA', 'DROP SCHEMA', 'DROP OWNED',
                 'ALTER TYPE', 'DROP TYPE', 'ALTER DOMAIN', 'DROP DOMAIN', 'DROP INDEX',
                 'ALTER INDEX', 'ALTER VIEW', 'ALTER MATERIALIZED VIEW', 'ALTER FOREIGN TABLE',
                 'ALTER FUNCTION', 'DROP FUNCTION', 'ALTER OPERATOR', 'DROP OPERATOR',
                 'CREATE TABLE', 'CREATE TRIGGER')
    EXECUTE FUNCTION data_sync.ddl_watch();
