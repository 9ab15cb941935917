#!/usr/bin/env bash
# bench/bump_floor.sh: the floor for `ferry bump`: the same one-pin commit made
# with git plumbing on a local bare repository (no validation, no templates).
#
#   bench/bump_floor.sh REPO.git APP OLD_VERSION NEW_VERSION OLD_SHA256 NEW_SHA256
#
# In the branch dev's manifest.json it replaces, inside APP's object only, every
# OLD_VERSION by NEW_VERSION (the version and the url) and OLD_SHA256 by
# NEW_SHA256, then: hash-object -w, read-tree + update-index --cacheinfo into
# a temporary index, write-tree, commit-tree -p dev, and
# update-ref refs/heads/dev NEW OLD (compare-and-swap, like ferry).
# The versions must not contain `|`; sed sees them as regexes, where `.` and
# `+` match themselves closely enough for semantic versions (`+` is literal in
# a basic regex). The commit identity comes from GIT_AUTHOR_* / GIT_COMMITTER_*.
set -euo pipefail

[ $# -eq 6 ] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2; }
export GIT_DIR=$1
app=$2 old_version=$3 new_version=$4 old_sha=$5 new_sha=$6

old=$(git rev-parse --verify refs/heads/dev^{commit})
blob=$(git cat-file blob "$old:manifest.json" |
    sed -e "/^    \"$app\": {\$/,/^    }/{s|$old_version|$new_version|g;s|$old_sha|$new_sha|;}" |
    git hash-object -w --stdin)
GIT_INDEX_FILE=$(mktemp -u "${TMPDIR:-/tmp}/ferry-floor-index.XXXXXX")
export GIT_INDEX_FILE
trap 'rm -f "$GIT_INDEX_FILE"' EXIT
git read-tree "$old"
git update-index --cacheinfo "100644,$blob,manifest.json"
tree=$(git write-tree)
new=$(printf 'dev: bump %s %s → %s\n' "$app" "$old_version" "$new_version" | git commit-tree "$tree" -p "$old")
git update-ref refs/heads/dev "$new" "$old"
