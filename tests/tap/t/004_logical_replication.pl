# data_sync under PostgreSQL's built-in logical replication, publisher -> subscriber.
#
# A. Rules on the publisher, source and target tables both published; the subscriber has
#    data_sync and the same rules installed too (as a restored copy would). A write on the
#    publisher arrives once: the subscriber's apply worker runs with session_replication_role =
#    replica, so the subscriber's own rule triggers stay quiet and its sync log stays empty.
# B. Only the source table is published and the subscriber runs the rule itself:
#    data_sync.fire_on_replica() makes its triggers ENABLE ALWAYS. After the subscription was
#    paused and a copy drifted meanwhile, sync_all_<entity>_data on the subscriber repairs it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $schema = q{
    CREATE TABLE public.users (id bigint PRIMARY KEY, phone text);
    CREATE TABLE public.lost_pets (id bigint PRIMARY KEY, owner_id bigint, contact_phone text);
    INSERT INTO public.users SELECT i, '+1-555-000' || i FROM generate_series(1, 3) i;
    INSERT INTO public.lost_pets SELECT 10 * i + j, i, '+1-555-000' || i
    FROM generate_series(1, 3) i, generate_series(1, 2) j;
};
my $rules = q{
    SELECT count(*) FROM data_sync.load_rules($toml$
[entity.user]
table = "public.users"
key = "id"

[[rule]]
name = "phone"
source = "public.users"
target = "public.lost_pets"
match = { owner_id = "id" }
set = { contact_phone = "phone" }
$toml$)
};

my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->start;
my $sub = PostgreSQL::Test::Cluster->new('subscriber');
$sub->init;
$sub->start;
my $pub_conn = $pub->connstr;

for my $node ($pub, $sub) {
    $node->safe_psql('postgres', 'CREATE DATABASE full_copy');
    $node->safe_psql('postgres', 'CREATE DATABASE sources_only');
}

# ---- A. both tables published, rules on both sides -----------------------------------------
$pub->safe_psql('full_copy', $schema . 'CREATE EXTENSION data_sync;' . $rules);
# the subscriber starts with empty tables: the initial copy brings the rows
$sub->safe_psql('full_copy', $schema . 'TRUNCATE public.users, public.lost_pets;'
    . 'CREATE EXTENSION data_sync;' . $rules);
# count every write the subscriber's target receives, from whichever process
$sub->safe_psql('full_copy', q{
    CREATE TABLE public.target_writes (pet_id bigint, op text);
    CREATE FUNCTION public.count_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.target_writes VALUES (NEW.id, TG_OP); RETURN NULL; END $$;
    CREATE TRIGGER count_write AFTER INSERT OR UPDATE ON public.lost_pets
        FOR EACH ROW EXECUTE FUNCTION public.count_write();
    ALTER TABLE public.lost_pets ENABLE ALWAYS TRIGGER count_write;
});
$pub->safe_psql('full_copy', 'CREATE PUBLICATION both_tables FOR TABLE public.users, public.lost_pets');
$sub->safe_psql('full_copy',
    "CREATE SUBSCRIPTION both_tables CONNECTION '$pub_conn dbname=full_copy' PUBLICATION both_tables");
$sub->wait_for_subscription_sync($pub, 'both_tables', 'full_copy');
$sub->safe_psql('full_copy', 'TRUNCATE public.target_writes');

$pub->safe_psql('full_copy', q{UPDATE public.users SET phone = '+1-555-7777' WHERE id = 1});
$pub->safe_psql('full_copy', q{INSERT INTO public.lost_pets VALUES (40, 2, NULL)});   # filled on the publisher
$pub->wait_for_catchup('both_tables');

is($sub->safe_psql('full_copy', 'SELECT id, contact_phone FROM public.lost_pets WHERE owner_id = 1 ORDER BY id'),
    "11|+1-555-7777\n12|+1-555-7777", 'A: the propagated update reached the subscriber');
is($sub->safe_psql('full_copy', 'SELECT contact_phone FROM public.lost_pets WHERE id = 40'),
    '+1-555-0002', 'A: the row the publisher filled arrived filled');
is($sub->safe_psql('full_copy', 'SELECT op, count(*) FROM public.target_writes GROUP BY op ORDER BY op'),
    "INSERT|1\nUPDATE|2", 'A: each target row was written exactly once on the subscriber');
is($sub->safe_psql('full_copy', 'SELECT count(*) FROM data_sync.sync_log'),
    '0', 'A: the subscriber did not propagate again (its sync log is empty)');
is($pub->safe_psql('full_copy', q{SELECT operation, rows_changed FROM data_sync.sync_log
                                   WHERE status = 'ok' AND operation <> 'sync' ORDER BY id}),
    "update|2\nfill|1", 'A: the publisher logged its propagations once');
is($sub->safe_psql('full_copy', 'SELECT sum(drifted_rows) FROM data_sync.check()'),
    '0', 'A: no drift on the subscriber');
is($sub->safe_psql('full_copy', q{SELECT DISTINCT tgenabled FROM pg_trigger WHERE tgname LIKE 'data_sync%'}),
    'O', 'A: by default the rule triggers fire on local writes only');

# ---- B. only the source published; the subscriber runs the rule --------------------------
$pub->safe_psql('sources_only', $schema);
$sub->safe_psql('sources_only', $schema . q{
    TRUNCATE public.users;
    UPDATE public.lost_pets SET contact_phone = NULL;
    CREATE EXTENSION data_sync;
} . $rules);
is($sub->safe_psql('sources_only', 'SELECT * FROM data_sync.fire_on_replica()'),
    'rule|phone|changed', 'B: fire_on_replica() changes the rule');
is($sub->safe_psql('sources_only', q{SELECT DISTINCT tgenabled FROM pg_trigger WHERE tgname LIKE 'data_sync%'}),
    'A', 'B: the rule triggers are ENABLE ALWAYS');
$pub->safe_psql('sources_only', 'CREATE PUBLICATION users_only FOR TABLE public.users');
$sub->safe_psql('sources_only',
    "CREATE SUBSCRIPTION users_only CONNECTION '$pub_conn dbname=sources_only' PUBLICATION users_only");
$sub->wait_for_subscription_sync($pub, 'users_only', 'sources_only');
is($sub->safe_psql('sources_only', 'SELECT count(*) FROM public.lost_pets WHERE contact_phone IS NULL'),
    '0', 'B: the initial copy of the source propagated on the subscriber');

$pub->safe_psql('sources_only', q{UPDATE public.users SET phone = '+1-555-8888' WHERE id = 2});
$pub->wait_for_catchup('users_only');
is($sub->safe_psql('sources_only', 'SELECT contact_phone FROM public.lost_pets WHERE owner_id = 2 ORDER BY id'),
    "+1-555-8888\n+1-555-8888", 'B: a replicated source update propagated on the subscriber');
is($sub->safe_psql('sources_only', q{SELECT operation, source_key, rows_changed FROM data_sync.sync_log
                                      WHERE operation = 'update'}),
    'update|2|2', 'B: and was logged there, once');

# The subscription pauses; meanwhile the publisher changes a phone and, on the subscriber, a
# copy is overwritten by hand. Resumed, the replicated change propagates; the hand-made drift
# stays until sync_all_user_data repairs it.
$sub->safe_psql('sources_only', 'ALTER SUBSCRIPTION users_only DISABLE');
$pub->safe_psql('sources_only', q{UPDATE public.users SET phone = '+1-555-9999' WHERE id = 3});
$sub->safe_psql('sources_only', q{UPDATE public.lost_pets SET contact_phone = 'typo' WHERE id = 11});
$sub->safe_psql('sources_only', 'ALTER SUBSCRIPTION users_only ENABLE');
$pub->wait_for_catchup('users_only');
is($sub->safe_psql('sources_only', 'SELECT contact_phone FROM public.lost_pets WHERE owner_id = 3 ORDER BY id'),
    "+1-555-9999\n+1-555-9999", 'B: after the pause, the queued source change propagated');
is($sub->safe_psql('sources_only', 'SELECT drifted_rows FROM data_sync.check()'),
    '1', 'B: check() finds the copy that drifted on the subscriber');
is($sub->safe_psql('sources_only', 'SELECT public.sync_all_user_data(1)'), '1',
    'B: sync_all_user_data(1) repairs one row');
is($sub->safe_psql('sources_only', 'SELECT drifted_rows FROM data_sync.check()'),
    '0', 'B: no drift left');

# fire_on_replica(false) returns to the default: replicated writes no longer propagate
$sub->safe_psql('sources_only', 'SELECT * FROM data_sync.fire_on_replica(false)');
$pub->safe_psql('sources_only', q{UPDATE public.users SET phone = '+1-555-0000' WHERE id = 1});
$pub->wait_for_catchup('users_only');
is($sub->safe_psql('sources_only', 'SELECT drifted_rows FROM data_sync.check()'),
    '2', 'B: with fire_on_replica(false), replicated writes do not propagate');

done_testing();
