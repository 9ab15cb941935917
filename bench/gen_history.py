#!/usr/bin/env python3
"""Give a bare git repository a deployment branch with a long bump history, fast.

Reads a directory tree (for the benchmarks: the output of bench/gen_repo.py plus
schemas/) and writes, deterministically (same input and arguments -> the same
objects and commit ids), one pack into REPO/objects/pack holding:

  dev       COMMITS commits: the first holds every file under DIR; each later
            one is a bump: it changes one artifact's version, url and sha256 in
            manifest.json, as an in-place text edit (the rest of the file is
            byte-identical), with a message laid out like ferry's (Ferry-* trailers)
  staging   the first commit
  prod      the first commit

It prints the branches as `SHA refs/heads/NAME` lines on stdout, for
`git update-ref`; it does not touch refs itself. Bumped apps are drawn
pseudo-randomly (--seed); each bump raises the patch number (1.2.3+build.4 ->
1.2.4+build.5), so every pin only ever goes up. --exclude APP keeps an app out
of the history.

Why not `git fast-import`: every commit has its own ~3 MB manifest blob, and
fast-import computes each blob's delta by diffing it against the previous one
(~20 ms a blob: ~2 minutes for 5,000). Here the deltas are known (one artifact's
lines changed), so they are written directly, and the pack index is written
too, so that no `git index-pack` re-hashes 5,000 x 3 MB. Layout, as after a
`git gc`: the tip's manifest is stored whole, each older manifest is a delta
against its successor, with chains of at most --depth (50) deltas; commits,
trees and other files are stored whole. The only full-size work is one SHA-1
of every manifest version (~15 s for 5,000 x 2.8 MB in all).

  python3 bench/gen_history.py DIR REPO.git --commits 5000 | git -C REPO.git update-ref --stdin ...

(bench/bump.sh does this, then checks the result with git.)
Python 3 standard library only.
"""

import argparse
import hashlib
import json
import os
import random
import re
import struct
import sys
import zlib

AUTHOR = b"ferry-bench <ferry-bench@example.com>"
START_TIME = 1700000000  # 2023-11-14T22:13:20Z; each commit 10 minutes later
STEP = 600
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\+build\.(\d+))?$")
OBJ_COMMIT, OBJ_TREE, OBJ_BLOB, OBJ_OFS_DELTA = 1, 2, 3, 6
TYPE_NAME = {OBJ_COMMIT: b"commit", OBJ_TREE: b"tree", OBJ_BLOB: b"blob"}


def tree_files(root):
    """Every regular file under root, as (relative posix path, bytes), sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as f:
                out.append((rel, f.read()))
    out.sort()
    return out


def next_version(version):
    m = SEMVER.match(version)
    if not m:
        raise SystemExit("gen_history.py: unexpected version %r" % version)
    major, minor, patch, build = m.groups()
    new = "%s.%s.%d" % (major, minor, int(patch) + 1)
    if build is not None:
        new += "+build.%d" % (int(build) + 1)
    return new


def chunk_bounds(buf, name):
    """(start, end) of the artifact's object in the manifest text (indent=2 layout)."""
    key = b'\n    "' + name.encode() + b'": {'
    start = buf.find(key)
    if start < 0:
        raise SystemExit("gen_history.py: artifact %s not found in manifest.json" % name)
    end = buf.find(b"\n    }", start + 1)
    if end < 0:
        raise SystemExit("gen_history.py: end of artifact %s not found" % name)
    return start, end


def object_id(kind, data):
    h = hashlib.sha1(b"%s %d\0" % (TYPE_NAME[kind], len(data)))
    h.update(data)
    return h.digest()


def varint(n):
    """Size varint of the delta format (7 bits a byte, little endian)."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def delta_copy(offset, size):
    """A copy instruction (size <= 0xFFFFFF, offset < 2^32)."""
    assert 0 < size <= 0xFFFFFF and 0 <= offset < 1 << 32
    cmd, args = 0x80, bytearray()
    for i in range(4):
        byte = (offset >> (8 * i)) & 0xFF
        if byte:
            cmd |= 1 << i
            args.append(byte)
    for i in range(3):
        byte = (size >> (8 * i)) & 0xFF
        if byte:
            cmd |= 1 << (4 + i)
            args.append(byte)
    return bytes([cmd]) + bytes(args)


def splice_delta(base_len, start, end, insert):
    """Delta turning base into base[:start] + insert + base[end:]."""
    out = [varint(base_len), varint(start + len(insert) + base_len - end)]
    pos = 0
    while pos < start:
        size = min(start - pos, 0xFFFFFF)
        out.append(delta_copy(pos, size))
        pos += size
    for i in range(0, len(insert), 127):
        piece = insert[i:i + 127]
        out.append(bytes([len(piece)]) + piece)
    pos = end
    while pos < base_len:
        size = min(base_len - pos, 0xFFFFFF)
        out.append(delta_copy(pos, size))
        pos += size
    return b"".join(out)


def pack_header(kind, size):
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def ofs_encoding(distance):
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.append(0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(reversed(out))


class PackWriter:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.sha = hashlib.sha1()
        self.offset = 0
        self.entries = []  # (oid, crc32, offset)

    def _write(self, data):
        self.f.write(data)
        self.sha.update(data)
        self.offset += len(data)

    def start(self, count):
        self._write(b"PACK" + struct.pack(">II", 2, count))

    def whole(self, oid, kind, data, size=None, compressed=None):
        """An object stored whole; pass size and compressed if already deflated."""
        offset = self.offset
        if compressed is None:
            size, compressed = len(data), zlib.compress(data)
        raw = pack_header(kind, size) + compressed
        self._write(raw)
        self.entries.append((oid, zlib.crc32(raw), offset))
        return offset

    def delta(self, oid, base_offset, delta):
        offset = self.offset
        raw = pack_header(OBJ_OFS_DELTA, len(delta)) + ofs_encoding(offset - base_offset) + zlib.compress(delta)
        self._write(raw)
        self.entries.append((oid, zlib.crc32(raw), offset))
        return offset

    def finish(self):
        """Write the trailer and the .idx (version 2); returns the pack's hex name."""
        checksum = self.sha.digest()
        self.f.write(checksum)
        self.f.close()
        entries = sorted(self.entries)
        if len({e[0] for e in entries}) != len(entries):
            raise SystemExit("gen_history.py: internal error: duplicate object in the pack")
        if self.offset >= 1 << 31:
            raise SystemExit("gen_history.py: pack larger than 2 GiB is not supported")
        fanout, counts = [], [0] * 256
        for oid, _, _ in entries:
            counts[oid[0]] += 1
        total = 0
        for c in counts:
            total += c
            fanout.append(total)
        idx = bytearray(b"\377tOc" + struct.pack(">I", 2))
        idx += struct.pack(">256I", *fanout)
        idx += b"".join(e[0] for e in entries)
        idx += b"".join(struct.pack(">I", e[1]) for e in entries)
        idx += b"".join(struct.pack(">I", e[2]) for e in entries)
        idx += checksum
        idx += hashlib.sha1(idx).digest()
        return checksum, bytes(idx)


def build_tree(files, blob_ids):
    """Tree objects for a file list: returns (root id, [(id, data)] of every tree)."""
    root = {}
    for path in files:
        node = root
        parts = path.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = path
    trees = []

    def encode(node):
        entries = []
        for name, child in node.items():
            if isinstance(child, dict):
                entries.append((name + "/", b"40000 %s\0" % name.encode() + encode(child)))
            else:
                entries.append((name, b"100644 %s\0" % name.encode() + blob_ids[child]))
        data = b"".join(e for _, e in sorted(entries))
        oid = object_id(OBJ_TREE, data)
        trees.append((oid, data))
        return oid

    return encode(root), trees


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="the first commit's files (manifest.json, environments/, ...)")
    parser.add_argument("repo", help="an existing bare repository: the pack goes to REPO/objects/pack")
    parser.add_argument("--commits", type=int, default=5000, metavar="N",
                        help="commits on dev, the first included (default: 5000)")
    parser.add_argument("--seed", type=int, default=1, help="which apps get bumped (default: 1)")
    parser.add_argument("--exclude", action="append", default=[], metavar="APP",
                        help="never bump this app (repeatable)")
    parser.add_argument("--depth", type=int, default=50, help="longest delta chain (default: 50)")
    args = parser.parse_args(argv)
    if args.commits < 1:
        parser.error("--commits must be >= 1")
    pack_dir = os.path.join(args.repo, "objects", "pack")
    if not os.path.isdir(pack_dir):
        parser.error("%s is not a bare git repository (no objects/pack)" % args.repo)

    files = tree_files(args.dir)
    contents = dict(files)
    if "manifest.json" not in contents:
        parser.error("%s has no manifest.json" % args.dir)
    original = contents["manifest.json"]
    artifacts = json.loads(original)["artifacts"]
    candidates = sorted(a for a in artifacts if a not in set(args.exclude))
    if args.commits > 1 and not candidates:
        parser.error("no artifact left to bump")

    # Forward: the bumps, oldest first, ending with buf = the tip's manifest.
    rng = random.Random(args.seed)
    current = {a: dict(v) for a, v in artifacts.items()}
    buf = bytearray(original)
    bumps = []  # (app, old chunk, new chunk, old version, new version, new url, new sha256)
    for _ in range(args.commits - 1):
        app = rng.choice(candidates)
        pin = current[app]
        new_version = next_version(pin["version"])
        new_sha = hashlib.sha256(("%s@%s" % (app, new_version)).encode()).hexdigest()
        start, end = chunk_bounds(buf, app)
        old_chunk = bytes(buf[start:end])
        new_chunk = (old_chunk.replace(pin["version"].encode(), new_version.encode())
                     .replace(pin["sha256"].encode(), new_sha.encode()))
        buf[start:end] = new_chunk
        new_url = pin["url"].replace(pin["version"], new_version)
        bumps.append((app, old_chunk, new_chunk, pin["version"], new_version, new_url, new_sha))
        pin["version"], pin["url"], pin["sha256"] = new_version, new_url, new_sha

    # Backward: manifest k (k = N-1 .. 0) is either whole (the tip, and
    # whenever the chain would exceed --depth) or a delta against manifest k+1.
    n = args.commits
    manifest_ids = [None] * n
    manifest_objs = [None] * n  # ("whole", compressed) or ("delta", delta bytes)
    depth = 0
    for k in range(n - 1, -1, -1):
        manifest_ids[k] = object_id(OBJ_BLOB, buf)
        if k == n - 1 or depth >= args.depth:
            # The tip at the default level (it is what gets read); older bases fast.
            level = zlib.Z_DEFAULT_COMPRESSION if k == n - 1 else 1
            manifest_objs[k] = ("whole", len(buf), zlib.compress(buf, level))
            depth = 0
        else:
            manifest_objs[k] = ("delta", len(buf), delta_k)
            depth += 1
        if k > 0:
            app, old_chunk, new_chunk = bumps[k - 1][:3]
            start, end = chunk_bounds(buf, app)
            if buf[start:end] != new_chunk:
                raise SystemExit("gen_history.py: internal error undoing bump %d" % k)
            # Manifest k-1 = manifest k with the chunk restored.
            delta_k = splice_delta(len(buf), start, end, old_chunk)
            buf[start:end] = old_chunk
    if bytes(buf) != original:
        raise SystemExit("gen_history.py: internal error: history does not unwind to the original")

    blob_ids = {p: object_id(OBJ_BLOB, c) for p, c in files}
    root_id, first_trees = build_tree([p for p, _ in files], blob_ids)
    root_entries = dict(first_trees)[root_id]
    first_manifest = b"100644 manifest.json\0" + blob_ids["manifest.json"]
    if first_manifest not in root_entries:
        raise SystemExit("gen_history.py: manifest.json must be at the top of DIR")

    # Commits and their root trees (only manifest.json changes).
    root_trees, commits, parent = [], [], None
    for k in range(n):
        if k == 0:
            tree_id, tree_data = root_id, root_entries
        else:
            tree_data = root_entries.replace(first_manifest, b"100644 manifest.json\0" + manifest_ids[k])
            tree_id = object_id(OBJ_TREE, tree_data)
            root_trees.append((tree_id, tree_data))
        if k == 0:
            message = b"Deployment repository: dev, staging, prod\n"
        else:
            # The layout of ferry's own bump commits (templates/bump.hbs).
            app, _, _, old_version, new_version, url, sha = bumps[k - 1]
            message = ("dev: bump %s %s \u2192 %s\n\n%s %s\n  url:    %s\n  sha256: %s\n\n"
                       "Ferry-App: %s\nFerry-Version: %s\nFerry-Previous: %s\n"
                       % (app, old_version, new_version, app, new_version, url, sha,
                          app, new_version, old_version)).encode()
        when = b"%d +0000" % (START_TIME + STEP * k)
        data = b"tree %s\n" % tree_id.hex().encode()
        if parent is not None:
            data += b"parent %s\n" % parent.hex().encode()
        data += b"author %s %s\ncommitter %s %s\n\n" % (AUTHOR, when, AUTHOR, when) + message
        parent = object_id(OBJ_COMMIT, data)
        commits.append((parent, data))

    # The pack, in git's order: commits newest first, trees, blobs (tip first).
    other_blobs = [(blob_ids[p], c) for p, c in files if p != "manifest.json"]
    count = len(commits) + len(root_trees) + len(first_trees) + n + len(other_blobs)
    tmp = os.path.join(pack_dir, "tmp_gen_history_%d.pack" % os.getpid())
    pack = PackWriter(tmp)
    pack.start(count)
    for oid, data in reversed(commits):
        pack.whole(oid, OBJ_COMMIT, data)
    for oid, data in reversed(root_trees):
        pack.whole(oid, OBJ_TREE, data)
    for oid, data in first_trees:
        pack.whole(oid, OBJ_TREE, data)
    prev_offset = None
    for k in range(n - 1, -1, -1):
        kind, size, payload = manifest_objs[k]
        if kind == "whole":
            prev_offset = pack.whole(manifest_ids[k], OBJ_BLOB, None, size=size, compressed=payload)
        else:
            prev_offset = pack.delta(manifest_ids[k], prev_offset, payload)
    for oid, data in other_blobs:
        pack.whole(oid, OBJ_BLOB, data)
    if len(pack.entries) != count:
        raise SystemExit("gen_history.py: internal error: %d objects, announced %d" % (len(pack.entries), count))
    checksum, idx = pack.finish()
    name = os.path.join(pack_dir, "pack-" + checksum.hex())
    with open(name + ".idx.tmp", "wb") as f:
        f.write(idx)
    os.rename(tmp, name + ".pack")
    os.rename(name + ".idx.tmp", name + ".idx")

    root_commit = commits[0][0].hex()
    print("%s refs/heads/dev" % commits[-1][0].hex())
    print("%s refs/heads/staging" % root_commit)
    print("%s refs/heads/prod" % root_commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
