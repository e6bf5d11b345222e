-- Long re-syncs: sync_all can be limited to a key range (chunks of a big table) and reports
-- progress (a NOTICE every data_sync.progress_every batches; data_sync.running_syncs, see the
-- resync_progress isolation spec).
BEGIN;
CREATE EXTENSION data_sync;
CREATE SCHEMA r;
CREATE TABLE r.users (id int PRIMARY KEY, phone text);
CREATE TABLE r.pets (id int PRIMARY KEY, owner_id int, contact_phone text);
CREATE TABLE r.regions (country text, code text, name text, PRIMARY KEY (country, code));
CREATE TABLE r.shops (id int PRIMARY KEY, country text, code text, region_name text);
INSERT INTO r.users SELECT g, 'p' || g FROM generate_series(1, 10) g;
INSERT INTO r.pets SELECT g, g, 'stale' FROM generate_series(1, 10) g;
SELECT * FROM data_sync.add_rule('phone', 'r.users', 'r.pets', '{"owner_id": "id"}', '{"contact_phone": "phone"}');
SELECT * FROM data_sync.add_rule('region', 'r.regions', 'r.shops', '{"country": "country", "code": "code"}',
                                 '{"region_name": "name"}');
UPDATE r.pets SET contact_phone = 'stale';

-- a chunk: source keys 3 to 5
SELECT data_sync.sync_all('phone', from_key => '3', to_key => '5');
SELECT id, contact_phone FROM r.pets ORDER BY id;
-- open-ended chunks, in batches of 2 with a NOTICE after each
SET data_sync.batch_size = 2;
SET data_sync.progress_every = 1;
SELECT data_sync.sync_all('phone', to_key => '2');
SELECT data_sync.sync_all('phone', from_key => '9');
SELECT id, contact_phone FROM r.pets ORDER BY id;
-- everything else
SELECT data_sync.sync_all('phone');
SELECT count(*) AS stale FROM r.pets WHERE contact_phone = 'stale';
RESET data_sync.progress_every;
-- a re-sync's log rows: one per batch
SELECT operation, source_rows, rows_changed FROM data_sync.sync_log WHERE operation = 'sync' ORDER BY id;

-- errors
SAVEPOINT s;
SELECT data_sync.sync_all(from_key => '3');
ROLLBACK TO SAVEPOINT s;
SELECT data_sync.sync_all('region', from_key => 'de');
ROLLBACK TO SAVEPOINT s;
SELECT data_sync.sync_all('phone', from_key => 'three');
ROLLBACK TO SAVEPOINT s;
-- nobody is re-syncing now
SELECT count(*) FROM data_sync.running_syncs;
ROLLBACK;
