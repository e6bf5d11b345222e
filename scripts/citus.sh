#!/usr/bin/env bash
# Build and install the vendored Citus 13.2.2 into the selected PostgreSQL (PG=…/PG_CONFIG=…, see
# scripts/pgenv.sh), for tests/tap/t/005_citus.pl. Only for PostgreSQL 15: the vendored patch
# fits Debian's 15.20, and that is what the build was checked against. Idempotent: skipped when
# that citus.so is installed already (DATA_SYNC_CITUS_REBUILD=1 builds anyway; with DESTDIR=… in
# the environment `make install` stages into that directory instead of the server's).
# About 4 minutes on 2 cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_SYNC_PGENV_QUIET=1 source "$ROOT/scripts/pgenv.sh"
CITUS_VERSION=13.2.2
CITUS_SHA=dd2453caec20a830e5e63f1def5c5a98cb6f57ae510407cdcd800916fcdab430
CITUS_TARBALL=citus-$CITUS_VERSION.tar.gz
CITUS_PATCH=citus-$CITUS_VERSION-pg15.20.patch
# Citus links against these (compression of columnar storage and of shard moves, libcurl for its
# statistics collector, GSSAPI for its node connections); the compiler and the server headers come
# from scripts/install-deps.sh.
APT_PACKAGES=(liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev)
BUILD=$DATA_SYNC_PG_ROOT/citus-build

log() { printf 'citus: %s\n' "$*"; }
source "$ROOT/scripts/deps-common.sh"

if [[ ! -x $PG_CONFIG ]]; then
    log "$PG_CONFIG not found: run \`PG=$PG_MAJOR make deps\` first" >&2
    exit 1
fi
if ((PG_MAJOR != 15)); then
    log "not built for PostgreSQL $PG_MAJOR, so the Citus TAP test (005_citus.pl) is skipped there:" \
        "the vendored patch is for 15.20, and Debian's 15 package is what it was checked against"
    exit 0
fi
# citus.so carries its version string ("Citus 13.2.2 on x86_64-…", what citus_version() returns)
so=$PG_PKGLIBDIR/citus.so
if [[ -z ${DATA_SYNC_CITUS_REBUILD:-} && -e $so && -e $PG_SHAREDIR/extension/citus.control ]] &&
    grep -aq "Citus $CITUS_VERSION on" "$so"; then
    log "Citus $CITUS_VERSION is already installed in $PG_PKGLIBDIR"
    exit 0
fi

# --- apt packages -----------------------------------------------------------
apt_install_missing "${APT_PACKAGES[@]}"

# --- the source ---------------------------------------------------------------
tarball=$(vendored "$CITUS_TARBALL" "$CITUS_SHA")
patch_file=$(vendored "$CITUS_PATCH" "")
# a fresh build directory each time: a half-finished earlier build is never reused
rm -rf "$BUILD"
mkdir -p "$BUILD"
cp "$tarball" "$patch_file" "$BUILD/"
# the copy is what gets unpacked, so check it again
echo "$CITUS_SHA  $BUILD/$CITUS_TARBALL" | sha256sum --check --status ||
    { log "$BUILD/$CITUS_TARBALL: checksum mismatch after copying" >&2; exit 1; }
tar -xzf "$BUILD/$CITUS_TARBALL" -C "$BUILD"
src=$BUILD/citus-$CITUS_VERSION

# Citus 13.2.2 defines its own static have_createdb_privilege(), which PostgreSQL 15.20 now exports
# (commands/dbcommands.h): without the patch the build stops at commands/database.c.
(cd "$src" && patch -p1 -s <"$BUILD/$CITUS_PATCH")

# --- build and install --------------------------------------------------------------
# Output goes to logs in the build directory; on failure their tails are printed and the
# directory is kept.
step() {
    local name=$1
    shift
    if ! (cd "$src" && "$@") >"$BUILD/$name.log" 2>&1; then
        log "$name failed; last lines of $BUILD/$name.log:" >&2
        tail -n 30 "$BUILD/$name.log" >&2
        exit 1
    fi
}
log "building Citus $CITUS_VERSION against $PG_CONFIG in $BUILD (about 4 minutes on 2 cores)"
step configure ./configure PG_CONFIG="$PG_CONFIG"
step make make -j2
log "installing into ${DESTDIR:-}$PG_PKGLIBDIR"
step install make install
grep -aq "Citus $CITUS_VERSION on" "${DESTDIR:-}$PG_PKGLIBDIR/citus.so" ||
    { log "${DESTDIR:-}$PG_PKGLIBDIR/citus.so is not Citus $CITUS_VERSION after make install" >&2; exit 1; }
rm -rf "$BUILD"
log "Citus $CITUS_VERSION installed (shared_preload_libraries = 'citus' to use it)"
