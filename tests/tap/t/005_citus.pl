# Citus: a coordinator and two workers (Citus 13.2.2, built by scripts/citus.sh; PostgreSQL 15
# only). Citus runs a distributed table's writes, and the triggers data_sync would install, on
# its shards on the workers, where the coordinator's rules are not: such rules never propagate.
# So data_sync refuses, when the rule is loaded (SQLSTATE 0A000, naming the rule and the table),
# every rule whose source or target Citus manages: hash-distributed, reference and Citus-local
# tables (anything in pg_dist_partition), with citus.enable_unsafe_triggers off or on, and leaves
# nothing behind on any node. Rules between plain tables on the coordinator keep working, and
# Citus itself refuses to distribute a table that carries data_sync's triggers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# pg_config is the selected major's (scripts/tap.sh puts its bin directory first on PATH)
my $pkglibdir = `pg_config --pkglibdir 2>/dev/null` // '';
chomp $pkglibdir;
if (!$pkglibdir || !-e "$pkglibdir/citus.so") {
    plan skip_all => 'Citus is not installed in ' . ($pkglibdir || "this PostgreSQL (no pg_config on PATH)")
      . ': scripts/citus.sh installs it, for PostgreSQL 15 only';
}

# Citus connects the nodes to each other over TCP (the Cluster nodes listen only on a Unix socket
# by default); initdb's pg_hba.conf trusts 127.0.0.1. Two-phase commit for multi-node writes.
my @nodes;
for my $name (qw(coordinator worker1 worker2)) {
    my $node = PostgreSQL::Test::Cluster->new($name);
    $node->init;
    $node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'citus'
listen_addresses = '127.0.0.1'
max_connections = 100
max_prepared_transactions = 100
max_worker_processes = 16
});
    $node->start;
    push @nodes, $node;
}
my ($coord, @workers) = @nodes;

# --- a. the cluster, and data_sync on every node -------------------------------------------
$_->safe_psql('postgres', 'CREATE EXTENSION citus') for @nodes;
$coord->safe_psql('postgres', sprintf(q{SELECT citus_set_coordinator_host('127.0.0.1', %d)}, $coord->port));
$coord->safe_psql('postgres', sprintf(q{SELECT citus_add_node('127.0.0.1', %d)}, $_->port)) for @workers;
is($coord->safe_psql('postgres',
        q{SELECT string_agg(nodeport::text || ':' || isactive, ',' ORDER BY nodeport) FROM pg_dist_node}),
    join(',', map { $_->port . ':true' } sort { $a->port <=> $b->port } @nodes),
    'the coordinator and both workers are active Citus nodes');

$coord->safe_psql('postgres', 'CREATE EXTENSION data_sync');
my $version = $coord->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'data_sync'});
for my $worker (@workers) {
    is($worker->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'data_sync'}),
        $version, $worker->name . ': CREATE EXTENSION data_sync on the coordinator created it here too');
}

# --- the Citus tables, and plain ones beside them ------------------------------------------
$coord->safe_psql('postgres', q{
    CREATE TABLE users (id bigint PRIMARY KEY, phone text);
    CREATE TABLE lost_pets (id bigint, owner_id bigint, contact_phone text, clinic_id bigint, clinic_name text,
                            PRIMARY KEY (owner_id, id));
    SELECT create_distributed_table('users', 'id', shard_count := 4);
    SELECT create_distributed_table('lost_pets', 'owner_id', colocate_with := 'users');
    CREATE TABLE clinics (id bigint PRIMARY KEY, name text);
    SELECT create_reference_table('clinics');
    CREATE TABLE clocal (user_id bigint PRIMARY KEY, phone text);
    SELECT citus_add_local_table_to_metadata('clocal');
    CREATE TABLE notes (user_id bigint PRIMARY KEY, phone text);
    INSERT INTO users SELECT g, 'p' || g FROM generate_series(1, 8) g;
    INSERT INTO clinics VALUES (7, 'North');
    INSERT INTO lost_pets SELECT 100 * g, g, NULL, 7, NULL FROM generate_series(1, 8) g;
    INSERT INTO clocal VALUES (1, 'c1');
    INSERT INTO notes VALUES (1, 'n1');
});
is($coord->safe_psql('postgres',
        q{SELECT string_agg(logicalrelid::text || ':' || partmethod::text || repmodel::text, ',' ORDER BY logicalrelid::text)
          FROM pg_dist_partition}),
    'clinics:nt,clocal:ns,lost_pets:hs,users:hs',
    'users and lost_pets hash-distributed, clinics a reference table, clocal Citus-local; notes plain');

sub rule_toml {
    my ($name, $source, $target, $match, $set) = @_;
    return qq{
[[rule]]
name = "$name"
source = "$source"
target = "$target"
match = $match
set = $set
};
}

sub load_rules_sql {
    my ($toml) = @_;
    return "SELECT kind, name, action FROM data_sync.load_rules(\$toml\$$toml\$toml\$) ORDER BY name";
}

# Runs $sql on $node (psql, ON_ERROR_STOP, verbose errors) and checks that it fails with data_sync's
# refusal: SQLSTATE 0A000, a message naming the rule, the table and how Citus manages it.
sub refused {
    my ($node, $sql, $rule, $side, $table, $kind, $what) = @_;
    my ($out, $err) = ('', '');
    my $rc = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
        extra_params => [ '-v', 'VERBOSITY=verbose' ]);
    isnt($rc, 0, "$what: refused");
    my ($sqlstate, $message) = $err =~ /^(?:psql:\S+: )?ERROR:\s+([0-9A-Z]{5}): (.*)$/m;
    is($sqlstate, '0A000', "$what: SQLSTATE 0A000 (feature not supported)");
    like($message // $err,
        qr/^(?:data_sync: )?rule "\Q$rule\E": \Q$side $table\E is a Citus $kind table\b.*\bdata_sync does not support rules on tables Citus manages/,
        "$what: the message names the rule, the $side $table and that it is a Citus $kind table");
}

# nothing of a refused rule anywhere: no rule row, no data_sync trigger on any node (with Citus a
# trigger created on the coordinator's shell table is created on every shard, on the workers)
sub nothing_left {
    my ($what, $rules) = @_;
    for my $node (@nodes) {
        is($node->safe_psql('postgres', q{
                SELECT (SELECT count(*) FROM data_sync.rules) || ' rules, '
                    || (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'data\_sync%') || ' triggers'}),
            ($node == $coord ? $rules : '0 rules, 0 triggers'),
            "$what: nothing half-applied on " . $node->name);
    }
}

# --- b. co-located hash-distributed tables -------------------------------------------------
my $rule_r = rule_toml('r', 'public.users', 'public.lost_pets', '{ owner_id = "id" }', '{ contact_phone = "phone" }');
# Citus's default (citus.enable_unsafe_triggers off) refuses the triggers too, with its own error:
# data_sync's refusal must come first, and must not depend on that setting
refused($coord, load_rules_sql($rule_r), 'r', 'source', 'public.users', 'distributed',
    'distributed source and target (citus.enable_unsafe_triggers off)');
nothing_left('distributed source and target', '0 rules, 0 triggers');
refused($coord, "SET citus.enable_unsafe_triggers = on;\n" . load_rules_sql($rule_r), 'r', 'source', 'public.users',
    'distributed', 'distributed source and target (citus.enable_unsafe_triggers on)');
nothing_left('distributed source and target, unsafe triggers on', '0 rules, 0 triggers');
# a worker has Citus's metadata too (pg_dist_partition), and data_sync: the same refusal there
refused($workers[0], "SET citus.enable_unsafe_triggers = on;\n" . load_rules_sql($rule_r), 'r', 'source',
    'public.users', 'distributed', 'the same rule loaded on a worker');
nothing_left('the rule loaded on a worker', '0 rules, 0 triggers');

# --- c. a reference-table source, a Citus-local source, a distributed target -------------------
refused($coord, "SET citus.enable_unsafe_triggers = on;\n"
      . load_rules_sql(rule_toml('clinic', 'public.clinics', 'public.lost_pets',
            '{ clinic_id = "id" }', '{ clinic_name = "name" }')),
    'clinic', 'source', 'public.clinics', 'reference', 'reference-table source, distributed target');
refused($coord, "SET citus.enable_unsafe_triggers = on;\n"
      . load_rules_sql(rule_toml('cl', 'public.clocal', 'public.notes',
            '{ user_id = "user_id" }', '{ phone = "phone" }')),
    'cl', 'source', 'public.clocal', 'local', 'Citus-local source, plain target');
refused($coord, "SET citus.enable_unsafe_triggers = on;\n"
      . load_rules_sql(rule_toml('n', 'public.notes', 'public.lost_pets',
            '{ owner_id = "user_id" }', '{ contact_phone = "phone" }')),
    'n', 'target', 'public.lost_pets', 'distributed', 'plain source, distributed target');
nothing_left('the refused reference, Citus-local and target-side rules', '0 rules, 0 triggers');

# --- d. plain tables on the coordinator: rules work as anywhere -----------------------------
$coord->safe_psql('postgres', q{
    CREATE TABLE owners (id bigint PRIMARY KEY, phone text);
    CREATE TABLE pets (id bigint PRIMARY KEY, owner_id bigint, contact_phone text);
    INSERT INTO owners VALUES (1, '111'), (2, '222');
    INSERT INTO pets VALUES (10, 1, '111'), (11, 1, '111'), (20, 2, '222');
});
my $rule_plain = rule_toml('owner_phone', 'public.owners', 'public.pets', '{ owner_id = "id" }',
    '{ contact_phone = "phone" }');
is($coord->safe_psql('postgres', load_rules_sql($rule_plain)), 'rule|owner_phone|added',
    'a rule between two plain tables on the coordinator is accepted');
$coord->safe_psql('postgres', q{UPDATE owners SET phone = '+1 555' WHERE id = 1});
is($coord->safe_psql('postgres', q{SELECT string_agg(id || ':' || contact_phone, ',' ORDER BY id) FROM pets}),
    '10:+1 555,11:+1 555,20:222', "the source's update reached the target rows, and only those");
is($coord->safe_psql('postgres',
        q{SELECT operation || ':' || status || ':' || rows_changed FROM data_sync.sync_log
          WHERE rule_name = 'owner_phone' ORDER BY id DESC LIMIT 1}),
    'update:ok:2', 'the propagation is logged ok');

# a rule set mixing the working rule with a refused one is refused whole: the working rule stays
refused($coord, "SET citus.enable_unsafe_triggers = on;\n" . load_rules_sql($rule_plain . $rule_r), 'r', 'source',
    'public.users', 'distributed', 'a rule set adding a distributed rule to the plain one');
my $plain_triggers = $coord->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'data\_sync%'});
cmp_ok($plain_triggers, '>', 0, 'the plain rule has its triggers');
nothing_left('the refused rule set', "1 rules, $plain_triggers triggers");

# --- e. Citus refuses to distribute a table carrying data_sync's triggers ---------------------
for my $call (q{create_distributed_table('pets', 'owner_id')}, q{create_reference_table('owners')}) {
    my ($table) = $call =~ /'(\w+)'/;
    my ($out, $err) = ('', '');
    my $rc = $coord->psql('postgres', "SELECT $call", stdout => \$out, stderr => \$err);
    isnt($rc, 0, "$call fails on the rule's $table (citus.enable_unsafe_triggers off)");
    like($err, qr/cannot distribute relation "$table" because it has triggers/, "$call: Citus names the triggers");
}
is($coord->safe_psql('postgres', q{SELECT count(*) FROM pg_dist_partition WHERE logicalrelid IN ('owners'::regclass, 'pets'::regclass)}),
    '0', 'owners and pets are still plain tables');
$coord->safe_psql('postgres', q{UPDATE owners SET phone = '333' WHERE id = 2});
is($coord->safe_psql('postgres', q{SELECT string_agg(id || ':' || contact_phone, ',' ORDER BY id) FROM pets}),
    '10:+1 555,11:+1 555,20:333', 'the rule still propagates afterwards');
is($coord->safe_psql('postgres',
        q{SELECT count(*) FILTER (WHERE status = 'ok') || '/' || count(*) FROM data_sync.sync_log WHERE rule_name = 'owner_phone'}),
    '2/2', 'both propagations are logged ok');

# --- f. no crash anywhere -------------------------------------------------------------------
$_->stop for @nodes;
for my $node (@nodes) {
    unlike(slurp_file($node->logfile), qr/terminated by signal/, $node->name . ': no backend crashed');
}

done_testing();
