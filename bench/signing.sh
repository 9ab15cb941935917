#!/usr/bin/env bash
# bench/signing.sh: what checking a commit's signature adds to an agent's reconcile.
#
#   A dev branch whose tip ferry signed (FERRY_SIGNING_KEY, ed25519), already deployed: one
#   reconcile (`ferry agent --once` on the unchanged tip, a repository on a path) without and
#   with `--trusted-keys` (an allowed_signers list of 20 keys, the signer last), timed by
#   hyperfine, and `git verify-commit` of the same commit (the peer: git with ssh-keygen).
#   The same again with a tip ferry signed through gpg (git's `commit.gpgsign`, an ed25519
#   OpenPGP key, armored among the 20 trusted keys), against `git verify-commit` running gpg.
#   Target: the check adds at most 5 ms to a reconcile.
#
#   bench/signing.sh                 build (cargo build --release), measure
#   FERRY_BIN=/path/to/ferry bench/signing.sh
#   options: --runs N (hyperfine runs per command, 50)
#
# Needs git, ssh-keygen, gpg, tar and hyperfine (installed with apt-get when missing).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_DIR=${FERRY_BENCH_CACHE:-$SCRIPT_DIR/.cache}
# shellcheck source=bench/common.sh
source "$SCRIPT_DIR/common.sh"
RUNS=50
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for tool in git ssh-keygen gpg tar python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed"
done
init_cache
ensure_hyperfine
build_ferry
FERRY_BIN=$(cd "$(dirname "$FERRY_BIN")" && pwd)/$(basename "$FERRY_BIN")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
export HOME=$WORK XDG_CACHE_HOME=$WORK/cache GIT_CONFIG_NOSYSTEM=1 USER=bench
cd "$WORK"

log "a signed dev branch, deployed"
"$FERRY_BIN" init --remote "$WORK/deploy.git" --envs dev,staging,prod >/dev/null 2>&1
mkdir -p pkg && echo "web 1.0.0" > pkg/index.html && tar czf web.tgz -C pkg .
: > allowed_signers
for i in $(seq 19); do
    ssh-keygen -q -t ed25519 -N '' -C "other$i" -f "other$i"
    echo "other$i@example.com $(cut -d' ' -f1,2 "other$i.pub")" >> allowed_signers
done
ssh-keygen -q -t ed25519 -N '' -C ci -f ci
echo "ci@example.com $(cut -d' ' -f1,2 ci.pub)" >> allowed_signers
git clone -q -b dev deploy.git work
python3 - work/environments/dev.json <<'PY'
import json, sys
env = json.load(open(sys.argv[1]))
env["apps"] = {"web": {"deployment_path": "/srv/web"}}
json.dump(env, open(sys.argv[1], "w"), indent=2)
PY
git -C work -c gpg.format=ssh -c user.signingkey="$WORK/ci" commit -q -S -am "dev: where web runs"
git -C work push -q origin dev
FERRY_SIGNING_KEY=$WORK/ci "$FERRY_BIN" bump web 1.0.0 --env dev --add --remote "$WORK/deploy.git" \
    --url "file://$WORK/web.tgz" --artifact web.tgz >/dev/null 2>&1
git --git-dir deploy.git -c gpg.ssh.allowedSignersFile="$WORK/allowed_signers" verify-commit dev 2>/dev/null \
    || die "git does not verify the signed tip"
mkdir -p root
AGENT=("$FERRY_BIN" agent --env dev --once --remote "$WORK/deploy.git" --host bench --root "$WORK/root" --state-dir "$WORK/state")
"${AGENT[@]}" --trusted-keys allowed_signers >/dev/null 2>&1 || die "the agent did not deploy the signed tip"

log "the same, signed with OpenPGP (gpg as git's commit.gpgsign says)"
export GNUPGHOME=$WORK/gnupg
mkdir -m 700 -p "$GNUPGHOME"
gpg --batch --passphrase '' --quick-gen-key 'CI <ci@example.com>' ed25519 sign never 2>/dev/null
FPR=$(gpg --with-colons --list-keys ci@example.com | awk -F: '/^fpr/ {print $10; exit}')
head -n 19 allowed_signers > trusted_pgp
gpg --armor --export "$FPR" >> trusted_pgp
"$FERRY_BIN" init --remote "$WORK/deploy-pgp.git" --envs dev >/dev/null 2>&1
git clone -q -b dev deploy-pgp.git work-pgp
cp work/environments/dev.json work-pgp/environments/dev.json
git -C work-pgp commit -q -am "dev: where web runs"
git -C work-pgp push -q origin dev
git config --global commit.gpgsign true
git config --global user.signingkey "$FPR"
"$FERRY_BIN" bump web 1.0.0 --env dev --add --remote "$WORK/deploy-pgp.git" \
    --url "file://$WORK/web.tgz" --artifact web.tgz >/dev/null 2>&1
git config --global --unset commit.gpgsign
git --git-dir deploy-pgp.git verify-commit dev 2>/dev/null || die "git does not verify the gpg-signed tip"
mkdir -p root-pgp
AGENT_PGP=("$FERRY_BIN" agent --env dev --once --remote "$WORK/deploy-pgp.git" --host bench --root "$WORK/root-pgp" --state-dir "$WORK/state-pgp")
said=$("${AGENT_PGP[@]}" --trusted-keys trusted_pgp 2>&1) || die "the agent did not deploy the gpg-signed tip: $said"

log "timing $RUNS reconciles of each"
hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$WORK/times.json" \
    -n plain "${AGENT[*]}" \
    -n trusted "${AGENT[*]} --trusted-keys $WORK/allowed_signers" \
    -n "git verify-commit" "git --git-dir $WORK/deploy.git -c gpg.ssh.allowedSignersFile=$WORK/allowed_signers verify-commit dev" \
    -n "plain (openpgp)" "${AGENT_PGP[*]}" \
    -n "trusted (openpgp)" "${AGENT_PGP[*]} --trusted-keys $WORK/trusted_pgp" \
    -n "git verify-commit (gpg)" "git --git-dir $WORK/deploy-pgp.git verify-commit dev" \
    >/dev/null 2>&1
python3 - "$WORK/times.json" <<'EOF'
import json, statistics, sys
results = {r["command"]: r["times"] for r in json.load(open(sys.argv[1]))["results"]}
med = {name: statistics.median(times) * 1000 for name, times in results.items()}
added = med["trusted"] - med["plain"]
print(f"{'measure':<44} {'figure':>10}  target")
print(f"{'reconcile, unchanged tip (median)':<44} {med['plain']:>8.2f} ms")
print(f"{'reconcile with --trusted-keys (median)':<44} {med['trusted']:>8.2f} ms")
print(f"{'added by the signature check':<44} {added:>8.2f} ms  <= 5 ms  {'PASS' if added <= 5 else 'FAIL'}")
print(f"{'git verify-commit (median)':<44} {med['git verify-commit']:>8.2f} ms")
print(f"{'check added ÷ git verify-commit':<44} {added / med['git verify-commit']:>9.2f}x")
pgp = med["trusted (openpgp)"] - med["plain (openpgp)"]
print(f"{'OpenPGP: reconcile, unchanged tip (median)':<44} {med['plain (openpgp)']:>8.2f} ms")
print(f"{'OpenPGP: reconcile with --trusted-keys':<44} {med['trusted (openpgp)']:>8.2f} ms")
print(f"{'OpenPGP: added by the signature check':<44} {pgp:>8.2f} ms  <= 5 ms  {'PASS' if pgp <= 5 else 'FAIL'}")
print(f"{'git verify-commit with gpg (median)':<44} {med['git verify-commit (gpg)']:>8.2f} ms")
print(f"{'check added ÷ git verify-commit with gpg':<44} {pgp / med['git verify-commit (gpg)']:>9.2f}x")
EOF
