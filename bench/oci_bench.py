#!/usr/bin/env python3
"""The measurements of bench/oci.sh (run by it: see its header for what and why)."""
import json
import os
import socket
import statistics
import subprocess
import sys
import time

BENCH = sys.argv[1]
WORK = os.environ["FERRY_BENCH_WORK"]
FERRY = os.environ["FERRY"]
N = int(os.environ["ARTIFACTS"])
SRV = os.path.join(WORK, "srv")
GIT_LOG = os.path.join(WORK, "git.log")
REG = os.path.join(WORK, "registry")
REG_LOG = os.path.join(REG, "log")
os.makedirs(SRV)
os.makedirs(REG)


def run(*args, check=True, cwd=None):
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if check and r.returncode != 0:
        sys.exit(f"error: {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r


# The desired state, in git: dev, staging and prod from bench/gen_repo.py.
state = os.path.join(WORK, "state")
run(sys.executable, os.path.join(BENCH, "gen_repo.py"), state, "--artifacts", str(N))
run("git", "init", "-q", "-b", "dev", state)
run("git", "add", "-A", cwd=state)
run("git", "commit", "-q", "-m", "state", cwd=state)
bare = os.path.join(SRV, "deploy.git")
run("git", "init", "-q", "--bare", bare)
for branch in ("dev", "staging", "prod"):
    run("git", "push", "-q", bare, f"dev:{branch}", cwd=state)

git_server = subprocess.Popen([sys.executable, os.path.join(BENCH, "..", "tests", "fixtures", "git_http.py"),
                               SRV, "--log", GIT_LOG], stdout=subprocess.PIPE, text=True)
GIT_URL = f"http://127.0.0.1:{int(git_server.stdout.readline())}/deploy.git"

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    REG_PORT = s.getsockname()[1]
with open(os.path.join(REG, "config.yml"), "w") as f:
    f.write(f"""version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {REG}/data
http:
  addr: 127.0.0.1:{REG_PORT}
  secret: bench
""")
registry = subprocess.Popen(["docker-registry", "serve", os.path.join(REG, "config.yml")],
                            stdout=open(REG_LOG, "a"), stderr=subprocess.STDOUT)
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", REG_PORT), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
OCI = f"oci://127.0.0.1:{REG_PORT}/deploy"


def publish():
    run(FERRY, "publish", "dev", "--to", OCI, "--remote", GIT_URL)


publish()


def git_requests():
    """(requests, body bytes sent to the agent) in the git server's log."""
    lines = open(GIT_LOG).read().splitlines()
    return len(lines), sum(int(l.split()[3]) for l in lines)


def registry_requests():
    """(requests, body bytes) between ferry's agent and the registry, from its access log."""
    n = total = 0
    for line in open(REG_LOG):
        if '] "' not in line or "ferry/" not in line and "oci-client" not in line:
            continue
        method = line.split('] "', 1)[1].split()[0]
        fields = line.split('" ', 1)[1].split()
        n += 1
        # The log gives a HEAD the size of the body it would have had: none was sent.
        if method != "HEAD" and fields[1].isdigit():
            total += int(fields[1])
    return n, total


def reset_logs():
    open(GIT_LOG, "w").close()
    open(REG_LOG, "w").close()


SOURCES = {
    "git": (["--remote", GIT_URL], git_requests),
    "oci": (["--source", f"{OCI}:dev"], registry_requests),
}


def agent_args(source, state_dir):
    os.makedirs(os.path.join(WORK, "root"), exist_ok=True)  # the agent refuses a missing root
    return [FERRY, "agent", "--env", "dev", "--host", "bench-none", "--no-report",
            "--root", os.path.join(WORK, "root"), "--state-dir", state_dir] + SOURCES[source][0]


results = {}
print("cold starts", file=sys.stderr)
for source in SOURCES:
    times = []
    for i in range(7):
        state_dir = os.path.join(WORK, f"cold-{source}-{i}")
        reset_logs()
        start = time.perf_counter()
        r = run(*agent_args(source, state_dir), "--once", check=False)
        times.append(time.perf_counter() - start)
        if "runs on host" not in r.stdout:
            sys.exit(f"unexpected agent outcome ({source}): {r.stdout}{r.stderr}")
        requests = SOURCES[source][1]()
    results[source] = {"cold_ms": statistics.median(times) * 1000, "cold": requests}

# Running agents: idle, then one change.
for source in SOURCES:
    state_dir = os.path.join(WORK, f"running-{source}")
    agent = subprocess.Popen(agent_args(source, state_dir) + ["--interval", "1s"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = os.path.join(state_dir, "status.json")
    deadline = time.time() + 60
    while not os.path.exists(status):
        if time.time() > deadline:
            sys.exit(f"the {source} agent never reported")
        time.sleep(0.05)
    print(f"{source}: idle", file=sys.stderr)
    time.sleep(1.5)
    reset_logs()
    time.sleep(10)
    n, b = SOURCES[source][1]()
    polls = max(1, round(10 / 1.0))
    results[source]["idle"] = (n / polls, b / polls)
    # One version bumped in dev (and, for the registry, published as CI would).
    manifest = os.path.join(state, "manifest.json")
    doc = json.load(open(manifest))
    first = next(iter(doc["artifacts"]))
    doc["artifacts"][first]["version"] = "99.0.%d" % list(SOURCES).index(source)
    with open(manifest, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    run("git", "commit", "-q", "-am", f"bump {first}", cwd=state)
    run("git", "push", "-q", bare, "dev:dev", cwd=state)
    if source == "oci":
        publish()
    tip = run("git", "rev-parse", "HEAD", cwd=state).stdout.strip()
    reset_logs()
    deadline = time.time() + 30
    while True:
        try:
            if json.load(open(status)).get("revision") == tip:
                break
        except (OSError, ValueError):
            pass
        if time.time() > deadline:
            sys.exit(f"the {source} agent did not pick up the change")
        time.sleep(0.02)
    n, b = SOURCES[source][1]()
    # What the idle polls in that window cost is not the change's: subtract them.
    results[source]["change"] = (n, b)
    agent.terminate()
    agent.wait()

git_server.terminate()
registry.terminate()

manifest_kb = os.path.getsize(os.path.join(state, "manifest.json")) / 1024
print(f"desired state: {N} artifacts (manifest.json {manifest_kb:.0f} KiB, environment files with {N} apps each)")
print(f"{'':34} {'git (smart HTTP)':>22} {'OCI registry':>22}  registry/git")


def row(label, key, fmt, ratio_of):
    g, o = results["git"][key], results["oci"][key]
    ratio = ratio_of(o) / ratio_of(g) if ratio_of(g) else float("nan")
    print(f"{label:34} {fmt(g):>22} {fmt(o):>22}  {ratio:10.2f}x")


row("cold start: time (median of 7)", "cold_ms", lambda v: f"{v:.0f} ms", lambda v: v)
row("cold start: requests", "cold", lambda v: f"{v[0]}", lambda v: v[0])
row("cold start: bytes received", "cold", lambda v: f"{v[1]:,}", lambda v: v[1])
row("idle poll: requests per interval", "idle", lambda v: f"{v[0]:.1f}", lambda v: v[0])
row("idle poll: bytes per interval", "idle", lambda v: f"{v[1]:,.0f}", lambda v: v[1])
row("change: requests", "change", lambda v: f"{v[0]}", lambda v: v[0])
row("change: bytes received", "change", lambda v: f"{v[1]:,}", lambda v: v[1])
