#!/usr/bin/env bash
# bench/promote.sh: what a promotion of 1,000 changed apps costs on the embedded forge, next
# to a single `ferry bump` on the same repository (target: at most 2x).
#
# The repository: dev, staging, prod made by `ferry init`; dev and staging each pin the same
# 1,000 apps, dev one minor version ahead, so `ferry promote dev staging` moves all 1,000
# (both states loaded, one history walk for the changelog, the plan and its gates, the request's
# body cut to GitHub's limit, the proposal commit, the request record, and the repository's
# hooks checking the push).
# Each timed run starts from the same state: hyperfine's --prepare resets the branches and
# deletes the request records.
#
#   bench/promote.sh                  build (cargo build --release), generate, time
#   FERRY_BIN=/path/to/ferry bench/promote.sh
#   options: --apps N (1000) --runs N (15) --warmup N (2)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_DIR=${FERRY_BENCH_CACHE:-$SCRIPT_DIR/.cache}
# shellcheck source=bench/common.sh
source "$SCRIPT_DIR/common.sh"
APPS=1000 RUNS=15 WARMUP=2
while [ $# -gt 0 ]; do
    case "$1" in
        --apps) APPS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
init_cache
ensure_hyperfine
build_ferry
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$FERRY_BIN" "$WORK/ferry"
FERRY=$WORK/ferry
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
export HOME=$WORK XDG_CACHE_HOME=$WORK/cache GIT_CONFIG_NOSYSTEM=1
REMOTE=$WORK/deploy.git

"$FERRY" -q init --remote "$REMOTE" >/dev/null
git clone -q "$REMOTE" "$WORK/work"
python3 - "$WORK/work/manifest.json" "$APPS" <<'PY'
import hashlib, json, sys
path, n = sys.argv[1], int(sys.argv[2])
m = json.load(open(path))
for minor, branch in ((1, "staging"), (2, "dev")):
    m["artifacts"] = {
        f"app{i:04d}": {
            "version": f"1.{minor}.0",
            "url": f"https://artifacts.example.com/app{i:04d}/app{i:04d}-1.{minor}.0.tgz",
            "sha256": hashlib.sha256(f"app{i}-{minor}".encode()).hexdigest(),
        }
        for i in range(n)
    }
    open(f"{path}.{branch}", "w").write(json.dumps(m, indent=2) + "\n")
PY
for branch in staging dev; do
    git -C "$WORK/work" checkout -q "$branch"
    cp "$WORK/work/manifest.json.$branch" "$WORK/work/manifest.json"
    git -C "$WORK/work" commit -qm "$branch: $APPS apps" manifest.json
    git -C "$WORK/work" push -q origin "$branch"
done
DEV=$(git -C "$REMOTE" rev-parse dev)
STAGING=$(git -C "$REMOTE" rev-parse staging)
cat > "$WORK/reset" <<SH
#!/bin/sh
git -C "$REMOTE" update-ref refs/heads/dev $DEV
git -C "$REMOTE" update-ref refs/heads/staging $STAGING
git -C "$REMOTE" for-each-ref --format='%(refname)' refs/ferry refs/heads/ferry | while read -r ref; do git -C "$REMOTE" update-ref -d "\$ref"; done
SH
chmod +x "$WORK/reset"

# Each command must work before it is timed.
"$WORK/reset"
"$FERRY" -q promote dev staging --remote "$REMOTE" >/dev/null
test "$(git -C "$REMOTE" show refs/ferry/requests/1:request.json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["moves"]))')" = "$APPS"
"$WORK/reset"
"$FERRY" -q bump app0000 1.3.0 --env dev --sha256 "$(printf 'e%.0s' $(seq 64))" --remote "$REMOTE" >/dev/null
"$WORK/reset"

hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --prepare "$WORK/reset" --export-json "$WORK/results.json" \
    -n "ferry promote ($APPS apps)" "$FERRY -q promote dev staging --remote $REMOTE" \
    -n "ferry bump (1 app)" "$FERRY -q bump app0000 1.3.0 --env dev --sha256 $(printf 'e%.0s' $(seq 64)) --remote $REMOTE" >&2

python3 - "$WORK/results.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
promote = next(v for k, v in r.items() if k.startswith("ferry promote"))
bump = r["ferry bump (1 app)"]
print(f"{'command':<28} {'median':>10}")
for k, v in r.items():
    print(f"{k:<28} {v:>8.1f} ms")
ratio = promote / bump
print(f"promotion / bump: {ratio:.2f}x (target <= 2.0x): {'PASS' if ratio <= 2.0 else 'FAIL'}")
PY
