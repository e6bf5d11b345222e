-- The extension installs into its own schema with its catalog, and nothing else.
BEGIN;
CREATE EXTENSION data_sync;
SELECT extname, extnamespace::regnamespace AS schema FROM pg_extension WHERE extname = 'data_sync';
SELECT c.relname, c.relkind FROM pg_class c WHERE c.relnamespace = 'data_sync'::regnamespace ORDER BY 1;
-- every function of the extension pins search_path, except trigger functions
SELECT p.proname, p.proconfig FROM pg_proc p WHERE p.pronamespace = 'data_sync'::regnamespace ORDER BY 1;
ROLLBACK;
