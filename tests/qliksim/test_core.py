"""Self-tests of the qliksim core: control endpoint, counters, faults, streaming, TLS, CLI."""
import hashlib
import http.client
import io
import json
import os
import pstats
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import unittest

import testlib
from testlib import Client, QrsClient

import core
import qvf
from qrs import QRS

MIB = 1 << 20


class FakeHalf:
    """A minimal half: a list of items plus upload/download/echo endpoints."""

    def __init__(self, seed, ctx):
        self.ctx = ctx
        self.items = [dict(i) for i in seed.get("items", [])]

    def tier(self, method, path):
        return "tier1" if method == "GET" else "tier2"

    def state(self):
        return {"items": self.items}

    def handle(self, req):
        route = (req.method, req.path)
        if route == ("GET", "/items"):
            req.endpoint = "GET /items"
            return core.Response(200, {"data": self.items})
        if req.method == "POST" and req.path == "/items":
            req.endpoint = "POST /items"
            body = req.json() or {}
            if any(i.get("name") == body.get("name") for i in self.items):
                raise core.ApiError(409, "Conflict", "Conflict", "name in use")
            item = {"id": self.ctx.new_id(), **body}
            self.items.append(item)
            return core.Response(201, item)
        if req.method == "DELETE" and req.path.startswith("/items/"):
            req.endpoint = "DELETE /items/{id}"
            self.items = [i for i in self.items if i["id"] != req.path.split("/")[2]]
            return core.Response(204)
        if route == ("POST", "/upload"):
            target = os.path.join(self.ctx.data_dir, "upload.bin")
            size = req.save_body(target)
            with open(target, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            return core.Response(201, {"size": size, "sha256": digest})
        if route == ("GET", "/upload"):
            return core.Response(200, file=os.path.join(self.ctx.data_dir, "upload.bin"),
                                 content_type="application/octet-stream")
        if route == ("POST", "/stream"):
            size, stream = 0, req.body_stream()
            while True:
                data = stream.read(65536)
                if not data:
                    return core.Response(200, {"size": size})
                size += len(data)
        if route == ("POST", "/multipart"):
            return core.Response(200, [{"name": p["name"], "filename": p["filename"],
                                        "content_type": p["content_type"], "size": len(p["data"]),
                                        "head": p["data"][:20].decode("latin-1")}
                                       for p in req.multipart()])
        if route == ("POST", "/json"):
            return core.Response(200, {"got": req.json()})
        if route == ("GET", "/download"):
            size = int(req.query["size"])
            meta = {"format": 1, "name": "big"}
            return core.Response(200, chunks=qvf.qvf_chunks(meta, size, "seed"),
                                 length=qvf.qvf_length(meta, size),
                                 content_type="application/octet-stream")
        if route == ("GET", "/echo"):
            return core.Response(200, {"path": req.path, "query": req.query,
                                       "ci": req.query_ci("NAME"), "raw": req.raw_path})
        raise core.ApiError(404, "NotFound", "Not found", f"no route {req.path}")


SITE = {"cloud": {"items": [{"id": "seed-1", "name": "seeded"}]}}


class CoreBase(unittest.TestCase):
    faults = None

    def setUp(self):
        self.sim = testlib.start(SITE, {"cloud": FakeHalf}, faults=self.faults)
        self.url = self.sim.info["cloud_url"]
        self.c = Client(self.url)

    def tearDown(self):
        self.c.close()
        self.sim.stop()

    def fresh(self):
        """A new connection (after a dropped one)."""
        self.c.close()
        self.c = Client(self.url)
        return self.c

    def set_faults(self, faults):
        reply = self.c.request("POST", "/_sim/faults", faults)
        self.assertEqual(reply.status, 200, reply.data)

    def counts(self):
        return self.c.request("GET", "/_sim/counts").json()

    def items(self):
        return self.c.request("GET", "/_sim/state").json()["cloud"]["items"]

    def post_item(self, name, client=None):
        return (client or self.c).request("POST", "/items", {"name": name},
                                          {"Content-Type": "application/json"})

    def assert_dropped(self, fn):
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError,
                                http.client.IncompleteRead, http.client.BadStatusLine)):
            fn()
        self.fresh()


class ControlTests(CoreBase):
    def test_state_counts_and_reset(self):
        self.assertEqual(self.post_item("a").status, 201)
        self.assertEqual(self.c.request("GET", "/items").status, 200)
        self.assertEqual(self.c.request("GET", "/nope").status, 404)
        counts = self.counts()
        self.assertEqual(counts["requests"], {"POST /items": 1, "GET /items": 1, "GET /nope": 1})
        self.assertEqual(counts["writes"], {"POST /items": 1})
        self.assertEqual((counts["total"], counts["total_writes"], counts["applied_writes"]), (3, 1, 1))
        self.assertEqual(counts["by_status"], {"201": 1, "200": 1, "404": 1})
        self.assertEqual([i["name"] for i in self.items()], ["seeded", "a"])
        self.c.request("POST", "/_sim/reset-counters")
        self.assertEqual(self.counts()["total"], 0)
        self.post_item("b")
        self.assertEqual(self.c.request("POST", "/_sim/reset").status, 200)
        self.assertEqual([i["name"] for i in self.items()], ["seeded"])
        self.assertEqual(self.counts()["total"], 0)

    def test_rejected_write_counts_as_a_write_not_applied(self):
        # a re-run that blindly re-POSTs (answered 409) must show in total_writes
        self.assertEqual(self.post_item("seeded").status, 409)
        counts = self.counts()
        self.assertEqual(counts["writes"], {"POST /items": 1})
        self.assertEqual(counts["applied"], {})
        self.assertEqual((counts["total_writes"], counts["applied_writes"]), (1, 0))
        self.assertEqual(counts["injected"], {})

    def test_ids_deterministic_after_reset(self):
        first = self.post_item("a").json()["id"]
        self.c.request("POST", "/_sim/reset")
        self.assertEqual(self.post_item("a").json()["id"], first)

    def test_error_shape_from_handler(self):
        body = self.c.request("GET", "/nope").json()
        self.assertEqual(body["errors"][0]["code"], "NotFound")
        self.assertEqual(body["errors"][0]["status"], "404")
        self.assertIn("traceId", body)

    def test_faults_get_set_and_validation(self):
        self.set_faults({"latency_ms": 1})
        self.assertEqual(self.c.request("GET", "/_sim/faults").json(), {"latency_ms": 1})
        for bad in ({"bogus": 1}, {"rules": [{"match": "GET /"}]}, {"rules": [{"action": "drop"}]},
                    {"rules": [{"match": "GET /", "action": "kill"}]},
                    {"kill_after_writes": {"n": 1}}, [1]):
            self.assertEqual(self.c.request("POST", "/_sim/faults", bad).status, 400, bad)
        self.assertEqual(self.c.request("POST", "/_sim/faults", b"{nope").status, 400)
        self.set_faults({})
        self.assertEqual(self.c.request("GET", "/_sim/faults").json(), {})

    def test_request_helpers(self):
        body = self.c.request("GET", "/echo?Name=a%20b&x=1&x=2&flag").json()
        self.assertEqual(body["query"], {"Name": "a b", "x": "2", "flag": ""})
        self.assertEqual(body["ci"], "a b")
        self.assertEqual(self.c.request("POST", "/json", b"{bad", {"Content-Type": "application/json"}).status, 400)
        parts = self.c.request("POST", "/multipart", MULTIPART_BODY,
                               {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}).json()
        self.assertEqual(parts, [
            {"name": "data", "filename": None, "content_type": "application/json", "size": 13,
             "head": '{"name":"x"}\n'},
            {"name": "file", "filename": "my app.qvf", "content_type": "application/octet-stream",
             "size": 1000, "head": "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13"}])

    def test_body_too_large(self):
        big = b"[" + b"1," * (33 * MIB) + b"1]"
        self.assertEqual(self.c.request("POST", "/json", big).status, 413)


BOUNDARY = "----qliksimBoundary42"
MULTIPART_BODY = (
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"data\"\r\n"
    "Content-Type: application/json\r\n\r\n{\"name\":\"x\"}\n\r\n"
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"my app.qvf\"\r\n"
    "Content-Type: application/octet-stream\r\n\r\n").encode() + bytes(range(256)) * 3 + \
    bytes(range(232)) + f"\r\n--{BOUNDARY}--\r\n".encode()


class FaultTests(CoreBase):
    def test_error_rule_not_applied(self):
        self.set_faults({"rules": [{"match": "POST /items", "nth": 2, "action": "error", "status": 500}]})
        self.assertEqual(self.post_item("a").status, 201)
        reply = self.post_item("b")
        self.assertEqual(reply.status, 500)
        self.assertEqual(reply.json()["errors"][0]["status"], "500")
        self.assertEqual(self.post_item("c").status, 201)
        self.assertEqual([i["name"] for i in self.items()], ["seeded", "a", "c"])
        counts = self.counts()
        self.assertEqual(counts["requests"]["POST /items"], 3)
        self.assertEqual(counts["by_status"], {"201": 2, "500": 1})
        self.assertEqual(counts["writes"], {"POST /items": 3})
        self.assertEqual(counts["applied"], {"POST /items": 2})
        self.assertEqual(counts["injected"], {"error": 1})

    def test_drop_not_applied(self):
        self.set_faults({"rules": [{"match": "POST /items", "action": "drop"}]})
        self.assert_dropped(lambda: self.post_item("a"))
        self.assertEqual([i["name"] for i in self.items()], ["seeded"])
        counts = self.counts()
        self.assertEqual((counts["total"], counts["total_writes"], counts["applied_writes"]), (1, 1, 0))
        self.assertEqual(counts["injected"], {"drop": 1})

    def test_drop_after_apply(self):
        self.set_faults({"rules": [{"match": "~^POST /it", "action": "drop_after_apply", "times": 2}]})
        self.assert_dropped(lambda: self.post_item("a"))
        self.assert_dropped(lambda: self.post_item("b"))
        self.assertEqual(self.post_item("c").status, 201)
        self.assertEqual([i["name"] for i in self.items()], ["seeded", "a", "b", "c"])
        self.assertEqual(self.counts()["writes"], {"POST /items": 3})
        self.assertEqual(self.counts()["applied"], {"POST /items": 3})
        self.assertEqual(self.counts()["injected"], {"drop_after_apply": 2})

    def test_rules_count_independently(self):
        self.set_faults({"rules": [{"match": "GET /items", "nth": 1, "action": "error", "status": 500},
                                   {"match": "GET /it", "nth": 2, "action": "error", "status": 502}]})
        statuses = [self.c.request("GET", "/items").status for _ in range(3)]
        self.assertEqual(statuses, [500, 502, 200])

    def test_429_rule(self):
        self.set_faults({"retry_after": 7, "rules": [{"match": "GET /items", "action": "429"}]})
        reply = self.c.request("GET", "/items")
        self.assertEqual(reply.status, 429)
        self.assertEqual(reply.headers["Retry-After"], "7")
        self.assertEqual(reply.json()["errors"][0]["status"], "429")
        self.assertEqual(self.c.request("GET", "/items").status, 200)

    def test_tier_blocks_whole_tier(self):
        self.set_faults({"tiers": {"tier2": {"per_minute": 6}, "burst": 1}})
        self.assertEqual(self.post_item("a").status, 201)
        blocked = self.post_item("b")
        self.assertEqual(blocked.status, 429)
        self.assertEqual(blocked.headers["Retry-After"], "10")
        other = self.c.request("DELETE", "/items/seed-1")
        self.assertEqual(other.status, 429)
        self.assertIn(other.headers["Retry-After"], ("9", "10"))
        self.assertEqual(self.c.request("GET", "/items").status, 200)   # tier1 unlimited
        self.assertEqual([i["name"] for i in self.items()], ["seeded", "a"])

    def test_tier_refills(self):
        self.set_faults({"tiers": {"tier1": {"per_minute": 600, "burst": 2}}})
        statuses = [self.c.request("GET", "/items").status for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 429])
        time.sleep(1.05)
        self.assertEqual(self.c.request("GET", "/items").status, 200)

    def test_tier_window_counts_the_whole_window(self):
        # qlik.dev: a tier is evaluated over a 5-minute window, so a burst of
        # several minutes' worth passes (a token bucket of burst 10 would stop at 10)
        self.set_faults({"tiers": {"tier2": {"per_minute": 3, "window_s": 300}}})
        statuses = [self.post_item(f"w{i}").status for i in range(16)]
        self.assertEqual(statuses, [201] * 15 + [429])
        blocked = self.post_item("late")
        self.assertEqual(blocked.status, 429)
        self.assertIn(blocked.headers["Retry-After"], ("299", "300"))   # until the oldest leaves
        self.assertEqual(self.c.request("DELETE", "/items/seed-1").status, 429)   # the whole tier
        self.assertEqual(self.c.request("GET", "/items").status, 200)   # tier1 unlimited

    def test_tier_window_slides(self):
        # 4 in any 4 s: two now, two 2 s later; once the first two have left
        # the window exactly two fit again, and the next waits for the third
        self.set_faults({"tiers": {"tier1": {"per_minute": 60, "window_s": 4}}})
        get = lambda: self.c.request("GET", "/items").status
        self.assertEqual([get(), get()], [200, 200])
        first_out = time.monotonic() + 4
        time.sleep(2)
        second_in = time.monotonic()
        self.assertEqual([get(), get()], [200, 200])
        time.sleep(max(0, first_out + 0.2 - time.monotonic()))
        if time.monotonic() >= second_in + 4:
            self.skipTest("the machine was too slow to place requests inside the window")
        self.assertEqual([get(), get()], [200, 200])
        blocked = self.c.request("GET", "/items")
        self.assertEqual(blocked.status, 429)
        self.assertIn(blocked.headers["Retry-After"], ("1", "2"))

    def test_tier_window_must_be_positive(self):
        reply = self.c.request("POST", "/_sim/faults", {"tiers": {"tier2": {"per_minute": 5, "window_s": 0}}})
        self.assertEqual(reply.status, 400, reply.data)

    def test_kill_after_writes(self):
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            self.set_faults({"kill_after_writes": {"pid": victim.pid, "n": 2, "signal": 9}})
            self.assertEqual(self.post_item("a").status, 201)
            self.assertIsNone(victim.poll())
            self.assert_dropped(lambda: self.post_item("b"))
            self.assertEqual(victim.wait(timeout=5), -signal.SIGKILL)
            self.assertEqual([i["name"] for i in self.items()], ["seeded", "a", "b"])
            self.assertEqual(self.post_item("c").status, 201)
        finally:
            victim.kill()
            victim.wait()

    def test_kill_rule(self):
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            self.set_faults({"rules": [{"match": "DELETE /items", "action": "kill",
                                        "pid": victim.pid, "signal": 15}]})
            self.assert_dropped(lambda: self.c.request("DELETE", "/items/seed-1"))
            self.assertEqual(victim.wait(timeout=5), -signal.SIGTERM)
            self.assertEqual(self.items(), [])
        finally:
            victim.kill()
            victim.wait()

    def test_kill_mid_reply(self):
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            self.set_faults({"rules": [{"match": "GET /download", "action": "kill_mid_reply",
                                        "pid": victim.pid, "after_bytes": 100000, "pause_ms": 0}]})
            conn = http.client.HTTPConnection("127.0.0.1", int(self.url.rsplit(":", 1)[1]), timeout=10)
            conn.request("GET", "/download?size=1000000")
            reply = conn.getresponse()
            self.assertEqual(reply.status, 200)
            with self.assertRaises(http.client.IncompleteRead):
                reply.read()
            conn.close()
            self.assertEqual(victim.wait(timeout=5), -signal.SIGKILL)
            counts = self.counts()
            self.assertEqual(counts["injected"], {"kill_mid_reply": 1})
            self.assertEqual(counts["requests"]["GET /download"], 1)
            # the next download is whole
            self.assertGreater(len(self.c.request("GET", "/download?size=1000").data), 1000)
        finally:
            victim.kill()
            victim.wait()

    def test_slow_and_latency(self):
        self.set_faults({"rules": [{"match": "GET /items", "action": "slow", "slow_ms": 300}]})
        start = time.monotonic()
        self.assertEqual(self.c.request("GET", "/items").status, 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.3)
        self.set_faults({"latency_ms": 150})
        start = time.monotonic()
        self.c.request("GET", "/items")
        self.assertGreaterEqual(time.monotonic() - start, 0.15)

    def test_bandwidth(self):
        self.set_faults({"bandwidth_bps": 400_000})
        start = time.monotonic()
        reply = self.c.request("GET", "/download?size=200000")
        self.assertEqual(reply.status, 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.45)

    def test_bandwidth_throttles_uploads(self):
        self.set_faults({"bandwidth_bps": 800_000})
        start = time.monotonic()
        reply = self.c.request("POST", "/stream", b"x" * 400_000)
        self.assertEqual(reply.json(), {"size": 400_000})
        self.assertGreaterEqual(time.monotonic() - start, 0.45)

    def test_apply_to(self):
        self.set_faults({"apply_to": ["qrs"], "error_rate": 1.0})
        self.assertEqual(self.c.request("GET", "/items").status, 200)

    def random_fates(self, faults, paths, threads=1):
        self.set_faults(faults)
        fates = {}

        def run(chunk):
            client = Client(self.url)
            for path in chunk:
                try:
                    fates[path] = client.request("GET", path).status
                except (http.client.RemoteDisconnected, ConnectionError):
                    fates[path] = "drop"
                    client.close()
                    client = Client(self.url)
            client.close()
        workers = [threading.Thread(target=run, args=(paths[i::threads],)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return fates

    def test_random_faults_deterministic(self):
        paths = [f"/echo?n={i}" for i in range(60)]
        faults = {"seed": 11, "error_rate": 0.3, "drop_rate": 0.1, "rate_429": 0.1}
        first = self.random_fates(faults, paths)
        second = self.random_fates(faults, list(reversed(paths)), threads=4)
        self.assertEqual(first, second)
        kinds = set(first.values())
        self.assertTrue({200, 503, 429, "drop"} <= kinds, kinds)
        other = self.random_fates({**faults, "seed": 12}, paths)
        self.assertNotEqual(first, other)

    def test_retry_of_same_request_gets_new_fate(self):
        self.set_faults({"seed": 5, "error_rate": 0.5})
        statuses = [self.c.request("GET", "/echo?same=1").status for _ in range(12)]
        self.assertIn(200, statuses)
        self.assertIn(503, statuses)
        self.set_faults({"seed": 5, "error_rate": 0.5})
        again = [self.c.request("GET", "/echo?same=1").status for _ in range(12)]
        self.assertEqual(statuses, again)


class PeakMemory:
    """Peak Python heap growth (all threads, client and server) inside the block, in MiB."""

    def __enter__(self):
        tracemalloc.start()
        return self

    def __exit__(self, *exc):
        self.peak_mib = tracemalloc.get_traced_memory()[1] / MIB
        tracemalloc.stop()


class StreamingTests(CoreBase):
    SIZE = 192 * MIB

    def test_chunked_upload_bounded_memory(self):
        block = bytes(range(256)) * 4096          # 1 MiB
        digest = hashlib.sha256()
        for _ in range(self.SIZE // MIB):
            digest.update(block)
        with PeakMemory() as mem:
            conn = http.client.HTTPConnection("127.0.0.1", testlib.port_of(self.url))
            conn.request("POST", "/upload", body=(block for _ in range(self.SIZE // MIB)),
                         encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
            body = json.loads(conn.getresponse().read())
            conn.close()
        self.assertEqual(body, {"size": self.SIZE, "sha256": digest.hexdigest()})
        self.assertLess(mem.peak_mib, 16)

    def test_file_response(self):
        payload = os.urandom(2 * MIB + 5)
        self.assertEqual(self.c.request("POST", "/upload", payload).status, 201)
        reply = self.c.request("GET", "/upload")
        self.assertEqual((reply.status, reply.data), (200, payload))

    def test_content_length_stream(self):
        payload = os.urandom(3 * MIB + 17)
        self.assertEqual(self.c.request("POST", "/stream", payload).json(), {"size": len(payload)})

    def test_big_download_bounded_memory(self):
        with PeakMemory() as mem:
            conn = http.client.HTTPConnection("127.0.0.1", testlib.port_of(self.url))
            conn.request("GET", f"/download?size={self.SIZE}")
            resp = conn.getresponse()
            meta, header_len = qvf.read_header(resp)
            total = header_len
            while True:
                data = resp.read(MIB)
                if not data:
                    break
                total += len(data)
            conn.close()
        self.assertEqual(meta, {"format": 1, "name": "big"})
        self.assertEqual(total, qvf.qvf_length(meta, self.SIZE))
        self.assertLess(mem.peak_mib, 16)

    def test_keep_alive(self):
        self.c.request("GET", "/items")
        sock = self.c.conn.sock
        self.c.request("GET", "/items")
        self.assertIs(self.c.conn.sock, sock)


class PlumbingTests(unittest.TestCase):
    """The stand-ins for standard-library code the request path uses."""

    HEADER_BLOCKS = [
        b"Host: a\r\nX-A:  b \r\n\r\nbody", b"X-A: 1\r\n  more\r\n\tand more\r\n\r\n",
        b" first: is a continuation\r\nX-A: y\r\n\r\n", b"From me\r\nX-A: y\r\nFrom you\r\n\r\n",
        b":no name\r\nX-A: 1\r\n\r\n", b"X-A: 1\r\nnot a header\r\nX-B: 2\r\n\r\n",
        b"X-A: 1\nX-B: 2\n\n", b"X-A: 1\r\n", b"", b"X-A:\r\n\r\n", b"X-A\xe9: \xff\r\n\r\n",
        b"Bad Name: 1\r\nX-A: 2\r\n\r\n", b"X-A: 1\r\nx-a: 2\r\n\r\n",
        b"X-A: 1\rX-B: 2\r\n\r\n", b"X-A: 1\r\r\nX-B: 2\r\n\r\n",
        b"".join(b"H%d: v\r\n" % i for i in range(99)) + b"\r\n",
        b"".join(b"H%d: v\r\n" % i for i in range(100)) + b"\r\n",
        b"X-A: " + b"x" * 70000 + b"\r\n\r\n"]

    @staticmethod
    def parsed(parse, block):
        try:
            msg = parse(io.BytesIO(block))
        except http.client.HTTPException as exc:
            return type(exc), str(exc)
        return type(msg), msg.items(), msg.get("x-a")

    def test_read_headers_as_http_client(self):
        for block in self.HEADER_BLOCKS:
            self.assertEqual(self.parsed(core.read_headers, block),
                             self.parsed(http.client.parse_headers, block), block[:60])

    def test_profiler_merges_connections(self):
        path = os.path.join(tempfile.mkdtemp(prefix="qliksim-prof-"), "out.pstats")
        self.addCleanup(shutil.rmtree, os.path.dirname(path))
        profiler = core._Profiler(path)
        self.assertEqual(profiler.run(sorted, [2, 1]), [1, 2])
        profiler.run(sorted, [3])
        profiler.dump()
        calls = {func[2]: stat[0] for func, stat in pstats.Stats(path).stats.items()}
        self.assertEqual(calls["<built-in method builtins.sorted>"], 2)


# --------------------------------------------------------------------------- TLS on the QRS listener

class TlsTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        site = {"qrs": {"users": []}, "cloud": {"items": []}}
        cls.sim = testlib.start(site, {"qrs": QRS, "cloud": FakeHalf}, cloud_tls=True)
        cls.info = cls.sim.info

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def handshake_fails(self, context):
        port = testlib.port_of(self.info["qrs_url"])
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"GET /_sim/counts HTTP/1.1\r\nHost: x\r\n\r\n")
                    if not tls.recv(100):
                        raise ConnectionError("closed")

    def test_no_client_cert_rejected(self):
        self.handshake_fails(testlib.client_context(self.info, cert=None))

    def test_rogue_client_cert_rejected(self):
        self.handshake_fails(testlib.client_context(self.info, cert="rogue_client_cert",
                                                    key="rogue_client_key"))

    def test_valid_cert_and_encrypted_key(self):
        c = QrsClient(self.info, key="client_key_encrypted",
                      password=self.info["certs"]["client_key_password"])
        try:
            self.assertEqual(c.get("/qrs/about").status, 200)
            self.assertEqual(c.request("GET", "/_sim/counts").status, 200)   # no Xrfkey needed
        finally:
            c.close()

    def test_cloud_tls_without_client_cert(self):
        c = Client(self.info["cloud_url"], testlib.client_context(self.info, cert=None))
        try:
            self.assertEqual(c.request("GET", "/items").status, 200)
        finally:
            c.close()

    def test_server_cert_matches_localhost(self):
        ctx = testlib.client_context(self.info)
        port = testlib.port_of(self.info["qrs_url"])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                self.assertIsNotNone(tls.getpeercert())


# --------------------------------------------------------------------------- CLI

class CliTests(unittest.TestCase):
    def test_start_info_and_sigterm(self):
        tmp = tempfile.mkdtemp(prefix="qliksim-cli-")
        info_file = os.path.join(tmp, "info.json")
        demo = os.path.join(testlib.HERE, "..", "..", "examples", "demo", "site.json")
        proc = subprocess.Popen([sys.executable, os.path.join(testlib.HERE, "qliksim.py"),
                                 "--site", demo, "--certs", os.path.join(tmp, "certs"),
                                 "--info-file", info_file, "--faults", '{"latency_ms": 0}'],
                                stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(proc.stdout.readline())
            with open(info_file, encoding="utf-8") as fh:
                self.assertEqual(json.load(fh), info)
            self.assertEqual(info["pid"], proc.pid)
            self.assertEqual(info["api_key"], "qsim-admin-key")
            self.assertEqual(info["qrs_user"], "INTERNAL\\sa_api")
            self.assertTrue(info["cloud_url"].startswith("http://127.0.0.1:"))
            self.assertEqual(set(info["certs"]), {"ca", "client_cert", "client_key",
                                                  "client_key_encrypted", "client_key_password",
                                                  "rogue_ca", "rogue_client_cert",
                                                  "rogue_client_key"})
            qrs = QrsClient(info)
            self.assertEqual(qrs.get("/qrs/app/count").json(), {"value": 12})
            state = qrs.request("GET", "/_sim/state").json()
            self.assertEqual(set(state), {"qrs", "cloud", "nprinting"})  # the demo site has an NPrinting server
            qrs.close()
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=10), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_default_api_key_reported_and_https_paging_links(self):
        """A site without a cloud part still gets a working key, and with
        --cloud-tls the paging links a client follows are https."""
        from cloud import Cloud
        running = testlib.start({"qrs": {}}, {"cloud": Cloud}, cloud_tls=True)
        try:
            self.assertEqual(running.info["api_key"], "qsim-admin-key")
            c = Client(running.info["cloud_url"], testlib.client_context(running.info, cert=None))
            auth = {"Authorization": "Bearer qsim-admin-key", "Content-Type": "application/json"}
            for i in range(3):
                c.request("POST", "/api/v1/spaces", {"name": f"S{i}", "type": "shared"}, auth)
            page = c.request("GET", "/api/v1/spaces?limit=1", None, auth).json()
            self.assertTrue(page["links"]["next"]["href"].startswith("https://"))
            c.close()
        finally:
            running.stop()


if __name__ == "__main__":
    unittest.main()
