#!/usr/bin/env bash
# Run the TailTracker demo against a scratch cluster (default /tmp/data_sync_demo,
# port 5497). Expects the extension to be installed already (`make demo` does that).
# Re-runnable: the tailtracker database is dropped and recreated every time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${DATA_SYNC_DEMO_DIR:-/tmp/data_sync_demo}
PORT=${DATA_SYNC_DEMO_PORT:-5497}
SOCK=$DIR/sock
DB=tailtracker
source "$ROOT/scripts/pgenv.sh"
PSQL_BIN=$PG_BINDIR/psql

"$ROOT/scripts/pgcluster.sh" start "$DIR" "$PORT"

# psql runs as the invoking user (root) and connects as role postgres over the
# unix socket; the scratch cluster uses trust auth.
psql_() {
    "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"
}

PGOPTIONS='-c client_min_messages=warning' \
    psql_ -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql_ -d "$DB" -f "$ROOT/examples/tailtracker/schema.sql"
# The rules travel as a psql variable; demo.sql passes it as :'rules' (safely quoted).
"$PSQL_BIN" -X -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d "$DB" \
    -v rules="$(cat "$ROOT/sync_rules.toml")" \
    -f "$ROOT/examples/tailtracker/demo.sql"

cat <<MSG

Demo database is running. Connect with:
    psql -h $SOCK -p $PORT -U postgres $DB
Stop it with:
    make demo-stop
MSG
