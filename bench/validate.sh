#!/usr/bin/env bash
# bench/validate.sh: how fast is `ferry validate` next to generic JSON Schema CLIs?
#
# What it measures (wall time, hyperfine, median of --runs runs after --warmup):
#   ferry (full repo)       ferry validate DIR: manifest.json (N artifacts, ~3 MB)
#                           plus environments/{dev,staging,prod}.json, each with
#                           an `apps` entry per artifact (~1.9 MB each)
#   ferry (manifest only)   ferry validate on a copy with the same manifest.json and
#                           small environment files without `apps`: the
#                           like-for-like figure, since the peers below see only
#                           manifest.json
#   ajv-cli                 ajv validate --spec=draft2020 -s schemas/manifest.schema.json -d DIR/manifest.json
#   check-jsonschema        check-jsonschema --schemafile schemas/manifest.schema.json DIR/manifest.json
# Before timing, each tool must accept the generated data (exit 0), so real
# validations are timed, not early failures; each is also run once on a copy
# with one bad digest, which it should reject (a warning if it does not).
#
# Targets: ferry median <= 125 ms, >= 4x faster than ajv-cli, >= 20x faster
# than check-jsonschema; each is judged both on the full repo and like-for-like.
#
# How to run (from anywhere; re-runnable):
#   bench/validate.sh                   install what is missing, build, generate, time
#   bench/validate.sh --peers-only      time ajv-cli and check-jsonschema only (no cargo build)
#   FERRY_BIN=/path/to/ferry bench/validate.sh     use that binary, skip `cargo build --release`
#   options: --artifacts N (10000)  --runs N (20)  --warmup N (3)  --keep (keep the generated data)
#            --check-targets (exit 2 if a full-repo target is missed)
#
# Installs what it lacks: hyperfine (apt-get), ajv-cli@5 (npm, into the cache
# dir) and check-jsonschema (pip, into a venv in the cache dir). Nothing is
# installed globally but hyperfine. Cache dir: $FERRY_BENCH_CACHE, else
# bench/.cache (git-ignored). hyperfine's JSON export goes to <cache>/results/.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_DIR=${FERRY_BENCH_CACHE:-$SCRIPT_DIR/.cache}
MANIFEST_SCHEMA=$REPO_ROOT/schemas/manifest.schema.json

ARTIFACTS=10000
RUNS=20
WARMUP=3
PEERS_ONLY=0
KEEP=0
CHECK_TARGETS=0

# Targets.
TARGET_FERRY_MS=125
TARGET_AJV_RATIO=4
TARGET_CJS_RATIO=20

# shellcheck source=bench/common.sh
source "$SCRIPT_DIR/common.sh"

while [ $# -gt 0 ]; do
    case $1 in
        --artifacts) ARTIFACTS=${2:?--artifacts needs a number}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --warmup) WARMUP=${2:?--warmup needs a number}; shift 2 ;;
        --peers-only) PEERS_ONLY=1; shift ;;
        --keep) KEEP=1; shift ;;
        --check-targets) CHECK_TARGETS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for n in "$ARTIFACTS" "$RUNS" "$WARMUP"; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a number: $n"
done

init_cache

# ---------------------------------------------------------------- (a) tools

AJV=$CACHE_DIR/npm/node_modules/.bin/ajv
ensure_ajv() {
    [ -x "$AJV" ] && return
    command -v npm >/dev/null 2>&1 || die "npm is needed to install ajv-cli"
    log "installing ajv-cli@5 (npm) into $CACHE_DIR/npm"
    mkdir -p "$CACHE_DIR/npm"
    logged npm install --prefix "$CACHE_DIR/npm" --no-audit --no-fund --loglevel=error ajv-cli@5
    [ -x "$AJV" ] || die "ajv not found at $AJV after npm install"
}

CJS=$CACHE_DIR/venv/bin/check-jsonschema
ensure_check_jsonschema() {
    [ -x "$CJS" ] && return
    command -v python3 >/dev/null 2>&1 || die "python3 is needed"
    log "installing check-jsonschema (pip) into $CACHE_DIR/venv"
    [ -x "$CACHE_DIR/venv/bin/pip" ] || logged python3 -m venv "$CACHE_DIR/venv"
    logged "$CACHE_DIR/venv/bin/pip" install -q --disable-pip-version-check check-jsonschema
    [ -x "$CJS" ] || die "check-jsonschema not found at $CJS after pip install"
}

command -v python3 >/dev/null 2>&1 || die "python3 is needed (bench/gen_repo.py)"
ensure_hyperfine
ensure_ajv
ensure_check_jsonschema

AJV_VERSION=$(node -p "require('$CACHE_DIR/npm/node_modules/ajv-cli/package.json').version + ' (ajv ' + require('$CACHE_DIR/npm/node_modules/ajv/package.json').version + ')'" 2>/dev/null || echo '?')
log "hyperfine:        $(hyperfine --version)"
log "ajv-cli:          $AJV_VERSION, node $(node --version)"
log "check-jsonschema: $("$CJS" --version 2>&1 | tail -n 1)"

# ---------------------------------------------------------------- (b) ferry
if [ "$PEERS_ONLY" -eq 0 ]; then
    build_ferry "or use --peers-only"
    log "ferry:            $("$FERRY_BIN" --version 2>&1 | head -n 1 || true)"
fi

# ---------------------------------------------------------------- (c) data
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
if [ "$KEEP" -eq 1 ]; then
    log "keeping generated data in $WORK"
else
    trap 'rm -rf "$WORK"' EXIT
fi
FULL=$WORK/full            # manifest + 3 environments with apps
SMALL=$WORK/manifest-only  # same manifest + 3 small environments without apps
BAD=$WORK/invalid          # full repo with one bad digest in the last artifact

if [ "$PEERS_ONLY" -eq 0 ]; then
    # Time a private copy, so that a rebuild during the run cannot swap it.
    cp "$FERRY_BIN" "$WORK/ferry"
    FERRY_BIN=$WORK/ferry
fi

log "generating $ARTIFACTS artifacts into $WORK"
python3 "$SCRIPT_DIR/gen_repo.py" "$FULL" --artifacts "$ARTIFACTS"
python3 "$SCRIPT_DIR/gen_repo.py" "$SMALL" --artifacts "$ARTIFACTS" --no-apps
cmp -s "$FULL/manifest.json" "$SMALL/manifest.json" || die "gen_repo.py is not deterministic: the two manifests differ"
cp -R "$FULL" "$BAD"
python3 - "$BAD/manifest.json" <<'EOF'
import json, sys
path = sys.argv[1]
with open(path) as f:
    doc = json.load(f)
if doc["artifacts"]:
    last = list(doc["artifacts"])[-1]
    # Uppercase hex: violates the sha256 pattern ^[0-9a-f]{64}$.
    doc["artifacts"][last]["sha256"] = doc["artifacts"][last]["sha256"].upper()
else:
    doc["artifacts"]["bad name!"] = "x"  # violates propertyNames
with open(path, "w") as f:
    json.dump(doc, f, indent=2)
EOF
log "sizes: manifest.json $(du -h "$FULL/manifest.json" | cut -f1), environments/ $(du -sh "$FULL/environments" | cut -f1) (with apps), $(du -sh "$SMALL/environments" | cut -f1) (without)"

# ---------------------------------------------------------------- checks
# Commands, as argument arrays (for the checks) and as strings (for hyperfine).
AJV_ARGS=(validate --spec=draft2020 -s "$MANIFEST_SCHEMA")
CJS_ARGS=(--schemafile "$MANIFEST_SCHEMA")

# check NAME EXPECT CMD...: EXPECT is "accept" (must exit 0, fatal otherwise)
# or "reject" (should exit non-zero, a warning otherwise).
CHECK_FAILED=0
check() {
    local name=$1 expect=$2 out rc
    shift 2
    if out=$("$@" 2>&1); then rc=0; else rc=$?; fi
    if [ "$expect" = accept ]; then
        if [ "$rc" -eq 0 ]; then
            log "check: $name accepts the valid data (exit 0)"
        else
            printf '%s\n' "--- $name exited $rc on valid data; it printed:" "$out" | head -n 60 >&2
            printf -- '---\n' >&2
            warn "$name rejects data that is valid against the schemas: not timing it"
            CHECK_FAILED=1
        fi
    else
        if [ "$rc" -ne 0 ]; then
            log "check: $name rejects the bad digest (exit $rc)"
        else
            warn "$name accepted a manifest with an invalid sha256 (exit 0); it printed: $(printf '%s' "$out" | head -c 400)"
        fi
    fi
}

check ajv-cli accept "$AJV" "${AJV_ARGS[@]}" -d "$FULL/manifest.json"
check ajv-cli reject "$AJV" "${AJV_ARGS[@]}" -d "$BAD/manifest.json"
check check-jsonschema accept "$CJS" "${CJS_ARGS[@]}" "$FULL/manifest.json"
check check-jsonschema reject "$CJS" "${CJS_ARGS[@]}" "$BAD/manifest.json"
if [ "$PEERS_ONLY" -eq 0 ]; then
    check "ferry (full repo)" accept "$FERRY_BIN" validate "$FULL"
    check "ferry (manifest only)" accept "$FERRY_BIN" validate "$SMALL"
    check ferry reject "$FERRY_BIN" validate "$BAD"
    # Informational: the JSON report's counts (warnings do not fail validation).
    if json=$("$FERRY_BIN" validate --format json "$FULL" 2>/dev/null); then
        printf '%s' "$json" | python3 -c '
import json, sys
try:
    r = json.load(sys.stdin)
    print("==> ferry --format json: valid=%s, %d errors, %d warnings" % (r.get("valid"), len(r.get("errors", [])), len(r.get("warnings", []))), file=sys.stderr)
except Exception as e:
    print("==> ferry --format json: output is not a JSON report (%s)" % e, file=sys.stderr)
'
    fi
fi
[ "$CHECK_FAILED" -eq 0 ] || die "a tool rejected valid data (see above): fix that before timing"

# ---------------------------------------------------------------- (d) timing
q() { printf '%q' "$1"; }
NAMES=()
CMDS=()
if [ "$PEERS_ONLY" -eq 0 ]; then
    NAMES+=("ferry (full repo)" "ferry (manifest only)")
    CMDS+=("$(q "$FERRY_BIN") validate $(q "$FULL")"
           "$(q "$FERRY_BIN") validate $(q "$SMALL")")
fi
NAMES+=(ajv-cli check-jsonschema)
CMDS+=("$(q "$AJV") validate --spec=draft2020 -s $(q "$MANIFEST_SCHEMA") -d $(q "$FULL/manifest.json")"
       "$(q "$CJS") --schemafile $(q "$MANIFEST_SCHEMA") $(q "$FULL/manifest.json")")

HF_ARGS=(--warmup "$WARMUP" --runs "$RUNS")
# Without an intermediate shell when hyperfine supports it (>= 1.13): for
# commands of a few ms, the shell's start-up is noise.
if hyperfine --help 2>/dev/null | grep -q -- '--shell=none'; then
    HF_ARGS+=(-N)
fi
mkdir -p "$CACHE_DIR/results"
RESULT_JSON=$CACHE_DIR/results/validate-$(date +%Y%m%dT%H%M%S).json
for i in "${!NAMES[@]}"; do
    HF_ARGS+=(-n "${NAMES[$i]}" "${CMDS[$i]}")
done
log "timing: hyperfine ${HF_ARGS[*]:0:5} (${#NAMES[@]} commands)"
hyperfine "${HF_ARGS[@]}" --export-json "$RESULT_JSON"
log "hyperfine results: $RESULT_JSON"

# ---------------------------------------------------------------- (e) table
python3 - "$RESULT_JSON" "$PEERS_ONLY" "$TARGET_FERRY_MS" "$TARGET_AJV_RATIO" "$TARGET_CJS_RATIO" "$CHECK_TARGETS" <<'EOF'
import json, sys

path, peers_only, t_ms, t_ajv, t_cjs, check_targets = sys.argv[1:]
peers_only, check_targets = peers_only == "1", check_targets == "1"
t_ms, t_ajv, t_cjs = float(t_ms), float(t_ajv), float(t_cjs)
results = json.load(open(path))["results"]
names = (["ferry (full repo)", "ferry (manifest only)"] if not peers_only else []) + ["ajv-cli", "check-jsonschema"]
median = {n: r["median"] * 1000 for n, r in zip(names, results)}
stddev = {n: (r.get("stddev") or 0) * 1000 for n, r in zip(names, results)}

def ms(v):
    return "%.1f ms" % v if v < 100 else "%.0f ms" % v

print()
print("%-24s %10s %9s   %s" % ("tool", "median", "stddev", "relative"))
ferry = median.get("ferry (full repo)")
small = median.get("ferry (manifest only)")
for n in names:
    rel = ""
    if ferry and n in ("ajv-cli", "check-jsonschema"):
        rel = "%.1fx slower than ferry (%.1fx like-for-like)" % (median[n] / ferry, median[n] / small)
    elif n == "ferry (manifest only)":
        rel = "like-for-like: manifest.json + small environments"
    elif n == "ferry (full repo)":
        rel = "manifest.json + 3 environments with apps"
    print("%-24s %10s %9s   %s" % (n, ms(median[n]), ms(stddev[n]), rel))
print()
print("(ajv-cli and check-jsonschema validate manifest.json only.)")

if peers_only:
    print("Targets not evaluated: --peers-only.")
    sys.exit(0)

ratio_ajv, ratio_cjs = median["ajv-cli"] / ferry, median["check-jsonschema"] / ferry
like_ajv, like_cjs = median["ajv-cli"] / small, median["check-jsonschema"] / small
checks = [
    ("ferry median <= %g ms" % t_ms, ms(ferry), ferry <= t_ms, ms(small), small <= t_ms),
    ("ferry >= %gx faster than ajv-cli" % t_ajv, "%.1fx" % ratio_ajv, ratio_ajv >= t_ajv, "%.1fx" % like_ajv, like_ajv >= t_ajv),
    ("ferry >= %gx faster than check-jsonschema" % t_cjs, "%.1fx" % ratio_cjs, ratio_cjs >= t_cjs, "%.1fx" % like_cjs, like_cjs >= t_cjs),
]
def verdict(ok):
    return "PASS" if ok else "FAIL"
print()
print("%-44s %-16s %s" % ("target", "full repo", "like-for-like (manifest only)"))
for what, got, ok, got_small, ok_small in checks:
    print("%-44s %-16s %s" % (what, "%s %s" % (got, verdict(ok)), "%s %s" % (got_small, verdict(ok_small))))
all_ok = all(c[2] for c in checks)
all_small = all(c[4] for c in checks)
print()
print("Full repo (ferry checks 4 files, the peers 1): %s." % ("all targets hold" if all_ok else "targets do NOT all hold"))
print("Like-for-like (manifest.json + small environments): %s." % ("all targets hold" if all_small else "targets do NOT all hold"))
# --check-targets gates on the full-repo figures (the stricter reading).
sys.exit(2 if check_targets and not all_ok else 0)
EOF
