#!/usr/bin/env python3
"""The measurements of bench/agent.sh (run by it: see its header for what and why)."""
import hashlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

BENCH = sys.argv[1]
WORK = os.environ["FERRY_BENCH_WORK"]
FERRY = os.environ["FERRY"]
FETCH_MIB = int(os.environ["FETCH_MIB"])
FILES = int(os.environ["FILES"])
# Sections to run (all when empty), runs of each timed one, and a command the `--once` agents
# run under (`perf record -g -o FILE`, for a profile).
ONLY = [s for s in os.environ.get("ONLY", "").split(",") if s]
RUNS = int(os.environ.get("RUNS", "3"))
WRAP = os.environ.get("FERRY_BENCH_WRAP", "").split()


def want(section):
    return not ONLY or section in ONLY

SRV = os.path.join(WORK, "srv")
REPO = os.path.join(SRV, "deploy.git")
ART = os.path.join(WORK, "artifacts")
LOG = os.path.join(WORK, "requests.log")
os.makedirs(SRV)
os.makedirs(ART)


def run(*args, env=None, check=True):
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        sys.exit(f"error: {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r


def ferry(*args, env=None, check=True):
    return run(FERRY, *args, env=env, check=check)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tgz(name, version, extra=None):
    pkg = os.path.join(WORK, f"pkg-{name}-{version}")
    os.makedirs(pkg, exist_ok=True)
    with open(os.path.join(pkg, "index.html"), "w") as f:
        f.write(f"{name} {version}\n")
    if extra:
        extra(pkg)
    path = os.path.join(ART, f"{name}-{version}.tgz")
    run("tar", "czf", path, "-C", pkg, ".")
    return path


server = subprocess.Popen([sys.executable, os.path.join(BENCH, "..", "tests", "fixtures", "git_http.py"),
                           SRV, "--files", ART, "--log", LOG], stdout=subprocess.PIPE, text=True)
PORT = int(server.stdout.readline())
URL = f"http://127.0.0.1:{PORT}/deploy.git"
FILES_URL = f"http://127.0.0.1:{PORT}/files"
TRIGGER_PORT = None


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


try:
    ferry("init", "--remote", REPO, "--envs", "dev,prod", "-q")
    run("git", "config", "--file", os.path.join(REPO, "config"), "http.receivepack", "true")
    web = tgz("web", "1.0.0")
    ferry("bump", "web", "1.0.0", "--env", "dev", "--add", "--remote", REPO,
          "--url", f"{FILES_URL}/web-1.0.0.tgz", "--artifact", web)
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    TRIGGER_PORT = s.getsockname()[1]
    s.close()
    work = os.path.join(WORK, "work")
    run("git", "clone", "-q", "-b", "dev", REPO, work)
    env_file = os.path.join(work, "environments/dev.json")
    env = json.load(open(env_file))
    env["apps"] = {"web": {"deployment_path": "/srv/web"}, "big": {"deployment_path": "/srv/big"},
                   "many": {"deployment_path": "/srv/many"}}
    env["agent"] = {"interval": "1h", "trigger_urls": [f"http://127.0.0.1:{TRIGGER_PORT}/trigger"]}
    json.dump(env, open(env_file, "w"), indent=2)
    run("git", "-C", work, "commit", "-qam", "dev: where the apps run")
    run("git", "-C", work, "push", "-q", "origin", "dev")

    def agent(name, *extra, once=False):
        state = os.path.join(WORK, f"state-{name}")
        root = os.path.join(WORK, f"root-{name}")
        os.makedirs(root, exist_ok=True)  # the agent refuses a root that does not exist
        args = [FERRY, "agent", "--env", "dev", "--remote", URL, "--root",
                root, "--state-dir", state, "--no-report", *extra]
        if once:
            args.append("--once")
            return subprocess.run(WRAP + args, capture_output=True, text=True,
                                  env={**os.environ, "FERRY_LOG": "ferry=info"})
        return subprocess.Popen(args, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def live(name, app="web"):
        try:
            return open(os.path.join(WORK, f"root-{name}", "srv", app, "index.html")).read()
        except OSError:
            return None

    def wait_for(what, timeout=60):
        start = time.monotonic()
        while not what():
            if time.monotonic() - start > timeout:
                sys.exit("error: timed out")
            time.sleep(0.01)
        return time.monotonic() - start

    results = []

    # --- idle
    if want("idle"):
        idle = agent("idle", "--interval", "1s")
        wait_for(lambda: live("idle") == "web 1.0.0\n")
        time.sleep(1.5)
        open(LOG, "w").close()
        time.sleep(10)
        requests = open(LOG).read().splitlines()
        rss = 0
        for line in open(f"/proc/{idle.pid}/status"):
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        stop(idle)
        kinds = {}
        for r in requests:
            kind = " ".join(r.split()[:2]).split("?")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        other = sum(n for k, n in kinds.items() if k != "GET /deploy.git/info/refs")
        print(f"idle, 10 s at --interval 1s: {len(requests)} requests ({kinds}); resident memory {rss:.1f} MiB")
        results.append(("idle: only ref advertisements", other == 0 and len(requests) <= 12, f"{len(requests)} requests, {other} other"))
        results.append(("idle: resident memory <= 32 MiB", rss <= 32, f"{rss:.1f} MiB"))

    # --- merge to deployed, polling
    if want("polling"):
        poll = agent("poll", "--interval", "5s")
        wait_for(lambda: live("poll") == "web 1.0.0\n")
        times = []
        for version in ["1.0.1", "1.0.2", "1.0.3"]:
            path = tgz("web", version)
            ferry("bump", "web", version, "--env", "dev", "--remote", REPO,
                  "--url", f"{FILES_URL}/web-{version}.tgz", "--artifact", path)
            times.append(wait_for(lambda v=version: live("poll") == f"web {v}\n"))
        stop(poll)
        polled = statistics.median(times)
        print(f"merge to deployed, polling every 5 s: median {polled:.2f} s ({', '.join(f'{t:.2f}' for t in times)})")
        results.append(("polling: <= interval + 2 s", max(times) <= 7, f"worst {max(times):.2f} s"))

    # --- merge to deployed, triggered
    if want("triggered"):
        trig = agent("trig", "--listen", f"127.0.0.1:{TRIGGER_PORT}")
        wait_for(lambda: live("trig") == ("web 1.0.3\n" if want("polling") else "web 1.0.0\n"))
        times = []
        for version in ["1.0.4", "1.0.5", "1.0.6"]:
            path = tgz("web", version)
            ferry("bump", "web", version, "--env", "dev", "--remote", REPO,
                  "--url", f"{FILES_URL}/web-{version}.tgz", "--artifact", path)
            times.append(wait_for(lambda v=version: live("trig") == f"web {v}\n"))
        stop(trig)
        print(f"merge to deployed, triggered: median {statistics.median(times):.2f} s ({', '.join(f'{t:.2f}' for t in times)})")
        results.append(("triggered: <= 2 s", max(times) <= 2, f"worst {max(times):.2f} s"))

    # --- fetch + verify of a big artifact
    if want("fetch"):
        big = os.path.join(ART, "big-1.0.0.bin")
        with open(big, "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(FETCH_MIB):
                f.write(hashlib.sha256(block + i.to_bytes(4, "big")).digest() * 32768)
        digest = sha256(big)
        ferry("bump", "big", "1.0.0", "--env", "dev", "--add", "--remote", REPO,
              "--url", f"{FILES_URL}/big-1.0.0.bin", "--sha256", digest)
        curl, ours = [], []
        for i in range(RUNS):
            start = time.monotonic()
            out = run("bash", "-c", f"curl -s {FILES_URL}/big-1.0.0.bin | openssl dgst -sha256").stdout
            curl.append(time.monotonic() - start)
            assert digest in out, out
            r = agent(f"fetch{i}", once=True)
            line = next((l for l in r.stderr.splitlines() if "fetched and verified" in l and "big" in l), None)
            if line is None:
                sys.exit(f"error: no fetch timing in the agent's log:\n{r.stderr[-2000:]}")
            ours.append(float(re.search(r"seconds=([\d.]+)", line).group(1)))
            run("rm", "-rf", os.path.join(WORK, f"state-fetch{i}"), os.path.join(WORK, f"root-fetch{i}"))
        c, o = statistics.median(curl), statistics.median(ours)
        mib = FETCH_MIB
        print(f"fetch + verify {mib} MiB: ferry {o:.2f} s ({mib / o:.0f} MiB/s), curl | openssl {c:.2f} s ({mib / c:.0f} MiB/s): {c / o:.2f}x"
              f" (ferry {', '.join(f'{t:.3f}' for t in ours)}; curl {', '.join(f'{t:.3f}' for t in curl)})")
        results.append(("fetch: >= 0.9x curl | openssl", c / o >= 0.9, f"{c / o:.2f}x"))
        os.remove(big)

    # --- unpack
    if want("unpack"):
        def fill(pkg):
            data = os.path.join(pkg, "data")
            os.makedirs(data, exist_ok=True)
            seed = os.urandom(64 << 10)
            for i in range(FILES):
                with open(os.path.join(data, f"{i:05d}"), "wb") as f:
                    f.write((seed[i % 1000:] + seed[: i % 1000]) + (b"%d\n" % i) * 4000)
        many = tgz("many", "1.0.0", fill)
        ferry("bump", "many", "1.0.0", "--env", "dev", "--add", "--remote", REPO,
              "--url", f"{FILES_URL}/many-1.0.0.tgz", "--artifact", many)
        tar, ours = [], []
        for i in range(RUNS):
            out = os.path.join(WORK, f"tar-{i}")
            os.makedirs(out)
            start = time.monotonic()
            run("tar", "-xzf", many, "-C", out)
            tar.append(time.monotonic() - start)
            run("rm", "-rf", out)
            r = agent(f"unpack{i}", once=True)
            line = next((l for l in r.stderr.splitlines() if "unpacked" in l and "many" in l), None)
            if line is None:
                sys.exit(f"error: no unpack timing in the agent's log:\n{r.stderr[-2000:]}")
            ours.append(float(re.search(r"seconds=([\d.]+)", line).group(1)))
            run("rm", "-rf", os.path.join(WORK, f"state-unpack{i}"), os.path.join(WORK, f"root-unpack{i}"))
        t, o = statistics.median(tar), statistics.median(ours)
        print(f"unpack {FILES} files: ferry {o:.2f} s, tar -xzf {t:.2f} s: {t / o:.2f}x")
        results.append(("unpack: >= 0.8x tar -xzf", t / o >= 0.8, f"{t / o:.2f}x"))

    print()
    for what, ok, figure in results:
        print(f"{what:<40} {figure:<24} {'PASS' if ok else 'FAIL'}")
finally:
    server.terminate()
