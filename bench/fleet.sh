#!/usr/bin/env bash
# bench/fleet.sh: what a fleet of agents costs the server they poll, and how fast a bump
# reaches all of them, on this machine.
#
# The fleet: N `ferry agent` processes (--agents, 50), one per host of one environment
# (dev) whose one app, web, lists them all in `hosts` (host-01..host-50), each with its own
# --root and --state-dir, --interval I (--interval, 5 s). The server: one `git http-backend`
# behind tests/fixtures/git_http.py on loopback (smart HTTP; it logs every request and serves
# the artifacts, a small .tgz per version); the agents report their per-host statuses to
# the repository's embedded forge through it (pushes, with ferry's hooks). Rows:
#
#   git idle        once all converged, IDLE intervals (--idle, 6) of the fleet at rest: the
#                   requests at the server per agent per interval (target: 1, all ref
#                   advertisements) and the server's CPU per 1,000 polls (the Python server
#                   and its reaped children: git http-backend, upload-pack), the agents'
#                   memory (sum of RSS and of PSS) and their own CPU per poll
#   bump to all     from the start of `ferry bump` (dev, a new version) until every host's
#   deployed        status.json says it deployed that revision; and until the aggregate
#                   `ferry/deploy/dev` is success in the forge. BUMPS (--bumps, 3) of each:
#                   polled, one wave              target: <= I + 2 s
#                   polled, waves [1,"50%","100%"], no pause
#                                                 target: <= I + 2 s + 2 I (an extra wave
#                                                 costs at most one interval)
#                   triggered (--listen, the environment's agent.trigger_urls, signed with
#                   FERRY_WEBHOOK_SECRET; the repository's post-receive hook notifies them),
#                   one wave                      target: <= 2 s
#                   triggered, waves              target: <= 2 s + 2 I
#                   and what a rollout cost the server (requests, status pushes, CPU)
#   git idle after  the same idle count with the waves configured (waiting agents read the
#   waves           other hosts' statuses): target 1 request per agent per interval
#   registry idle   `ferry publish dev` to Debian's docker-registry on loopback, N agents
#                   with --source oci://…:dev: requests per agent per interval (target: 1,
#                   a manifest HEAD), the registry's CPU per 1,000 polls, git requests
#                   meanwhile (target: none)
#
#   bench/fleet.sh                   build (cargo build --release), run, print the table
#   FERRY_BIN=/path/to/ferry bench/fleet.sh
#   options: --agents N (50)  --interval SECONDS (5)  --bumps N (3)  --idle INTERVALS (6)
#            --only idle,polled,triggered,oci (all)  --keep (keep the work directory)
#            --check-targets (exit 2 if a target is missed)
#            --no-report (a diagnosis: the agents report no status, so a rollout costs only
#            the deploys; the waves, which open on the reports, are skipped)
#
# Takes about 8 minutes with the defaults. Needs git (git-http-backend), python3, tar and
# docker-registry (Debian package; only for the registry rows). The machine runs N agents at
# once: on 2 cores the figures are what the server and the agents cost together.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_DIR=${FERRY_BENCH_CACHE:-$SCRIPT_DIR/.cache}
# shellcheck source=bench/common.sh
source "$SCRIPT_DIR/common.sh"
AGENTS=50 INTERVAL=5 BUMPS=3 IDLE=6 ONLY= KEEP=0 CHECK_TARGETS=0 NO_REPORT=0
while [ $# -gt 0 ]; do
    case "$1" in
        --agents) AGENTS=${2:?--agents needs a number}; shift 2 ;;
        --interval) INTERVAL=${2:?--interval needs a number of seconds}; shift 2 ;;
        --bumps) BUMPS=${2:?--bumps needs a number}; shift 2 ;;
        --idle) IDLE=${2:?--idle needs a number of intervals}; shift 2 ;;
        --only) ONLY=${2:?--only needs a list}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --check-targets) CHECK_TARGETS=1; shift ;;
        --no-report) NO_REPORT=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for n in "$AGENTS" "$INTERVAL" "$BUMPS" "$IDLE"; do
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] || die "not a whole number >= 1: $n"
done
[ "$AGENTS" -ge 3 ] || die "--agents must be >= 3 (three waves)"
for section in ${ONLY//,/ }; do
    case "$section" in idle|polled|triggered|oci) ;; *) die "--only: unknown section $section (idle, polled, triggered, oci)" ;; esac
done
for tool in git python3 tar; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
if [ -z "$ONLY" ] || [[ ,$ONLY, == *,oci,* ]]; then
    command -v docker-registry >/dev/null 2>&1 || die "docker-registry is needed for the registry rows (apt-get install docker-registry), or pass --only idle,polled,triggered"
fi
init_cache
build_ferry
WORK=$(mktemp -d)
if [ "$KEEP" = 1 ]; then
    trap 'log "kept the work directory: $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
export FERRY_BENCH_WORK=$WORK FERRY=$FERRY_BIN AGENTS INTERVAL BUMPS IDLE ONLY CHECK_TARGETS NO_REPORT
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
export HOME=$WORK XDG_CACHE_HOME=$WORK/cache GIT_CONFIG_NOSYSTEM=1 USER=bench
python3 "$SCRIPT_DIR/fleet_bench.py" "$SCRIPT_DIR"
