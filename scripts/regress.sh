#!/usr/bin/env bash
# Run the pg_regress suite in tests/pg_regress against a scratch cluster.
#   scripts/regress.sh              all tests in tests/pg_regress/schedule
#   scripts/regress.sh copy_basic   only the named test(s)
# Needs the extension installed first (`make regress` does `cargo pgrx install`).
# `cargo pgrx regress` cannot be used as root (it ignores --runas), hence this script.
#
# Env: KEEP_CLUSTER=1 leaves the cluster running afterwards;
#      DATA_SYNC_REGRESS_DIR / DATA_SYNC_REGRESS_PORT override /tmp/data_sync_regress / 5496.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${DATA_SYNC_REGRESS_DIR:-/tmp/data_sync_regress}
PORT=${DATA_SYNC_REGRESS_PORT:-5496}
SOCK=$DIR/sock
OUT=$DIR/out                      # results/, regression.diffs, regression.out
INPUTDIR=${REGRESS_INPUTDIR:-$ROOT/tests/pg_regress}
DB=data_sync_regress
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PG_REGRESS=${PG_REGRESS:-/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress}

"$ROOT/scripts/pgcluster.sh" start "$DIR" "$PORT"
if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
    trap '"$ROOT/scripts/pgcluster.sh" stop "$DIR"' EXIT
fi

# --use-existing makes pg_regress skip creating the database, so start each run
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
    tests=(--schedule="$INPUTDIR/schedule")
fi

status=0
"$PG_REGRESS" --use-existing --host="$SOCK" --port="$PORT" --user=postgres \
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
    echo "regress: FAILED (actual output in $OUT/results/)" >&2
    exit "$status"
fi
