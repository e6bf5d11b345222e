CREATE EXTENSION data_sync;
SELECT extname FROM pg_extension WHERE extname = 'data_sync';
