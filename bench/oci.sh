#!/usr/bin/env bash
# bench/oci.sh: the agent reading its desired state from an OCI registry against reading it
# from git (the shallow fetch of "The git state store"), for the same desired state.
#
# The state: bench/gen_repo.py with N artifacts (2,000 by default: a 0.6 MB manifest and
# environment files with an `apps` entry each). It is served by `git http-backend` (smart
# HTTP, tests/fixtures/git_http.py) and, after `ferry publish dev`, by Debian's
# `docker-registry` on 127.0.0.1. The agent runs with `--host` matching no app, so each
# reconcile is exactly: detect change, pull, validate (no deploy). Rows:
#
#   cold start    `ferry agent --once` with an empty state dir: requests, bytes received,
#                 time (median of 7)
#   idle poll     a running agent (--interval 1s, 10 s) on an unchanged source: requests
#                 and bytes per interval
#   change        one version bumped (and published): the requests and bytes of the
#                 reconcile that picks it up
#
#   bench/oci.sh                    build (cargo build --release), generate, measure
#   FERRY_BIN=/path/to/ferry bench/oci.sh
#   options: --artifacts N (2000)
#
# Needs git (git-http-backend), python3 and docker-registry.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_DIR=${FERRY_BENCH_CACHE:-$SCRIPT_DIR/.cache}
# shellcheck source=bench/common.sh
source "$SCRIPT_DIR/common.sh"
ARTIFACTS=2000
while [ $# -gt 0 ]; do
    case "$1" in
        --artifacts) ARTIFACTS=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for tool in git python3 docker-registry; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
init_cache
build_ferry
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export FERRY_BENCH_WORK=$WORK FERRY=$FERRY_BIN ARTIFACTS
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
export HOME=$WORK XDG_CACHE_HOME=$WORK/cache GIT_CONFIG_NOSYSTEM=1 USER=bench
python3 "$SCRIPT_DIR/oci_bench.py" "$SCRIPT_DIR"
