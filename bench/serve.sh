#!/usr/bin/env bash
# bench/serve.sh: how long `ferry serve` takes to build its overview on a large repository
# (target: at most 200 ms, server-side), and its other pages.
#
# The repository: 1,000 apps pinned on dev, staging and prod (bench/gen_repo.py, every app
# placed in each environment's file), dev with 5,000 commits (bench/gen_history.py: each one
# bumps an app). Generated once, cached under bench/.cache.
#
# What is timed: the server's own time for an answer, from its `Server-Timing` header (the
# request on the store's thread: listing the refs, building the documents, rendering the page),
# and curl's total beside it. "cold": the first answer after the refs moved (a ref under
# `refs/ferry/` is created before each run, so every document is built again: the promotion
# graph, every environment's status, each edge's diff); "warm": the refs unchanged, the
# documents reused, only the page rendered.
#
#   bench/serve.sh                    build (cargo build --release), generate, time
#   FERRY_BIN=/path/to/ferry bench/serve.sh
#   options: --apps N (1000) --commits N (5000) --runs N (15)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_DIR=${FERRY_BENCH_CACHE:-$SCRIPT_DIR/.cache}
# shellcheck source=bench/common.sh
source "$SCRIPT_DIR/common.sh"
APPS=1000 COMMITS=5000 RUNS=15
TARGET_MS=200
while [ $# -gt 0 ]; do
    case "$1" in
        --apps) APPS=$2; shift 2 ;;
        --commits) COMMITS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for n in "$APPS" "$COMMITS" "$RUNS"; do
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || die "not a positive number: $n"
done
command -v python3 >/dev/null 2>&1 || die "python3 is needed (bench/gen_repo.py, bench/gen_history.py)"
command -v curl >/dev/null 2>&1 || die "curl is needed"
init_cache
build_ferry

REPO=$CACHE_DIR/serve-$APPS-$COMMITS.git
if [ ! -f "$REPO/ferry-bench-done" ]; then
    rm -rf "$REPO" "$REPO.tree"
    log "generating $REPO: $APPS apps, dev with $COMMITS commits"
    python3 "$SCRIPT_DIR/gen_repo.py" "$REPO.tree" --artifacts "$APPS" >/dev/null
    cp -r "$REPO_ROOT/schemas" "$REPO.tree/schemas"
    git init -q --bare "$REPO"
    python3 "$SCRIPT_DIR/gen_history.py" "$REPO.tree" "$REPO" --commits "$COMMITS" >"$REPO.refs"
    sed 's/^\([0-9a-f]*\) \(.*\)$/create \2 \1/' "$REPO.refs" | git -C "$REPO" update-ref --stdin
    rm -rf "$REPO.tree"
    touch "$REPO/ferry-bench-done"
fi
[ "$(git -C "$REPO" rev-list --count dev)" -eq "$COMMITS" ] || die "$REPO: dev does not have $COMMITS commits"

WORK=$(mktemp -d)
SERVER=
drop_bench_refs() {
    git -C "$REPO" for-each-ref --format='delete %(refname)' refs/ferry/bench | git -C "$REPO" update-ref --stdin
}
cleanup() {
    set +e
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null
        wait "$SERVER" 2>/dev/null
    fi
    drop_bench_refs
    rm -rf "$WORK"
}
trap cleanup EXIT
drop_bench_refs
export HOME=$WORK XDG_CACHE_HOME=$WORK/cache GIT_CONFIG_NOSYSTEM=1

"$FERRY_BIN" serve --remote "$REPO" --listen 127.0.0.1:0 >"$WORK/url" 2>"$WORK/log" &
SERVER=$!
for _ in $(seq 100); do
    [ -s "$WORK/url" ] && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/log" >&2; die "ferry serve did not start"; }
    sleep 0.1
done
URL=$(head -n 1 "$WORK/url")
URL=${URL%/}
log "serving on $URL"

# One GET: the server's time and curl's, in milliseconds, as `SERVER TOTAL`.
timed() {
    local headers total
    headers=$WORK/headers
    total=$(curl -s -o "$WORK/body" -D "$headers" -w '%{time_total}' "$URL$1")
    grep -qi '^HTTP/1.1 200' "$headers" || die "GET $1: $(head -n 1 "$headers")"
    local server
    server=$(tr -d '\r' <"$headers" | sed -n 's/^server-timing: app;dur=\(.*\)$/\1/Ip')
    echo "$server $(python3 -c "print(round($total * 1000, 1))")"
}
moved=0
move_refs() {
    moved=$((moved + 1))
    git -C "$REPO" update-ref "refs/ferry/bench/$moved" "$(git -C "$REPO" rev-parse prod)"
    # The server lists the refs again at most every 250 ms.
    sleep 0.3
}
# Median and max of the first and second columns of stdin.
summary() {
    python3 -c '
import statistics, sys
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
s = [r[0] for r in rows]; t = [r[1] for r in rows]
print(f"{statistics.median(s):.1f} {max(s):.1f} {statistics.median(t):.1f}")'
}
report() {
    local name=$1 path=$2 kind=$3 target=${4:-}
    : >"$WORK/runs"
    for _ in $(seq "$RUNS"); do
        [ "$kind" = cold ] && move_refs
        timed "$path" >>"$WORK/runs"
    done
    read -r median max total < <(summary <"$WORK/runs")
    local verdict=""
    if [ -n "$target" ]; then
        if python3 -c "import sys; sys.exit(0 if $median <= $target else 1)"; then
            verdict="  (target <= $target ms: met)"
        else
            verdict="  (target <= $target ms: MISSED)"
        fi
    fi
    printf '%-34s %-5s server median %7.1f ms, max %7.1f ms; curl median %7.1f ms%s\n' \
        "$name" "$kind" "$median" "$max" "$total" "$verdict"
}

echo "ferry serve, $APPS apps x 3 environments, dev with $COMMITS commits, $RUNS runs each ($(date -u +%Y-%m-%d), $(nproc) cores)"
report "overview /" / cold "$TARGET_MS"
report "overview /" / warm "$TARGET_MS"
report "overview, page 7 /?page=7" "/?page=7" warm
report "overview, filtered /?q=app-00" "/?q=app-00" warm
report "status document /api/status" /api/status warm
report "requests /requests" /requests warm
report "diff /diff/dev/prod" /diff/dev/prod warm
# An environment's page audits its first page of changes, and asks for DORA's figures, which
# walk the branch's whole history on a thread of their own: the page waits up to 1.5 s for
# them, then is answered without them. Its first answer after the refs moved, once; then how
# long the figures took to be ready (`computing` back to 0 in /api/fingerprint).
move_refs
asked=$(date +%s%N)
read -r server total < <(timed /env/dev)
printf '%-34s %-5s server          %7.1f ms (one run);    curl        %7.1f ms\n' \
    "environment /env/dev" cold "$server" "$total"
until curl -s "$URL/api/fingerprint" | grep -q '"computing": 0'; do sleep 0.05; done
printf '%-34s %-5s ready after     %7.1f ms (one run)\n' "DORA figures of dev" cold \
    "$(python3 -c "print(($(date +%s%N) - $asked) / 1e6)")"
read -r server total < <(timed /env/dev)
printf '%-34s %-5s server          %7.1f ms (one run, with the charts)\n' \
    "environment /env/dev" ready "$server"
report "environment /env/dev" /env/dev warm
report "fingerprint /api/fingerprint" /api/fingerprint warm
