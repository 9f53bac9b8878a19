"""Self-tests of the simulated engine: the WebSocket server (wsserver.py) with
a raw-socket client written here from RFC 6455, the JSON-RPC engine
(engine.py) on both halves, and the data it computes (engine_data.py)."""
import base64
import json
import os
import socket
import struct
import unittest

import testlib
import engine
import engine_data
import lineage
import wsserver
from cloud import Cloud
from qrs import QRS

APP = "5a1c7d7e-0000-4000-8000-00000000a001"
MODEL = {"tables": [{"name": "Orders", "no_of_rows": 3000, "fields": ["OrderID", "Customer", "Amount"]}]}
OBJECTS = [{"engineObjectId": "sh1", "objectType": "sheet", "name": "Overview", "state": "base"},
           {"engineObjectId": "sh2", "objectType": "sheet", "name": "Mine", "state": "private"}]
SITE = {"qrs": {"users": [{"userDirectory": "CORP", "userId": "jdoe"}],
                "apps": [{"id": APP, "name": "Sales", "owner": "CORP\\jdoe", "data_model": MODEL,
                          "objects": OBJECTS}]},
        "cloud": {"api_keys": [{"key": "k1", "user": "admin@acme.com"}],
                  "users": [{"subject": "auth0|a", "email": "admin@acme.com", "name": "Admin",
                             "status": "active"}],
                  "apps": [{"id": APP, "name": "Sales", "data_model": MODEL, "objects": OBJECTS,
                            "payload_size": 10}]}}


class RawClient:
    """A WebSocket client on a plain socket: masks what it sends."""

    def __init__(self, port, path, headers=None, context=None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b" ", 2)[1]) if head else 0
        self.head = head.decode("latin-1")
        self.accept_ok = wsserver.accept_key(key) in self.head

    def send(self, opcode, payload, fin=True):
        self.sock.sendall(wsserver.encode_frame(opcode, payload, fin, mask=os.urandom(4)))

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError()
            data += chunk
        return data

    def frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n)

    def text(self):
        parts = []
        while True:
            fin, op, payload = self.frame()
            if op in (wsserver.OP_TEXT, wsserver.OP_CONT):
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode()

    def rpc(self, rid, method, handle=-1, params=None, **extra):
        self.send(wsserver.OP_TEXT, json.dumps(dict({"jsonrpc": "2.0", "id": rid, "method": method,
                                                     "handle": handle, "params": params or {}}, **extra)).encode())
        return json.loads(self.text())


class EngineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.running = testlib.start(SITE, {"qrs": QRS, "cloud": Cloud})
        engine.install(cls.running)
        cls.info = cls.running.info

    @classmethod
    def tearDownClass(cls):
        cls.running.stop()

    def cloud(self, path="/app/" + APP, key="k1"):
        return RawClient(testlib.port_of(self.info["cloud_url"]), path,
                         {"Authorization": f"Bearer {key}"} if key else {})

    def qrs(self, path="/app/" + APP, user="UserDirectory=INTERNAL; UserId=sa_engine"):
        return RawClient(testlib.port_of(self.info["qrs_url"]), path,
                         {"X-Qlik-User": user} if user else {}, testlib.client_context(self.info))

    def test_info_names_the_engine_urls(self):
        self.assertTrue(self.info["qrs_engine_url"].startswith("wss://127.0.0.1:"))
        self.assertTrue(self.info["cloud_engine_url"].startswith("ws://127.0.0.1:"))

    def test_upgrade_and_echo_with_fragments_and_pings(self):
        c = self.cloud("/_ws/echo", key=None)
        self.assertEqual(c.status, 101)
        self.assertTrue(c.accept_ok)
        c.send(wsserver.OP_TEXT, b"Hel", fin=False)
        c.send(wsserver.OP_PING, b"p1")
        c.send(wsserver.OP_CONT, b"lo")
        self.assertEqual(c.frame(), (True, wsserver.OP_PONG, b"p1"))
        self.assertEqual(c.text(), "Hello")
        c.send(wsserver.OP_TEXT, b"!frag 2 abcde")
        fin, op, payload = c.frame()
        self.assertEqual((fin, op, payload), (False, wsserver.OP_TEXT, b"ab"))
        self.assertEqual(c.frame()[1], wsserver.OP_PING)
        self.assertEqual(c.frame(), (False, wsserver.OP_CONT, b"cd"))
        self.assertEqual(c.frame(), (True, wsserver.OP_CONT, b"e"))
        c.send(wsserver.OP_CLOSE, struct.pack("!H", 1000))
        self.assertEqual(c.frame(), (True, wsserver.OP_CLOSE, struct.pack("!H", 1000)))

    def test_unmasked_and_oversized_frames_are_refused(self):
        c = self.cloud("/_ws/echo", key=None)
        c.sock.sendall(wsserver.encode_frame(wsserver.OP_TEXT, b"no mask"))
        fin, op, payload = c.frame()
        self.assertEqual((op, struct.unpack("!H", payload[:2])[0]), (wsserver.OP_CLOSE, 1002))
        c = self.cloud("/_ws/echo", key=None)
        c.sock.sendall(bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 40) + os.urandom(4))
        fin, op, payload = c.frame()
        self.assertEqual((op, struct.unpack("!H", payload[:2])[0]), (wsserver.OP_CLOSE, 1009))

    def test_bad_upgrades(self):
        sock = socket.create_connection(("127.0.0.1", testlib.port_of(self.info["cloud_url"])))
        sock.sendall(b"GET /_ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        self.assertIn(b" 400 ", sock.recv(200))
        self.assertEqual(self.cloud(key=None).status, 401)
        self.assertEqual(self.cloud(key="wrong").status, 401)
        self.assertEqual(self.qrs(user=None).status, 401)
        self.assertEqual(self.cloud("/nothing").status, 404)

    def test_sessions_on_both_halves_compute_the_same_cube(self):
        cubes = []
        for c in (self.qrs(), self.cloud()):
            self.assertEqual(c.status, 101)
            hello = json.loads(c.text())
            self.assertEqual(hello["params"]["qSessionState"], "SESSION_CREATED")
            doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
            qtr = c.rpc(2, "GetTablesAndKeys", doc)["result"]["qtr"]
            self.assertEqual((qtr[0]["qName"], qtr[0]["qNoOfRows"]), ("Orders", 3000))
            sheets = c.rpc(3, "GetObjects", doc, {"qOptions": {"qTypes": ["sheet"]}})["result"]["qList"]
            self.assertEqual([s["qInfo"]["qId"] for s in sheets], ["sh1"])
            sheet = c.rpc(4, "GetObject", doc, {"qId": "sh1"})["result"]["qReturn"]["qHandle"]
            cells = c.rpc(5, "GetLayout", sheet)["result"]["qLayout"]["cells"]
            chart = c.rpc(6, "GetObject", doc, {"qId": cells[0]["name"]})["result"]["qReturn"]["qHandle"]
            size = c.rpc(7, "GetLayout", chart)["result"]["qLayout"]["qHyperCube"]["qSize"]
            pages = c.rpc(8, "GetHyperCubeData", chart, {"qPath": "/qHyperCubeDef", "qPages": [
                {"qLeft": 0, "qTop": 0, "qWidth": size["qcx"], "qHeight": size["qcy"]}]})
            cubes.append(pages["result"]["qDataPages"][0]["qMatrix"])
            missing = c.rpc(9, "GetObject", doc, {"qId": "nope"})["result"]["qReturn"]
            self.assertIsNone(missing["qHandle"])
            err = c.rpc(10, "OpenDoc", params={"qDocName": "other"})["error"]
            self.assertEqual(err["code"], 1003)
        self.assertEqual(cubes[0], cubes[1])

    def test_delta_requests_get_patches(self):
        # enigma.js (and so @qlik/api) sends delta: true by default
        c = self.cloud()
        c.text()
        doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        sheet = c.rpc(2, "GetObject", doc, {"qId": "sh1"})["result"]["qReturn"]["qHandle"]
        full = c.rpc(3, "GetLayout", sheet)["result"]["qLayout"]
        first = c.rpc(4, "GetLayout", sheet, delta=True)
        self.assertIs(first["delta"], True)
        self.assertEqual(first["result"]["qLayout"], [{"op": "add", "path": "/", "value": full}])
        again = c.rpc(5, "GetLayout", sheet, delta=True)
        self.assertEqual(again["result"]["qLayout"], [], "unchanged: no patch")
        plain = c.rpc(6, "GetLayout", sheet)
        self.assertNotIn("delta", plain)
        self.assertEqual(plain["result"]["qLayout"], full)

    def test_engine_faults_stall_or_drop_a_method(self):
        # faults.engine_faults (core.Faults): a stalled call is never answered
        # (the session stays open), a closing one drops the connection.
        self.running.sim.faults.set({"engine_faults": [{"method": "DoSave", "action": "stall"}]})
        try:
            c = self.cloud()
            c.text()
            doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
            c.sock.settimeout(1)
            c.send(wsserver.OP_TEXT, json.dumps({"jsonrpc": "2.0", "id": 2, "method": "DoSave",
                                                 "handle": doc, "params": []}).encode())
            with self.assertRaises(socket.timeout):
                c.text()
            c.sock.settimeout(10)
            self.assertIn("result", c.rpc(3, "GetScript", doc, []), "other calls are still answered")
            self.running.sim.faults.set({"engine_faults": [{"method": "*", "action": "close"}],
                                         "apply_to": ["cloud"]})
            q = self.qrs()
            q.text()
            self.assertIn("result", q.rpc(1, "EngineVersion"), "a half the faults do not apply to")
            c = self.cloud()
            c.text()
            c.send(wsserver.OP_TEXT, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "OpenDoc",
                                                 "params": [APP]}).encode())
            with self.assertRaises(EOFError):
                c.text()
            with self.assertRaises(ValueError):
                self.running.sim.faults.set({"engine_faults": [{"method": "DoSave", "action": "explode"}]})
        finally:
            self.running.sim.faults.set({})

    def test_do_save_persists_the_script_into_the_app(self):
        c = self.cloud()
        c.text()
        doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        self.assertIn("result", c.rpc(2, "SetScript", doc, ["LOAD 7 AS seven AUTOGENERATE 1;"]))
        cloud = self.running.sim.half("cloud")
        with self.running.sim.ctx.lock:
            before = cloud._current_script(cloud.apps[APP])
        self.assertNotEqual(before, "LOAD 7 AS seven AUTOGENERATE 1;", "not in the app before DoSave")
        self.assertIn("result", c.rpc(3, "DoSave", doc, []))
        with self.running.sim.ctx.lock:
            self.assertEqual(cloud._current_script(cloud.apps[APP]), "LOAD 7 AS seven AUTOGENERATE 1;")
            versions = len(cloud.apps[APP]["scripts"])
        c.rpc(4, "DoSave", doc, [])
        with self.running.sim.ctx.lock:
            self.assertEqual(len(cloud.apps[APP]["scripts"]), versions, "an unchanged script adds no version")
            cloud._add_script_version(cloud.apps[APP], "LOAD 8 AS eight AUTOGENERATE 1;", "REST", "x")
        again = self.cloud()
        again.text()
        d2 = again.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        self.assertEqual(again.rpc(2, "GetScript", d2, [])["result"]["qScript"], "LOAD 8 AS eight AUTOGENERATE 1;",
                         "a later session reads the app's script, not an old session's")
        with self.running.sim.ctx.lock:
            cloud._add_script_version(cloud.apps[APP], before, "restore", "x")

    def test_master_items_and_variables_are_found_again_by_id_and_name(self):
        c = self.cloud()
        c.text()
        doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        c.rpc(2, "CreateDimension", doc, [{"qInfo": {"qId": "dimA", "qType": "dimension"},
                                           "qDim": {"qGrouping": "N", "qFieldDefs": ["Customer"]}}])
        c.rpc(3, "CreateMeasure", doc, [{"qInfo": {"qId": "mesA", "qType": "measure"},
                                         "qMeasure": {"qDef": "Sum(Amount)", "qLabel": "Amount"}}])
        c.rpc(4, "CreateVariableEx", doc, [{"qInfo": {"qType": "variable"}, "qName": "vX", "qDefinition": "1"}])
        again = c.rpc(5, "CreateDimension", doc, [{"qInfo": {"qId": "dimA", "qType": "dimension"}}])
        self.assertEqual(again["error"]["code"], 11)
        for i, (method, params, qtype) in enumerate((("GetDimension", {"qId": "dimA"}, "GenericDimension"),
                                                     ("GetMeasure", {"qId": "mesA"}, "GenericMeasure"),
                                                     ("GetVariableByName", {"qName": "vX"}, "GenericVariable"))):
            r = c.rpc(10 + i, method, doc, params)["result"]["qReturn"]
            self.assertEqual(r["qType"], qtype)
            props = c.rpc(20 + i, "GetProperties", r["qHandle"], [])["result"]["qProp"]
            self.assertIn(props["qInfo"]["qType"], ("dimension", "measure", "variable"))
        for i, (method, params) in enumerate((("GetDimension", {"qId": "nope"}), ("GetMeasure", {"qId": "nope"}),
                                              ("GetVariableByName", {"qName": "nope"}))):
            self.assertIsNone(c.rpc(30 + i, method, doc, params)["result"]["qReturn"]["qHandle"])

    def test_set_properties_changes_a_master_item_for_later_sessions(self):
        c = self.cloud()
        c.text()
        doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        c.rpc(2, "CreateMeasure", doc, [{"qInfo": {"qId": "mesSet", "qType": "measure"},
                                         "qMeasure": {"qDef": "Sum(Amount)", "qLabel": "Amount"}}])
        h = c.rpc(3, "GetMeasure", doc, {"qId": "mesSet"})["result"]["qReturn"]["qHandle"]
        r = c.rpc(4, "SetProperties", h, [{"qInfo": {"qId": "other", "qType": "measure"},
                                           "qMeasure": {"qDef": "Sum(Amount) * 2", "qLabel": "Double"}}])
        self.assertEqual(r["result"], {})
        c = self.cloud()
        c.text()
        doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        self.assertIsNone(c.rpc(2, "GetMeasure", doc, {"qId": "other"})["result"]["qReturn"]["qHandle"],
                          "the id stays")
        h = c.rpc(3, "GetMeasure", doc, {"qId": "mesSet"})["result"]["qReturn"]["qHandle"]
        props = c.rpc(4, "GetProperties", h, [])["result"]["qProp"]
        self.assertEqual(props["qMeasure"], {"qDef": "Sum(Amount) * 2", "qLabel": "Double"})
        self.assertEqual(c.rpc(5, "SetProperties", h, [])["error"]["code"], -32602)

    def test_a_reset_tenant_has_no_engine_state(self):
        c = self.cloud()
        c.text()
        doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        c.rpc(2, "CreateVariableEx", doc, [{"qInfo": {"qType": "variable"}, "qName": "vReset", "qDefinition": "1"}])
        self.running.sim.build_halves()   # what POST /_sim/reset does
        c = self.cloud()
        c.text()
        doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        self.assertIsNone(c.rpc(2, "GetVariableByName", doc, {"qName": "vReset"})["result"]["qReturn"]["qHandle"])

    def test_pages_over_10000_cells_are_error_7009(self):
        c = self.cloud()
        c.text()
        doc = c.rpc(1, "OpenDoc", params=[APP])["result"]["qReturn"]["qHandle"]
        obj = c.rpc(2, "CreateSessionObject", doc, [{"qInfo": {"qType": "t"}, "qHyperCubeDef": {
            "qDimensions": [{"qDef": {"qFieldDefs": ["OrderID"]}}],
            "qMeasures": [{"qDef": {"qDef": "Sum(Amount)"}}]}}])["result"]["qReturn"]["qHandle"]
        big = c.rpc(3, "GetHyperCubeData", obj, {"qPath": "/qHyperCubeDef", "qPages": [
            {"qLeft": 0, "qTop": 0, "qWidth": 2, "qHeight": 5001}]})
        self.assertEqual(big["error"]["code"], 7009)
        ok = c.rpc(4, "GetHyperCubeData", obj, {"qPath": "/qHyperCubeDef", "qPages": [
            {"qLeft": 0, "qTop": 2990, "qWidth": 2, "qHeight": 5000}]})
        matrix = ok["result"]["qDataPages"][0]["qMatrix"]
        self.assertEqual([r[0]["qText"] for r in matrix], [str(i) for i in range(2991, 3001)])


class DataTest(unittest.TestCase):
    def test_rows_are_a_function_of_the_data_model(self):
        a = engine_data.DataModel(MODEL)
        b = engine_data.DataModel(json.loads(json.dumps(MODEL)))
        other = engine_data.DataModel(dict(MODEL, variant="changed connection"))
        hdef = engine_data.hypercube_def({"dims": ["Customer"], "measures": ["Sum(Amount)", "Count(OrderID)"]})
        self.assertEqual(a.hypercube(hdef), b.hypercube(hdef))
        self.assertNotEqual(a.hypercube(hdef)[2], other.hypercube(hdef)[2])
        self.assertEqual(a.evaluate("Count(OrderID)"), 3000)
        self.assertEqual(a.evaluate("NoOfRows('Orders')"), 3000)
        rows = a.hypercube(hdef)[2]
        self.assertEqual(sum(r[2]["qNum"] for r in rows), 3000)
        self.assertEqual([r[0]["qText"] for r in rows], sorted(r[0]["qText"] for r in rows))
        total = sum(r[1]["qNum"] for r in rows)
        self.assertAlmostEqual(total, a.evaluate("Sum(Amount)"), places=2)

    def test_aggregates(self):
        m = engine_data.DataModel({"tables": [{"name": "T", "no_of_rows": 50, "fields": ["Kind", "Amount"]}]})
        f = m.tables[0].field("Amount")
        values = [f.value(i) for i in range(50)]
        self.assertAlmostEqual(m.evaluate("Avg(Amount)"), sum(values) / 50, places=4)
        self.assertEqual(m.evaluate("Min(Amount)"), min(values))
        self.assertEqual(m.evaluate("Max(Amount)"), max(values))
        self.assertEqual(m.evaluate("Count(DISTINCT Kind)"), len({m.tables[0].field("Kind").value(i)
                                                                  for i in range(50)}))
        self.assertIsNone(m.evaluate("Bogus(Amount)"))


class LineageTest(unittest.TestCase):
    STATEMENTS = {"ERP": "OLEDB CONNECT TO [Data Source=erp01]", "Finance:Finance DB": "ODBC CONNECT TO [Fin]",
                  "Finance DB (CORP_a)": "ODBC CONNECT TO [Fin]"}

    def resolve(self, name):
        return self.STATEMENTS.get(name)

    def test_sources_of_a_script(self):
        script = ("// LIB CONNECT TO 'Commented';\nLIB CONNECT TO 'ERP';\nT: SQL SELECT * FROM t;\n"
                  "LOAD * FROM [lib://Shared Files/sub/a.qvd] (qvd);\nLIB CONNECT TO 'Gone';\n")
        self.assertEqual(lineage.sources(script, self.resolve),
                         ["connect:?Gone", "connect:OLEDB CONNECT TO [Data Source=erp01]", "file:sub/a.qvd"])

    def test_a_reload_reading_other_sources_loads_other_values(self):
        model = dict(MODEL, lineage=lineage.sources("LIB CONNECT TO 'ERP';", self.resolve))
        same = lineage.reloaded(model, lineage.sources("lib connect to 'ERP';\n", self.resolve))
        self.assertIs(same, model)
        moved = lineage.reloaded(model, lineage.sources("LIB CONNECT TO 'Finance:Finance DB';", self.resolve))
        self.assertEqual(moved["tables"], model["tables"])
        self.assertNotEqual(moved.get("variant"), model.get("variant"))
        hdef = engine_data.hypercube_def({"dims": ["Customer"], "measures": ["Sum(Amount)"]})
        self.assertNotEqual(engine_data.DataModel(moved).hypercube(hdef)[2],
                            engine_data.DataModel(model).hypercube(hdef)[2])
        # files move with the migration: another library, the same file
        files = dict(MODEL, lineage=["file:a.qvd"])
        self.assertIs(lineage.reloaded(files, lineage.sources("LOAD * FROM [lib://Space:DataFiles/a.qvd];",
                                                              self.resolve)), files)
        self.assertIs(lineage.reloaded(MODEL, ["connect:x"]), MODEL)   # unknown lineage: unchanged

    def test_the_tables_a_script_loads(self):
        script = ("///$tab Main\nLIB CONNECT TO 'Sales DB';\n// Old: LOAD Gone;\nSales:\n"
                  "LOAD OrderID, Region, Amount AS [Net Sales];\nSQL SELECT * FROM dbo.Orders;\n"
                  "Targets:\nLOAD * INLINE [\nRegion, Target\nEMEA, 5\nAmericas, 8\n];\n"
                  "Section Access;\nLOAD * INLINE [\nACCESS\nADMIN\n];\n")
        tables = lineage.script_tables(script)
        self.assertEqual([(t["name"], t["fields"]) for t in tables],
                         [("Sales", ["OrderID", "Region", "Net Sales"]), ("Targets", ["Region", "Target"])])
        self.assertEqual(tables[1]["no_of_rows"], 2)
        self.assertEqual(tables, lineage.script_tables(script))     # a function of the script
        self.assertEqual(lineage.script_tables("LOAD 1 AS x AUTOGENERATE 1;"), [])


if __name__ == "__main__":
    unittest.main()
