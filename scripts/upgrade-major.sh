#!/usr/bin/env bash
# A database with data_sync moved from one PostgreSQL major to another, by pg_dump/pg_restore and
# by pg_upgrade (tests/tap/cross/001_upgrade_major.pl): PG_FROM (default 15) to PG_TO (default
# 18). Installs data_sync into both majors first (they must have been obtained: PG=N make deps).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_FROM=${PG_FROM:-15}
PG_TO=${PG_TO:-18}
DIR=${DATA_SYNC_UPGRADE_MAJOR_DIR:-/tmp/data_sync_upgrade_major}

# (DATA_SYNC_NO_INSTALL=1: both are installed already, e.g. while another test uses one of them)
if [[ -z ${DATA_SYNC_NO_INSTALL:-} ]]; then
    for major in "$PG_FROM" "$PG_TO"; do
        (unset PG_CONFIG; PG=$major make -s -C "$ROOT" install >/dev/null)
    done
fi
old_config=$(unset PG_CONFIG; PG=$PG_FROM "$ROOT/scripts/pgenv.sh" PG_CONFIG)
OLD_INSTALL=$(dirname "$("$old_config" --bindir)")
unset PG_CONFIG PG_BINDIR
export PG=$PG_TO
source "$ROOT/scripts/pgenv.sh"

rm -rf "$DIR"
mkdir -p "$DIR"
chown postgres: "$DIR"
cd "$DIR"
echo "upgrade-major: PostgreSQL $PG_FROM ($OLD_INSTALL) -> $PG_MAJOR ($PG_BINDIR)"
status=0
runuser -u postgres -- env PATH="$PG_BINDIR:$PATH" PERL5LIB="$PG_TAP_PERL_LIB" TESTDIR="$DIR" \
    PG_REGRESS="$PGXS_TEST/regress/pg_regress" OLD_INSTALL="$OLD_INSTALL" \
    DATA_SYNC_ROOT="$ROOT" prove --timer "$ROOT/tests/tap/cross/001_upgrade_major.pl" || status=$?
if ((status != 0)); then
    echo "upgrade-major: FAILED; logs under $DIR/tmp_check/log" >&2
    for log in "$DIR"/tmp_check/log/*; do
        [[ -f $log ]] && { echo "===== $log (last 40 lines) =====" >&2; tail -n 40 "$log" >&2; }
    done
    exit "$status"
fi
