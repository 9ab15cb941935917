#!/usr/bin/env python3
"""The measurements of bench/fleet.sh (run by it: see its header for what and why)."""
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time

BENCH = sys.argv[1]
WORK = os.environ["FERRY_BENCH_WORK"]
FERRY = os.environ["FERRY"]
N = int(os.environ["AGENTS"])
INTERVAL = int(os.environ["INTERVAL"])
BUMPS = int(os.environ["BUMPS"])
IDLE = int(os.environ["IDLE"])
ONLY = [s for s in os.environ.get("ONLY", "").split(",") if s]
CHECK_TARGETS = os.environ.get("CHECK_TARGETS") == "1"
# A diagnosis: the agents report nothing, so the rollouts cost what deploying costs (waves,
# which need the reports, are skipped).
NO_REPORT = os.environ.get("NO_REPORT") == "1"
WAVES = [1, "50%", "100%"]
SECRET = "fleet-bench-secret"
TICK = os.sysconf("SC_CLK_TCK")


def want(section):
    return not ONLY or section in ONLY


SRV = os.path.join(WORK, "srv")
REPO = os.path.join(SRV, "deploy.git")
ART = os.path.join(WORK, "artifacts")
LOG = os.path.join(WORK, "requests.log")
LOGS = os.path.join(WORK, "logs")
for d in (SRV, ART, LOGS):
    os.makedirs(d)
# The repository's post-receive hook signs its triggers with the secret in the variable the
# environment's `trigger_secret` names; the agents check it with theirs.
os.environ["FERRY_TRIGGER_SECRET"] = SECRET
WIDTH = max(2, len(str(N)))
HOSTS = [f"host-{i:0{WIDTH}d}" for i in range(1, N + 1)]


def run(*args, env=None, check=True, cwd=None):
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        sys.exit(f"error: {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r


GIVEN_PORTS = set()


def free_port():
    """A loopback port free now and not given before (the kernel may hand one out twice)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in GIVEN_PORTS:
            GIVEN_PORTS.add(port)
            return port


def cpu_of(pid, children=True):
    """(own, reaped children's) CPU seconds of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    own = (int(fields[11]) + int(fields[12])) / TICK
    reaped = (int(fields[13]) + int(fields[14])) / TICK if children else 0.0
    return own, reaped


def memory_of(pid):
    """(RSS, PSS) in KiB: PSS shares the pages the agents have in common (the binary)."""
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def tgz(version):
    pkg = os.path.join(WORK, f"pkg-{version}")
    os.makedirs(pkg, exist_ok=True)
    with open(os.path.join(pkg, "index.html"), "w") as f:
        f.write(f"web {version}\n")
    path = os.path.join(ART, f"web-{version}.tgz")
    run("tar", "czf", path, "-C", pkg, ".")
    return path


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def requests_since(offset=0):
    """The requests the git server logged past byte `offset`, by kind."""
    with open(LOG) as f:
        f.seek(offset)
        lines = f.read().splitlines()
    kinds = {}
    for line in lines:
        method, path = line.split()[:2]
        kind = f"{method} {path.split('deploy.git', 1)[-1]}"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def log_size():
    return os.path.getsize(LOG)


POLL = "GET /info/refs?service=git-upload-pack"
PUSH = "POST /git-receive-pack"

server = subprocess.Popen([sys.executable, os.path.join(BENCH, "..", "tests", "fixtures", "git_http.py"),
                           SRV, "--files", ART, "--log", LOG], stdout=subprocess.PIPE, text=True)
PORT = int(server.stdout.readline())
URL = f"http://127.0.0.1:{PORT}/deploy.git"
FILES_URL = f"http://127.0.0.1:{PORT}/files"
registry = None
agents = []
results = []  # (measure, figure, target, ratio or None, ok or None)
notes = []


def result(measure, figure, target="", ratio=None, ok=None):
    results.append((measure, figure, target, ratio, ok))


def print_results():
    print()
    print(f"{'measure':<52} {'figure':<34} {'target':<22} {'ratio':>6}  verdict")
    for measure, figure, target, ratio, ok in results:
        r = f"{ratio:.2f}" if ratio is not None else ""
        v = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{measure:<52} {figure:<34} {target:<22} {r:>6}  {v}")
    for note in notes:
        print(note)


try:
    # --- the deployment repository: dev, one app on N hosts
    run(FERRY, "init", "--remote", REPO, "--envs", "dev", "-q")
    run("git", "config", "--file", os.path.join(REPO, "config"), "http.receivepack", "true")
    # The statuses the agents push are many small ones: no `gc --auto` in the middle of a run.
    run("git", "config", "--file", os.path.join(REPO, "config"), "receive.autogc", "false")
    versions = iter(f"1.0.{i}" for i in range(1000))
    version = next(versions)
    run(FERRY, "bump", "web", version, "--env", "dev", "--add", "--remote", REPO,
        "--url", f"{FILES_URL}/web-{version}.tgz", "--artifact", tgz(version))
    work = os.path.join(WORK, "work")
    run("git", "clone", "-q", "-b", "dev", REPO, work)

    def tip():
        return run("git", "--git-dir", REPO, "rev-parse", "refs/heads/dev").stdout.strip()

    def set_env(waves=None, triggers=None):
        """dev's file: web on every host, the rollout's waves, the agents' trigger URLs."""
        run("git", "-C", work, "fetch", "-q", "origin", "dev")
        run("git", "-C", work, "reset", "-q", "--hard", "origin/dev")
        path = os.path.join(work, "environments/dev.json")
        env = json.load(open(path))
        env["apps"] = {"web": {"hosts": HOSTS, "deployment_path": "/srv/web"}}
        env["agent"] = {"interval": f"{INTERVAL}s"}
        if triggers:
            env["agent"]["trigger_urls"] = triggers
            env["agent"]["trigger_secret"] = "FERRY_TRIGGER_SECRET"
        env.pop("rollout", None)
        if waves:
            env["rollout"] = {"waves": waves, "pause": "0s"}
        with open(path, "w") as f:
            json.dump(env, f, indent=2)
            f.write("\n")
        run("git", "-C", work, "commit", "-q", "--allow-empty", "-am", "dev: web on the fleet")
        run("git", "-C", work, "push", "-q", "origin", "dev")
        return tip()

    def start(source=None, listen=False, tag="git"):
        """N agents; with `listen`, each on a port of its own (returned by host)."""
        procs, ports = [], {}
        for host in HOSTS:
            root = os.path.join(WORK, f"root-{tag}-{host}")
            os.makedirs(root, exist_ok=True)  # the agent refuses a root that does not exist
            args = [FERRY, "agent", "--env", "dev", "--host", host, "--root", root,
                    "--state-dir", os.path.join(WORK, f"state-{tag}-{host}"),
                    "--remote", URL, "--interval", f"{INTERVAL}s"]
            if source:
                args += ["--source", source]
            if NO_REPORT:
                args.append("--no-report")
            if listen:
                ports[host] = free_port()
                args += ["--listen", f"127.0.0.1:{ports[host]}"]
            procs.append(subprocess.Popen(
                args, stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(LOGS, f"{tag}-{host}.log"), "a"),
                env={**os.environ, "FERRY_WEBHOOK_SECRET": SECRET}))
        return procs, ports

    def host_writes():
        """The commits in the hosts' records (`refs/ferry/hosts/ENV/HOST`), all told."""
        r = run("git", "--git-dir", REPO, "rev-list", "--count", "--glob=refs/ferry/hosts/*",
                check=False)
        return int(r.stdout or 0) if r.returncode == 0 else 0

    def statuses(commit):
        r = run("git", "--git-dir", REPO, "show", f"refs/ferry/statuses/{commit}:statuses.json",
                check=False)
        return json.loads(r.stdout) if r.returncode == 0 else {}

    class Watch:
        """Each host's status.json, read only when it changed."""

        def __init__(self, tag):
            self.paths = {h: os.path.join(WORK, f"state-{tag}-{h}", "status.json") for h in HOSTS}
            self.seen = {}

        def report(self, host):
            path = self.paths[host]
            try:
                stamp = os.stat(path).st_mtime_ns
            except OSError:
                return None
            cached = self.seen.get(host)
            if cached and cached[0] == stamp:
                return cached[1]
            try:
                report = json.load(open(path))
            except (OSError, ValueError):
                return None  # replaced as it was read: read it next time
            self.seen[host] = (stamp, report)
            return report

        def deployed(self, host, revision, version=None):
            r = self.report(host)
            return (r is not None and r.get("revision") == revision and r.get("state") == "deployed"
                    and (version is None or r.get("apps", {}).get("web", {}).get("version") == version))

    def converge(watch, revision, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            missing = [h for h in HOSTS if not watch.deployed(h, revision)]
            if not missing:
                return
            if time.monotonic() > deadline:
                states = {}
                for h in missing:
                    r = watch.report(h) or {}
                    states[h] = (r.get("revision", "")[:7], r.get("state"), r.get("message", "")[:80])
                sys.exit(f"error: {what}: {len(missing)} of {N} agents did not converge on "
                         f"{revision[:7]} within {timeout} s: {dict(list(states.items())[:5])}")
            time.sleep(0.1)

    def aggregate_success(revision):
        return statuses(revision).get("ferry/deploy/dev", {}).get("state") == "success"

    def wait_aggregate(revision, timeout):
        if NO_REPORT:
            return
        deadline = time.monotonic() + timeout
        while not aggregate_success(revision):
            if time.monotonic() > deadline:
                sys.exit(f"error: no aggregate ferry/deploy/dev success on {revision[:7]} within {timeout} s")
            time.sleep(0.2)

    def settle(what, quiet):
        """Waits (up to 5 minutes) until 1.5 intervals pass with only what `quiet` accepts at
        the git server: the agents have written their last statuses (a contended write is
        retried for up to a minute, and the next interval's report reads the record again)."""
        deadline = time.monotonic() + 300
        while True:
            offset = log_size()
            time.sleep(1.5 * INTERVAL)
            kinds = requests_since(offset)
            if quiet(kinds):
                return
            if time.monotonic() > deadline:
                notes.append(f"note: {what}: the git server never went quiet: {kinds}")
                return

    def polls_only(kinds):
        return all(k == POLL for k in kinds)

    def idle(label, procs, count, polls_kind, interval_count):
        """Requests at the server and its CPU over `interval_count` intervals of `procs`."""
        own0, kids0 = count["cpu"]()
        agents0 = sum(sum(cpu_of(p.pid, children=False)) for p in procs)
        offset = count["offset"]()
        start = time.monotonic()
        time.sleep(interval_count * INTERVAL)
        elapsed = time.monotonic() - start
        own1, kids1 = count["cpu"]()
        agents1 = sum(sum(cpu_of(p.pid, children=False)) for p in procs)
        kinds = count["kinds"](offset)
        total = sum(kinds.values())
        polls = kinds.get(polls_kind, 0)
        other = total - polls
        per = total / N / (elapsed / INTERVAL)
        mem = [memory_of(p.pid) for p in procs]
        rss = sum(m[0] for m in mem) / 1024
        pss = sum(m[1] for m in mem) / 1024
        cpu = (own1 - own0) + (kids1 - kids0)
        figures = {
            "elapsed": elapsed, "kinds": kinds, "total": total, "polls": polls, "other": other,
            "per": per, "rss": rss, "pss": pss, "cpu": cpu, "cpu_own": own1 - own0,
            "cpu_kids": kids1 - kids0, "agents_cpu": agents1 - agents0,
        }
        print(f"{label}: {elapsed:.1f} s, {total} requests ({kinds}); {per:.3f} per agent per interval; "
              f"server CPU {cpu:.2f} s (own {own1 - own0:.2f}, children {kids1 - kids0:.2f}); "
              f"agents' CPU {agents1 - agents0:.2f} s; agents' memory RSS {rss:.0f} MiB, PSS {pss:.0f} MiB",
              file=sys.stderr)
        return figures

    git_count = {
        "cpu": lambda: cpu_of(server.pid),
        "offset": log_size,
        "kinds": requests_since,
    }

    def bump_and_watch(watch, waves, trigger):
        """One bump; the time (from its start) each host deployed it, and the aggregate's."""
        version = next(versions)
        artifact = tgz(version)
        time.sleep(random.uniform(0, INTERVAL))  # at some phase of the agents' polls
        own0, kids0 = cpu_of(server.pid)
        agents0 = sum(sum(cpu_of(p.pid, children=False)) for p in agents)
        hosts0 = host_writes()
        offset = log_size()
        start = time.monotonic()
        run(FERRY, "bump", "web", version, "--env", "dev", "--remote", REPO,
            "--url", f"{FILES_URL}/web-{version}.tgz", "--artifact", artifact)
        bumped = time.monotonic() - start
        revision = tip()
        done, aggregate = {}, None
        budget = (len(WAVES) if waves else 1) * INTERVAL * 3 + 60
        last_check = 0.0
        while len(done) < N or (aggregate is None and not NO_REPORT):
            now = time.monotonic() - start
            if now > budget:
                sys.exit(f"error: {version}: {len(done)} of {N} deployed, aggregate "
                         f"{'written' if aggregate else 'not written'} after {budget} s")
            for h in HOSTS:
                if h not in done and watch.deployed(h, revision, version):
                    done[h] = now
            if aggregate is None and not NO_REPORT and len(done) == N and now - last_check > 0.1:
                last_check = now
                if aggregate_success(revision):
                    aggregate = time.monotonic() - start
            time.sleep(0.02)
        own1, kids1 = cpu_of(server.pid)
        agents1 = sum(sum(cpu_of(p.pid, children=False)) for p in agents)
        kinds = requests_since(offset)
        times = [done[h] for h in HOSTS]
        ordered = sorted(times)
        if waves:
            # [1, "50%", "100%"]: the first host, then up to half, then the rest.
            half = -(-N // 2)
            bounds = [(0, 1), (1, half), (half, N)]
        else:
            bounds = [(0, N)]
        wave_ends = [max(times[a:b]) for a, b in bounds if b > a]
        return {
            "version": version, "bump": bumped, "first": min(times), "all": max(times),
            "aggregate": aggregate, "waves": wave_ends, "cpu": (own1 - own0) + (kids1 - kids0),
            "pushes": kinds.get(PUSH, 0), "requests": sum(kinds.values()), "kinds": kinds,
            "p50": ordered[len(ordered) // 2], "p90": ordered[(len(ordered) * 9) // 10],
            "agents_cpu": agents1 - agents0,
            # Writes that landed: the commit's statuses record's, and the hosts' own records'.
            "records": int(run("git", "--git-dir", REPO, "rev-list", "--count",
                               f"refs/ferry/statuses/{revision}").stdout)
            + host_writes() - hosts0 if not NO_REPORT else 0,
        }

    def rollouts(label, watch, waves, trigger):
        runs = []
        for _ in range(BUMPS):
            settle(f"{label}: the rollout before", polls_only)
            r = bump_and_watch(watch, waves, trigger)
            print(f"{label}: {r['version']}: bump {r['bump']:.2f} s, first host {r['first']:.2f} s, "
                  f"half {r['p50']:.2f} s, 90% {r['p90']:.2f} s, all {N} {r['all']:.2f} s "
                  f"(waves done at {', '.join(f'{t:.2f}' for t in r['waves'])}), "
                  f"aggregate {r['aggregate'] or 0:.2f} s; server: {r['cpu']:.2f} s CPU, {r['requests']} requests "
                  f"({r['kinds']}), {r['records']} statuses written; agents: {r['agents_cpu']:.2f} s CPU",
                  file=sys.stderr)
            runs.append(r)
        return runs

    def summary(runs, key):
        values = [r[key] for r in runs]
        return statistics.median(values), max(values)

    timed = {}
    first_tip = set_env()
    if want("idle") or want("polled"):
        agents, _ = start()
        watch = Watch("git")
        print(f"{N} agents polling git every {INTERVAL} s: first deploy", file=sys.stderr)
        converge(watch, first_tip, 120 + N, "first deploy")
        wait_aggregate(first_tip, 120)
        settle("the first deploy", polls_only)

        if want("idle"):
            git_idle = idle("git, idle", agents, git_count, POLL, IDLE)
            per_poll_ms = git_idle["cpu"] / max(1, git_idle["polls"]) * 1000
            result(f"git idle: requests per agent per interval", f"{git_idle['per']:.3f} ({git_idle['other']} not polls)",
                   "<= 1, polls only", git_idle["per"] / 1.0, git_idle["per"] <= 1.02 and git_idle["other"] == 0)
            result("git idle: server CPU per 1,000 polls",
                   f"{per_poll_ms:.1f} s ({git_idle['cpu_kids'] / max(1, git_idle['polls']) * 1000:.1f} s git)")
            result(f"agents' memory, {N} idle (sum)", f"RSS {git_idle['rss']:.0f} MiB, PSS {git_idle['pss']:.0f} MiB",
                   f"<= {N * 32} MiB ({N} x 32)", git_idle["rss"] / (N * 32), git_idle["rss"] <= N * 32)
            result("agents' CPU per poll (each agent's own)",
                   f"{git_idle['agents_cpu'] / max(1, git_idle['polls']) * 1000:.1f} ms")
            timed["git_idle"] = git_idle

        if want("polled"):
            one = rollouts("polled, one wave", watch, None, False)
            timed["polled_one"] = one
        if want("polled") and not NO_REPORT:
            waves_tip = set_env(waves=WAVES)
            converge(watch, waves_tip, 300, "the waves' environment")
            wait_aggregate(waves_tip, 120)
            settle("the waves' environment", polls_only)
            many = rollouts("polled, waves", watch, WAVES, False)
            timed["polled_waves"] = many
            settle("the last waves", polls_only)
            if want("idle"):
                timed["git_idle_waves"] = idle("git, idle (waves)", agents, git_count, POLL, max(2, IDLE // 2))
        stop(agents)
        agents = []

    if want("triggered"):
        set_env()  # no waves, no triggers: the agents start on a settled commit
        agents, ports = start(listen=True, tag="trig")
        watch = Watch("trig")
        urls = [f"http://127.0.0.1:{ports[h]}/trigger" for h in HOSTS]
        trig_tip = set_env(triggers=urls)
        converge(watch, trig_tip, 120 + N, "triggered agents' first deploy")
        wait_aggregate(trig_tip, 120)
        settle("the triggered agents' first deploy", polls_only)
        timed["triggered_one"] = rollouts("triggered, one wave", watch, None, True)
        if not NO_REPORT:
            waves_tip = set_env(waves=WAVES, triggers=urls)
            converge(watch, waves_tip, 300, "the waves' environment")
            wait_aggregate(waves_tip, 120)
            settle("the waves' environment", polls_only)
            timed["triggered_waves"] = rollouts("triggered, waves", watch, WAVES, True)
        stop(agents)
        agents = []

    def rollout_rows(name, one_key, waves_key, base):
        """The one-wave and waves targets of a mode whose one wave must land within `base`."""
        if one_key in timed:
            med, worst = summary(timed[one_key], "all")
            agg_med, agg_worst = summary(timed[one_key], "aggregate") if not NO_REPORT else (0, 0)
            result(f"{name}, one wave: bump to all {N} deployed", f"{med:.2f} s median, {worst:.2f} worst",
                   f"<= {base:g} s", worst / base, worst <= base)
            if not NO_REPORT:
                result(f"{name}, one wave: to aggregate success", f"{agg_med:.2f} s median, {agg_worst:.2f} worst")
        if waves_key in timed:
            runs = timed[waves_key]
            med, worst = summary(runs, "all")
            budget = base + (len(WAVES) - 1) * INTERVAL
            result(f"{name}, {len(WAVES)} waves: bump to all {N} deployed", f"{med:.2f} s median, {worst:.2f} worst",
                   f"<= {budget:g} s", worst / budget, worst <= budget)
            # What an extra wave costs: the time the waves add to a one-wave rollout, per wave
            # added. The gaps between the waves' ends are shown too; the first includes the
            # hosts of wave 2 that had not yet polled the new commit when the canary finished
            # (they poll at the interval until they learn of it).
            if one_key in timed:
                one_med, _ = summary(timed[one_key], "all")
                cost = (med - one_med) / (len(WAVES) - 1)
                result(f"{name}, waves: each extra wave costs (median)",
                       f"{cost:.2f} s (({med:.2f} - {one_med:.2f}) / {len(WAVES) - 1})",
                       f"<= {INTERVAL} s", cost / INTERVAL, cost <= INTERVAL)
            ends = [statistics.median(r["waves"][i] for r in runs) for i in range(len(runs[0]["waves"]))]
            gaps = [b - a for a, b in zip(ends, ends[1:])]
            result(f"{name}, waves: gaps between the waves' ends (median)",
                   ", ".join(f"{c:.2f} s" for c in gaps))
            agg_med, agg_worst = summary(runs, "aggregate")
            result(f"{name}, waves: to aggregate success", f"{agg_med:.2f} s median, {agg_worst:.2f} worst")

    rollout_rows("polled", "polled_one", "polled_waves", INTERVAL + 2)
    rollout_rows("triggered", "triggered_one", "triggered_waves", 2)
    for key in ("polled_one", "polled_waves", "triggered_one", "triggered_waves"):
        if key in timed:
            runs = timed[key]
            med = {k: statistics.median(r[k] for r in runs)
                   for k in ("pushes", "cpu", "requests", "records", "agents_cpu")}
            result(f"{key.replace('_', ', ')}: server per rollout (median)",
                   f"{med['cpu']:.1f} s CPU, {med['requests']:.0f} requests")
            result(f"{key.replace('_', ', ')}: status writes (median)",
                   f"{med['records']:.0f} landed, {med['pushes']:.0f} pushed")
            result(f"{key.replace('_', ', ')}: the agents' CPU (median)", f"{med['agents_cpu']:.1f} s")
    if "git_idle_waves" in timed:
        w = timed["git_idle_waves"]
        result("git idle after waves: requests per agent per interval", f"{w['per']:.3f} ({w['other']} not polls)",
               "<= 1, polls only", w["per"], w["per"] <= 1.02 and w["other"] == 0)

    # --- the registry as the source
    if want("oci"):
        reg = os.path.join(WORK, "registry")
        os.makedirs(reg)
        reg_log = os.path.join(reg, "log")
        reg_port = free_port()
        with open(os.path.join(reg, "config.yml"), "w") as f:
            f.write(f"""version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: {reg}/data
http:
  addr: 127.0.0.1:{reg_port}
  secret: bench
""")
        registry = subprocess.Popen(["docker-registry", "serve", os.path.join(reg, "config.yml")],
                                    stdout=open(reg_log, "a"), stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", reg_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        oci = f"oci://127.0.0.1:{reg_port}/deploy"
        oci_tip = set_env()
        run(FERRY, "publish", "dev", "--to", oci, "--remote", REPO)

        def registry_kinds(offset):
            kinds = {}
            with open(reg_log) as f:
                f.seek(offset)
                for line in f:
                    if '] "' not in line or ("ferry/" not in line and "oci-client" not in line):
                        continue
                    method, path = line.split('] "', 1)[1].split()[:2]
                    kind = f"{method} {path.split('/v2/deploy', 1)[-1].split('/')[1] if '/v2/deploy' in path else path}"
                    kinds[kind] = kinds.get(kind, 0) + 1
            return kinds

        reg_count = {
            "cpu": lambda: cpu_of(registry.pid),
            "offset": lambda: os.path.getsize(reg_log),
            "kinds": registry_kinds,
        }
        agents, _ = start(source=f"{oci}:dev", tag="oci")
        watch = Watch("oci")
        print(f"{N} agents polling the registry every {INTERVAL} s: first deploy", file=sys.stderr)
        converge(watch, oci_tip, 120 + N, "first deploy from the registry")
        wait_aggregate(oci_tip, 120)
        settle("the registry agents' first deploy", lambda kinds: not kinds)
        git_before = log_size()
        oci_idle = idle("registry, idle", agents, reg_count, "HEAD manifests", IDLE)
        git_during = sum(requests_since(git_before).values())
        per_poll_ms = oci_idle["cpu"] / max(1, oci_idle["polls"]) * 1000
        result("registry idle: requests per agent per interval", f"{oci_idle['per']:.3f} ({oci_idle['other']} not polls)",
               "<= 1, polls only", oci_idle["per"], oci_idle["per"] <= 1.02 and oci_idle["other"] == 0)
        result("registry idle: server CPU per 1,000 polls", f"{per_poll_ms:.2f} s")
        result("registry idle: git requests meanwhile", f"{git_during}", "0", None, git_during == 0)
        result(f"agents' memory, {N} idle on the registry (sum)",
               f"RSS {oci_idle['rss']:.0f} MiB, PSS {oci_idle['pss']:.0f} MiB")
        result("agents' CPU per poll on the registry (each agent's own)",
               f"{oci_idle['agents_cpu'] / max(1, oci_idle['polls']) * 1000:.1f} ms")
        stop(agents)
        agents = []

    print(f"{N} agents, --interval {INTERVAL}s, {BUMPS} bumps of each kind; waves {json.dumps(WAVES)}, no pause")
    print_results()
    missed = [r for r in results if r[4] is False]
    print()
    print("All targets hold." if not missed else f"Targets missed: {len(missed)}.")
    code = 2 if (CHECK_TARGETS and missed) else 0
finally:
    stop(agents)
    if registry is not None:
        registry.terminate()
    server.terminate()
sys.exit(code)
