# The background queue processor: with data_sync in shared_preload_libraries and the database
# named in data_sync.worker_databases, a worker retries failed propagations with backoff until
# they succeed (here: a target CHECK constraint is fixed between attempts) and applies async
# propagations shortly after commit, without anybody calling process_queue.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'data_sync'
data_sync.worker_databases = 'postgres'
data_sync.worker_interval = '100ms'
data_sync.retry_delay = '200ms'
data_sync.max_retries = 1000
});
$node->start;

is($node->safe_psql('postgres',
        q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'data_sync queue processor'}),
    '1', 'one queue processor runs');

# the worker waits for the extension to be created
$node->safe_psql('postgres', q{
    CREATE EXTENSION data_sync;
    CREATE TABLE users (id int PRIMARY KEY, phone text);
    CREATE TABLE pets (id int PRIMARY KEY, owner_id int, contact_phone text
                       CONSTRAINT digits CHECK (contact_phone ~ '^[0-9]+$'));
    INSERT INTO users VALUES (1, '111'), (2, '222');
    INSERT INTO pets VALUES (10, 1, '111'), (20, 2, '222');
    SELECT * FROM data_sync.add_rule('phone', 'public.users', 'public.pets',
                                     '{"owner_id": "id"}', '{"contact_phone": "phone"}');
});

# a failing propagation: the write commits, the worker keeps retrying
$node->safe_psql('postgres', q{UPDATE users SET phone = '+1 555' WHERE id = 1});
is($node->safe_psql('postgres', q{SELECT phone FROM users WHERE id = 1}), '+1 555', 'the write committed');
ok($node->poll_query_until('postgres', q{SELECT attempts >= 3 FROM data_sync.queue}),
    'the worker retries the failed propagation');
is($node->safe_psql('postgres', q{SELECT contact_phone FROM pets WHERE id = 10}), '111',
    'the target is unchanged while the propagation fails');

# the cause is fixed: the next retry heals it
$node->safe_psql('postgres', q{ALTER TABLE pets DROP CONSTRAINT digits});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM data_sync.queue}), 'the queue drains');
is($node->safe_psql('postgres', q{SELECT contact_phone FROM pets WHERE id = 10}), '+1 555',
    'the healed propagation reached the target');
is($node->safe_psql('postgres',
        q{SELECT status, attempt > 1 FROM data_sync.sync_log WHERE rule_name = 'phone' ORDER BY id DESC LIMIT 1}),
    'ok|t', 'the successful retry is logged with its attempt number');

# async: the write only queues; the worker applies it after commit
$node->safe_psql('postgres', q{
    SET data_sync.failure_mode = async;
    UPDATE users SET phone = '333' WHERE id = 2;
    UPDATE users SET phone = '334' WHERE id = 2;
});
ok($node->poll_query_until('postgres', q{SELECT contact_phone = '334' FROM pets WHERE id = 20}),
    'the worker applies async propagations');
is($node->safe_psql('postgres', q{SELECT count(*) FROM data_sync.queue}), '0', 'nothing left queued');

# The worker connects as the bootstrap superuser. A table owner's code that queue processing runs
# (here the CHECK of a domain used as the source key, run when the queued key is read back) runs as
# that owner, never as the worker's superuser.
$node->safe_psql('postgres', q{
    CREATE ROLE mallory;
    CREATE SCHEMA mal AUTHORIZATION mallory;
    CREATE TABLE public.seen (who name, superuser boolean);
    GRANT INSERT ON public.seen TO PUBLIC;
    SET ROLE mallory;
    CREATE FUNCTION mal.spy(bigint) RETURNS boolean LANGUAGE sql AS
        $$ INSERT INTO public.seen SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user
           RETURNING true $$;
    CREATE DOMAIN mal.key AS bigint CHECK (mal.spy(VALUE));
    CREATE TABLE mal.src (id mal.key PRIMARY KEY, v text);
    CREATE TABLE mal.tgt (id bigint PRIMARY KEY, src_id mal.key, v text CONSTRAINT no_x CHECK (v <> 'x'));
    INSERT INTO mal.src VALUES (1, 'a');
    INSERT INTO mal.tgt VALUES (10, 1, 'a');
    SELECT * FROM data_sync.add_rule('mal', 'mal.src', 'mal.tgt', '{"src_id": "id"}', '{"v": "v"}');
    RESET ROLE;
    TRUNCATE public.seen;
    SET ROLE mallory;
    UPDATE mal.src SET v = 'x';
    ALTER TABLE mal.tgt DROP CONSTRAINT no_x;
});
ok($node->poll_query_until('postgres', q{SELECT v = 'x' FROM mal.tgt}),
    'the worker applies the queued propagation of a domain-typed key');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT who || ':' || superuser, ',') FROM public.seen}),
    'mallory:false', "the key's domain check ran as its owner, not as the worker's superuser");

# the worker comes back after a restart
$node->restart;
ok($node->poll_query_until('postgres',
        q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'data_sync queue processor'}),
    'the queue processor runs again after a restart');

$node->stop;
done_testing();
