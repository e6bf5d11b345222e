-- data_sync monitoring: status, health, failure statistics, history and log purging over
-- data_sync.sync_log and data_sync.queue. These functions run with the caller's rights: the log
-- and the queue are private to their owner, who grants SELECT on both to monitoring roles.

-- The queue functions act on the queue as its owner, so they are not for everybody.
REVOKE EXECUTE ON FUNCTION data_sync.process_queue(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION data_sync.retry_failed(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION data_sync.clear_failed(text, boolean) FROM PUBLIC;

-- The first log id at or after a time: a binary search over the primary key (ids and logged_at
-- grow together; concurrent writers may interleave them by a few milliseconds), so windows over
-- a big log cost a few index probes instead of a scan. Callers evaluate it once, as an InitPlan.
CREATE FUNCTION data_sync.log_id_since(since timestamptz)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lo bigint;
    hi bigint;
    mid bigint;
    probe timestamptz;
BEGIN
    SELECT min(l.id), max(l.id) INTO lo, hi FROM data_sync.sync_log l;
    IF lo IS NULL THEN
        RETURN NULL;
    END IF;
    hi := hi OPERATOR(pg_catalog.+) 1;  -- "after the last row"
    WHILE lo OPERATOR(pg_catalog.<) hi LOOP
        -- (OPERATOR() forms share one precedence: parenthesize)
        mid := lo OPERATOR(pg_catalog.+) ((hi OPERATOR(pg_catalog.-) lo) OPERATOR(pg_catalog./) 2);
        SELECT l.logged_at INTO probe FROM data_sync.sync_log l
        WHERE l.id OPERATOR(pg_catalog.>=) mid ORDER BY l.id LIMIT 1;
        IF probe OPERATOR(pg_catalog.>=) since THEN
            hi := mid;
        ELSE
            lo := mid OPERATOR(pg_catalog.+) 1;
        END IF;
    END LOOP;
    RETURN lo;
END
$$;
COMMENT ON FUNCTION data_sync.log_id_since(timestamptz) IS 'First sync_log id logged at or after the given time';

CREATE FUNCTION data_sync.status()
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
COMMENT ON FUNCTION data_sync.status() IS
    'Per rule: queue items pending, in progress and dead, failures logged, last success and last failure';

CREATE FUNCTION data_sync.health(
    "window" interval DEFAULT '1 hour',
    max_failure_rate double precision DEFAULT 0.05
)
RETURNS TABLE (
    healthy          boolean,
    propagations     bigint,
    failures         bigint,
    failure_rate     double precision,
    recent_failures  jsonb,
    pending          bigint,
    dead             bigint,
    message          text
)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH recent AS (
        SELECT l.* FROM data_sync.sync_log l
        WHERE l.id OPERATOR(pg_catalog.>=) (SELECT data_sync.log_id_since(pg_catalog.now() OPERATOR(pg_catalog.-) "window"))
    ), counts AS (
        SELECT count(*) AS total,
               count(*) FILTER (WHERE r.status OPERATOR(pg_catalog.=) 'failed') AS failed
        FROM recent r
    ), queue AS (
        SELECT count(*) FILTER (WHERE q.status OPERATOR(pg_catalog.=) 'pending') AS pending,
               count(*) FILTER (WHERE q.status OPERATOR(pg_catalog.=) 'dead') AS dead
        FROM data_sync.queue q
    ), rate AS (
        SELECT c.total, c.failed,
               CASE WHEN c.total OPERATOR(pg_catalog.=) 0 THEN 0::double precision
                    ELSE c.failed::double precision OPERATOR(pg_catalog./) c.total END AS rate
        FROM counts c
    )
    SELECT r.rate OPERATOR(pg_catalog.<=) max_failure_rate AND q.dead OPERATOR(pg_catalog.=) 0,
           r.total, r.failed, r.rate,
           COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                         'at', f.logged_at, 'rule', f.rule_name, 'target', f.target_table,
                         'sqlstate', f.sqlstate, 'error', f.error_message, 'attempt', f.attempt)
                         ORDER BY f.id DESC)
                     FROM (SELECT * FROM recent x WHERE x.status OPERATOR(pg_catalog.=) 'failed'
                           ORDER BY x.id DESC LIMIT 10) f), '[]'),
           q.pending, q.dead,
           pg_catalog.format('%s: %s propagations, %s failed (%s%%) in the last %s; %s queued, %s dead',
                  CASE WHEN r.rate OPERATOR(pg_catalog.<=) max_failure_rate AND q.dead OPERATOR(pg_catalog.=) 0
                       THEN 'healthy' ELSE 'unhealthy' END,
                  r.total, r.failed, pg_catalog.round((r.rate OPERATOR(pg_catalog.*) 100)::numeric, 1),
                  "window", q.pending, q.dead)
    FROM rate r, queue q
$$;
COMMENT ON FUNCTION data_sync.health(interval, double precision) IS
    'Healthy when at most max_failure_rate of the propagations logged in the window failed and no queue item is dead';

CREATE FUNCTION data_sync.failure_stats("window" interval DEFAULT NULL)
RETURNS TABLE (dimension text, value text, failures bigint, average_attempts numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH failed AS (
        SELECT l.rule_name, l.target_table, l.sqlstate, l.attempt FROM data_sync.sync_log l
        WHERE l.status OPERATOR(pg_catalog.=) 'failed'
          AND ("window" IS NULL
               OR l.logged_at OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) "window"))
    )
    SELECT s.dimension, s.value, s.failures, pg_catalog.round(s.average_attempts, 2)
    FROM (
        SELECT 'total' AS dimension, NULL::text AS value, count(*) AS failures, avg(f.attempt) AS average_attempts, 0 AS o
        FROM failed f
        UNION ALL
        SELECT 'rule', f.rule_name, count(*), avg(f.attempt), 1 FROM failed f GROUP BY f.rule_name
        UNION ALL
        SELECT 'target_table', f.target_table, count(*), avg(f.attempt), 2 FROM failed f GROUP BY f.target_table
        UNION ALL
        SELECT 'sqlstate', f.sqlstate, count(*), avg(f.attempt), 3 FROM failed f GROUP BY f.sqlstate
    ) s
    ORDER BY s.o, s.failures DESC, s.value
$$;
COMMENT ON FUNCTION data_sync.failure_stats(interval) IS
    'Failed propagations logged (in the window, or ever): total, by rule, by target table, by SQLSTATE, with average attempt';

CREATE FUNCTION data_sync.history("limit" integer DEFAULT 10, rule_name text DEFAULT NULL)
RETURNS SETOF data_sync.sync_log
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM data_sync.sync_log l
    WHERE history.rule_name IS NULL OR l.rule_name OPERATOR(pg_catalog.=) history.rule_name
    ORDER BY l.id DESC
    LIMIT "limit"
$$;
COMMENT ON FUNCTION data_sync.history(integer, text) IS 'The latest sync log rows, newest first';

CREATE FUNCTION data_sync.purge_log(older_than interval)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM data_sync.sync_log l
        WHERE l.id OPERATOR(pg_catalog.<) (SELECT data_sync.log_id_since(pg_catalog.now() OPERATOR(pg_catalog.-) older_than))
        RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
REVOKE EXECUTE ON FUNCTION data_sync.purge_log(interval) FROM PUBLIC;
COMMENT ON FUNCTION data_sync.purge_log(interval) IS 'Deletes sync log rows older than the given age; returns how many';

-- Re-syncs under way: sync_all reports its progress as the backend's activity, which other
-- sessions can see while its transaction runs (pg_stat_activity shows other roles' activity only
-- to members of pg_read_all_stats).
CREATE VIEW data_sync.running_syncs AS
SELECT a.pid,
       a.usename AS role_name,
       m.m[1] AS rule_name,
       m.m[2]::bigint AS done,
       m.m[3]::bigint AS total,
       CASE WHEN m.m[3]::bigint OPERATOR(pg_catalog.>) 0
            THEN pg_catalog.round(100.0 OPERATOR(pg_catalog.*) m.m[2]::bigint OPERATOR(pg_catalog./) m.m[3]::bigint, 1)
       END AS percent,
       a.query_start AS started
FROM pg_catalog.pg_stat_activity a
CROSS JOIN LATERAL pg_catalog.regexp_match(a.query, '^data_sync re-sync: rule (\S+) done (\d+) of (\d+)$') AS m(m)
WHERE m.m IS NOT NULL
  AND a.state OPERATOR(pg_catalog.=) 'active'
  AND a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();
GRANT SELECT ON data_sync.running_syncs TO PUBLIC;
COMMENT ON VIEW data_sync.running_syncs IS 'sync_all calls under way, with source rows done and total';
