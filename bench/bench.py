#!/usr/bin/env python3
"""qmig-lua benchmark (bench/README.md explains every figure).

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
              steps=None, extra_options="", target=None):
    """A job file with the demo job's plan and steps for a generated site (JSON
    flow style is YAML).  Every connection is mapped to a stream's space so
    dataconnections.migrate creates it.  The source is `sim`'s QRS half, the
    target `target`'s Cloud half (default: the same simulator's)."""
    target = target or sim
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
        f"  url: {target.info['cloud_url']}",
        f"  api_key: {target.info['api_key']}",
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


def start_qmig(binary, args, log_path, env=None):
    """Starts qmig-lua (see finish_qmig); several may run at once."""
    rss_file = log_path + ".maxrss"
    wrap = ["/usr/bin/time", "-f", "%M", "-o", rss_file] if os.path.exists("/usr/bin/time") else []
    out = open(log_path, "wb")
    h = Result()
    h.t0 = time.monotonic()
    h.proc = subprocess.Popen(wrap + [binary] + args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                              env=env)
    out.close()
    h.rss_file, h.wrap, h.log = rss_file, wrap, log_path
    return h


def finish_qmig(h):
    """Waits for a qmig-lua started by start_qmig; returns wall time, exit
    status, CPU time and peak RSS.  The peak RSS comes from GNU time (%M,
    the ru_maxrss of the process it forked): the ru_maxrss of a child forked
    by this Python process itself would include this process's own RSS,
    which Linux carries over exec."""
    _, status, ru = os.wait4(h.proc.pid, 0)
    return ended(h, status, ru, time.monotonic())


def finish_all(handles):
    """finish_qmig for several at once, each timed when it ends."""
    by_pid = {h.proc.pid: h for h in handles}
    done = {}
    while len(done) < len(handles):
        pid, status, ru = os.wait4(-1, 0)
        if pid in by_pid:
            done[pid] = ended(by_pid[pid], status, ru, time.monotonic())
    return [done[h.proc.pid] for h in handles]


def ended(h, status, ru, now):
    r = Result()
    r.wall = now - h.t0
    r.status = os.waitstatus_to_exitcode(status)
    h.proc.returncode = r.status
    r.cpu = ru.ru_utime + ru.ru_stime
    r.maxrss = ru.ru_maxrss * 1024
    if h.wrap:
        try:
            with open(h.rss_file) as fh:
                r.maxrss = int(fh.read().split()[-1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    r.log = h.log
    return r


def run_qmig(binary, args, log_path, env=None):
    return finish_qmig(start_qmig(binary, args, log_path, env))


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


def sleeps_row(log_path):
    """The `sleeps` line of bench/steptimes.lua: seconds slept (summed over
    tasks) per place in the product that slept."""
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("sleeps "):
                return json.loads(line[len("sleeps "):])
    return {}


def limits_row(log_path):
    """The `limits` line bench/steptimes.lua prints last: 429s this process
    was answered per tier, and its limiter's figures."""
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("limits "):
                d = json.loads(line[len("limits "):])
                seen = d.get("seen429") or {}
                d["seen429"] = seen if isinstance(seen, dict) else {}
                return d
    return {"seen429": {}, "stats": {}}


class Poller:
    """Samples a simulator's per-tier request counts (cumulative, with the
    wall-clock time) every `every` seconds in a thread: the counts of one
    identity when several processes use the same simulator."""

    def __init__(self, sim, every=0.1):
        import threading
        self.sim, self.every, self.samples = sim, every, []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def sample(self):
        per = {}
        for ep, k in self.sim.counts()["requests"].items():
            per[tier_of(ep)] = per.get(tier_of(ep), 0) + k
        self.samples.append((time.time(), per))

    def loop(self):
        while not self.stop_flag.is_set():
            try:
                self.sample()
            except OSError:
                pass
            self.stop_flag.wait(self.every)

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        self.sample()

    def at(self, tier, t):
        """The tier's cumulative count at wall time t (linear between samples)."""
        import bisect
        times = [x[0] for x in self.samples]
        i = bisect.bisect_left(times, t)
        if i == 0:
            return self.samples[0][1].get(tier, 0) if self.samples else 0
        if i >= len(times):
            return self.samples[-1][1].get(tier, 0)
        (ta, a), (tb, b) = self.samples[i - 1], self.samples[i]
        ca, cb = a.get(tier, 0), b.get(tier, 0)
        return ca + (cb - ca) * (t - ta) / max(tb - ta, 1e-9)


def bound_tier(row, rates, burst):
    """The tier that bounds a step of one process (its own requests per tier:
    the one needing the most time at its allowed rate), or None when that
    tier has fewer than 3 bursts' worth (the step takes a burst, not a rate)."""
    own = row.get("tiers") or {}
    need = {t: own.get(t, 0) / (r / 60.0) for t, r in rates.items()}
    t = max(need, key=need.get) if need else None
    return t if t and own.get(t, 0) >= 3 * burst else None


def own_rate_figures(steps, rates, burst):
    """rate_limit_figures from a process's own counts (`tiers`), so right
    when other processes share the simulator: the process's requests over
    what the server allows the identity in those steps."""
    out = {}
    for t, per_minute in rates.items():
        n = secs = allowed = 0.0
        for row in steps:
            if bound_tier(row, rates, burst) != t:
                continue
            n += row["tiers"][t]
            secs += row["run_s"]
            allowed += burst + per_minute / 60.0 * row["run_s"]
        out[t] = (n, secs, (n / secs * 60.0) if secs else 0.0, per_minute, n / allowed if allowed else 0)
    return out


def identity_rate_figures(procs_steps, poller, rates, burst):
    """Per tier, for one identity used by several processes: the time during
    which at least one process was in a step that tier bounds (the union of
    those intervals), the requests of that tier the simulator counted
    during it (whichever process sent them), and their ratio to what it
    allowed: one burst per interval plus the rate over its length."""
    out = {}
    for t, per_minute in rates.items():
        spans = sorted((row["run_at"], row["end_at"]) for steps in procs_steps for row in steps
                       if bound_tier(row, rates, burst) == t)
        merged = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        n = sum(poller.at(t, b) - poller.at(t, a) for a, b in merged)
        secs = sum(b - a for a, b in merged)
        allowed = sum(burst + per_minute / 60.0 * (b - a) for a, b in merged)
        out[t] = (n, secs, (n / secs * 60.0) if secs else 0.0, per_minute, n / allowed if allowed else 0)
    return out


def second_site(site):
    """The same generated site under other names (streams, apps, connections,
    tasks, users, extensions), for a second project migrating into the same
    tenant: nothing the two make collides."""
    text = json.dumps(site)
    for a, b in (("Stream ", "Second Stream "), ("App ", "Second App "), ("Conn ", "Second Conn "),
                 ("user0", "second0"), ("gen-ext-", "second-ext-"), ("gen-theme", "second-theme"),
                 ("Trigger ", "Second trigger "), ("After task ", "Second after task ")):
        text = text.replace(a, b)
    return json.loads(text)


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


# --------------------------------------------------------------------------- part 6

DEMO_SITE = os.path.join(ROOT, "examples", "demo", "site.json")
DEMO_JOB = os.path.join(ROOT, "examples", "demo", "job.yaml")
# The faults (bench/README.md, part 6); the simulator draws each
# request's fate from (seed, request, attempt), so a seed is one scenario.
DEMO_FAULTS = {"error_rate": 0.10, "error_status": 503, "rate_429": 0.05, "retry_after": 1,
               "drop_rate": 0.02}


def run_demo(ctx, name, faults, options=""):
    """The demo job as `make demo` runs it (examples/demo/job.yaml: its own
    options, so the default rate limits), on a fresh simulator and project;
    `options` adds to the job's options."""
    sim = Sim(ctx.work, name, DEMO_SITE, faults)
    d = sim.dir
    job = DEMO_JOB
    if options:
        job = os.path.join(d, "job.yaml")
        with open(DEMO_JOB, encoding="utf-8") as fh:
            text = fh.read()
        assert "options: {concurrency: 8}" in text, "examples/demo/job.yaml: its options line changed"
        with open(job, "w", encoding="utf-8") as fh:
            fh.write(text.replace("options: {concurrency: 8}", "options: {concurrency: 8, " + options + "}"))
    secrets = os.path.join(d, "secrets.yaml")
    with open(os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write("Finance DB: {username: qlik_reader, password: demo-finance-password}\n"
                 "Sales DB (CORP_jdoe): {username: qlik_reader, password: demo-sales-password}\n")
    env = dict(os.environ, QMIG_DEMO_QRS_URL=sim.info["qrs_url"], QMIG_DEMO_CLOUD_URL=sim.info["cloud_url"],
               QMIG_DEMO_API_KEY=sim.info["api_key"], QMIG_DEMO_CERTS=os.path.join(ctx.work, "certs"),
               QMIG_DEMO_PROJECT=os.path.join(d, "project"), QMIG_DEMO_DIR=d,
               BENCH_SIM_URL=sim.info["cloud_url"])
    r = run_qmig(ctx.bin, ["bench/steptimes.lua", "run", job, "--quiet"], os.path.join(d, "run.log"), env)
    r.counts = sim.counts()
    sim.stop()
    r.failed = failed_items(r.log)
    r.steps = step_rows(r.log)
    r.project = os.path.join(d, "project")
    if r.status not in (0, 1):
        log(f"{name}: qmig-lua exited with {r.status}; see {r.log}")
    return r


def part6(ctx, say, seeds):
    seeds = [int(x) for x in seeds.split(",") if x]
    log("part 6: demo job without faults")
    clean = run_demo(ctx, "faults-none", {"latency_ms": LATENCY_MS})
    say("")
    say(f"6. the demo job (examples/demo) under faults: {DEMO_FAULTS['error_rate']:.0%} 503, "
        f"{DEMO_FAULTS['rate_429']:.0%} 429 (Retry-After {DEMO_FAULTS['retry_after']}), "
        f"{DEMO_FAULTS['drop_rate']:.0%} dropped connections, both halves, {LATENCY_MS} ms latency; "
        "the job's own options (concurrency 8, default rate limits)")
    say(f"   {'faults':>10} {'requests':>9} {'wall s':>8} {'ratio':>6} {'429':>5} {'503':>5} {'drops':>5} "
        f"{'failed':>6} {'exit':>4}")
    say(f"   {'none':>10} {clean.counts['total']:>9} {fmt_s(clean.wall)} {1:>6.2f} {0:>5} {0:>5} {0:>5} "
        f"{clean.failed:>6} {clean.status:>4}")
    runs = []
    for seed in seeds:
        log(f"part 6: demo job with faults, seed {seed}")
        r = run_demo(ctx, f"faults-{seed}", dict(DEMO_FAULTS, latency_ms=LATENCY_MS, seed=seed))
        runs.append(r)
        inj = r.counts["injected"]
        say(f"   {'seed ' + str(seed):>10} {r.counts['total']:>9} {fmt_s(r.wall)} {r.wall / clean.wall:>6.2f} "
            f"{inj.get('429', 0):>5} {inj.get('error', 0):>5} {inj.get('drop', 0):>5} {r.failed:>6} {r.status:>4}")
    worst = max(runs, key=lambda x: x.wall)
    say(f"   worst ratio {worst.wall / clean.wall:.2f}, items failed {sum(x.failed for x in runs)} "
        f"(target: ratio <= 2.5, 0 failed)")
    for r in runs:
        for line in failure_reasons(r.project) if r.failed else []:
            say(f"   failed: {line}")
    # where the time went: the steps that grew the most under faults, and
    # the share of the run their items() listings took (sequential)
    base = {row["step"]: row["items_s"] + row["run_s"] for row in clean.steps}
    grown = sorted(((row["items_s"] + row["run_s"] - base.get(row["step"], 0), row) for row in worst.steps),
                   key=lambda x: -x[0])[:3]
    slept = sorted(sleeps_row(worst.log).items(), key=lambda x: -x[1])[:4]
    say("   slept most in the worst run (summed over tasks): " + ", ".join(f"{w} {s:.1f} s" for w, s in slept))
    say("   grew most in the worst run: " + ", ".join(
        f"{row['step']} +{g:.1f} s (items() {row['items_s']:.1f} s, {row['n']} items)" for g, row in grown))
    for g, row in grown:
        causes = step_sleeps(row)
        if causes:
            say(f"     {row['step']} slept (summed over tasks): " + ", ".join(
                f"{c} {s:.1f} s" for c, s in sorted(causes.items(), key=lambda x: -x[1])[:5]))


def step_sleeps(row):
    """A steptime row's sleeps by cause: the limiter's per tier (its own
    count of waits), retry backoff, ensure's catalogue-lag looks, and any
    other place by file:line."""
    out = {f"limiter {t}": w for t, w in (row.get("waited") or {}).items() if w >= 0.05}
    for where, s in (row.get("sleeps") or {}).items():
        f = where.rsplit(":", 1)[0]
        cause = {"qmig/retry.lua": "retry", "qmig/ensure.lua": "ensure"}.get(f)
        if f == "qmig/limiter.lua" or s < 0.05:
            continue
        out[cause or where] = out.get(cause or where, 0) + s
    return out


def demo_env(ctx, d, sim):
    secrets = os.path.join(d, "secrets.yaml")
    with open(os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write("Finance DB: {username: qlik_reader, password: demo-finance-password}\n"
                 "Sales DB (CORP_jdoe): {username: qlik_reader, password: demo-sales-password}\n")
    return dict(os.environ, QMIG_DEMO_QRS_URL=sim.info["qrs_url"], QMIG_DEMO_CLOUD_URL=sim.info["cloud_url"],
                QMIG_DEMO_API_KEY=sim.info["api_key"], QMIG_DEMO_CERTS=os.path.join(ctx.work, "certs"),
                QMIG_DEMO_PROJECT=os.path.join(d, "project"), QMIG_DEMO_DIR=d,
                BENCH_SIM_URL=sim.info["cloud_url"])


def app_rows(app):
    return sum(int(t.get("no_of_rows", 0)) for t in (app.get("data_model") or {}).get("tables") or [])


def part7(ctx, say):
    """apps.validate over both engines: the demo site migrated at
    concurrency 4 (rate limits off), then `--step apps.validate --force`
    timed; and a site of the demo's largest app alone (the one whose
    validation reads the most cells), validated the same way, for the peak
    RSS of validating it."""
    with open(DEMO_SITE, encoding="utf-8") as fh:
        demo = json.load(fh)
    with open(DEMO_JOB, encoding="utf-8") as fh:
        text = fh.read()
    assert "options: {concurrency: 8}" in text, "examples/demo/job.yaml: its options line changed"
    job_text = text.replace("options: {concurrency: 8}", "options: {concurrency: 4, rate_limits: false}")
    figures, largest = {}, None
    for tag in ("all", "largest"):
        # the largest app: the one whose validation reads the most cells
        apps = demo["qrs"]["apps"] if tag == "all" else [largest]
        names = {a["name"] for a in apps}
        site = dict(demo, qrs=dict(demo["qrs"], apps=apps, reload_tasks=[
            t for t in demo["qrs"].get("reload_tasks", []) if t.get("app") in names]))
        d = os.path.join(ctx.work, f"validate-{tag}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        site_path = os.path.join(d, "site.json")
        with open(site_path, "w", encoding="utf-8") as fh:
            json.dump(site, fh)
        sim = Sim(ctx.work, f"validate-{tag}-sim", site_path, {})
        job = os.path.join(d, "job.yaml")
        with open(job, "w", encoding="utf-8") as fh:
            fh.write(job_text)
        env = demo_env(ctx, d, sim)
        log(f"part 7: migrating ({tag})")
        first = run_qmig(ctx.bin, ["run", job, "--quiet"], os.path.join(d, "run.log"), env)
        log(f"part 7: validating ({tag})")
        r = run_qmig(ctx.bin, ["bench/steptimes.lua", "run", job, "--quiet", "--step", "apps.validate", "--force"],
                     os.path.join(d, "validate.log"), env)
        sim.stop()
        row = next((x for x in step_rows(r.log) if x["step"] == "apps.validate"), {"run_s": 0, "n": 0})
        with open(os.path.join(d, "project", "reports", "validation.json"), encoding="utf-8") as fh:
            v = json.load(fh)
        outcomes = {}
        for a in v["apps"]:
            outcomes[a["outcome"]] = outcomes.get(a["outcome"], 0) + 1
        figures[tag] = (r, row, outcomes, first.status, sum(a.get("cells") or 0 for a in v["apps"]))
        if tag == "all":
            heaviest = max(v["apps"], key=lambda a: a.get("cells") or 0)["name"]
            largest = next(a for a in demo["qrs"]["apps"] if a["name"] == heaviest)
    say("")
    say("7. apps.validate over both engines (the demo site, concurrency 4, rate limits off; "
        "one session per app and side, at most 4 per host)")
    r, row, outcomes, _, cells = figures["all"]
    secs = row["run_s"] or r.wall
    say(f"   {len(demo['qrs']['apps'])} apps in {secs:.2f} s: {len(demo['qrs']['apps']) / secs:.1f} apps validated/s, "
        f"{cells / secs:.0f} cells/s; outcomes {json.dumps(outcomes, sort_keys=True)} "
        f"(exit {r.status}: 1 is the app the demo site makes differ)")
    r, row, outcomes, _, cells = figures["largest"]
    say(f"   the largest app alone ('{largest['name']}', {app_rows(largest)} rows, {cells} cells compared): "
        f"peak RSS {r.maxrss / MiB:.1f} MiB, {row['run_s']:.2f} s (target: peak RSS <= 40 MiB)")


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
    p.add_argument("--only", default="1,2,3,4,5,6,7", help="parts to run, e.g. 1,4")
    p.add_argument("--fault-seeds", default=None,
                   help="part 6: one faulted run per seed of the simulator's random faults "
                        "(default: quick 1, full 1,2,3)")
    p.add_argument("--curl-max", type=int, default=None,
                   help="replay at most N calls in part 5, scaled to all (default: quick 300, full 5000; 0: all)")
    a = p.parse_args(argv)
    parts = set(a.only.split(","))
    ctx = Ctx()
    ctx.bin = os.path.abspath(a.bin)
    ctx.work = os.path.abspath(a.work)
    os.makedirs(ctx.work, exist_ok=True)
    # the shared rate budgets (qmig.rate.budget) of the runs stay in the work
    # folder: no other qmig-lua of this user joins them, nor the reverse
    os.environ["QMIG_CACHE_DIR"] = os.path.join(ctx.work, "cache")
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
        say("")
        say(f"2. rate-limit tiers on (site {rl_size[0]} apps, {rl_size[1]} users, {rl_size[2]} streams, "
            f"{rl_size[3]} connections, {rl_size[4]} tasks; concurrency 16; the same rates in "
            f"options.rate_limits; burst {burst} on both sides; ratio = requests / (burst + rate x time))")
        os.environ["BENCH_BURST"] = str(burst)
        log("part 2: rate-limit tiers, one process")
        r, _ = run_job(ctx, "tiers", rl_site_path, rl_site, 16, dict(faults, tiers=tiers), rate_limits=rates)
        say(f"   {'tier':>8} {'allowed/min':>11} {'requests':>9} {'in s':>8} {'achieved/min':>12} {'ratio':>6}")
        for t, (n, secs, got, allowed, ratio) in rate_limit_figures(r.steps, rates, burst).items():
            ratio = f"{ratio:6.2f}" if secs else "     -"
            say(f"   {t:>8} {allowed:>11} {int(n):>9} {secs:>8.2f} {got:>12.0f} {ratio}")
        n429 = r.counts["by_status"].get("429", 0)
        say(f"   wall {r.wall:.2f} s, {r.requests} requests, {n429} answered 429 "
            f"({n429 / (r.wall / 60):.1f}/min), items failed {r.failed} "
            f"(target: ratio >= 0.95, <= 1 429/min, 0 failed)")
        for line in failure_reasons(os.path.join(ctx.work, "tiers", "project")) if r.failed else []:
            say(f"   failed: {line}")

        # Two projects, one tenant, one API key: the second migrates the same
        # site under other names from its own source (a second simulator, its
        # QRS half only), into the first simulator's tenant, at the same time.
        log("part 2: rate-limit tiers, two processes on one identity")
        two_site_path = os.path.join(ctx.work, "site-rl2.json")
        two_site = second_site(rl_site)
        with open(two_site_path, "w", encoding="utf-8") as fh:
            json.dump(two_site, fh, separators=(",", ":"))
        sim_a = Sim(ctx.work, "tiers2-a", rl_site_path, dict(faults, tiers=tiers))
        sim_b = Sim(ctx.work, "tiers2-b", two_site_path, faults)
        procs = []
        for tag, src, site_, path in (("a", sim_a, rl_site, rl_site_path), ("b", sim_b, two_site, two_site_path)):
            d = os.path.join(ctx.work, f"tiers2-{tag}")
            job = os.path.join(d, "job.yaml")
            write_job(job, src, os.path.join(d, "project"), site_, 16, rates, target=sim_a)
            if tag == "b":   # its own staging space: the first run's is not the second's to adopt
                with open(job, encoding="utf-8") as fh:
                    text = fh.read()
                with open(job, "w", encoding="utf-8") as fh:
                    fh.write(text.replace("staging: Migration staging", "staging: Second staging"))
            procs.append((tag, d, job))
        sim_a.reset_counters()
        poll = Poller(sim_a)
        env = dict(os.environ, BENCH_SIM_URL=sim_a.info["cloud_url"])
        handles = [start_qmig(ctx.bin, ["bench/steptimes.lua", "run", job, "--quiet"],
                              os.path.join(d, "run.log"), env) for _, d, job in procs]
        results = finish_all(handles)
        poll.stop()
        counts = sim_a.counts()
        sim_a.stop()
        sim_b.stop()
        say(f"   two processes at once on one identity (second site: the same under other names; "
            f"per process: its own requests, ratio against the whole tier)")
        say(f"   {'':>8} {'tier':>8} {'allowed/min':>11} {'requests':>9} {'in s':>8} {'achieved/min':>12} "
            f"{'ratio':>6}")
        all_steps = []
        for (tag, d, _), rr in zip(procs, results):
            rr.steps = step_rows(rr.log)
            rr.failed = failed_items(rr.log)
            rr.limits = limits_row(rr.log)
            all_steps.append(rr.steps)
            for t, (n, secs, got, allowed, ratio) in own_rate_figures(rr.steps, rates, burst).items():
                ratio = f"{ratio:6.2f}" if secs else "     -"
                say(f"   {'proc ' + tag:>8} {t:>8} {allowed:>11} {int(n):>9} {secs:>8.2f} {got:>12.0f} {ratio}")
        for t, (n, secs, got, allowed, ratio) in identity_rate_figures(all_steps, poll, rates, burst).items():
            ratio = f"{ratio:6.2f}" if secs else "     -"
            say(f"   {'both':>8} {t:>8} {allowed:>11} {int(n):>9} {secs:>8.2f} {got:>12.0f} {ratio}")
        for (tag, d, _), rr in zip(procs, results):
            seen = sum(rr.limits["seen429"].values())
            say(f"   proc {tag}: wall {rr.wall:.2f} s, {seen} answered 429 ({seen / (rr.wall / 60):.1f}/min), "
                f"items failed {rr.failed}, exit {rr.status}")
            for line in failure_reasons(os.path.join(d, "project")) if rr.failed else []:
                say(f"   failed ({tag}): {line}")
        span = max(rr.wall for rr in results)
        n429 = counts["by_status"].get("429", 0)
        say(f"   both: wall {span:.2f} s, {counts['total']} requests to the tenant, {n429} answered 429 "
            f"({n429 / (span / 60):.1f}/min), items failed {sum(rr.failed for rr in results)} "
            f"(target: ratio >= 0.95, <= 1 429/min, 0 failed)")
        del os.environ["BENCH_BURST"]

    if "6" in parts:
        part6(ctx, say, a.fault_seeds or ("1" if quick else "1,2,3"))

    if "7" in parts:
        part7(ctx, say)

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
