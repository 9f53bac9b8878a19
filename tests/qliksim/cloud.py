"""qliksim — the Qlik Cloud tenant half.

Implements the subset of the Qlik Cloud REST API (`/api/v1/...`) that qmig-lua
uses, with the shapes, status codes and rules qlik.dev documents for it.
Python 3.11 standard library only.  See README-cloud.md for the seed format
and every rule this simulator enforces.

Contract with the core server (qliksim.py / core.py):
    cloud = Cloud(seed, ctx)      seed = site["cloud"] (may be None)
    cloud.handle(req) -> Response (raises ApiError for errors)
    cloud.render_error(err) -> Response
    cloud.state() -> dict         full JSON-serialisable state
    cloud.tier(method, path) -> "tier1" | "tier2" | "special"
"""
import base64
import contextlib
import hashlib
import io
import json
import os
import re
import sys
import time
import urllib.parse
import zipfile
import zoneinfo
from datetime import datetime, timedelta, timezone

import lineage
import qvf
from core import ApiError, Response
from oauth import OAUTH_ROUTES, OAuthMixin
from reporting import REPORTING_ROUTES, ReportingMixin
from scheduling import SCHED, SCHED_ROUTES, SchedulingMixin

API = "/api/v1"
EVERYONE_GROUP_ID = "000000000000000000000001"

# ----------------------------------------------------------------------------------------
# Static tables
# ----------------------------------------------------------------------------------------

TENANT_ROLES = [
    # name, level
    ("TenantAdmin", "admin"), ("AnalyticsAdmin", "admin"), ("DataAdmin", "admin"),
    ("AuditAdmin", "admin"), ("Developer", "user"), ("SharedSpaceCreator", "user"),
    ("ManagedSpaceCreator", "user"), ("DataSpaceCreator", "user"),
    ("PrivateAnalyticsContentCreator", "user"), ("DataServicesContributor", "user"),
    ("AutomationCreator", "user"), ("AnalyticsAndDataContributor", "user"),
    ("EmbeddedAnalyticsUser", "user"), ("Steward", "user"), ("User", "user"),
]

SPACE_ROLES = {
    "shared": ["consumer", "dataconsumer", "facilitator", "producer", "codeveloper"],
    "managed": ["consumer", "contributor", "dataconsumer", "facilitator", "operator",
                "publisher", "basicconsumer"],
    "data": ["consumer", "dataconsumer", "facilitator", "operator", "producer", "publisher",
             "datapreview"],
}
SPACE_ACTIONS = {
    "shared": ["create", "read", "update", "delete", "publish"],
    "managed": ["create", "read", "update", "delete", "publish"],
    "data": ["create", "read", "update", "delete"],
}
SHARE_ROLES = ["consumer", "contributor", "basicconsumer"]
SPACE_NAME_FORBIDDEN = set('"*?<>/|\\:')

APP_PRIVILEGES = ["read", "update", "delete", "reload", "import", "publish", "duplicate",
                  "export", "exportdata", "change_owner", "change_space"]
APP_CREATE = [{"resource": "sheet", "canCreate": True},
              {"resource": "bookmark", "canCreate": True},
              {"resource": "story", "canCreate": True}]
ITEM_ACTIONS = ["create", "read", "update", "delete", "publish", "duplicate", "export",
                "reload", "change_owner", "change_space"]
DC_PRIVILEGES = ["list", "update", "delete", "read", "change_owner", "change_space"]

TIER1, TIER2, SPECIAL = "tier1", "tier2", "special"


def _stable_hex(text, n=24):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


# ----------------------------------------------------------------------------------------
# SCIM filter (RFC 7644 subset): attr op "value", and/or, parentheses
# ----------------------------------------------------------------------------------------

class FilterError(ValueError):
    pass


_SCIM_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_.$-]*)|(\S))')


def _scim_tokens(text):
    pos, out = 0, []
    text = text or ""
    while pos < len(text):
        m = _SCIM_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        lp, rp, st, word, bad = m.groups()
        if lp:
            out.append(("(", "("))
        elif rp:
            out.append((")", ")"))
        elif st is not None:
            raw = st[1:-1]
            val = re.sub(r'\\(.)', lambda x: x.group(1), raw)
            out.append(("str", val))
        elif word is not None:
            out.append(("word", word))
        elif bad is not None:
            if bad.strip():
                raise FilterError("unexpected character %r in filter" % bad)
    return out


def parse_scim(text, attrs, ops=("eq", "co", "sw")):
    """Parse a SCIM filter into a predicate(record)->bool.

    attrs maps lowercase attribute name -> function(record) -> str | list[str] | None.
    Raises FilterError on anything malformed or unsupported.
    """
    toks = _scim_tokens(text)
    if not toks:
        raise FilterError("empty filter")
    pos = [0]

    def peek():
        return toks[pos[0]] if pos[0] < len(toks) else (None, None)

    def take():
        t = peek()
        pos[0] += 1
        return t

    def parse_or():
        left = parse_and()
        while peek()[0] == "word" and peek()[1].lower() == "or":
            take()
            right = parse_and()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def parse_and():
        left = parse_atom()
        while peek()[0] == "word" and peek()[1].lower() == "and":
            take()
            right = parse_atom()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def parse_atom():
        kind, val = take()
        if kind == "(":
            inner = parse_or()
            if take()[0] != ")":
                raise FilterError("missing ')'")
            return inner
        if kind != "word":
            raise FilterError("attribute expected")
        attr = val.lower()
        if attr in ("and", "or", "not"):
            raise FilterError("attribute expected, got %r" % val)
        if attr not in attrs:
            raise FilterError("unsupported filter attribute %r" % val)
        okind, op = take()
        if okind != "word" or op.lower() not in ops:
            raise FilterError("unsupported operator %r" % (op,))
        op = op.lower()
        vkind, value = take()
        if vkind != "str":
            if vkind == "word" and value.lower() in ("true", "false", "null"):
                value = value.lower()
            else:
                raise FilterError("value must be a double-quoted string")
        getter = attrs[attr]
        needle = value.casefold()

        def pred(rec, getter=getter, op=op, needle=needle):
            got = getter(rec)
            vals = got if isinstance(got, list) else [got]
            for v in vals:
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = "true" if v else "false"
                s = str(v).casefold()
                if op == "eq" and s == needle:
                    return True
                if op == "co" and needle in s:
                    return True
                if op == "sw" and s.startswith(needle):
                    return True
            return False
        return pred

    pred = parse_or()
    if pos[0] != len(toks):
        raise FilterError("unexpected %r in filter" % (toks[pos[0]][1],))
    return pred


# ----------------------------------------------------------------------------------------
# RRULE validation (RFC 5545 RECUR, as accepted by /reload-tasks)
# ----------------------------------------------------------------------------------------

FREQS = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_INT = re.compile(r"^[+-]?\d{1,4}$")
_BYDAY = re.compile(r"^([+-]?)(\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")


def validate_rrule(line):
    """Return None if `line` is a valid recurrence rule, else an error message."""
    if not isinstance(line, str) or not line.strip():
        return "recurrence rule must be a non-empty string"
    text = line.strip()
    if "\n" in text or "\r" in text:
        return "one rule per recurrence entry"
    up = text.upper()
    if up.startswith("DTSTART") or up.startswith("DTEND") or "DTSTART" in up or "DTEND" in up:
        return "DTSTART/DTEND are not allowed in recurrence; use startDateTime/endDateTime"
    if up.startswith("RRULE:"):
        text = text[6:]
    elif ":" in text:
        return "only RRULE recurrence lines are supported"
    if not text:
        return "empty rule"
    parts = {}
    for part in text.split(";"):
        if not part:
            return "empty rule part"
        if part.count("=") != 1:
            return "rule part %r is not NAME=VALUE" % part
        name, value = part.split("=")
        name = name.upper()
        if not value:
            return "empty value for %s" % name
        if name in parts:
            return "duplicate rule part %s" % name
        parts[name] = value.upper()
    freq = parts.get("FREQ")
    if freq is None:
        return "FREQ is required"
    if freq not in FREQS:
        return "unsupported FREQ %s" % freq

    def int_list(name, lo, hi, signed):
        vals = []
        for item in parts[name].split(","):
            if not _INT.match(item):
                return None, "%s value %r is not an integer" % (name, item)
            v = int(item)
            if item[0] in "+-" and not signed:
                return None, "%s value %r must be unsigned" % (name, item)
            if signed:
                if v == 0 or not (lo <= abs(v) <= hi):
                    return None, "%s value %s out of range" % (name, item)
            elif not (lo <= v <= hi):
                return None, "%s value %s out of range" % (name, item)
            vals.append(v)
        return vals, None

    for name, value in parts.items():
        if name == "FREQ":
            continue
        if name in ("INTERVAL", "COUNT"):
            if not re.match(r"^\d{1,9}$", value) or int(value) < 1:
                return "%s must be a positive integer" % name
        elif name == "UNTIL":
            m = re.match(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$", value)
            if not m:
                return "UNTIL must be DATE or DATE-TIME (YYYYMMDD[THHMMSS[Z]])"
            try:
                datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)),
                         int(m.group(4) or 0), int(m.group(5) or 0),
                         min(int(m.group(6) or 0), 59))
            except ValueError:
                return "UNTIL is not a valid date"
            if m.group(6) and int(m.group(6)) > 60:
                return "UNTIL seconds out of range"
        elif name == "BYSECOND":
            _, err = int_list(name, 0, 60, False)
            if err:
                return err
        elif name == "BYMINUTE":
            _, err = int_list(name, 0, 59, False)
            if err:
                return err
        elif name == "BYHOUR":
            _, err = int_list(name, 0, 23, False)
            if err:
                return err
        elif name == "BYDAY":
            for item in value.split(","):
                m = _BYDAY.match(item)
                if not m:
                    return "BYDAY value %r is invalid" % item
                if m.group(1) and not m.group(2):
                    return "BYDAY value %r is invalid" % item
                if m.group(2) is not None:
                    n = int(m.group(2))
                    if not 1 <= n <= 53:
                        return "BYDAY ordinal out of range in %r" % item
                    if freq not in ("MONTHLY", "YEARLY"):
                        return "BYDAY with an ordinal needs FREQ=MONTHLY or YEARLY"
                    if freq == "YEARLY" and "BYWEEKNO" in parts:
                        return "BYDAY with an ordinal is not allowed with BYWEEKNO"
        elif name == "BYMONTHDAY":
            if freq == "WEEKLY":
                return "BYMONTHDAY is not allowed with FREQ=WEEKLY"
            _, err = int_list(name, 1, 31, True)
            if err:
                return err
        elif name == "BYYEARDAY":
            if freq in ("DAILY", "WEEKLY", "MONTHLY"):
                return "BYYEARDAY is not allowed with FREQ=%s" % freq
            _, err = int_list(name, 1, 366, True)
            if err:
                return err
        elif name == "BYWEEKNO":
            if freq != "YEARLY":
                return "BYWEEKNO needs FREQ=YEARLY"
            _, err = int_list(name, 1, 53, True)
            if err:
                return err
        elif name == "BYMONTH":
            _, err = int_list(name, 1, 12, False)
            if err:
                return err
        elif name == "BYSETPOS":
            _, err = int_list(name, 1, 366, True)
            if err:
                return err
            if not any(k.startswith("BY") and k != "BYSETPOS" for k in parts):
                return "BYSETPOS needs another BYxxx rule part"
        elif name == "WKST":
            if value not in WEEKDAYS:
                return "WKST must be a weekday (MO..SU)"
        else:
            return "unknown rule part %s" % name
    if "COUNT" in parts and "UNTIL" in parts:
        return "COUNT and UNTIL must not both be given"
    return None


_LOCAL_DT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?$")
_OFFSET_DT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def parse_task_datetime(value, has_tz):
    """Parse startDateTime/endDateTime. Returns aware-or-naive datetime or raises ValueError."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    rx = _LOCAL_DT if has_tz else _OFFSET_DT
    m = rx.match(value)
    if not m:
        if has_tz:
            raise ValueError("must be local time YYYY-MM-DDTHH:MM:SS without offset when timeZone is set")
        raise ValueError("must carry an RFC 3339 offset when timeZone is not set")
    dt = datetime(*(int(m.group(i)) for i in range(1, 7)))
    if dt.year < 1970:
        raise ValueError("must not be before 1970-01-01")
    if not has_tz:
        off = m.group(8)
        if off == "Z":
            tz = timezone.utc
        else:
            sign = 1 if off[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
        dt = dt.replace(tzinfo=tz)
    return dt


_ZONES = None


def valid_timezone(name):
    global _ZONES
    if not isinstance(name, str) or not name:
        return False
    if _ZONES is None:
        try:
            _ZONES = zoneinfo.available_timezones()
        except Exception:  # pragma: no cover
            _ZONES = set()
    if _ZONES:
        return name in _ZONES or name == "UTC"
    try:
        zoneinfo.ZoneInfo(name)
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------------------
# Load-script analysis for reloads
# ----------------------------------------------------------------------------------------

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"(?m)(^|[\s;])//.*$")
_REM = re.compile(r"(?im)^\s*REM\b[^;]*;")
_BAD_CONNECT = re.compile(r"\b(ODBC|OLEDB|CUSTOM)\s+CONNECT\b", re.I)
_LIB_CONNECT = re.compile(r"""\bLIB\s+CONNECT\s+TO\s+(?:'([^']*)'|"([^"]*)"|\[([^\]]*)\]|([^\s;]+))""", re.I)
_LIB_PATH = re.compile(r"""lib://([^/'"\]\r\n]*)/""", re.I)


def strip_comments(script):
    s = _BLOCK_COMMENT.sub(" ", script or "")
    s = _LINE_COMMENT.sub(lambda m: m.group(1), s)
    s = _REM.sub(" ", s)
    return s


def script_connections(script):
    """(unsupported_statements, referenced_connection_names) of a load script."""
    s = strip_comments(script)
    bad = sorted({m.group(1).upper() + " CONNECT" for m in _BAD_CONNECT.finditer(s)})
    refs = []
    for m in _LIB_CONNECT.finditer(s):
        name = next(g for g in m.groups() if g is not None)
        refs.append(name.strip())
    for m in _LIB_PATH.finditer(s):
        refs.append(m.group(1).strip())
    seen, out = set(), []
    for r in refs:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return bad, out


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------

class _HashingReader:
    """Wraps a stream (read(n)); counts and hashes every byte consumed; offers readline."""

    def __init__(self, raw):
        self.raw = raw
        self.buf = b""
        self.count = 0
        self.sha = hashlib.sha256()
        self.eof = False

    def _fill(self, n=1 << 16):
        if self.eof:
            return False
        chunk = self.raw.read(n)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _consume(self, n):
        out, self.buf = self.buf[:n], self.buf[n:]
        self.count += len(out)
        self.sha.update(out)
        return out

    def read(self, n=-1):
        if n is None or n < 0:
            while self._fill():
                pass
            return self._consume(len(self.buf))
        while len(self.buf) < n and self._fill(max(n - len(self.buf), 1 << 16)):
            pass
        return self._consume(n)

    def readline(self, limit=-1):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                n = i + 1
                break
            if limit is not None and 0 <= limit <= len(self.buf):
                n = limit
                break
            if not self._fill():
                n = len(self.buf)
                break
        if limit is not None and limit >= 0:
            n = min(n, limit)
        return self._consume(n)

    def drain(self, chunk=1 << 20):
        if self.buf:
            self._consume(len(self.buf))
        while True:
            data = self.raw.read(chunk)
            if not data:
                break
            self.count += len(data)
            self.sha.update(data)


def _b64(s):
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


def _unb64(s):
    s = s + "=" * (-len(s) % 4)
    return base64.urlsafe_b64decode(s.encode()).decode()


def _truthy(v):
    return str(v).lower() in ("1", "true", "yes")


class Cloud(SchedulingMixin, OAuthMixin, ReportingMixin):
    """One simulated Qlik Cloud tenant."""

    # for scheduling.py, which cannot import this module (this module imports it)
    _rrule_problem = staticmethod(validate_rrule)
    _tz_ok = staticmethod(valid_timezone)
    _task_datetime = staticmethod(parse_task_datetime)
    _scim = staticmethod(parse_scim)
    _FilterError = FilterError

    def __init__(self, seed, ctx):
        self.ctx = ctx
        seed = dict(seed or {})
        self.seed = seed
        self._seq = 0
        self.data_dir = os.path.join(ctx.data_dir, "cloud")
        os.makedirs(self.data_dir, exist_ok=True)
        t = seed.get("tenant") or {}
        self.tenant = {
            "id": t.get("id") or _stable_hex("tenant:" + t.get("name", "acme"), 32)[:32],
            "name": t.get("name", "acme"),
            "hostnames": list(t.get("hostnames") or ["%s.eu.qlikcloud.com" % t.get("name", "acme")]),
            "datacenter": t.get("datacenter", "eu-west-1"),
            "region": t.get("region", "eu"),
            "status": "active",
            "created": t.get("created", "2024-01-01T00:00:00.000Z"),
            "lastUpdated": t.get("created", "2024-01-01T00:00:00.000Z"),
            "createdByUser": "",
            "autoAssignCreateSharedSpacesRoleToProfessionals": True,
            "autoAssignPrivateAnalyticsContentCreatorRoleToProfessionals": True,
            "autoAssignDataServicesContributorRoleToProfessionals": True,
            "enableAnalyticCreation": True,
        }
        self.roles = {name: {"id": _stable_hex("role:" + name), "name": name,
                             "type": "default", "level": lvl} for name, lvl in TENANT_ROLES}
        self.users = {}
        self.groups = {}
        self.spaces = {}
        self.assignments = {}
        self.shares = {}
        self.apps = {}
        self.collections = {}
        self.dconns = {}
        self.reload_tasks = {}
        self.reloads = {}
        self.extensions = {}
        self.themes = {}
        self.temp = {}
        self.tus = {}
        self.api_keys = {}
        # Indexes kept next to the records above, so the look-ups a migration makes
        # once per object do not scan a large tenant:
        self._user_keys = {}     # (attr, casefolded value) -> {user id: user}, attr in _USER_KEYS
        self._items = {}         # item id -> app, in item creation order (the /items order)
        self._app_reloads = {}   # app id -> its reloads, in creation order
        self.quotas = {"app_upload_disk_size": 10737418240, "app_mem_size": 10737418240,
                       "shared_spaces": -1, "managed_spaces": -1, "data_spaces": -1}
        self.quotas.update(seed.get("quotas") or {})
        self.idps = []
        self.reload_polls = int(seed.get("reload_polls", 2))
        lag = seed.get("catalogue_lag_ms", 0)
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not 0 <= lag < 1e9:
            raise ValueError("cloud.catalogue_lag_ms must be a number of milliseconds >= 0")
        self.catalogue_lag_ms = lag      # the site's default; the fault knob overrides it
        self.lagged_listings = {}        # endpoint -> listings that hid something
        self._seeding = True             # what the site file holds was made long ago
        self._load_seed(seed)
        self._oauth_init(seed)
        self._sched_init(seed)
        self._reporting_init()
        self._seeding = False

    # ------------------------------------------------------------------ infrastructure

    def _next_seq(self):
        self._seq += 1
        return self._seq

    def _now(self):
        return self.ctx.iso()

    def _hex(self):
        return self.ctx.new_hex_id(24)

    # ------------------------------------------------------------------ catalogue lag
    #
    # Qlik Cloud's listings are fed by events: a new object shows in them only after a
    # delay, and /items shows an app's change (rename, move, new owner) after a delay too.
    # Every record gets "_born" (monotonic seconds; 0 for what the site file holds) where
    # it is made; the listings pass their matches through _settled(), /items through
    # _catalogue_view(). GET by id always reads the current record.

    _ITEM_LAGGED = ("name", "description", "spaceId", "ownerId", "published", "publishTime",
                    "modifiedDate")

    def _born(self):
        return 0.0 if self._seeding else time.monotonic()

    def _lag(self):
        """The catalogue lag in seconds: the fault knob when set, else the site's default."""
        raw = getattr(getattr(self.ctx, "faults", None), "raw", None) or {}
        ms = raw["catalogue_lag_ms"] if "catalogue_lag_ms" in raw else self.catalogue_lag_ms
        return float(ms or 0) / 1000.0

    def _count_lagged(self, req):
        ep = getattr(req, "endpoint", None) or "%s %s" % (req.method, req.path)
        self.lagged_listings[ep] = self.lagged_listings.get(ep, 0) + 1
        counters = getattr(self.ctx, "counters", None)
        if counters is not None:
            counters.lagged_listing(ep)

    def _settled(self, req, recs):
        """The records of a listing's answer that are old enough to be listed."""
        lag = self._lag()
        if not lag:
            return recs
        cutoff = time.monotonic() - lag
        out = [r for r in recs if r.get("_born", 0.0) <= cutoff]
        if len(out) != len(recs):
            self._count_lagged(req)
        return out

    def _app_changing(self, a):
        """Called before a change /items shows late: keep the listed fields as they were.
        Only changes younger than the lag are kept, and none while the lag is off."""
        it = a["item"]
        lag = self._lag()
        if not lag:
            it.pop("_versions", None)
            return
        now = time.monotonic()
        versions = [v for v in it.get("_versions", ()) if v[0] > now - lag]
        versions.append((now, {k: a[k] for k in self._ITEM_LAGGED}))
        it["_versions"] = versions

    def _catalogue_view(self, apps, lag):
        """The apps as /items saw them `lag` seconds ago: the unborn left out, a recently
        changed one as a copy with its fields as they were then."""
        cutoff = time.monotonic() - lag
        out = []
        for a in apps:
            it = a["item"]
            if it.get("_born", 0.0) > cutoff:
                continue
            # versions[i] = (when a change was made, the fields just before it)
            old = next((f for t, f in it.get("_versions", ()) if t > cutoff), None)
            out.append(a if old is None else dict(a, **old))
        return out

    @contextlib.contextmanager
    def _unlocked(self):
        """Release the core's lock while streaming a large body, so one multi-GiB
        upload does not stall every other request. Re-acquired afterwards."""
        lock = getattr(self.ctx, "lock", None)
        released = False
        if lock is not None:
            try:
                lock.release()
                released = True
            except RuntimeError:  # not held by this thread
                released = False
        try:
            yield
        finally:
            if released:
                lock.acquire()

    def err(self, status, code, title, detail=None, headers=None):
        return ApiError(status, code, title, detail, headers)

    def render_error(self, err):
        status = getattr(err, "status", 500)
        e = {"code": getattr(err, "code", None) or "HTTP-%d" % status,
             "title": getattr(err, "title", None) or "Error",
             "status": status}
        detail = getattr(err, "detail", None)
        if detail is not None:
            e["detail"] = detail
        trace = hashlib.sha256(("%s|%s|%s" % (status, e["code"], self._seq)).encode()).hexdigest()[:32]
        body = {"errors": [e], "traceId": trace}
        headers = dict(getattr(err, "headers", None) or {})
        return Response(status, body, headers=headers, content_type="application/json")

    def tier(self, method, path):
        if path.startswith(API + "/reloads"):
            return SPECIAL
        if method.upper() in ("GET", "HEAD"):
            return TIER1
        return TIER2

    # ------------------------------------------------------------------ seed

    def _load_seed(self, seed):
        users = seed.get("users")
        if users is None:
            users = [{"subject": "auth0|admin", "email": "admin@acme.com", "name": "Admin",
                      "status": "active", "roles": ["TenantAdmin"]}]
        for u in users:
            self._add_user(u.get("subject") or ("auth0|" + (u.get("email") or u.get("name", "x"))),
                           u.get("name") or u.get("email") or u.get("subject"),
                           u.get("email"), u.get("status", "active"),
                           u.get("roles") or [], uid=u.get("id"), groups=u.get("groups") or [])
        keys = seed.get("api_keys")
        if keys is None:
            first = next(iter(self.users.values()), None)
            keys = [{"key": "qsim-admin-key", "user": first["email"] if first else None}]
        for k in keys:
            uid = self._seed_user_ref(k.get("user"))
            if uid is None and self.users:
                uid = next(iter(self.users))
            self.api_keys[k["key"]] = {"user": uid, "forbidden": bool(k.get("forbidden"))}
        for g in seed.get("groups") or []:
            self._add_group(g["name"], g.get("providerType", "idp"), g.get("description", ""),
                            gid=g.get("id"))
        for u, src in zip(list(self.users.values()), users):
            for gname in src.get("groups") or []:
                g = self._group_by_name(gname)
                if g:
                    u["assignedGroups"].append({"id": g["id"], "name": g["name"],
                                                "providerType": g["providerType"]})
        self.idps = []
        for i, p in enumerate(seed.get("identity_providers") or [{"protocol": "OIDC", "provider": "auth0"}]):
            self.idps.append({
                "id": p.get("id") or _stable_hex("idp:%d" % i),
                "active": p.get("active", True), "interactive": p.get("interactive", True),
                "protocol": p.get("protocol", "OIDC"), "provider": p.get("provider", "auth0"),
                "description": p.get("description", ""), "tenantIds": [self.tenant["id"]],
                "createNewUsersOnLogin": p.get("createNewUsersOnLogin", True),
                "meta": {}, "options": p.get("options", {}),
                "clockToleranceSec": 5, "postLogoutRedirectUri": "",
            })
        for s in seed.get("spaces") or []:
            owner = self._seed_user_ref(s.get("owner")) or self._first_user()
            self._add_space(s["name"], s.get("type", "shared"), s.get("description", ""), owner,
                            sid=s.get("id"))
        for a in seed.get("assignments") or []:
            sp = self._space_by_name(a.get("space")) or self.spaces.get(a.get("space"))
            if not sp:
                continue
            if a.get("type", "user") == "user":
                aid = self._seed_user_ref(a.get("assignee"))
            else:
                g = self._group_by_name(a.get("assignee"))
                aid = g["id"] if g else None
            if aid:
                self._add_assignment(sp, a.get("type", "user"), aid, a.get("roles", ["consumer"]),
                                     self._first_user())
        for dc in seed.get("data_connections") or []:
            sp = self._space_by_name(dc.get("space")) if dc.get("space") else None
            owner = self._seed_user_ref(dc.get("owner")) or self._first_user()
            body = dict(dc)
            body.pop("space", None)
            body.pop("owner", None)
            self._add_dconn(body, sp["id"] if sp else None, owner)
        for kind in ("extensions", "themes"):
            for e in seed.get(kind) or []:
                data = e.get("zip")
                if data is None:
                    data = self._make_zip(e.get("name", "ext"), e.get("type", "visualization" if kind == "extensions" else "theme"))
                elif isinstance(data, str):
                    data = base64.b64decode(data)
                self._add_ext(kind, data, {"name": e.get("name")} if e.get("name") else {},
                              self._first_user())
        for a in seed.get("apps") or []:
            sp = self._space_by_name(a.get("space")) if a.get("space") else None
            owner = self._seed_user_ref(a.get("owner")) or self._first_user()
            meta = {"name": a.get("name", "App"), "description": a.get("description", ""),
                    "script": a.get("script", ""), "objects": a.get("objects", []),
                    "data_model": a.get("data_model", {"tables": []}),
                    "has_data": a.get("has_data", True), "payload_seed": a.get("payload_seed", a.get("name", "App")),
                    "source": "seed", "app_id": a.get("id")}
            app = self._create_app(meta, a.get("payload_size", 0), "", sp["id"] if sp else None, owner,
                                   app_id=a.get("id"))
            for o in app["objects"].values():
                src = next((x for x in meta["objects"] if x.get("engineObjectId") == o["id"]), {})
                o["ownerId"] = self._seed_user_ref(src.get("owner")) or owner

    @staticmethod
    def _make_zip(name, typ):
        bio = io.BytesIO()
        with zipfile.ZipFile(bio, "w") as z:
            z.writestr("%s/%s.qext" % (name, name), json.dumps({"name": name, "type": typ, "version": "1.0.0"}))
            z.writestr("%s/%s.js" % (name, name), "define([], function(){ return {}; });\n")
        return bio.getvalue()

    def _first_user(self):
        return next(iter(self.users), None)

    def _seed_user_ref(self, ref):
        if not ref:
            return None
        if ref in self.users:
            return ref
        low = str(ref).casefold()
        for u in self.users.values():
            if (u.get("email") or "").casefold() == low or u["subject"].casefold() == low:
                return u["id"]
        return None

    def _group_by_name(self, name):
        for g in self.groups.values():
            if g["name"] == name:
                return g
        return None

    def _space_by_name(self, name):
        if not name:
            return None
        for s in self.spaces.values():
            if s["name"] == name:
                return s
        return None

    # ------------------------------------------------------------------ URLs & paging

    def _base(self, req):
        host = None
        try:
            host = req.headers.get("Host")
        except Exception:
            host = None
        host = host or self.tenant["hostnames"][0]
        scheme = (getattr(req, "scheme", None) or getattr(self.ctx, "cloud_scheme", None)
                  or req.headers.get("X-Forwarded-Proto") or "http")
        return "%s://%s" % (scheme, host)

    def _href(self, req, path=None, **override):
        """Absolute URL of path (default: req.path) with the request query, overridden."""
        pairs = []
        ql = getattr(req, "query_list", None)
        if ql is None:
            ql = list((req.query or {}).items())
        for k, v in ql:
            if k in override:
                continue
            pairs.append((k, v))
        for k, v in override.items():
            if v is not None:
                pairs.append((k, v))
        qs = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
        return self._base(req) + (path or req.path) + ("?" + qs if qs else "")

    def _link(self, req, path):
        return {"href": self._base(req) + path}

    def _limit(self, req, default, lo=1, hi=100):
        raw = req.query.get("limit")
        if raw is None or raw == "":
            return default
        try:
            n = int(raw)
        except ValueError:
            raise self.err(400, "HTTP-400", "Bad Request", "limit must be an integer")
        if n < lo or n > hi:
            raise self.err(400, "HTTP-400", "Bad Request", "limit must be between %d and %d" % (lo, hi))
        return n

    def _page(self, req, records, default_limit=10, param="next", hi=100, sort_key=None):
        """Cursor paging over records (dicts with "_seq") in creation order.

        The cursor encodes the position "after seq N" (or "before seq N" for prev), so
        pages stay stable while records are added or removed.
        """
        limit = self._limit(req, default_limit, 1, hi)
        recs = list(records)
        if sort_key is not None:
            recs.sort(key=sort_key[0], reverse=sort_key[1])
        cur = req.query.get(param)
        if param != "next" and not cur:
            cur = req.query.get("next")
        prev_cur = req.query.get("prev")
        start = 0
        if cur:
            try:
                kind, seq = _unb64(cur).split(":")
                seq = int(seq)
            except Exception:
                raise self.err(400, "HTTP-400", "Bad Request", "invalid cursor")
            start = len(recs)
            for i, r in enumerate(recs):
                if r["_seq"] == seq:
                    start = i
                    break
                if sort_key is None and r["_seq"] > seq:
                    start = i
                    break
        elif prev_cur:
            try:
                kind, seq = _unb64(prev_cur).split(":")
                seq = int(seq)
            except Exception:
                raise self.err(400, "HTTP-400", "Bad Request", "invalid cursor")
            end = 0
            for i, r in enumerate(recs):
                if r["_seq"] == seq or (sort_key is None and r["_seq"] > seq):
                    end = i
                    break
            start = max(0, end - limit)
        page = recs[start:start + limit]
        links = {"self": {"href": self._href(req)}}
        if start + limit < len(recs):
            nxt = _b64("n:%d" % recs[start + limit]["_seq"])
            over = {param: nxt, "prev": None}
            if param != "next":
                over["next"] = None
            links["next"] = {"href": self._href(req, **over)}
        if start > 0:
            prv = _b64("p:%d" % recs[start]["_seq"])
            over = {"prev": prv, param: None}
            if param != "next":
                over["next"] = None
            links["prev"] = {"href": self._href(req, **over)}
        return page, links, len(recs)

    # ------------------------------------------------------------------ auth & routing

    def _caller(self, req):
        auth = req.headers.get("Authorization") or ""
        m = re.match(r"^\s*Bearer\s+(\S+)\s*$", auth, re.I)
        token_user = self._oauth_user(m.group(1)) if m else None
        if token_user is not None:
            if token_user not in self.users:
                raise self.err(401, "HTTP-401", "Unauthorized", "the token's user no longer exists")
            return self.users[token_user]
        if not m or m.group(1) not in self.api_keys:
            raise self.err(401, "HTTP-401", "Unauthorized",
                           "a valid API key or access token is required")
        key = self.api_keys[m.group(1)]
        if key["forbidden"]:
            raise self.err(403, "HTTP-403", "Forbidden", "the API key lacks the privileges for this call")
        uid = key["user"]
        if uid not in self.users:
            raise self.err(401, "HTTP-401", "Unauthorized", "the API key's user no longer exists")
        return self.users[uid]

    def _is_admin(self, user):
        return any(r["name"] == "TenantAdmin" for r in user.get("assignedRoles", []))

    ROUTES = [
        ("GET", "/users"), ("POST", "/users"), ("GET", "/users/me"),
        ("GET", "/users/actions/count"), ("POST", "/users/actions/filter"),
        ("POST", "/users/actions/invite"),
        ("GET", "/users/{userId}"), ("PATCH", "/users/{userId}"), ("DELETE", "/users/{userId}"),
        ("GET", "/groups"), ("POST", "/groups"), ("POST", "/groups/actions/filter"),
        ("GET", "/groups/{groupId}"), ("DELETE", "/groups/{groupId}"),
        ("GET", "/tenants/me"), ("GET", "/tenants/{tenantId}"),
        ("GET", "/identity-providers"), ("GET", "/identity-providers/{id}"),
        ("GET", "/quotas"), ("GET", "/quotas/{id}"),
        ("GET", "/spaces"), ("POST", "/spaces"), ("GET", "/spaces/types"),
        ("GET", "/spaces/{spaceId}"), ("PUT", "/spaces/{spaceId}"),
        ("PATCH", "/spaces/{spaceId}"), ("DELETE", "/spaces/{spaceId}"),
        ("GET", "/spaces/{spaceId}/assignments"), ("POST", "/spaces/{spaceId}/assignments"),
        ("GET", "/spaces/{spaceId}/assignments/{assignmentId}"),
        ("PUT", "/spaces/{spaceId}/assignments/{assignmentId}"),
        ("DELETE", "/spaces/{spaceId}/assignments/{assignmentId}"),
        ("GET", "/spaces/{spaceId}/shares"), ("POST", "/spaces/{spaceId}/shares"),
        ("GET", "/spaces/{spaceId}/shares/{shareId}"),
        ("DELETE", "/spaces/{spaceId}/shares/{shareId}"),
        ("POST", "/apps"), ("POST", "/apps/import"), ("GET", "/apps/privileges"),
        ("GET", "/apps/{appId}"), ("PUT", "/apps/{appId}"), ("DELETE", "/apps/{appId}"),
        ("POST", "/apps/{appId}/export"), ("PUT", "/apps/{appId}/space"),
        ("DELETE", "/apps/{appId}/space"), ("PUT", "/apps/{appId}/owner"),
        ("POST", "/apps/{appId}/objects/{objectId}/actions/change-owner"),
        ("POST", "/apps/{appId}/publish"), ("PUT", "/apps/{appId}/publish"),
        ("GET", "/apps/{appId}/scripts"), ("POST", "/apps/{appId}/scripts"),
        ("GET", "/apps/{appId}/scripts/{id}"), ("DELETE", "/apps/{appId}/scripts/{id}"),
        ("GET", "/apps/{appId}/data/metadata"),
        ("GET", "/items"), ("GET", "/items/{itemId}"), ("PUT", "/items/{itemId}"),
        ("DELETE", "/items/{itemId}"), ("GET", "/items/{itemId}/collections"),
        ("GET", "/collections"), ("POST", "/collections"),
        ("GET", "/collections/{collectionId}"), ("DELETE", "/collections/{collectionId}"),
        ("GET", "/collections/{collectionId}/items"),
        ("POST", "/collections/{collectionId}/items"),
        ("GET", "/collections/{collectionId}/items/{itemId}"),
        ("DELETE", "/collections/{collectionId}/items/{itemId}"),
        ("GET", "/reloads"), ("POST", "/reloads"), ("GET", "/reloads/{reloadId}"),
        ("POST", "/reloads/{reloadId}/actions/cancel"),
        ("GET", "/reload-tasks"), ("POST", "/reload-tasks"), ("GET", "/reload-tasks/{taskId}"),
        ("PUT", "/reload-tasks/{taskId}"), ("DELETE", "/reload-tasks/{taskId}"),
        ("GET", "/data-connections"), ("POST", "/data-connections"),
        ("GET", "/data-connections/{qID}"), ("PUT", "/data-connections/{qID}"),
        ("PATCH", "/data-connections/{qID}"), ("DELETE", "/data-connections/{qID}"),
        ("GET", "/extensions"), ("POST", "/extensions"), ("GET", "/extensions/{id}"),
        ("PATCH", "/extensions/{id}"), ("DELETE", "/extensions/{id}"),
        ("GET", "/extensions/{id}/file"), ("GET", "/extensions/{id}/file/{filepath*}"),
        ("GET", "/themes"), ("POST", "/themes"), ("GET", "/themes/{id}"),
        ("PATCH", "/themes/{id}"), ("DELETE", "/themes/{id}"),
        ("GET", "/themes/{id}/file"), ("GET", "/themes/{id}/file/{filepath*}"),
        ("POST", "/temp-contents"), ("POST", "/temp-contents/files"),
        ("HEAD", "/temp-contents/files/{id}"), ("PATCH", "/temp-contents/files/{id}"),
        ("GET", "/temp-contents/{id}"), ("GET", "/temp-contents/{id}/details"),
    ] + REPORTING_ROUTES   # reporting.py

    # (path prefix, handler name infix, routes, needs a Bearer): the scheduling service and
    # the token endpoint live outside /api/v1 on the real tenant too
    ROOTS = ((API, "", ROUTES, True), (SCHED, "_sched", SCHED_ROUTES, True),
             ("/oauth", "_oauth", OAUTH_ROUTES, False))

    _compiled = None

    @classmethod
    def _routes(cls):
        """{root: {first path segment: [(method, regex, template, handler name)]}}, routes in order.

        Every template starts with a literal segment, so only the routes under the
        request's first segment can match it.
        """
        if cls._compiled is None:
            out = {}
            for root, infix, routes, _ in cls.ROOTS:
                table = out.setdefault(root, {})
                for method, tpl in routes:
                    rx = "^" + re.sub(r"\\\{(\w+)(\\\*)?\\\}",
                                      lambda m: "(?P<%s>.+)" % m.group(1) if m.group(2) else "(?P<%s>[^/]+)" % m.group(1),
                                      re.escape(tpl)) + "$"
                    name = "h_" + method.lower() + infix + re.sub(r"[^a-z0-9]+", "_",
                                                                  re.sub(r"\{[^}]*\}", "X", tpl).lower()).rstrip("_")
                    table.setdefault(tpl.split("/")[1], []).append(
                        (method, re.compile(rx), tpl.replace("*}", "}"), name))
            cls._compiled = out
        return cls._compiled

    def handle(self, req):
        path = req.path
        root = next((r for r in self.ROOTS if path == r[0] or path.startswith(r[0] + "/")), None)
        if root is None:
            raise self.err(404, "HTTP-404", "Not Found", "no such endpoint")
        prefix, _, _, needs_auth = root
        sub = path[len(prefix):].rstrip("/") or "/"
        method = req.method.upper()
        allowed = False
        for m, rx, tpl, name in self._routes()[prefix].get(sub.split("/", 2)[1], ()):
            mt = rx.match(sub)
            if not mt:
                continue
            allowed = True
            if m != method and not (method == "HEAD" and m == "GET"):
                continue
            req.endpoint = "%s %s%s" % (m if method != "HEAD" else "HEAD", prefix, tpl)
            user = self._caller(req) if needs_auth else None
            try:
                return getattr(self, name)(req, user, **mt.groupdict())
            except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
                # a body of the wrong shape that slipped past validation: a client error,
                # as the real service would answer, but say where it happened
                sys.stderr.write("qliksim cloud: %s %s: %s: %s\n" % (method, path, type(exc).__name__, exc))
                raise self.err(400, "HTTP-400", "Bad Request", "invalid request: %s" % exc)
        req.endpoint = "%s %s%s" % (method, prefix, "/?")
        if needs_auth:
            self._caller(req)
        if allowed:
            raise self.err(405, "HTTP-405", "Method Not Allowed")
        raise self.err(404, "HTTP-404", "Not Found", "no such endpoint")

    def _json(self, req, want=dict, required=True):
        raw = req.body()
        if not raw or not raw.strip():
            if required:
                raise self.err(400, "HTTP-400", "Bad Request", "request body required")
            return want()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self.err(400, "HTTP-400", "Bad Request", "request body is not valid JSON")
        if want is not None and not isinstance(data, want):
            raise self.err(400, "HTTP-400", "Bad Request", "request body must be a JSON %s" %
                           ("object" if want is dict else "array"))
        return data

    @staticmethod
    def _ok(body, status=200, headers=None):
        return Response(status, body, headers=headers)

    @staticmethod
    def _pub(rec):
        return {k: v for k, v in rec.items() if not k.startswith("_")}

    # ================================================================== USERS

    def _add_user(self, subject, name, email, status, roles, uid=None, groups=()):
        uid = uid or self._hex()
        now = self._now()
        rec = {"_seq": self._next_seq(), "_born": self._born(), "id": uid,
               "tenantId": self.tenant["id"], "subject": subject, "name": name or subject, "status": status,
               "assignedRoles": [], "assignedGroups": [], "assignedScopes": [],
               "createdAt": now, "lastUpdatedAt": now, "locale": "en",
               "preferredLocale": "", "preferredZoneinfo": "", "zoneinfo": "",
               "picture": ""}
        if email:
            rec["email"] = email
        if status == "invited":
            rec["inviteExpiry"] = int(self.ctx.now().timestamp()) + 7 * 86400
        for r in roles:
            rn = r if isinstance(r, str) else (r.get("name") or "")
            if rn in self.roles:
                rec["assignedRoles"].append(dict(self.roles[rn]))
        old = self.users.get(uid)
        if old is not None:
            self._index_user(old, remove=True)
        self.users[uid] = rec
        self._index_user(rec)
        return rec

    _USER_KEYS = ("id", "subject", "email")   # never change once a user exists

    def _index_user(self, u, remove=False):
        for attr in self._USER_KEYS:
            key = (attr, str(u.get(attr) or "").casefold())
            if remove:
                self._user_keys[key].pop(u["id"], None)
            else:
                self._user_keys.setdefault(key, {})[u["id"]] = u

    def _users_where(self, attr, folded):
        """Users (any status) whose `attr` casefolds to `folded`, in self.users order."""
        return self._in_user_order(self._user_keys.get((attr, folded)) or {})

    def _in_user_order(self, found):
        """The users of `found` ({id: user}) in self.users order."""
        if len(found) < 2:
            return list(found.values())
        return [u for u in self.users.values() if u["id"] in found]

    def _user_out(self, req, u):
        out = self._pub(u)
        out["links"] = {"self": self._link(req, API + "/users/" + u["id"])}
        return out

    _USER_ATTRS = {
        "id": lambda u: u["id"], "subject": lambda u: u["subject"], "name": lambda u: u.get("name"),
        "email": lambda u: u.get("email"), "status": lambda u: u.get("status"),
        "clientid": lambda u: u.get("clientId"),
        "assignedroles.id": lambda u: [r["id"] for r in u["assignedRoles"]],
        "assignedroles.name": lambda u: [r["name"] for r in u["assignedRoles"]],
        "assignedgroups.id": lambda u: [g["id"] for g in u["assignedGroups"]],
        "assignedgroups.name": lambda u: [g["name"] for g in u["assignedGroups"]],
        "tenantid": lambda u: u["tenantId"],
    }

    def _user_filter(self, text):
        try:
            return parse_scim(text, self._USER_ATTRS)
        except FilterError as e:
            raise self.err(400, "USERS-1", "Invalid filter", str(e))

    _SIMPLE_EQ = re.compile(r'^\s*(email|subject|id)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.I)

    def _list_users(self, req, filt):
        m = self._SIMPLE_EQ.match(filt or "")
        if m:  # fast path for the migrator's one-user look-ups (5,000-user sites)
            attr = m.group(1).lower()
            want = re.sub(r"\\(.)", lambda x: x.group(1), m.group(2)).casefold()
            recs = [u for u in self._users_where(attr, want) if u["status"] != "deleted"]
            filt = None
        else:
            recs = [u for u in self.users.values() if u["status"] != "deleted"]
        if filt:
            pred = self._user_filter(filt)
            recs = [u for u in recs if pred(u)]
        sort = req.query.get("sort")
        sk = None
        if sort:
            field = sort.lstrip("+-")
            if field not in ("name", "email", "subject", "createdAt", "status", "lastUpdatedAt"):
                raise self.err(400, "USERS-2", "Invalid sort", "cannot sort on %s" % field)
            sk = (lambda u, f=field: (str(u.get(f) or "").casefold(), u["_seq"]), sort.startswith("-"))
        recs = self._settled(req, recs)
        page, links, total = self._page(req, recs, 20, sort_key=sk)
        body = {"data": [self._user_out(req, u) for u in page], "links": links}
        if _truthy(req.query.get("totalResults", "false")):
            body["totalResults"] = total
        return self._ok(body)

    def h_get_users(self, req, me):
        return self._list_users(req, req.query.get("filter"))

    def _filter_arg(self, body):
        f = body.get("filter")
        if f is not None and not isinstance(f, str):
            raise self.err(400, "HTTP-400", "Bad Request", "filter must be a string")
        return f

    def h_post_users_actions_filter(self, req, me):
        return self._list_users(req, self._filter_arg(self._json(req, required=False)))

    def h_get_users_me(self, req, me):
        return self._ok(self._user_out(req, me))

    def h_get_users_actions_count(self, req, me):
        return self._ok({"total": sum(1 for u in self.users.values() if u["status"] != "deleted")})

    def h_post_users(self, req, me):
        b = self._json(req)
        subject = b.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise self.err(400, "USERS-3", "Bad request", "subject is required")
        st = b.get("status", "invited")
        if st not in ("invited", "active", "disabled"):
            raise self.err(400, "USERS-3", "Bad request", "invalid status")
        email = b.get("email")
        same = dict(self._user_keys.get(("subject", subject.casefold())) or {})
        if email:
            same.update(self._user_keys.get(("email", str(email).casefold())) or {})
        # the first user (in self.users order) with the subject or the email decides
        clash = [u for u in self._in_user_order(same) if u["status"] != "deleted"]
        if clash:
            if clash[0]["subject"].casefold() == subject.casefold():
                raise self.err(409, "USERS-8", "Conflict", "a user with this subject already exists")
            raise self.err(409, "USERS-8", "Conflict", "a user with this email already exists")
        roles = []
        for r in b.get("assignedRoles") or []:
            if "name" in r:
                if r["name"] not in self.roles:
                    raise self.err(400, "USERS-3", "Bad request", "unknown role %s" % r["name"])
                roles.append(r["name"])
            elif "id" in r:
                nm = next((x["name"] for x in self.roles.values() if x["id"] == r["id"]), None)
                if not nm:
                    raise self.err(400, "USERS-3", "Bad request", "unknown role id %s" % r["id"])
                roles.append(nm)
        u = self._add_user(subject, b.get("name") or email or subject, email, st, roles)
        if b.get("picture"):
            u["picture"] = b["picture"]
        return self._ok(self._user_out(req, u), 201)

    def h_post_users_actions_invite(self, req, me):
        b = self._json(req)
        out = []
        invitees = b.get("invitees")
        if not isinstance(invitees, list) or not all(isinstance(i, dict) and isinstance(i.get("email"), str) for i in invitees):
            raise self.err(400, "USERS-3", "Bad request", "invitees must be a list of {email, name}")
        for inv in invitees:
            email = inv.get("email")
            ex = next(iter(self._users_where("email", str(email).casefold())), None)
            if ex:
                out.append({"email": email, "status": "exists", "userId": ex["id"]})
            else:
                u = self._add_user("invited|" + email, inv.get("name") or email, email, "invited", [])
                out.append({"email": email, "status": "ok", "userId": u["id"]})
        return self._ok({"data": out}, 207)

    def _user(self, uid):
        u = self.users.get(uid)
        if not u or u["status"] == "deleted":
            raise self.err(404, "USERS-7", "Not found", "user %s not found" % uid)
        return u

    def h_get_users_x(self, req, me, userId):
        return self._ok(self._user_out(req, self._user(userId)))

    def h_patch_users_x(self, req, me, userId):
        u = self._user(userId)
        ops = self._json(req, want=list)
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in ("replace", "set", "add", "remove", "renew"):
                raise self.err(400, "USERS-3", "Bad request", "invalid patch operation")
            p = op.get("path")
            v = op.get("value")
            if p == "/name":
                u["name"] = str(v)
            elif p == "/status":
                if v not in ("active", "disabled"):
                    raise self.err(400, "USERS-3", "Bad request", "invalid status")
                u["status"] = v
            elif p == "/assignedRoles":
                roles = []
                for r in v or []:
                    nm = r.get("name") or next((x["name"] for x in self.roles.values() if x["id"] == r.get("id")), None)
                    if nm not in self.roles:
                        raise self.err(400, "USERS-3", "Bad request", "unknown role")
                    roles.append(dict(self.roles[nm]))
                u["assignedRoles"] = roles
            elif p == "/assignedGroups":
                gs = []
                for g in v or []:
                    grp = self.groups.get(g.get("id")) or self._group_by_name(g.get("name"))
                    if not grp:
                        raise self.err(400, "USERS-3", "Bad request", "unknown group")
                    gs.append({"id": grp["id"], "name": grp["name"], "providerType": grp["providerType"]})
                u["assignedGroups"] = gs
            elif p in ("/preferredZoneinfo", "/preferredLocale", "/inviteExpiry"):
                u[p[1:]] = v
            else:
                raise self.err(400, "USERS-3", "Bad request", "unsupported patch path %s" % p)
        u["lastUpdatedAt"] = self._now()
        return Response(204)

    def h_delete_users_x(self, req, me, userId):
        self._index_user(self._user(userId), remove=True)
        del self.users[userId]
        return Response(204)

    # ================================================================== GROUPS, TENANT, ...

    def _add_group(self, name, provider, description="", gid=None):
        now = self._now()
        g = {"_seq": self._next_seq(), "_born": self._born(), "id": gid or self._hex(),
             "tenantId": self.tenant["id"],
             "name": name, "description": description, "providerType": provider,
             "status": "active", "assignedRoles": [], "createdAt": now, "lastUpdatedAt": now}
        self.groups[g["id"]] = g
        return g

    def _group_out(self, req, g):
        out = self._pub(g)
        out["links"] = {"self": self._link(req, API + "/groups/" + g["id"])}
        return out

    _GROUP_ATTRS = {"id": lambda g: g["id"], "name": lambda g: g["name"],
                    "providertype": lambda g: g["providerType"], "status": lambda g: g["status"]}

    def _list_groups(self, req, filt):
        recs = list(self.groups.values())
        if filt:
            try:
                pred = parse_scim(filt, self._GROUP_ATTRS)
            except FilterError as e:
                raise self.err(400, "GROUPS-1", "Invalid filter", str(e))
            recs = [g for g in recs if pred(g)]
        recs = self._settled(req, recs)
        page, links, total = self._page(req, recs, 20)
        body = {"data": [self._group_out(req, g) for g in page], "links": links}
        if _truthy(req.query.get("totalResults", "false")):
            body["totalResults"] = total
        return self._ok(body)

    def h_get_groups(self, req, me):
        return self._list_groups(req, req.query.get("filter"))

    def h_post_groups_actions_filter(self, req, me):
        return self._list_groups(req, self._filter_arg(self._json(req, required=False)))

    def h_post_groups(self, req, me):
        b = self._json(req)
        name = b.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self.err(400, "GROUPS-3", "Bad request", "name is required")
        if any(g["name"].casefold() == name.casefold() for g in self.groups.values()):
            raise self.err(409, "GROUPS-9", "Conflict", "a group with this name already exists")
        g = self._add_group(name, b.get("providerType") or "custom", b.get("description", ""))
        return self._ok(self._group_out(req, g), 201)

    def h_get_groups_x(self, req, me, groupId):
        g = self.groups.get(groupId)
        if not g:
            raise self.err(404, "GROUPS-7", "Not found")
        return self._ok(self._group_out(req, g))

    def h_delete_groups_x(self, req, me, groupId):
        if groupId not in self.groups:
            raise self.err(404, "GROUPS-7", "Not found")
        del self.groups[groupId]
        return Response(204)

    def _tenant_out(self, req):
        out = dict(self.tenant)
        out["links"] = {"self": self._link(req, API + "/tenants/" + self.tenant["id"])}
        return out

    def h_get_tenants_me(self, req, me):
        return self._ok(self._tenant_out(req))

    def h_get_tenants_x(self, req, me, tenantId):
        if tenantId != self.tenant["id"]:
            raise self.err(404, "TENANTS-404", "Not found")
        return self._ok(self._tenant_out(req))

    def h_get_identity_providers(self, req, me):
        return self._ok({"data": [dict(i) for i in self.idps],
                         "links": {"self": {"href": self._href(req)}}})

    def h_get_identity_providers_x(self, req, me, id):
        for i in self.idps:
            if i["id"] == id:
                return self._ok(dict(i))
        raise self.err(404, "IDENTITY-PROVIDERS-404", "Not found")

    def _quota(self, qid, usage):
        val = self.quotas[qid]
        unit = "bytes" if "size" in qid else "spaces"
        q = {"id": qid, "type": "quotas",
             "attributes": {"quota": val, "unit": unit, "warningThresholds": [0.9]}}
        if usage:
            if qid.endswith("_spaces"):
                q["attributes"]["usage"] = sum(1 for s in self.spaces.values() if s["type"] == qid[:-7])
            else:
                q["attributes"]["usage"] = 0
        return q

    def h_get_quotas(self, req, me):
        usage = _truthy(req.query.get("reportUsage", "false"))
        return self._ok({"data": [self._quota(q, usage) for q in self.quotas]})

    def h_get_quotas_x(self, req, me, id):
        if id not in self.quotas:
            raise self.err(404, "QUOTAS-404", "Not found", "no quota %s" % id)
        return self._ok({"data": [self._quota(id, _truthy(req.query.get("reportUsage", "false")))]})

    # ================================================================== SPACES

    def _add_space(self, name, typ, description, owner, sid=None, creator=None):
        now = self._now()
        s = {"_seq": self._next_seq(), "_born": self._born(), "id": sid or self._hex(),
             "type": typ, "ownerId": owner,
             "tenantId": self.tenant["id"], "name": name, "description": description or "",
             "createdAt": now, "createdBy": creator or owner, "updatedAt": now}
        self.spaces[s["id"]] = s
        self._add_dconn({"qName": "DataFiles", "qConnectStatement": "",
                         "qType": "qix-datafiles.exe", "datasourceID": "datafiles"},
                        s["id"], owner, builtin=True)
        return s

    def _space_out(self, req, s):
        out = self._pub(s)
        roles = list(SPACE_ROLES[s["type"]])
        out["meta"] = {"actions": list(SPACE_ACTIONS[s["type"]]), "roles": roles,
                       "assignableRoles": roles}
        out["links"] = {"self": self._link(req, API + "/spaces/" + s["id"]),
                        "assignments": self._link(req, API + "/spaces/%s/assignments" % s["id"])}
        return out

    def _check_space_name(self, name, exclude=None):
        if not isinstance(name, str) or not name.strip():
            raise self.err(400, "SPACES-1", "Bad request", "name is required",)
        if len(name) > 256:
            raise self.err(400, "SPACES-1", "Bad request", "name must be at most 256 characters")
        bad = sorted(set(name) & SPACE_NAME_FORBIDDEN)
        if bad:
            raise self.err(400, "SPACES-1", "Bad request",
                           "name contains forbidden characters: %s" % " ".join(bad))
        for s in self.spaces.values():
            if s["name"] == name and s["id"] != exclude:
                raise self.err(409, "SPACES-9", "Conflict", "a space named %r already exists" % name)

    def _space(self, sid, code=404):
        s = self.spaces.get(sid)
        if not s:
            raise self.err(code, "SPACES-7" if code == 404 else "SPACES-1",
                           "Not found" if code == 404 else "Bad request", "space %s not found" % sid)
        return s

    def h_get_spaces(self, req, me):
        recs = list(self.spaces.values())
        q = req.query
        if q.get("filter"):
            try:
                pred = parse_scim(q["filter"], {"name": lambda s: s["name"], "id": lambda s: s["id"],
                                                "type": lambda s: s["type"],
                                                "ownerid": lambda s: s["ownerId"]})
            except FilterError as e:
                raise self.err(400, "SPACES-1", "Invalid filter", str(e))
            recs = [s for s in recs if pred(s)]
        if q.get("name"):
            n = q["name"].casefold()
            recs = [s for s in recs if n in s["name"].casefold()]
        if q.get("type"):
            types = [t.strip() for t in q["type"].split(",") if t.strip()]
            for t in types:
                if t not in SPACE_ROLES:
                    raise self.err(400, "SPACES-1", "Bad request", "invalid space type %s" % t)
            recs = [s for s in recs if s["type"] in types]
        if q.get("ownerId"):
            recs = [s for s in recs if s["ownerId"] == q["ownerId"]]
        sk = None
        if q.get("sort"):
            f = q["sort"].lstrip("+-")
            if f not in ("name", "createdAt", "updatedAt", "type"):
                raise self.err(400, "SPACES-1", "Bad request", "invalid sort %s" % f)
            sk = (lambda s, f=f: (s[f].casefold() if f == "name" else s[f], s["_seq"]), q["sort"].startswith("-"))
        recs = self._settled(req, recs)
        page, links, total = self._page(req, recs, 10, sort_key=sk)
        return self._ok({"data": [self._space_out(req, s) for s in page], "links": links,
                         "meta": {"count": total,
                                  "personalSpace": {"actions": ["create", "read"], "resourceType": "space"}}})

    def h_get_spaces_types(self, req, me):
        return self._ok({"data": ["shared", "managed", "data"]})

    def h_post_spaces(self, req, me):
        b = self._json(req)
        typ = b.get("type")
        if typ not in SPACE_ROLES:
            raise self.err(400, "SPACES-1", "Bad request", "type must be shared, managed or data")
        self._check_space_name(b.get("name"))
        d = b.get("description", "")
        if d is not None and not isinstance(d, str):
            raise self.err(400, "SPACES-1", "Bad request", "description must be a string")
        s = self._add_space(b["name"], typ, d or "", me["id"])
        return self._ok(self._space_out(req, s), 201)

    def h_get_spaces_x(self, req, me, spaceId):
        return self._ok(self._space_out(req, self._space(spaceId)))

    def _set_space_owner(self, s, owner):
        if owner not in self.users:
            raise self.err(400, "SPACES-1", "Bad request", "owner %s does not exist" % owner)
        s["ownerId"] = owner

    def h_put_spaces_x(self, req, me, spaceId):
        s = self._space(spaceId)
        b = self._json(req)
        if "name" in b:
            self._check_space_name(b["name"], exclude=spaceId)
        if "ownerId" in b:
            self._set_space_owner(s, b["ownerId"])
        if "name" in b:
            s["name"] = b["name"]
        if "description" in b:
            s["description"] = b["description"] or ""
        s["updatedAt"] = self._now()
        return self._ok(self._space_out(req, s))

    def h_patch_spaces_x(self, req, me, spaceId):
        s = self._space(spaceId)
        ops = self._json(req, want=list)
        for op in ops:
            if not isinstance(op, dict) or op.get("op") != "replace" or op.get("path") not in ("/name", "/ownerId", "/description"):
                raise self.err(400, "SPACES-1", "Bad request", "only replace of /name, /ownerId, /description")
        for op in ops:
            if op["path"] == "/name":
                self._check_space_name(op.get("value"), exclude=spaceId)
                s["name"] = op["value"]
            elif op["path"] == "/ownerId":
                self._set_space_owner(s, op.get("value"))
            else:
                s["description"] = op.get("value") or ""
        s["updatedAt"] = self._now()
        return self._ok(self._space_out(req, s))

    def h_delete_spaces_x(self, req, me, spaceId):
        s = self._space(spaceId)
        apps = [a for a in self.apps.values() if a["spaceId"] == spaceId]
        dcs = [d for d in self.dconns.values() if d.get("space") == spaceId and not d["_builtin"]]
        if apps or dcs:
            raise self.err(412, "SPACES-12", "Precondition Failed",
                           "space still holds %d app(s) and %d data connection(s)" % (len(apps), len(dcs)))
        for d in [d for d in self.dconns.values() if d.get("space") == spaceId]:
            del self.dconns[d["qID"]]
        for a in [a for a in self.assignments.values() if a["spaceId"] == spaceId]:
            del self.assignments[a["id"]]
        for a in [a for a in self.shares.values() if a["spaceId"] == spaceId]:
            del self.shares[a["id"]]
        del self.spaces[s["id"]]
        return Response(204)

    # ---- assignments

    def _assignee_exists(self, typ, aid):
        if typ == "user":
            u = self.users.get(aid)
            return bool(u and u["status"] != "deleted")
        if typ == "group":
            return aid in self.groups or aid == EVERYONE_GROUP_ID
        return bool(aid)  # bots are not modelled

    def _check_roles(self, s, roles):
        if not isinstance(roles, list) or not roles:
            raise self.err(400, "SPACES-1", "Bad request", "roles must be a non-empty list")
        allowed = SPACE_ROLES[s["type"]]
        for r in roles:
            if r not in allowed:
                raise self.err(400, "SPACES-1", "Bad request",
                               "role %r is not valid for a %s space (allowed: %s)" % (r, s["type"], ", ".join(allowed)))
        if len(set(roles)) != len(roles):
            raise self.err(400, "SPACES-1", "Bad request", "duplicate roles")

    def _add_assignment(self, s, typ, aid, roles, by):
        now = self._now()
        a = {"_seq": self._next_seq(), "_born": self._born(), "id": self._hex(),
             "type": typ, "assigneeId": aid,
             "roles": list(roles), "spaceId": s["id"], "tenantId": self.tenant["id"],
             "createdAt": now, "createdBy": by, "updatedAt": now, "updatedBy": by}
        self.assignments[a["id"]] = a
        return a

    def _assignment_out(self, req, a):
        out = self._pub(a)
        out["links"] = {"self": self._link(req, API + "/spaces/%s/assignments/%s" % (a["spaceId"], a["id"])),
                        "space": self._link(req, API + "/spaces/" + a["spaceId"])}
        return out

    def h_get_spaces_x_assignments(self, req, me, spaceId):
        self._space(spaceId)
        recs = [a for a in self.assignments.values() if a["spaceId"] == spaceId]
        if req.query.get("type"):
            recs = [a for a in recs if a["type"] == req.query["type"]]
        if req.query.get("assigneeId"):
            recs = [a for a in recs if a["assigneeId"] == req.query["assigneeId"]]
        recs = self._settled(req, recs)
        page, links, total = self._page(req, recs, 10)
        return self._ok({"data": [self._assignment_out(req, a) for a in page], "links": links,
                         "meta": {"count": total}})

    def h_post_spaces_x_assignments(self, req, me, spaceId):
        s = self._space(spaceId)
        b = self._json(req)
        typ = b.get("type")
        if typ not in ("user", "group", "bot"):
            raise self.err(400, "SPACES-1", "Bad request", "type must be user, group or bot")
        aid = b.get("assigneeId")
        if not isinstance(aid, str) or not aid:
            raise self.err(400, "SPACES-1", "Bad request", "assigneeId is required")
        self._check_roles(s, b.get("roles"))
        if not self._assignee_exists(typ, aid):
            raise self.err(404, "SPACES-7", "Not found", "%s %s does not exist" % (typ, aid))
        for a in self.assignments.values():
            if a["spaceId"] == spaceId and a["assigneeId"] == aid:
                raise self.err(409, "SPACES-9", "Conflict", "assignee already has an assignment in this space")
        a = self._add_assignment(s, typ, aid, b["roles"], me["id"])
        return self._ok(self._assignment_out(req, a), 201)

    def _assignment(self, spaceId, assignmentId):
        self._space(spaceId)
        a = self.assignments.get(assignmentId)
        if not a or a["spaceId"] != spaceId:
            raise self.err(404, "SPACES-7", "Not found", "assignment not found")
        return a

    def h_get_spaces_x_assignments_x(self, req, me, spaceId, assignmentId):
        return self._ok(self._assignment_out(req, self._assignment(spaceId, assignmentId)))

    def h_put_spaces_x_assignments_x(self, req, me, spaceId, assignmentId):
        a = self._assignment(spaceId, assignmentId)
        b = self._json(req)
        self._check_roles(self.spaces[spaceId], b.get("roles"))
        a["roles"] = list(b["roles"])
        a["updatedAt"] = self._now()
        a["updatedBy"] = me["id"]
        return self._ok(self._assignment_out(req, a))

    def h_delete_spaces_x_assignments_x(self, req, me, spaceId, assignmentId):
        a = self._assignment(spaceId, assignmentId)
        del self.assignments[a["id"]]
        return Response(204)

    # ---- shares

    def _share_out(self, req, sh):
        out = self._pub(sh)
        app = self.apps.get(sh["resourceId"])
        if app:
            out["resourceName"] = app["name"]
        out["links"] = {"self": self._link(req, API + "/spaces/%s/shares/%s" % (sh["spaceId"], sh["id"])),
                        "space": self._link(req, API + "/spaces/" + sh["spaceId"])}
        return out

    def h_get_spaces_x_shares(self, req, me, spaceId):
        self._space(spaceId)
        recs = [x for x in self.shares.values() if x["spaceId"] == spaceId]
        for k in ("resourceId", "assigneeId", "type"):
            if req.query.get(k):
                recs = [x for x in recs if x[k] == req.query[k]]
        page, links, total = self._page(req, recs, 10)
        return self._ok({"data": [self._share_out(req, x) for x in page], "links": links,
                         "meta": {"count": total}})

    def h_post_spaces_x_shares(self, req, me, spaceId):
        s = self._space(spaceId)
        b = self._json(req)
        if b.get("resourceType") != "app":
            raise self.err(400, "SPACES-1", "Bad request", "resourceType must be app")
        typ = b.get("type")
        if typ not in ("user", "group", "link"):
            raise self.err(400, "SPACES-1", "Bad request", "type must be user, group or link")
        roles = b.get("roles")
        if not isinstance(roles, list) or not roles or any(r not in SHARE_ROLES for r in roles):
            raise self.err(400, "SPACES-1", "Bad request", "roles must be a subset of %s" % ", ".join(SHARE_ROLES))
        app = self.apps.get(b.get("resourceId"))
        if not app or app["spaceId"] != spaceId:
            raise self.err(404, "SPACES-7", "Not found", "app %s is not in this space" % b.get("resourceId"))
        aid = b.get("assigneeId") or ""
        if typ != "link" and not self._assignee_exists(typ, aid):
            raise self.err(404, "SPACES-7", "Not found", "%s %s does not exist" % (typ, aid))
        for x in self.shares.values():
            if x["resourceId"] == app["id"] and x["assigneeId"] == aid and x["type"] == typ:
                raise self.err(409, "SPACES-9", "Conflict", "resource already shared with this assignee")
        now = self._now()
        sh = {"_seq": self._next_seq(), "id": self._hex(), "assigneeId": aid, "resourceId": app["id"],
              "resourceType": "app", "roles": list(roles), "type": typ, "spaceId": s["id"],
              "tenantId": self.tenant["id"], "disabled": False, "createdAt": now, "createdBy": me["id"],
              "updatedAt": now, "updatedBy": me["id"]}
        self.shares[sh["id"]] = sh
        return self._ok(self._share_out(req, sh), 201)

    def _share(self, spaceId, shareId):
        self._space(spaceId)
        sh = self.shares.get(shareId)
        if not sh or sh["spaceId"] != spaceId:
            raise self.err(404, "SPACES-7", "Not found", "share not found")
        return sh

    def h_get_spaces_x_shares_x(self, req, me, spaceId, shareId):
        return self._ok(self._share_out(req, self._share(spaceId, shareId)))

    def h_delete_spaces_x_shares_x(self, req, me, spaceId, shareId):
        sh = self._share(spaceId, shareId)
        del self.shares[sh["id"]]
        return Response(204)

    # ================================================================== APPS

    def _create_app(self, meta, payload_size, sha, space_id, owner, app_id=None, name=None,
                    file_size=None):
        now = self._now()
        aid = app_id or self.ctx.new_id()
        objects = {}
        for o in meta.get("objects") or []:
            oid = o.get("engineObjectId") or o.get("id") or self.ctx.new_id()
            state = o.get("state", "base")
            if state not in ("base", "community", "private"):
                state = "base"
            objects[oid] = {"id": oid, "objectType": o.get("objectType", "sheet"),
                            "name": o.get("name", ""), "description": o.get("description", ""),
                            "state": state, "ownerId": owner, "sourceOwner": o.get("owner"),
                            "createdAt": now, "updatedAt": now}
        app = {"_seq": self._next_seq(), "id": aid, "name": name or meta.get("name") or "Untitled",
               "description": meta.get("description") or "", "ownerId": owner, "spaceId": space_id,
               "originAppId": "", "published": False, "publishTime": "", "createdDate": now,
               "modifiedDate": now, "lastReloadTime": "", "custom": {}, "usage": "ANALYTICS",
               "hasSectionAccess": False, "encrypted": True, "isDirectQueryMode": False,
               "objects": objects, "scripts": [],
               "data_model": meta.get("data_model") or {"tables": []},
               "has_data": bool(meta.get("has_data", True)) and payload_size > 0,
               "payload_size": payload_size, "payload_seed": meta.get("payload_seed") or aid,
               "sha256": sha, "file_size": file_size if file_size is not None else payload_size,
               "source": {"source": meta.get("source"), "app_id": meta.get("app_id")},
               "item": {"id": self._hex(), "_seq": self._next_seq(), "_born": self._born(),
                        "createdAt": now,
                        "updatedAt": now, "resourceCustomAttributes": {},
                        "creatorId": owner, "updaterId": owner}}
        self._add_script_version(app, meta.get("script") or "", "Imported", owner)
        old = self.apps.get(aid)
        if old is not None:
            self._items.pop(old["item"]["id"], None)
        self.apps[aid] = app
        self._items[app["item"]["id"]] = app
        return app

    def _drop_app(self, aid):
        app = self.apps.pop(aid)
        self._items.pop(app["item"]["id"], None)
        return app

    def _add_script_version(self, app, script, message, by):
        now = self._now()
        app["scripts"].append({"scriptId": self._hex(), "script": script,
                               "versionMessage": message or "", "modifiedTime": now,
                               "modifierId": by, "size": len(script.encode("utf-8"))})
        app["modifiedDate"] = now

    def _current_script(self, app):
        return app["scripts"][-1]["script"] if app["scripts"] else ""

    def _app(self, aid):
        a = self.apps.get(aid)
        if not a:
            raise self.err(404, "APPS-404", "Not Found", "app %s not found" % aid)
        return a

    def _app_attrs(self, a):
        at = {"id": a["id"], "name": a["name"], "description": a["description"],
              "thumbnail": "", "lastReloadTime": a["lastReloadTime"],
              "createdDate": a["createdDate"], "modifiedDate": a["modifiedDate"],
              "owner": self.users[a["ownerId"]]["subject"] if a["ownerId"] in self.users else "",
              "ownerId": a["ownerId"], "dynamicColor": "", "published": a["published"],
              "publishTime": a["publishTime"], "custom": a["custom"],
              "hasSectionAccess": a["hasSectionAccess"], "encrypted": a["encrypted"],
              "originAppId": a["originAppId"], "isDirectQueryMode": a["isDirectQueryMode"],
              "usage": a["usage"], "_resourcetype": "app"}
        if a["spaceId"]:
            at["spaceId"] = a["spaceId"]
        return at

    def _nxapp(self, a):
        return {"attributes": self._app_attrs(a), "privileges": list(APP_PRIVILEGES),
                "create": [dict(c) for c in APP_CREATE]}

    def _read_qvf(self, stream):
        """Read a QVF from a stream: (meta, header_len, total_size, sha256)."""
        r = _HashingReader(stream)
        try:
            meta, hlen = qvf.read_header(r)
        except ValueError:
            r.drain()
            raise self.err(400, "APPS-400", "Bad Request", "the uploaded file is not a valid QVF")
        r.drain()
        return meta, hlen, r.count, r.sha.hexdigest()

    def h_post_apps_import(self, req, me):
        q = req.query
        space_id = q.get("spaceId") or None
        mode = (q.get("mode") or "NEW").upper()
        if mode not in ("NEW", "AUTOREPLACE"):
            raise self.err(400, "APPS-400", "Bad Request", "mode must be NEW or AUTOREPLACE")
        if space_id:
            sp = self.spaces.get(space_id)
            if not sp:
                self._drain_body(req)
                raise self.err(404, "APPS-404", "Not Found", "space %s not found" % space_id)
            if sp["type"] != "shared":
                self._drain_body(req)
                raise self.err(403, "APPS-403", "Forbidden",
                               "apps cannot be imported into a %s space" % sp["type"])
        file_id = q.get("fileId")
        if file_id:
            self._drain_body(req)
            t = self.temp.get(file_id) or self.tus.get(file_id)
            if not t or not t.get("path") or not os.path.exists(t["path"]):
                raise self.err(404, "APPS-404", "Not Found", "temporary content %s not found" % file_id)
            with self._unlocked(), open(t["path"], "rb") as f:
                meta, hlen, total, sha = self._read_qvf(f)
            fallback = self._qci(req, "fallbackName") or t.get("name")
        else:
            with self._unlocked():
                meta, hlen, total, sha = self._read_qvf(req.body_stream())
            fallback = self._qci(req, "fallbackName")
        if space_id and space_id not in self.spaces:  # deleted while we were streaming
            raise self.err(404, "APPS-404", "Not Found", "space %s not found" % space_id)
        if total > self.quotas.get("app_upload_disk_size", -1) >= 0:
            raise self.err(413, "APPS-413", "Payload Too Large", "app exceeds the upload quota")
        payload = total - hlen
        if _truthy(self._qci(req, "NoData") or "false"):
            payload = 0
            meta = dict(meta, has_data=False)
        name = q.get("name") or meta.get("name") or (fallback and re.sub(r"\.qvf$", "", fallback, flags=re.I)) or "Untitled"
        app_id = old = None
        if mode == "AUTOREPLACE" and q.get("appId"):
            app_id = q["appId"]
            if app_id in self.apps:
                self._app_changing(self.apps[app_id])
                old = self._drop_app(app_id)
                space_id = space_id or old["spaceId"]
        app = self._create_app(meta, payload, sha, space_id, me["id"], app_id=app_id, name=name,
                               file_size=total)
        if old is not None:   # the same app replaced: listed as it was until the lag passed
            for k in ("_born", "_versions"):
                if k in old["item"]:
                    app["item"][k] = old["item"][k]
        return self._ok(self._nxapp(app))

    def h_post_apps(self, req, me):
        """Create an empty app (qlik.dev, Apps: "Creates a new app"; body {attributes:
        {name, usage, locale, spaceId, description}}, 200 with the NxApp, tier 2)."""
        b = self._json(req)
        at = b.get("attributes") or {}
        if not isinstance(at, dict):
            raise self.err(400, "APPS-400", "Bad Request", "attributes must be an object")
        space_id = at.get("spaceId") or None
        if space_id:
            sp = self.spaces.get(space_id)
            if not sp:
                raise self.err(404, "APPS-404", "Not Found", "space %s not found" % space_id)
            if sp["type"] != "shared":
                raise self.err(403, "APPS-403", "Forbidden", "apps cannot be created in a %s space" % sp["type"])
        usage = at.get("usage") or "ANALYTICS"
        if usage not in ("ANALYTICS", "DATA_PREPARATION", "DATAFLOW_PREP", "SINGLE_TABLE_PREP"):
            raise self.err(400, "APPS-400", "Bad Request", "usage %s is not allowed" % usage)
        meta = {"name": at.get("name") or "Untitled", "description": at.get("description") or "",
                "has_data": False, "source": "cloud"}
        app = self._create_app(meta, 0, "", space_id, me["id"], name=meta["name"])
        app["usage"] = usage
        return self._ok(self._nxapp(app))

    @staticmethod
    def _qci(req, name):
        """A query parameter looked up case-insensitively (NoData, fallbackName)."""
        low, found = name.lower(), None
        for k, v in getattr(req, "query_list", None) or list(req.query.items()):
            if k.lower() == low:
                found = v
        return found

    def _drain_body(self, req):
        """Read and discard an upload we refuse, so the client sees our reply."""
        try:
            with self._unlocked():
                s = req.body_stream()
                while s.read(1 << 20):
                    pass
        except Exception:
            pass

    def h_get_apps_privileges(self, req, me):
        return self._ok(["can_create_app", "can_import_app"])

    def h_get_apps_x(self, req, me, appId):
        return self._ok(self._nxapp(self._app(appId)))

    def h_put_apps_x(self, req, me, appId):
        a = self._app(appId)
        b = self._json(req)
        at = b.get("attributes") or {}
        if not isinstance(at, dict):
            raise self.err(400, "APPS-400", "Bad Request", "attributes must be an object")
        if "name" in at and (not isinstance(at["name"], str) or not at["name"].strip()):
            raise self.err(400, "APPS-400", "Bad Request", "name must be a non-empty string")
        self._app_changing(a)
        if "name" in at:
            a["name"] = at["name"]
        if "description" in at:
            a["description"] = at["description"] or ""
        if "custom" in at:
            a["custom"] = at["custom"]
        a["modifiedDate"] = self._now()
        a["item"]["updatedAt"] = a["modifiedDate"]
        return self._ok(self._nxapp(a))

    def h_delete_apps_x(self, req, me, appId):
        a = self._app(appId)
        self._drop_app(appId)
        for c in self.collections.values():
            if a["item"]["id"] in c["_members"]:
                c["items"].remove(a["item"]["id"])
                c["_members"].discard(a["item"]["id"])
        for t in [t for t in self.reload_tasks.values() if t["appId"] == appId]:
            del self.reload_tasks[t["id"]]
        self._drop_app_tasks(appId)
        for sh in [s for s in self.shares.values() if s["resourceId"] == appId]:
            del self.shares[sh["id"]]
        return Response(200)

    def _export_meta(self, a, nodata):
        return {"format": 1, "source": "cloud", "app_id": a["id"], "name": a["name"],
                "description": a["description"], "script": self._current_script(a),
                "objects": [{"engineObjectId": o["id"], "objectType": o["objectType"],
                             "name": o["name"], "state": o["state"], "owner": o["ownerId"]}
                            for o in a["objects"].values()],
                "data_model": a["data_model"], "has_data": a["has_data"] and not nodata,
                "payload_size": 0 if nodata else a["payload_size"],
                "payload_seed": a["payload_seed"]}

    def h_post_apps_x_export(self, req, me, appId):
        a = self._app(appId)
        nodata = _truthy(self._qci(req, "NoData") or "false")
        meta = self._export_meta(a, nodata)
        tid = self._hex()
        now = self.ctx.now()
        self.temp[tid] = {"_seq": self._next_seq(), "id": tid, "name": a["name"] + ".qvf",
                          "path": None, "qvf": {"meta": meta, "payload_size": meta["payload_size"],
                                                "seed": a["payload_seed"]},
                          "size": qvf.qvf_length(meta, meta["payload_size"]), "ttl": 3600,
                          "created": now, "creator": me["id"]}
        loc = API + "/temp-contents/" + tid
        return Response(201, b"", headers={"Location": loc})

    def h_put_apps_x_space(self, req, me, appId):
        a = self._app(appId)
        b = self._json(req)
        sid = b.get("spaceId")
        sp = self.spaces.get(sid) if sid else None
        if not sp:
            raise self.err(404, "APPS-404", "Not Found", "space %s not found" % sid)
        if sp["type"] != "shared":
            raise self.err(403, "APPS-403", "Forbidden", "apps can only be moved to shared spaces; publish to managed spaces")
        self._app_changing(a)
        a["spaceId"] = sid
        a["modifiedDate"] = self._now()
        return self._ok(self._nxapp(a))

    def h_delete_apps_x_space(self, req, me, appId):
        a = self._app(appId)
        self._app_changing(a)
        a["spaceId"] = None
        a["modifiedDate"] = self._now()
        return self._ok(self._nxapp(a))

    def h_put_apps_x_owner(self, req, me, appId):
        a = self._app(appId)
        b = self._json(req)
        uid = b.get("ownerId")
        if not uid or uid not in self.users or self.users[uid]["status"] == "deleted":
            raise self.err(404, "APPS-404", "Not Found", "user %s not found" % uid)
        self._app_changing(a)
        a["ownerId"] = uid
        a["modifiedDate"] = self._now()
        return self._ok(self._nxapp(a))

    def h_post_apps_x_objects_x_actions_change_owner(self, req, me, appId, objectId):
        a = self._app(appId)
        o = a["objects"].get(objectId)
        if not o:
            raise self.err(404, "APPS-404", "Not Found", "object %s not found in app" % objectId)
        b = self._json(req)
        uid = b.get("ownerId")
        if not isinstance(uid, str) or not uid:
            raise self.err(400, "APPS-400", "Bad Request", "ownerId is required")
        if o["ownerId"] != me["id"]:
            raise self.err(403, "APPS-403", "Forbidden", "only the current owner of the object can change its owner")
        if uid not in self.users or self.users[uid]["status"] == "deleted":
            raise self.err(400, "APPS-400", "Bad Request", "user %s not found" % uid)
        o["ownerId"] = uid
        o["updatedAt"] = self._now()
        return self._ok({"attributes": self._obj_attrs(o), "privileges": ["read", "update", "delete", "change_owner"]})

    @staticmethod
    def _obj_attrs(o):
        pub = o["state"] in ("base", "community")
        return {"id": o["id"], "name": o["name"], "objectType": o["objectType"],
                "genericType": "genericObject", "ownerId": o["ownerId"],
                "approved": o["state"] == "base", "published": pub,
                "publishedAt": o["createdAt"] if pub else "", "createdAt": o["createdAt"],
                "updatedAt": o["updatedAt"], "description": o["description"]}

    def _copy_base_objects(self, src, owner):
        out = {}
        now = self._now()
        for o in src["objects"].values():
            if o["state"] == "base":
                out[o["id"]] = dict(o, ownerId=owner, createdAt=now, updatedAt=now)
        return out

    def _publish_target(self, sid):
        sp = self.spaces.get(sid) if sid else None
        if not sp:
            raise self.err(404, "APPS-404", "Not Found", "space %s not found" % sid)
        if sp["type"] != "managed":
            raise self.err(400, "APPS-400", "Bad Request", "apps can only be published to managed spaces")
        return sp

    def h_post_apps_x_publish(self, req, me, appId):
        src = self._app(appId)
        b = self._json(req)
        sp = self._publish_target(b.get("spaceId"))
        if src["spaceId"] and self.spaces.get(src["spaceId"], {}).get("type") == "managed" and not b.get("moveApp"):
            pass  # publishing from a managed space is allowed (creates another copy)
        data = b.get("data", "source")
        if data not in ("source", "target"):
            raise self.err(400, "APPS-400", "Bad Request", "data must be source or target")
        attrs = b.get("attributes") or {}
        now = self._now()
        if b.get("moveApp"):
            self._app_changing(src)
            src["spaceId"] = sp["id"]
            src["published"] = True
            src["publishTime"] = now
            if attrs.get("name"):
                src["name"] = attrs["name"]
            if "description" in attrs:
                src["description"] = attrs["description"] or ""
            src["modifiedDate"] = now
            return self._ok(self._nxapp(src))
        origin = b.get("originAppId") or src["id"]
        meta = {"name": attrs.get("name") or src["name"],
                "description": attrs.get("description", src["description"]),
                "script": self._current_script(src), "objects": [],
                "data_model": json.loads(json.dumps(src["data_model"])),
                "has_data": src["has_data"], "payload_seed": src["payload_seed"],
                "source": "publish", "app_id": src["id"]}
        copy = self._create_app(meta, src["payload_size"], src["sha256"], sp["id"], me["id"],
                                file_size=src["file_size"])
        copy["has_data"] = src["has_data"]
        copy["objects"] = self._copy_base_objects(src, me["id"])
        copy["originAppId"] = origin
        copy["published"] = True
        copy["publishTime"] = now
        copy["lastReloadTime"] = src["lastReloadTime"]
        return self._ok(self._nxapp(copy))

    def h_put_apps_x_publish(self, req, me, appId):
        src = self._app(appId)
        b = self._json(req)
        tgt = self.apps.get(b.get("targetId") or "")
        if not tgt:
            raise self.err(404, "APPS-404", "Not Found", "target app %s not found" % b.get("targetId"))
        if not tgt["spaceId"] or self.spaces[tgt["spaceId"]]["type"] != "managed":
            raise self.err(400, "APPS-400", "Bad Request", "target app is not in a managed space")
        if b.get("checkOriginAppId", True) and tgt["originAppId"] != src["id"]:
            raise self.err(400, "APPS-400", "Bad Request", "target app was not published from this app")
        attrs = b.get("attributes") or {}
        now = self._now()
        self._app_changing(tgt)
        keep = {k: o for k, o in tgt["objects"].items() if o["state"] != "base"}
        objs = self._copy_base_objects(src, me["id"])
        objs.update(keep)
        tgt["objects"] = objs
        if b.get("data", "source") == "source":
            tgt["data_model"] = json.loads(json.dumps(src["data_model"]))
            tgt["payload_size"] = src["payload_size"]
            tgt["payload_seed"] = src["payload_seed"]
            tgt["sha256"] = src["sha256"]
            tgt["has_data"] = src["has_data"]
            tgt["lastReloadTime"] = src["lastReloadTime"]
        self._add_script_version(tgt, self._current_script(src), "Republished", me["id"])
        if attrs.get("name"):
            tgt["name"] = attrs["name"]
        if "description" in attrs:
            tgt["description"] = attrs["description"] or ""
        tgt["publishTime"] = now
        tgt["published"] = True
        tgt["modifiedDate"] = now
        return self._ok(self._nxapp(tgt))

    def h_get_apps_x_scripts(self, req, me, appId):
        a = self._app(appId)
        out = [{k: v for k, v in s.items() if k != "script"} for s in reversed(a["scripts"])]
        return self._ok({"scripts": out, "privileges": ["read", "update", "delete"],
                         "links": {"self": {"href": self._href(req)}}})

    def h_post_apps_x_scripts(self, req, me, appId):
        a = self._app(appId)
        b = self._json(req)
        script = b.get("script")
        if not isinstance(script, str):
            raise self.err(400, "APPS-400", "Bad Request", "script must be a string")
        self._add_script_version(a, script, b.get("versionMessage") or "", me["id"])
        return Response(200)

    def _script_version(self, a, sid):
        if sid == "current":
            if not a["scripts"]:
                raise self.err(404, "APPS-404", "Not Found", "no script")
            return a["scripts"][-1]
        for s in a["scripts"]:
            if s["scriptId"] == sid:
                return s
        raise self.err(404, "APPS-404", "Not Found", "script version %s not found" % sid)

    def h_get_apps_x_scripts_x(self, req, me, appId, id):
        s = self._script_version(self._app(appId), id)
        return self._ok({"script": s["script"], "versionMessage": s["versionMessage"]})

    def h_delete_apps_x_scripts_x(self, req, me, appId, id):
        a = self._app(appId)
        s = self._script_version(a, id)
        if s is a["scripts"][-1]:
            raise self.err(400, "APPS-400", "Bad Request", "cannot delete the current script version")
        a["scripts"].remove(s)
        return Response(200)

    def h_get_apps_x_data_metadata(self, req, me, appId):
        a = self._app(appId)
        tables, fields = [], {}
        for t in a["data_model"].get("tables") or []:
            rows = int(t.get("no_of_rows", 0)) if a["has_data"] else 0
            flist = t.get("fields") or []
            tables.append({"name": t.get("name", ""), "is_system": False, "is_semantic": False,
                           "is_loose": False, "no_of_rows": rows, "no_of_fields": len(flist),
                           "no_of_key_fields": 0, "comment": "", "byte_size": rows * 8 * max(1, len(flist))})
            for f in flist:
                fname = f if isinstance(f, str) else f.get("name", "")
                fe = fields.setdefault(fname, {"name": fname, "src_tables": [], "is_system": False,
                                               "is_hidden": False, "is_semantic": False,
                                               "distinct_only": False, "cardinal": rows,
                                               "total_count": rows, "is_locked": False,
                                               "always_one_selected": False, "is_numeric": False,
                                               "comment": "", "tags": [], "byte_size": rows * 8, "hash": ""})
                fe["src_tables"].append(t.get("name", ""))
        return self._ok({"fields": list(fields.values()), "tables": tables,
                         "has_section_access": a["hasSectionAccess"],
                         "is_direct_query_mode": a["isDirectQueryMode"], "usage": a["usage"],
                         "static_byte_size": sum(t["byte_size"] for t in tables),
                         "reload_meta": {"cpu_time_spent_ms": 0, "peak_memory_bytes": 0,
                                         "fullReloadPeakMemoryBytes": 0,
                                         "hardware": {"logical_cores": 8, "total_memory": 34359738368}},
                         "tables_profiling_data": []})

    # ================================================================== ITEMS

    def _item_out(self, req, a):
        it = a["item"]
        cids = [c["id"] for c in self.collections.values() if it["id"] in c["_members"]]
        tags = [{"id": c["id"], "name": c["name"]} for c in self.collections.values()
                if it["id"] in c["_members"] and c["type"] == "public"]
        reload_status = ""
        last = next((r for r in reversed(self._app_reloads.get(a["id"], ()))
                     if r["status"] in ("SUCCEEDED", "FAILED")), None)
        if last:
            reload_status = "ok" if last["status"] == "SUCCEEDED" else "error"
        return {"id": it["id"], "name": a["name"], "description": a["description"],
                "resourceType": "app", "resourceId": a["id"], "resourceSubType": "",
                "resourceAttributes": self._app_attrs(a),
                "resourceCustomAttributes": it["resourceCustomAttributes"],
                "resourceCreatedAt": a["createdDate"], "resourceUpdatedAt": a["modifiedDate"],
                "resourceReloadEndTime": a["lastReloadTime"], "resourceReloadStatus": reload_status,
                "resourceSize": {"appFile": a["file_size"], "appMemory": a["payload_size"]},
                "resourceLink": "", "spaceId": a["spaceId"] or "", "ownerId": a["ownerId"],
                "creatorId": it["creatorId"], "updaterId": it["updaterId"], "tenantId": self.tenant["id"],
                "thumbnailId": "", "collectionIds": cids, "isFavorited": False,
                "actions": list(ITEM_ACTIONS),
                "meta": {"tags": tags, "collections": [{"id": c, "name": self.collections[c]["name"]} for c in cids],
                         "actions": list(ITEM_ACTIONS), "isFavorited": False},
                "links": {"self": self._link(req, API + "/items/" + it["id"]),
                          "open": self._link(req, "/sense/app/" + a["id"]),
                          "thumbnail": self._link(req, API + "/apps/%s/media/thumbnail" % a["id"]),
                          "collections": self._link(req, API + "/items/%s/collections" % it["id"])},
                "createdAt": it["createdAt"], "updatedAt": a["modifiedDate"]}

    def _item_app(self, item_id):
        a = self._items.get(item_id)
        if a is None:
            raise self.err(404, "ITEMS-404", "Not Found", "item %s not found" % item_id)
        return a

    def _item_records(self):
        # items are listed in item creation order (their own sequence)
        return list(self._items.values())

    def h_get_items(self, req, me):
        q = req.query
        rtypes = [t for t in (q.get("resourceType") or "").split(",") if t]
        if q.get("resourceId") and not rtypes:
            raise self.err(400, "ITEMS-400", "Bad Request", "resourceType is required with resourceId")
        if rtypes and "app" not in rtypes:
            apps = []
        elif q.get("resourceId"):
            app = self.apps.get(q["resourceId"])
            apps = [app] if app else []
        else:
            apps = self._item_records()
        lag = self._lag()
        if lag:   # filter what the catalogue holds now; count the listing if that differs
            shown = self._items_filter(q, self._catalogue_view(apps, lag))
            listed = [[a["id"]] + [a[k] for k in self._ITEM_LAGGED] for a in shown]
            if listed != [[a["id"]] + [a[k] for k in self._ITEM_LAGGED]
                          for a in self._items_filter(q, apps)]:
                self._count_lagged(req)
            apps = shown
        else:
            apps = self._items_filter(q, apps)
        recs = [dict(_seq=a["item"]["_seq"], _app=a) for a in apps]
        sk = None
        if q.get("sort"):
            f = q["sort"].lstrip("+-")
            keyf = {"name": lambda r: (r["_app"]["name"].casefold(), r["_seq"]),
                    "createdAt": lambda r: (r["_app"]["item"]["createdAt"], r["_seq"]),
                    "updatedAt": lambda r: (r["_app"]["modifiedDate"], r["_seq"]),
                    "recentlyUsed": lambda r: (r["_app"]["modifiedDate"], r["_seq"])}.get(f)
            if not keyf:
                raise self.err(400, "ITEMS-400", "Bad Request", "invalid sort %s" % f)
            sk = (keyf, q["sort"].startswith("-"))
        page, links, _ = self._page(req, recs, 10, sort_key=sk)
        return self._ok({"data": [self._item_out(req, r["_app"]) for r in page], "links": links})

    def _items_filter(self, q, apps):
        """The apps (or catalogue views of them) that GET /items' query selects."""
        # the cheap filters first: the name searches casefold every app they look at
        if q.get("resourceIds"):
            ids = set(q["resourceIds"].split(","))
            apps = [a for a in apps if a["id"] in ids]
        if q.get("spaceId"):
            if q["spaceId"] == "personal":
                apps = [a for a in apps if not a["spaceId"]]
            else:
                apps = [a for a in apps if a["spaceId"] == q["spaceId"]]
        if q.get("ownerId"):
            apps = [a for a in apps if a["ownerId"] == q["ownerId"]]
        if q.get("collectionId"):
            c = self.collections.get(q["collectionId"])
            if not c:
                raise self.err(404, "ITEMS-404", "Not Found", "collection not found")
            apps = [a for a in apps if a["item"]["id"] in c["_members"]]
        if q.get("spaceType"):
            types = q["spaceType"].split(",")
            apps = [a for a in apps if (self.spaces[a["spaceId"]]["type"] if a["spaceId"] in self.spaces else "personal") in types]
        if q.get("name"):
            n = q["name"].casefold()
            apps = [a for a in apps if n in a["name"].casefold()]
        if q.get("query"):
            n = q["query"].casefold()
            apps = [a for a in apps if n in a["name"].casefold() or n in a["description"].casefold()]
        return apps

    def h_get_items_x(self, req, me, itemId):
        return self._ok(self._item_out(req, self._item_app(itemId)))

    def h_put_items_x(self, req, me, itemId):
        a = self._item_app(itemId)
        b = self._json(req)
        if b.get("resourceType") not in (None, "app"):
            raise self.err(400, "ITEMS-400", "Bad Request", "resourceType mismatch")
        self._app_changing(a)
        if "name" in b and b["name"]:
            a["name"] = b["name"]
        if "description" in b:
            a["description"] = b["description"] or ""
        if "resourceCustomAttributes" in b:
            a["item"]["resourceCustomAttributes"] = b["resourceCustomAttributes"] or {}
        a["item"]["updaterId"] = me["id"]
        a["modifiedDate"] = self._now()
        return self._ok(self._item_out(req, a))

    def h_delete_items_x(self, req, me, itemId):
        a = self._item_app(itemId)
        self.h_delete_apps_x(req, me, a["id"])
        return Response(204)

    def h_get_items_x_collections(self, req, me, itemId):
        a = self._item_app(itemId)
        recs = [c for c in self.collections.values() if a["item"]["id"] in c["_members"]]
        page, links, _ = self._page(req, recs, 10)
        return self._ok({"data": [self._coll_out(req, c) for c in page], "links": links})

    # ================================================================== COLLECTIONS

    def _coll_out(self, req, c):
        out = self._pub(c)
        out.pop("items")
        out["itemCount"] = len(c["items"])
        out["links"] = {"self": self._link(req, API + "/collections/" + c["id"]),
                        "items": self._link(req, API + "/collections/%s/items" % c["id"])}
        return out

    def _collection(self, cid):
        c = self.collections.get(cid)
        if not c:
            raise self.err(404, "COLLECTIONS-404", "Not Found", "collection %s not found" % cid)
        return c

    def h_get_collections(self, req, me):
        recs = list(self.collections.values())
        q = req.query
        if q.get("type"):
            types = q["type"].split(",")
            recs = [c for c in recs if c["type"] in types]
        if q.get("name"):
            recs = [c for c in recs if c["name"] == q["name"]]
        if q.get("query"):
            n = q["query"].casefold()
            recs = [c for c in recs if n in c["name"].casefold()]
        recs = self._settled(req, recs)
        page, links, _ = self._page(req, recs, 10)
        return self._ok({"data": [self._coll_out(req, c) for c in page], "links": links})

    def h_post_collections(self, req, me):
        b = self._json(req)
        name, typ = b.get("name"), b.get("type")
        if not isinstance(name, str) or not name.strip():
            raise self.err(400, "COLLECTIONS-400", "Bad Request", "name is required")
        if typ not in ("private", "public", "publicgoverned"):
            raise self.err(400, "COLLECTIONS-400", "Bad Request", "type must be private, public or publicgoverned")
        for c in self.collections.values():
            if c["name"] == name and c["type"] == typ and (typ != "private" or c["creatorId"] == me["id"]):
                raise self.err(409, "COLLECTIONS-409", "Conflict", "a %s collection named %r already exists" % (typ, name))
        now = self._now()
        c = {"_seq": self._next_seq(), "_born": self._born(), "id": self._hex(),
             "name": name, "type": typ,
             "description": b.get("description", ""), "tenantId": self.tenant["id"],
             "createdAt": now, "creatorId": me["id"], "updatedAt": now, "updaterId": me["id"],
             "full": False, "items": [], "_members": set()}   # _members: the items, for `in`
        self.collections[c["id"]] = c
        return self._ok(self._coll_out(req, c), 201)

    def h_get_collections_x(self, req, me, collectionId):
        return self._ok(self._coll_out(req, self._collection(collectionId)))

    def h_delete_collections_x(self, req, me, collectionId):
        self._collection(collectionId)
        del self.collections[collectionId]
        return Response(204)

    def h_get_collections_x_items(self, req, me, collectionId):
        c = self._collection(collectionId)
        recs = []
        for a in self._item_records():
            if a["item"]["id"] in c["_members"]:
                recs.append({"_seq": a["item"]["_seq"], "_app": a})
        page, links, _ = self._page(req, recs, 10)
        return self._ok({"data": [self._item_out(req, r["_app"]) for r in page], "links": links})

    def h_post_collections_x_items(self, req, me, collectionId):
        c = self._collection(collectionId)
        b = self._json(req)
        iid = b.get("id")
        a = self._item_app(iid) if iid else None
        if not a:
            raise self.err(400, "COLLECTIONS-400", "Bad Request", "id is required")
        if iid in c["_members"]:
            raise self.err(409, "COLLECTIONS-409", "Conflict", "item already in collection")
        c["items"].append(iid)
        c["_members"].add(iid)
        c["updatedAt"] = self._now()
        return self._ok(self._item_out(req, a), 201)

    def h_get_collections_x_items_x(self, req, me, collectionId, itemId):
        c = self._collection(collectionId)
        if itemId not in c["_members"]:
            raise self.err(404, "COLLECTIONS-404", "Not Found", "item not in collection")
        return self._ok(self._item_out(req, self._item_app(itemId)))

    def h_delete_collections_x_items_x(self, req, me, collectionId, itemId):
        c = self._collection(collectionId)
        if itemId not in c["_members"]:
            raise self.err(404, "COLLECTIONS-404", "Not Found", "item not in collection")
        c["items"].remove(itemId)
        c["_members"].discard(itemId)
        return Response(204)

    # ================================================================== RELOADS

    def _conn_for_app(self, app, ref):
        """The data connection a script's reference names for an app (a
        space's DataFiles as {"qConnectStatement": ""}), or None."""
        if ":" in ref:
            sname, cname = ref.split(":", 1)
            sp = self._space_by_name(sname)
            if not sp:
                return None
            space_id, owner = sp["id"], None
        else:
            cname = ref
            space_id, owner = app["spaceId"], app["ownerId"]
        if cname == "DataFiles":
            return {"qConnectStatement": ""}
        for d in self.dconns.values():
            if d["qName"] != cname:
                continue
            if space_id and d.get("space") == space_id:
                return d
            if not space_id and not d.get("space") and d["user"] == owner:
                return d
        return None

    def _conn_exists_for_app(self, app, ref):
        return self._conn_for_app(app, ref) is not None

    def _finish_reload(self, r):
        app = self.apps.get(r["appId"])
        now = self.ctx.now()
        r["startTime"] = r.get("startTime") or self.ctx.iso(now)
        r["endTime"] = self.ctx.iso(now)
        r["engineTime"] = r["endTime"]
        if not app:
            r["status"] = "FAILED"
            r["errorCode"] = "EDC_ERROR_APP_NOT_FOUND"
            r["errorMessage"] = "App not found"
            return
        bad, refs = script_connections(r["_script"])
        log = ["Started loading data"]
        err = None
        if bad:
            err = ("EDC_ERROR_UNSUPPORTED_CONNECT",
                   "Connection statement not supported in Qlik Cloud: %s" % ", ".join(bad))
        else:
            for ref in refs:
                if not self._conn_exists_for_app(app, ref):
                    err = ("EDC_ERROR_CONNECTION_NOT_FOUND",
                           "Connection '%s' not found" % ref)
                    break
                log.append("Connection '%s' ok" % ref)
        if err:
            r["status"] = "FAILED"
            r["errorCode"], r["errorMessage"] = err
            log.append("Error: " + err[1])
            log.append("Execution Failed")
        else:
            r["status"] = "SUCCEEDED"
            app["lastReloadTime"] = r["endTime"]
            if not app["data_model"].get("tables") and app["data_model"].get("lineage") is None:
                # an app made with only a script (a converted QlikView document): its
                # first reload loads the tables the script names
                app["data_model"] = {"tables": lineage.script_tables(r["_script"])}
            # what this script reads now, against what made the imported data
            app["data_model"] = lineage.reloaded(app["data_model"], lineage.sources(
                r["_script"], lambda ref: (self._conn_for_app(app, ref) or {}).get("qConnectStatement")))
            if app["data_model"].get("tables"):
                app["has_data"] = True
            log.append("App saved")
            log.append("Finished successfully")
        r["log"] = "\n".join(log) + "\n"

    def _observe(self, r):
        """Advance a reload one step each time a client looks at it."""
        if r["status"] in ("QUEUED", "RELOADING"):
            r["_polls"] += 1
            if r["_polls"] >= self.reload_polls:
                self._finish_reload(r)
            elif r["status"] == "QUEUED":
                r["status"] = "RELOADING"
                r["startTime"] = self.ctx.iso()

    def _reload_out(self, req, r, with_log=True):
        out = self._pub(r)
        if not with_log:
            out.pop("log", None)
        out["links"] = {"self": self._link(req, API + "/reloads/" + r["id"])}
        return out

    def h_post_reloads(self, req, me):
        b = self._json(req)
        aid = b.get("appId")
        if not isinstance(aid, str) or not aid:
            raise self.err(400, "RELOADS-001", "Bad Request", "appId is required")
        app = self.apps.get(aid)
        if not app:
            raise self.err(404, "RELOADS-007", "Not Found", "app %s not found" % aid)
        if "partial" in b and not isinstance(b["partial"], bool):
            raise self.err(400, "RELOADS-001", "Bad Request", "partial must be a boolean")
        r = {"_seq": self._next_seq(), "_born": self._born(), "_polls": 0,
             "_script": self._current_script(app),
             "id": self._hex(), "appId": aid, "tenantId": self.tenant["id"], "userId": me["id"],
             "type": "external", "status": "QUEUED", "partial": bool(b.get("partial", False)),
             "creationTime": self._now(), "weight": b.get("weight", 1), "log": "",
             "resourceType": "api"}
        self.reloads[r["id"]] = r
        self._app_reloads.setdefault(aid, []).append(r)
        return self._ok(self._reload_out(req, r), 201)

    def h_get_reloads_x(self, req, me, reloadId):
        r = self.reloads.get(reloadId)
        if not r:
            raise self.err(404, "RELOADS-007", "Not Found", "reload %s not found" % reloadId)
        self._observe(r)
        return self._ok(self._reload_out(req, r))

    def h_get_reloads(self, req, me):
        aid = req.query.get("appId")
        if not aid and not self._is_admin(me):
            raise self.err(400, "RELOADS-001", "Bad Request", "appId is required")
        recs = list(self._app_reloads.get(aid, ()) if aid else self.reloads.values())
        if aid and aid not in self.apps:
            raise self.err(404, "RELOADS-007", "Not Found", "app %s not found" % aid)
        for r in recs:
            self._observe(r)
        if req.query.get("filter"):
            try:
                pred = parse_scim(req.query["filter"], {"status": lambda r: r["status"],
                                                        "type": lambda r: r["type"],
                                                        "partial": lambda r: r["partial"]})
            except FilterError as e:
                raise self.err(400, "RELOADS-001", "Bad Request", str(e))
            recs = [r for r in recs if pred(r)]
        if req.query.get("partial") is not None:
            want = _truthy(req.query["partial"])
            recs = [r for r in recs if r["partial"] == want]
        sort = req.query.get("sort") or "-creationTime"
        if sort.lstrip("+-") not in ("creationTime", "startTime", "endTime"):
            raise self.err(400, "RELOADS-001", "Bad Request", "invalid sort %s" % sort)
        recs = self._settled(req, recs)
        page, links, _ = self._page(req, recs, 10, sort_key=(lambda r: r["_seq"], sort.startswith("-")))
        with_log = _truthy(req.query.get("log", "false"))
        return self._ok({"data": [self._reload_out(req, r, with_log) for r in page], "links": links})

    def h_post_reloads_x_actions_cancel(self, req, me, reloadId):
        r = self.reloads.get(reloadId)
        if not r:
            raise self.err(404, "RELOADS-007", "Not Found")
        if r["status"] not in ("QUEUED", "RELOADING"):
            raise self.err(400, "RELOADS-012", "Bad Request", "reload is not running")
        r["status"] = "CANCELED"
        r["endTime"] = self._now()
        return Response(202)

    # ================================================================== RELOAD TASKS

    def _task_err(self, code, detail, status=400):
        return self.err(status, code, "Bad Request" if status == 400 else "Not Found", detail)

    def _validate_task(self, b, partial_update=False):
        aid = b.get("appId")
        if not isinstance(aid, str) or not aid:
            raise self._task_err("TASKS-001", "appId is required")
        if aid not in self.apps:
            raise self._task_err("TASKS-002", "app %s not found" % aid, 404)
        tz = b.get("timeZone")
        has_tz = tz not in (None, "")
        if has_tz and not valid_timezone(tz):
            raise self._task_err("TASKS-003", "timeZone %r is not a valid IANA time zone" % tz)
        start = end = None
        if b.get("startDateTime") not in (None, ""):
            try:
                start = parse_task_datetime(b["startDateTime"], has_tz)
            except ValueError as e:
                raise self._task_err("TASKS-004", "startDateTime %s" % e)
        if b.get("endDateTime") not in (None, ""):
            try:
                end = parse_task_datetime(b["endDateTime"], has_tz)
            except ValueError as e:
                raise self._task_err("TASKS-005", "endDateTime %s" % e)
        if start and end:
            try:
                if end <= start:
                    raise self._task_err("TASKS-005", "endDateTime must be after startDateTime")
            except TypeError:
                pass
        rec = b.get("recurrence")
        if rec is not None:
            if not isinstance(rec, list):
                raise self._task_err("TASKS-006", "recurrence must be a list of strings")
            for line in rec:
                msg = validate_rrule(line)
                if msg:
                    raise self._task_err("TASKS-006", "invalid recurrence %r: %s" % (line, msg))
        if rec and start is None:
            raise self._task_err("TASKS-004", "startDateTime is required with recurrence")
        for k in ("partial", "autoReload", "autoReloadPartial"):
            if k in b and not isinstance(b[k], bool):
                raise self._task_err("TASKS-007", "%s must be a boolean" % k)
        return start

    def _task_out(self, req, t):
        out = self._pub(t)
        out["links"] = {"self": self._link(req, API + "/reload-tasks/" + t["id"])}
        return out

    def _next_exec(self, t, start):
        if start is None or t["state"] != "Enabled":
            return ""
        if start.tzinfo is None:
            try:
                start = start.replace(tzinfo=zoneinfo.ZoneInfo(t["timeZone"]))
            except Exception:
                start = start.replace(tzinfo=timezone.utc)
        return self.ctx.iso(start.astimezone(timezone.utc))

    _TASK_FIELDS = ("appId", "timeZone", "startDateTime", "endDateTime", "recurrence", "partial",
                    "autoReload", "autoReloadPartial", "type")

    def h_post_reload_tasks(self, req, me):
        self._legacy_post_gone()
        b = self._json(req)
        start = self._validate_task(b)
        app = self.apps[b["appId"]]
        t = {"_seq": self._next_seq(), "id": self._hex(), "tenantId": self.tenant["id"],
             "userId": me["id"], "spaceId": app["spaceId"] or "", "appId": b["appId"],
             "timeZone": b.get("timeZone") or "", "startDateTime": b.get("startDateTime") or "",
             "endDateTime": b.get("endDateTime") or "", "recurrence": list(b.get("recurrence") or []),
             "partial": bool(b.get("partial", False)), "autoReload": bool(b.get("autoReload", False)),
             "autoReloadPartial": bool(b.get("autoReloadPartial", False)),
             "type": b.get("type", "scheduled_reload"), "state": "Enabled", "disabledCode": "",
             "lastExecutionTime": "", "migrated": False, "log": "",
             "createdAt": self._now()}
        t["nextExecutionTime"] = self._next_exec(t, start)
        self.reload_tasks[t["id"]] = t
        return self._ok(self._task_out(req, t), 201)

    def _task(self, tid):
        t = self.reload_tasks.get(tid)
        if not t:
            raise self.err(404, "TASKS-404", "Not Found", "reload task %s not found" % tid)
        return t

    def h_get_reload_tasks(self, req, me):
        recs = list(self.reload_tasks.values())
        if req.query.get("appId"):
            recs = [t for t in recs if t["appId"] == req.query["appId"]]
        if req.query.get("partial") is not None:
            want = _truthy(req.query["partial"])
            recs = [t for t in recs if t["partial"] == want]
        page, links, _ = self._page(req, recs, 10)
        return self._ok({"data": [self._task_out(req, t) for t in page], "links": links})

    def h_get_reload_tasks_x(self, req, me, taskId):
        return self._ok(self._task_out(req, self._task(taskId)))

    def h_put_reload_tasks_x(self, req, me, taskId):
        t = self._task(taskId)
        self._legacy_refuse_migrated(t)
        b = self._json(req)
        merged = {k: t[k] for k in self._TASK_FIELDS}
        merged.update({k: v for k, v in b.items() if k in self._TASK_FIELDS})
        start = self._validate_task(merged)
        st = b.get("state", t["state"])
        if st not in ("Enabled", "Disabled"):
            raise self._task_err("TASKS-008", "state must be Enabled or Disabled")
        for k in self._TASK_FIELDS:
            if k in merged:
                t[k] = merged[k] if merged[k] is not None else ""
        t["state"] = st
        t["disabledCode"] = "MANUALLY" if st == "Disabled" else ""
        t["spaceId"] = self.apps[t["appId"]]["spaceId"] or ""
        t["nextExecutionTime"] = self._next_exec(t, start)
        return self._ok(self._task_out(req, t))

    def h_delete_reload_tasks_x(self, req, me, taskId):
        self._legacy_refuse_migrated(self._task(taskId))
        del self.reload_tasks[taskId]
        return Response(204)

    # ================================================================== DATA CONNECTIONS

    def _add_dconn(self, b, space, owner, builtin=False):
        now = self._now()
        qid = b.get("qID") or self.ctx.new_id()
        d = {"_seq": self._next_seq(), "_born": self._born(), "_builtin": builtin, "qID": qid,
             "qEngineObjectID": b.get("qEngineObjectID") or qid, "qName": b["qName"],
             "qConnectStatement": b.get("qConnectStatement", ""), "qType": b.get("qType", ""),
             "datasourceID": b.get("datasourceID") or b.get("dataSourceId") or "",
             "qLogOn": b.get("qLogOn", "0"), "qArchitecture": b.get("qArchitecture", 0),
             "qSeparateCredentials": bool(b.get("qSeparateCredentials", False)),
             "qCredentialsName": b.get("qCredentialsName", ""),
             "qUsername": b.get("qUsername", ""),
             "has_password": bool(b.get("qPassword")), "has_secret": bool(b.get("qConnectionSecret")),
             "_secrets": self._received_secrets({}, b),
             "connectionProperties": self._scrub_props(b.get("connectionProperties")),
             "tags": list(b.get("tags") or []), "space": space or "", "user": owner,
             "owner": owner, "tenant": self.tenant["id"], "created": now, "updated": now,
             "qReferenceKey": "", "qri": "qri:db:%s:%s" % (b.get("datasourceID") or "x", qid)}
        self.dconns[qid] = d
        return d

    @staticmethod
    def _received_secrets(kept, b):
        """What a create or update sent as secrets (qPassword, qConnectionSecret, the
        secret-looking connectionProperties): never returned through the API, as Qlik
        returns none, only in /_sim/state under the test-only key test_only_received_secrets."""
        kept = dict(kept)
        for k in ("qPassword", "qConnectionSecret"):
            if k in b:
                kept[k] = b[k]
        props = b.get("connectionProperties")
        if isinstance(props, dict):
            kept["connectionProperties"] = {k: v for k, v in props.items()
                                            if re.search(r"pass|secret|token|key", k, re.I)}
        return kept

    @staticmethod
    def _scrub_props(props):
        if not isinstance(props, dict):
            return {} if props is None else props
        return {k: ("" if re.search(r"pass|secret|token|key", k, re.I) else v) for k, v in props.items()}

    def _dc_out(self, req, d, create=False):
        out = {k: v for k, v in self._pub(d).items()
               if k not in ("has_password", "has_secret", "qUsername", "owner")}
        out["qLogOn"] = out["qLogOn"] if create else (1 if str(out["qLogOn"]) in ("1", "LOG_ON_CURRENT_USER") else 0)
        out["privileges"] = list(DC_PRIVILEGES)
        out["links"] = {"self": self._link(req, API + "/data-connections/" + d["qID"])}
        if not d["space"]:
            out.pop("space")
        return out

    def _dc_conflict(self, name, space, owner, exclude=None):
        for d in self.dconns.values():
            if d["qID"] == exclude or d["qName"] != name:
                continue
            if space and d["space"] == space:
                return True
            if not space and not d["space"] and d["user"] == owner:
                return True
        return name == "DataFiles"

    def h_get_data_connections(self, req, me):
        q = req.query
        recs = list(self.dconns.values())
        if _truthy(q.get("noDatafiles", "false")):
            recs = [d for d in recs if not d["_builtin"]]
        if q.get("spaceId"):
            recs = [d for d in recs if d["space"] == q["spaceId"]]
        if _truthy(q.get("personal", "false")):
            recs = [d for d in recs if not d["space"]]
        if _truthy(q.get("ownedByMe", "false")):
            recs = [d for d in recs if d["user"] == me["id"]]
        if q.get("owner") or q.get("userId"):
            recs = [d for d in recs if d["user"] == (q.get("owner") or q.get("userId"))]
        if q.get("filter"):
            try:
                pred = parse_scim(q["filter"], {"qname": lambda d: d["qName"], "qid": lambda d: d["qID"],
                                                "qtype": lambda d: d["qType"], "space": lambda d: d["space"],
                                                "datasourceid": lambda d: d["datasourceID"],
                                                "user": lambda d: d["user"]})
            except FilterError as e:
                raise self.err(400, "DCREPO-400", "Bad Request", str(e))
            recs = [d for d in recs if pred(d)]
        sk = None
        if q.get("sort"):
            f = q["sort"].lstrip("+-")
            fmap = {"_id": "_seq", "qName": "qName", "created": "created", "updated": "updated"}
            if f not in fmap:
                raise self.err(400, "DCREPO-400", "Bad Request", "invalid sort")
            sk = (lambda d, f=fmap[f]: (d[f], d["_seq"]), q["sort"].startswith("-"))
        recs = self._settled(req, recs)
        page, links, total = self._page(req, recs, 20, param="page", sort_key=sk)
        return self._ok({"data": [self._dc_out(req, d) for d in page], "links": links,
                         "meta": {"count": total}})

    def h_post_data_connections(self, req, me):
        b = self._json(req)
        name = b.get("qName")
        if not isinstance(name, str) or not name.strip():
            raise self.err(400, "DCREPO-400", "Bad Request", "qName is required")
        if not (b.get("datasourceID") or b.get("dataSourceId")):
            raise self.err(400, "DCREPO-400", "Bad Request", "datasourceID is required")
        if "connectionProperties" not in b and (not isinstance(b.get("qConnectStatement"), str) or not b.get("qType")):
            raise self.err(400, "DCREPO-400", "Bad Request", "qConnectStatement and qType are required")
        space = b.get("space") or ""
        if space and space not in self.spaces:
            raise self.err(404, "DCREPO-404", "Not Found", "space %s not found" % space)
        if b.get("qLogOn") is not None and str(b["qLogOn"]) not in ("0", "1", "LOG_ON_SERVICE_USER", "LOG_ON_CURRENT_USER"):
            raise self.err(400, "DCREPO-400", "Bad Request", "invalid qLogOn")
        if self._dc_conflict(name, space, me["id"]):
            raise self.err(409, "DCREPO-409", "Conflict",
                           "a data connection named %r already exists in this space" % name)
        body = dict(b)
        body.pop("qID", None)
        body.pop("qEngineObjectID", None)
        d = self._add_dconn(body, space, me["id"])
        return self._ok(self._dc_out(req, d, create=True), 201)

    def _dconn(self, req, ref, me):
        q = req.query
        if q.get("type") == "connectionname":
            sid = q.get("spaceId") or ""
            for d in self.dconns.values():
                if d["qName"] == ref and d["space"] == sid and (sid or d["user"] == me["id"]):
                    return d
            raise self.err(404, "DCREPO-404", "Not Found", "data connection %r not found" % ref)
        d = self.dconns.get(ref)
        if not d:
            raise self.err(404, "DCREPO-404", "Not Found", "data connection %s not found" % ref)
        return d

    def h_get_data_connections_x(self, req, me, qID):
        return self._ok(self._dc_out(req, self._dconn(req, qID, me)))

    def _dc_apply(self, d, b, me):
        name = b.get("qName", d["qName"])
        space = b.get("space", d["space"]) or ""
        if space and space not in self.spaces:
            raise self.err(404, "DCREPO-404", "Not Found", "space %s not found" % space)
        if (name != d["qName"] or space != d["space"]) and self._dc_conflict(name, space, d["user"], exclude=d["qID"]):
            raise self.err(409, "DCREPO-409", "Conflict", "a data connection named %r already exists in this space" % name)
        if d["_builtin"]:
            raise self.err(403, "DCREPO-403", "Forbidden", "the built-in DataFiles connection cannot be changed")
        d["qName"] = name
        d["space"] = space
        for k in ("qConnectStatement", "qType", "qLogOn", "qArchitecture", "qSeparateCredentials",
                  "qCredentialsName", "qUsername", "tags", "datasourceID"):
            if k in b:
                d[k] = b[k]
        if b.get("qPassword"):
            d["has_password"] = True
        if b.get("qConnectionSecret"):
            d["has_secret"] = True
        d["_secrets"] = self._received_secrets(d.get("_secrets") or {}, b)
        if "connectionProperties" in b:
            d["connectionProperties"] = self._scrub_props(b["connectionProperties"])
        if "owner" in b:
            if b["owner"] not in self.users:
                raise self.err(400, "DCREPO-400", "Bad Request", "owner not found")
            d["user"] = d["owner"] = b["owner"]
        d["updated"] = self._now()

    def h_put_data_connections_x(self, req, me, qID):
        d = self._dconn(req, qID, me)
        b = self._json(req)
        if not b.get("qName") or not isinstance(b.get("qConnectStatement"), str):
            raise self.err(400, "DCREPO-400", "Bad Request", "qName and qConnectStatement are required")
        self._dc_apply(d, b, me)
        return Response(204)

    def h_patch_data_connections_x(self, req, me, qID):
        d = self._dconn(req, qID, me)
        ops = self._json(req, want=list)
        b = {}
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove") or not str(op.get("path", "")).startswith("/"):
                raise self.err(400, "DCREPO-400", "Bad Request", "invalid patch operation")
            key = op["path"][1:]
            if key not in ("qName", "qConnectStatement", "qUsername", "qPassword", "space", "owner",
                           "qLogOn", "qType", "tags", "connectionProperties", "qSeparateCredentials",
                           "qCredentialsName", "qConnectionSecret"):
                raise self.err(400, "DCREPO-400", "Bad Request", "unsupported patch path %s" % op["path"])
            b[key] = op.get("value") if op["op"] != "remove" else ""
        self._dc_apply(d, b, me)
        return Response(204)

    def h_delete_data_connections_x(self, req, me, qID):
        d = self._dconn(req, qID, me)
        if d["_builtin"]:
            raise self.err(403, "DCREPO-403", "Forbidden", "the built-in DataFiles connection cannot be deleted")
        del self.dconns[d["qID"]]
        return Response(204)

    # ================================================================== EXTENSIONS & THEMES

    def _ext_store(self, kind):
        return self.extensions if kind == "extensions" else self.themes

    def _add_ext(self, kind, zdata, data, owner):
        try:
            z = zipfile.ZipFile(io.BytesIO(zdata))
            names = z.namelist()
        except (zipfile.BadZipFile, ValueError):
            raise self.err(400, "EXT-400", "Bad Request", "file is not a zip archive")
        qext_name = next((n for n in names if n.lower().endswith(".qext")), None)
        if kind == "themes" and not qext_name:
            qext_name = None
        qext = {}
        if qext_name:
            try:
                qext = json.loads(z.read(qext_name).decode("utf-8-sig"))
            except Exception:
                raise self.err(400, "EXT-400", "Bad Request", "invalid .qext file %s" % qext_name)
            if not isinstance(qext, dict):
                raise self.err(400, "EXT-400", "Bad Request", "invalid .qext file")
        elif kind == "extensions":
            raise self.err(400, "EXT-400", "Bad Request", "the zip contains no .qext file")
        stem = os.path.splitext(os.path.basename(qext_name))[0] if qext_name else ""
        name = (data or {}).get("name") or qext.get("name") or stem
        if not name:
            raise self.err(400, "EXT-400", "Bad Request", "cannot determine the name")
        store = self._ext_store(kind)
        for e in store.values():
            if e["name"] == name:
                raise self.err(409, "EXT-409", "Conflict", "%s named %r already exists" % (kind[:-1], name))
        eid = self._hex()
        path = os.path.join(self.data_dir, "%s-%s.zip" % (kind, eid))
        with open(path, "wb") as f:
            f.write(zdata)
        now = self._now()
        e = {"_seq": self._next_seq(), "_born": self._born(), "_path": path, "id": eid,
             "name": name,
             "type": qext.get("type", "visualization" if kind == "extensions" else "theme"),
             "version": qext.get("version", ""), "author": qext.get("author", ""),
             "description": qext.get("description", ""), "qextFilename": stem,
             "qextVersion": qext.get("version", ""), "loadpath": stem, "icon": qext.get("icon", ""),
             "preview": qext.get("preview", ""), "tags": list((data or {}).get("tags") or []),
             "supernova": bool(qext.get("supernova", False)), "bundled": False,
             "checksum": hashlib.sha256(zdata).hexdigest(), "file": {"size": len(zdata)},
             "tenantId": self.tenant["id"], "userId": owner, "createdAt": now, "updateAt": now,
             "keywords": qext.get("keywords", ""), "license": qext.get("license", ""),
             "homepage": qext.get("homepage", ""), "repository": qext.get("repository", ""),
             "dependencies": qext.get("dependencies", {}), "deprecated": ""}
        if kind == "themes":
            for k in ("supernova", "bundled", "preview", "loadpath"):
                e.pop(k, None)
        store[eid] = e
        return e

    def _multipart_upload(self, req):
        ctype = req.headers.get("Content-Type") or ""
        if not ctype.lower().startswith("multipart/form-data"):
            raise self.err(400, "EXT-400", "Bad Request", "multipart/form-data expected")
        try:
            parts = req.multipart()
        except Exception:
            raise self.err(400, "EXT-400", "Bad Request", "malformed multipart body")
        file_part = next((p for p in parts if p.get("name") == "file"), None)
        data_part = next((p for p in parts if p.get("name") == "data"), None)
        data = {}
        if data_part is not None:
            raw = data_part.get("data") or b""
            try:
                data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw) if raw else {}
            except Exception:
                raise self.err(400, "EXT-400", "Bad Request", "data part is not JSON")
            if not isinstance(data, dict):
                raise self.err(400, "EXT-400", "Bad Request", "data part must be a JSON object")
        return file_part, data

    def _ext_list(self, req, kind):
        recs = self._settled(req, list(self._ext_store(kind).values()))
        return self._ok({"data": [self._pub(e) for e in recs]})

    def _ext_post(self, req, me, kind):
        file_part, data = self._multipart_upload(req)
        if file_part is None:
            raise self.err(400, "EXT-400", "Bad Request", "file part is required")
        e = self._add_ext(kind, file_part.get("data") or b"", data, me["id"])
        return self._ok(self._pub(e), 201)

    def _ext(self, kind, ref):
        store = self._ext_store(kind)
        e = store.get(ref) or next((x for x in store.values() if x["qextFilename"] == ref), None)
        if not e:
            raise self.err(404, "EXT-404", "Not Found", "%s %s not found" % (kind[:-1], ref))
        return e

    def _ext_patch(self, req, me, kind, ref):
        e = self._ext(kind, ref)
        ctype = (req.headers.get("Content-Type") or "").lower()
        if ctype.startswith("multipart/"):
            file_part, data = self._multipart_upload(req)
            if file_part is not None:
                zdata = file_part.get("data") or b""
                try:
                    zipfile.ZipFile(io.BytesIO(zdata)).namelist()
                except zipfile.BadZipFile:
                    raise self.err(400, "EXT-400", "Bad Request", "file is not a zip archive")
                with open(e["_path"], "wb") as f:
                    f.write(zdata)
                e["checksum"] = hashlib.sha256(zdata).hexdigest()
                e["file"] = {"size": len(zdata)}
        else:
            data = self._json(req)
        for k in ("name", "description", "tags", "version", "author"):
            if k in data:
                if k == "name" and any(x["name"] == data[k] and x["id"] != e["id"] for x in self._ext_store(kind).values()):
                    raise self.err(409, "EXT-409", "Conflict", "name already exists")
                e[k] = data[k]
        e["updateAt"] = self._now()
        return self._ok(self._pub(e))

    def _ext_delete(self, req, me, kind, ref):
        e = self._ext(kind, ref)
        del self._ext_store(kind)[e["id"]]
        try:
            os.remove(e["_path"])
        except OSError:
            pass
        return Response(204)

    def _ext_file(self, req, me, kind, ref, filepath=None):
        e = self._ext(kind, ref)
        if filepath is None:
            return Response(200, file=e["_path"], content_type="application/zip",
                            headers={"Content-Disposition": 'attachment; filename="%s.zip"' % e["name"]})
        with zipfile.ZipFile(e["_path"]) as z:
            for n in z.namelist():
                if n == filepath or n.split("/", 1)[-1] == filepath:
                    return Response(200, z.read(n), content_type="application/octet-stream")
        raise self.err(404, "EXT-404", "Not Found", "file %s not in archive" % filepath)

    def h_get_extensions(self, req, me):
        return self._ext_list(req, "extensions")

    def h_post_extensions(self, req, me):
        return self._ext_post(req, me, "extensions")

    def h_get_extensions_x(self, req, me, id):
        return self._ok(self._pub(self._ext("extensions", id)))

    def h_patch_extensions_x(self, req, me, id):
        return self._ext_patch(req, me, "extensions", id)

    def h_delete_extensions_x(self, req, me, id):
        return self._ext_delete(req, me, "extensions", id)

    def h_get_extensions_x_file(self, req, me, id):
        return self._ext_file(req, me, "extensions", id)

    def h_get_extensions_x_file_x(self, req, me, id, filepath):
        return self._ext_file(req, me, "extensions", id, filepath)

    def h_get_themes(self, req, me):
        return self._ext_list(req, "themes")

    def h_post_themes(self, req, me):
        return self._ext_post(req, me, "themes")

    def h_get_themes_x(self, req, me, id):
        return self._ok(self._pub(self._ext("themes", id)))

    def h_patch_themes_x(self, req, me, id):
        return self._ext_patch(req, me, "themes", id)

    def h_delete_themes_x(self, req, me, id):
        return self._ext_delete(req, me, "themes", id)

    def h_get_themes_x_file(self, req, me, id):
        return self._ext_file(req, me, "themes", id)

    def h_get_themes_x_file_x(self, req, me, id, filepath):
        return self._ext_file(req, me, "themes", id, filepath)

    # ================================================================== TEMP CONTENTS

    def _ttl(self, raw):
        if raw in (None, ""):
            return 3600
        try:
            ttl = int(raw)
        except ValueError:
            raise self.err(400, "TEMP-CONTENTS-400", "Bad Request", "ttl must be an integer")
        if ttl < 1 or ttl > 259200:
            raise self.err(400, "TEMP-CONTENTS-400", "Bad Request", "ttl must be between 1 and 259200")
        return ttl

    def h_post_temp_contents(self, req, me):
        fname = req.query.get("filename")
        if fname is not None and (not fname or "/" in fname or "\\" in fname or len(fname) > 255):
            raise self.err(400, "TEMP-CONTENTS-400", "Bad Request", "invalid filename")
        ttl = self._ttl(req.query.get("ttl"))
        tid = self._hex()
        path = os.path.join(self.data_dir, "temp-" + tid)
        with self._unlocked():
            size = req.save_body(path)
        self.temp[tid] = {"_seq": self._next_seq(), "id": tid, "name": fname or tid, "path": path,
                          "size": size, "ttl": ttl, "created": self.ctx.now(), "creator": me["id"]}
        return Response(201, b"", headers={"Location": API + "/temp-contents/" + tid})

    def _temp(self, tid):
        t = self.temp.get(tid)
        if not t:
            raise self.err(404, "TEMP-CONTENTS-404", "Not Found", "temporary content %s not found" % tid)
        if self.ctx.now() >= t["created"] + timedelta(seconds=t["ttl"]):
            raise self.err(410, "TEMP-CONTENTS-410", "Gone", "temporary content %s expired" % tid)
        return t

    def h_get_temp_contents_x(self, req, me, id):
        t = self._temp(id)
        disp = {"Content-Disposition": 'attachment; filename="%s"' % t["name"].replace('"', "")}
        if t.get("qvf"):
            g = t["qvf"]
            return Response(200, chunks=qvf.qvf_chunks(g["meta"], g["payload_size"], g["seed"]),
                            length=t["size"], content_type="application/octet-stream", headers=disp)
        return Response(200, file=t["path"], content_type="application/octet-stream", headers=disp)

    def h_get_temp_contents_x_details(self, req, me, id):
        t = self._temp(id)
        created = self.ctx.iso(t["created"])
        return self._ok({"ID": t["id"], "Name": t["name"], "Size": t["size"], "TTLSeconds": t["ttl"],
                         "CreatedAt": created, "UpdatedAt": created,
                         "Expires": self.ctx.iso(t["created"] + timedelta(seconds=t["ttl"])),
                         "CreatorID": t["creator"]})

    # ---- tus (resumable uploads): creation + PATCH + HEAD

    def h_post_temp_contents_files(self, req, me):
        length = req.headers.get("Upload-Length")
        if length is None or not str(length).isdigit():
            raise self.err(400, "TEMP-CONTENTS-400", "Bad Request", "Upload-Length header required")
        meta = {}
        for part in (req.headers.get("Upload-Metadata") or "").split(","):
            part = part.strip()
            if not part:
                continue
            k, _, v = part.partition(" ")
            try:
                meta[k] = base64.b64decode(v).decode("utf-8") if v else ""
            except Exception:
                meta[k] = ""
        tid = self._hex()
        path = os.path.join(self.data_dir, "temp-" + tid)
        open(path, "wb").close()
        rec = {"_seq": self._next_seq(), "id": tid, "name": meta.get("filename", tid), "path": path,
               "size": 0, "length": int(length), "ttl": self._ttl(meta.get("ttl")),
               "created": self.ctx.now(), "creator": me["id"]}
        self.tus[tid] = rec
        if int(length) == 0:
            self.temp[tid] = rec
        return Response(201, b"", headers={"Location": API + "/temp-contents/files/" + tid,
                                           "Tus-Resumable": "1.0.0"})

    def _tus(self, tid):
        t = self.tus.get(tid)
        if not t:
            raise self.err(404, "TEMP-CONTENTS-404", "Not Found", "upload %s not found" % tid)
        return t

    def h_head_temp_contents_files_x(self, req, me, id):
        t = self._tus(id)
        return Response(200, b"", headers={"Upload-Offset": str(t["size"]),
                                           "Upload-Length": str(t["length"]),
                                           "Tus-Resumable": "1.0.0", "Cache-Control": "no-store"})

    def h_patch_temp_contents_files_x(self, req, me, id):
        t = self._tus(id)
        off = req.headers.get("Upload-Offset")
        if off is None or not str(off).isdigit():
            raise self.err(400, "TEMP-CONTENTS-400", "Bad Request", "Upload-Offset header required")
        if int(off) != t["size"]:
            raise self.err(409, "TEMP-CONTENTS-409", "Conflict", "Upload-Offset does not match (%d)" % t["size"])
        if t.get("busy"):
            raise self.err(409, "TEMP-CONTENTS-409", "Conflict", "another PATCH is in progress")
        stream = req.body_stream()
        t["busy"] = True
        size = t["size"]
        too_big = False
        try:
            with self._unlocked(), open(t["path"], "ab") as f:
                while True:
                    chunk = stream.read(1 << 20)
                    if not chunk:
                        break
                    if size + len(chunk) > t["length"]:
                        too_big = True
                        break
                    f.write(chunk)
                    size += len(chunk)
        finally:
            t["busy"] = False
            t["size"] = size
        if too_big:
            raise self.err(413, "TEMP-CONTENTS-413", "Payload Too Large", "more data than Upload-Length")
        if t["size"] == t["length"]:
            self.temp[id] = t
        return Response(204, b"", headers={"Upload-Offset": str(t["size"]), "Tus-Resumable": "1.0.0"})

    # ================================================================== CONTROL

    def control(self, req):
        """The Cloud half's /_sim/... calls (core.Simulator.control); None if not one of them."""
        route = (req.method, req.path.rstrip("/"))
        if route == ("POST", "/_sim/scheduling/fire"):
            try:
                body = json.loads(req.body() or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return Response(400, {"error": "the body must be a JSON object"})
            return self.sched_fire(body)
        if route == ("POST", "/_sim/oauth/expire"):
            return Response(200, self.oauth_expire())
        return None

    # ================================================================== STATE

    def state(self):
        def pub(rec):
            return {k: v for k, v in rec.items() if not k.startswith("_")}

        apps = []
        for a in self.apps.values():
            d = {k: v for k, v in a.items() if not k.startswith("_") and k not in ("item", "objects", "scripts")}
            d["itemId"] = a["item"]["id"]
            d["objects"] = [dict(o) for o in a["objects"].values()]
            d["scripts"] = [dict(s) for s in a["scripts"]]
            d["script"] = self._current_script(a)
            d["resourceCustomAttributes"] = a["item"]["resourceCustomAttributes"]
            apps.append(d)
        items = []
        for a in self._item_records():
            items.append({"id": a["item"]["id"], "resourceType": "app", "resourceId": a["id"],
                          "name": a["name"], "spaceId": a["spaceId"] or "", "ownerId": a["ownerId"],
                          "collectionIds": [c["id"] for c in self.collections.values() if a["item"]["id"] in c["_members"]],
                          "resourceCustomAttributes": a["item"]["resourceCustomAttributes"]})
        dconns = []
        for d in self.dconns.values():
            x = pub(d)
            x["builtin"] = d["_builtin"]
            x.pop("qPassword", None)
            x.pop("qConnectionSecret", None)
            x["test_only_received_secrets"] = dict(d.get("_secrets") or {})
            dconns.append(x)

        def ext(e):
            x = pub(e)
            return x

        reloads = []
        for r in self.reloads.values():
            x = pub(r)
            reloads.append(x)
        temps = []
        for t in list(self.temp.values()):
            temps.append({"id": t["id"], "name": t["name"], "size": t["size"], "ttl": t["ttl"],
                          "created": self.ctx.iso(t["created"]), "creator": t["creator"],
                          "generated": bool(t.get("qvf"))})
        return {
            "tenant": dict(self.tenant),
            "users": [pub(u) for u in self.users.values()],
            "groups": [pub(g) for g in self.groups.values()],
            "spaces": [pub(s) for s in self.spaces.values()],
            "assignments": [pub(a) for a in self.assignments.values()],
            "shares": [pub(s) for s in self.shares.values()],
            "apps": apps,
            "items": items,
            "collections": [pub(c) for c in self.collections.values()],
            "data_connections": dconns,
            "reload_tasks": [pub(t) for t in self.reload_tasks.values()],
            "scheduling_tasks": self.sched_state(),
            "oauth": self.oauth_state(),
            "reloads": reloads,
            "extensions": [ext(e) for e in self.extensions.values()],
            "themes": [ext(e) for e in self.themes.values()],
            "temp_contents": temps,
            **self.reporting_state(),
            "quotas": dict(self.quotas),
            "catalogue": {"lag_ms": self._lag() * 1000.0,
                          "lagged_listings": dict(self.lagged_listings)},
        }


def main(argv=None):
    """`python3 cloud.py RULE...` (or rules on stdin): check RRULE lines like /reload-tasks."""
    rules = list(argv if argv is not None else sys.argv[1:]) or [l.rstrip("\n") for l in sys.stdin]
    bad = 0
    for rule in rules:
        msg = validate_rrule(rule)
        print("%s\t%s" % ("ok" if msg is None else "invalid: " + msg, rule))
        bad += msg is not None
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
