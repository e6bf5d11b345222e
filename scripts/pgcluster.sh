#!/usr/bin/env bash
# Manage a throw-away PostgreSQL cluster for the demo and the tests (the major: scripts/pgenv.sh).
#
#   pgcluster.sh start  DIR PORT   create (if needed) and start; no-op if running
#   pgcluster.sh stop   DIR        fast shutdown; no-op if stopped
#   pgcluster.sh status DIR        prints "running (port N)" / "stopped"; exit 0 / 3
#
# Layout: DIR/data (PGDATA), DIR/sock (unix socket), DIR/server.log.
# The server must run as the `postgres` OS user: PostgreSQL refuses to run as root.
set -euo pipefail

if [[ -z ${PG_BINDIR:-} ]]; then
    source "$(dirname "${BASH_SOURCE[0]}")/pgenv.sh"
fi
PG_OS_USER=${PG_OS_USER:-postgres}

usage() {
    echo "usage: $0 start DIR PORT | stop DIR | status DIR" >&2
    exit 2
}

# Run a command as the postgres OS user. cd to / first so initdb/postgres do not
# complain about a cwd (e.g. /root) that postgres cannot read.
as_pg() {
    if [[ $(id -un) == "$PG_OS_USER" ]]; then
        (cd / && "$@")
    elif [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd / && sudo -u "$PG_OS_USER" -- "$@")
    fi
}

# Directory creation/chown needs root unless we already are postgres.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

is_running() {
    [[ -f $DATA/PG_VERSION ]] && as_pg "$PG_BINDIR/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

cmd=${1:-}
DIR=${2:-}
[[ -n $cmd && -n $DIR ]] || usage
# Absolute path: pg_ctl/postgres run from / (see as_pg).
DIR=$(realpath -m -- "$DIR")
DATA=$DIR/data
SOCK=$DIR/sock
LOG=$DIR/server.log

case $cmd in
start)
    PORT=${3:-}
    [[ $PORT =~ ^[0-9]+$ ]] || usage
    # A cluster another PostgreSQL major made here (PG=… changed) is replaced.
    major=$("$PG_BINDIR/postgres" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
    if [[ -f $DATA/PG_VERSION && $(cat "$DATA/PG_VERSION") != "$major" ]]; then
        as_pg "$PG_BINDIR/pg_ctl" stop -D "$DATA" -m immediate -s >/dev/null 2>&1 || true
        as_root rm -rf "$DATA"
    fi
    if is_running; then
        exit 0
    fi
    # Parents are created by root with mode 755, so postgres can traverse them.
    if [[ $(id -un) != "$PG_OS_USER" ]]; then
        as_root mkdir -p "$DIR"
        as_root chown "$PG_OS_USER": "$DIR"
    fi
    as_pg mkdir -p "$SOCK"
    if [[ ! -f $DATA/PG_VERSION ]]; then
        # Scratch cluster: trust auth, no fsync, C locale for stable test output.
        as_pg "$PG_BINDIR/initdb" -D "$DATA" -A trust -U postgres --no-sync \
            -E UTF8 --no-locale >"$DIR/initdb.log" 2>&1 || {
            echo "pgcluster: initdb failed, see $DIR/initdb.log:" >&2
            tail -n 20 "$DIR/initdb.log" >&2
            exit 1
        }
    fi
    # Listen on the unix socket in DIR/sock and on 127.0.0.1 only.
    opts="-p $PORT -k '$SOCK' -c listen_addresses=127.0.0.1 -c fsync=off"
    opts+=" -c synchronous_commit=off -c full_page_writes=off"
    # Extra server options, e.g. PG_EXTRA_OPTS="-c shared_preload_libraries=data_sync".
    opts+=" ${PG_EXTRA_OPTS:-}"
    if ! as_pg "$PG_BINDIR/pg_ctl" start -D "$DATA" -l "$LOG" -w -s -t 60 -o "$opts"; then
        echo "pgcluster: server failed to start, tail of $LOG:" >&2
        tail -n 20 "$LOG" >&2 || true
        exit 1
    fi
    ;;
stop)
    if is_running; then
        as_pg "$PG_BINDIR/pg_ctl" stop -D "$DATA" -m fast -w -s
    fi
    ;;
status)
    if is_running; then
        # First line of postmaster.pid is the pid, fourth the port.
        echo "running (port $(sed -n 4p "$DATA/postmaster.pid"), socket $SOCK)"
    else
        echo "stopped"
        exit 3
    fi
    ;;
*)
    usage
    ;;
esac
