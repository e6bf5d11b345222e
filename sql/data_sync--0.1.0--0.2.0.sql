-- data_sync 0.1.0 -> 0.2.0. scripts/upgrade-test.sh checks that this leaves exactly what a fresh
-- 0.2.0 install has, then runs the whole pg_regress suite on an upgraded extension.
\echo Use "ALTER EXTENSION data_sync UPDATE TO '0.2.0'" to load this file. \quit

-- Rules may fire for rows that logical replication's apply worker writes (triggers ENABLE
-- ALWAYS): a subscriber that receives only the source tables runs the rules itself.
ALTER TABLE data_sync.rules ADD COLUMN fire_on_replica boolean NOT NULL DEFAULT false;

CREATE FUNCTION data_sync."fire_on_replica"(
	"enabled" bool DEFAULT true,
	"rule_name" TEXT DEFAULT NULL
) RETURNS TABLE (
	"kind" TEXT,
	"name" TEXT,
	"action" TEXT
)
VOLATILE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'fire_on_replica_wrapper';
