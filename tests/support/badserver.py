"""A scripted bad API server for tests/lua/test_badserver.lua.

python3 tests/support/badserver.py --port-file F [--certs DIR --tls]

Every path is /case/<name>/<rest>: the case decides the (broken) reply,
so one server serves every test and the client's base URL picks the
case (http://127.0.0.1:P/case/<name>).  Whatever the case,
/case/<name>/api/v1/users/me and /case/<name>/qrs/about answer normally,
so the engine's preflight passes and the breakage shows up mid-run.
GET /_hits returns {path: n} for every request seen; POST /_reset clears it.
Python 3 standard library only.
"""
import argparse
import json
import os
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HITS = {}
HITS_LOCK = threading.Lock()


def page(items, next_href=None):
    doc = {"data": items, "links": {"self": {"href": "x"}}}
    if next_href is not None:
        doc["links"]["next"] = {"href": next_href}
    return doc


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    # {====== helpers
    def send(self, status, body=b"", ctype="application/json", headers=None, length=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def origin(self):
        return "http://" + self.headers.get("Host", "127.0.0.1")

    # }======

    def handle_any(self):
        path = urlsplit(self.path).path
        query = urlsplit(self.path).query
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with HITS_LOCK:
            key = self.command + " " + path
            HITS[key] = HITS.get(key, 0) + 1
        if path == "/_hits":
            with HITS_LOCK:
                return self.send(200, dict(HITS))
        if path == "/_reset":
            with HITS_LOCK:
                HITS.clear()
            return self.send(200, {})
        parts = path.split("/", 3)
        if len(parts) < 4 or parts[1] != "case":
            return self.send(404, {"errors": [{"code": "NOPE", "title": "no case"}]})
        case, rest = parts[2], "/" + parts[3]
        base = "/case/" + case
        if rest == "/api/v1/users/me":
            return self.send(200, {"id": "me", "email": "me@example.com", "name": "Me"})
        if rest == "/qrs/about":
            return self.send(200, {"buildVersion": "14.113.2"})
        fn = getattr(self, "case_" + case.replace("-", "_"), None)
        if fn is None:
            return self.send(404, {"errors": [{"code": "NOPE", "title": "unknown case " + case}]})
        return fn(base, rest, query)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    # {====== the cases
    def case_ok(self, base, rest, query):  # a well-behaved listing, for contrast
        if self.command == "POST":
            return self.send(201, {"id": "new-space", "name": "x"})
        return self.send(200, page([]))

    def case_badjson(self, base, rest, query):
        return self.send(200, '{"data": [{"id": "1", "name": "x"}, ')

    def case_html200(self, base, rest, query):
        return self.send(200, "<html><body><h1>Maintenance</h1><script>alert(1)</script></body></html>",
                         ctype="text/html")

    def case_html500(self, base, rest, query):
        return self.send(500, "<html><body><h1>500 Internal Server Error</h1></body></html>", ctype="text/html")

    def case_truncated(self, base, rest, query):
        body = b'{"data": [{"id": "1", "name": "trunc'
        self.send(200, body, length=len(body) + 1000)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def case_wrongtype(self, base, rest, query):
        return self.send(200, "<?xml version='1.0'?><error>nope</error>", ctype="application/xml")

    def case_plainjson(self, base, rest, query):  # valid JSON, odd content type: accepted
        return self.send(200, page([{"id": "1", "name": "T_x"}]), ctype="text/plain")

    def case_qlikerror200(self, base, rest, query):
        return self.send(200, {"errors": [{"code": "HTTP-500", "title": "Internal error", "detail": "d"}]})

    def case_qlikerror500(self, base, rest, query):
        return self.send(500, {"errors": [{"code": "SPACES-42", "title": "Space store unavailable",
                                           "detail": "try later"}], "traceId": "abc"})

    def case_redirect(self, base, rest, query):
        return self.send(302, "", headers={"Location": "http://evil.invalid" + rest})

    def case_redirect_same(self, base, rest, query):
        return self.send(301, "", headers={"Location": self.origin() + base + "/elsewhere"})

    def case_hugeheaders(self, base, rest, query):
        return self.send(200, page([]), headers={"X-Junk": "j" * 300000})

    def case_manyheaders(self, base, rest, query):
        return self.send(200, page([]), headers={"X-Junk-%d" % i: "x" * 100 for i in range(3000)})

    def case_nextother(self, base, rest, query):
        return self.send(200, page([{"id": "1", "name": "a"}], "http://evil.invalid/api/v1/spaces?next=2"))

    def case_nextport(self, base, rest, query):  # same host, another port: prefix match must not pass it
        host = self.headers.get("Host", "127.0.0.1")
        return self.send(200, page([{"id": "1", "name": "a"}], "http://" + host + "9" + base + "/api/v1/spaces"))

    def case_nextsuffix(self, base, rest, query):  # https://tenant.example.com.evil.com
        host = self.headers.get("Host", "127.0.0.1:1")
        name, _, port = host.partition(":")
        return self.send(200, page([{"id": "1", "name": "a"}], "http://" + name + ".evil.invalid:" + port + rest))

    def case_nextself(self, base, rest, query):
        return self.send(200, page([{"id": "1", "name": "a"}], self.origin() + base + rest + ("?" + query if query else "")))

    def case_nextcycle(self, base, rest, query):  # page 1 -> page 2 -> page 1 ...
        nxt = "p2" if "p1" in query or not query else "p1"
        return self.send(200, page([{"id": query or "p0", "name": "a"}], self.origin() + base + rest + "?" + nxt))

    def case_nextendless(self, base, rest, query):  # a new next link forever
        n = int(query.split("=")[1]) if query.startswith("n=") else 0
        return self.send(200, page([{"id": str(n), "name": "a"}], self.origin() + base + rest + "?n=" + str(n + 1)))

    def case_datamap(self, base, rest, query):
        return self.send(200, {"data": {"id": "1", "name": "a"}, "links": {}})

    def case_datastring(self, base, rest, query):
        return self.send(200, {"data": "nothing here", "links": {}})

    def case_datanull(self, base, rest, query):
        return self.send(200, "null")

    def case_dataitems(self, base, rest, query):  # items that are not objects
        return self.send(200, page([1, "two", None, [3]]))

    def case_empty200(self, base, rest, query):
        return self.send(200, "")

    def case_deep(self, base, rest, query):
        return self.send(200, "[" * 100000 + "]" * 100000)

    def case_huge_number(self, base, rest, query):
        return self.send(200, '{"data": [{"id": 1e400, "name": "a"}], "links": {}}')

    def case_r429(self, base, rest, query):  # 429 without Retry-After
        return self.send(429, {"errors": [{"code": "HTTP-429", "title": "Too many requests"}]})

    def case_r401(self, base, rest, query):
        return self.send(401, {"errors": [{"code": "HTTP-401", "title": "Unauthorized"}]})

    def case_r401post(self, base, rest, query):  # reads work, the first write is refused
        if self.command == "GET":
            return self.send(200, page([]))
        return self.send(401, {"errors": [{"code": "HTTP-401", "title": "Unauthorized"}]})

    def case_badgzip(self, base, rest, query):
        return self.send(200, b"this is not gzip", headers={"Content-Encoding": "gzip"})

    def case_stall(self, base, rest, query):  # headers, then nothing
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.flush()
        time.sleep(30)

    # QRS shapes
    def case_qrs_object(self, base, rest, query):  # /full answers an object, not a list
        return self.send(200, {"id": "x", "name": "not a list"})

    def case_qrs_html(self, base, rest, query):
        return self.send(200, "<html>Qlik Sense: session expired</html>", ctype="text/html")

    def case_qrs_count(self, base, rest, query):
        return self.send(200, "42")

    def case_qrs_export(self, base, rest, query):
        return self.send(201, "7")
    # }======


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--certs")
    ap.add_argument("--tls", action="store_true")
    args = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(args.certs, "server.pem"), os.path.join(args.certs, "server_key.pem"))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
