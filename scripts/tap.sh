#!/usr/bin/env bash
# Run the Perl TAP tests in tests/tap/t (PostgreSQL::Test::Cluster of the selected major, see
# scripts/pgenv.sh).
#   scripts/tap.sh                       every test
#   scripts/tap.sh 001_dump_restore.pl   one test
# Needs the extension installed first (`make tap` does `cargo pgrx install`). The clusters run as
# the postgres OS user, in DATA_SYNC_TAP_DIR (default /tmp/data_sync_tap), kept after a failure
# for its logs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${DATA_SYNC_TAP_DIR:-/tmp/data_sync_tap}
source "$ROOT/scripts/pgenv.sh"
PERL_LIB=$PG_TAP_PERL_LIB

rm -rf "$DIR"
mkdir -p "$DIR"
chown postgres: "$DIR"

if (($#)); then
    tests=("${@/#/$ROOT/tests/tap/t/}")
else
    tests=("$ROOT"/tests/tap/t/*.pl)
fi

cd "$DIR"
if ((PG_HAS_AMCHECK == 0)); then
    echo "tap: 003_crash.pl's index consistency checks are skipped: amcheck is not installed in PostgreSQL $PG_MAJOR"
fi
status=0
runuser -u postgres -- env PATH="$PG_BINDIR:$PATH" PERL5LIB="$PERL_LIB" TESTDIR="$DIR" \
    PG_REGRESS="$PGXS_TEST/regress/pg_regress" PG_HAS_AMCHECK="$PG_HAS_AMCHECK" \
    DATA_SYNC_ROOT="$ROOT" prove --timer "${tests[@]}" || status=$?
if ((status != 0)); then
    echo "tap: FAILED; server and test logs under $DIR/tmp_check/log" >&2
    for log in "$DIR"/tmp_check/log/regress_log_*; do
        [[ -e $log ]] && { echo "===== $log (last 60 lines) =====" >&2; tail -n 60 "$log" >&2; }
    done
    exit "$status"
fi
