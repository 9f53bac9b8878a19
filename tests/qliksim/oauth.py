"""qliksim — OAuth machine-to-machine tokens (`POST /oauth/token`) for the Cloud half.

A mixin of cloud.Cloud. Only the client_credentials grant: M2M never gets a refresh
token, so a client renews by asking again, typically after a 401 (which
/_sim/oauth/expire provokes on demand). See README-cloud.md, "OAuth M2M".
"""
import base64
import json
import urllib.parse
from datetime import timedelta

OAUTH_ROUTES = [("POST", "/token")]
DEFAULT_LIFETIME = 21600        # 360 min, the documented default per OAuth client
DEFAULT_SCOPES = ("admin_classic", "user_default")


class OAuthMixin:

    def _oauth_init(self, seed):
        self.oauth_clients = {}
        self.oauth_tokens = {}          # access token -> {user, client_id, scope, expires}
        self.oauth_issued = 0
        for c in seed.get("oauth_clients") or []:
            uid = self._seed_user_ref(c.get("user")) or self._first_user()
            self.oauth_clients[c["client_id"]] = {
                "secret": c["client_secret"], "user": uid,
                "lifetime": int(c.get("lifetime_seconds", DEFAULT_LIFETIME)),
                "send_expires_in": bool(c.get("send_expires_in", True)),
                "scopes": list(c.get("scopes") or DEFAULT_SCOPES)}

    def _token_body(self, req):
        raw = req.body() or b""
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            text = raw.decode("utf-8")
            if ctype == "application/x-www-form-urlencoded":
                return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
            body = json.loads(text) if text.strip() else {}
        except (UnicodeDecodeError, ValueError):
            body = None
        if not isinstance(body, dict):
            raise self.err(400, "OAUTH-1", "Invalid request",
                                    "the body must be JSON or x-www-form-urlencoded")
        return body

    def _basic_credentials(self, req):
        auth = req.headers.get("Authorization") or ""
        if not auth.lower().startswith("basic "):
            return None, None
        try:
            pair = base64.b64decode(auth[6:].strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None, None
        cid, _, secret = pair.partition(":")
        return urllib.parse.unquote(cid), urllib.parse.unquote(secret)

    def h_post_oauth_token(self, req, me):
        b = self._token_body(req)
        grant = b.get("grant_type")
        if grant != "client_credentials":
            raise self.err(400, "OAUTH-2", "Unsupported grant type",
                                    "grant_type must be client_credentials (got %r)" % (grant,))
        cid, secret = b.get("client_id"), b.get("client_secret")
        if cid is None and secret is None:
            cid, secret = self._basic_credentials(req)
        client = self.oauth_clients.get(cid) if isinstance(cid, str) else None
        if client is None or secret != client["secret"]:
            raise self.err(401, "OAUTH-3", "Invalid client", "invalid client credentials")
        wanted = (b.get("scope") or "").split()
        refused = [s for s in wanted if s not in client["scopes"]]
        if refused:
            raise self.err(400, "OAUTH-4", "Invalid scope",
                                    "scope not allowed for this client: %s" % " ".join(refused))
        scope = " ".join(wanted or client["scopes"])
        expires = self.ctx.now() + timedelta(seconds=client["lifetime"])
        self.oauth_issued += 1
        token = "qsim-at-%s" % self.ctx.new_hex_id(40)
        self.oauth_tokens[token] = {"user": client["user"], "client_id": cid, "scope": scope,
                                    "expires": expires}
        out = {"access_token": token, "token_type": "bearer", "expires_at": self.ctx.iso(expires),
               "scope": scope}
        if client["send_expires_in"]:
            out["expires_in"] = client["lifetime"]
        return self._ok(out, headers={"Cache-Control": "no-store"})

    def _oauth_user(self, token):
        """The user id an access token acts as; None if it is no token; 401 once expired."""
        t = self.oauth_tokens.get(token)
        if t is None:
            return None
        if t["expires"] <= self.ctx.now():
            raise self.err(401, "HTTP-401", "Unauthorized", "the access token has expired")
        return t["user"]

    def oauth_expire(self):
        now = self.ctx.now()
        n = 0
        for t in self.oauth_tokens.values():
            if t["expires"] > now:
                t["expires"] = now
                n += 1
        return {"expired": n}

    def oauth_state(self):
        now = self.ctx.now()
        return {"tokens_issued": self.oauth_issued,
                "active_tokens": sum(1 for t in self.oauth_tokens.values() if t["expires"] > now),
                "clients": sorted(self.oauth_clients)}
