"""Helpers shared by the qliksim self-tests (in-process simulator + tiny clients)."""
import atexit
import http.client
import json
import os
import shutil
import ssl
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import core  # noqa: E402

XRF = "abcdefghijklmnop"
SA_API = "UserDirectory=INTERNAL; UserId=sa_api"
_CERTS = tempfile.mkdtemp(prefix="qliksim-test-certs-")
atexit.register(shutil.rmtree, _CERTS, True)


def start(site, halves, faults=None, **kw):
    """Start an in-process simulator on free ports (certificates shared by all tests)."""
    return core.start(site, halves, certs_dir=_CERTS, faults=faults, **kw)


def port_of(url):
    return int(url.rsplit(":", 1)[1])


def client_context(info, cert="client_cert", key="client_key", password=None):
    ctx = ssl.create_default_context(cafile=info["certs"]["ca"])
    if cert:
        ctx.load_cert_chain(info["certs"][cert], info["certs"][key], password=password)
    return ctx


class Reply:
    def __init__(self, resp, data):
        self.status = resp.status
        self.headers = resp.headers
        self.data = data

    def json(self):
        return json.loads(self.data)

    @property
    def text(self):
        return self.data.decode("utf-8")


class Client:
    """A keep-alive HTTP(S) client for one listener."""

    def __init__(self, url, context=None, timeout=30):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "https":
            self.conn = http.client.HTTPSConnection(parsed.hostname, parsed.port,
                                                    context=context, timeout=timeout)
        else:
            self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        self.conn.request(method, path, body=data, headers=headers or {})
        resp = self.conn.getresponse()
        return Reply(resp, resp.read())

    def close(self):
        self.conn.close()


class QrsClient(Client):
    """Adds Xrfkey + X-Qlik-User to every call."""

    def __init__(self, info, user=SA_API, **kw):
        super().__init__(info["qrs_url"], client_context(info, **kw))
        self.user = user

    def call(self, method, path, body=None, params=None, xrf=XRF, headers=None):
        query = dict(params or {})
        if xrf is not None:
            query["xrfkey"] = xrf
        sep = "&" if "?" in path else "?"
        full = path + (sep + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
                       if query else "")
        hdrs = {"X-Qlik-Xrfkey": xrf or "", "X-Qlik-User": self.user,
                "Content-Type": "application/json", **(headers or {})}
        return self.request(method, full, body, hdrs)

    def get(self, path, **params):
        return self.call("GET", path, params=params)


class CloudReply:
    """A Cloud API answer: status, headers (a dict), the raw body and its JSON (None if not JSON)."""

    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw
        try:
            self.json = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError):
            self.json = None

    def __repr__(self):
        return f"<Reply {self.status} {self.raw[:300]!r}>"


def cloud_call(base, method, url, body=None, key=None, ctype=None, headers=None, timeout=30):
    """One request to a Cloud half over HTTP with a bearer key; an HTTP error is a reply, not an
    exception, so tests assert on 4xx/5xx like on 2xx.  A dict or list body is sent as JSON."""
    if isinstance(body, (dict, list)):
        body, ctype = json.dumps(body).encode(), ctype or "application/json"
    if not url.startswith("http"):
        url = base + url
    req = urllib.request.Request(url, data=body, method=method)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    if ctype:
        req.add_header("Content-Type", ctype)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return CloudReply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as e:
        return CloudReply(e.code, dict(e.headers), e.read())
