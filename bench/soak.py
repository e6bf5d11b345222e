#!/usr/bin/env python3
"""data_sync soak test: `make soak` (issue 6, "Hardening").

Starts a scratch PostgreSQL 15 cluster (default /tmp/data_sync_soak, port 5499) with the queue
worker preloaded, creates the TailTracker schema (examples/tailtracker/schema.sql) with generated
data (bench/sql/soak/data.sql), installs data_sync with the repository's sync_rules.toml and
brings the copies in line with sync_all(). Then pgbench runs concurrent clients for a while,
mixing weighted scripts (bench/sql/soak/*.sql): phone changes (single and bulk), lost-pet
reports, pet weights, health records, emergency-contact changes, vet renames and the generated
sync_all_*_data functions. Deadlocks and serialization failures are retried by pgbench
(--max-tries, 20); a transaction that still fails after its tries is a violation. (With 10 tries,
about one READ COMMITTED run in ten had a pair of transactions, a comprehensive re-sync or a bulk
phone update against a fill, deadlock ten times in a row: the deadlocks the README lists as a
known limit, retried at once against the same partner.)

Afterwards it asserts, and exits 1 on any violation (printing the evidence):
  * data_sync.check() reports a row for every enabled copy rule, each with zero drift, and
    hand-written drift queries for the same rules agree (they do not trust check());
  * the append rule's history ends with every pet's current weight;
  * every rule is still enabled, the queue is empty (async mode: once the worker drained it) and
    data_sync.health() says healthy;
  * data_sync.sync_log holds no failure other than explained ones. Explained: none in strict
    and isolated mode; in async mode, a queue processor's attempt that failed with a deadlock
    or serialization failure (SQLSTATE class 40; the item is retried with backoff), as long as
    no item ends up dead. `conflict` rows (last write wins) are counted, not failures;
  * no re-sync during the run repaired anything in strict or isolated mode (every committed state
    already satisfied the rules; in async mode it may run before the queue item is applied);
  * every rule propagated at least once (the run exercised it);
  * pgbench: no aborted client, no failed transaction; the server log has no ERROR other than
    deadlocks/serialization failures (40P01/40001) and no crash;
  * amcheck: every B-tree index of the database is consistent with its heap (sync_log rows are
    written straight into the table and its indexes, bypassing the executor).

Settings (environment): SOAK_SECONDS (60), SOAK_CLIENTS (8), SOAK_USERS (2000), SOAK_MODE
(isolated | strict | async; default isolated, data_sync's default), SOAK_ISOLATION (read committed |
repeatable read | serializable), SOAK_MAX_TRIES (20), DATA_SYNC_SOAK_DIR, DATA_SYNC_SOAK_PORT.
Under "repeatable read" the losers of races get 40001 and pgbench retries them (60 s on 2 cores:
0 drift, 0 failed, ~2,000 retries); under "serializable" some transactions can exhaust their tries.
Python standard library only.
"""

import collections
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SQL = ROOT / "bench" / "sql" / "soak"
def pg_bindir():
    """The selected PostgreSQL's bin directory: PG_BINDIR, else scripts/pgenv.sh's (PG=15|16|17|18
    or PG_CONFIG, as for make)."""
    if os.environ.get("PG_BINDIR"):
        return pathlib.Path(os.environ["PG_BINDIR"])
    pgenv = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "pgenv.sh"
    return pathlib.Path(subprocess.run([pgenv, "PG_BINDIR"], check=True, capture_output=True, text=True).stdout.strip())


BIN = pg_bindir()
# amcheck is a contrib module: PostgreSQL 16's wheel (PG=16 make deps) has none
AMCHECK = (pathlib.Path(subprocess.run([BIN / "pg_config", "--sharedir"], check=True, capture_output=True,
                                       text=True).stdout.strip()) / "extension" / "amcheck.control").exists() or any(
    (p / "extension" / "amcheck.control").exists() for p in [BIN.parent / "share"])
if not AMCHECK:
    AMCHECK = (pathlib.Path(subprocess.run([BIN / "pg_config", "--sharedir"], capture_output=True, text=True).stdout.strip())
               / "extension" / "amcheck.control").exists()
DIR = pathlib.Path(os.environ.get("DATA_SYNC_SOAK_DIR", "/tmp/data_sync_soak"))
PORT = int(os.environ.get("DATA_SYNC_SOAK_PORT", "5499"))
SOCK = DIR / "sock"
SERVER_LOG = DIR / "server.log"
DB = "soak"

SECONDS = int(os.environ.get("SOAK_SECONDS", "60"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "8"))
USERS = int(os.environ.get("SOAK_USERS", "2000"))
MODE = os.environ.get("SOAK_MODE", "isolated")
ISOLATION = os.environ.get("SOAK_ISOLATION", "read committed")
MAX_TRIES = int(os.environ.get("SOAK_MAX_TRIES", "20"))

# pgbench scripts in bench/sql/soak and their weights (percent of transactions)
SCRIPTS = [
    ("phone", 24),
    ("phone_bulk", 3),
    ("lost_pet", 15),
    ("pet_weight", 18),
    ("health_record", 15),
    ("emergency_contact", 5),
    ("vet_update", 5),
    ("sync_user", 5),
    ("sync_user_comprehensive", 3),
    ("sync_pet", 4),
    ("sync_vet", 3),
]

SERVER_SETTINGS = {
    "shared_preload_libraries": "data_sync",
    # the background queue processor: applies async propagations and retries failed ones
    "data_sync.worker_databases": DB,
    "data_sync.worker_interval": "200ms",
    # SQLSTATE in every log line: errors are counted by class afterwards
    "log_line_prefix": "%m [%p] %e %a: ",
    # deadlocks are found (and retried by pgbench) sooner
    "deadlock_timeout": "100ms",
    "max_connections": "50",
}

# Independent drift queries, one per copy rule of sync_rules.toml: target rows whose copy differs
# from their source row (rules without `where`; latest_by: the rows with the greatest recorded_at).
HAND_DRIFT = {
    "user_phone_to_lost_pets": """SELECT count(*) FROM public.lost_pets t JOIN public.users s ON s.id = t.owner_id
                                  WHERE t.contact_phone IS DISTINCT FROM s.phone""",
    "user_phone_to_pet_emergency_contact": """SELECT count(*) FROM public.pets t
                                  JOIN public.users s ON s.id = t.emergency_contact_user_id
                                  WHERE t.emergency_contact_phone IS DISTINCT FROM s.phone""",
    "user_phone_to_veterinarian": """SELECT count(*) FROM public.veterinarians t JOIN public.users s ON s.id = t.user_id
                                  WHERE t.phone IS DISTINCT FROM s.phone""",
    "vet_clinic_to_health_records": """SELECT count(*) FROM public.health_records t
                                  JOIN public.veterinarians s ON s.id = t.veterinarian_id
                                  WHERE t.clinic_name IS DISTINCT FROM s.clinic_name""",
    "vet_name_to_user_events": """SELECT count(*) FROM public.user_events t
                                  JOIN public.veterinarians s ON s.id = t.veterinarian_id
                                  WHERE t.veterinarian_name IS DISTINCT FROM s.name""",
    "pet_weight_latest_record": """SELECT count(*) FROM public.health_records t JOIN public.pets s ON s.id = t.pet_id
                                  WHERE t.recorded_at = (SELECT max(h.recorded_at) FROM public.health_records h
                                                         WHERE h.pet_id = t.pet_id)
                                    AND t.weight IS DISTINCT FROM s.weight_kg""",
}
HISTORY_DRIFT = """SELECT count(*) FROM public.pets p
                   CROSS JOIN LATERAL (SELECT m.weight_kg FROM public.pet_measurements m WHERE m.pet_id = p.id
                                       ORDER BY m.id DESC LIMIT 1) m
                   WHERE p.weight_kg IS NOT NULL AND m.weight_kg IS DISTINCT FROM p.weight_kg"""


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, input=None, env=None, check=True):
    out = subprocess.run([str(c) for c in cmd], input=input, text=True, capture_output=True, env=env)
    if check and out.returncode != 0:
        sys.exit(f"soak: {' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def psql(sql, db=DB, variables=None):
    """Runs sql (from stdin, so :'var' interpolation works); returns unaligned tuples."""
    cmd = [BIN / "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", SOCK, "-p", PORT, "-U", "postgres", "-d", db]
    for k, v in (variables or {}).items():
        cmd += ["-v", f"{k}={v}"]
    return run(cmd, input=sql).stdout.strip()


def rows(sql):
    out = psql(sql)
    return [line.split("|") for line in out.splitlines()] if out else []


def cluster(*args, env=None):
    run([ROOT / "scripts" / "pgcluster.sh", *args], env=env)


def start_cluster():
    """A fresh cluster every time: stop a previous one, wipe it, initdb, configure, start."""
    cluster("stop", DIR)
    if DIR.exists():
        shutil.rmtree(DIR)
    cluster("start", DIR, PORT)
    cluster("stop", DIR)
    # in postgresql.conf (ALTER SYSTEM refuses data_sync.* before the library is loaded)
    with open(DIR / "data" / "postgresql.conf", "a") as conf:
        conf.write("\n# bench/soak.py\n" + "".join(f"{k} = '{v}'\n" for k, v in SERVER_SETTINGS.items()))
    cluster("start", DIR, PORT)
    got = psql("SELECT current_setting('shared_preload_libraries')", db="postgres")
    if got != "data_sync":
        sys.exit(f"soak: shared_preload_libraries is {got!r} after restart")


def setup():
    log(f"database {DB}: TailTracker schema, {USERS} generated users")
    psql(f"CREATE DATABASE {DB}", db="postgres")
    psql((ROOT / "examples" / "tailtracker" / "schema.sql").read_text())
    psql((SQL / "data.sql").read_text(), variables={"users": USERS})
    psql("CREATE EXTENSION data_sync;" + (" CREATE EXTENSION amcheck;" if AMCHECK else ""))
    loaded = psql("SELECT count(*) FROM data_sync.load_rules(:'rules')",
                  variables={"rules": (ROOT / "sync_rules.toml").read_text()})
    before = psql("SELECT coalesce(sum(drifted_rows), 0) FROM data_sync.check()")
    changed = psql("SELECT data_sync.sync_all()")
    after = psql("SELECT coalesce(sum(drifted_rows), 0) FROM data_sync.check()")
    counts = dict(rows("""SELECT 'users', count(*) FROM public.users UNION ALL SELECT 'pets', count(*) FROM public.pets
                          UNION ALL SELECT 'lost_pets', count(*) FROM public.lost_pets
                          UNION ALL SELECT 'health_records', count(*) FROM public.health_records
                          UNION ALL SELECT 'veterinarians', count(*) FROM public.veterinarians
                          UNION ALL SELECT 'user_events', count(*) FROM public.user_events"""))
    log(f"{loaded} rules/entities loaded; rows: {', '.join(f'{k} {v}' for k, v in counts.items())}")
    log(f"drift before sync_all: {before} rows; sync_all changed {changed}; drift after: {after}")
    if int(before) == 0 or after != "0":
        sys.exit("soak: set-up expected drift before sync_all and none after it")
    psql("VACUUM ANALYZE")
    ids = dict(rows("""SELECT 'users', max(id) FROM public.users UNION ALL SELECT 'pets', max(id) FROM public.pets
                       UNION ALL SELECT 'vets', max(id) FROM public.veterinarians"""))
    baseline = int(psql("SELECT coalesce(max(id), 0) FROM data_sync.sync_log"))
    return ids, baseline


def pgbench(ids):
    scripts = []
    for name, weight in SCRIPTS:
        scripts += ["-f", f"{SQL / (name + '.sql')}@{weight}"]
    options = f"-c default_transaction_isolation={ISOLATION.replace(' ', chr(92) + ' ')} " \
              f"-c data_sync.failure_mode={MODE} -c application_name=soak"
    env = dict(os.environ, PGOPTIONS=options)
    cmd = [BIN / "pgbench", "-n", "-M", "prepared", "-c", CLIENTS, "-j", min(CLIENTS, 4), "-T", SECONDS,
           "-P", max(1, min(10, SECONDS // 6)), f"--max-tries={MAX_TRIES}", "--failures-detailed",
           "-D", f"users={ids['users']}", "-D", f"pets={ids['pets']}", "-D", f"vets={ids['vets']}",
           "-h", SOCK, "-p", PORT, "-U", "postgres", *scripts, DB]
    log(f"pgbench: {CLIENTS} clients, {SECONDS} s, mode {MODE}, {ISOLATION}, --max-tries={MAX_TRIES}")
    proc = subprocess.Popen([str(c) for c in cmd], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("progress:") or "abort" in line or "error" in line.lower():
            print("  " + line.rstrip(), flush=True)
    proc.wait()
    output = "".join(lines)
    (DIR / "pgbench.log").write_text(output)
    return proc.returncode, output


def parse_pgbench(output):
    """Totals and per-script figures from pgbench 15's report."""
    def num(pattern, text, default=0.0):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else default

    total = {
        "tps": num(r"tps = ([0-9.]+) \(without initial connection time\)", output),
        "transactions": num(r"number of transactions actually processed: (\d+)", output),
        "failed": num(r"number of failed transactions: (\d+)", output),
        "retried": num(r"number of transactions retried: (\d+)", output),
        "retries": num(r"total number of retries: (\d+)", output),
        "serialization": num(r"number of serialization failures: (\d+)", output),
        "deadlock": num(r"number of deadlock failures: (\d+)", output),
    }
    scripts = {}
    for block in re.split(r"\nSQL script \d+: ", output)[1:]:
        name = pathlib.Path(block.splitlines()[0].strip()).stem
        scripts[name] = {
            "transactions": num(r"- (\d+) transactions", block),
            "tps": num(r"tps = ([0-9.]+)\)", block),
            "failed": num(r"number of failed transactions: (\d+)", block),
            "retried": num(r"number of transactions retried: (\d+)", block),
            "retries": num(r"total number of retries: (\d+)", block),
            "latency": num(r"latency average = ([0-9.]+) ms", block),
        }
    return total, scripts


def drain_queue(timeout=180):
    """Async mode: the worker applies what the run queued. Waits until no item is pending."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if psql("SELECT count(*) FROM data_sync.queue WHERE status = 'pending'") == "0":
            return True
        time.sleep(0.5)
    return False


def server_errors(offset):
    """ERROR/FATAL/PANIC lines the server logged after `offset`, by SQLSTATE (log_line_prefix %e)."""
    text = SERVER_LOG.read_bytes()[offset:].decode(errors="replace")
    counts = collections.Counter()
    samples = {}
    crashed = []
    for line in text.splitlines():
        m = re.match(r"\S+ \S+ \S+ \[\d+\] (\w{5}) .*?: (ERROR|FATAL|PANIC):\s+(.*)", line)
        if m:
            key = (m.group(2), m.group(1))
            counts[key] += 1
            samples.setdefault(key, m.group(3))
        if "was terminated by signal" in line or "exited with exit code" in line or "crash of another" in line:
            crashed.append(line)
    return counts, samples, crashed


def main():
    if MODE not in ("isolated", "strict", "async"):
        sys.exit(f"soak: SOAK_MODE must be isolated, strict or async, not {MODE!r}")
    started = time.time()
    start_cluster()
    ids, baseline = setup()
    log_offset = SERVER_LOG.stat().st_size
    bench_started = time.time()
    status, output = pgbench(ids)
    bench_seconds = time.time() - bench_started
    violations = []
    if status != 0:
        violations.append(f"pgbench exited with status {status} (an aborted client: see {DIR}/pgbench.log)")
    total, per_script = parse_pgbench(output)
    if total["transactions"] == 0:
        violations.append("pgbench processed no transaction")
    if total["failed"]:
        violations.append(f"{int(total['failed'])} transactions failed after {MAX_TRIES} tries "
                          f"({int(total['serialization'])} serialization, {int(total['deadlock'])} deadlock)")
    for name, _ in SCRIPTS:
        if per_script.get(name, {}).get("transactions", 0) == 0:
            violations.append(f"script {name} ran no transaction")

    drained = True
    if MODE == "async":
        log("waiting for the worker to drain the queue")
        drained = drain_queue()
        if not drained:
            violations.append("the queue did not drain within 180 s")
    checked_at = time.time()

    # 1. check(): one row per enabled copy rule, zero drift each
    copy_rules = [r[0] for r in rows("SELECT name FROM data_sync.rules WHERE kind = 'copy' AND enabled ORDER BY 1")]
    drift = dict((r[0], int(r[2])) for r in rows("SELECT * FROM data_sync.check() ORDER BY 1"))
    if sorted(drift) != sorted(HAND_DRIFT):
        violations.append(f"check() reports rules {sorted(drift)}, expected {sorted(HAND_DRIFT)}")
    if copy_rules != sorted(HAND_DRIFT):
        violations.append(f"enabled copy rules are {copy_rules}, expected {sorted(HAND_DRIFT)}")
    for rule, n in drift.items():
        if n:
            violations.append(f"check(): rule {rule} has {n} drifted rows")
    # 2. the same by hand, and the append rule's history
    hand = {rule: int(psql(q)) for rule, q in HAND_DRIFT.items()}
    for rule, n in hand.items():
        if n:
            violations.append(f"hand-written drift query: rule {rule} has {n} drifted rows")
    history = int(psql(HISTORY_DRIFT))
    if history:
        violations.append(f"pet_weight_history: {history} pets whose newest measurement is not their weight")
    # 3. rules and queue
    disabled = rows("SELECT name, disabled_reason FROM data_sync.rules WHERE NOT enabled")
    if disabled:
        violations.append(f"rules disabled during the run: {disabled}")
    queue = rows("SELECT status, count(*) FROM data_sync.queue GROUP BY 1 ORDER BY 1")
    if queue:
        violations.append(f"queue not empty: {queue}")
    healthy, health = rows("SELECT healthy, message FROM data_sync.health()")[0]
    if healthy != "t":
        violations.append(f"health(): {health}")
    # 4. the log of the run
    by_status = rows(f"""SELECT rule_name, status, count(*), sum(rows_changed) FROM data_sync.sync_log
                         WHERE id > {baseline} GROUP BY 1, 2 ORDER BY 1, 2""")
    log_rows = sum(int(r[2]) for r in by_status)
    failures = rows(f"""SELECT id, rule_name, operation, status, sqlstate, attempt, left(error_message, 160)
                        FROM data_sync.sync_log WHERE id > {baseline} AND status NOT IN ('ok', 'conflict')
                        ORDER BY id""")
    explained = [f for f in failures if MODE == "async" and f[3] == "failed" and (f[4] or "").startswith("40")]
    unexplained = [f for f in failures if f not in explained]
    if unexplained:
        violations.append(f"{len(unexplained)} unexplained failures in sync_log, first ones:\n      "
                          + "\n      ".join("|".join(f) for f in unexplained[:20]))
    conflicts = sum(int(r[2]) for r in by_status if r[1] == "conflict")
    repairs = rows(f"""SELECT id, rule_name, source_key, rows_changed FROM data_sync.sync_log
                       WHERE id > {baseline} AND operation = 'sync' AND rows_changed > 0 ORDER BY id""")
    if repairs and MODE != "async":
        violations.append(f"{len(repairs)} re-syncs during the run repaired rows (committed drift existed), "
                          f"first ones (id|rule|key|rows): " + ", ".join("|".join(r) for r in repairs[:10]))
    propagated = {r[0] for r in by_status if r[1] == "ok"}
    all_rules = [r[0] for r in rows("SELECT name FROM data_sync.rules ORDER BY 1")]
    for rule in all_rules:
        if rule not in propagated:
            violations.append(f"rule {rule} never propagated during the run")
    # 5. the server's view
    errors, samples, crashed = server_errors(log_offset)
    for (level, sqlstate), n in sorted(errors.items()):
        if level != "ERROR" or sqlstate not in ("40001", "40P01"):
            violations.append(f"server log: {n} x {level} {sqlstate}: {samples[(level, sqlstate)]}")
    if crashed:
        violations.append("server log: a backend crashed:\n      " + "\n      ".join(crashed[:5]))
    # 6. index consistency (sync_log is written below the executor)
    bad_indexes = []
    if not AMCHECK:
        log("amcheck skipped: not installed in this PostgreSQL (the PostgreSQL 16 wheel has no contrib modules)")
    for (index,) in [] if not AMCHECK else rows("""SELECT c.oid::regclass FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                            JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE a.amname = 'btree' AND n.nspname IN ('public', 'data_sync') ORDER BY 1"""):
        out = run([BIN / "psql", "-X", "-q", "-At", "-h", SOCK, "-p", PORT, "-U", "postgres", "-d", DB, "-c",
                   f"SELECT bt_index_check('{index}'::regclass, heapallindexed => true)"], check=False)
        if out.returncode != 0:
            bad_indexes.append(f"{index}: {out.stderr.strip()}")
    if bad_indexes:
        violations.append("amcheck: " + "; ".join(bad_indexes))

    # summary
    print()
    print(f"data_sync soak: {SECONDS} s, {CLIENTS} clients, mode {MODE}, {ISOLATION}, "
          f"{USERS} users; pgbench {bench_seconds:.0f} s, total {time.time() - started:.0f} s")
    print(f"  pgbench: {total['tps']:.1f} tps, {int(total['transactions'])} transactions, "
          f"{int(total['retried'])} retried ({int(total['retries'])} retries), {int(total['failed'])} failed")
    print(f"  {'script':<26}{'weight':>7}{'xacts':>9}{'tps':>9}{'lat ms':>9}{'retried':>9}{'failed':>8}")
    for name, weight in SCRIPTS:
        s = per_script.get(name, {})
        print(f"  {name:<26}{weight:>7}{int(s.get('transactions', 0)):>9}{s.get('tps', 0):>9.1f}"
              f"{s.get('latency', 0):>9.2f}{int(s.get('retried', 0)):>9}{int(s.get('failed', 0)):>8}")
    errs = ", ".join(f"{n} x {lvl} {st}" for (lvl, st), n in sorted(errors.items())) or "none"
    print(f"  server errors during the run (retried by pgbench unless failed): {errs}")
    print(f"  sync_log rows written by the run: {log_rows} ({conflicts} conflict, {len(failures)} failed, "
          f"{len(explained)} of them explained); re-syncs that repaired rows: {len(repairs)}")
    print(f"  {'rule':<38}{'status':>9}{'rows':>8}{'changed':>9}")
    for rule, st, n, changed in by_status:
        print(f"  {rule:<38}{st:>9}{n:>8}{changed:>9}")
    print(f"  drift (check / by hand): " + ", ".join(f"{r} {drift.get(r, '?')}/{hand[r]}" for r in HAND_DRIFT)
          + f"; weight history {history}")
    print(f"  health(): {health}")
    print(f"  queue: {queue or 'empty'}; amcheck: {f'{len(bad_indexes)} bad indexes' if AMCHECK else 'skipped (not installed)'}; "
          f"checks took {time.time() - checked_at:.0f} s")
    cluster("stop", DIR)
    if violations:
        print(f"\nsoak: FAILED, {len(violations)} violations (cluster data and logs kept in {DIR}):")
        for v in violations:
            print(f"  - {v}")
        sys.exit(1)
    print("\nsoak: OK")


if __name__ == "__main__":
    main()
