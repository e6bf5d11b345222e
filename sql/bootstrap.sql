-- data_sync catalog: the installed rule set and the sync log.
-- Rules and entities are stored by name (schema, table, column), never by OID, so they survive
-- pg_dump/restore; pg_extension_config_dump makes pg_dump include their rows.

-- CREATE EXTENSION reuses an existing schema named like ours. One that a non-superuser owns, or
-- that already holds objects, could plant functions, operators or tables beside ours: refuse it
-- instead of being captured. (pg_dump creates the empty schema, owned by its original owner,
-- before CREATE EXTENSION: that is fine.)
DO $$
DECLARE
    schema_owner name;
BEGIN
    SELECT r.rolname INTO schema_owner
    FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
    WHERE n.nspname OPERATOR(pg_catalog.=) 'data_sync' AND NOT r.rolsuper;
    IF FOUND THEN
        RAISE EXCEPTION 'schema "data_sync" already exists and is owned by role "%"', schema_owner
            USING HINT = 'data_sync installs into its own new schema: drop or rename the existing one first.';
    END IF;
    -- (every object in a schema depends on it; so does the extension being created)
    IF EXISTS (SELECT FROM pg_catalog.pg_depend d
               WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
                 AND d.refobjid OPERATOR(pg_catalog.=) 'data_sync'::pg_catalog.regnamespace
                 AND d.classid OPERATOR(pg_catalog.<>) 'pg_catalog.pg_extension'::pg_catalog.regclass) THEN
        RAISE EXCEPTION 'schema "data_sync" already exists and is not empty'
            USING HINT = 'data_sync installs into its own new schema: drop or rename the existing one first.';
    END IF;
END
$$;

CREATE TABLE data_sync.rules (
    name            text PRIMARY KEY,
    source_schema   name NOT NULL,
    source_table    name NOT NULL,
    target_schema   name NOT NULL,
    target_table    name NOT NULL,
    -- match pairs: target_keys[i] = source_keys[i]
    target_keys     text[] NOT NULL,
    source_keys     text[] NOT NULL,
    -- copied pairs: target_columns[i] = source_columns[i]
    target_columns  text[] NOT NULL,
    source_columns  text[] NOT NULL,
    where_clause    text,
    enabled         boolean NOT NULL DEFAULT true,
    -- 'copy' keeps target columns equal to the source's; 'append' inserts a target row per change
    kind            text NOT NULL DEFAULT 'copy' CHECK (kind IN ('copy', 'append')),
    -- copy: maintain only the target row with the greatest latest_by per match key
    latest_by       text,
    -- copy: target changes flow back; last write wins by the timestamp columns, if named
    bidirectional   boolean NOT NULL DEFAULT false,
    source_timestamp text,
    target_timestamp text,
    -- append: value_columns[i] = value_expressions[i], evaluated over the source row
    value_columns   text[] NOT NULL DEFAULT '{}',
    value_expressions text[] NOT NULL DEFAULT '{}',
    -- append: watched source columns, the source key identifying a row, and whether inserts append
    watch_columns   text[] NOT NULL DEFAULT '{}',
    on_insert       boolean NOT NULL DEFAULT false,
    -- strict, isolated or async; NULL follows the data_sync.failure_mode setting
    mode            text CHECK (mode IN ('strict', 'isolated', 'async')),
    -- why the DDL event trigger disabled the rule (cleared when the rule is loaded again)
    disabled_reason text,
    defined_by      name NOT NULL DEFAULT CURRENT_USER,
    defined_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- triggers ENABLE ALWAYS: also fire for rows logical replication's apply worker writes
    -- (since 0.2.0, hence after defined_at: an upgraded catalog has the same column order)
    fire_on_replica boolean NOT NULL DEFAULT false,
    -- append rules keep their source key in source_keys, with no target_keys
    CHECK (pg_catalog.cardinality(target_keys) OPERATOR(pg_catalog.=) pg_catalog.cardinality(source_keys)
           OR kind OPERATOR(pg_catalog.=) 'append'),
    CHECK (pg_catalog.cardinality(value_columns) OPERATOR(pg_catalog.=) pg_catalog.cardinality(value_expressions)),
    CHECK ((source_timestamp IS NULL) OPERATOR(pg_catalog.=) (target_timestamp IS NULL)),
    CHECK (pg_catalog.cardinality(target_columns) OPERATOR(pg_catalog.=) pg_catalog.cardinality(source_columns))
);
COMMENT ON TABLE data_sync.rules IS 'Installed rules; change them with data_sync.load_rules/add_rule/drop_rule';

CREATE TABLE data_sync.entities (
    name          text PRIMARY KEY,
    table_schema  name NOT NULL,
    table_name    name NOT NULL,
    key_column    text NOT NULL,
    -- related entities for sync_all_<name>_data_comprehensive:
    -- {"pet": {"owner_id": "id"}} = pets whose owner_id equals this row's id
    related       jsonb NOT NULL DEFAULT '{}',
    -- schema of the generated sync_all_<name>_data(key) function
    function_schema name NOT NULL
);
COMMENT ON TABLE data_sync.entities IS 'Entities with generated sync_all_<name>_data(key) and sync_all_<name>_data_comprehensive(key) functions';

-- Written only by data_sync, once per rule per statement: kept cheap to insert into (no CHECK
-- constraints, which the server re-reads for every statement; few indexes).
CREATE TABLE data_sync.sync_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    txid           xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    rule_name      text NOT NULL,
    -- what triggered it: source 'update' or 'insert', target 'fill', a re-'sync', or a schema
    -- change ('ddl') that disabled the rule
    operation      text NOT NULL,
    source_table   text NOT NULL,
    -- the source key when exactly one source row was propagated, else NULL
    source_key     text,
    source_rows    bigint NOT NULL,
    target_table   text NOT NULL,
    rows_changed   bigint NOT NULL,
    -- 'ok'; 'failed' (sqlstate, error_message); 'conflict': a last-write-wins rule skipped rows
    -- whose other side is newer (source_rows counts them); 'disabled': the rule no longer fits
    -- its tables (error_message says why)
    status         text NOT NULL,
    sqlstate       text,
    error_message  text,
    attempt        integer NOT NULL DEFAULT 1,
    role_name      name NOT NULL
);
-- Every index costs every propagation an index insert. Failures are rare and get a small partial
-- index, so "what failed lately" stays fast on a big log; time windows over all rows (health,
-- purge_log) are found through the primary key, since ids grow with logged_at (log_id_since).
CREATE INDEX sync_log_failed_idx ON data_sync.sync_log (logged_at) WHERE status OPERATOR(pg_catalog.<>) 'ok';
COMMENT ON TABLE data_sync.sync_log IS 'One row per rule per propagating statement, fill batch or re-sync';

SELECT pg_catalog.pg_extension_config_dump('data_sync.rules', '');
SELECT pg_catalog.pg_extension_config_dump('data_sync.entities', '');

-- Privileges. The catalog tables are written only by data_sync's functions, which run those
-- writes as the tables' owner after checking the caller owns the rules' tables. Everybody may
-- call the functions (they check rights themselves: see README "Security") and read the rule
-- definitions, as everybody may read pg_trigger. The sync log holds source keys: it stays
-- private to its owner, who may GRANT SELECT on it.
GRANT USAGE ON SCHEMA data_sync TO PUBLIC;
GRANT SELECT ON data_sync.rules, data_sync.entities TO PUBLIC;

-- Propagations that failed in isolated mode, waiting to be retried: one item per rule per failed
-- statement, holding the source keys (as text, one array per row) whose targets are owed.
CREATE TABLE data_sync.queue (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enqueued_at     timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    rule_name       text NOT NULL,
    -- true: a bidirectional rule's way back (keys are the target's match values)
    reverse         boolean NOT NULL DEFAULT false,
    operation       text NOT NULL,
    keys            jsonb NOT NULL,
    -- 'pending' or 'dead'
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 1,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    sqlstate        text,
    last_error      text
);
CREATE INDEX queue_due_idx ON data_sync.queue (next_attempt_at) WHERE status OPERATOR(pg_catalog.=) 'pending';
-- Owed propagations survive pg_dump/restore (the log, being history, does not), with their ids.
SELECT pg_catalog.pg_extension_config_dump('data_sync.queue', '');
SELECT pg_catalog.pg_extension_config_dump('data_sync.queue_id_seq', '');
COMMENT ON TABLE data_sync.queue IS 'Failed propagations owed to their targets (isolated failure mode)';
