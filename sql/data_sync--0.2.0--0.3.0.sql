-- data_sync 0.2.0 -> 0.3.0. scripts/upgrade-test.sh checks that this leaves exactly what a fresh
-- 0.3.0 install has, then runs the whole pg_regress suite on an upgraded extension.
\echo Use "ALTER EXTENSION data_sync UPDATE TO '0.3.0'" to load this file. \quit

-- Schema changes that can break a rule without ALTER TABLE (a table renamed by ALTER INDEX, a
-- column by ALTER VIEW, a function of a `where` dropped) re-check the rules too.
DROP EVENT TRIGGER data_sync_ddl;
CREATE EVENT TRIGGER data_sync_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'ALTER SCHEMA', 'DROP SCHEMA', 'DROP OWNED',
                 'ALTER TYPE', 'DROP TYPE', 'ALTER DOMAIN', 'DROP DOMAIN', 'DROP INDEX',
                 'ALTER INDEX', 'ALTER VIEW', 'ALTER MATERIALIZED VIEW', 'ALTER FOREIGN TABLE',
                 'ALTER FUNCTION', 'DROP FUNCTION', 'ALTER OPERATOR', 'DROP OPERATOR')
    EXECUTE FUNCTION data_sync.ddl_watch();
