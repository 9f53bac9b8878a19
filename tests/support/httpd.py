"""A loopback HTTP(S) server for the qmig.http tests.

python3 tests/support/httpd.py --port-file F [--certs DIR --tls [--mtls]]

Endpoints: /echo, /peek-item?db=&kind=&id=, /status/<code>, /redirect/<n>, /redirect-to?url=,
/slow?ms=, /stall, /bytes?n=&seed=, /upload, /multipart, /drop,
/big-headers.  Bodies are streamed both ways so 200 MiB transfers stay small
in memory on this side too.
"""
import argparse
import hashlib
import json
import os
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CHUNK = 1 << 16
STATS = {"now": 0, "max": 0}
STATS_LOCK = threading.Lock()


def pattern_block(seed: str) -> bytes:
    block = b""
    digest = hashlib.sha256(seed.encode()).digest()
    while len(block) < CHUNK:
        digest = hashlib.sha256(digest).digest()
        block += digest
    return block[:CHUNK]


def make_certs(folder: str) -> None:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost, a
    client certificate (plain and passphrase-protected key) and a rogue CA."""
    os.makedirs(folder, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, cwd=folder,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    if os.path.exists(os.path.join(folder, "client.pem")):
        return
    for ca in ("ca", "rogue_ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=qmig test {ca}",
            "-keyout", f"{ca}_key.pem", "-out", f"{ca}.pem")
    with open(os.path.join(folder, "san.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ca, ext in (("server", "ca", ["-extfile", "san.cnf"]), ("client", "ca", []),
                          ("rogue_client", "rogue_ca", [])):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}_key.pem",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}_key.pem",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext)
    run("rsa", "-in", "client_key.pem", "-aes256", "-passout", "pass:test-pass", "-out", "client_key_enc.pem")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body_chunks(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, CHUNK))
                    left -= len(data)
                    yield data
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, CHUNK))
            if not data:
                return
            left -= len(data)
            yield data

    def read_body(self, keep=1 << 20):
        digest, size, kept = hashlib.sha256(), 0, bytearray()
        for data in self.body_chunks():
            digest.update(data)
            size += len(data)
            if len(kept) < keep:
                kept += data[: keep - len(kept)]
        return size, digest.hexdigest(), bytes(kept)

    def handle_any(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        parts = url.path.strip("/").split("/")
        name = parts[0]
        if name == "echo":
            size, sha, kept = self.read_body()
            cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
            subject = dict(x[0] for x in cert["subject"]) if cert else None
            self.reply(200, {"method": self.command, "path": url.path, "query": url.query,
                             "headers": {k.lower(): v for k, v in self.headers.items()},
                             "bytes": size, "sha256": sha, "body": kept.decode("utf-8", "replace"),
                             "client_cert": subject, "peer_port": self.client_address[1]})
        elif name == "status":
            self.read_body()
            code = int(parts[1])
            self.reply(code, {"errors": [{"code": f"HTTP-{code}", "title": "status", "status": code}]})
        elif name == "redirect":
            self.read_body()  # unread, a write's body would open the next request on this connection
            n = int(parts[1])
            target = "/echo" if n <= 1 else f"/redirect/{n - 1}"
            self.reply(302, b"", headers=[("Location", target)])
        elif name == "redirect-to":
            self.reply(302, b"", headers=[("Location", query["url"][0])])
        elif name == "slow":
            time.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
            self.reply(200, {"slept": True})
        elif name == "stall":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            time.sleep(30)
        elif name == "bytes":
            n = int(query.get("n", ["0"])[0])
            block = pattern_block(query.get("seed", ["qmig"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            left = n
            while left > 0:
                data = block[: min(left, CHUNK)]
                self.wfile.write(data)
                left -= len(data)
        elif name == "bytes-sha":
            n = int(query.get("n", ["0"])[0])
            block, digest, left = pattern_block(query.get("seed", ["qmig"])[0]), hashlib.sha256(), n
            while left > 0:
                digest.update(block[: min(left, CHUNK)])
                left -= min(left, CHUNK)
            self.reply(200, {"sha256": digest.hexdigest()})
        elif name == "concurrent":
            with STATS_LOCK:
                STATS["now"] += 1
                STATS["max"] = max(STATS["max"], STATS["now"])
            time.sleep(int(query.get("ms", ["200"])[0]) / 1000)
            with STATS_LOCK:
                STATS["now"] -= 1
                peak = STATS["max"]
            self.reply(200, {"max_in_flight": peak})
        elif name == "concurrent-reset":
            with STATS_LOCK:
                STATS["now"], STATS["max"] = 0, 0
            self.reply(200, {})
        elif name == "upload":
            size, sha, _ = self.read_body(keep=0)
            self.reply(200, {"bytes": size, "sha256": sha,
                             "content_type": self.headers.get("Content-Type")})
        elif name == "multipart":
            self.reply(200, self.parse_multipart())
        elif name == "drop-counted":
            self.read_body()
            with STATS_LOCK:
                STATS["drops"] = STATS.get("drops", 0) + 1
            self.close_connection = True
            self.connection.shutdown(2)
        elif name == "peek-item":
            # what another process sees of a qmig cache item right now:
            # only committed rows (tests of the write barrier)
            self.read_body()
            import sqlite3
            db = sqlite3.connect("file:" + query["db"][0] + "?mode=ro", uri=True, timeout=5)
            row = db.execute("SELECT status FROM items WHERE kind = ? AND source_id = ?",
                             (query["kind"][0], query["id"][0])).fetchone()
            db.close()
            self.reply(200, {"status": row[0] if row else None})
        elif name == "drop-count":
            self.reply(200, {"drops": STATS.get("drops", 0)})
        elif name == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
        elif name == "big-headers":
            self.reply(200, b"{}", headers=[("X-Big", "a" * (2 * 1024 * 1024))])
        else:
            self.reply(404, {"errors": [{"code": "HTTP-404", "title": "Not found"}]})

    def parse_multipart(self):
        ctype = self.headers.get("Content-Type", "")
        boundary = ctype.split("boundary=")[-1].strip('"').encode()
        _, _, body = self.read_body(keep=64 << 20)
        parts = []
        for chunk in body.split(b"--" + boundary)[1:-1]:
            head, _, data = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
            info = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for line in head.decode().split("\r\n"):
                key, _, value = line.partition(":")
                if key.lower() == "content-disposition":
                    for item in value.split(";"):
                        k, _, v = item.strip().partition("=")
                        if v:
                            info[k] = v.strip('"')
                elif key.lower() == "content-type":
                    info["content_type"] = value.strip()
            if len(data) < 4096:
                info["data"] = data.decode("utf-8", "replace")
            parts.append(info)
        return {"parts": parts}

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # dropped and refused handshakes are part of the tests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--certs")
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--mtls", action="store_true")
    args = ap.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    if args.tls or args.mtls:
        make_certs(args.certs)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(args.certs, "server.pem"), os.path.join(args.certs, "server_key.pem"))
        if args.mtls:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(os.path.join(args.certs, "ca.pem"))
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
