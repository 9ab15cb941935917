#!/usr/bin/env bash
# bench/agent.sh: what the pull agent costs, next to the peers the issue names.
#
#   idle          an agent polling an unchanged branch over smart HTTP (--interval 1s, 10 s):
#                 the requests the git server saw (one ref advertisement per interval, nothing
#                 else, is the target) and the agent's resident memory (target <= 32 MiB)
#   merge to      a bump in dev until the agent's live path has it: polling (--interval 5s,
#   deployed      target <= interval + 2 s) and triggered by the repository's post-receive hook
#                 (--listen, agent.trigger_urls; target <= 2 s); small artifact
#   fetch         fetch + verify of a 1 GiB artifact over loopback HTTP (the agent's own timing,
#                 from its log: download, SHA-256, the file written and synced) against
#                 `curl -s URL | openssl dgst -sha256` from the same server (target: >= 0.9x its
#                 throughput); median of 3
#   unpack        unpacking a .tar.gz of 2,000 files (~200 MB) by the agent (its log) against
#                 `tar -xzf` of the same archive (target: >= 0.8x); median of 3. The agent syncs
#                 each file (a release must be durable before the link switches); tar does not.
#
#   bench/agent.sh                 build (cargo build --release), generate, measure
#   FERRY_BIN=/path/to/ferry bench/agent.sh
#   options: --fetch-mib N (1024)  --files N (2000)  --runs N (3, of fetch and unpack)
#            --only idle,polling,triggered,fetch,unpack (all)
#   FERRY_BENCH_WRAP='perf record -g -o /tmp/agent.perf' runs each `--once` agent under perf
#
# Needs git (git-http-backend), python3, curl, openssl and tar. The server is
# tests/fixtures/git_http.py.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_DIR=${FERRY_BENCH_CACHE:-$SCRIPT_DIR/.cache}
# shellcheck source=bench/common.sh
source "$SCRIPT_DIR/common.sh"
FETCH_MIB=1024 FILES=2000 RUNS=3 ONLY=
while [ $# -gt 0 ]; do
    case "$1" in
        --fetch-mib) FETCH_MIB=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for tool in git python3 curl openssl tar; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
init_cache
build_ferry
WORK=$(mktemp -d)
SERVER_PID= AGENT_PID=
cleanup() {
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export FERRY_BENCH_WORK=$WORK FERRY=$FERRY_BIN FETCH_MIB FILES RUNS ONLY
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
export HOME=$WORK XDG_CACHE_HOME=$WORK/cache GIT_CONFIG_NOSYSTEM=1 USER=bench
python3 "$SCRIPT_DIR/agent_bench.py" "$SCRIPT_DIR"
