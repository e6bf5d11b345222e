#!/usr/bin/env python3
"""data_sync differential tester: `make difftest`.

From a seed, generates cases and runs each on a scratch cluster (default /tmp/data_sync_difftest,
port 5492):

  schema    a source table (single or composite key; plain, partitioned by range/list/hash
            with partitions made before and after columns were dropped, the later one made as a
            partition, or as a table of its own (columns copied, or in another order) and
            attached; or an inheritance child, its columns ordered unlike its parent's, written
            through the parent too), one to three targets (plain, partitioned with a partition
            whose columns are reordered, or an inheritance child; NULLable match columns), a second-hop
            target fed by the first (a chain), column types with tricky equality (numeric with
            typmod, float -0/NaN, date, timestamptz, text under a deterministic and a
            non-deterministic ICU collation, jsonb, int[], a domain), generated columns, and the
            users' own triggers (a BEFORE trigger deriving a copied source column, an AFTER trigger
            writing an audit table, AFTER row and statement triggers writing source rows again, a BEFORE
            trigger on a target touching another column, AFTER row triggers on a target that
            bring its row into a `where` scope or re-parent it, a statement trigger re-opening
            target rows, a BEFORE statement trigger on the source or a target re-opening another
            target's rows; AFTER triggers named to fire before or after data_sync's own);
  rules     copy rules with and without `where`, several per source and per target, a chain,
            append rules, each in a random mode (strict / isolated / async), an entity with a
            related entity;
  workload  UPDATE (values, keys, match columns: re-parenting), INSERT, INSERT … ON CONFLICT,
            DELETE, MERGE, COPY, writable CTEs touching source and target, savepoints rolled back,
            transactions rolled back, TRUNCATE, sync_all, sync_all_<entity>_data_comprehensive,
            process_queue, a rule disabled, enabled and re-synced while other sessions write; under random session settings (DateStyle, TimeZone, IntervalStyle,
            extra_float_digits, search_path, isolation level: READ COMMITTED, REPEATABLE READ,
            SERIALIZABLE); sequentially, or in 2–8 concurrent sessions (mixed isolation levels).

Then it drains the queue and checks the end state against an oracle the tester computes itself
from each rule's meaning (never from data_sync.check()): for every copy rule, every target row
whose match columns equal a source row's key (and that satisfies `where`) holds the source's values
(IS NOT DISTINCT FROM, under each column's own equality); for every append rule, the newest
appended row of each source key carries the source's current watched values. It also checks that
the server never crashed, that no statement failed with an internal error (SQLSTATE XX000/XX001,
a Rust panic), that every queue item was applied (none left, none dead), that sync_log holds no
failure but explained ones (serialization failures and deadlocks of concurrent sessions), that its
rows are well-formed, and that each rule's logged rows_changed covers the target rows the tester
sees changed since the workload began (a propagation that changes rows without logging them fails).

A failing case is shrunk (statements removed while it still fails) and written as a runnable SQL
script to DIFFTEST_OUT (default /tmp/data_sync_difftest/failures), ready to become a pg_regress
case. Shapes data_sync refuses at load are counted (a refusal must be a clear error, not XX000).

Environment: DIFFTEST_SEED (default: from the clock, printed), DIFFTEST_SECONDS (120),
DIFFTEST_CASES (no limit), DIFFTEST_OUT, DATA_SYNC_DIFFTEST_DIR, DATA_SYNC_DIFFTEST_PORT,
PG_BINDIR. Exit status 1 on any failure. Needs psycopg 3 (the Makefile installs it in a venv).
"""

import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import threading
import time

import psycopg

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
def pg_bindir():
    """The selected PostgreSQL's bin directory: PG_BINDIR, else scripts/pgenv.sh's (PG=15|16|17|18
    or PG_CONFIG, as for make)."""
    if os.environ.get("PG_BINDIR"):
        return pathlib.Path(os.environ["PG_BINDIR"])
    pgenv = pathlib.Path(__file__).resolve().parent.parent.parent / "scripts" / "pgenv.sh"
    return pathlib.Path(subprocess.run([pgenv, "PG_BINDIR"], check=True, capture_output=True, text=True).stdout.strip())


BIN = pg_bindir()
DIR = pathlib.Path(os.environ.get("DATA_SYNC_DIFFTEST_DIR", "/tmp/data_sync_difftest"))
PORT = int(os.environ.get("DATA_SYNC_DIFFTEST_PORT", "5492"))
SOCK = DIR / "sock"
OUT = pathlib.Path(os.environ.get("DIFFTEST_OUT", str(DIR / "failures")))
SECONDS = float(os.environ.get("DIFFTEST_SECONDS", "120"))
MAX_CASES = int(os.environ.get("DIFFTEST_CASES", "0")) or None

# errors a workload statement may get without anything being wrong
EXPECTED_STATES = {
    "23505",  # unique violation (an INSERT of a key that exists)
    "23514",  # check violation (strict-mode propagation into a constrained target)
    "23502",  # not null
    "40001", "40P01",  # serialization failure, deadlock (concurrent sessions)
    "55P03",  # lock not available
    "21000",  # MERGE/ON CONFLICT touching a row twice
    "22P02", "22007", "22008", "22003",  # bad input: the generator's literals are typed, rare
    "25P02",  # in failed transaction
    "42P10",  # ON CONFLICT without a matching unique index on a partitioned table
    "0A000",  # feature not supported (e.g. ON CONFLICT on some partition layouts)
    "2BP01",
    "42P01",  # DETACH of a partition already detached
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- cluster -----------------------------------------------------------------------------------

def cluster(*args):
    subprocess.run([str(ROOT / "scripts" / "pgcluster.sh"), *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL)


def connect(db="postgres", autocommit=True):
    return psycopg.connect(host=str(SOCK), port=PORT, user="postgres", dbname=db, autocommit=autocommit,
                           connect_timeout=10)


def start_cluster():
    cluster("stop", DIR)
    if (DIR / "data").exists():
        shutil.rmtree(DIR / "data")
    cluster("start", DIR, PORT)
    cluster("stop", DIR)
    with open(DIR / "data" / "postgresql.conf", "a") as conf:
        conf.write("\n# tests/difftest\nfsync = off\nsynchronous_commit = off\nmax_connections = 50\n"
                   "deadlock_timeout = '100ms'\nlock_timeout = '20s'\nlog_min_messages = warning\n")
    cluster("start", DIR, PORT)


def server_log_offset():
    try:
        return (DIR / "server.log").stat().st_size
    except FileNotFoundError:
        return 0


def crashes_since(offset):
    try:
        with open(DIR / "server.log", "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines()
            if "terminated by signal" in line or "PANIC" in line or "server process" in line and "was terminated" in line]


# --- generation --------------------------------------------------------------------------------

# (SQL type, literal pool): values chosen so that equal-but-different spellings, NULLs, -0, NaN and
# collation-equal strings occur
TYPES = {
    "int": ("integer", ["0", "1", "2", "-7", "NULL"]),
    "num": ("numeric(10,2)", ["1.0", "1.00", "2.5", "-0.00", "NULL"]),
    "float": ("double precision", ["0.0", "'-0'", "1.5", "'NaN'", "'Infinity'", "NULL"]),
    "date": ("date", ["'2026-02-03'", "'2026-03-02'", "'1999-12-31'", "NULL"]),
    "ts": ("timestamptz", ["'2026-01-01 00:00:00+00'", "'2026-01-01 01:00:00+01'", "'2026-06-30 12:34:56.789+05:30'", "NULL"]),
    "text": ("text", ["'a'", "'A'", "'b'", "'ß'", "'SS'", "''", "NULL"]),
    "ci": ("text COLLATE dt_ci", ["'a'", "'A'", "'b'", "'B'", "NULL"]),
    "icu": ('text COLLATE "und-x-icu"', ["'a'", "'A'", "'ä'", "'b'", "NULL"]),
    "jsonb": ("jsonb", ["'{\"a\": 1}'", "'{\"a\":1}'", "'[]'", "'null'", "NULL"]),
    "arr": ("integer[]", ["'{1,2}'", "'{}'", "'{NULL}'", "NULL"]),
    "dom": ("dt_phone", ["'+1 555'", "'+49 30'", "NULL"]),
}
KEY_TYPES = ["bigint", "text", "date", "composite"]
# Whether the server has ICU collations (the wheels of PostgreSQL 16 and 18 are built without):
# without, the two collation types are left out, and main() says so.
ICU = True
ICU_KINDS = ("ci", "icu")


def lit(rng, kind, null=True):
    sqltype, pool = TYPES[kind]
    value = rng.choice(pool if null else [v for v in pool if v != "NULL"])
    base = sqltype.split(" COLLATE")[0]
    return f"{value}::{base}"


class Case:
    def __init__(self, seed, number):
        self.seed, self.number = seed, number
        self.rng = random.Random(f"{seed}/{number}")
        self.setup = []        # SQL run once, before the rules
        self.rules = []        # dicts
        self.entities = ""     # TOML
        self.sessions = []     # list of statement lists (each a list of SQL strings or ("copy", table, rows))
        self.tables = {}       # name -> dict(cols={name: kind}, key=[...])
        self.settings = []     # per session: list of SET statements
        self.concurrent = False
        self.extra_targets = []
        self.bi_kind = None
        self.partitioned = False
        self.late_partition = None
        self.generate()

    # the key columns of a source table, as (name, SQL type, literal pool)
    def key_values(self, keytype, n):
        rng = self.rng
        if keytype == "bigint":
            return [f"{i}::bigint" for i in rng.sample(range(1, 40), n)]
        if keytype == "text":
            return [f"'k{i}'" for i in rng.sample(range(1, 40), n)]
        if keytype == "date":
            return [f"'2026-01-{i:02d}'::date" for i in rng.sample(range(1, 28), n)]
        return [f"({i}::bigint, 'c{i % 3}')" for i in rng.sample(range(1, 40), n)]

    def generate(self):
        rng = self.rng
        s = self.setup
        if ICU:
            s.append("CREATE COLLATION IF NOT EXISTS public.dt_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
        s.append("CREATE DOMAIN public.dt_phone AS text CHECK (VALUE IS NULL OR VALUE ~ '^\\+[0-9 ]+$')")
        s.append("CREATE TABLE public.dt_audit (id bigserial PRIMARY KEY, tbl text, note text)")
        self.keytype = rng.choice(KEY_TYPES)
        composite = self.keytype == "composite"
        key_cols = [("id", "bigint"), ("grp", "text")] if composite else [("id", self.keytype)]
        kinds = rng.sample([k for k in TYPES if ICU or k not in ICU_KINDS], rng.randint(2, 4))
        partitioned = rng.random() < 0.4
        self.partitioned = partitioned
        self.late_partition = None
        # an inheritance child of a base table (columns in another order), written through the base too
        self.inherit = not partitioned and rng.random() < 0.25
        # source: maybe a dropped column first, so that partitions made later are laid out apart
        cols = [(n, t) for n, t in key_cols] + [("gone", "integer")] + [(f"v_{k}", TYPES[k][0]) for k in kinds]
        derived = rng.random() < 0.3 and "text" in kinds
        if derived:
            cols.append(("part_a", "text"))
        if rng.random() < 0.3 and self.keytype in ("bigint", "composite") and not self.inherit:
            cols.append(("v_gen", "bigint GENERATED ALWAYS AS (id * 2) STORED"))
        pk = ", ".join(n for n, _ in key_cols)
        coldefs = ", ".join(f"{n} {t}" for n, t in cols)
        src = "public.src"
        if partitioned:
            method = rng.choice(["range", "list", "hash"]) if self.keytype == "bigint" else "hash"
            s.append(f"CREATE TABLE {src} ({coldefs}, PRIMARY KEY ({pk})) PARTITION BY {method.upper()} ({key_cols[0][0]})")
            s.extend(self.partitions(src, method, key_cols, early=True))
            s.append(f"ALTER TABLE {src} DROP COLUMN gone")
            late = self.partitions(src, method, key_cols, early=False,
                                   cols=[c for c in cols if c[0] != "gone"])
            s.extend(late)
            self.late_partition = "public.src_" + {"hash": "h1", "range": "r1", "list": "l1"}[method]
        elif self.inherit:
            s.append(f"CREATE TABLE {src}_base ({coldefs})")
            s.append(f"CREATE TABLE {src} ({self.reordered([c for c in cols if c[0] != 'gone'], key_cols)}, "
                     f"own integer, PRIMARY KEY ({pk}))")
            s.append(f"ALTER TABLE {src}_base DROP COLUMN gone")
            s.append(f"ALTER TABLE {src} INHERIT {src}_base")
        else:
            s.append(f"CREATE TABLE {src} ({coldefs}, PRIMARY KEY ({pk}))")
            s.append(f"ALTER TABLE {src} DROP COLUMN gone")
        if derived:
            # the user's BEFORE trigger sets a copied column from another one
            s.append("CREATE FUNCTION public.dt_derive() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "IF NEW.part_a IS NOT NULL THEN NEW.v_text := NEW.part_a || '!'; END IF; RETURN NEW; END $$")
            s.append(f"CREATE TRIGGER dt_derive BEFORE INSERT OR UPDATE ON {src} FOR EACH ROW EXECUTE FUNCTION public.dt_derive()")
        if rng.random() < 0.4:
            s.append("CREATE FUNCTION public.dt_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "INSERT INTO public.dt_audit (tbl, note) VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$")
            s.append(f"CREATE TRIGGER dt_audit AFTER INSERT OR UPDATE OR DELETE ON {src} FOR EACH ROW EXECUTE FUNCTION public.dt_audit_row()")
        if rng.random() < 0.25:
            # the user's AFTER row trigger writes the row again (fills a NULL value column); named to
            # fire before or after data_sync's own triggers
            k = rng.choice(kinds)
            on = " AND ".join(f"{n} = NEW.{n}" for n, _ in key_cols)
            s.append(f"CREATE FUNCTION public.dt_default() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     f"UPDATE public.src SET v_{k} = {lit(rng, k, null=False)} WHERE {on} AND v_{k} IS NULL; RETURN NULL; END $$")
            s.append(f"CREATE TRIGGER {rng.choice(['aa', 'zz'])}_default AFTER INSERT OR UPDATE ON {src} FOR EACH ROW "
                     "EXECUTE FUNCTION public.dt_default()")
        if rng.random() < 0.15:
            # the user's AFTER statement trigger writes rows of the source (fills NULLs of a column)
            k = rng.choice(kinds)
            s.append(f"CREATE FUNCTION public.dt_fill_nulls() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     f"IF EXISTS (SELECT FROM public.src WHERE v_{k} IS NULL) THEN "
                     f"UPDATE public.src SET v_{k} = {lit(rng, k, null=False)} WHERE v_{k} IS NULL; END IF; RETURN NULL; END $$")
            s.append(f"CREATE TRIGGER {rng.choice(['aa', 'zz'])}_fill_nulls AFTER INSERT OR UPDATE ON {src} "
                     "FOR EACH STATEMENT EXECUTE FUNCTION public.dt_fill_nulls()")
        self.tables[src] = dict(cols={f"v_{k}": k for k in kinds}, key=[n for n, _ in key_cols],
                                extra=(["part_a"] if derived else []))
        self.kinds = kinds
        keys = self.key_values(self.keytype, rng.randint(3, 8))
        self.keys = keys
        for k in keys:
            vals = [lit(rng, kind) for kind in kinds]
            self.setup.append(self.insert_src(k, vals, derived))
        self.derived = derived
        if self.inherit:
            for k in rng.sample(keys, min(2, len(keys))):
                vals = [lit(rng, kind) for kind in kinds]
                self.setup.append(self.insert_src(k, vals, False).replace("public.src ", "public.src_base ", 1))

        # targets: each copies some of the value columns, matched on the key
        ntargets = rng.randint(1, 3)
        targets = []
        for t in range(ntargets):
            name = f"public.tgt{t}"
            copied = rng.sample(kinds, rng.randint(1, len(kinds)))
            mcols = [(f"m_{n}", typ) for n, typ in key_cols]
            tcols = [("tid", "bigint")] + ([("junk", "integer")] if rng.random() < 0.5 else []) + mcols
            tcols += [(f"c_{k}", TYPES[k][0]) for k in copied] + [("status", "text")]
            tpart = rng.random() < 0.3
            tinherit = not tpart and rng.random() < 0.2
            tdefs = ", ".join(f"{n} {typ}" for n, typ in tcols)
            kept = [c for c in tcols if c[0] != "junk"]
            if tpart:
                s.append(f"CREATE TABLE {name} ({tdefs}, PRIMARY KEY (tid)) PARTITION BY RANGE (tid)")
                s.append(f"CREATE TABLE {name}_p1 PARTITION OF {name} FOR VALUES FROM (0) TO (50)")
                if any(n == "junk" for n, _ in tcols):
                    s.append(f"ALTER TABLE {name} DROP COLUMN junk")
                if rng.random() < 0.5:
                    s.append(f"CREATE TABLE {name}_p2 PARTITION OF {name} FOR VALUES FROM (50) TO (1000)")
                else:
                    s.append(f"CREATE TABLE {name}_p2 ({self.reordered(kept, [('tid', 'bigint')])})")
                    s.append(f"ALTER TABLE {name} ATTACH PARTITION {name}_p2 FOR VALUES FROM (50) TO (1000)")
            elif tinherit:
                s.append(f"CREATE TABLE {name}_base ({tdefs})")
                s.append(f"CREATE TABLE {name} ({self.reordered(kept, [('tid', 'bigint')])}, PRIMARY KEY (tid))")
                if any(n == "junk" for n, _ in tcols):
                    s.append(f"ALTER TABLE {name}_base DROP COLUMN junk")
                s.append(f"ALTER TABLE {name} INHERIT {name}_base")
            else:
                s.append(f"CREATE TABLE {name} ({tdefs}, PRIMARY KEY (tid))")
                if any(n == "junk" for n, _ in tcols):
                    s.append(f"ALTER TABLE {name} DROP COLUMN junk")
            if rng.random() < 0.25:
                s.append(f"CREATE FUNCTION public.dt_touch_{t}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                         "NEW.status := coalesce(NEW.status, 'open'); RETURN NEW; END $$")
                s.append(f"CREATE TRIGGER dt_touch BEFORE INSERT OR UPDATE ON {name} FOR EACH ROW EXECUTE FUNCTION public.dt_touch_{t}()")
            if rng.random() < 0.2:
                # the user's AFTER row trigger writes the rule's rows again: brings a row into a
                # `where` scope, or gives a row without a key one (re-parenting inside a trigger)
                if rng.random() < 0.5:
                    change, cond = "status = 'open'", "status IS NULL"
                else:
                    fixed = self.key_select(rng.choice(keys)).split(", ")
                    change = ", ".join(f"{n} = {x}" for (n, _), x in zip(mcols, fixed))
                    cond = f"{mcols[0][0]} IS NULL"
                s.append(f"CREATE FUNCTION public.dt_after_{t}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                         f"UPDATE {name} SET {change} WHERE tid = NEW.tid AND {cond}; RETURN NULL; END $$")
                s.append(f"CREATE TRIGGER {rng.choice(['aa', 'zz'])}_after AFTER INSERT OR UPDATE ON {name} FOR EACH ROW "
                         f"EXECUTE FUNCTION public.dt_after_{t}()")
            self.tables[name] = dict(cols={f"c_{k}": k for k in copied}, match=[n for n, _ in mcols],
                                     base=f"{name}_base" if tinherit else None)
            targets.append((name, copied))
            # target rows: some match a key, some match nothing, some have NULL match columns
            for i in range(rng.randint(2, 8)):
                tid = rng.randint(1, 99)
                key = rng.choice(keys + ["NULL", self.key_values(self.keytype, 1)[0]])
                status = rng.choice(["'open'", "'closed'", "NULL"])
                s.append(f"INSERT INTO {name} (tid, {', '.join(n for n, _ in mcols)}, status) "
                         f"SELECT {tid}, {self.key_select(key)}, {status} ON CONFLICT DO NOTHING")
            # the copied columns, split between one or two rules on this target (different modes,
            # different `where`)
            split = rng.randint(1, len(copied)) if len(copied) > 1 and rng.random() < 0.4 else len(copied)
            for part, cols_ in enumerate([copied[:split], copied[split:]]):
                if not cols_:
                    continue
                mode = rng.choice(["strict", "isolated", "async"])
                where = rng.choice([None, None, "status = 'open'", "status IS DISTINCT FROM 'closed'"])
                self.rules.append(dict(name=f"r{t}" + ("" if part == 0 else "b"), kind="copy", source=src, target=name,
                                       match={f"m_{n}": n for n, _ in key_cols},
                                       set={f"c_{k}": f"v_{k}" for k in cols_}, where=where, mode=mode))
            if rng.random() < 0.2:
                # the user's statement trigger that updates rows of the target itself
                s.append(f"CREATE FUNCTION public.dt_reopen_{t}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                         f"IF pg_trigger_depth() = 1 THEN UPDATE {name} SET status = 'open' WHERE status IS NULL; END IF; "
                         "RETURN NULL; END $$")
                s.append(f"CREATE TRIGGER dt_reopen AFTER INSERT OR UPDATE ON {name} FOR EACH STATEMENT "
                         f"EXECUTE FUNCTION public.dt_reopen_{t}()")
        # the user's BEFORE statement trigger, on the source or a target, re-opening rows of another
        # target before the statement's own rows are written (the nested writes' triggers fire
        # first). It writes another table: a BEFORE statement trigger that writes rows its own
        # statement then updates fails in PostgreSQL itself (27000), data_sync or not.
        if rng.random() < 0.2:
            victim, _ = rng.choice(targets)
            host = rng.choice([src] + [n for n, _ in targets if n != victim])
            s.append("CREATE FUNCTION public.dt_before_stmt() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     f"UPDATE {victim} SET status = 'open' WHERE status IS NULL; RETURN NULL; END $$")
            s.append(f"CREATE TRIGGER dt_before_stmt BEFORE INSERT OR UPDATE OR DELETE ON {host} FOR EACH STATEMENT "
                     "EXECUTE FUNCTION public.dt_before_stmt()")
        # a chain: the first target feeds a second hop (its tid is unique, and copied onward)
        if rng.random() < 0.3:
            first, copied = targets[0]
            hop = "public.hop"
            c = copied[0]
            s.append(f"CREATE TABLE {hop} (hid bigint PRIMARY KEY, tgt_tid bigint, h_{c} {TYPES[c][0]})")
            for i in range(rng.randint(1, 5)):
                s.append(f"INSERT INTO {hop} VALUES ({i + 1}, {rng.randint(1, 99)}, NULL)")
            self.tables[hop] = dict(cols={f"h_{c}": c}, match=["tgt_tid"])
            self.rules.append(dict(name="chain", kind="copy", source=first, target=hop, match={"tgt_tid": "tid"},
                                   set={f"h_{c}": f"c_{c}"}, where=None, mode=rng.choice(["strict", "isolated", "async"])))
        # an append rule keeping a history of one value column
        if rng.random() < 0.35:
            k = rng.choice(kinds)
            hist = "public.hist"
            kcols = ", ".join(f"h_{n} {t}" for n, t in key_cols)
            s.append(f"CREATE TABLE {hist} (hid bigserial PRIMARY KEY, {kcols}, val {TYPES[k][0]}, at timestamptz)")
            setmap = {f"h_{n}": n for n, _ in key_cols}
            setmap["val"] = f"v_{k}"
            self.rules.append(dict(name="hist", kind="append", source=src, target=hist, set=setmap,
                                   values={"at": "pg_catalog.clock_timestamp()"},
                                   # (a key change moves the row: its history continues under the new key)
                                   watch=[n for n, _ in key_cols] + [f"v_{k}"],
                                   where=rng.choice([None, f"v_{k} IS NOT NULL"]), mode=rng.choice(["strict", "isolated"]),
                                   key=[n for n, _ in key_cols], watched=f"v_{k}"))
        # latest_by: only the newest target row of a key (by `at`) is maintained
        self.extra_targets = []
        if not composite and rng.random() < 0.3:
            k = rng.choice(kinds)
            s.append(f"CREATE TABLE public.lat (lid bigint PRIMARY KEY, m_id {self.keytype}, at integer, c_{k} {TYPES[k][0]})")
            for i in range(rng.randint(1, 6)):
                s.append(f"INSERT INTO public.lat VALUES ({i + 1}, {rng.choice(keys)}, {rng.choice(['1', '2', '3', 'NULL'])}, NULL)")
            self.tables["public.lat"] = dict(cols={f"c_{k}": k}, match=["m_id"])
            self.rules.append(dict(name="latest", kind="copy", source=src, target="public.lat", match={"m_id": "id"},
                                   set={f"c_{k}": f"v_{k}"}, where=None, latest_by="at",
                                   mode=rng.choice(["strict", "isolated", "async"])))
            self.extra_targets.append("lat")
        # bidirectional, with or without last-write-wins timestamps (kept by the users' own triggers,
        # on their direct writes only)
        if not composite and rng.random() < 0.3:
            k = rng.choice([x for x in kinds if not (derived and x == "text")] or kinds)
            stamps = rng.random() < 0.5
            s.append(f"CREATE TABLE public.bi (bid bigint PRIMARY KEY, m_id {self.keytype} UNIQUE, c_{k} {TYPES[k][0]}"
                     + (", b_ts timestamptz" if stamps else "") + ")")
            if stamps:
                s.append("ALTER TABLE public.src ADD COLUMN s_ts timestamptz")
                for table, col in (("src", "s_ts"), ("bi", "b_ts")):
                    s.append(f"CREATE FUNCTION public.dt_stamp_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                             f"IF pg_trigger_depth() = 1 THEN NEW.{col} := clock_timestamp(); END IF; RETURN NEW; END $$")
                    s.append(f"CREATE TRIGGER dt_stamp BEFORE INSERT OR UPDATE ON public.{table} FOR EACH ROW "
                             f"EXECUTE FUNCTION public.dt_stamp_{table}()")
            for i, key in enumerate(rng.sample(keys, min(len(keys), rng.randint(1, 4)))):
                s.append(f"INSERT INTO public.bi (bid, m_id) VALUES ({i + 1}, {key})")
            self.tables["public.bi"] = dict(cols={f"c_{k}": k}, match=["m_id"])
            rule = dict(name="both", kind="copy", source=src, target="public.bi", match={"m_id": "id"},
                        set={f"c_{k}": f"v_{k}"}, where=None, bidirectional=True,
                        mode=rng.choice(["strict", "isolated", "async"]))
            if stamps:
                rule["timestamps"] = ("s_ts", "b_ts")
            self.rules.append(rule)
            self.extra_targets.append("bi")
            self.bi_kind = k
        if not composite and rng.random() < 0.3:
            self.entities = ('[entity.thing]\ntable = "public.src"\nkey = "id"\n'
                             + ('related.part = { m_id = "id" }\n' if targets else "")
                             + '[entity.part]\ntable = "public.tgt0"\nkey = "tid"\n')
        # sessions
        self.concurrent = rng.random() < 0.35
        nsessions = rng.randint(2, 8) if self.concurrent else 1
        for i in range(nsessions):
            self.settings.append(self.session_settings())
            self.sessions.append([self.statement(targets) for _ in range(rng.randint(10, 40))])

    def partitions(self, table, method, key_cols, early, cols=None):
        """`early`: made before a column was dropped; late ones (`cols`: the parent's columns) are
        made as the parent's partitions, or as tables of their own with the columns in another
        order and attached."""
        rng = self.rng
        out = []
        name = table.split(".")[1]
        bound = {"hash": ("h", "WITH (MODULUS 2, REMAINDER 0)", "WITH (MODULUS 2, REMAINDER 1)"),
                 "range": ("r", "FROM (MINVALUE) TO (20)", "FROM (20) TO (MAXVALUE)"),
                 "list": ("l", f"IN ({', '.join(str(i) for i in range(1, 20))})", None)}[method]
        if early:
            out.append(f"CREATE TABLE {table}_{bound[0]}0 PARTITION OF {table} FOR VALUES {bound[1]}")
            return out
        part = f"{table}_{bound[0]}1"
        spec = f"FOR VALUES {bound[2]}" if bound[2] else "DEFAULT"
        choice = rng.random()
        if choice < 0.4:
            out.append(f"CREATE TABLE {part} PARTITION OF {table} {spec}")
        elif choice < 0.6:
            out.append(f"CREATE TABLE {part} (LIKE {table} INCLUDING GENERATED INCLUDING DEFAULTS)")
            out.append(f"ALTER TABLE {table} ATTACH PARTITION {part} {spec}")
        else:
            out.append(f"CREATE TABLE {part} ({self.reordered(cols, key_cols)})")
            out.append(f"ALTER TABLE {table} ATTACH PARTITION {part} {spec}")
        return out

    def reordered(self, cols, key_cols):
        """Column definitions in a shuffled order (key columns NOT NULL, as a parent's primary key
        requires of its partitions)."""
        cols = list(cols)
        self.rng.shuffle(cols)
        keys = {n for n, _ in key_cols}
        return ", ".join(f"{n} {t}" + (" NOT NULL" if n in keys else "") for n, t in cols)

    def key_select(self, key):
        """The key as a select list for the target's match columns."""
        if key == "NULL":
            return "NULL, NULL" if self.keytype == "composite" else "NULL"
        if self.keytype == "composite":
            inner = key.strip("()")
            return inner
        return key

    def key_where(self, key, prefix=""):
        if self.keytype == "composite":
            a, b = key.strip("()").split(", ")
            return f"({prefix}id, {prefix}grp) = ({a}, {b})"
        return f"{prefix}id = {key}"

    def insert_src(self, key, vals, derived):
        kc = "id, grp" if self.keytype == "composite" else "id"
        kv = self.key_select(key)
        cols = ", ".join(f"v_{k}" for k in self.kinds)
        extra_c = ", part_a" if derived else ""
        extra_v = ", " + self.rng.choice(["NULL", "'x'", "'y'"]) if derived else ""
        return f"INSERT INTO public.src ({kc}, {cols}{extra_c}) VALUES ({kv}, {', '.join(vals)}{extra_v})"

    def session_settings(self):
        rng = self.rng
        sets = [
            f"SET DateStyle = '{rng.choice(['ISO, MDY', 'SQL, DMY', 'German', 'Postgres, YMD'])}'",
            f"SET TimeZone = '{rng.choice(['UTC', 'America/New_York', 'Asia/Kolkata', 'Pacific/Chatham'])}'",
            f"SET IntervalStyle = '{rng.choice(['postgres', 'iso_8601', 'sql_standard'])}'",
            f"SET extra_float_digits = {rng.choice([-15, 0, 1, 3])}",
            "SET search_path = " + rng.choice(["public", "pg_temp, public", "public, pg_catalog", '"$user", public']),
        ]
        levels = ["read committed", "repeatable read", "serializable"]
        if self.concurrent:
            levels = ["read committed"] * 4 + levels[1:]
        sets.append(f"SET default_transaction_isolation = '{rng.choice(levels)}'")
        return sets

    def statement(self, targets):
        stmt = self.one_statement(targets)
        if isinstance(stmt, str) and self.rng.random() < 0.4:
            # through an inheritance parent: the statement reaches the child's rows too
            m = re.match(r"(UPDATE|DELETE FROM) (public\.(?:src|tgt\d))(?=[ ])", stmt)
            if m and (self.tables[m.group(2)].get("base") or (m.group(2) == "public.src" and self.inherit)):
                stmt = stmt[:m.end(2)] + "_base" + stmt[m.end(2):]
        return stmt

    def one_statement(self, targets):
        rng = self.rng
        kinds = self.kinds
        key = rng.choice(self.keys + self.key_values(self.keytype, 1))
        v = rng.choice(kinds)
        r = rng.random()
        derived = self.derived
        if r < 0.30:
            col = "part_a" if derived and rng.random() < 0.3 else f"v_{v}"
            value = rng.choice(["'p'", "'q'", "NULL"]) if col == "part_a" else lit(rng, v)
            where = self.key_where(key) if rng.random() < 0.8 else "true"
            return f"UPDATE public.src SET {col} = {value} WHERE {where}"
        if r < 0.36:
            new = self.key_values(self.keytype, 1)[0]
            if self.keytype == "composite":
                a, b = new.strip("()").split(", ")
                return f"UPDATE public.src SET id = {a}, grp = {b} WHERE {self.key_where(key)}"
            return f"UPDATE public.src SET id = {new} WHERE {self.key_where(key)}"
        if r < 0.44:
            vals = [lit(rng, k) for k in kinds]
            stmt = self.insert_src(key, vals, derived)
            if rng.random() < 0.5:
                conflict = "(id, grp)" if self.keytype == "composite" else "(id)"
                stmt += f" ON CONFLICT {conflict} DO UPDATE SET v_{v} = EXCLUDED.v_{v}"
            return stmt
        if r < 0.48:
            return f"DELETE FROM public.src WHERE {self.key_where(key)}"
        if r < 0.53:
            on = "t.id = s.id AND t.grp = s.grp" if self.keytype == "composite" else "t.id = s.id"
            kc = "id, grp" if self.keytype == "composite" else "id"
            return (f"MERGE INTO public.src t USING (SELECT {self.key_select(key)}, {lit(rng, v)} AS v) AS s({kc}, v) "
                    f"ON {on} WHEN MATCHED THEN UPDATE SET v_{v} = s.v "
                    f"WHEN NOT MATCHED THEN INSERT ({kc}, v_{v}) VALUES ({', '.join('s.' + c for c in kc.split(', '))}, s.v)")
        if r < 0.56:
            return ("copy", key, [lit(rng, k) for k in kinds])
        if r < 0.60 and targets:
            t, copied = rng.choice(targets)
            return (f"WITH u AS (UPDATE public.src SET v_{v} = {lit(rng, v)} WHERE {self.key_where(key)} RETURNING 1) "
                    f"UPDATE {t} SET status = 'open' WHERE tid = {rng.randint(1, 99)}")
        if r < 0.70 and targets:
            t, copied = rng.choice(targets)
            m = self.tables[t]["match"]
            ks = self.key_select(key).split(", ") if key != "NULL" else ["NULL"] * len(m)
            sets = ", ".join(f"{c} = {x}" for c, x in zip(m, ks))
            return f"UPDATE {t} SET {sets} WHERE tid = {rng.randint(1, 99)}"
        if r < 0.76 and targets:
            t, copied = rng.choice(targets)
            m = self.tables[t]["match"]
            status = rng.choice(["'open'", "'closed'", "NULL"])
            return (f"INSERT INTO {t} (tid, {', '.join(m)}, status) SELECT {rng.randint(1, 99)}, "
                    f"{self.key_select(key)}, {status} ON CONFLICT DO NOTHING")
        if r < 0.80 and targets:
            t, _ = rng.choice(targets)
            status = rng.choice(["'open'", "'closed'", "NULL"])
            return f"UPDATE {t} SET status = {status} WHERE tid = {rng.randint(1, 99)}"
        if r < 0.82 and targets:
            t, _ = rng.choice(targets)
            return f"DELETE FROM {t} WHERE tid = {rng.randint(1, 99)}"
        if r < 0.83 and targets:
            t, _ = rng.choice(targets)
            return f"TRUNCATE {t}"
        if r < 0.845 and self.extra_targets:
            which = rng.choice(self.extra_targets)
            if which == "lat":
                lid = rng.randint(1, 12)
                return rng.choice([
                    f"INSERT INTO public.lat (lid, m_id, at) VALUES ({lid}, {key}, {rng.randint(0, 4)}) ON CONFLICT DO NOTHING",
                    f"UPDATE public.lat SET at = {rng.choice(['0', '2', '5', 'NULL'])} WHERE lid = {lid}",
                    f"UPDATE public.lat SET m_id = {key} WHERE lid = {lid}",
                    f"DELETE FROM public.lat WHERE lid = {lid}",
                ])
            k = self.bi_kind
            bid = rng.randint(1, 6)
            return rng.choice([
                f"UPDATE public.bi SET c_{k} = {lit(rng, k)} WHERE bid = {bid}",
                f"INSERT INTO public.bi (bid, m_id, c_{k}) VALUES ({bid}, {key}, {lit(rng, k)}) ON CONFLICT DO NOTHING",
                f"UPDATE public.bi SET m_id = {key} WHERE bid = {bid}",
            ])
        if r < 0.852 and not self.concurrent:
            if self.partitioned and self.late_partition and rng.random() < 0.5:
                return f"ALTER TABLE public.src DETACH PARTITION {self.late_partition}"
            return "TRUNCATE public.src"
        if r < 0.857:
            # the rule's life cycle during the workload: disabled, enabled again and re-synced
            # (writes made while disabled are not replayed: the re-sync restores them), while other
            # sessions, some under REPEATABLE READ snapshots older than the enabling, keep writing.
            # Copy rules only: an append rule's history of the disabled time is lost, by design.
            copies = [r["name"] for r in self.rules if r["kind"] == "copy"]
            return ("toggle", rng.choice(copies)) if copies else "SELECT 1"
        if r < 0.87:
            rule = rng.choice(self.rules)
            if rule["kind"] == "copy":
                return f"SELECT data_sync.sync_all('{rule['name']}')"
            return "SELECT 1"
        if r < 0.89 and self.entities and self.keytype != "composite":
            return f"SELECT public.sync_all_thing_data_comprehensive({key})"
        if r < 0.92:
            return "SELECT * FROM data_sync.process_queue()"
        # a transaction of several statements, committed, rolled back, or with a savepoint undone
        inner = [self.statement(targets) for _ in range(rng.randint(1, 3))]
        inner = [x for x in inner if isinstance(x, str) and not x.startswith(("BEGIN", "TRUNCATE"))]
        end = rng.choice(["COMMIT", "COMMIT", "ROLLBACK", "SAVEPOINT"])
        if end == "SAVEPOINT" and inner:
            return ["BEGIN", inner[0], "SAVEPOINT sp", *inner[1:], "ROLLBACK TO SAVEPOINT sp", "COMMIT"]
        return ["BEGIN", *inner, "ROLLBACK" if end == "ROLLBACK" else "COMMIT"]

    def rules_toml(self):
        out = []
        for r in self.rules:
            lines = ["[[rule]]", f'name = "{r["name"]}"', f'source = "{r["source"]}"', f'target = "{r["target"]}"']
            if r["kind"] == "append":
                lines.append('kind = "append"')
                lines.append("watch = [" + ", ".join(f'"{w}"' for w in r["watch"]) + "]")
                # (a new row's first values are history too: the oracle expects them)
                lines.append("on_insert = true")
                lines.append("values = { " + ", ".join(f'{k} = "{v}"' for k, v in r["values"].items()) + " }")
            else:
                lines.append("match = { " + ", ".join(f'{k} = "{v}"' for k, v in r["match"].items()) + " }")
            lines.append("set = { " + ", ".join(f'{k} = "{v}"' for k, v in r["set"].items()) + " }")
            if r.get("where"):
                lines.append("where = " + toml_str(r["where"]))
            if r.get("latest_by"):
                lines.append(f'latest_by = "{r["latest_by"]}"')
            if r.get("bidirectional"):
                lines.append("bidirectional = true")
            if r.get("timestamps"):
                lines.append(f'source_timestamp = "{r["timestamps"][0]}"\ntarget_timestamp = "{r["timestamps"][1]}"')
            lines.append(f'mode = "{r["mode"]}"')
            out.append("\n".join(lines))
        return self.entities + "\n" + "\n\n".join(out) + "\n"


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- running -----------------------------------------------------------------------------------

class Failure(Exception):
    pass


def flatten(stmt):
    return stmt if isinstance(stmt, list) else [stmt]


def run_statement(conn, stmt, case, errors):
    """Runs one workload item; records unexpected errors. Returns False if the connection died."""
    try:
        if isinstance(stmt, tuple) and stmt[0] == "copy":
            _, key, vals = stmt
            kc = "id, grp" if case.keytype == "composite" else "id"
            cols = ", ".join(f"v_{k}" for k in case.kinds)
            # COPY through a SELECT of typed literals rendered as text by the server itself
            # (as text, spelled under the session's settings, which COPY then reads back)
            exprs = case.key_select(key).split(", ") + vals
            with conn.cursor() as cur:
                row = cur.execute("SELECT " + ", ".join(f"({e})::text" for e in exprs)).fetchone()
                with cur.copy(f"COPY public.src ({kc}, {cols}) FROM STDIN") as copy:
                    copy.write_row(row)
            return True
        if isinstance(stmt, tuple) and stmt[0] == "toggle":
            return toggle(conn, stmt[1], errors)
        for s in flatten(stmt):
            conn.execute(s)
        return True
    except psycopg.OperationalError as e:
        if conn.closed or conn.broken:
            errors.append(f"connection lost: {e}")
            return False
        state = getattr(e, "sqlstate", None)
        return check_error(conn, stmt, state, str(e), errors)
    except psycopg.Error as e:
        return check_error(conn, stmt, e.sqlstate, str(e), errors)


def toggle_statements(name):
    # (each its own transaction, at READ COMMITTED: a re-sync on a snapshot taken before the
    # enabling waited for the writers would miss their writes, by design)
    return ["SET default_transaction_isolation = 'read committed'",
            f"SELECT data_sync.disable_rule('{name}')", f"SELECT data_sync.enable_rule('{name}')",
            f"SELECT data_sync.sync_all('{name}')"]


def toggle(conn, name, errors):
    """Disables a rule, enables it again and re-syncs it. A step that loses a deadlock or a
    serialization conflict is retried: the rule must end enabled and re-synced."""
    level = conn.execute("SHOW default_transaction_isolation").fetchone()[0]
    try:
        for sql in toggle_statements(name):
            for attempt in range(20):
                try:
                    conn.execute(sql)
                    break
                except psycopg.Error as e:
                    if "sync_all" in sql and f'rule "{name}" is disabled' in str(e):
                        break  # another session's toggle of the rule: it re-syncs after enabling
                    if not (e.sqlstate or "").startswith("40") and e.sqlstate != "55P03":
                        errors.append(f"toggle of rule {name}: {e.sqlstate}: {str(e).strip()} in {sql}")
                        return check_error(conn, sql, e.sqlstate, str(e), errors)
                    time.sleep(0.01 * attempt)
            else:
                errors.append(f"toggle of rule {name}: {sql} kept failing")
                return True
    finally:
        if not conn.broken:
            conn.execute(f"SET default_transaction_isolation = '{level}'")
    return True


def check_error(conn, stmt, state, message, errors):
    if state in ("XX000", "XX001", "XX002") or "panicked" in message or "internal error" in message.lower():
        errors.append(f"internal error {state}: {message.strip()} in {stmt!r}")
    elif state not in EXPECTED_STATES and not (state or "").startswith("40"):
        # data_sync's own refusals are fine (a rule's SQL error, a queued failure)
        if not message.startswith("data_sync:"):
            errors.append(f"unexpected error {state}: {message.strip()} in {stmt!r}")
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except psycopg.Error:
        pass
    return not conn.broken


def run_case(case, statements=None, db="dt"):
    """Runs a case in a fresh database. Returns (outcome, problems, executed statements)."""
    with connect() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {db} TEMPLATE template0")
    offset = server_log_offset()
    problems = []
    with connect(db) as conn:
        conn.execute("CREATE EXTENSION data_sync")
        for sql in case.setup:
            try:
                conn.execute(sql)
            except psycopg.Error as e:
                # the generator's own mistake, not data_sync's: reported, so that it gets fixed
                return "failed", [f"setup (generator): {e.sqlstate}: {str(e).strip()} in {sql}"], []
        try:
            conn.execute("SELECT * FROM data_sync.load_rules(%s)", (case.rules_toml(),))
        except psycopg.Error as e:
            if e.sqlstate in ("XX000", "XX001") or "panicked" in str(e):
                return "failed", [f"load_rules: internal error {e.sqlstate}: {e}"], []
            if not str(e).startswith("data_sync:"):
                return "failed", [f"load_rules: unclear refusal {e.sqlstate}: {e}"], []
            return "refused", [str(e).splitlines()[0]], []
        conn.execute("SELECT data_sync.sync_all()")
        snapshot(conn, case)
    sessions = statements if statements is not None else case.sessions
    errors = []
    executed = []
    lock = threading.Lock()

    def worker(i, items):
        try:
            conn = connect(db)
        except psycopg.Error as e:
            errors.append(f"connect: {e}")
            return
        with conn:
            for s in case.settings[i % len(case.settings)]:
                conn.execute(s)
            for item in items:
                with lock:
                    executed.append(item)
                if not run_statement(conn, item, case, errors):
                    return

    if len(sessions) == 1:
        worker(0, sessions[0])
    else:
        threads = [threading.Thread(target=worker, args=(i, items)) for i, items in enumerate(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    problems.extend(errors)
    crashed = crashes_since(offset)
    if crashed:
        problems.extend(f"server: {line}" for line in crashed[:3])
        return "failed", problems, executed
    try:
        with connect(db) as conn:
            problems.extend(verify(conn, case))
    except psycopg.Error as e:
        problems.append(f"verification failed: {e}")
    return ("failed" if problems else "ok"), problems, executed


TARGET_PK = {"public.hop": "hid", "public.lat": "lid", "public.bi": "bid"}


def logged_rules(case):
    """Copy rules whose target's copied columns only data_sync writes (the workload writes a
    bidirectional rule's target itself)."""
    return [r for r in case.rules if r["kind"] == "copy" and not r.get("bidirectional")]


def snapshot(conn, case):
    """Keeps each target's copied columns as they are before the workload, and where sync_log
    stands, for the log check in verify()."""
    conn.execute("CREATE SCHEMA dt_oracle")
    conn.execute("CREATE TABLE dt_oracle.mark AS SELECT coalesce(max(id), 0) AS id FROM data_sync.sync_log")
    for r in logged_rules(case):
        pk = TARGET_PK.get(r["target"], "tid")
        conn.execute(f"CREATE TABLE dt_oracle.snap_{r['name']} AS SELECT {pk} AS pk, {', '.join(r['set'])} FROM {r['target']}")


def log_oracle(conn, case):
    """sync_log is consistent with what happened: every row well-formed, and each rule's logged
    `rows_changed` since the workload began covers the target rows whose copied values the
    workload's propagations changed (counted here by comparing with the snapshot, never from
    sync_log): a propagation that changed rows without logging them is a failure."""
    problems = []
    bad = conn.execute(
        "SELECT id, rule_name, status, sqlstate, rows_changed, source_rows FROM data_sync.sync_log "
        "WHERE status NOT IN ('ok', 'failed', 'conflict', 'disabled') OR rows_changed < 0 OR source_rows < 0 "
        "OR (status = 'failed') <> (sqlstate IS NOT NULL) OR rule_name NOT IN (SELECT name FROM data_sync.rules) "
        "LIMIT 3").fetchall()
    if bad:
        problems.append(f"sync_log: malformed rows {bad}")
    for r in logged_rules(case):
        pk = TARGET_PK.get(r["target"], "tid")
        cols = list(r["set"])
        same = " AND ".join(f"t.{c} IS NOT DISTINCT FROM o.{c}" for c in cols)
        # (a row whose copied columns are all NULL may be one the workload deleted or truncated
        # and inserted again: not counted, as data_sync may not have written it)
        changed = conn.execute(
            f"SELECT count(*) FROM {r['target']} t LEFT JOIN dt_oracle.snap_{r['name']} o ON o.pk = t.{pk} "
            f"WHERE NOT ({' AND '.join(f't.{c} IS NULL' for c in cols)}) "
            f"AND (o.pk IS NULL OR NOT ({same}))").fetchone()[0]
        logged = conn.execute(
            "SELECT coalesce(sum(rows_changed), 0) FROM data_sync.sync_log WHERE rule_name = %s AND status = 'ok' "
            "AND id > (SELECT id FROM dt_oracle.mark)", (r["name"],)).fetchone()[0]
        if changed > logged:
            problems.append(f"sync_log: rule {r['name']} changed {changed} target rows, sync_log counts {logged}")
    return problems


def drain(conn):
    """Applies every queued item (failed ones retried at once) until none is left."""
    for _ in range(20):
        conn.execute("SELECT * FROM data_sync.retry_failed()")
        conn.execute("SELECT * FROM data_sync.process_queue(100000)")
        left = conn.execute("SELECT count(*) FROM data_sync.queue").fetchone()[0]
        if left == 0:
            return 0
    return left


def verify(conn, case):
    problems = []
    left = drain(conn)
    if left:
        rows = conn.execute("SELECT rule_name, status, attempts, last_error FROM data_sync.queue LIMIT 3").fetchall()
        problems.append(f"queue: {left} items not applied, e.g. {rows}")
    rules = {r[0]: r[1] for r in conn.execute("SELECT name, enabled FROM data_sync.rules").fetchall()}
    for rule in case.rules:
        if not rules.get(rule["name"]):
            problems.append(f"rule {rule['name']} is not enabled any more")
            continue
        if rule["kind"] == "copy":
            problems.extend(copy_oracle(conn, rule))
        else:
            problems.extend(append_oracle(conn, rule, case))
    bad = conn.execute(
        "SELECT rule_name, sqlstate, error_message FROM data_sync.sync_log WHERE status = 'failed' "
        "AND (sqlstate IS NULL OR sqlstate NOT LIKE '40%') LIMIT 3").fetchall()
    expected_failures = [b for b in bad if b[1] in ("23514", "23505", "23502")]
    if len(bad) > len(expected_failures):
        problems.append(f"sync_log: unexplained failures {bad}")
    problems.extend(log_oracle(conn, case))
    return problems


def copy_oracle(conn, rule):
    """Target rows matching a source row (and within `where`) hold its values: written by the
    tester from the rule's meaning, not by data_sync."""
    on = " AND ".join(f"t.{tc} = s.{sc}" for tc, sc in rule["match"].items())
    same = " AND ".join(f"t.{tc} IS NOT DISTINCT FROM s.{sc}" for tc, sc in rule["set"].items())
    where = f" AND ({rule['where']})" if rule.get("where") else ""
    pk = {"public.hop": "hid", "public.lat": "lid", "public.bi": "bid"}.get(rule["target"], "tid")
    # the rule's `where` reads the target's columns unqualified: evaluate it over the target alone
    sql = (f"SELECT count(*), min(t.{pk}::text) FROM {rule['target']} t JOIN {rule['source']} s ON {on} "
           f"WHERE NOT ({same})" + (f" AND t.{pk} IN (SELECT {pk} FROM {rule['target']} WHERE {rule['where']})" if where else ""))
    if rule.get("latest_by"):
        by = rule["latest_by"]
        match = " AND ".join(f"n.{tc} = t.{tc}" for tc in rule["match"])
        # only the newest row of its key (NULL oldest; rows tied for newest are all maintained)
        sql += (f" AND NOT EXISTS (SELECT FROM {rule['target']} n WHERE {match} "
                f"AND (n.{by} > t.{by} OR (t.{by} IS NULL AND n.{by} IS NOT NULL)))")
    n, example = conn.execute(sql).fetchone()
    if n:
        return [f"rule {rule['name']}: {n} target rows differ from their source row (e.g. {example}): {sql}"]
    return []


def append_oracle(conn, rule, case):
    keys = rule["key"]
    on = " AND ".join(f"h.h_{k} = s.{k}" for k in keys)
    where = f"AND ({rule['where'].replace('v_', 's.v_')})" if rule.get("where") else ""
    sql = (f"SELECT count(*) FROM public.src s JOIN LATERAL (SELECT h.val FROM public.hist h WHERE {on} "
           f"ORDER BY h.hid DESC LIMIT 1) last ON true WHERE last.val IS DISTINCT FROM s.{rule['watched']} {where}")
    n = conn.execute(sql).fetchone()[0]
    if n:
        return [f"rule {rule['name']}: {n} source rows whose newest history row is not their current value: {sql}"]
    return []


# --- shrinking ---------------------------------------------------------------------------------

def shrink(case, executed):
    """Delta debugging over the executed statements, replayed in one session."""
    items = list(executed)
    chunk = max(1, len(items) // 2)
    budget = time.time() + 120
    while chunk >= 1 and time.time() < budget:
        i, changed = 0, False
        while i < len(items) and time.time() < budget:
            trial = items[:i] + items[i + chunk:]
            outcome, _, _ = run_case(case, [trial], db="dt_shrink")
            if outcome == "failed":
                items, changed = trial, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    outcome, problems, _ = run_case(case, [items], db="dt_shrink")
    return items if outcome == "failed" else None, problems


def script(case, items, problems):
    lines = [f"-- difftest seed {case.seed} case {case.number}: {len(items)} statements", "-- " + "\n-- ".join(problems[:3]),
             "CREATE EXTENSION data_sync;"]
    lines += [s + ";" for s in case.setup]
    lines.append("SELECT * FROM data_sync.load_rules($rules$\n" + case.rules_toml() + "$rules$);")
    lines.append("SELECT data_sync.sync_all();")
    lines += [s + ";" for s in case.settings[0]]
    for item in items:
        if isinstance(item, tuple) and item[0] == "toggle":
            lines += [s + ";" for s in toggle_statements(item[1])]
            lines += [s + ";" for s in case.settings[0] if "isolation" in s]
            continue
        if isinstance(item, tuple):
            lines.append(f"-- COPY of key {item[1]}: {item[2]}")
            continue
        lines += [s + ";" for s in flatten(item)]
    lines.append("SELECT * FROM data_sync.retry_failed();\nSELECT * FROM data_sync.process_queue();")
    lines.append("SELECT * FROM data_sync.check();")
    return "\n".join(lines) + "\n"


def main():
    seed = int(os.environ.get("DIFFTEST_SEED") or int(time.time()))
    log(f"difftest: seed {seed}, {SECONDS:.0f} s (DIFFTEST_SEED={seed} reproduces it)")
    start_cluster()
    global ICU
    # (asked by trying: PostgreSQL 16+ lists an ICU "unicode" collation even when built without)
    with connect(autocommit=False) as conn:
        try:
            conn.execute("CREATE COLLATION public.dt_icu_probe (provider = icu, locale = 'und')")
        except psycopg.errors.FeatureNotSupported:
            ICU = False
        conn.rollback()
    if not ICU:
        log("difftest: text under ICU collations skipped: this PostgreSQL was built without ICU")
    started = time.time()
    counts = {"ok": 0, "refused": 0, "failed": 0}
    refusals = {}
    failures = []
    number = 0
    try:
        while time.time() - started < SECONDS and (MAX_CASES is None or number < MAX_CASES):
            case = Case(seed, number)
            outcome, problems, executed = run_case(case)
            counts[outcome] += 1
            if outcome == "refused":
                reason = re.sub(r'"[^"]*"', '"…"', problems[0])[:120]
                refusals[reason] = refusals.get(reason, 0) + 1
            if outcome == "failed":
                log(f"case {number} FAILED ({'concurrent' if case.concurrent else 'sequential'}): "
                    f"{[p[:400] for p in problems[:3]]}")
                OUT.mkdir(parents=True, exist_ok=True)
                path = OUT / f"seed{seed}-case{number}.sql"
                items, shrunk_problems = shrink(case, executed) if not case.concurrent else (None, [])
                if items is not None:
                    path.write_text(script(case, items, shrunk_problems or problems))
                    log(f"  shrunk to {len(items)} statements: {path}")
                else:
                    path.write_text(script(case, executed, problems))
                    log(f"  not reproduced alone (concurrent or timing); whole case written: {path}")
                failures.append((number, problems))
            number += 1
    finally:
        cluster("stop", DIR)
    log(f"difftest: {number} cases in {time.time() - started:.0f} s: {counts['ok']} passed, "
        f"{counts['refused']} refused at load, {counts['failed']} failed")
    for reason, n in sorted(refusals.items(), key=lambda x: -x[1])[:5]:
        log(f"  refused {n}x: {reason}")
    print(f"{counts['ok'] + counts['refused']} passed, {counts['failed']} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
