#!/usr/bin/env bash
# Upgrade path test. Every earlier release keeps its install script (sql/data_sync--OLD.sql) and
# an upgrade script leads from it to the next (sql/data_sync--OLD--NEW.sql). For each old release:
#   1. CREATE EXTENSION data_sync VERSION 'OLD'; ALTER EXTENSION data_sync UPDATE gives exactly
#      what a fresh CREATE EXTENSION gives: their `pg_dump --binary-upgrade --schema-only` (which
#      spells out every member object of the extension: tables, columns, defaults, indexes,
#      functions with their settings, privileges, comments) are compared;
#   2. the whole pg_regress suite runs again with the current install script hidden, so that each
#      test's CREATE EXTENSION installs OLD and updates it (PostgreSQL follows the update path by
#      itself when the requested version has no install script); all but `preexisting`, which
#      tests checks of the current install script itself.
# Needs the extension installed (`make upgrade-test` does it). Scratch cluster: DATA_SYNC_UPGRADE_DIR
# (default /tmp/data_sync_upgrade), port DATA_SYNC_UPGRADE_PORT (default 5494).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/pgenv.sh"
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
DIR=${DATA_SYNC_UPGRADE_DIR:-/tmp/data_sync_upgrade}
PORT=${DATA_SYNC_UPGRADE_PORT:-5494}
SOCK=$DIR/sock

current=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
current_script=$EXTDIR/data_sync--$current.sql
if [[ ! -e $current_script ]]; then
    echo "upgrade-test: $current_script not found: install the extension first" >&2
    exit 1
fi
mapfile -t old_versions < <(cd "$ROOT/sql" && ls data_sync--*.sql | grep -v -- '--.*--' |
    sed 's/^data_sync--\(.*\)\.sql$/\1/' | grep -vx "$current")
if ((${#old_versions[@]} == 0)); then
    echo "upgrade-test: no earlier release in sql/ (expected sql/data_sync--OLD.sql)" >&2
    exit 1
fi

"$ROOT/scripts/pgcluster.sh" start "$DIR" "$PORT"
# install scripts moved aside while the suite runs, restored whatever happens
HIDDEN=$DIR/hidden
mkdir -p "$HIDDEN"
restore() {
    for f in "$HIDDEN"/*.sql; do [[ -e $f ]] && mv "$f" "$EXTDIR/"; done
    return 0
}
trap 'restore; "$ROOT/scripts/pgcluster.sh" stop "$DIR"' EXIT
restore   # after an interrupted earlier run

psql() { "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres "$@"; }
# What differs between two databases by nature is left out: OIDs and transaction ids, the dump's
# session token, and the stored default of a column added by ALTER TABLE (the same value, kept
# in pg_attribute instead of in each row).
describe() {
    "$PG_BINDIR/pg_dump" --binary-upgrade --schema-only -h "$SOCK" -p "$PORT" -U postgres "$1" |
        sed -E -e '/binary_upgrade_set_next_|relfrozenxid|^WHERE oid = .[0-9]+.;$|^\\(un)?restrict /d' \
            -e '/binary_upgrade_set_missing_value|^-- set missing value|^-- Dumped|^--$|^$/d' \
            -e "s/('data_sync', 'data_sync', (true|false), '[^']*', )'\{[0-9,]*\}'/\1'{oids}'/"
}

for old in "${old_versions[@]}"; do
    echo "upgrade-test: $old -> $current"
    for db in fresh upgraded; do
        psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE template0"
    done
    psql -d fresh -c "CREATE EXTENSION data_sync"
    psql -d upgraded -c "CREATE EXTENSION data_sync VERSION '$old'" -c "ALTER EXTENSION data_sync UPDATE"
    psql -d upgraded -tA -c "SELECT extversion FROM pg_extension WHERE extname = 'data_sync'" |
        grep -qx "$current" || { echo "upgrade-test: ALTER EXTENSION UPDATE did not reach $current" >&2; exit 1; }
    if ! diff -u <(describe fresh) <(describe upgraded) >"$DIR/upgrade-$old.diff"; then
        echo "upgrade-test: $old + upgrade scripts differ from a fresh $current install:" >&2
        cat "$DIR/upgrade-$old.diff" >&2
        exit 1
    fi
    echo "upgrade-test: $old updated to $current is identical to a fresh install"

    # leave only OLD's install script, so every CREATE EXTENSION goes OLD -> ... -> current
    for v in "$current" "${old_versions[@]}"; do
        [[ $v == "$old" ]] || mv "$EXTDIR/data_sync--$v.sql" "$HIDDEN/"
    done
    # (not `preexisting`: it tests the current install script's own checks, which an old
    # release's script does not have)
    grep -vx 'test: preexisting' "$ROOT/tests/pg_regress/schedule" >"$DIR/schedule"
    REGRESS_SCHEDULE=$DIR/schedule DATA_SYNC_REGRESS_DIR=$DIR/regress DATA_SYNC_REGRESS_PORT=$((PORT - 10)) \
        "$ROOT/scripts/regress.sh"
    restore
    echo "upgrade-test: the pg_regress suite passes on $old updated to $current"
done
