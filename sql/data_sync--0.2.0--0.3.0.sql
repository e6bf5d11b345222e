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
                 'ALTER FUNCTION', 'DROP FUNCTION', 'ALTER OPERATOR', 'DROP OPERATOR',
                 'CREATE TABLE', 'CREATE TRIGGER')
    EXECUTE FUNCTION data_sync.ddl_watch();

-- status() in a session that has not loaded the library yet (data_sync.failure_mode unknown there
-- unless set) no longer fails.
CREATE OR REPLACE FUNCTION data_sync.status()
RETURNS TABLE (
    rule_name    text,
    enabled      boolean,
    mode         text,
    pending      bigint,
    in_progress  bigint,
    dead         bigint,
    failures     bigint,
    last_success timestamptz,
    last_failure timestamptz,
    last_error   text
)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A queue item is in progress while a processor holds its row lock: its xmax is the
    -- processor's running transaction.
    WITH running AS (
        SELECT a.backend_xid FROM pg_catalog.pg_stat_activity a WHERE a.backend_xid IS NOT NULL
    ), queue AS (
        SELECT q.rule_name,
               count(*) FILTER (WHERE q.status OPERATOR(pg_catalog.=) 'pending') AS pending,
               count(*) FILTER (WHERE q.status OPERATOR(pg_catalog.=) 'pending'
                                  AND q.xmax IN (SELECT r.backend_xid FROM running r)) AS in_progress,
               count(*) FILTER (WHERE q.status OPERATOR(pg_catalog.=) 'dead') AS dead
        FROM data_sync.queue q
        GROUP BY q.rule_name
    ), names AS (
        SELECT r.name FROM data_sync.rules r
        UNION
        SELECT q.rule_name FROM queue q
    )
    SELECT n.name, r.enabled,
           -- (a session that has not loaded the library yet knows the setting only if it was set)
           CASE WHEN r.name IS NOT NULL
                THEN COALESCE(r.mode, pg_catalog.current_setting('data_sync.failure_mode', true), 'isolated') END,
           COALESCE(q.pending, 0), COALESCE(q.in_progress, 0), COALESCE(q.dead, 0),
           (SELECT count(*) FROM data_sync.sync_log l
            WHERE l.rule_name OPERATOR(pg_catalog.=) n.name AND l.status OPERATOR(pg_catalog.=) 'failed'),
           (SELECT l.logged_at FROM data_sync.sync_log l
            WHERE l.rule_name OPERATOR(pg_catalog.=) n.name AND l.status OPERATOR(pg_catalog.<>) 'failed'
            ORDER BY l.id DESC LIMIT 1),
           f.logged_at, f.error_message
    FROM names n
    LEFT JOIN data_sync.rules r ON r.name OPERATOR(pg_catalog.=) n.name
    LEFT JOIN queue q ON q.rule_name OPERATOR(pg_catalog.=) n.name
    LEFT JOIN LATERAL (
        SELECT l.logged_at, l.error_message FROM data_sync.sync_log l
        WHERE l.rule_name OPERATOR(pg_catalog.=) n.name AND l.status OPERATOR(pg_catalog.=) 'failed'
        ORDER BY l.id DESC LIMIT 1
    ) f ON true
    ORDER BY n.name
$$;
