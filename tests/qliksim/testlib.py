"""Helpers shared by the qliksim self-tests (in-process simulator + tiny clients)."""
import atexit
import http.client
import json
import os
import shutil
import ssl
import sys
import tempfile
import urllib.parse

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
