# bench/common.sh: what the benchmark scripts share. Sourced, never run. The sourcing script
# sets SCRIPT_DIR, REPO_ROOT and CACHE_DIR first.

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# The running script's header comment, up to `set -euo`.
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# Makes CACHE_DIR absolute and sets INSTALL_LOG inside it.
init_cache() {
    mkdir -p "$CACHE_DIR"
    CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
    INSTALL_LOG=$CACHE_DIR/install.log
}

# Run "$@" with output to the install log; on failure show its tail and fail.
logged() {
    if ! "$@" >>"$INSTALL_LOG" 2>&1; then
        tail -n 30 "$INSTALL_LOG" >&2
        die "failed: $* (full log: $INSTALL_LOG)"
    fi
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo)
fi

ensure_hyperfine() {
    command -v hyperfine >/dev/null 2>&1 && return
    command -v apt-get >/dev/null 2>&1 || die "hyperfine is missing and apt-get is not available: install hyperfine"
    log "installing hyperfine (apt-get)"
    # Try without refreshing the package lists first; update only if needed.
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q hyperfine >>"$INSTALL_LOG" 2>&1; then
        logged "${SUDO[@]}" apt-get update -q
        logged "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q hyperfine
    fi
    command -v hyperfine >/dev/null 2>&1 || die "hyperfine still not found after apt-get install"
}

# Sets FERRY_BIN: as given, else built with `cargo build --release`. $1: an extra hint for
# when the build fails.
build_ferry() {
    if [ -n "${FERRY_BIN:-}" ]; then
        [ -x "$FERRY_BIN" ] || die "FERRY_BIN=$FERRY_BIN is not an executable file"
        log "using FERRY_BIN=$FERRY_BIN (no build)"
        return
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust or set FERRY_BIN"
    log "building ferry: cargo build --release (in $REPO_ROOT)"
    (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed (see above); set FERRY_BIN${1:+ $1}"
    FERRY_BIN=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/ferry
    [ -x "$FERRY_BIN" ] || die "built, but no binary at $FERRY_BIN"
}
