#!/usr/bin/env bash
# bench/bump_reset.sh: put a benchmark repository back to its starting state
# (hyperfine --prepare of bench/bump.sh).
#
#   bench/bump_reset.sh REPO.git SHA [DIR_TO_DELETE...]
#
# Points refs/heads/dev at SHA and deletes every object written since the
# repository was set up: loose objects, and packs without a .keep file (the
# generated history's packs have one); also receive-pack's leftovers. So each
# timed bump writes its blob, tree and commit afresh (git and libgit2 skip
# writing an object that already exists, which would flatter the second run).
# Then deletes the given directories (a cold ferry cache, a clone's target).
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: bench/bump_reset.sh REPO.git SHA [DIR...]" >&2; exit 2; }
repo=$1 sha=$2
shift 2
[ -f "$repo/HEAD" ] && [ -d "$repo/objects/pack" ] || { echo "bump_reset.sh: $repo is not a bare repository" >&2; exit 1; }

git --git-dir="$repo" update-ref refs/heads/dev "$sha"
shopt -s nullglob
rm -rf "$repo"/objects/[0-9a-f][0-9a-f] "$repo"/objects/incoming-* "$repo"/objects/pack/tmp_*
for pack in "$repo"/objects/pack/pack-*.pack; do
    base=${pack%.pack}
    [ -e "$base.keep" ] || rm -f "$base".{pack,idx,rev,bitmap,promisor,mtimes}
done
rm -f "$repo"/objects/info/packs
[ $# -eq 0 ] || rm -rf -- "$@"
