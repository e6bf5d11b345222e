#!/usr/bin/env bash
# Install everything needed to build and test data_sync on Debian (bookworm).
# Idempotent: each step is skipped when its result is already present, so
# `make deps` costs well under a second on a ready machine.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
CARGO_PGRX_VERSION=0.18.0
# PostgreSQL 15 + headers (pgrx bindgen), pgTAP, clang for bindgen, sudo for
# `cargo pgrx test --runas postgres`. The C toolchain, pkg-config and OpenSSL
# headers are needed by `cargo install cargo-pgrx` on a fresh machine; IPC::Run by
# PostgreSQL's Perl TAP modules (tests/tap).
APT_PACKAGES=(
    postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
    libclang-dev clang sudo
    build-essential pkg-config libssl-dev
    libipc-run-perl
)

# cargo lives in ~/.cargo/bin, which is not always on PATH (e.g. under make/sudo).
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf 'install-deps: %s\n' "$*"; }

# --- apt packages -----------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    # dpkg-query prints "install ok installed" only for fully installed packages.
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "installing apt packages: ${missing[*]}"
    # We usually run as root (containers, CI); otherwise go through sudo.
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

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

# --- pgrx config ----------------------------------------------------------------
# Point pgrx at the system PostgreSQL 15 instead of letting it download/build one.
# As root this prints "Skipping initdb as current user is root user": expected.
PGRX_CONFIG="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if ! grep -qE '^[[:space:]]*pg15[[:space:]]*=' "$PGRX_CONFIG" 2>/dev/null; then
    log "cargo pgrx init --pg15 $PG_CONFIG"
    cargo pgrx init --pg15 "$PG_CONFIG"
fi
