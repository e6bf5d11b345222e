#!/usr/bin/env python3
"""data_sync benchmarks: `make bench` (quick) or `make bench BENCH_PROFILE=full`.

Every variant runs in its own database cloned from one template (identical data), against a
scratch PostgreSQL 15 cluster; variants alternate inside each round and each figure is the median
of the rounds (min–max shown). After every scenario each propagating variant's drift is counted:
a variant that leaves drift is reported as wrong, not fast. Results go to bench/RESULTS.md and
bench/results.png.
"""

import argparse
import datetime
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SQL = BENCH / "sql"
def pg_bindir():
    """The selected PostgreSQL's bin directory: PG_BINDIR, else scripts/pgenv.sh's (PG=15|16|17|18
    or PG_CONFIG, as for make)."""
    if os.environ.get("PG_BINDIR"):
        return pathlib.Path(os.environ["PG_BINDIR"])
    pgenv = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "pgenv.sh"
    return pathlib.Path(subprocess.run([pgenv, "PG_BINDIR"], check=True, capture_output=True, text=True).stdout.strip())


BIN = pg_bindir()
DIR = pathlib.Path(os.environ.get("DATA_SYNC_BENCH_DIR", "/tmp/data_sync_bench"))
PORT = int(os.environ.get("DATA_SYNC_BENCH_PORT", "5493"))
SOCK = DIR / "sock"
VENV = DIR / "venv"

PROFILES = {
    # seconds: checks the harness itself
    "smoke": dict(users=2_000, rounds=1, seconds=1, bulk_users=2_000, sync_sizes=(10_000, 20_000),
                  callgrind=(10, 30)),
    # a few minutes
    "quick": dict(users=20_000, rounds=3, seconds=5, bulk_users=20_000, sync_sizes=(100_000, 400_000),
                  callgrind=(50, 250)),
    # under an hour
    "full": dict(users=20_000, rounds=7, seconds=10, bulk_users=100_000, sync_sizes=(200_000, 1_000_000),
                 callgrind=(100, 600)),
}

# Server settings for a CPU-bound comparison: no fsync (a scratch cluster), no autovacuum
# between rounds (the harness vacuums), a buffer pool that holds every table.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "autovacuum": "off",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "1h",
    "work_mem": "64MB",
}

PHONE_DRIFT = """SELECT count(*) FROM lost_pets lp JOIN users u ON u.id = lp.owner_id
                 WHERE lp.contact_phone IS DISTINCT FROM u.phone"""
WEIGHT_DRIFT = """SELECT (SELECT count(*) FROM pets p
                          CROSS JOIN LATERAL (SELECT h.weight FROM health_records h WHERE h.pet_id = p.id
                                              ORDER BY h.recorded_at DESC LIMIT 1) h
                          WHERE h.weight IS DISTINCT FROM p.weight_kg)
                      + (SELECT count(*) FROM pets p
                          CROSS JOIN LATERAL (SELECT m.weight_kg FROM pet_measurements m WHERE m.pet_id = p.id
                                              ORDER BY m.id DESC LIMIT 1) m
                          WHERE m.weight_kg IS DISTINCT FROM p.weight_kg)"""

# The propagation variants of scenarios 1-3: how each is installed.
PHONE_VARIANTS = ["none", "limit", "plpgsql_row", "plpgsql_stmt", "denorm", "data_sync"]


def log(msg):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)


def run(cmd, input=None, env=None, check=True):
    out = subprocess.run(cmd, input=input, text=True, capture_output=True, env=env)
    if check and out.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def psql(db, sql, env=None):
    cmd = [BIN / "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", SOCK, "-p", str(PORT), "-U", "postgres",
           "-d", db]
    return run(cmd, input=sql, env=env).strip()


def pgbench(db, script, seconds, users, options=""):
    env = dict(os.environ, PGOPTIONS=options) if options else None
    out = run([BIN / "pgbench", "-n", "-M", "prepared", "-c", "1", "-T", str(seconds), "-D", f"users={users}",
               "-h", SOCK, "-p", str(PORT), "-U", "postgres", "-f", SQL / "pgbench" / script, db], env=env)
    return float(re.search(r"tps = ([0-9.]+)", out).group(1))


class Session:
    """One psql connection fed statement by statement: its backend pid can be watched while a
    statement runs, and `\\timing` gives the statement's time."""

    def __init__(self, db):
        self.p = subprocess.Popen([BIN / "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", SOCK, "-p",
                                   str(PORT), "-U", "postgres", "-d", db], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.pid = int(self.query("SELECT pg_backend_pid();")[0])

    def query(self, sql):
        self.p.stdin.write(sql + "\n\\echo __done__\n")
        self.p.stdin.flush()
        lines = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit(f"bench: psql ended during {sql!r}:\n{''.join(lines)}")
            if line.strip() == "__done__":
                return lines
            if line.startswith(("ERROR", "psql:")):
                sys.exit(f"bench: {sql!r} failed: {line}")
            lines.append(line.strip())

    def timed(self, sql):
        """Runs sql; returns (milliseconds, peak private memory of the backend in kB)."""
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    status = pathlib.Path(f"/proc/{self.pid}/status").read_text()
                    peak[0] = max(peak[0], int(re.search(r"RssAnon:\s+(\d+)", status).group(1)))
                except (OSError, AttributeError):
                    pass
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        lines = self.query("\\timing on\n" + sql + "\n\\timing off")
        done.set()
        sampler.join()
        ms = float(next(l for l in lines if l.startswith("Time:")).split()[1])
        return ms, peak[0]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


# --- cluster and databases -------------------------------------------------------------------

def start_cluster():
    run([ROOT / "scripts" / "pgcluster.sh", "start", DIR, str(PORT)])
    current = psql("postgres", "SELECT current_setting('shared_buffers') = '2GB' AND NOT current_setting('fsync')::bool")
    if current != "t":
        for k, v in SERVER_SETTINGS.items():
            psql("postgres", f"ALTER SYSTEM SET {k} = '{v}'")
        run([ROOT / "scripts" / "pgcluster.sh", "stop", DIR])
        run([ROOT / "scripts" / "pgcluster.sh", "start", DIR, str(PORT)])


def drop(db):
    psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def make_template(name, users, per_user):
    drop(name)
    psql("postgres", f"CREATE DATABASE {name}")
    psql(name, (SQL / "schema.sql").read_text().format(users=users, per_user=per_user))


def clone(template, db):
    drop(db)
    psql("postgres", f"CREATE DATABASE {db} TEMPLATE {template}")


def install(db, variant):
    if variant in ("none", "limit"):
        return
    if variant == "denorm":
        install_denorm(db)
        return
    psql(db, (SQL / "variants" / f"{variant}.sql").read_text())


def install_denorm(db):
    """rivethealth's denorm 3.0.0 (PyPI), `denorm create-join` for the same join. Its statement
    triggers on the target re-fire on their own zero-row UPDATE and recurse until "stack depth
    limit exceeded", so only its source-side triggers (on users) are kept."""
    if not (VENV / "bin" / "denorm").exists():
        run([sys.executable, "-m", "venv", VENV])
        run([VENV / "bin" / "pip", "install", "-q", "denorm==3.0.0"])
    generated = DIR / "denorm_lost_pets.sql"
    run([VENV / "bin" / "denorm", "create-join", "--schema", SQL / "denorm" / "lost_pets_join.json",
         "--output", generated])
    psql(db, generated.read_text())
    psql(db, (SQL / "denorm" / "keep_source_side.sql").read_text())


def vacuum(db):
    psql(db, "VACUUM ANALYZE")


# --- statistics and reporting --------------------------------------------------------------------

class Results:
    def __init__(self):
        self.tables = []   # (title, unit, higher_is_better, {variant: [values]}, notes)
        self.wrong = {}    # (title, variant) -> drift rows
        self.text = []     # extra sections (markdown)

    def add(self, title, unit, higher_better, values, notes=""):
        self.tables.append((title, unit, higher_better, values, notes))

    def markdown(self):
        out = []
        for title, unit, higher, values, notes in self.tables:
            med = {v: statistics.median(xs) for v, xs in values.items() if xs}
            names = list(med)
            out.append(f"### {title}\n")
            if notes:
                out.append(notes + "\n")
            better = "higher is better" if higher else "lower is better"
            head = f"| variant | median {unit} | min–max | " + " | ".join(f"÷ {n}" for n in names) + " |"
            out.append(f"Ratios are this variant's median divided by the other's ({better}).\n")
            out.append(head)
            out.append("|" + " --- |" * (3 + len(names)))
            for v in names:
                xs = values[v]
                flag = f" **wrong: {self.wrong[(title, v)]} drifted rows**" if (title, v) in self.wrong else ""
                ratios = " | ".join(f"{med[v] / med[o]:.2f}" if med[o] else "–" for o in names)
                out.append(f"| {v}{flag} | {fmt(med[v])} | {fmt(min(xs))}–{fmt(max(xs))} | {ratios} |")
            out.append("")
        return "\n".join(out)


def fmt(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def rotate(items, k):
    k %= len(items)
    return items[k:] + items[:k]


# --- scenarios -------------------------------------------------------------------------------

def scenario_single_row(res, p, variants):
    """1. single-row UPDATE users SET phone, with 1 and with 10 lost_pets per user (TPS)."""
    for per_user in (1, 10):
        tmpl = f"tmpl_s1_{per_user}"
        make_template(tmpl, p["users"], per_user)
        for v in variants:
            clone(tmpl, f"s1_{per_user}_{v}")
            install(f"s1_{per_user}_{v}", v)
        tps = {v: [] for v in variants}
        for r in range(p["rounds"]):
            for v in rotate(variants, r):
                db = f"s1_{per_user}_{v}"
                vacuum(db)
                script = "phone_limit.sql" if v == "limit" else "phone.sql"
                tps[v].append(pgbench(db, script, p["seconds"], p["users"]))
            log(f"scenario 1 ({per_user} per user) round {r + 1}: " +
                ", ".join(f"{v} {tps[v][-1]:.0f}" for v in variants))
        title = f"1. Single-row phone update, {per_user} lost_pet{'s' if per_user > 1 else ''} per user (TPS)"
        res.add(title, "TPS", True, tps,
                "`none` does no propagation (a lower bound on the work, not the same work).")
        for v in variants:
            if v != "none":
                check_drift(res, title, f"s1_{per_user}_{v}", v, PHONE_DRIFT)


def scenario_unrelated(res, p, variants):
    """2. UPDATE of a column no rule watches (users.last_login) (TPS)."""
    tps = {v: [] for v in variants}
    for r in range(p["rounds"]):
        for v in rotate(variants, r):
            db = f"s1_10_{v}"
            vacuum(db)
            tps[v].append(pgbench(db, "last_login.sql", p["seconds"], p["users"]))
        log(f"scenario 2 round {r + 1}: " + ", ".join(f"{v} {tps[v][-1]:.0f}" for v in variants))
    res.add("2. Update of a column no rule watches: users.last_login (TPS)", "TPS", True, tps,
            "The same databases as scenario 1 with 10 lost_pets per user; `limit` runs the same statement as `none`.")


def scenario_bulk(res, p, variants):
    """3. one UPDATE of every user, bulk_users x 10 lost_pets (ms)."""
    tmpl = "tmpl_s3"
    make_template(tmpl, p["bulk_users"], 10)
    for v in variants:
        clone(tmpl, f"tmpl_s3_{v}")
        install(f"tmpl_s3_{v}", v)
    ms = {v: [] for v in variants}
    title = f"3. Bulk: one UPDATE of all {p['bulk_users']:,} users × 10 lost_pets (ms)"
    for r in range(p["rounds"]):
        for v in rotate(variants, r):
            db = "s3_run"
            clone(f"tmpl_s3_{v}", db)
            s = Session(db)
            s.query("UPDATE users SET phone = 'warm' WHERE id = 1;" if v != "limit" else
                    "WITH u AS (UPDATE users SET phone = 'warm' WHERE id = 1 RETURNING id, phone) "
                    "UPDATE lost_pets lp SET contact_phone = u.phone FROM u WHERE lp.owner_id = u.id;")
            stmt = ("UPDATE users SET phone = phone || 'b';" if v != "limit" else
                    "WITH u AS (UPDATE users SET phone = phone || 'b' RETURNING id, phone) "
                    "UPDATE lost_pets lp SET contact_phone = u.phone FROM u "
                    "WHERE lp.owner_id = u.id AND lp.contact_phone IS DISTINCT FROM u.phone;")
            ms[v].append(s.timed(stmt)[0])
            s.close()
            if v != "none":
                check_drift(res, title, db, v, PHONE_DRIFT)
        log(f"scenario 3 round {r + 1}: " + ", ".join(f"{v} {ms[v][-1]:.0f}" for v in variants))
    drop("s3_run")
    res.add(title, "ms", False, ms)


def scenario_resync(res, p):
    """4. sync_all over drifted target rows vs the hand-written UPDATE … FROM (ms, peak memory)."""
    handwritten = ("UPDATE lost_pets lp SET contact_phone = u.phone FROM users u "
                   "WHERE lp.owner_id = u.id AND lp.contact_phone IS DISTINCT FROM u.phone;")
    memory = {}
    for size in p["sync_sizes"]:
        tmpl = f"tmpl_s4_{size}"
        make_template(tmpl, size // 10, 10)
        install(tmpl, "data_sync")
        ms = {"hand-written UPDATE … FROM": [], "data_sync.sync_all": []}
        mem = {k: [] for k in ms}
        title = f"4. Re-sync of {size:,} drifted target rows (ms)"
        for r in range(p["rounds"]):
            for v in rotate(list(ms), r):
                clone(tmpl, "s4_run")
                psql("s4_run", "UPDATE lost_pets SET contact_phone = 'drift'; VACUUM ANALYZE lost_pets;")
                s = Session("s4_run")
                t, kb = s.timed(handwritten if v.startswith("hand") else "SELECT data_sync.sync_all('phone');")
                s.close()
                ms[v].append(t)
                mem[v].append(kb)
                check_drift(res, title, "s4_run", v, PHONE_DRIFT)
            log(f"scenario 4 ({size}) round {r + 1}: " + ", ".join(f"{v} {ms[v][-1]:.0f}" for v in ms))
        res.add(title, "ms", False, ms)
        memory[size] = {v: statistics.median(kb) for v, kb in mem.items()}
    drop("s4_run")
    rows = ["| target rows | " + " | ".join(memory[p["sync_sizes"][0]]) + " |",
            "|" + " --- |" * (1 + len(memory[p["sync_sizes"][0]]))]
    for size, m in memory.items():
        rows.append(f"| {size:,} | " + " | ".join(f"{kb / 1024:.1f} MB" for kb in m.values()) + " |")
    res.text.append("### 4b. Backend peak private memory during the re-sync (RssAnon, sampled every 20 ms)\n\n"
                        "Shared buffers are not counted; data_sync works in batches of `data_sync.batch_size` "
                        "(10,000) source keys.\n\n" + "\n".join(rows) + "\n")


def scenario_options(res, p):
    """5. costs of data_sync's options on single-row phone updates (TPS)."""
    options = {
        "strict, log all": "-c data_sync.failure_mode=strict",
        "isolated, log all (default)": "",
        "isolated, log failures": "-c data_sync.log_level=failures",
        "isolated, log all, NOTIFY": "-c data_sync.notify_channel=data_sync_bench",
        "async (enqueue only)": "-c data_sync.failure_mode=async",
    }
    db = "s1_1_data_sync"
    tps = {o: [] for o in options}
    for r in range(p["rounds"]):
        for o in rotate(list(options), r):
            psql(db, "TRUNCATE data_sync.sync_log, data_sync.queue; VACUUM ANALYZE;")
            tps[o].append(pgbench(db, "phone.sql", p["seconds"], p["users"], options[o]))
        log(f"scenario 5 round {r + 1}: " + ", ".join(f"{o} {tps[o][-1]:.0f}" for o in options))
    psql(db, "SELECT data_sync.process_queue(1000000)")
    res.add("5. data_sync options, single-row phone update, 1 lost_pet per user (TPS)", "TPS", True, tps,
            "NOTIFY without listeners; `async` only queues (the queue is applied afterwards, not timed).")


def scenario_weights(res, p):
    """6. the weight rules (append + bidirectional latest record) vs hand-written PL/pgSQL."""
    tmpl = "tmpl_s6"
    make_template(tmpl, p["users"], 1)
    variants = {"hand-written PL/pgSQL": "weights_plpgsql", "data_sync": "weights_data_sync"}
    for v, install_as in variants.items():
        db = "s6_" + install_as
        clone(tmpl, db)
        psql(db, (SQL / "variants" / f"{install_as}.sql").read_text())
    for script, what in (("pet_weight.sql", "pet's weight updated"), ("health_record.sql", "health record inserted")):
        tps = {v: [] for v in variants}
        title = f"6. Weight rules: {what} (TPS)"
        for r in range(p["rounds"]):
            for v in rotate(list(variants), r):
                db = "s6_" + variants[v]
                vacuum(db)
                tps[v].append(pgbench(db, script, p["seconds"], p["users"]))
            log(f"scenario 6 ({what}) round {r + 1}: " + ", ".join(f"{v} {tps[v][-1]:.0f}" for v in variants))
        res.add(title, "TPS", True, tps)
        for v in variants:
            check_drift(res, title, "s6_" + variants[v], v, WEIGHT_DRIFT)


def check_drift(res, title, db, variant, query):
    drift = int(psql(db, query))
    if drift:
        res.wrong[(title, variant)] = drift
        log(f"WRONG: {variant} left {drift} drifted rows in {db} ({title})")


# --- low-noise measure ---------------------------------------------------------------------------

def count_instructions(p, cases):
    """Instructions per statement, counted by callgrind in a single-user backend: repeatable
    whatever else the machine does. `cases`: {label: (template, installer, settings, prepare,
    execute)}, where `execute(i, n)` gives the i-th EXECUTE of a run of n. Two runs of n1 and n2
    statements per case; the difference divided by n2 - n1 removes start-up costs."""
    n1, n2 = p["callgrind"]
    # fresh clones: tables written in the TPS rounds carry dead rows that would skew the counts
    for label, (template, installer, _, _, _) in cases.items():
        for run_ in ("a", "b"):
            clone(template, f"cg_{label}_{run_}")
            installer(f"cg_{label}_{run_}")
            vacuum(f"cg_{label}_{run_}")
    run([ROOT / "scripts" / "pgcluster.sh", "stop", DIR])
    counts = {}
    outdir = DIR / "callgrind"
    outdir.mkdir(exist_ok=True)
    shutil.chown(outdir, "postgres")
    for label, (_, _, settings, prepare, execute) in cases.items():
        totals = []
        for n, run_ in ((n1, "a"), (n2, "b")):
            # prepared, as pgbench -M prepared runs them
            stmts = [prepare] + [execute(i, n) for i in range(1, n + 1)]
            out = outdir / f"{label}.{n}.out"
            options = [a for name, value in settings.items() for a in ("-c", f"{name}={value}")]
            subprocess.run(["runuser", "-u", "postgres", "--", "valgrind", "--tool=callgrind",
                            f"--callgrind-out-file={out}", BIN / "postgres", "--single", "-D", DIR / "data",
                            "-c", "fsync=off", *options, f"cg_{label}_{run_}"],
                           input="\n".join(stmts) + "\n", text=True, capture_output=True, cwd="/")
            summary = re.search(r"^summary:\s+(\d+)", out.read_text(), re.M)
            totals.append(int(summary.group(1)))
        counts[label] = (totals[1] - totals[0]) / (n2 - n1)
        log(f"callgrind {label}: {counts[label]:,.0f} instructions per statement")
    run([ROOT / "scripts" / "pgcluster.sh", "start", DIR, str(PORT)])
    return counts


def instruction_table(counts, base):
    rows = [f"| variant | instructions per statement | ÷ {base} |", "| --- | --- | --- |"]
    for v, c in counts.items():
        rows.append(f"| {v} | {c:,.0f} | {c / counts[base]:.2f} |" if base in counts else f"| {v} | {c:,.0f} | – |")
    return "\n".join(rows)


def callgrind(res, p, variants):
    """Instructions per single-row phone update (scenario 1), and per weight change (scenario 6)."""
    n1, n2 = p["callgrind"]
    phone = "PREPARE s(int, text) AS UPDATE users SET phone = $2 WHERE id = $1"
    limit = ("PREPARE s(int, text) AS WITH u AS (UPDATE users SET phone = $2 WHERE id = $1 "
             "RETURNING id, phone) UPDATE lost_pets lp SET contact_phone = u.phone FROM u "
             "WHERE lp.owner_id = u.id AND lp.contact_phone IS DISTINCT FROM u.phone")
    # distinct values, so that every update changes something
    execute = lambda i, n: f"EXECUTE s({(i * 7919) % p['users'] + 1}, '+1-cg-{n}-{i}')"  # noqa: E731
    cases = {v: ("tmpl_s1_1", lambda db, v=v: install(db, v), {}, limit if v == "limit" else phone, execute)
             for v in variants}
    # and data_sync without its per-propagation log row, to show what that row costs
    if "data_sync" in variants:
        cases["data_sync_log_failures"] = ("tmpl_s1_1", lambda db: install(db, "data_sync"),
                                           {"data_sync.log_level": "failures"}, phone, execute)
    counts = count_instructions(p, cases)
    res.text.append(
        "### 1b. Low-noise measure: instructions per single-row phone update (callgrind)\n\n"
        f"A single-user backend (`postgres --single`) runs {n1} and then {n2} updates of random users under "
        "`valgrind --tool=callgrind` (1 lost_pet per user); the difference of the two totals divided by "
        f"{n2 - n1} is the cost of one statement, start-up excluded. Lower is better. "
        "`data_sync_log_failures` is data_sync with `data_sync.log_level = failures`: no `sync_log` row "
        "for a successful propagation, which the other variants do not write either.\n\n"
        + instruction_table(counts, "limit") + "\n")

    # scenario 6, the same way
    make_template("tmpl_s6", p["users"], 1)
    weights = {"plpgsql": "weights_plpgsql", "data_sync": "weights_data_sync"}
    value = lambda i, n: f"{(i * 7919) % p['users'] + 1}, {(i * 31 + n) % 5000 / 100:.2f}"  # noqa: E731
    statements = {
        "weight": ("PREPARE s(int, numeric) AS UPDATE pets SET weight_kg = $2, updated_at = clock_timestamp() "
                   "WHERE id = $1"),
        "record": ("PREPARE s(int, numeric) AS INSERT INTO health_records (pet_id, weight, recorded_at) "
                   "VALUES ($1, $2, clock_timestamp())"),
    }
    cases = {}
    for what, prepare in statements.items():
        for v, sql in weights.items():
            installer = lambda db, sql=sql: psql(db, (SQL / "variants" / f"{sql}.sql").read_text())  # noqa: E731
            cases[f"{what}_{v}"] = ("tmpl_s6", installer, {}, prepare, lambda i, n: f"EXECUTE s({value(i, n)})")
        cases[f"{what}_data_sync_log_failures"] = (
            "tmpl_s6", lambda db: psql(db, (SQL / "variants" / "weights_data_sync.sql").read_text()),
            {"data_sync.log_level": "failures"}, prepare, lambda i, n: f"EXECUTE s({value(i, n)})")
    counts = count_instructions(p, cases)
    tables = []
    for what, title in (("weight", "a pet's weight updated"), ("record", "a health record inserted")):
        mine = {k[len(what) + 1:]: c for k, c in counts.items() if k.startswith(what + "_")}
        tables.append(f"**{title}**\n\n" + instruction_table(mine, "plpgsql"))
    res.text.append(
        "### 6b. Low-noise measure: instructions per weight change (callgrind)\n\n"
        "As 1b, for the two statements of scenario 6 (random pets, a new weight every time). "
        "`plpgsql` is the hand-written triggers.\n\n" + "\n\n".join(tables) + "\n")


# --- chart ---------------------------------------------------------------------------------------

def chart(res, path):
    """Grouped bars: each variant's speed relative to `limit` (1.0), per scenario (1 and 3). `none`
    is left out: it does not do the same work (in the bulk scenario it is 20x "faster")."""
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no chart")
        return False
    groups = []
    for title, unit, higher, values, _ in res.tables:
        if not title.startswith(("1.", "3.")) or "limit" not in values:
            continue
        med = {v: statistics.median(xs) for v, xs in values.items()}
        rel = {v: (med[v] / med["limit"] if higher else med["limit"] / med[v]) for v in med}
        label = title.split(" (")[0].replace("Single-row phone update, ", "1 row, ")
        label = label.replace("lost_pets per user", "pets/user").replace("lost_pet per user", "pet/user")
        label = re.sub(r"Bulk: one UPDATE of all ([\d,]+) users × (\d+) lost_pets", r"bulk, \1 × \2 rows", label)
        groups.append((label, rel))
    variants = [v for v in PHONE_VARIANTS if v != "none" and any(v in g[1] for g in groups)]
    if not groups or not variants:
        return False
    data = DIR / "chart.dat"
    with open(data, "w") as f:
        f.write("scenario " + " ".join(variants) + "\n")
        for name, rel in groups:
            label = name.replace('"', "'")
            f.write(f'"{label}" ' + " ".join(f"{rel.get(v, 0):.3f}" for v in variants) + "\n")
    script = f"""
set terminal pngcairo size 1100,520 font ',10' noenhanced
set output '{path}'
set title 'Speed relative to the one-statement limit (higher is better)'
set style data histogram
set style histogram cluster gap 1
set style fill solid border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set key outside right top
set xtics scale 0
plot for [i=2:{len(variants) + 1}] '{data}' using i:xtic(1) title columnheader(i)
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return True


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    pg = run([BIN / "postgres", "--version"]).strip()
    return f"{os.cpu_count()} × {cpu}, {int(mem) // 1024 // 1024} GiB RAM, {platform.system()} {platform.release()}, {pg}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=os.environ.get("BENCH_PROFILE", "quick"), choices=PROFILES)
    ap.add_argument("--scenarios", default="1,2,3,4,5,6,cg", help="comma-separated: 1-6 and cg (callgrind)")
    ap.add_argument("--variants", default=",".join(PHONE_VARIANTS))
    ap.add_argument("--output", default=str(BENCH / "RESULTS.md"))
    args = ap.parse_args()
    p = PROFILES[args.profile]
    wanted = set(args.scenarios.split(","))
    variants = args.variants.split(",")
    start = time.time()
    start_cluster()
    res = Results()
    if "1" in wanted or "2" in wanted or "5" in wanted or "cg" in wanted:
        scenario_single_row(res, p, variants)
    if "2" in wanted:
        scenario_unrelated(res, p, variants)
    if "3" in wanted:
        scenario_bulk(res, p, variants)
    if "4" in wanted:
        scenario_resync(res, p)
    if "5" in wanted and "data_sync" in variants:
        scenario_options(res, p)
    if "6" in wanted:
        scenario_weights(res, p)
    if "cg" in wanted:
        callgrind(res, p, [v for v in variants if v != "none"])
    # results.png beside RESULTS.md; RESULTS-pg18.md gets results-pg18.png
    out = pathlib.Path(args.output)
    png = out.with_name("results" + out.stem[len("RESULTS"):] + ".png" if out.stem.startswith("RESULTS") else out.stem + ".png")
    has_chart = chart(res, png)
    minutes = (time.time() - start) / 60
    major = f"PG={os.environ['PG']} " if os.environ.get("PG", "15") != "15" else ""
    command = f"{major}make bench BENCH_PROFILE={args.profile}"
    if args.scenarios != "1,2,3,4,5,6,cg" or args.variants != ",".join(PHONE_VARIANTS):
        command = f"python3 bench/run.py --profile {args.profile} --scenarios {args.scenarios} --variants {args.variants}"
    if out.resolve() != (BENCH / "RESULTS.md").resolve():
        command += f" BENCH_ARGS='--output {out.relative_to(BENCH.parent) if out.is_absolute() else out}'"
    text = [
        "# data_sync benchmark results\n",
        f"Generated by `{command}` on {datetime.date.today()} in {minutes:.0f} minutes.\n",
        f"- Machine: {machine()}.",
        f"- Profile `{args.profile}`: {p['rounds']} rounds of {p['seconds']} s per pgbench figure, 1 client, "
        f"{p['users']:,} users; bulk {p['bulk_users']:,} users × 10 lost_pets. Variants alternate inside each "
        "round; figures are medians (min–max over the rounds).",
        "- Server: " + ", ".join(f"{k}={v}" for k, v in SERVER_SETTINGS.items()) +
        " (a scratch cluster: CPU work is compared, not disk flushes).",
        "- Every variant's database is cloned from one template; after each scenario the drift of every "
        "propagating variant is counted, and a variant that leaves drift is marked **wrong**.",
        "- `denorm`: rivethealth's denorm 3.0.0 from PyPI, `denorm create-join` for the same join; only its "
        "source-side triggers (on `users`) are kept, because its target-side statement triggers re-fire on "
        "their own zero-row UPDATE and recurse until \"stack depth limit exceeded\".\n",
    ]
    if has_chart:
        text.append(f"![relative speed]({png.name})\n")
    text.append(res.markdown())
    text.extend(res.text)
    pathlib.Path(args.output).write_text("\n".join(text))
    log(f"wrote {args.output} ({minutes:.1f} min)")
    if res.wrong:
        log(f"variants with drift: {res.wrong}")


if __name__ == "__main__":
    main()
