"""qliksim core: HTTP(S) listeners, request/response plumbing, faults, counters.

The two API halves (qrs.QRS and cloud.Cloud) plug in through a tiny interface:
    __init__(seed: dict, ctx: SimContext)
    handle(req: Request) -> Response      (may raise ApiError)
    state() -> dict
    tier(method, path) -> str
"""
import collections
import cProfile
import datetime
import email.parser
import hashlib
import http.client
import io
import json
import math
import os
import pstats
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 << 20          # body() / json() / multipart() limit
PREBUFFER = 1 << 20          # small bodies are read up front (fault hashing)
DRAIN_LIMIT = 16 << 20      # unread request bodies up to this size are drained (keep-alive)
IO_CHUNK = 1 << 20
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CLIENT_KEY_PASSWORD = "qliksim-pass"


# --------------------------------------------------------------------------- errors / responses

class ApiError(Exception):
    """An error a handler wants rendered in its half's error shape."""

    def __init__(self, status, code, title, detail=None, headers=None):
        super().__init__(f"{status} {code} {title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})


class Response:
    def __init__(self, status, body=None, headers=None, content_type=None,
                 file=None, chunks=None, length=None):
        self.status = status
        self.headers = dict(headers or {})
        self.file = file
        self.chunks = chunks
        self.length = length
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            content_type = content_type or "application/json; charset=utf-8"
        elif isinstance(body, str):
            body = body.encode("utf-8")
            content_type = content_type or "text/plain; charset=utf-8"
        self.body = body if body is not None else b""
        if content_type:
            self.headers.setdefault("Content-Type", content_type)


def render_error(half_name, err, trace_id):
    """Default error rendering: Cloud JSON shape or QRS plain text."""
    if half_name == "cloud":
        item = {"code": err.code, "title": err.title, "status": str(err.status)}
        if err.detail is not None:
            item["detail"] = err.detail
        return Response(err.status, {"errors": [item], "traceId": trace_id}, headers=err.headers)
    text = err.detail if err.detail is not None else err.title
    return Response(err.status, text, headers=err.headers)


# --------------------------------------------------------------------------- context

class SimContext:
    """Shared services for both halves. Ids are deterministic (seeded counters)."""

    def __init__(self, data_dir, seed=0):
        self.data_dir = data_dir
        self.seed = seed
        self.lock = threading.RLock()
        self.halves = {}
        self._counter = 0

    def reset_ids(self):
        self._counter = 0

    def _next_digest(self):
        with self.lock:
            self._counter += 1
            n = self._counter
        return hashlib.sha256(f"qliksim:{self.seed}:{n}".encode()).digest()

    def new_id(self):
        return str(uuid.UUID(bytes=self._next_digest()[:16], version=4))

    def new_hex_id(self, n=24):
        return self._next_digest().hex()[:n]

    @staticmethod
    def now():
        return datetime.datetime.now(datetime.timezone.utc)

    def iso(self, dt=None):
        dt = dt or self.now()
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"

    def other(self, name):
        return self.halves[name]


# --------------------------------------------------------------------------- request bodies

class _Throttle:
    """Sleeps so that the bytes passed through stay under `bps` per second."""

    def __init__(self, bps):
        self.bps = bps
        self.start = time.monotonic()
        self.done = 0

    def step(self):
        return max(1024, self.bps // 20) if self.bps else IO_CHUNK

    def account(self, n):
        if not self.bps:
            return
        self.done += n
        ahead = self.done / self.bps - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


class _RawBody(io.RawIOBase):
    """Base of the request body readers: `readinto` over the socket's rfile."""

    def __init__(self, rfile, throttle):
        self.rfile, self.throttle = rfile, throttle

    def readable(self):
        return True

    def _limit(self, n):
        return min(n, self.throttle.step()) if self.throttle.bps else n

    def _fill(self, buf, n):
        data = self.rfile.read(n)
        if not data:
            raise ApiError(400, "HTTP-400", "Bad Request", "request body truncated")
        buf[:len(data)] = data
        self.throttle.account(len(data))
        return len(data)


class _LengthReader(_RawBody):
    def __init__(self, rfile, length, throttle):
        super().__init__(rfile, throttle)
        self.left = length

    def readinto(self, buf):
        if self.left <= 0 or not len(buf):
            return 0
        got = self._fill(buf, self._limit(min(len(buf), self.left)))
        self.left -= got
        return got


class _ChunkedReader(_RawBody):
    def __init__(self, rfile, throttle):
        super().__init__(rfile, throttle)
        self.in_chunk = 0
        self.eof = False

    def _next_chunk(self):
        line = self.rfile.readline(1024)
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise ApiError(400, "HTTP-400", "Bad Request", "bad chunk header") from None
        if size == 0:
            while self.rfile.readline(1024).strip():   # trailers
                pass
            self.eof = True
        self.in_chunk = size

    def readinto(self, buf):
        if self.eof or not len(buf):
            return 0
        if self.in_chunk == 0:
            self._next_chunk()
            if self.eof:
                return 0
        got = self._fill(buf, self._limit(min(len(buf), self.in_chunk)))
        self.in_chunk -= got
        if self.in_chunk == 0:
            self.rfile.readline(8)   # CRLF after the chunk data
        return got


class Request:
    def __init__(self, method, raw_path, headers, rfile, client_cert, throttle):
        self.method = method
        self.raw_path = raw_path
        split = urllib.parse.urlsplit(raw_path)
        self.path = urllib.parse.unquote(split.path)
        self.query_list = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        self.query = dict(self.query_list)
        self.headers = headers
        self.client_cert = client_cert
        # state of the connection the request came on (NTLM authenticates a connection:
        # ntlm.py); the core sets it, a request made apart from one gets its own
        self.conn = {}
        self.endpoint = None
        self._prebuffered = None
        self._raw = self._make_raw(rfile, throttle)
        self._stream = io.BufferedReader(self._raw, IO_CHUNK)

    def _make_raw(self, rfile, throttle):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return _ChunkedReader(rfile, throttle)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "HTTP-400", "Bad Request", "bad Content-Length") from None
        return _LengthReader(rfile, length, throttle)

    # -- used by the core
    def prebuffer(self):
        """Read a body small enough up front (before the handler and its lock).
        Returns its bytes, or None for a large or chunked body."""
        if self._prebuffered is None and isinstance(self._raw, _LengthReader) \
                and self._raw.left <= PREBUFFER:
            # read(left), not _read_all: a read of IO_CHUNK allocates a MiB each time
            self._prebuffered = self._stream.read(self._raw.left) if self._raw.left else b""
            self._stream = io.BytesIO(self._prebuffered)
        return self._prebuffered

    def body_key(self):
        """A digest of the body when it is small enough to read up front."""
        data = self.prebuffer()
        return "stream" if data is None else hashlib.sha256(data).hexdigest()

    def drain(self, limit):
        """Discard an unread body; False if more than `limit` bytes remain."""
        left = getattr(self._raw, "left", None)
        if left is not None and left > limit:
            return False
        try:
            got = 0
            while got <= limit:
                data = self._stream.read(IO_CHUNK)
                if not data:
                    return True
                got += len(data)
        except (ApiError, OSError):
            return False
        return False

    # -- used by handlers
    def query_ci(self, name):
        name = name.lower()
        found = None
        for key, value in self.query_list:
            if key.lower() == name:
                found = value
        return found

    def _read_all(self, limit):
        buf = bytearray()
        while True:
            data = self._stream.read(IO_CHUNK)
            if not data:
                return bytes(buf)
            buf += data
            if len(buf) > limit:
                raise ApiError(413, "HTTP-413", "Payload Too Large",
                               f"request body larger than {limit} bytes")

    def body(self):
        return self._read_all(MAX_BODY)

    def json(self):
        raw = self.body()
        try:
            return json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "HTTP-400", "Bad Request", f"invalid JSON body: {exc}") from None

    def body_stream(self):
        return self._stream

    def save_body(self, path):
        total = 0
        with open(path, "wb") as out:
            while True:
                data = self._stream.read(IO_CHUNK)
                if not data:
                    return total
                out.write(data)
                total += len(data)

    def multipart(self):
        ctype = self.headers.get("Content-Type") or ""
        msg = Message()
        msg["Content-Type"] = ctype
        boundary = msg.get_param("boundary")
        if msg.get_content_type() != "multipart/form-data" or not boundary:
            raise ApiError(400, "HTTP-400", "Bad Request", "expected multipart/form-data")
        return parse_multipart(self._read_all(MAX_BODY * 4), boundary.encode("latin-1"))


def parse_multipart(raw, boundary):
    parts = []
    delimiter = b"--" + boundary
    for section in raw.split(delimiter)[1:]:
        if section.startswith(b"--"):
            break
        section = section[2:] if section.startswith(b"\r\n") else section
        head, sep, data = section.partition(b"\r\n\r\n")
        if not sep:
            raise ApiError(400, "HTTP-400", "Bad Request", "malformed multipart part")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key:
                headers[key.strip()] = value.strip()
        disposition = Message()
        disposition["Content-Type"] = "x/" + (headers.get("Content-Disposition") or "")
        parts.append({"name": disposition.get_param("name"),
                      "filename": disposition.get_param("filename"),
                      "content_type": headers.get("Content-Type"),
                      "data": data})
    return parts


# --------------------------------------------------------------------------- faults

def _unit(*parts):
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _rule_matches(match, method, path):
    if match.startswith("~"):
        return re.search(match[1:], f"{method} {path}") is not None
    want_method, _, prefix = match.partition(" ")
    return want_method.upper() == method and path.startswith(prefix)


class Faults:
    """Deterministic fault injection. All state resets when the config is replaced."""

    DEFAULTS = {"seed": 1, "latency_ms": 0, "bandwidth_bps": 0, "error_rate": 0.0,
                "error_status": 503, "rate_429": 0.0, "retry_after": 1, "drop_rate": 0.0,
                "drop_after_apply_rate": 0.0, "slow_rate": 0.0, "slow_ms": 2000,
                "tiers": None, "apply_to": ["cloud", "qrs"], "rules": [],
                "kill_after_writes": None, "catalogue_lag_ms": 0, "engine_faults": []}
    ACTIONS = ("error", "429", "drop", "drop_after_apply", "slow", "kill", "kill_mid_reply")
    RANDOM = (("rate_429", "429"), ("error_rate", "error"), ("drop_rate", "drop"),
              ("drop_after_apply_rate", "drop_after_apply"), ("slow_rate", "slow"))

    def __init__(self, config=None):
        self.lock = threading.Lock()
        self.set(config or {})

    def set(self, config):
        unknown = set(config) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        for rule in config.get("rules") or []:
            if not isinstance(rule.get("match"), str) or rule.get("action") not in self.ACTIONS:
                raise ValueError(f"a rule needs a 'match' string and an action in {self.ACTIONS}")
            if rule["action"] in ("kill", "kill_mid_reply") and "pid" not in rule:
                raise ValueError("a kill rule needs a 'pid'")
        for ef in config.get("engine_faults") or []:
            if not isinstance(ef, dict) or ef.get("action") not in ("stall", "close") \
                    or not isinstance(ef.get("method", "*"), str):
                raise ValueError("an engine fault needs an action 'stall' or 'close' and a 'method' string (or '*')")
        spec = config.get("kill_after_writes")
        if spec is not None and not ("pid" in spec and "n" in spec):
            raise ValueError("kill_after_writes needs 'pid' and 'n'")
        for name, spec in (config.get("tiers") or {}).items():
            window = spec.get("window_s") if isinstance(spec, dict) else None
            if window is not None and (isinstance(window, bool) or not isinstance(window, (int, float))
                                       or window <= 0):
                raise ValueError(f"tiers.{name}.window_s must be a number of seconds > 0")
        lag = config.get("catalogue_lag_ms", 0)
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not 0 <= lag < 1e9:
            raise ValueError("catalogue_lag_ms must be a number of milliseconds >= 0")
        with self.lock:
            self.raw = dict(config)
            self.cfg = {**self.DEFAULTS, **config}
            self.attempts = {}
            self.rule_hits = [0] * len(self.cfg["rules"] or [])
            # only rules and random faults look at a request's keys (decide)
            self.keyed = bool(self.cfg["rules"]) or any(self.cfg[knob] for knob, _ in self.RANDOM)
            self.writes = 0
            self.buckets = {}
            self.blocked_until = {}

    def applies(self, half):
        return half in (self.cfg["apply_to"] or [])

    def decide(self, method, path_key, body_key):
        """Return (action, rule) decided before the handler runs. action may be None."""
        with self.lock:
            key = (method, path_key, body_key)
            attempt = self.attempts.get(key, 0)
            self.attempts[key] = attempt + 1
            chosen = None
            for i, rule in enumerate(self.cfg["rules"] or []):
                if not _rule_matches(rule["match"], method, path_key):
                    continue
                self.rule_hits[i] += 1
                first = int(rule.get("nth", 1))
                in_window = first <= self.rule_hits[i] < first + int(rule.get("times", 1))
                if in_window and chosen is None:
                    chosen = rule
            if chosen is not None:
                return chosen["action"], chosen
            for knob, action in self.RANDOM:
                rate = float(self.cfg[knob] or 0)
                if rate and _unit(self.cfg["seed"], action, method, path_key, body_key,
                                  attempt) < rate:
                    return action, None
        return None, None

    def take_token(self, tier):
        """The tier's limit: a token bucket (refill per_minute/60 a second, capacity
        `burst`), or with `window_s` a sliding window as qlik.dev documents Qlik
        Cloud's tiers (evaluated over 5 minutes): at most per_minute * window_s / 60
        requests in any window_s seconds.  Returns None or the Retry-After seconds."""
        tiers = self.cfg["tiers"] or {}
        spec = tiers.get(tier)
        if not spec:
            return None
        now = time.monotonic()
        with self.lock:
            blocked = self.blocked_until.get(tier, 0)
            if now < blocked:
                return max(1, math.ceil(blocked - now))
            if spec.get("window_s") is not None:
                return self._take_window(tier, spec, now)
            rate = float(spec["per_minute"]) / 60.0
            capacity = float(spec.get("burst", tiers.get("burst", 10)))
            tokens, last = self.buckets.get(tier, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens >= 1:
                self.buckets[tier] = (tokens - 1, now)
                return None
            wait = max(1, math.ceil((1 - tokens) / rate))
            self.buckets[tier] = (tokens, now)
            self.blocked_until[tier] = now + wait
            return wait

    def _take_window(self, tier, spec, now):
        """Sliding window (under self.lock): a log of the times of the tier's
        requests let through in the last window_s seconds (the ones answered 429
        are not in it: they were refused, not served)."""
        window = float(spec["window_s"])
        allowed = int(float(spec["per_minute"]) * window / 60.0)
        log = self.buckets.setdefault(tier, collections.deque())
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) < allowed:
            log.append(now)
            return None
        # until the oldest leaves the window (nothing ever fits when allowed is 0)
        wait = max(1, math.ceil(log[0] + window - now)) if log else max(1, math.ceil(window))
        self.blocked_until[tier] = now + wait
        return wait

    def count_write(self):
        """Count an applied write; return the kill spec if this write triggers it."""
        with self.lock:
            self.writes += 1
            spec = self.cfg["kill_after_writes"]
            if spec and self.writes == int(spec["n"]):
                return spec
        return None


def send_kill(spec):
    try:
        os.kill(int(spec["pid"]), int(spec.get("signal", signal.SIGKILL)))
    except (ProcessLookupError, PermissionError, KeyError, ValueError) as exc:
        print(f"qliksim: kill failed: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------- counters

class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests, self.writes, self.applied, self.by_status = {}, {}, {}, {}
            self.injected = {}
            self.lagged = {}
            self.total = self.total_writes = self.applied_writes = 0

    def request(self, endpoint, status=None, write=False, applied=False):
        """write: a write-method request, whatever its answer (a 409, an injected
        fault, a drop); applied: one whose handler returned 2xx."""
        with self.lock:
            self.requests[endpoint] = self.requests.get(endpoint, 0) + 1
            self.total += 1
            if status is not None:
                key = str(status)
                self.by_status[key] = self.by_status.get(key, 0) + 1
            if write:
                self.writes[endpoint] = self.writes.get(endpoint, 0) + 1
                self.total_writes += 1
            if applied:
                self.applied[endpoint] = self.applied.get(endpoint, 0) + 1
                self.applied_writes += 1

    def inject(self, action):
        """A fault that was acted on: error, 429, tier429, drop, drop_after_apply, slow, kill."""
        with self.lock:
            self.injected[action] = self.injected.get(action, 0) + 1

    def lagged_listing(self, endpoint):
        """A listing that hid an object (or showed an old version) for catalogue_lag_ms."""
        with self.lock:
            self.lagged[endpoint] = self.lagged.get(endpoint, 0) + 1

    def snapshot(self):
        with self.lock:
            return {"requests": dict(self.requests), "writes": dict(self.writes),
                    "applied": dict(self.applied), "injected": dict(self.injected),
                    "lagged_listings": dict(self.lagged),
                    "total": self.total,
                    "total_writes": self.total_writes, "applied_writes": self.applied_writes,
                    "by_status": dict(self.by_status)}


# --------------------------------------------------------------------------- simulator

class Simulator:
    """Holds the site, both halves, the counters and the fault config."""

    def __init__(self, site, half_classes, data_dir, faults=None, certs_dir=None):
        self.site = site
        self.half_classes = half_classes
        self.ctx = SimContext(data_dir, seed=site.get("seed", 0))
        self.ctx.certs_dir = certs_dir   # key material a half keeps across runs (nprinting.py)
        self.counters = Counters()
        self.faults = Faults(faults)
        # the Cloud half reads faults.raw["catalogue_lag_ms"] and counts its lagged listings
        self.ctx.faults, self.ctx.counters = self.faults, self.counters
        self.trace = 0
        self.build_halves()

    def build_halves(self):
        with self.ctx.lock:
            self.ctx.reset_ids()
            self.ctx.halves = {}
            for name, cls in self.half_classes.items():
                self.ctx.halves[name] = cls(self.site.get(name) or {}, self.ctx)

    def half(self, name):
        return self.ctx.halves[name]

    def next_trace(self):
        with self.faults.lock:
            self.trace += 1
            return hashlib.sha256(f"trace{self.trace}".encode()).hexdigest()[:32]

    def control(self, req):
        """Handle /_sim/... requests. Returns a Response."""
        route = (req.method, req.path.rstrip("/"))
        if route == ("GET", "/_sim/state"):
            with self.ctx.lock:
                # a half the site does not have (no "nprinting" section) reports None: left out
                states = {n: h.state() for n, h in self.ctx.halves.items()}
                return Response(200, {n: st for n, st in states.items() if st is not None})
        if route == ("GET", "/_sim/counts"):
            return Response(200, self.counters.snapshot())
        if route == ("POST", "/_sim/reset-counters"):
            self.counters.reset()
            return Response(200, {"ok": True})
        if route == ("GET", "/_sim/faults"):
            return Response(200, self.faults.raw)
        if route == ("POST", "/_sim/faults"):
            try:
                self.faults.set(req.json() or {})
            except (ValueError, TypeError, AttributeError) as exc:   # not a faults object
                return Response(400, {"error": str(exc)})
            return Response(200, self.faults.raw)
        if route == ("POST", "/_sim/reset"):
            self.build_halves()
            self.counters.reset()
            return Response(200, {"ok": True})
        with self.ctx.lock:
            for h in self.ctx.halves.values():
                resp = h.control(req) if hasattr(h, "control") else None
                if resp is not None:
                    return resp
        return Response(404, {"error": f"unknown control path {req.path}"})


class _Dropped(Exception):
    """Raised to close the connection without a reply."""


# http.client's limits on a header line and on the lines of a header block
MAX_HEADER_LINE, MAX_HEADER_LINES = 65536, 100
# email.feedparser's headerRE: a line that does not match ends the headers
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")


def read_headers(rfile):
    """The header block as http.client.parse_headers reads it (same limits, errors
    and email compat32 rules, into the same HTTPMessage) without the email parser,
    which cost a tenth of the time of a small call."""
    lines = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADER_LINES:
            raise http.client.HTTPException(f"got more than {MAX_HEADER_LINES} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    block = b"".join(lines)
    if block.count(b"\r") != block.count(b"\r\n"):
        # a lone CR, which the parser takes for a line end: let it split the lines
        return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
            block.decode("iso-8859-1"))
    msg = http.client.HTTPMessage()
    name = value = None
    for line in lines:
        line = line.decode("iso-8859-1")
        if not _HEADER_LINE.match(line):
            break                       # the blank line (or, for the parser, a body)
        if line[0] in " \t":             # a continuation line
            if name is not None:
                value += line
            continue
        if name is not None:
            msg.set_raw(name, value.rstrip("\r\n"))
            name = None
        colon = line.find(":")
        if line.startswith("From ") or colon == 0:
            continue                    # a defect to the parser: skipped
        name, value = line[:colon], line[colon + 1:].lstrip(" \t")
    if name is not None:
        msg.set_raw(name, value.rstrip("\r\n"))
    return msg


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qliksim/1.0"
    timeout = 300

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("qliksim: " + (fmt % args) + "\n")

    def parse_request(self):
        """BaseHTTPRequestHandler.parse_request for a `METHOD target HTTP/1.x` line,
        with read_headers; any other request line goes to the standard one."""
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return super().parse_request()
        self.requestline = requestline
        self.command, self.path, self.request_version = words
        self.close_connection = self.request_version == "HTTP/1.0"   # 1.1 keeps it open
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")   # as the standard one (gh-87389)
        try:
            self.headers = read_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers",
                            str(err))
            return False
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        if (self.headers.get("Expect", "").lower() == "100-continue"
                and self.request_version == "HTTP/1.1"):
            return self.handle_expect_100()
        return True

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- plumbing
    def setup(self):
        super().setup()
        # the TLS peer's certificate: fixed for the connection, so read once
        getpeercert = getattr(self.connection, "getpeercert", None)
        self.client_cert = getpeercert() if getpeercert else None
        self.conn_state = {}   # lives as long as the connection: Request.conn

    _date = (0, "")     # (second, Date value) of the latest reply

    def date_time_string(self, timestamp=None):
        """The standard Date value, formatted once a second rather than per reply."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        second = int(time.time())
        date = Handler._date
        if date[0] != second:
            date = Handler._date = (second, super().date_time_string(second))
        return date[1]

    def dispatch(self):
        sim, half_name = self.server.sim, self.server.half_name
        faults = sim.faults
        throttle_bps = int(faults.cfg["bandwidth_bps"] or 0) if faults.applies(half_name) else 0
        try:
            req = Request(self.command, self.path, self.headers, self.rfile,
                          self.client_cert, _Throttle(throttle_bps))
        except ApiError as err:
            self.close_connection = True
            return self.send(render_error(half_name, err, sim.next_trace()), throttle_bps)
        req.conn = self.conn_state
        try:
            if req.path.startswith("/_sim/") or req.path == "/_sim":
                resp = sim.control(req)
            else:
                resp = self.run_api(sim, half_name, req)
            self.finish_body(req)
            self.send(resp, throttle_bps)
        except _Dropped:
            self.close_connection = True
        except ApiError as err:
            self.close_connection = True
            self.send(render_error(half_name, err, sim.next_trace()), throttle_bps)
        except (ConnectionError, ssl.SSLError, socket.timeout, BrokenPipeError):
            self.close_connection = True

    def finish_body(self, req):
        if not req.drain(DRAIN_LIMIT):
            self.close_connection = True

    @staticmethod
    def decide(sim, half_name, half, req):
        """The fault action for this request (None, or a name plus its rule)."""
        faults = sim.faults
        if not faults.applies(half_name):
            return None, None
        if faults.keyed:
            action, rule = faults.decide(req.method, _path_key(req), req.body_key())
        else:
            req.prebuffer()
            action = rule = None
        if faults.cfg["latency_ms"]:
            time.sleep(faults.cfg["latency_ms"] / 1000.0)
        if action is None:
            wait = faults.take_token(half.tier(req.method, req.path))
            if wait is not None:
                action, rule = "tier429", {"retry_after": wait}
        return action, rule

    def run_api(self, sim, half_name, req):
        action, rule = self.decide(sim, half_name, sim.half(half_name), req)
        fallback_endpoint = f"{req.method} {req.path}"
        early = self.early_fault(sim, half_name, action, rule)
        write = req.method in WRITE_METHODS
        if action is not None:
            sim.counters.inject(action)
        if early is not None or action == "drop":
            sim.counters.request(fallback_endpoint, None if early is None else early.status, write)
            if early is None:
                raise _Dropped()
            return early
        resp = self.call_half(sim, half_name, req)
        endpoint = req.endpoint or fallback_endpoint
        applied_write = write and 200 <= resp.status < 300
        kill = sim.faults.count_write() if applied_write and sim.faults.applies(half_name) else None
        if action == "kill":
            kill = {"signal": signal.SIGKILL, **rule}
        if kill or action == "drop_after_apply":
            sim.counters.request(endpoint, None, write, applied_write)
            if kill and action != "kill":
                sim.counters.inject("kill")         # kill_after_writes
            if kill:
                send_kill(kill)
            raise _Dropped()
        sim.counters.request(endpoint, resp.status, write, applied_write)
        if action == "kill_mid_reply":
            resp.kill_mid = {"signal": signal.SIGKILL, **rule}
        if action == "slow":
            time.sleep(float((rule or {}).get("slow_ms", sim.faults.cfg["slow_ms"])) / 1000.0)
        return resp

    @staticmethod
    def early_fault(sim, half_name, action, rule):
        """Replies that replace the handler: injected errors and 429s."""
        cfg = sim.faults.cfg
        rule = rule or {}
        if action == "error":
            status = int(rule.get("status", cfg["error_status"]))
            err = ApiError(status, f"HTTP-{status}", "Injected fault", "qliksim injected error")
        elif action in ("429", "tier429"):
            wait = int(rule.get("retry_after", cfg["retry_after"]))
            err = ApiError(429, "HTTP-429", "Too Many Requests", "Rate limit exceeded",
                           headers={"Retry-After": str(wait)})
        else:
            return None
        return _render(sim, half_name, err)

    @staticmethod
    def call_half(sim, half_name, req):
        try:
            with sim.ctx.lock:
                return sim.half(half_name).handle(req)
        except ApiError as err:
            return _render(sim, half_name, err)
        except (ConnectionError, socket.timeout, ssl.SSLError):
            raise                       # the client went away mid-request
        except Exception:   # a simulator bug: report it as a 500 and keep serving
            traceback.print_exc()
            err = ApiError(500, "HTTP-500", "Internal Server Error", "qliksim handler crashed")
            return _render(sim, half_name, err)

    def send(self, resp, bps):
        throttle = _Throttle(bps)
        if resp.file is not None:
            length = os.path.getsize(resp.file)
        elif resp.chunks is not None:
            length = resp.length
        else:
            length = len(resp.body)
        head = self._head(resp, length)
        if self.command == "HEAD":
            self.wfile.write(head)
            return
        kill_mid = getattr(resp, "kill_mid", None)
        if kill_mid is not None:
            self._send_part_then_kill(resp, head, length, kill_mid, throttle)
        if resp.file is None and resp.chunks is None and not bps and length <= IO_CHUNK:
            self.wfile.write(head + resp.body)      # one system call, one TCP segment
            return
        self.wfile.write(head)
        for piece in _body_pieces(resp):
            self._write(piece, throttle)

    def _send_part_then_kill(self, resp, head, length, spec, throttle):
        """kill_mid_reply: the head and the first `after_bytes` (default half) of the
        body, a pause (`pause_ms`, default 200) with the client mid-transfer, then
        the signal, then the connection dropped."""
        limit = int(spec.get("after_bytes", length // 2))
        self.wfile.write(head)
        sent = 0
        for piece in _body_pieces(resp):
            if sent >= limit:
                break
            take = piece[:limit - sent]
            self._write(take, throttle)
            sent += len(take)
        self.wfile.flush()
        time.sleep(float(spec.get("pause_ms", 200)) / 1000.0)
        send_kill(spec)
        raise _Dropped()

    def _head(self, resp, length):
        """The status line and headers as send_response, send_header and end_headers
        write them, but returned, so that a small body can go in the same write."""
        self.log_request(resp.status)
        if self.request_version == "HTTP/0.9":
            return b""
        reason = self.responses[resp.status][0] if resp.status in self.responses else ""
        lines = ["%s %d %s" % (self.protocol_version, resp.status, reason),
                 "Server: " + self.version_string(), "Date: " + self.date_time_string()]
        for name, value in resp.headers.items():
            # a list is a header sent once per value (Set-Cookie cannot be folded)
            lines += ["%s: %s" % (name, v) for v in (value if isinstance(value, list) else [value])]
        lines.append("Content-Length: %d" % length)
        if self.close_connection:
            lines.append("Connection: close")
        lines += ["", ""]
        return "\r\n".join(lines).encode("latin-1", "strict")

    def _write(self, data, throttle):
        step = throttle.step()
        view = memoryview(data)
        for start in range(0, len(view), step):
            piece = view[start:start + step]
            self.wfile.write(piece)
            throttle.account(len(piece))


def _render(sim, half_name, err):
    custom = getattr(sim.half(half_name), "render_error", None)
    return custom(err) if custom else render_error(half_name, err, sim.next_trace())


def _path_key(req):
    """Path plus query without the per-call Xrfkey, so retries hash the same."""
    query = sorted((k, v) for k, v in req.query_list if k.lower() != "xrfkey")
    return req.path + ("?" + urllib.parse.urlencode(query) if query else "")


def _body_pieces(resp):
    if resp.file is not None:
        with open(resp.file, "rb") as fh:
            while True:
                data = fh.read(IO_CHUNK)
                if not data:
                    return
                yield data
    elif resp.chunks is not None:
        yield from resp.chunks
    else:
        yield resp.body


class _Profiler:
    """Opt-in CPU profile of the request threads (`QLIKSIM_PROFILE=out.pstats`).

    Each connection's thread runs under its own cProfile.Profile timed with the
    thread's CPU clock (so blocking reads and injected latency cost nothing),
    added to the merged statistics when the connection ends; `dump` (at stop)
    writes them.
    """

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.stats = pstats.Stats()

    def run(self, func, *args):
        if not self.path:
            return func(*args)
        prof = cProfile.Profile(time.thread_time)
        try:
            return prof.runcall(func, *args)
        finally:
            with self.lock:
                self.stats.add(prof)

    def dump(self):
        if self.path:
            with self.lock:
                self.stats.dump_stats(self.path)


PROFILER = _Profiler(os.environ.get("QLIKSIM_PROFILE"))


class Listener(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, sim, half_name, port, ssl_context=None, verbose=False):
        self.sim = sim
        self.half_name = half_name
        self.ssl_context = ssl_context
        self.verbose = verbose
        super().__init__(("127.0.0.1", port), Handler)

    def finish_request(self, request, client_address):
        """TLS handshake in the worker thread, so a bad client cannot stall accept()."""
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            try:
                request.settimeout(30)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ValueError):
                request.close()
                return
        try:
            PROFILER.run(self.RequestHandlerClass, request, client_address, self)
        finally:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            request.close()

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)

    @property
    def port(self):
        return self.server_address[1]

    def start(self):
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                  daemon=True, name=f"qliksim-{self.half_name}")
        thread.start()
        return thread


# --------------------------------------------------------------------------- certificates

def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _make_ca(d, name, cn):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", os.path.join(d, f"{name}_key.pem"),
             "-out", os.path.join(d, f"{name}.pem"), "-days", "3650", "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _make_leaf(d, ca, name, cn, ext):
    key, csr = os.path.join(d, f"{name}_key.pem"), os.path.join(d, f"{name}.csr")
    extfile = os.path.join(d, f"{name}.ext")
    with open(extfile, "w") as fh:
        fh.write(ext)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
    _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(d, f"{ca}.pem"),
             "-CAkey", os.path.join(d, f"{ca}_key.pem"), "-CAcreateserial",
             "-out", os.path.join(d, f"{name}.pem"), "-days", "3650", "-extfile", extfile)
    os.remove(csr)
    os.remove(extfile)


CERT_FILES = {"ca": "ca.pem", "client_cert": "client.pem", "client_key": "client_key.pem",
              "client_key_encrypted": "client_key_enc.pem", "rogue_ca": "rogue_ca.pem",
              "rogue_client_cert": "rogue_client.pem", "rogue_client_key": "rogue_client_key.pem",
              "server_cert": "server.pem", "server_key": "server_key.pem"}


def ensure_certs(d):
    """Create the sim CA, server/client certs and a rogue CA + client in `d` if absent."""
    os.makedirs(d, exist_ok=True)
    paths = {k: os.path.join(d, v) for k, v in CERT_FILES.items()}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    client_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    _make_ca(d, "ca", "qliksim CA")
    _make_leaf(d, "ca", "server", "localhost",
               "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
               "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _make_leaf(d, "ca", "client", "QlikClient", client_ext)
    _openssl("pkey", "-in", paths["client_key"], "-aes256", "-passout",
             f"pass:{CLIENT_KEY_PASSWORD}", "-out", paths["client_key_encrypted"])
    _make_ca(d, "rogue_ca", "rogue CA")
    _make_leaf(d, "rogue_ca", "rogue_client", "QlikClient", client_ext)
    return paths


def server_ssl_context(certs, require_client_cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs["ca"])
    return ctx


# --------------------------------------------------------------------------- assembly

class Running:
    """A started simulator: both listeners plus the info dict."""

    def __init__(self, sim, listeners, info, temp_dirs):
        self.sim, self.listeners, self.info = sim, listeners, info
        self.temp_dirs = temp_dirs
        for listener in listeners.values():
            listener.start()

    def stop(self):
        """Stop both listeners and remove the temp folders `start` created."""
        for listener in self.listeners.values():
            listener.shutdown()
            listener.server_close()
        PROFILER.dump()
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)


def start(site, half_classes, qrs_port=0, cloud_port=0, cloud_tls=False, certs_dir=None,
          faults=None, data_dir=None, verbose=False, nprinting_port=0):
    """Build the simulator and start its listeners. Returns a Running."""
    temp_dirs = []
    if not certs_dir:
        certs_dir = tempfile.mkdtemp(prefix="qliksim-certs-")
        temp_dirs.append(certs_dir)
    if not data_dir:
        data_dir = tempfile.mkdtemp(prefix="qliksim-data-")
        temp_dirs.append(data_dir)
    certs = ensure_certs(certs_dir)
    sim = Simulator(site, half_classes, data_dir, faults, certs_dir=certs_dir)
    listeners = {}
    if "qrs" in half_classes:
        listeners["qrs"] = Listener(sim, "qrs", qrs_port, server_ssl_context(certs, True), verbose)
    if "cloud" in half_classes:
        tls = server_ssl_context(certs, False) if cloud_tls else None
        listeners["cloud"] = Listener(sim, "cloud", cloud_port, tls, verbose)
    if "nprinting" in half_classes and site.get("nprinting"):
        # NPrinting's web console and API listen on 4993 over TLS (the sim CA signs it)
        listeners["nprinting"] = Listener(sim, "nprinting", nprinting_port,
                                          server_ssl_context(certs, False), verbose)
    info = {}
    if "nprinting" in listeners:
        np = sim.half("nprinting")
        info["nprinting_url"] = f"https://127.0.0.1:{listeners['nprinting'].port}"
        info["nprinting_jwt"] = np.admin_token()
        info["nprinting_export"] = np.export_dir
    if "qrs" in listeners:
        info["qrs_url"] = f"https://127.0.0.1:{listeners['qrs'].port}"
    if "cloud" in listeners:
        scheme = "https" if cloud_tls else "http"
        sim.ctx.cloud_scheme = scheme  # paging links are absolute URLs
        info["cloud_url"] = f"{scheme}://127.0.0.1:{listeners['cloud'].port}"
        # the Cloud half makes a default key when the site names none
        info["api_key"] = next(iter(getattr(sim.half("cloud"), "api_keys", {}) or {}), None)
    if "qrs" in listeners:
        info["qrs_user"] = "INTERNAL\\sa_api"
    info["certs"] = {k: certs[k] for k in CERT_FILES if not k.startswith("server")}
    info["certs"]["client_key_password"] = CLIENT_KEY_PASSWORD
    info["pid"] = os.getpid()
    return Running(sim, listeners, info, temp_dirs)
