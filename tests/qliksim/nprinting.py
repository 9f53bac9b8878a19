"""The Qlik NPrinting half of qliksim: the NPrinting API (https://<server>:4993/api/v1/...).

What it models (docs/nprinting.md has the sources):
  * JWT authentication as NPrinting's "Admin > Settings > Authentication" sets it up: an
    RS256 token signed with the key of the certificate pasted into the web console,
    sent as "Authorization: Bearer <token>", the user found by the e-mail attribute
    named in the settings ("email" here).  No token, a bad signature or an unknown user
    -> 401.
  * Windows (NTLM) authentication as the API documents it: GET /api/v1/login/ntlm takes
    the NTLM handshake (ntlm.py: the server side of a Windows server, NTLMv2, state per
    connection) for the Windows account a user's "domainAccount" names, and on success
    answers {"result", "code": 0, "message": null} with the session cookies
    NPWEBCONSOLE_SESSION and NPWEBCONSOLE_XSRF-TOKEN; later calls send the session cookie.
    A wrong password, an account no enabled user has, or a missing handshake -> 401 with
    "WWW-Authenticate: NTLM".  The passwords are the site's ("password" of a user: what
    the domain controller knows); POST /_sim/nprinting/expire-sessions ends every session.
  * Read endpoints of apps, connections, filters, reports, tasks and users: lists are
    {"data": {"totalItems", "offset", "limit", "items": [...]}} with offset/limit
    (default 50), one entity is {"data": {...}}; 404 for an unknown id; 400 for a bad
    offset/limit.  Every list is filtered by what the user may see (an NPrinting
    administrator sees everything; the sim's users are all administrators).
  * A Qlik Sense connection names the QSEoW app it reads (by the QRS half's app id):
    how an NPrinting app is bound to the apps of the site.
  * Report templates are not served by the API (it has no template endpoint); the
    export package a person makes in the web console is written to
    <data dir>/nprinting/export/<report id>.<ext> at start (info "nprinting_export").

Site keys under "nprinting": apps [{name, description, connections: [{name, qs_app}]}],
users [{name, email, domainAccount, password}], windows {domain, computer, dns_domain},
filters [{app, name, description, enabled,
fields: [{connection, name, values: [{value, type}], overrideValues}]}], reports [...],
tasks [...] (see examples/demo/site.json).
"""
import base64
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse

import ntlm
from core import ApiError, Response

API = "/api/v1"
KINDS = ("apps", "connections", "filters", "reports", "tasks", "users")
REPORT_TYPES = ("excel", "word", "powerpoint", "html", "pixelperfect", "qlikentity")
EXT = {"excel": "xlsx", "word": "docx", "powerpoint": "pptx", "html": "html", "pixelperfect": "repx",
       "qlikentity": "zip"}
VALUE_TYPES = ("text", "number", "evaluate", "advancedsearch")


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def ensure_jwt_keys(d):
    """The certificate pasted into NPrinting's JWT settings, and its key (RSA: RS256).

    Made once in d/np_jwt; simulators starting together race for it, so each makes its
    own in a private folder and renames it into place: the first rename wins, the others
    use that one."""
    final = os.path.join(d, "np_jwt")
    paths = {"key": os.path.join(final, "key.pem"), "cert": os.path.join(final, "cert.pem"),
             "pub": os.path.join(final, "pub.pem")}
    if os.path.isdir(final):
        return paths
    os.makedirs(d, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="np_jwt.", dir=d)
    key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
             "-days", "3650", "-subj", "/CN=qliksim NPrinting JWT")
    with open(os.path.join(tmp, "pub.pem"), "wb") as fh:
        fh.write(_openssl("x509", "-in", cert, "-pubkey", "-noout"))
    try:
        os.rename(tmp, final)
    except OSError:              # another simulator was first
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def sign_jwt(key_path, claims):
    head = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    signing_input = (head + "." + body).encode()
    sig = _openssl("dgst", "-sha256", "-sign", key_path, data=signing_input)
    return head + "." + body + "." + _b64url(sig)


class NPrinting:
    """One simulated NPrinting server."""

    def __init__(self, seed, ctx):
        self.ctx = ctx
        seed = dict(seed or {})
        self.seed = seed
        self.attribute = seed.get("jwt_attribute", "email")
        # the same keys across /_sim/reset: the token handed out at start stays valid
        # (made only for a site with an NPrinting server: RSA key generation is slow)
        # (in the certificate folder, which tests share: one key for all their simulators)
        key_dir = getattr(ctx, "certs_dir", None) or os.path.join(ctx.data_dir, "nprinting")
        self.keys = ensure_jwt_keys(key_dir) if seed else None
        self.verified = {}        # token -> user id (a signature is checked once)
        self.sessions = {}        # NPWEBCONSOLE_SESSION value -> user id
        self.passwords = {}       # lower-case domain account -> its Windows password
        win = seed.get("windows") or {}
        self.windows = {"domain": win.get("domain", "CORP"), "computer": win.get("computer", "NPSRV01"),
                        "dns_domain": win.get("dns_domain", "corp.example")}
        self.db = {k: {} for k in KINDS}
        self.export_dir = os.path.join(ctx.data_dir, "nprinting", "export")
        self._load(seed)

    # ------------------------------------------------------------------ seed

    def _id(self):
        return self.ctx.new_id()

    def _stamp(self):
        return "2024-02-01T08:00:00.000Z"

    def _qs_app_id(self, name):
        qrs = self.ctx.halves.get("qrs")
        if qrs is None:
            return None
        for a in qrs.db["app"].values():
            if a.get("name") == name or a.get("id") == name:
                return a["id"]
        raise ValueError("nprinting: connection names QSEoW app %r, which the site does not have" % name)

    def _by_name(self, kind, name, field="name"):
        for rec in self.db[kind].values():
            if rec.get(field) == name or rec["id"] == name:
                return rec
        raise ValueError("nprinting: unknown %s %r" % (kind[:-1], name))

    def _load(self, seed):
        stamp = self._stamp()
        for u in seed.get("users") or []:
            uid = u.get("id") or self._id()
            self.db["users"][uid] = {"id": uid, "email": u.get("email", ""), "userName": u.get("name", ""),
                                     "domainAccount": u.get("domainAccount", ""), "timezone": u.get("timezone", "UTC"),
                                     "locale": u.get("locale", "en"), "folder": "", "subFolder": "",
                                     "enabled": bool(u.get("enabled", True)), "created": stamp, "lastUpdate": stamp}
            if u.get("password") is not None and u.get("domainAccount"):
                self.passwords[u["domainAccount"].lower()] = str(u["password"])
        for a in seed.get("apps") or []:
            aid = a.get("id") or self._id()
            self.db["apps"][aid] = {"id": aid, "name": a["name"], "description": a.get("description", ""),
                                    "created": stamp, "lastUpdate": stamp}
            for c in a.get("connections") or []:
                cid = c.get("id") or self._id()
                self.db["connections"][cid] = {
                    "id": cid, "name": c["name"], "description": c.get("description", ""), "appId": aid,
                    "source": "qlikSense", "created": stamp, "lastUpdate": stamp,
                    "qlikSenseAppId": self._qs_app_id(c["qs_app"]),
                    "connectionStatus": "generated"}
        for f in seed.get("filters") or []:
            app = self._by_name("apps", f["app"])
            fid = f.get("id") or self._id()
            fields = []
            for fld in f.get("fields") or []:
                conn = self._by_name("connections", fld["connection"])
                values = []
                for v in fld.get("values") or []:
                    v = v if isinstance(v, dict) else {"value": str(v), "type": "text"}
                    if v.get("type", "text") not in VALUE_TYPES:
                        raise ValueError("nprinting: filter %r: value type %r" % (f["name"], v.get("type")))
                    values.append({"value": str(v["value"]), "type": v.get("type", "text")})
                fields.append({"connectionId": conn["id"], "name": fld["name"],
                               "overrideValues": bool(fld.get("overrideValues", False)), "values": values})
            self.db["filters"][fid] = {"id": fid, "appId": app["id"], "name": f["name"],
                                       "description": f.get("description", ""),
                                       "enabled": bool(f.get("enabled", True)), "fields": fields,
                                       "variables": list(f.get("variables") or []),
                                       "created": stamp, "lastUpdate": stamp}
        os.makedirs(self.export_dir, exist_ok=True)
        for r in seed.get("reports") or []:
            app = self._by_name("apps", r["app"])
            rid = r.get("id") or self._id()
            typ = r.get("type", "excel")
            if typ not in REPORT_TYPES:
                raise ValueError("nprinting: report %r: type %r" % (r.get("title"), typ))
            self.db["reports"][rid] = {
                "id": rid, "title": r["title"], "description": r.get("description", ""), "type": typ,
                "appId": app["id"], "enabled": bool(r.get("enabled", True)), "tags": list(r.get("tags") or []),
                "filters": [self._by_name("filters", n)["id"] for n in r.get("filters") or []],
                "created": stamp, "lastUpdate": stamp}
            template = r.get("template") or {}
            with open(os.path.join(self.export_dir, "%s.%s" % (rid, EXT[typ])), "w", encoding="utf-8") as fh:
                json.dump({"nprintingTemplate": 1, "type": typ, "title": r["title"],
                           "connection": template.get("connection"),
                           "fields": list(template.get("fields") or []),
                           "levels": list(template.get("levels") or []),
                           "pages": list(template.get("pages") or [])}, fh)
        for t in seed.get("tasks") or []:
            app = self._by_name("apps", t["app"])
            tid = t.get("id") or self._id()
            self.db["tasks"][tid] = {
                "id": tid, "name": t["name"], "description": t.get("description", ""), "appId": app["id"],
                "type": "publish", "enabled": bool(t.get("enabled", True)),
                "reports": [self._by_name("reports", n, "title")["id"] for n in t.get("reports") or []],
                "recipients": [self._by_name("users", e, "email")["id"] for e in t.get("recipients") or []],
                "filters": [self._by_name("filters", n)["id"] for n in t.get("filters") or []],
                "triggers": [dict(tr) for tr in t.get("triggers") or []],
                "created": stamp, "lastUpdate": stamp}

    # ------------------------------------------------------------------ interface

    def tier(self, method, path):
        return "nprinting"

    def admin_token(self):
        """A token for the first user of the site (what a person makes once with the key)."""
        users = list(self.db["users"].values())
        if not users or not self.keys:
            return None
        return sign_jwt(self.keys["key"], {self.attribute: users[0]["email"]})

    def state(self):
        if not self.seed:
            return None          # the site has no NPrinting server
        return {k: list(v.values()) for k, v in self.db.items()}

    def control(self, req):
        if (req.method, req.path.rstrip("/")) == ("POST", "/_sim/nprinting/expire-sessions"):
            self.sessions.clear()
            return Response(200, {"ok": True})
        return None

    def render_error(self, err):
        return Response(err.status, {"code": err.status, "message": err.detail or err.title},
                        headers=err.headers)

    # ------------------------------------------------------------------ auth

    def _verify(self, token):
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            head = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            sig = _unb64url(parts[2])
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(head, dict) or head.get("alg") != "RS256" or not isinstance(claims, dict):
            return None
        with tempfile.NamedTemporaryFile(delete=False) as fh:
            fh.write(sig)
            sig_path = fh.name
        try:
            subprocess.run(["openssl", "dgst", "-sha256", "-verify", self.keys["pub"], "-signature", sig_path],
                           input=(parts[0] + "." + parts[1]).encode(), check=True, capture_output=True)
        except subprocess.CalledProcessError:
            return None
        finally:
            os.remove(sig_path)
        who = str(claims.get(self.attribute, "")).lower()
        for u in self.db["users"].values():
            if u["email"].lower() == who and u["enabled"]:
                return u["id"]
        return None

    def _session(self, req):
        """The user id of the request's NPWEBCONSOLE_SESSION cookie, or None."""
        for header in req.headers.get_all("Cookie") or []:
            for pair in header.split(";"):
                name, _, value = pair.strip().partition("=")
                if name == "NPWEBCONSOLE_SESSION" and value in self.sessions:
                    return self.sessions[value]
        return None

    def _ntlm_refused(self, detail, challenge=None):
        return ApiError(401, "401", "Unauthorized", detail,
                        headers={"WWW-Authenticate": ntlm.header(challenge)})

    def _ntlm_user(self, fields):
        """The enabled user whose domain account is the AUTHENTICATE_MESSAGE's, with its password."""
        account = (fields["domain"] + "\\" + fields["user"]).lower()
        for u in self.db["users"].values():
            if u["domainAccount"].lower() == account and u["enabled"] and account in self.passwords:
                return u, self.passwords[account]
        return None, None

    def _login_ntlm(self, req):
        """GET /api/v1/login/ntlm: the NTLM handshake, then the session cookies."""
        conn = req.conn
        uid = conn.get("ntlm_user")
        if uid is None:
            auth = req.headers.get("Authorization") or ""
            if not auth.upper().startswith("NTLM"):
                raise self._ntlm_refused("the user is not authenticated")
            try:
                kind, msg = ntlm.decode(auth)
                if kind == 1:
                    w = self.windows
                    reply, conn["ntlm_challenge"] = ntlm.challenge(msg, w["domain"], w["computer"], w["dns_domain"])
                    raise self._ntlm_refused("NTLM challenge", reply)
                if kind != 3:
                    raise ntlm.NtlmError("unexpected NTLM message type %d" % kind)
                pending = conn.pop("ntlm_challenge", None)
                fields = ntlm.authenticate_fields(msg)
            except ntlm.NtlmError as err:
                conn.pop("ntlm_challenge", None)
                raise self._ntlm_refused("bad NTLM message: %s" % err) from None
            user, password = self._ntlm_user(fields)
            if pending is None or user is None or not ntlm.verify(fields, pending, password):
                raise self._ntlm_refused("the user is not authenticated")
            uid = conn["ntlm_user"] = user["id"]
        session, xsrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.sessions[session] = uid
        cookies = ["NPWEBCONSOLE_SESSION=%s; path=/; secure; httponly" % session,
                   "NPWEBCONSOLE_XSRF-TOKEN=%s; path=/; secure" % xsrf]
        return Response(200, {"result": uid, "code": 0, "message": None}, headers={"Set-Cookie": cookies})

    def _caller(self, req):
        auth = req.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            uid = self._session(req)
            if uid is not None and self.db["users"][uid]["enabled"]:
                return self.db["users"][uid]
            raise ApiError(401, "401", "Unauthorized", "authentication required",
                           headers={"WWW-Authenticate": "Bearer"})
        token = auth[7:].strip()
        uid = self.verified.get(token)
        if uid is None:
            uid = self._verify(token)
            if uid is None:
                raise ApiError(401, "401", "Unauthorized", "invalid token")
            self.verified[token] = uid
        return self.db["users"][uid]

    # ------------------------------------------------------------------ routing

    def handle(self, req):
        parts = [urllib.parse.unquote(p) for p in req.path.split("/") if p]
        if parts[:2] != ["api", "v1"] or len(parts) < 3:
            raise ApiError(404, "404", "Not Found", "no route for %s" % req.path)
        kind, rest = parts[2].lower(), parts[3:]
        if kind == "login" and [p.lower() for p in rest] == ["ntlm"] and req.method in ("GET", "POST"):
            req.endpoint = "%s %s/login/ntlm" % (req.method, API)
            return self._login_ntlm(req)
        self._caller(req)
        if kind not in self.db or len(rest) > 1:
            req.endpoint = "%s %s/?" % (req.method, API)
            raise ApiError(404, "404", "Not Found", "no route for %s" % req.path)
        req.endpoint = "%s %s/%s%s" % (req.method, API, kind, "/{id}" if rest else "")
        if req.method != "GET":
            # this tool never writes to NPrinting; the real API has writes the sim does not model
            raise ApiError(405, "405", "Method Not Allowed", "qliksim's NPrinting half is read-only")
        if rest:
            rec = self.db[kind].get(rest[0])
            if rec is None:
                raise ApiError(404, "404", "Not Found", "%s %s not found" % (kind[:-1], rest[0]))
            return Response(200, {"data": rec})
        return self._list(req, kind)

    def _int(self, req, name, default, lo, hi):
        raw = req.query_ci(name)
        if raw is None:
            return default
        try:
            n = int(raw)
        except ValueError:
            raise ApiError(400, "400", "Bad Request", "%s must be an integer" % name)
        if n < lo or n > hi:
            raise ApiError(400, "400", "Bad Request", "%s out of range" % name)
        return n

    def _list(self, req, kind):
        offset = self._int(req, "offset", 0, 0, 1 << 31)
        limit = self._int(req, "limit", 50, 1, 1000)
        records = list(self.db[kind].values())
        app = req.query_ci("appId")
        if app and kind != "apps":
            records = [r for r in records if r.get("appId") == app]
        records.sort(key=lambda r: (r.get("created", ""), r["id"]))
        return Response(200, {"data": {"totalItems": len(records), "offset": offset, "limit": limit,
                                       "items": records[offset:offset + limit]}})
