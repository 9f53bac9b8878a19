#!/usr/bin/env python3
"""qmig-lua benchmark (SPEC §9 "Speed"; bench/README.md explains every figure).

  bench/bench.py [--quick] [--only NAMES] [--bin ./qmig-lua] [--work DIR]

Runs the demo job's steps against qliksim on a generated site and prints one
table.  Every figure and every ratio comes from this run; nothing is read
from earlier runs.  Python 3 standard library, curl, and the qmig-lua binary.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "tests", "qliksim", "qliksim.py")
GEN = os.path.join(ROOT, "tests", "qliksim", "generate.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20

# name: (apps, users, streams, connections, tasks)
SIZES = {"full": (2000, 5000, 200, 1000, 1000), "quick": (24, 60, 3, 12, 12)}
LATENCY_MS = 20
STEPS = [  # the demo job (examples/demo/job.yaml)
    ("identities", ["users.export", "users.import"]),
    ("assets", ["extensions.export", "extensions.import", "themes.export", "themes.import"]),
    ("containers", ["spaces.create", "spaces.assign", "spaces.owners"]),
    ("connections", ["dataconnections.migrate"]),
    ("apps", ["apps.export", "apps.import", "apps.object_owners", "apps.scripts", "apps.reload",
              "apps.publish", "apps.shares", "tags.migrate", "apps.schedules", "apps.validate",
              "apps.owners"]),
]


def log(msg):
    sys.stderr.write(f"bench: {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- simulator

class Sim:
    """One qliksim process (fresh state) with its control endpoint."""

    def __init__(self, work, name, site, faults=None, verbose=False):
        self.dir = os.path.join(work, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        info = os.path.join(self.dir, "info.json")
        cmd = [sys.executable, SIM, "--site", site, "--certs", os.path.join(work, "certs"),
               "--info-file", info, "--data-dir", os.path.join(self.dir, "data")]
        if faults:
            cmd += ["--faults", json.dumps(faults)]
        if verbose:
            cmd.append("--verbose")
        self.log_path = os.path.join(self.dir, "qliksim.log")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, "wb"))
        deadline = time.monotonic() + 120
        while not os.path.exists(info):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: qliksim did not start; see {self.log_path}")
            time.sleep(0.05)
        with open(info) as fh:
            self.info = json.load(fh)

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.info["cloud_url"] + "/_sim/" + path, data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)

    def counts(self):
        return self.control("GET", "counts")

    def reset_counters(self):
        return self.control("POST", "reset-counters", {})

    def cpu(self):
        """CPU seconds (user + system) the simulator has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- job files

def yaml_str(s):
    return json.dumps(s, ensure_ascii=False)   # a JSON string is a YAML double-quoted scalar


def write_job(path, sim, project, site, concurrency, rate_limits=False, with_data=False,
              steps=None, extra_options=""):
    """A job file with the demo job's plan and steps for a generated site (JSON
    flow style is YAML).  Every connection is mapped to a stream's space so
    dataconnections.migrate creates it."""
    q = site["qrs"]
    streams = [s["name"] for s in q.get("streams", [])]
    dc_map = {}
    for i, c in enumerate(q.get("data_connections", [])):
        if streams:
            dc_map[c["name"]] = {"space": streams[i % len(streams)]}
    certs = sim.info["certs"]
    rl = "false" if rate_limits is False else json.dumps(rate_limits)
    jobs = steps or STEPS
    lines = [
        "version: 1",
        f"project: {{name: bench, dir: {yaml_str(project)}}}",
        "source:",
        "  type: qrs",
        f"  url: {sim.info['qrs_url']}",
        f"  cert: {yaml_str(certs['client_cert'])}",
        f"  key: {yaml_str(certs['client_key'])}",
        f"  ca: {yaml_str(certs['ca'])}",
        "  user: 'INTERNAL\\sa_api'",
        "target:",
        "  type: cloud",
        f"  url: {sim.info['cloud_url']}",
        f"  api_key: {sim.info['api_key']}",
        "plan:",
        "  apps: {streams: ['*'], personal: true, export_scope: all, "
        f"with_data: {'true' if with_data else 'false'}, publish: true}}",
        "  spaces: {prefix: '', staging: Migration staging}",
        "  users: {domains: {CORP: corp.example}, skip_directories: [INTERNAL], create_missing: true}",
        "  data_connections:",
        "    names: ['*']",
        "    map: " + json.dumps(dc_map, ensure_ascii=False),
        f"options: {{concurrency: {concurrency}, rate_limits: {rl}{extra_options}}}",
        "jobs:",
    ]
    for name, st in jobs:
        lines.append(f"  - {{name: {name}, steps: [{', '.join(st)}]}}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- running qmig-lua

class Result:
    pass


def run_qmig(binary, args, log_path):
    """Runs qmig-lua; returns wall time, exit status, CPU time and peak RSS.
    The peak RSS comes from GNU time (%M, the ru_maxrss of the process it
    forked): the ru_maxrss of a child forked by this Python process itself
    would include this process's own RSS, which Linux carries over exec."""
    t0 = time.monotonic()
    rss_file = log_path + ".maxrss"
    wrap = ["/usr/bin/time", "-f", "%M", "-o", rss_file] if os.path.exists("/usr/bin/time") else []
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(wrap + [binary] + args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, ru = os.wait4(proc.pid, 0)
    r = Result()
    r.wall = time.monotonic() - t0
    r.status = os.waitstatus_to_exitcode(status)
    proc.returncode = r.status
    r.cpu = ru.ru_utime + ru.ru_stime
    r.maxrss = ru.ru_maxrss * 1024
    if wrap:
        try:
            with open(rss_file) as fh:
                r.maxrss = int(fh.read().split()[-1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    r.log = log_path
    return r


def failure_reasons(project, limit=2):
    """The most common reasons of failed items in a project's run logs."""
    import collections
    import glob
    import re
    seen = collections.Counter()
    for path in glob.glob(os.path.join(project, "logs", "run-*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if d.get("msg") == "item" and d.get("status") == "failed":
                    reason = re.sub(r"'[^']*'", "'...'", str(d.get("reason", "")))[:90]
                    seen[(d.get("step"), reason)] += 1
    return [f"{n} x {step}: {reason}" for (step, reason), n in seen.most_common(limit)]


def failed_items(log_path):
    """Sum of 'N failed' in the per-step summary lines qmig-lua prints."""
    import re
    n = 0
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = re.search(r"(\d+) failed", line)
            if m and line.startswith("  "):
                n += int(m.group(1))
    return n


# --------------------------------------------------------------------------- sites

def make_site(path, apps, users, streams, connections, tasks, app_size=200 * 1024):
    """A generated site (tests/qliksim/generate.py) in which every item can
    migrate: OLE DB and folder connections (which Qlik Cloud cannot take,
    so the apps reloading through them fail) become ODBC and web ones, and
    connection names lose the characters a lib:// path cannot carry."""
    sys.path.insert(0, os.path.dirname(GEN))
    import generate
    site = generate.generate(apps, users, streams, connections, tasks, app_size)
    renames = {}
    for i, c in enumerate(site["qrs"]["data_connections"]):
        if c["type"] == "OLEDB":
            c.update(type="ODBC", connectionstring=f"ODBC CONNECT TO [DSN_{i}]")
        elif c["type"] == "folder":
            c.update(type="internet", connectionstring=f"https://files{i}.example.com/")
        # A name with "/" or "'" cannot be written in a lib:// path
        # (lib://Conn/file: the name ends at either), so apps reading files
        # through such a connection fail to reload, in qliksim as in Qlik.
        if "/" in c["name"] or "'" in c["name"]:
            new = c["name"].replace("/", "-").replace("'", "")
            renames[c["name"]] = new
            c["name"] = new
    for a in site["qrs"]["apps"]:
        for old, new in renames.items():
            a["script"] = a["script"].replace(old.replace("'", "''"), new).replace(old, new)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(site, fh, separators=(",", ":"))
    return site


def tier_of(endpoint):
    """The simulator's tier of a counted endpoint ("METHOD /path")."""
    method, _, path = endpoint.partition(" ")
    if not path.startswith("/api/"):
        return "qrs"
    if path == "/api/v1/reloads" or path.startswith(("/api/v1/reloads/", "/api/v1/reloads?")):
        return "special"      # the whole reloads API, as qliksim's Cloud.tier
    return "tier1" if method in ("GET", "HEAD") else "tier2"


# --------------------------------------------------------------------------- the parts

def step_rows(log_path):
    """Per-step lines bench/steptimes.lua appended: name -> dict."""
    rows = []
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("steptime "):
                rows.append(json.loads(line[len("steptime "):]))
    return rows


def run_job(ctx, name, site_path, site, concurrency, faults, rate_limits=False, steps=None,
            with_data=False, sim=None, verbose=False, keep_sim=False):
    """A full job run: a fresh simulator (unless `sim` is given) and a fresh
    project.  Returns (Result, sim)."""
    own = sim is None
    if own:
        sim = Sim(ctx.work, name, site_path, faults, verbose=verbose)
    project = os.path.join(ctx.work, name, "project")
    job = os.path.join(ctx.work, name, "job.yaml")
    if own:
        write_job(job, sim, project, site, concurrency, rate_limits, with_data, steps)
    sim.reset_counters()
    cpu0 = sim.cpu()
    env_url = sim.info["cloud_url"]
    os.environ["BENCH_SIM_URL"] = env_url
    r = run_qmig(ctx.bin, ["bench/steptimes.lua", "run", job, "--quiet"],
                 os.path.join(ctx.work, name, f"run{'-again' if not own else ''}.log"))
    r.sim_cpu = sim.cpu() - cpu0
    r.counts = sim.counts()
    r.requests = r.counts["total"]
    r.writes = r.counts["total_writes"]
    r.failed = failed_items(r.log)
    r.steps = step_rows(r.log)
    if r.status not in (0, 1):
        log(f"{name}: qmig-lua exited with {r.status}; see {r.log}")
    if not keep_sim:
        sim.stop()
    return r, sim


def replay_script(sim_log, sim, out_path, limit=0):
    """A bash script replaying, one curl process after another, the API calls
    the simulator logged (--verbose) during a run: what a shell script of
    qlik-cli / curl calls does.  Bodies are not replayed (writes send "{}"),
    so the baseline only gets cheaper.  With limit, every k-th call only.
    Returns (script path, calls in the log, calls in the script)."""
    import re
    import shlex
    calls = []
    pat = re.compile(r'^qliksim: "([A-Z]+) (\S+) HTTP/1\.[01]" (\d+)')
    with open(sim_log, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = pat.match(line)
            if m and not m.group(2).startswith("/_sim"):
                calls.append((m.group(1), m.group(2)))
    picked = calls
    if limit and len(calls) > limit:
        k = len(calls) / limit
        picked = [calls[int(i * k)] for i in range(limit)]
    c = sim.info["certs"]
    qrs_opts = " ".join(shlex.quote(x) for x in (
        "--cert", c["client_cert"], "--key", c["client_key"], "--cacert", c["ca"],
        "-H", "X-Qlik-User: UserDirectory=INTERNAL; UserId=sa_api"))
    cloud_opts = shlex.quote("Authorization: Bearer " + sim.info["api_key"])
    with open(out_path, "w") as fh:
        fh.write("#!/usr/bin/env bash\n# Sequential curl calls (bench/bench.py)\n")
        for method, path in picked:
            body = "" if method in ("GET", "HEAD") else \
                " -H 'Content-Type: application/json' --data-raw '{}'"
            if path.startswith("/api/"):
                fh.write(f"curl -s -o /dev/null -X {method} -H {cloud_opts}{body} "
                         f"{shlex.quote(sim.info['cloud_url'] + path)}\n")
            else:
                m = re.search(r"[?&]xrfkey=([0-9A-Za-z]{16})", path, re.I)
                key = m.group(1) if m else "0123456789abcdef"
                if not m:
                    path += ("&" if "?" in path else "?") + "xrfkey=" + key
                fh.write(f"curl -s -o /dev/null -X {method} {qrs_opts} "
                         f"-H 'X-Qlik-Xrfkey: {key}'{body} "
                         f"{shlex.quote(sim.info['qrs_url'] + path)}\n")
    return out_path, len(calls), len(picked)


def timed(cmd, **kw):
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, **kw)
    return time.monotonic() - t0


def curl_move(sim, work, size):
    """curl alone moving the same app: the two-call QRS export and download
    to a file, then the upload to the Cloud import endpoint (temp-contents +
    import by fileId above 512 MiB, as qmig-lua does).  -> (down s, up s)."""
    state = sim.control("GET", "state")
    app_id = state["qrs"]["entities"]["app"][0]["id"]
    c = sim.info["certs"]
    key = "benchbenchbench1"
    qrs = ["curl", "-sf", "--cert", c["client_cert"], "--key", c["client_key"], "--cacert", c["ca"],
           "-H", "X-Qlik-User: UserDirectory=INTERNAL; UserId=sa_api", "-H", f"X-Qlik-Xrfkey: {key}"]
    token = "0b7c2b8e-6d0a-4c54-9a63-5f3e2d1c0b9a"
    t0 = time.monotonic()
    out = subprocess.run(qrs + ["-X", "POST", f"{sim.info['qrs_url']}/qrs/app/{app_id}/export/{token}"
                                f"?skipData=false&exportScope=all&xrfkey={key}"],
                         check=True, capture_output=True).stdout
    download = json.loads(out)["downloadPath"]
    sep = "&" if "?" in download else "?"
    path = os.path.join(work, "curl-app.qvf")
    subprocess.run(qrs + ["-o", path, f"{sim.info['qrs_url']}{download}{sep}xrfkey={key}"], check=True)
    down = time.monotonic() - t0
    auth = ["-H", "Authorization: Bearer " + sim.info["api_key"]]
    base = sim.info["cloud_url"] + "/api/v1/"
    t0 = time.monotonic()
    if size > 512 * MiB:
        subprocess.run(["curl", "-sf", "-D", path + ".h", "-o", "/dev/null", "-X", "POST", "-T", path,
                        "-H", "Content-Type: application/octet-stream"] + auth +
                       [base + "temp-contents?filename=curl-app.qvf"], check=True)
        with open(path + ".h") as fh:
            loc = [ln.split(":", 1)[1].strip() for ln in fh if ln.lower().startswith("location:")][0]
        file_id = loc.rstrip("/").rsplit("/", 1)[-1]
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-X", "POST", "-H", "Content-Type: application/json",
                        "--data-raw", "{}"] + auth + [base + f"apps/import?fileId={file_id}&name=curl-app"],
                       check=True)
    else:
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-X", "POST", "-T", path,
                        "-H", "Content-Type: application/octet-stream"] + auth +
                       [base + "apps/import?name=curl-app"], check=True)
    up = time.monotonic() - t0
    os.remove(path)
    return down, up


# --------------------------------------------------------------------------- main

class Ctx:
    pass


def fmt_s(x):
    return f"{x:8.2f}"


def rate_limit_figures(steps, rates, burst):
    """Per tier: requests / what the server allowed, over the steps that
    tier bound.  A step is bound by the tier whose requests need the most
    time at its allowed rate; steps with fewer than 3 bursts' worth of such
    requests are left out (they take one burst, not a rate).  Over a step of
    T seconds the simulator allows at most burst + rate * T requests of the
    tier (its bucket full at the start), so the ratio is at most 1."""
    out = {}
    for t, per_minute in rates.items():
        n = secs = allowed = 0.0
        for row in steps:
            per_tier = {}
            for ep, k in (row.get("endpoints") or {}).items():
                per_tier[tier_of(ep)] = per_tier.get(tier_of(ep), 0) + k
            need = {tt: per_tier.get(tt, 0) / (r / 60.0) for tt, r in rates.items()}
            if not need or max(need, key=need.get) != t or per_tier.get(t, 0) < 3 * burst:
                continue
            n += per_tier[t]
            secs += row["run_s"]
            allowed += burst + per_minute / 60.0 * row["run_s"]
        out[t] = (n, secs, (n / secs * 60.0) if secs else 0.0, per_minute, n / allowed if allowed else 0)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the small variant (make bench-quick)")
    p.add_argument("--bin", default=os.environ.get("QMIG_BIN", "./qmig-lua"))
    p.add_argument("--work", default=os.path.join(ROOT, "bench", "work"))
    p.add_argument("--only", default="1,2,3,4,5", help="parts to run, e.g. 1,4")
    p.add_argument("--curl-max", type=int, default=None,
                   help="replay at most N calls in part 5, scaled to all (default: quick 300, full 5000; 0: all)")
    a = p.parse_args(argv)
    parts = set(a.only.split(","))
    ctx = Ctx()
    ctx.bin = os.path.abspath(a.bin)
    ctx.work = os.path.abspath(a.work)
    os.makedirs(ctx.work, exist_ok=True)
    quick = a.quick
    size = SIZES["quick" if quick else "full"]
    big = (256 if quick else 2048) * MiB
    curl_max = a.curl_max if a.curl_max is not None else (300 if quick else 5000)
    concs = (1, 4, 16)
    faults = {"latency_ms": LATENCY_MS}
    t_start = time.monotonic()
    out = []

    def say(line=""):
        out.append(line)
        print(line, flush=True)

    site_path = os.path.join(ctx.work, "site.json")
    site = make_site(site_path, *size)
    say(f"qmig-lua benchmark ({'bench-quick' if quick else 'bench'}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    say(f"site: {size[0]} apps, {size[1]} users, {size[2]} streams, {size[3]} data connections, "
        f"{size[4]} reload tasks; simulated latency {LATENCY_MS} ms per request")

    runs = {}
    if "1" in parts or "4" in parts or "5" in parts:
        say("")
        say("1. full job (demo job's steps), rate limits off")
        say(f"   {'conc':>4} {'requests':>9} {'wall s':>8} {'ideal s':>8} {'effic.':>7} {'speed-up':>8} "
            f"{'qmig CPU s':>10} {'sim CPU s':>9} {'failed':>6}")
        # highest concurrency first: its figures (and part 4) are the ones
        # wanted soonest when the full bench is watched
        for c in sorted(concs, reverse=True):
            wanted = {1: "15", 4: "1", 16: "145"}.get(c, "1")
            if not parts & set(wanted):
                continue
            log(f"part 1: concurrency {c}")
            r, sim = run_job(ctx, f"c{c}", site_path, site, c, faults, verbose=(c == 1),
                             keep_sim=(c in (1, 16)))
            r.ideal = r.requests * LATENCY_MS / 1000.0 / c
            runs[c] = (r, sim)
            log(f"  concurrency {c}: {r.requests} requests, wall {r.wall:.2f} s, ideal {r.ideal:.2f} s")
        for c in concs:
            if c not in runs:
                continue
            r = runs[c][0]
            base = runs.get(1)
            speed = f"{base[0].wall / r.wall:7.1f}x" if base else "       -"
            say(f"   {c:>4} {r.requests:>9} {fmt_s(r.wall)} {fmt_s(r.ideal)} {r.ideal / r.wall:>7.2f} {speed:>8} "
                f"{r.cpu:>10.1f} {r.sim_cpu:>9.1f} {r.failed:>6}")
        for c in concs:
            if c in runs and runs[c][0].failed:
                for line in failure_reasons(os.path.join(ctx.work, f"c{c}", "project")):
                    say(f"   failed at {c}: {line}")
        if 16 in runs:
            r = runs[16][0]
            say(f"   target at 16: efficiency >= 0.80, speed-up >= 10x; "
                f"sequential part (items() listings) at 16: {sum(s['items_s'] for s in r.steps):.2f} s")

    if "2" in parts:
        rl_size = (12, 30, 2, 6, 6) if quick else (100, 250, 10, 50, 50)
        rates = ({"tier1": 1200, "tier2": 600, "special": 300} if quick
                 else {"tier1": 3000, "tier2": 1200, "special": 600})
        burst = 5
        rl_site_path = os.path.join(ctx.work, "site-rl.json")
        rl_site = make_site(rl_site_path, *rl_size)
        tiers = {t: {"per_minute": n} for t, n in rates.items()}
        tiers["burst"] = burst
        log("part 2: rate-limit tiers")
        os.environ["BENCH_BURST"] = str(burst)
        r, _ = run_job(ctx, "tiers", rl_site_path, rl_site, 16, dict(faults, tiers=tiers), rate_limits=rates)
        del os.environ["BENCH_BURST"]
        say("")
        say(f"2. rate-limit tiers on (site {rl_size[0]} apps, {rl_size[1]} users, {rl_size[2]} streams, "
            f"{rl_size[3]} connections, {rl_size[4]} tasks; concurrency 16; the same rates in "
            f"options.rate_limits; burst {burst} on both sides; ratio = requests / (burst + rate x time))")
        say(f"   {'tier':>8} {'allowed/min':>11} {'requests':>9} {'in s':>8} {'achieved/min':>12} {'ratio':>6}")
        for t, (n, secs, got, allowed, ratio) in rate_limit_figures(r.steps, rates, burst).items():
            ratio = f"{ratio:6.2f}" if secs else "     -"
            say(f"   {t:>8} {allowed:>11} {int(n):>9} {secs:>8.2f} {got:>12.0f} {ratio}")
        say(f"   wall {r.wall:.2f} s, {r.requests} requests, {r.counts['by_status'].get('429', 0)} answered 429, "
            f"items failed {r.failed} (target: ratio >= 0.90, 0 failed)")
        for line in failure_reasons(os.path.join(ctx.work, "tiers", "project")) if r.failed else []:
            say(f"   failed: {line}")

    if "3" in parts:
        log(f"part 3: one {big // MiB} MiB app")
        big_path = os.path.join(ctx.work, "site-big.json")
        big_site = make_site(big_path, 1, 1, 1, 0, 0, big)
        steps = [("apps", ["spaces.create", "apps.export", "apps.import"])]
        r, sim = run_job(ctx, "bigapp", big_path, big_site, 4, {}, steps=steps, with_data=True, keep_sim=True)
        t = {s["step"]: s["run_s"] for s in r.steps}
        down, up = curl_move(sim, ctx.work, big)
        sim.stop()
        shutil.rmtree(os.path.join(ctx.work, "bigapp"), ignore_errors=True)
        mb = big / MiB
        say("")
        say(f"3. one {mb:.0f} MiB app with data, export + import, no latency")
        say(f"   {'':>16} {'export s':>9} {'MiB/s':>7} {'import s':>9} {'MiB/s':>7} {'peak RSS MiB':>12}")
        say(f"   {'qmig-lua':>16} {t.get('apps.export', 0):>9.2f} {mb / max(t.get('apps.export', 0), 1e-9):>7.0f} "
            f"{t.get('apps.import', 0):>9.2f} {mb / max(t.get('apps.import', 0), 1e-9):>7.0f} {r.maxrss / MiB:>12.1f}")
        say(f"   {'curl':>16} {down:>9.2f} {mb / down:>7.0f} {up:>9.2f} {mb / up:>7.0f} {'-':>12}")
        say(f"   target: peak RSS <= 40 MiB (qmig-lua exit {r.status}, failed {r.failed})")

    if "4" in parts and 16 in runs:
        log("part 4: re-run of the completed job")
        r16, sim16 = runs[16]
        job = os.path.join(ctx.work, "c16", "job.yaml")
        sim16.reset_counters()
        rr = run_qmig(ctx.bin, ["run", job, "--quiet"], os.path.join(ctx.work, "c16", "rerun.log"))
        cnt = sim16.counts()
        say("")
        say("4. re-run of the completed job (concurrency 16, same simulator and project)")
        say(f"   requests {cnt['total']}, write requests {cnt['total_writes']} (target 0), wall {rr.wall:.2f} s "
            f"(first run {r16.wall:.2f} s), exit {rr.status}")
    for c in (16,):
        if c in runs:
            runs[c][1].stop()

    if "5" in parts and 1 in runs:
        log("part 5: sequential curl loop")
        r1, sim1 = runs[1]
        sim1.stop()
        sim = Sim(ctx.work, "curl", site_path, faults)
        script, total, n = replay_script(sim1.log_path, sim, os.path.join(ctx.work, "curl-replay.sh"), curl_max)
        wall = timed(["bash", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sim.stop()
        scaled = wall * total / n
        say("")
        say("5. sequential curl loop (one curl process per call, the concurrency-1 run's calls in order)")
        note = "" if n == total else f" ({n} of them replayed in {wall:.1f} s, scaled)"
        say(f"   {total} calls: curl loop {scaled:.2f} s{note}; qmig-lua concurrency 1 {r1.wall:.2f} s, "
            f"16 {runs[16][0].wall if 16 in runs else float('nan'):.2f} s "
            f"-> qmig-lua at 16 is {scaled / runs[16][0].wall if 16 in runs else float('nan'):.1f}x faster")
    elif 1 in runs:
        runs[1][1].stop()

    say("")
    say(f"bench took {time.monotonic() - t_start:.0f} s; details in {ctx.work}")
    with open(os.path.join(ctx.work, "results.txt"), "w") as fh:
        fh.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
