# pg_dump the demo database and restore it (custom format with pg_restore, and plain SQL with
# psql): the rules and entities come back identical, every trigger exists exactly once, the
# sync_all_*_data functions exist, nothing propagates while the data loads (the restored rows are
# exactly the dumped ones, drift included), and propagation works afterwards.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = $ENV{DATA_SYNC_ROOT} or die "DATA_SYNC_ROOT must point at the repository";

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE demo');
$node->safe_psql('demo', slurp_file("$root/examples/tailtracker/schema.sql"));
$node->safe_psql('demo', 'CREATE EXTENSION data_sync');
my $rules = slurp_file("$root/sync_rules.toml");
$node->safe_psql('demo', "SELECT count(*) FROM data_sync.load_rules(\$toml\$$rules\$toml\$)");
# bring the example's copies in line, then a write that propagates and a direct write to a
# copy (drift) that a restore must neither "fix" nor propagate
$node->safe_psql('demo', q{
    SELECT data_sync.sync_all();
    UPDATE public.users SET phone = '+1-555-0100' WHERE id = 1;
    UPDATE public.lost_pets SET contact_phone = 'drifted'
    WHERE id = (SELECT min(id) FROM public.lost_pets WHERE owner_id = 1);
});
# an async write whose propagations are still queued: owed work must survive the restore
$node->safe_psql('demo', q{
    SET data_sync.failure_mode = async;
    UPDATE public.users SET phone = '+1-555-0222' WHERE id = 2;
});

my %q = (
    rules => q{SELECT name, source_schema, source_table, target_schema, target_table, target_keys, source_keys,
                      target_columns, source_columns, where_clause, enabled, defined_by, defined_at
               FROM data_sync.rules ORDER BY name},
    entities => q{SELECT * FROM data_sync.entities ORDER BY name},
    triggers => q{SELECT tgrelid::regclass::text, tgname, tgenabled, pg_get_triggerdef(oid)
                  FROM pg_trigger WHERE tgname LIKE 'data_sync\_%' ORDER BY 1, 2},
    functions => q{SELECT p.oid::regprocedure FROM pg_proc p
                   WHERE p.proname LIKE 'sync\_all\_%\_data' ORDER BY 1},
    lost_pets => q{SELECT * FROM public.lost_pets ORDER BY id},
    pets => q{SELECT * FROM public.pets ORDER BY id},
    drift => q{SELECT * FROM data_sync.check() ORDER BY 1},
    queue => q{SELECT id, rule_name, reverse, operation, keys, status, attempts FROM data_sync.queue ORDER BY id},
);
my %before = map { $_ => $node->safe_psql('demo', $q{$_}) } keys %q;
like($before{triggers}, qr/data_sync_user_phone_to_lost_pets_sr/, 'the demo database has rule triggers');
is($node->safe_psql('demo', q{SELECT rule_name, drifted_rows FROM data_sync.check() WHERE drifted_rows > 0}),
    "user_phone_to_lost_pets|2\nuser_phone_to_pet_emergency_contact|2",
    'the demo database has a drifted row and the rows the queued propagations owe');

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $connstr = sub { $node->connstr($_[0]) };
my %restore = (
    custom => sub {
        my ($db) = @_;
        $node->command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/demo.dump", '-d', $connstr->('demo') ], 'pg_dump -Fc');
        $node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $connstr->($db), "$tmp/demo.dump" ],
            'pg_restore');
    },
    plain => sub {
        my ($db) = @_;
        $node->command_ok([ 'pg_dump', '-Fp', '-f', "$tmp/demo.sql", '-d', $connstr->('demo') ], 'pg_dump -Fp');
        $node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/demo.sql", '-d', $connstr->($db) ],
            'psql < dump');
    },
);

for my $format (sort keys %restore) {
    my $db = "restored_$format";
    $node->safe_psql('postgres', "CREATE DATABASE $db");
    $restore{$format}->($db);

    for my $what (sort keys %q) {
        is($node->safe_psql($db, $q{$what}), $before{$what}, "$format: $what identical after restore");
    }
    is($node->safe_psql($db, q{SELECT count(*) FROM data_sync.sync_log
                               WHERE rule_name = 'user_phone_to_lost_pets'}), '0',
        "$format: nothing propagated while the data loaded");
    is($node->safe_psql($db, q{SELECT count(*) FROM pg_depend d JOIN pg_trigger t ON t.oid = d.objid
                               WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'data_sync')
                                 AND d.deptype = 'e'}), '0',
        "$format: triggers are ordinary objects, not extension members");

    # the queued propagations are applied; new items get fresh ids (the queue's sequence came along)
    my $queued = $node->safe_psql('demo', q{SELECT count(*) FROM data_sync.queue});
    $node->safe_psql($db, q{SET data_sync.failure_mode = async; UPDATE public.users SET phone = '+1-555-0333' WHERE id = 3});
    is($node->safe_psql($db, q{SELECT processed FROM data_sync.process_queue()}), 2 * $queued,
        "$format: restored and new queue items are applied");
    is($node->safe_psql($db, q{SELECT count(*) FROM public.lost_pets
                               WHERE owner_id = 2 AND contact_phone IS DISTINCT FROM '+1-555-0222'}),
        '0', "$format: the restored queue item reached its target");

    # the generated functions and propagation work in the restored database
    is($node->safe_psql($db, q{SELECT sync_all_user_data(auth_user_id) FROM public.users WHERE id = 1}),
        '1', "$format: sync_all_user_data repairs the drifted row");
    is($node->safe_psql($db, q{SELECT sum(drifted_rows) FROM data_sync.check()}), '0', "$format: no drift left");
    $node->safe_psql($db, q{UPDATE public.users SET phone = '+1-555-0199' WHERE id = 1});
    is($node->safe_psql($db, q{SELECT string_agg(DISTINCT contact_phone, ',') FROM public.lost_pets WHERE owner_id = 1}),
        '+1-555-0199', "$format: propagation works after restore");
    is($node->safe_psql($db, q{SELECT string_agg(operation || ':' || status, ',' ORDER BY id) FROM data_sync.sync_log
                               WHERE rule_name = 'user_phone_to_lost_pets'}),
        'update:ok,sync:ok,update:ok', "$format: all are logged");
}

$node->stop;
done_testing();
