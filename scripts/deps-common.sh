# Sourced by scripts/install-deps.sh and scripts/citus.sh (after pgenv.sh, with ROOT set and a
# `log` function defined): where the vendored sources are, checking one of them, and installing
# the apt packages that are missing.

# the vendored sources (read-only; copied out, never edited): beside the clone, or this workplace's
VENDOR=${DATA_SYNC_VENDOR:-}
if [[ -z $VENDOR ]]; then
    for candidate in "$ROOT/../shared/vendor" /work/shared/vendor; do
        [[ -d $candidate ]] && { VENDOR=$candidate; break; }
    done
fi
VENDOR=${VENDOR:-$ROOT/../shared/vendor}

# Prints the path of a vendored file after checking it against its checksum in
# ../shared/vendor/README.md (an empty checksum: only that it exists).
vendored() {
    local file=$VENDOR/$1 sum=$2
    if [[ ! -r $file ]]; then
        log "$file not found (set DATA_SYNC_VENDOR to the vendor directory)" >&2
        exit 1
    fi
    if [[ -n $sum ]] && ! echo "$sum  $file" | sha256sum --check --status; then
        log "$file: checksum mismatch" >&2
        exit 1
    fi
    echo "$file"
}

# Installs those of the given apt packages that are not installed yet.
apt_install_missing() {
    local pkg missing=()
    for pkg in "$@"; do
        # dpkg-query prints "install ok installed" only for fully installed packages.
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    log "installing apt packages: ${missing[*]}"
    # We usually run as root (containers, CI); otherwise go through sudo.
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
