#!/usr/bin/env bash
# Run the isolation (concurrency) specs in tests/isolation against a scratch cluster.
#   scripts/isolation.sh                   every spec in tests/isolation/isolation_schedule
#   scripts/isolation.sh phone_vs_insert   only the named spec(s)
# Specs are tests/isolation/specs/NAME.spec, expected output tests/isolation/expected/NAME.out.
# Needs the extension installed first (`make isolation` does `cargo pgrx install`).
#
# Env: KEEP_CLUSTER=1 leaves the cluster running afterwards;
#      DATA_SYNC_ISOLATION_DIR / DATA_SYNC_ISOLATION_PORT override /tmp/data_sync_isolation / 5495.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${DATA_SYNC_ISOLATION_DIR:-/tmp/data_sync_isolation}
PORT=${DATA_SYNC_ISOLATION_PORT:-5495}
SOCK=$DIR/sock
OUT=$DIR/out                      # results/, regression.diffs, regression.out
INPUTDIR=${ISOLATION_INPUTDIR:-$ROOT/tests/isolation}
DB=data_sync_isolation
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PG_ISOLATION_REGRESS=${PG_ISOLATION_REGRESS:-/usr/lib/postgresql/15/lib/pgxs/src/test/isolation/pg_isolation_regress}

if [[ ! -x $PG_ISOLATION_REGRESS ]]; then
    echo "isolation: $PG_ISOLATION_REGRESS not found (install postgresql-server-dev-15)" >&2
    exit 1
fi

"$ROOT/scripts/pgcluster.sh" start "$DIR" "$PORT"
if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
    trap '"$ROOT/scripts/pgcluster.sh" stop "$DIR"' EXIT
fi

# --use-existing makes pg_isolation_regress skip creating the database, so start each run
# from a fresh one ourselves (each spec's setup then does CREATE EXTENSION, its teardown drops it).
PGOPTIONS='-c client_min_messages=warning' "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres \
    -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
    -c "CREATE DATABASE $DB TEMPLATE template0"

# Results go outside the repo. PG15 looks for expected/ in --outputdir first, then in --inputdir.
rm -rf "$OUT"
mkdir -p "$OUT"

if (($#)); then
    tests=("$@")
else
    tests=(--schedule="$INPUTDIR/isolation_schedule")
fi

status=0
"$PG_ISOLATION_REGRESS" --use-existing --host="$SOCK" --port="$PORT" --user=postgres \
    --bindir="$PG_BINDIR" --dbname="$DB" \
    --inputdir="$INPUTDIR" --outputdir="$OUT" "${tests[@]}" || status=$?

if ((status != 0)); then
    if [[ -s $OUT/regression.diffs ]]; then
        echo "===== $OUT/regression.diffs =====" >&2
        cat "$OUT/regression.diffs" >&2
    fi
    # A new spec without expected/NAME.out: show its output so it can be reviewed and copied.
    for res in "$OUT"/results/*.out; do
        [[ -e $res ]] || continue
        name=$(basename "$res")
        if [[ ! -e $INPUTDIR/expected/$name ]]; then
            echo "===== no expected/$name yet; actual output ($res): =====" >&2
            cat "$res" >&2
        fi
    done
    echo "isolation: FAILED (actual output in $OUT/results/)" >&2
    exit "$status"
fi
