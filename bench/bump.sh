#!/usr/bin/env bash
# bench/bump.sh: what does `ferry bump` cost end to end, next to the floor of
# making the same commit with git plumbing, and does history length matter?
#
# Data (generated once, cached): a deployment repository of bench/gen_repo.py
# (N artifacts, ~2.8 MB manifest.json for 10,000, plus environments/ and
# schemas/), as two bare repositories whose branch dev has a long (--commits,
# 5000) and a short (--short, 5) history: the first commit holds the files,
# each later one bumps one artifact's version/url/sha256 (bench/gen_history.py
# writes the pack directly: ~15 s for 5,000 x 2.8 MB manifests). staging and
# prod point at the first commit.
#
# The change (the same everywhere): APP (--app, app-04242, never bumped in the
# generated history) goes from its pinned version to the next patch version,
# with a new sha256 and the url derived from the old one.
#
# What it measures (wall time, hyperfine medians; before every run, --prepare
# resets dev to its original tip and deletes every object written since setup,
# so each run really writes its blob, tree and commit; see bench/bump_reset.sh):
#   floor (5000), floor (5)   bench/bump_floor.sh on a local bare repo: cat-file
#                             | sed | hash-object -w, read-tree + update-index
#                             --cacheinfo (temporary index), write-tree,
#                             commit-tree, update-ref NEW OLD (it is given the old
#                             version and sha256, read once at setup: one sed)
#   ferry path (5000), (5)    ferry bump APP NEW --env dev --sha256 HEX --remote /path/repo.git
#                             --cache-dir DIR, DIR kept between runs: the tip's tree has a
#                             verdict (ferry validated it before), so only the new pin is
#                             checked (src/verdict.rs)
#   ferry path, no verdict (5000)
#                             the same with DIR emptied before every run: the whole
#                             resulting state is validated, as on a fresh CI runner
#   ferry git:// cold (5000), (5)
#                             the same with --remote git://127.0.0.1:PORT/repo.git
#                             (git-daemon on loopback) and an empty --cache-dir
#                             every run: shallow fetch of the tip, bump, push
#   ferry git:// warm (5000)  the same, keeping the cache between runs (not timed,
#                             with a WARNING, if a second bump on a warm cache fails)
#   shallow clone (5000)      git clone --bare --depth 1 --branch dev git://...
#   full clone (5000)         git clone --bare git://... (once: it takes long)
#   ferry validate (files)    ferry validate on the first commit's files, for scale:
#                             ferry bump validates the whole state, the floor nothing
# Before timing, every command is run once: it must exit 0 and leave dev with
# the bump (subject, parent, and the same manifest blob as the floor's); the
# ferry cache of a cold git:// bump is checked to be shallow. At the end,
# `git fsck` runs on every repository the runs wrote to.
#
# Targets: ferry path (5000) <= 1.5x floor (5000); history must not matter:
# ferry 5000 commits / 5 commits <= 1.2 on both transports (and no full-history
# clone: see the cache's commit count and size next to the full clone's).
#
# How to run (from anywhere; re-runnable):
#   bench/bump.sh                          install what is missing, build, generate (cached), time
#   FERRY_BIN=/path/to/ferry bench/bump.sh use that binary, skip `cargo build --release`
#   options: --artifacts N (10000)  --commits N (5000)  --short N (5)  --app NAME (app-04242)
#            --runs N (20) --warmup N (2): local commands
#            --net-runs N (10) --net-warmup N (1): git:// commands
#            --no-full-clone (skip the ~20 s full clone)  --port N (default: a free port)
#            --fsck-data (full `git fsck` of freshly generated repositories: ~30 s for 5000)
#            --keep (keep the work directory)  --check-targets (exit 2 if a target is missed)
#
# Installs what it lacks: hyperfine (apt-get). Needs git (with git-daemon, run
# as "$(git --exec-path)/git-daemon", never via `git daemon`), python3 and
# cargo (unless FERRY_BIN). Cache dir: $FERRY_BENCH_CACHE, else bench/.cache
# (git-ignored): generated repositories in <cache>/bump-data/, hyperfine's
# JSON exports in <cache>/results/.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_DIR=${FERRY_BENCH_CACHE:-$SCRIPT_DIR/.cache}

ARTIFACTS=10000
COMMITS=5000
SHORT=5
APP=app-04242
SEED=1
RUNS=20
WARMUP=2
NET_RUNS=10
NET_WARMUP=1
PORT=
FULL_CLONE=1
FSCK_DATA=0
KEEP=0
CHECK_TARGETS=0

# Targets.
TARGET_FLOOR_RATIO=1.5
TARGET_HISTORY_RATIO=1.2

# shellcheck source=bench/common.sh
source "$SCRIPT_DIR/common.sh"

while [ $# -gt 0 ]; do
    case $1 in
        --artifacts) ARTIFACTS=${2:?--artifacts needs a number}; shift 2 ;;
        --commits) COMMITS=${2:?--commits needs a number}; shift 2 ;;
        --short) SHORT=${2:?--short needs a number}; shift 2 ;;
        --app) APP=${2:?--app needs a name}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a number}; shift 2 ;;
        --net-runs) NET_RUNS=${2:?--net-runs needs a number}; shift 2 ;;
        --net-warmup) NET_WARMUP=${2:?--net-warmup needs a number}; shift 2 ;;
        --port) PORT=${2:?--port needs a number}; shift 2 ;;
        --no-full-clone) FULL_CLONE=0; shift ;;
        --fsck-data) FSCK_DATA=1; shift ;;
        --keep) KEEP=1; shift ;;
        --check-targets) CHECK_TARGETS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for n in "$ARTIFACTS" "$COMMITS" "$SHORT" "$RUNS" "$WARMUP" "$NET_RUNS" "$NET_WARMUP" ${PORT:+"$PORT"}; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a number: $n"
done
[ "$COMMITS" -ge 1 ] && [ "$SHORT" -ge 1 ] || die "--commits and --short must be >= 1"
[ "$COMMITS" -ne "$SHORT" ] || die "--commits and --short must differ"
[ "$RUNS" -ge 2 ] && [ "$NET_RUNS" -ge 2 ] || die "--runs and --net-runs must be >= 2"
[[ $APP =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "unexpected app name: $APP"
LONG=$COMMITS

init_cache

# ---------------------------------------------------------------- (a) tools

command -v git >/dev/null 2>&1 || die "git is needed"
command -v python3 >/dev/null 2>&1 || die "python3 is needed (bench/gen_repo.py, bench/gen_history.py)"
command -v sed >/dev/null 2>&1 || die "sed is needed"
GIT_DAEMON=$(git --exec-path)/git-daemon
[ -x "$GIT_DAEMON" ] || die "no git-daemon at $GIT_DAEMON (on Debian/Ubuntu it comes with the git package; a minimal git build may lack it)"
ensure_hyperfine
log "hyperfine:        $(hyperfine --version)"
log "git:              $(git --version)"

# ---------------------------------------------------------------- (b) ferry
build_ferry

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-bump.XXXXXX")
DAEMON_PID=
cleanup() {
    if [ -n "$DAEMON_PID" ]; then
        kill "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" -eq 1 ]; then
        log "kept the work directory: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Time a private copy, so that a rebuild during the run cannot swap it.
cp "$FERRY_BIN" "$WORK/ferry"
FERRY=$WORK/ferry
log "ferry:            $("$FERRY" --version 2>&1 | head -n 1 || true)"

# The commit identity of every bump (ferry's and the floor's), and no ferry
# cache outside the work directory.
export GIT_AUTHOR_NAME=ferry-bench GIT_AUTHOR_EMAIL=ferry-bench@example.com
export GIT_COMMITTER_NAME=ferry-bench GIT_COMMITTER_EMAIL=ferry-bench@example.com
export XDG_CACHE_HOME=$WORK/xdg-cache
unset FERRY_REMOTE FERRY_CACHE_DIR

# ---------------------------------------------------------------- (c) data
# Cached under a key of everything that shapes it: the generators, the schemas
# the first commit carries, and the parameters.
DATA_ROOT=$CACHE_DIR/bump-data
mapfile -t SCHEMAS < <("$FERRY" schema)
[ "${#SCHEMAS[@]}" -gt 0 ] || die "\`ferry schema\` listed no schemas"
KEY=$({
    cat "$SCRIPT_DIR/gen_repo.py" "$SCRIPT_DIR/gen_history.py"
    for s in "${SCHEMAS[@]}"; do printf '%s\n' "$s"; "$FERRY" schema "$s"; done
    printf 'artifacts=%s seed=%s exclude=%s\n' "$ARTIFACTS" "$SEED" "$APP"
} | sha256sum | cut -c1-16)
DATA=$DATA_ROOT/$KEY
mkdir -p "$DATA_ROOT"
for old in "$DATA_ROOT"/*; do
    [ "$old" = "$DATA" ] || [ ! -e "$old" ] || { log "removing stale generated data $old"; rm -rf "$old"; }
done

TREE=$DATA/tree
if [ ! -f "$TREE.ok" ]; then
    log "generating the files of the first commit ($ARTIFACTS artifacts) into $TREE"
    rm -rf "$TREE"
    python3 "$SCRIPT_DIR/gen_repo.py" "$TREE" --artifacts "$ARTIFACTS"
    mkdir -p "$TREE/schemas"
    for s in "${SCHEMAS[@]}"; do "$FERRY" schema "$s" >"$TREE/schemas/$s.schema.json"; done
    python3 - "$TREE/manifest.json" "$APP" <<'EOF' || die "--app $APP: not an artifact of the generated manifest"
import json, sys
sys.exit(0 if sys.argv[2] in json.load(open(sys.argv[1]))["artifacts"] else 1)
EOF
    out=$("$FERRY" validate "$TREE" 2>&1) || { printf '%s\n' "$out" | head -n 40 >&2; die "ferry validate rejects the generated files ($TREE)"; }
    log "ferry validate: $out"
    touch "$TREE.ok"
fi

# git with a fixed repository, ignoring the environment's GIT_DIR.
g() { local dir=$1; shift; git --git-dir="$dir" "$@"; }

gen_history() {
    local n=$1 repo=$DATA/repo-$1.git t0 t1
    [ -f "$repo.ok" ] && return
    log "generating $repo: dev with $n commits (bench/gen_history.py)"
    rm -rf "$repo"
    git init -q --bare "$repo"
    g "$repo" symbolic-ref HEAD refs/heads/dev
    t0=$(date +%s.%N)
    python3 "$SCRIPT_DIR/gen_history.py" "$TREE" "$repo" --commits "$n" --seed "$SEED" --exclude "$APP" >"$repo.refs"
    t1=$(date +%s.%N)
    sed 's/^\([0-9a-f]*\) \(.*\)$/create \2 \1/' "$repo.refs" | g "$repo" update-ref --stdin
    rm -f "$repo.refs"
    # The generated packs are the base state: bench/bump_reset.sh keeps packs with a .keep.
    for p in "$repo"/objects/pack/pack-*.pack; do touch "${p%.pack}.keep"; done
    log "generated in $(python3 -c "print('%.1f s' % ($t1 - $t0))"): $(du -sh "$repo" | cut -f1)"

    # Checks: history length, branches, the tip's manifest read back and
    # re-hashed by git, the first commit's manifest (rebuilt from the deltas)
    # equal to the generated file, connectivity.
    local count root tip_id tip_rehash
    count=$(g "$repo" rev-list --count dev)
    [ "$count" -eq "$n" ] || die "$repo: dev has $count commits, expected $n"
    root=$(g "$repo" rev-list --max-parents=0 dev)
    [ "$(g "$repo" rev-parse staging)" = "$root" ] && [ "$(g "$repo" rev-parse prod)" = "$root" ] ||
        die "$repo: staging/prod do not point at dev's first commit"
    tip_id=$(g "$repo" rev-parse dev:manifest.json)
    tip_rehash=$(g "$repo" cat-file blob dev:manifest.json | g "$repo" hash-object --stdin)
    [ "$tip_id" = "$tip_rehash" ] || die "$repo: the tip's manifest.json does not hash to its id"
    g "$repo" cat-file blob "$root:manifest.json" | cmp -s - "$TREE/manifest.json" ||
        die "$repo: the first commit's manifest.json differs from $TREE/manifest.json"
    g "$repo" fsck --connectivity-only --no-dangling --no-progress || die "$repo: git fsck --connectivity-only failed"
    if [ "$FSCK_DATA" -eq 1 ]; then
        log "git fsck --strict $repo (--fsck-data)"
        g "$repo" fsck --strict --no-dangling --no-progress || die "$repo: git fsck failed"
    fi
    log "$repo: dev has $count commits ($(g "$repo" log -1 --format=%s dev))"
    touch "$repo.ok"
}
gen_history "$LONG"
gen_history "$SHORT"

# ---------------------------------------------------------------- (d) copies
# One copy per use, so that no command sees another's objects: floor-N.git,
# path-N.git (ferry, local path) and srv/repo-N.git (served by git-daemon).
SRV=$WORK/srv
mkdir -p "$SRV"
for n in "$LONG" "$SHORT"; do
    for dest in "$WORK/floor-$n.git" "$WORK/path-$n.git" "$SRV/repo-$n.git"; do
        cp -R "$DATA/repo-$n.git" "$dest"
    done
done
ORIG_LONG=$(g "$DATA/repo-$LONG.git" rev-parse dev)
ORIG_SHORT=$(g "$DATA/repo-$SHORT.git" rev-parse dev)
orig_of() { if [ "$1" = "$LONG" ]; then echo "$ORIG_LONG"; else echo "$ORIG_SHORT"; fi; }

# ---------------------------------------------------------------- (e) the change
read_pin() {
    g "$1" cat-file blob dev:manifest.json | python3 -c '
import hashlib, json, re, sys
app = sys.argv[1]
pin = json.load(sys.stdin)["artifacts"][app]
m = re.match(r"^(\d+)\.(\d+)\.(\d+)", pin["version"])
new = "%s.%s.%d" % (m.group(1), m.group(2), int(m.group(3)) + 1)
print(pin["version"], pin["sha256"], new, hashlib.sha256(("ferry-bench %s %s" % (app, new)).encode()).hexdigest())
' "$APP"
}
read -r OLD_VERSION OLD_SHA NEW_VERSION NEW_SHA < <(read_pin "$DATA/repo-$LONG.git") || true
[ -n "${NEW_SHA:-}" ] || die "cannot read $APP's pin from dev:manifest.json"
[ "$(read_pin "$DATA/repo-$SHORT.git")" = "$OLD_VERSION $OLD_SHA $NEW_VERSION $NEW_SHA" ] ||
    die "$APP is not pinned the same in both repositories"
[[ $OLD_VERSION$NEW_VERSION != *"|"* ]] || die "versions with | are not supported by bench/bump_floor.sh"
SUBJECT="dev: bump $APP $OLD_VERSION → $NEW_VERSION"
log "the change: $APP $OLD_VERSION → $NEW_VERSION (sha256 $NEW_SHA)"

# ---------------------------------------------------------------- (f) commands
q() { printf '%q' "$1"; }
RESET=$SCRIPT_DIR/bump_reset.sh
FLOOR=$SCRIPT_DIR/bump_floor.sh
[ -x "$RESET" ] && [ -x "$FLOOR" ] || die "bench/bump_reset.sh and bench/bump_floor.sh must be executable"

floor_cmd() { echo "$(q "$FLOOR") $(q "$WORK/floor-$1.git") $APP $OLD_VERSION $NEW_VERSION $OLD_SHA $NEW_SHA"; }
ferry_cmd() { echo "$(q "$FERRY") bump $APP $NEW_VERSION --env dev --sha256 $NEW_SHA --remote $*"; }
# path_cmd N CACHE: ferry's cache dir holds the verdicts (trees found valid before).
path_cmd() { ferry_cmd "$(q "$WORK/path-$1.git") --cache-dir $(q "$2")"; }
PATH_CACHE_LONG=$WORK/cache-path-$LONG
PATH_CACHE_SHORT=$WORK/cache-path-$SHORT
PATH_CACHE_NONE=$WORK/cache-path-none-$LONG
# git:// commands need $PORT: defined after the daemon starts.
net_cmd() { ferry_cmd "git://127.0.0.1:$PORT/repo-$1.git --cache-dir $(q "$2")"; }

# check_bump NAME REPO N CMD [CACHE [soft]]: reset (deleting CACHE), run once,
# check the result on REPO. Fatal on failure, unless "soft": then warn, return 1.
declare -A FLOOR_BLOB=()
check_bump() {
    local name=$1 repo=$2 n=$3 cmd=$4 cache=${5:-} soft=${6:-} orig out subject parent blob
    local -a argv
    orig=$(orig_of "$n")
    bash "$RESET" "$repo" "$orig" ${cache:+"$cache"}
    read -r -a argv <<<"$cmd"
    if ! out=$("${argv[@]}" 2>&1); then
        printf '%s\n' "$out" | head -n 40 >&2
        [ -n "$soft" ] || die "$name failed: $cmd"
        warn "$name failed (exit non-zero, output above): not timing it"
        return 1
    fi
    subject=$(g "$repo" log -1 --format=%s dev)
    parent=$(g "$repo" rev-parse dev^)
    blob=$(g "$repo" rev-parse dev:manifest.json)
    [ "$subject" = "$SUBJECT" ] || die "$name: dev's last commit is \"$subject\", expected \"$SUBJECT\""
    [ "$parent" = "$orig" ] || die "$name: the bump's parent is $parent, not the original tip $orig"
    [ "$(g "$repo" diff --name-only "$orig" dev)" = manifest.json ] || die "$name: the bump changed more than manifest.json"
    # The floor runs first on each history length: its manifest is the reference.
    if [ -z "${FLOOR_BLOB[$n]:-}" ]; then
        FLOOR_BLOB[$n]=$blob
    elif [ "$blob" != "${FLOOR_BLOB[$n]}" ]; then
        warn "$name: manifest.json differs from the floor's ($blob vs ${FLOOR_BLOB[$n]}): not the same text edit"
        g "$repo" diff "$orig" dev | head -n 20 >&2
    fi
    log "check: $name exits 0 and commits \"$subject\"${out:+ (it said: ${out%%$'\n'*})}"
}

check_bump "floor ($LONG)" "$WORK/floor-$LONG.git" "$LONG" "$(floor_cmd "$LONG")"
check_bump "floor ($SHORT)" "$WORK/floor-$SHORT.git" "$SHORT" "$(floor_cmd "$SHORT")"
check_bump "ferry path, no verdict ($LONG)" "$WORK/path-$LONG.git" "$LONG" "$(path_cmd "$LONG" "$PATH_CACHE_NONE")" "$PATH_CACHE_NONE"
check_bump "ferry path ($LONG)" "$WORK/path-$LONG.git" "$LONG" "$(path_cmd "$LONG" "$PATH_CACHE_LONG")"
check_bump "ferry path ($SHORT)" "$WORK/path-$SHORT.git" "$SHORT" "$(path_cmd "$SHORT" "$PATH_CACHE_SHORT")"
# The first bump validated the whole state and recorded the verdicts of its parent and of
# its result: the warm runs find the parent's.
[ -n "$(ls "$PATH_CACHE_LONG/verified/"*/ 2>/dev/null)" ] || die "ferry path ($LONG): no verdict recorded in $PATH_CACHE_LONG"

# ---------------------------------------------------------------- (g) git daemon
if [ -z "$PORT" ]; then
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
log "serving $SRV on git://127.0.0.1:$PORT/ (git-daemon, pid below)"
"$GIT_DAEMON" --reuseaddr --informative-errors --base-path="$SRV" --export-all \
    --enable=receive-pack --listen=127.0.0.1 --port="$PORT" "$SRV" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; die "git-daemon exited (port $PORT taken? try --port)"; }
    git ls-remote "git://127.0.0.1:$PORT/repo-$SHORT.git" >/dev/null 2>&1 && break
    sleep 0.1
done
git ls-remote "git://127.0.0.1:$PORT/repo-$SHORT.git" >/dev/null 2>&1 || die "git-daemon does not answer on port $PORT"
log "git-daemon pid $DAEMON_PID"

COLD_LONG=$WORK/cache-cold-$LONG
COLD_SHORT=$WORK/cache-cold-$SHORT
WARM_LONG=$WORK/cache-warm-$LONG
SHALLOW_DIR=$WORK/clone-shallow-$LONG.git
FULL_DIR=$WORK/clone-full-$LONG.git

# A cold git:// bump must leave a shallow cache: a handful of commits, not the history.
check_cache() {
    local name=$1 cache=$2 dir count
    dir=$(find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name verified | head -n 1)
    [ -n "$dir" ] && [ -f "$dir/HEAD" ] || die "$name: no repository in the cache dir $cache"
    count=$(g "$dir" rev-list --count --all)
    [ -f "$dir/shallow" ] || warn "$name: the cache $dir is not shallow"
    [ "$count" -le 3 ] || warn "$name: the cache holds $count commits (a shallow fetch of the tip would hold 2: tip and bump)"
    log "check: $name leaves a cache of $count commits, $(du -sh "$dir" | cut -f1)"
    printf '%s %s\n' "$count" "$(du -sk "$dir" | cut -f1)" >"$cache.stats"
}
check_bump "ferry git:// cold ($LONG)" "$SRV/repo-$LONG.git" "$LONG" "$(net_cmd "$LONG" "$COLD_LONG")" "$COLD_LONG"
check_cache "ferry git:// cold ($LONG)" "$COLD_LONG"
cp "$COLD_LONG.stats" "$WORK/cache-long.stats"
check_bump "ferry git:// cold ($SHORT)" "$SRV/repo-$SHORT.git" "$SHORT" "$(net_cmd "$SHORT" "$COLD_SHORT")" "$COLD_SHORT"
check_cache "ferry git:// cold ($SHORT)" "$COLD_SHORT"
# Warm: a first bump fills the cache, the second (after the reset) uses it.
WARM=0
check_bump "ferry git:// warm, first ($LONG)" "$SRV/repo-$LONG.git" "$LONG" "$(net_cmd "$LONG" "$WARM_LONG")" "$WARM_LONG"
if check_bump "ferry git:// warm ($LONG)" "$SRV/repo-$LONG.git" "$LONG" "$(net_cmd "$LONG" "$WARM_LONG")" "" soft; then
    WARM=1
fi

# ---------------------------------------------------------------- (h) timing
HF_BASE=(-N --style basic)
hyperfine --help 2>/dev/null | grep -q -- '--shell=none' || die "hyperfine >= 1.13 is needed (-N)"
mkdir -p "$CACHE_DIR/results"
STAMP=$(date +%Y%m%dT%H%M%S)
JSON_LOCAL=$CACHE_DIR/results/bump-$STAMP-local.json
JSON_NET=$CACHE_DIR/results/bump-$STAMP-net.json
JSON_FULL=$CACHE_DIR/results/bump-$STAMP-full-clone.json
reset_cmd() { echo "bash $(q "$RESET") $(q "$1") $(orig_of "$2")${3:+ $(q "$3")}"; }

log "timing the local commands: --warmup $WARMUP --runs $RUNS"
hyperfine "${HF_BASE[@]}" --warmup "$WARMUP" --runs "$RUNS" --export-json "$JSON_LOCAL" \
    --prepare "$(reset_cmd "$WORK/floor-$LONG.git" "$LONG")" -n "floor ($LONG)" "$(floor_cmd "$LONG")" \
    --prepare "$(reset_cmd "$WORK/floor-$SHORT.git" "$SHORT")" -n "floor ($SHORT)" "$(floor_cmd "$SHORT")" \
    --prepare "$(reset_cmd "$WORK/path-$LONG.git" "$LONG")" -n "ferry path ($LONG)" "$(path_cmd "$LONG" "$PATH_CACHE_LONG")" \
    --prepare "$(reset_cmd "$WORK/path-$SHORT.git" "$SHORT")" -n "ferry path ($SHORT)" "$(path_cmd "$SHORT" "$PATH_CACHE_SHORT")" \
    --prepare "$(reset_cmd "$WORK/path-$LONG.git" "$LONG" "$PATH_CACHE_NONE")" -n "ferry path, no verdict ($LONG)" "$(path_cmd "$LONG" "$PATH_CACHE_NONE")" \
    --prepare true -n "ferry validate (files)" "$(q "$FERRY") validate $(q "$TREE")"

WARM_ARGS=()
if [ "$WARM" -eq 1 ]; then
    WARM_ARGS=(--prepare "$(reset_cmd "$SRV/repo-$LONG.git" "$LONG")" -n "ferry git:// warm ($LONG)" "$(net_cmd "$LONG" "$WARM_LONG")")
fi
log "timing the git:// commands: --warmup $NET_WARMUP --runs $NET_RUNS"
hyperfine "${HF_BASE[@]}" --warmup "$NET_WARMUP" --runs "$NET_RUNS" --export-json "$JSON_NET" \
    --prepare "$(reset_cmd "$SRV/repo-$LONG.git" "$LONG" "$COLD_LONG")" -n "ferry git:// cold ($LONG)" "$(net_cmd "$LONG" "$COLD_LONG")" \
    --prepare "$(reset_cmd "$SRV/repo-$SHORT.git" "$SHORT" "$COLD_SHORT")" -n "ferry git:// cold ($SHORT)" "$(net_cmd "$SHORT" "$COLD_SHORT")" \
    "${WARM_ARGS[@]}" \
    --prepare "rm -rf $(q "$SHALLOW_DIR")" -n "shallow clone ($LONG)" \
    "git clone -q --bare --depth 1 --branch dev git://127.0.0.1:$PORT/repo-$LONG.git $(q "$SHALLOW_DIR")"
du -sk "$SHALLOW_DIR" | cut -f1 >"$WORK/shallow.kb"

if [ "$FULL_CLONE" -eq 1 ]; then
    log "timing a full clone of repo-$LONG.git, once (tens of seconds)"
    hyperfine "${HF_BASE[@]}" --runs 1 --export-json "$JSON_FULL" \
        --prepare "rm -rf $(q "$FULL_DIR")" -n "full clone ($LONG)" \
        "git clone -q --bare git://127.0.0.1:$PORT/repo-$LONG.git $(q "$FULL_DIR")"
    du -sk "$FULL_DIR" | cut -f1 >"$WORK/full.kb"
    g "$FULL_DIR" rev-list --count dev >"$WORK/full.count"
    rm -rf "$FULL_DIR"
fi

# ---------------------------------------------------------------- (i) fsck
# Every repository a timed command wrote to still holds its last bump: check it
# and the objects. The generated history's packs were checked when generated
# (--fsck-data for a full check), so on the long repositories only loose
# objects (what the bumps wrote) and connectivity are checked (--no-full).
kill "$DAEMON_PID" 2>/dev/null || true
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=
FSCK_FAILED=0
for repo in "$WORK/floor-$LONG.git" "$WORK/path-$LONG.git" "$SRV/repo-$LONG.git" \
            "$WORK/floor-$SHORT.git" "$WORK/path-$SHORT.git" "$SRV/repo-$SHORT.git"; do
    args=(--no-dangling --no-progress)
    case $repo in *-$LONG.git) args+=(--no-full) ;; esac
    subject=$(g "$repo" log -1 --format=%s dev)
    [ "$subject" = "$SUBJECT" ] || { warn "$repo: dev's last commit is \"$subject\", not the bump"; FSCK_FAILED=1; }
    if g "$repo" fsck "${args[@]}" >"$WORK/fsck.out" 2>&1; then
        log "git fsck ${args[*]}: $(basename "$(dirname "$repo")")/$(basename "$repo") ok"
    else
        cat "$WORK/fsck.out" >&2
        warn "git fsck failed on $repo"
        FSCK_FAILED=1
    fi
done
CACHES=("$COLD_LONG" "$COLD_SHORT")
if [ "$WARM" -eq 1 ]; then CACHES+=("$WARM_LONG"); fi
for cache in "${CACHES[@]}"; do
    dir=$(find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name verified | head -n 1)
    if g "$dir" fsck --no-dangling --no-progress >"$WORK/fsck.out" 2>&1; then
        log "git fsck ferry cache $(basename "$cache"): ok"
    else
        cat "$WORK/fsck.out" >&2
        warn "git fsck failed on the ferry cache $dir"
        FSCK_FAILED=1
    fi
done

# ---------------------------------------------------------------- (j) table
read -r CACHE_COMMITS CACHE_KB <"$WORK/cache-long.stats"
python3 - "$JSON_LOCAL" "$JSON_NET" "$([ "$FULL_CLONE" -eq 1 ] && echo "$JSON_FULL" || echo -)" \
    "$LONG" "$SHORT" "$TARGET_FLOOR_RATIO" "$TARGET_HISTORY_RATIO" "$CHECK_TARGETS" "$FSCK_FAILED" \
    "$CACHE_COMMITS" "$CACHE_KB" "$(cat "$WORK/shallow.kb")" \
    "$(cat "$WORK/full.kb" 2>/dev/null || echo -)" "$(cat "$WORK/full.count" 2>/dev/null || echo -)" <<'EOF'
import json, sys

(j_local, j_net, j_full, long_, short, t_floor, t_hist, check_targets, fsck_failed,
 cache_commits, cache_kb, shallow_kb, full_kb, full_count) = sys.argv[1:]
t_floor, t_hist = float(t_floor), float(t_hist)
res = {}
for path in (j_local, j_net, j_full):
    if path == "-":
        continue
    for r in json.load(open(path))["results"]:
        res[r["command"]] = r
# hyperfine's "command" is the -n name.
def med(name):
    return res[name]["median"] * 1000

def ms(v):
    return "%.1f ms" % v if v < 100 else "%.0f ms" % v

L, S = long_, short
rows = [
    ("floor (%s)" % L, "git plumbing on a local bare repo, %s commits" % L),
    ("floor (%s)" % S, "git plumbing on a local bare repo, %s commits" % S),
    ("ferry path (%s)" % L, "ferry bump --remote /path/repo-%s.git (the tip's tree validated before)" % L),
    ("ferry path (%s)" % S, "the same, %s commits" % S),
    ("ferry path, no verdict (%s)" % L, "the same with an empty cache dir: the whole state validated"),
    ("ferry validate (files)", "ferry validate DIR: the first commit's files (for scale: the floor validates nothing)"),
    ("ferry git:// cold (%s)" % L, "ferry bump --remote git://..., empty cache each run"),
    ("ferry git:// cold (%s)" % S, "the same, %s commits" % S),
    ("ferry git:// warm (%s)" % L, "the same, cache kept between runs"),
    ("shallow clone (%s)" % L, "git clone --bare --depth 1 --branch dev git://..."),
    ("full clone (%s)" % L, "git clone --bare git://... (1 run)"),
]
print()
print("%-31s %10s %9s %5s   %s" % ("command", "median", "stddev", "runs", "what"))
for name, what in rows:
    if name not in res:
        why = "failed its check, see the WARNING above" if "warm" in name else "--no-full-clone"
        print("%-31s %10s %9s %5s   %s" % (name, "-", "-", "-", "%s (not timed: %s)" % (what, why)))
        continue
    r = res[name]
    sd = r.get("stddev")
    print("%-31s %10s %9s %5d   %s" % (name, ms(med(name)), ms(sd * 1000) if sd else "-", len(r["times"]), what))

floor_ratio = med("ferry path (%s)" % L) / med("floor (%s)" % L)
path_hist = med("ferry path (%s)" % L) / med("ferry path (%s)" % S)
net_hist = med("ferry git:// cold (%s)" % L) / med("ferry git:// cold (%s)" % S)
floor_hist = med("floor (%s)" % L) / med("floor (%s)" % S)
checks = [
    ("ferry path (%s) / floor (%s) <= %g" % (L, L, t_floor), floor_ratio, floor_ratio <= t_floor),
    ("ferry path: %s / %s commits <= %g" % (L, S, t_hist), path_hist, path_hist <= t_hist),
    ("ferry git:// cold: %s / %s commits <= %g" % (L, S, t_hist), net_hist, net_hist <= t_hist),
]
def verdict(ok):
    return "PASS" if ok else "FAIL"
print()
print("%-46s %8s   %s" % ("target", "ratio", "verdict"))
for what, ratio, ok in checks:
    print("%-46s %7.2fx   %s" % (what, ratio, verdict(ok)))
print()
print("For scale: floor %s / %s commits = %.2fx; ferry git:// cold / ferry path (%s) = %.2fx;"
      % (L, S, floor_hist, L, med("ferry git:// cold (%s)" % L) / med("ferry path (%s)" % L)))
print("  ferry git:// cold (%s) / shallow clone = %.2fx." % (L, med("ferry git:// cold (%s)" % L) / med("shallow clone (%s)" % L)))
print("  ferry path, no verdict (%s) / floor = %.2fx: the first bump on a tree this ferry has not seen."
      % (L, med("ferry path, no verdict (%s)" % L) / med("floor (%s)" % L)))
fv = med("ferry validate (files)")
print("  floor + ferry validate = %s; ferry path (%s) / (floor + validate) = %.2fx."
      % (ms(med("floor (%s)" % L) + fv), L, med("ferry path (%s)" % L) / (med("floor (%s)" % L) + fv)))
full = "full clone (%s)" % L
print("No full-history clone: after a cold git:// bump on %s commits, ferry's cache holds %s commits, %.1f MB"
      % (L, cache_commits, int(cache_kb) / 1024))
if full in res:
    print("  (shallow clone: %.1f MB; full clone: %s commits, %.1f MB, %s = %.0fx a cold ferry bump)."
          % (int(shallow_kb) / 1024, full_count, int(full_kb) / 1024, ms(med(full)),
             med(full) / med("ferry git:// cold (%s)" % L)))
else:
    print("  (shallow clone: %.1f MB; full clone not timed: --no-full-clone)." % (int(shallow_kb) / 1024))
print("git fsck after the runs: %s." % ("FAILED (see above)" if fsck_failed == "1" else "all repositories ok"))
all_ok = all(c[2] for c in checks)
print("%s." % ("All targets hold" if all_ok else "Targets do NOT all hold"))
sys.exit(2 if (check_targets == "1" and not all_ok) else (1 if fsck_failed == "1" else 0))
EOF
