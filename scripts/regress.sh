#!/usr/bin/env bash
# Run the pg_regress suites in tests/pg_regress (or, with DATA_SYNC_SUITE=isolation, the
# pg_isolation_regress specs in tests/isolation: that is scripts/isolation.sh) against a scratch
# cluster.
#   scripts/regress.sh              all tests in the suite's schedule
#   scripts/regress.sh copy_basic   only the named test(s)
# Needs the extension installed first (`make regress` does `cargo pgrx install`).
# `cargo pgrx regress` cannot be used as root (it ignores --runas), hence this script.
#
# Env: KEEP_CLUSTER=1 leaves the cluster running afterwards;
#      DATA_SYNC_REGRESS_DIR / DATA_SYNC_REGRESS_PORT override /tmp/data_sync_regress / 5496,
#      DATA_SYNC_ISOLATION_DIR / DATA_SYNC_ISOLATION_PORT override /tmp/data_sync_isolation / 5495;
#      REGRESS_SCHEDULE replaces the suite's schedule file.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/pgenv.sh"
SUITE=${DATA_SYNC_SUITE:-regress}
case $SUITE in
    regress)
        DIR=${DATA_SYNC_REGRESS_DIR:-/tmp/data_sync_regress}
        PORT=${DATA_SYNC_REGRESS_PORT:-5496}
        INPUTDIR=${REGRESS_INPUTDIR:-$ROOT/tests/pg_regress}
        SCHEDULE=schedule
        RUNNER=${PG_REGRESS:-$PGXS_TEST/regress/pg_regress}
        ;;
    isolation)
        DIR=${DATA_SYNC_ISOLATION_DIR:-/tmp/data_sync_isolation}
        PORT=${DATA_SYNC_ISOLATION_PORT:-5495}
        INPUTDIR=${ISOLATION_INPUTDIR:-$ROOT/tests/isolation}
        SCHEDULE=isolation_schedule
        RUNNER=${PG_ISOLATION_REGRESS:-$PGXS_TEST/isolation/pg_isolation_regress}
        ;;
    *)
        echo "regress: unknown DATA_SYNC_SUITE=$SUITE (regress or isolation)" >&2
        exit 2
        ;;
esac
SOCK=$DIR/sock
OUT=$DIR/out                      # results/, regression.diffs, regression.out
DB=data_sync_$SUITE

if [[ ! -x $RUNNER ]]; then
    echo "$SUITE: $RUNNER not found (run: PG=$PG_MAJOR make deps)" >&2
    exit 1
fi

"$ROOT/scripts/pgcluster.sh" start "$DIR" "$PORT"
if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
    trap '"$ROOT/scripts/pgcluster.sh" stop "$DIR"' EXIT
fi

# --use-existing makes the runner skip creating the database, so start each run
# from a fresh one ourselves (tests then CREATE EXTENSION in a clean database).
PGOPTIONS='-c client_min_messages=warning' "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
    -c "CREATE DATABASE $DB TEMPLATE template0"

# pg_regress runs as root here (only the server must not); results go outside the
# repo. PG15 looks for expected/ in --outputdir first, then in --inputdir.
rm -rf "$OUT"
mkdir -p "$OUT"

if (($#)); then
    tests=("$@")
else
    tests=(--schedule="${REGRESS_SCHEDULE:-$INPUTDIR/$SCHEDULE}")
fi

status=0
"$RUNNER" --use-existing --host="$SOCK" --port="$PORT" --user=postgres \
    --bindir="$PG_BINDIR" --dbname="$DB" \
    --inputdir="$INPUTDIR" --outputdir="$OUT" "${tests[@]}" || status=$?

if ((status != 0)); then
    if [[ -s $OUT/regression.diffs ]]; then
        echo "===== $OUT/regression.diffs =====" >&2
        cat "$OUT/regression.diffs" >&2
    fi
    # A new test without expected/NAME.out: show its output so it can be reviewed and copied.
    for res in "$OUT"/results/*.out; do
        [[ -e $res ]] || continue
        name=$(basename "$res")
        if [[ ! -e $INPUTDIR/expected/$name ]]; then
            echo "===== no expected/$name yet; actual output ($res): =====" >&2
            cat "$res" >&2
        fi
    done
    echo "$SUITE: FAILED (actual output in $OUT/results/)" >&2
    exit "$status"
fi
