# data_sync developer tasks. Everything runs as root on Debian; the scratch clusters run as the
# postgres OS user (see scripts/pgcluster.sh). PG=15|16|17|18 (default 15) selects the PostgreSQL
# major for every target (`PG=18 make test`), or PG_CONFIG=/path/to/pg_config; scripts/pgenv.sh
# says where each major is, scripts/install-deps.sh (make deps) obtains it.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# cargo may not be on PATH (fresh shell, CI, sudo).
export PATH := $(HOME)/.cargo/bin:$(PATH)

PG ?= 15
PG_CONFIG ?= $(shell PG=$(PG) DATA_SYNC_PGENV_QUIET=1 bash -c 'source scripts/pgenv.sh && echo $$PG_CONFIG')
export PG PG_CONFIG
# (evaluated when used, so after `deps` has obtained the major)
PG_MAJOR = $(shell PG_CONFIG=$(PG_CONFIG) scripts/pgenv.sh PG_MAJOR)
PG_FEATURES = --no-default-features --features pg$(PG_MAJOR)
DATA_SYNC_DEMO_DIR ?= /tmp/data_sync_demo
PGRX_TEST_DIR ?= /tmp/data_sync_pgrx$(PG_MAJOR)

.PHONY: deps install demo demo-stop unit pgrx-test regress upgrade-test isolation tap test bench fmt-check clippy upgrade-major-test

deps:
	scripts/install-deps.sh

# Build and copy the extension into the selected PostgreSQL install (needs root).
# pgrx installs the current version's script and the upgrade scripts (sql/data_sync--A--B.sql);
# the earlier releases' install scripts (sql/data_sync--A.sql) are copied here.
install: deps
	cargo pgrx install $(PG_FEATURES) --pg-config $(PG_CONFIG)
	install -m 644 sql/data_sync--*.sql "$$($(PG_CONFIG) --sharedir)/extension/"

demo: install
	scripts/demo.sh

demo-stop:
	scripts/pgcluster.sh stop $(DATA_SYNC_DEMO_DIR)

# Pure-Rust tests of the rule parser/planner, no PostgreSQL needed.
unit:
	cargo test -p data_sync_core
	python3 scripts/check_role_table.py

# #[pg_test]s: pgrx cannot run initdb as root, so run the server as postgres in a
# directory postgres owns.
pgrx-test: deps
	mkdir -p $(PGRX_TEST_DIR) && chown postgres: $(PGRX_TEST_DIR)
	cargo pgrx test pg$(PG_MAJOR) --runas postgres --pgdata $(PGRX_TEST_DIR)/data

regress: install
	scripts/regress.sh

# Each earlier release + upgrade scripts = a fresh install; then the pg_regress suite on it.
upgrade-test: install
	scripts/upgrade-test.sh

# pg_isolation_regress specs in tests/isolation (concurrent sessions).
isolation: install
	scripts/isolation.sh

# Perl TAP tests (PostgreSQL::Test::Cluster): dump/restore and other multi-cluster scenarios,
# and a real Citus cluster (005_citus.pl: Citus built from the vendored source on 15, once).
tap: install
	scripts/citus.sh
	scripts/tap.sh

# A database moved between PostgreSQL majors by pg_dump/pg_restore and pg_upgrade
# (tests/tap/cross): from each of PG_FROM (15 and 17) to PG_TO (18), every major obtained first.
# (From Debian's 15.20, pg_upgrade to the 18.6 wheel is skipped with its reason: see the test.)
PG_FROM ?= 15 17
PG_TO ?= 18
upgrade-major-test:
	for pg in $(PG_FROM) $(PG_TO); do PG=$$pg $(MAKE) deps; done
	for pg in $(PG_FROM); do PG_FROM=$$pg PG_TO=$(PG_TO) scripts/upgrade-major.sh; done

# Sequential on purpose (also under make -j): cheapest first, stop on first failure.
test:
	$(MAKE) unit
	$(MAKE) pgrx-test
	$(MAKE) regress
	$(MAKE) upgrade-test
	$(MAKE) isolation
	$(MAKE) tap
	$(MAKE) soak
	$(MAKE) difftest DIFFTEST_SECONDS=$(TEST_DIFFTEST_SECONDS) DIFFTEST_SEED=$(TEST_DIFFTEST_SEED)

# make test runs the differential tester for 2 minutes from a fixed seed (the same cases on every
# run, so CI is reproducible); `make difftest` alone picks a new seed each time (printed).
TEST_DIFFTEST_SECONDS ?= 120
TEST_DIFFTEST_SEED ?= 20261201

# Soak test (bench/soak.py): 8 pgbench clients mixing writes and re-syncs on the TailTracker
# schema for SOAK_SECONDS (60), then zero drift, no unexplained failure in sync_log, no failed
# transaction. Scratch cluster in /tmp/data_sync_soak, port 5499. SOAK_MODE=strict|isolated|async.
.PHONY: soak
soak: install
	python3 bench/soak.py

# Differential tester (tests/difftest/difftest.py): generated schemas, rules and workloads checked
# against an independent oracle. DIFFTEST_SECONDS (120), DIFFTEST_SEED (from the clock, printed).
# psycopg 3 in a venv of its own.
DIFFTEST_VENV ?= /tmp/data_sync_difftest_venv
DIFFTEST_SECONDS ?= 120
DIFFTEST_SEED ?=
.PHONY: difftest
difftest: install
	test -x $(DIFFTEST_VENV)/bin/python || python3 -m venv $(DIFFTEST_VENV)
	$(DIFFTEST_VENV)/bin/python -c 'import psycopg' 2>/dev/null || \
		$(DIFFTEST_VENV)/bin/pip install -q 'psycopg[binary]==3.2.13'
	DIFFTEST_SECONDS=$(DIFFTEST_SECONDS) DIFFTEST_SEED=$(DIFFTEST_SEED) $(DIFFTEST_VENV)/bin/python tests/difftest/difftest.py

# Benchmarks (bench/run.py; see bench/RESULTS.md). BENCH_PROFILE=smoke|quick|full; extra
# arguments in BENCH_ARGS (e.g. --scenarios 1,3). Built in release mode, like production.
BENCH_PROFILE ?= quick
bench: deps
	apt-get install -y -q gnuplot-nox valgrind python3-venv >/dev/null
	cargo pgrx install --release $(PG_FEATURES) --pg-config $(PG_CONFIG)
	install -m 644 sql/data_sync--*.sql "$$($(PG_CONFIG) --sharedir)/extension/"
	python3 bench/run.py --profile $(BENCH_PROFILE) $(BENCH_ARGS)

fmt-check:
	cargo fmt --all -- --check

clippy: deps
	cargo clippy --workspace --all-targets $(PG_FEATURES) -- -D warnings
