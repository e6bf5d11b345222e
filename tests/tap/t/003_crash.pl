# Crashes (immediate shutdown: no checkpoint, crash recovery at the next start) in the middle of
# data_sync's work.
#  (a) A bulk UPDATE of every user's phone is killed while its propagation is writing lost_pets:
#      after recovery the source and all copies are exactly as before (the half-done transaction
#      vanished wholesale), data_sync.check() finds no drift, the log holds nothing of it, the
#      indexes data_sync writes below the executor (sync_log) are consistent, and the same update
#      then runs to completion and is logged once per rule.
#  (b) Queue processing is killed: owed propagations are queued (async writes, and isolated-mode
#      failures on a CHECK constraint that is then dropped); first one process_queue() call over
#      all of them is killed mid-statement (the queue comes back unchanged, nothing applied), then
#      a series of small process_queue() calls is killed midway: every item is either applied
#      (its targets are correct) or still queued exactly as it was (attempts not charged), every
#      drifted row is owed by a queued item (nothing lost), and processing to completion leaves
#      zero drift.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $root = $ENV{DATA_SYNC_ROOT} or die "DATA_SYNC_ROOT must point at the repository";
my $users = 50_000;      # generated users, on top of the example's 4
my $per_pet = 4;         # lost_pets per pet (one pet per user)
my $block = 25;          # users per async UPDATE statement in (b)

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
# no autovacuum: relation sizes are watched to see propagation under way
$node->append_conf('postgresql.conf', q{
autovacuum = off
max_wal_size = '1GB'
});
$node->start;

# ---------------------------------------------------------------------------------------------
# A template database: the TailTracker schema, $users users with one pet each (the emergency
# contact is the next user), $per_pet lost-pet reports per pet, one vet per 100 users.
$node->safe_psql('postgres', 'CREATE DATABASE tmpl');
$node->safe_psql('tmpl', slurp_file("$root/examples/tailtracker/schema.sql"));
$node->safe_psql('tmpl', qq{
    INSERT INTO public.users (auth_user_id, email, full_name, phone, is_veterinarian)
    SELECT md5('crash-' || g)::uuid, 'u' || g || '\@crash.example', 'User ' || g, 'p-' || g, g % 100 = 0
    FROM generate_series(1, $users) g;
    INSERT INTO public.veterinarians (user_id, name, clinic_name, phone)
    SELECT id, full_name, 'Clinic ' || id % 7, phone FROM public.users
    WHERE is_veterinarian AND email LIKE '%\@crash.example' ORDER BY id;
    INSERT INTO public.pets (owner_id, name, species, weight_kg, emergency_contact_user_id, emergency_contact_phone)
    SELECT u.id, 'Pet ' || u.id, 'dog', 10, c.id, c.phone
    FROM public.users u JOIN public.users c ON c.id = u.id % (SELECT max(id) FROM public.users) + 1
    WHERE u.email LIKE '%\@crash.example' ORDER BY u.id;
    INSERT INTO public.lost_pets (pet_id, owner_id, contact_phone)
    SELECT p.id, p.owner_id, u.phone FROM public.pets p JOIN public.users u ON u.id = p.owner_id
    CROSS JOIN generate_series(1, $per_pet) WHERE p.name LIKE 'Pet %' ORDER BY p.id;
});
# amcheck is a contrib module; PostgreSQL 16's wheel has none (scripts/pgenv.sh: PG_HAS_AMCHECK)
my $amcheck = ($ENV{PG_HAS_AMCHECK} // '1') eq '1';
$node->safe_psql('tmpl', 'CREATE EXTENSION data_sync' . ($amcheck ? '; CREATE EXTENSION amcheck' : ''));
my $rules = slurp_file("$root/sync_rules.toml");
$node->safe_psql('tmpl', "SELECT count(*) FROM data_sync.load_rules(\$toml\$$rules\$toml\$)");
$node->safe_psql('tmpl', 'SELECT data_sync.sync_all(); VACUUM ANALYZE');
is($node->safe_psql('tmpl', 'SELECT count(*), sum(drifted_rows) FROM data_sync.check()'), '6|0',
    'template: six copy rules, no drift');
$node->safe_psql('postgres', 'CREATE DATABASE bulk TEMPLATE tmpl');
$node->safe_psql('postgres', 'CREATE DATABASE queue TEMPLATE tmpl');

# The three rules on users.phone: target table, its match column, its copy of the phone.
my %phone_rules = (
    user_phone_to_lost_pets => [ 'public.lost_pets', 'owner_id', 'contact_phone' ],
    user_phone_to_pet_emergency_contact => [ 'public.pets', 'emergency_contact_user_id', 'emergency_contact_phone' ],
    user_phone_to_veterinarian => [ 'public.veterinarians', 'user_id', 'phone' ],
);
# target rows of a phone rule whose copy differs from the user's phone
sub drift_sql
{
    my ($rule, $extra) = @_;
    my ($table, $match, $copy) = @{ $phone_rules{$rule} };
    return "SELECT count(*) FROM $table t JOIN public.users s ON s.id = t.$match
            WHERE t.$copy IS DISTINCT FROM s.phone " . ($extra // '');
}

# all target rows of a phone rule that have a source row
sub matched_sql
{
    my ($rule) = @_;
    my ($table, $match) = @{ $phone_rules{$rule} };
    return "SELECT count(*) FROM $table t JOIN public.users s ON s.id = t.$match";
}

# Starts `sql` in its own psql session (application_name crash_bg); returns the harness and
# references to its stdout and stderr.
sub start_background
{
    my ($db, $sql) = @_;
    my ($out, $err) = ('', '');
    # from a file: IPC::Run feeds a scalar to stdin only while it is pumped
    my $file = PostgreSQL::Test::Utils::tempdir() . '/background.sql';
    PostgreSQL::Test::Utils::append_to_file($file, $sql);
    my $h = IPC::Run::start(
        [ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-f', $file,
          '-d', $node->connstr($db) . ' application_name=crash_bg' ],
        '<', '/dev/null', '>', \$out, '2>', \$err);
    return ($h, \$out, \$err);
}

# Waits (in one session, polling every 10 ms, at most 60 s) until `condition` holds.
sub wait_for
{
    my ($db, $condition) = @_;
    return $node->safe_psql($db, qq{
        DO \$\$ BEGIN
            FOR i IN 1..6000 LOOP
                EXIT WHEN $condition;
                PERFORM pg_catalog.pg_sleep(0.01);
            END LOOP;
        END \$\$;
        SELECT $condition;
    }) eq 't';
}

my $running = q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'crash_bg' AND state = 'active'};

# Kills the server (immediate shutdown) and starts it again; checks crash recovery ran.
sub crash_and_restart
{
    my ($what, $h, $out, $err) = @_;
    my $offset = -s $node->logfile;
    $node->stop('immediate');
    ok(!$h->finish, "$what: the background session failed");
    unlike($$out, qr/^UPDATE|^\d+\|/m, "$what: the background statement did not complete");
    like($$err, qr/terminating connection|server closed the connection|connection to server was lost/,
        "$what: the background session lost its connection");
    $node->start;
    ok($node->log_contains(qr/database system was not properly shut down; automatic recovery in progress/, $offset),
        "$what: the restart ran crash recovery");
}

# amcheck of every B-tree index in public and data_sync, heap included (sync_log's rows and
# index entries are written by data_sync itself, below the executor).
sub indexes_ok
{
    my ($db, $what) = @_;
  SKIP:
    {
        skip "$what: index consistency: amcheck is not installed in this PostgreSQL", 1 unless $amcheck;
    is($node->safe_psql($db, q{
        SELECT count(*) FROM (
            SELECT bt_index_check(c.oid, heapallindexed => true)
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE a.amname = 'btree' AND n.nspname IN ('public', 'data_sync')) s}),
        $node->safe_psql($db, q{
            SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE a.amname = 'btree' AND n.nspname IN ('public', 'data_sync')}),
        "$what: every B-tree index (sync_log's included) is consistent with its heap");
    }
}

# ---------------------------------------------------------------------------------------------
# (a) a bulk propagation killed midway
{
    my $db = 'bulk';
    my %before = (
        users => $node->safe_psql($db, 'SELECT md5(string_agg(id || phone, \',\' ORDER BY id)) FROM public.users'),
        lost_pets => $node->safe_psql($db,
            'SELECT md5(string_agg(id || contact_phone, \',\' ORDER BY id)) FROM public.lost_pets'),
        pets => $node->safe_psql($db,
            'SELECT md5(string_agg(id || coalesce(emergency_contact_phone, \'-\'), \',\' ORDER BY id)) FROM public.pets'),
        log => $node->safe_psql($db, 'SELECT count(*), max(id) FROM data_sync.sync_log'),
    );
    my $size = $node->safe_psql($db, q{SELECT pg_relation_size('public.lost_pets')});
    my ($h, $out, $err) = start_background($db, q{UPDATE public.users SET phone = 'crash-' || id;});
    ok(wait_for($db, "pg_catalog.pg_relation_size('public.lost_pets') > $size + 65536"),
        'bulk: propagation is writing lost_pets');
    is($node->safe_psql($db, $running), '1', 'bulk: the UPDATE is still running');
    crash_and_restart('bulk', $h, $out, $err);

    for my $t (qw(users lost_pets pets)) {
        is($node->safe_psql($db,
                $t eq 'users' ? 'SELECT md5(string_agg(id || phone, \',\' ORDER BY id)) FROM public.users'
                : $t eq 'lost_pets' ? 'SELECT md5(string_agg(id || contact_phone, \',\' ORDER BY id)) FROM public.lost_pets'
                : 'SELECT md5(string_agg(id || coalesce(emergency_contact_phone, \'-\'), \',\' ORDER BY id)) FROM public.pets'),
            $before{$t}, "bulk: $t exactly as before the crash");
    }
    is($node->safe_psql($db, q{SELECT count(*) FROM public.lost_pets WHERE contact_phone LIKE 'crash-%'}), '0',
        'bulk: no propagated value survived');
    is($node->safe_psql($db, 'SELECT count(*), sum(drifted_rows) FROM data_sync.check()'), '6|0',
        'bulk: check() finds no drift after recovery');
    is($node->safe_psql($db, 'SELECT count(*), max(id) FROM data_sync.sync_log'), $before{log},
        'bulk: the crashed transaction left no log row');
    indexes_ok($db, 'bulk');

    # the same update, now to completion: propagated and logged once per rule
    my $max_log = $node->safe_psql($db, 'SELECT coalesce(max(id), 0) FROM data_sync.sync_log');
    $node->safe_psql($db, q{UPDATE public.users SET phone = 'after-' || id});
    is($node->safe_psql($db, 'SELECT count(*), sum(drifted_rows) FROM data_sync.check()'), '6|0',
        'bulk: after the re-run no drift');
    is($node->safe_psql($db, q{SELECT count(*) FROM public.lost_pets WHERE contact_phone NOT LIKE 'after-%'}), '0',
        'bulk: every lost_pets row got the new phone');
    my $expected = join("\n", map { "$_|ok|" . $node->safe_psql($db, matched_sql($_)) } sort keys %phone_rules);
    is($node->safe_psql($db, qq{SELECT rule_name, status, sum(rows_changed) FROM data_sync.sync_log
                                WHERE id > $max_log GROUP BY 1, 2 ORDER BY 1}),
        $expected, 'bulk: the re-run is logged, every copy changed once');
    is($node->safe_psql($db, qq{SELECT count(*) FROM data_sync.sync_log WHERE id > $max_log}), '3',
        'bulk: one log row per rule for the statement');
    indexes_ok($db, 'bulk, after the re-run');
}

# ---------------------------------------------------------------------------------------------
# (b) queue processing killed midway
{
    my $db = 'queue';
    # isolated-mode failures: a CHECK constraint on veterinarians makes that propagation fail (the
    # other two rules propagate); queued with attempts = 1, due at once (retry_delay 0)
    my @vets = split /\n/, $node->safe_psql($db, 'SELECT user_id FROM public.veterinarians WHERE user_id > 4 ORDER BY 1');
    $node->safe_psql($db, q{ALTER TABLE public.veterinarians ADD CONSTRAINT no_bad CHECK (phone NOT LIKE 'bad-%')});
    $node->safe_psql($db, join("\n", 'SET data_sync.failure_mode = isolated;', 'SET data_sync.retry_delay = 0;',
        map { "UPDATE public.users SET phone = 'bad-$_' WHERE id = $_;" } @vets));
    is($node->safe_psql($db, q{SELECT count(*), min(attempts), max(attempts), min(sqlstate), max(sqlstate)
                               FROM data_sync.queue WHERE rule_name = 'user_phone_to_veterinarian'}),
        scalar(@vets) . '|1|1|23514|23514', 'queue: each failed propagation is queued once');
    $node->safe_psql($db, 'ALTER TABLE public.veterinarians DROP CONSTRAINT no_bad');

    # async writes: every user's phone, $block users per statement: one item per rule per statement
    my @stmts = ('SET data_sync.failure_mode = async;');
    for (my $id = 1; $id <= $users + 4; $id += $block) {
        push @stmts, sprintf(q{UPDATE public.users SET phone = 'q-' || id WHERE id BETWEEN %d AND %d;},
            $id, $id + $block - 1);
    }
    $node->safe_psql($db, join("\n", @stmts));
    my $statements = @stmts - 1;
    is($node->safe_psql($db, q{SELECT count(*) FROM data_sync.queue WHERE attempts = 0}), 3 * $statements,
        'queue: the async writes queued one item per rule per statement');
    is($node->safe_psql($db, drift_sql('user_phone_to_lost_pets')), ($users + 0) * $per_pet
          + $node->safe_psql($db, q{SELECT count(*) FROM public.lost_pets WHERE owner_id <= 4}),
        'queue: every lost_pets row is owed its new phone');
    # the owed work, remembered in a table (it survives the crashes)
    $node->safe_psql($db, 'CREATE TABLE public.queue_before AS SELECT * FROM data_sync.queue');
    # the queries below read an item's keys as [["<user id>"], ...]
    is($node->safe_psql($db, q{SELECT rule_name, count(DISTINCT k ->> 0), count(*) FILTER (WHERE k ->> 0 IS NULL),
                                      bool_and(jsonb_typeof(k) = 'array' AND jsonb_array_length(k) = 1)
                               FROM public.queue_before, jsonb_array_elements(keys) k
                               WHERE rule_name = 'user_phone_to_lost_pets' GROUP BY 1}),
        'user_phone_to_lost_pets|' . ($users + 4) . '|0|t', 'queue: the items owe every user, keys as text arrays');
    my $items = $node->safe_psql($db, 'SELECT count(*) FROM data_sync.queue');
    my $queue_rows = q{SELECT id, rule_name, reverse, operation, keys, status, attempts, next_attempt_at, sqlstate
                       FROM data_sync.queue ORDER BY id};
    my $queue_text = $node->safe_psql($db, $queue_rows);
    my $check = 'SELECT * FROM data_sync.check() ORDER BY 1';
    my $owed = $node->safe_psql($db, $check);
    my $log = $node->safe_psql($db, 'SELECT count(*), max(id) FROM data_sync.sync_log');
    my $log_max = (split /\|/, $log)[1];

    # (b1) one process_queue() call over every item, killed while it writes lost_pets
    my $size = $node->safe_psql($db, q{SELECT pg_relation_size('public.lost_pets')});
    my ($h, $out, $err) = start_background($db, q{SELECT * FROM data_sync.process_queue(1000000);});
    ok(wait_for($db, "pg_catalog.pg_relation_size('public.lost_pets') > $size + 65536"),
        'one call: the queue processor is writing lost_pets');
    is($node->safe_psql($db, $running), '1', 'one call: process_queue is still running');
    crash_and_restart('one call', $h, $out, $err);
    is($node->safe_psql($db, $queue_rows), $queue_text, 'one call: the queue is exactly as before');
    is($node->safe_psql($db, $check), $owed, 'one call: check() reports the same owed rows');
    is($node->safe_psql($db, q{SELECT count(*) FROM public.lost_pets WHERE contact_phone LIKE 'q-%'}), '0',
        'one call: nothing was applied');
    is($node->safe_psql($db, 'SELECT count(*), max(id) FROM data_sync.sync_log'), $log,
        'one call: no log row');
    indexes_ok($db, 'one call');

    # (b2) small process_queue() calls, one transaction each, killed after a tenth of the items
    my $calls = int($items / 20) + 10;
    my $threshold = $items - int($items / 10);
    ($h, $out, $err) = start_background($db,
        join("\n", map { 'SELECT processed FROM data_sync.process_queue(20);' } 1 .. $calls));
    ok(wait_for($db, "(SELECT count(*) FROM data_sync.queue) <= $threshold"),
        'calls: a tenth of the items are processed');
    is($node->safe_psql($db, q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'crash_bg'}), '1',
        'calls: processing is still going on');
    my $offset = -s $node->logfile;
    $node->stop('immediate');
    ok(!$h->finish, 'calls: the processing session failed');
    like($$err, qr/terminating connection|server closed the connection|connection to server was lost/,
        'calls: it lost its connection');
    $node->start;
    ok($node->log_contains(qr/automatic recovery in progress/, $offset), 'calls: the restart ran crash recovery');

    my $left = $node->safe_psql($db, 'SELECT count(*) FROM data_sync.queue');
    ok($left > 0 && $left <= $threshold && $left >= $items / 2,
        "calls: the crash came midway ($left of $items items left)");
    is($node->safe_psql($db, q{SELECT count(*) FROM data_sync.queue q WHERE NOT EXISTS (
                                   SELECT 1 FROM public.queue_before b
                                   WHERE (b.id, b.rule_name, b.reverse, b.operation, b.keys, b.status, b.attempts,
                                          b.next_attempt_at, b.sqlstate)
                                     IS NOT DISTINCT FROM (q.id, q.rule_name, q.reverse, q.operation, q.keys, q.status,
                                                           q.attempts, q.next_attempt_at, q.sqlstate))}),
        '0', 'calls: every item left is an original item, unchanged (no attempt charged, none added)');
    for my $rule (sort keys %phone_rules) {
        my ($table, $match) = @{ $phone_rules{$rule} };
        # applied: the item is gone, so the targets of each of its keys are correct
        is($node->safe_psql($db, drift_sql($rule, qq{
                AND EXISTS (SELECT FROM public.queue_before b, jsonb_array_elements(b.keys) k
                            WHERE b.rule_name = '$rule' AND k ->> 0 = s.id::text
                              AND NOT EXISTS (SELECT FROM data_sync.queue q WHERE q.id = b.id))})),
            '0', "calls: $rule: the targets of applied items are correct");
        # nothing lost: every drifted row is owed by an item still queued
        is($node->safe_psql($db, drift_sql($rule, qq{
                AND NOT EXISTS (SELECT FROM data_sync.queue q, jsonb_array_elements(q.keys) k
                                WHERE q.rule_name = '$rule' AND k ->> 0 = s.id::text)})),
            '0', "calls: $rule: every drifted row is owed by a queued item");
        is($node->safe_psql($db, "SELECT drifted_rows FROM data_sync.check('$rule')"),
            $node->safe_psql($db, drift_sql($rule)), "calls: $rule: check() counts the owed rows");
    }
    ok($node->safe_psql($db, drift_sql('user_phone_to_lost_pets')) > 0, 'calls: some rows are still owed');
    ok($node->safe_psql($db, drift_sql('user_phone_to_lost_pets')) < ($users + 0) * $per_pet,
        'calls: some rows were applied');
    is($node->safe_psql($db, qq{SELECT string_agg(DISTINCT status, ',') FROM data_sync.sync_log WHERE id > $log_max}),
        'ok', 'calls: the committed calls logged successes only');
    indexes_ok($db, 'calls');

    # processing to completion
    my $rounds = 0;
    $rounds++ while $rounds < 50 && $node->safe_psql($db, 'SELECT processed FROM data_sync.process_queue(100000)') > 0;
    is($node->safe_psql($db, 'SELECT count(*) FROM data_sync.queue'), '0', 'after: the queue is empty');
    is($node->safe_psql($db, 'SELECT count(*), sum(drifted_rows) FROM data_sync.check()'), '6|0',
        'after: check() finds no drift');
    is($node->safe_psql($db, q{SELECT count(*) FROM public.users u
                               WHERE phone NOT LIKE 'q-%' OR EXISTS (SELECT 1 FROM public.lost_pets l
                                   WHERE l.owner_id = u.id AND l.contact_phone IS DISTINCT FROM u.phone)}),
        '0', 'after: every lost_pets row carries its owner\'s latest phone');
    is($node->safe_psql($db, qq{SELECT count(*) FROM data_sync.sync_log WHERE status <> 'ok' AND id > $log_max}), '0',
        'after: no failure logged by the queue processor');
    indexes_ok($db, 'after');
}

$node->stop;
done_testing();
