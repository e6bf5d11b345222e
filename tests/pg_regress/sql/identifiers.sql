-- Identifiers built to break quoting (tests/hostile/identifiers.txt: quotes, dollar quotes,
-- backslashes, comment syntax, keywords, dots, whitespace, Unicode, 63 bytes) round-tripped
-- through the server: each is a schema, a source table and its key column, a target table and
-- its copied column. Every rule installs, propagates updates, fills inserted rows, re-syncs and
-- checks clean; a statement quoted wrongly would fail or touch the wrong object. The list is the
-- file's, spelled as SQL literals (the core's property tests use the same file).
BEGIN;
CREATE EXTENSION data_sync;
\set VERBOSITY terse
CREATE TEMP TABLE names (n int PRIMARY KEY, ident text NOT NULL);
INSERT INTO names VALUES
    (1, 'Users'),
    (2, 'select'),
    (3, 'user'),
    (4, 'ORDER BY'),
    (5, 'a"b'),
    (6, '"'),
    (7, '""'),
    (8, 'it''s'),
    (9, 'x''); DROP TABLE t; --'),
    (10, 'x"; DROP TABLE t; --'),
    (11, 'id" OR 1=1 --'),
    (12, 'a.b'),
    (13, 'public.users'),
    (14, '$1'),
    (15, '$$'),
    (16, '$x$ DROP $x$'),
    (17, 'a\b'),
    (18, '\'),
    (19, 'a\'' OR 1=1'),
    (20, '-- comment'),
    (21, '/* c */'),
    (22, ' leading space'),
    (23, 'trailing space '),
    (24, U&'tab\+000009here'),
    (25, U&'line\+00000Abreak'),
    (26, 'ünïcødé'),
    (27, 'ünïcødé'),
    (28, '表名'),
    (29, 'ключ'),
    (30, '🐘 emoji'),
    (31, U&'\+00200Bzero width'),
    (32, 'éééééééééééééééééééééééééééééééx'),
    (33, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'),
    (34, 'data_sync$src'),
    (35, 'U&"\0041"');
SELECT count(*) AS identifiers, max(octet_length(ident)) AS longest_bytes FROM names;
CREATE SCHEMA tgt;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM names ORDER BY n LOOP
        EXECUTE format('CREATE SCHEMA %I', r.ident);
        EXECUTE format('CREATE TABLE %I.%I (%I int PRIMARY KEY, v text)', r.ident, r.ident, r.ident);
        EXECUTE format('CREATE TABLE tgt.%I (id int PRIMARY KEY, k int, %I text)', r.ident, r.ident);
        EXECUTE format('INSERT INTO %I.%I VALUES (1, %L), (2, %L)', r.ident, r.ident, 'one ' || r.n, 'two ' || r.n);
        EXECUTE format('INSERT INTO tgt.%I VALUES (10, 1, NULL), (20, 2, %L)', r.ident, 'stale');
        PERFORM data_sync.add_rule('r' || r.n, format('%I.%I', r.ident, r.ident), format('tgt.%I', r.ident),
                                   jsonb_build_object('k', r.ident), jsonb_build_object(r.ident, 'v'));
    END LOOP;
END $$;
SELECT count(*) AS rules FROM data_sync.rules;
-- drift from the start: check() sees it, sync_all() repairs it
SELECT count(*) AS drifted_rules, sum(drifted_rows) AS drifted_rows FROM data_sync.check() WHERE drifted_rows > 0;
SELECT data_sync.sync_all() AS repaired;
-- updates and inserts propagate
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM names ORDER BY n LOOP
        EXECUTE format('UPDATE %I.%I SET v = v || %L', r.ident, r.ident, ' updated');
        EXECUTE format('INSERT INTO tgt.%I (id, k) VALUES (30, 2)', r.ident);
    END LOOP;
END $$;
CREATE TEMP TABLE seen (n int, id int, value text);
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM names ORDER BY n LOOP
        EXECUTE format('INSERT INTO seen SELECT %s, id, %I FROM tgt.%I', r.n, r.ident, r.ident);
    END LOOP;
END $$;
-- every target row holds its source's value: (10, 'one N updated'), (20, 'two N updated'), (30, 'two N updated')
SELECT count(*) AS rows, count(*) FILTER (WHERE value = CASE WHEN id = 10 THEN 'one ' ELSE 'two ' END || n || ' updated') AS right
FROM seen;
SELECT count(*) AS drifted_rules FROM data_sync.check() WHERE drifted_rows <> 0;
SELECT operation, status, count(*) FROM data_sync.sync_log GROUP BY 1, 2 ORDER BY 1, 2;
ROLLBACK;
