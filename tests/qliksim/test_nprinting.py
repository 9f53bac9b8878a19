"""Tests for the NPrinting half (nprinting.py) and the Cloud report filters (reporting.py),
over HTTP(S) through the real core server."""
import base64
import json
import os
import shutil
import ssl
import struct
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ntlm  # noqa: E402
from cloud import Cloud  # noqa: E402
from nprinting import NPrinting, sign_jwt  # noqa: E402
from qrs import QRS  # noqa: E402
from testlib import Client, cloud_call, start  # noqa: E402

ADMIN = "qsim-admin-key"
APP = "aaaaaaaa-0000-4000-8000-000000000001"
SITE = {
    "qrs": {"users": [{"userDirectory": "CORP", "userId": "jdoe", "name": "John Doe"}],
            "apps": [{"name": "Sales", "owner": "CORP\\jdoe"}, {"name": "Finance", "owner": "CORP\\jdoe"}]},
    "cloud": {"api_keys": [{"key": ADMIN, "user": "admin@acme.com"}],
              "users": [{"subject": "auth0|admin", "email": "admin@acme.com", "roles": ["TenantAdmin"]}],
              "apps": [{"id": APP, "name": "Sales",
                        "data_model": {"tables": [{"name": "T", "fields": ["Region", "Amount"]}]}}]},
    "nprinting": {
        "users": [{"name": "Admin", "email": "npadmin@corp.example", "domainAccount": "CORP\\npadmin",
                   "password": "Adm1n-pw"},
                  {"name": "Off", "email": "off@corp.example", "enabled": False, "domainAccount": "CORP\\off",
                   "password": "0ff-pw"},
                  {"name": "NoWin", "email": "nowin@corp.example"}],
        "apps": [{"name": "NP Sales", "connections": [{"name": "Sales conn", "qs_app": "Sales"}]}],
        "filters": [{"app": "NP Sales", "name": "North",
                     "fields": [{"connection": "Sales conn", "name": "Region", "values": ["North"]}]}],
        "reports": [{"app": "NP Sales", "title": "Weekly", "type": "excel", "filters": ["North"],
                     "template": {"connection": "Sales conn", "fields": ["Region"]}}],
        "tasks": [{"app": "NP Sales", "name": "Mondays", "reports": ["Weekly"],
                   "recipients": ["npadmin@corp.example"]}],
    },
}


class NPrintingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.running = start(SITE, {"qrs": QRS, "cloud": Cloud, "nprinting": NPrinting})
        info = cls.running.info
        cls.url, cls.token, cls.cloud = info["nprinting_url"], info["nprinting_jwt"], info["cloud_url"]
        cls.tls = ssl.create_default_context(cafile=info["certs"]["ca"])
        cls.np = cls.running.sim.half("nprinting")

    @classmethod
    def tearDownClass(cls):
        cls.running.stop()

    def get(self, path, token=None):
        req = urllib.request.Request(self.url + "/api/v1/" + path)
        if token is not False:
            req.add_header("Authorization", "Bearer " + (token or self.token))
        try:
            with urllib.request.urlopen(req, context=self.tls, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def test_jwt_is_required_and_checked(self):
        self.assertEqual(self.get("apps", token=False)[0], 401)
        other = os.path.join(os.path.dirname(self.np.keys["key"]), "other")
        forged = sign_jwt(NPrintingTest._other_key(other), {"email": "npadmin@corp.example"})
        self.assertEqual(self.get("apps", token=forged)[0], 401)
        # a good signature for a user NPrinting does not have, or one disabled
        self.assertEqual(self.get("apps", token=sign_jwt(self.np.keys["key"], {"email": "x@y"}))[0], 401)
        self.assertEqual(self.get("apps", token=sign_jwt(self.np.keys["key"], {"email": "off@corp.example"}))[0], 401)
        self.assertEqual(self.get("apps")[0], 200)

    @staticmethod
    def _other_key(d):
        from nprinting import ensure_jwt_keys
        return ensure_jwt_keys(d)["key"]

    def test_lists_and_entities(self):
        status, body = self.get("apps")
        self.assertEqual(status, 200)
        self.assertEqual(body["data"]["totalItems"], 1)
        app = body["data"]["items"][0]
        status, conns = self.get("connections?appId=" + app["id"])
        conn = conns["data"]["items"][0]
        qrs_ids = {a["name"]: a["id"] for a in self.running.sim.half("qrs").db["app"].values()}
        self.assertEqual(conn["qlikSenseAppId"], qrs_ids["Sales"])
        status, filters = self.get("filters")
        f = filters["data"]["items"][0]
        self.assertEqual(f["fields"][0]["values"], [{"value": "North", "type": "text"}])
        self.assertEqual(f["fields"][0]["connectionId"], conn["id"])
        status, one = self.get("reports/" + self.get("reports")[1]["data"]["items"][0]["id"])
        self.assertEqual((status, one["data"]["title"], one["data"]["filters"]), (200, "Weekly", [f["id"]]))
        self.assertEqual(self.get("reports/nope")[0], 404)
        self.assertEqual(self.get("apps?limit=0")[0], 400)
        self.assertEqual(self.get("apps?offset=1")[1]["data"]["items"], [])

    def test_templates_leave_as_an_export_package_not_through_the_api(self):
        rid = self.get("reports")[1]["data"]["items"][0]["id"]
        self.assertEqual(self.get("reports/%s/template" % rid)[0], 404)
        path = os.path.join(self.running.info["nprinting_export"], rid + ".xlsx")
        with open(path, encoding="utf-8") as fh:
            self.assertEqual(json.load(fh)["fields"], ["Region"])

    # ---------------------------------------------------------------- Cloud report filters

    def rf(self, method, path="", body=None):
        return cloud_call(self.cloud, method, "/api/v1/apps/%s/report-filters%s" % (APP, path), body, key=ADMIN)

    @staticmethod
    def body(name, field="Region", values=("North",)):
        return {"name": name, "filterType": "REP", "filterVersion": "filter-1.0", "description": "d",
                "filterV1_0": {"fieldsByState": {"$": [{"name": field, "values": [
                    {"valueAsText": v, "valueType": "string"} for v in values]}]}}}

    def test_report_filters(self):
        r = self.rf("POST", body=self.body("F1"))
        self.assertEqual(r.status, 201, r)
        fid = r.json["id"]
        self.assertEqual(self.rf("POST", body=self.body("F1")).status, 409)
        self.assertEqual(self.rf("POST", body=self.body("F1")).json["errors"][0]["code"], "REP-409043")
        bad = self.rf("POST", body=self.body("F2", field="Nope"))
        self.assertEqual((bad.status, bad.json["errors"][0]["code"]), (400, "REP-400044"))
        self.assertEqual(self.rf("POST", body={"name": "x", "filterType": "REP"}).status, 400)
        missing = cloud_call(self.cloud, "POST", "/api/v1/apps/%s/report-filters" % ("b" * 8), self.body("x"),
                             key=ADMIN)
        self.assertEqual(missing.status, 404)
        self.assertEqual(self.rf("GET").status, 400)          # filterTypes is required
        listed = self.rf("GET", "?filterTypes=REP&filter=" + urllib.request.quote('name co "F1"'))
        self.assertEqual([f["name"] for f in listed.json["data"]], ["F1"])
        self.assertNotIn("filterV1_0", listed.json["data"][0])
        self.assertIn("filterV1_0", self.rf("GET", "/" + fid).json)
        patch = [{"op": "replace", "path": "/filter", "value": {"Filter": {"description": "e"}}}]
        self.assertEqual(self.rf("PATCH", "/" + fid, patch).status, 204)
        self.assertEqual(self.rf("GET", "/" + fid).json["description"], "e")
        self.assertEqual(self.rf("DELETE", "/" + fid).status, 204)
        self.assertEqual(self.rf("GET", "/" + fid).status, 404)

    # ---------------------------------------------------------------- report templates, sharing tasks

    def upload(self, doc):
        r = cloud_call(self.cloud, "POST", "/api/v1/temp-contents?filename=t.xlsx", json.dumps(doc).encode(),
                       key=ADMIN, ctype="application/octet-stream")
        self.assertEqual(r.status, 201, r)
        return r.headers["Location"].rsplit("/", 1)[1]

    def template(self, doc, **body):
        b = {"name": "Weekly", "temporaryContentId": self.upload(doc)}
        b.update(body)
        return cloud_call(self.cloud, "POST", "/api/v1/report-templates", b, key=ADMIN)

    def test_report_templates(self):
        doc = {"type": "excel", "fields": ["Region"]}
        self.assertEqual(self.template(doc).status, 400)                 # no source app anywhere
        r = self.template(doc, sourceAppId=APP, sourceAppAction="replace")
        self.assertEqual((r.status, r.json["type"], r.json["sourceAppId"]), (201, "excel", APP), r)
        self.assertEqual(self.template(doc, sourceAppId=APP, sourceAppAction="validate").status, 400)
        bad = self.template({"type": "excel", "fields": ["Nope"]}, sourceAppId=APP, sourceAppAction="replace")
        self.assertEqual((bad.status, bad.json["errors"][0]["code"]), (400, "REP-400044"))
        self.assertEqual(self.template({"type": "qlikentity"}, sourceAppId=APP).status, 400)
        self.assertEqual(self.template(doc, sourceAppId="b" * 8, sourceAppAction="replace").status, 404)
        listed = cloud_call(self.cloud, "GET", "/api/v1/report-templates?sourceAppId=" + APP, key=ADMIN)
        self.assertIn(r.json["id"], [t["id"] for t in listed.json["data"]])
        dl = cloud_call(self.cloud, "POST", "/api/v1/report-templates/%s/actions/download" % r.json["id"], key=ADMIN)
        self.assertEqual(json.loads(dl.raw)["fields"], ["Region"])
        # a sharing task over it
        admin = next(iter(self.running.sim.half("cloud").users))
        task = {"name": "Mondays", "type": "template-sharing", "state": {"selections": []},
                "templates": [{"type": "excel", "templateId": r.json["id"]}],
                "scheduleOptions": {"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=0"],
                                    "timezone": "Europe/Rome", "startDateTime": "2099-01-01T07:00:00"},
                "recipients": {"userIds": [{"value": admin}]}}
        t = cloud_call(self.cloud, "POST", "/api/v1/sharing-tasks", task, key=ADMIN)
        self.assertEqual(t.status, 201, t)
        for change, why in ((("scheduleOptions", "startDateTime"), "2020-01-01T07:00:00"),
                            (("scheduleOptions", "startDateTime"), "2099-01-01T07:00:00Z"),
                            (("scheduleOptions", "timezone"), "Mars/Olympus"),
                            (("scheduleOptions", "recurrence"), ["DTSTART:20990101T000000"])):
            bad = json.loads(json.dumps(task))
            bad[change[0]][change[1]] = why
            self.assertEqual(cloud_call(self.cloud, "POST", "/api/v1/sharing-tasks", bad, key=ADMIN).status, 400, why)
        bad = json.loads(json.dumps(task))
        bad["recipients"]["userIds"] = [{"value": "nobody"}]
        self.assertEqual(cloud_call(self.cloud, "POST", "/api/v1/sharing-tasks", bad, key=ADMIN).status, 400)
        bad["templates"] = [{"type": "excel", "templateId": "missing"}]
        self.assertEqual(cloud_call(self.cloud, "POST", "/api/v1/sharing-tasks", bad, key=ADMIN).status, 400)
        listed = cloud_call(self.cloud, "GET", "/api/v1/sharing-tasks?appid=" + APP, key=ADMIN)
        self.assertEqual([x["id"] for x in listed.json["sharingTasks"]], [t.json["id"]])
        self.assertEqual(cloud_call(self.cloud, "DELETE", "/api/v1/sharing-tasks/" + t.json["id"], key=ADMIN).status, 204)
        self.assertEqual(cloud_call(self.cloud, "DELETE", "/api/v1/report-templates/" + r.json["id"], key=ADMIN).status,
                         204)


class Md4NtlmTest(unittest.TestCase):
    def test_md4_rfc1320_vectors(self):
        vectors = {b"": "31d6cfe0d16ae931b73c59d7e0c089c0", b"a": "bde52cb31de33e46245e05fbdbd6fb24",
                   b"abc": "a448017aaf21d8525fc10ae87aa6729d",
                   b"message digest": "d9130a8164549fe818874806e1c7014b",
                   b"abcdefghijklmnopqrstuvwxyz": "d79e1c308aa5bbcdeea8ed63df412da9",
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789":
                       "043f8582f241db351ce627e153e7f0e4",
                   b"1234567890" * 8: "e33b4ddc9c38f2199c3e7b164fcc0536"}
        for data, digest in vectors.items():
            self.assertEqual(ntlm.md4(data).hex(), digest, data)

    def test_ntlmv2_ms_nlmp_vectors(self):
        # [MS-NLMP] 4.2.4: user "User", domain "Domain", password "Password", server challenge
        # 0123456789abcdef, client challenge aa*8, time 0, AV pairs domain "Domain", server "Server"
        self.assertEqual(ntlm.ntowf_v2("Password", "User", "Domain").hex(), "0c868a403bfd7a93a3001ef22ef02e3f")
        av = (struct.pack("<HH", 2, 12) + "Domain".encode("utf-16-le") + struct.pack("<HH", 1, 12)
              + "Server".encode("utf-16-le") + struct.pack("<HH", 0, 0))
        blob = b"\x01\x01" + b"\0" * 14 + b"\xaa" * 8 + b"\0" * 4 + av + b"\0" * 4
        proof = ntlm.nt_proof("Password", "User", "Domain", bytes.fromhex("0123456789abcdef"), blob)
        self.assertEqual(proof.hex(), "68cd0ab851e51c96aabc927bebef6a1c")


def _type1():
    return ntlm.SIGNATURE + struct.pack("<II", 1, ntlm.NEGOTIATE_UNICODE | ntlm.NEGOTIATE_NTLM) + b"\0" * 16


def _type3(challenge_msg, user, domain, password, v1=False):
    """An AUTHENTICATE_MESSAGE (Unicode) answering a CHALLENGE_MESSAGE, as a client makes it."""
    server_challenge = challenge_msg[24:32]
    info = ntlm._field(challenge_msg, 40)
    blob = b"\x01\x01" + b"\0" * 6 + struct.pack("<Q", 0) + os.urandom(8) + b"\0" * 4 + info + b"\0" * 4
    nt = os.urandom(24) if v1 else ntlm.nt_proof(password, user, domain, server_challenge, blob) + blob
    payload = [b"\0" * 24, nt, domain.encode("utf-16-le"), user.encode("utf-16-le"), "WS".encode("utf-16-le")]
    head, fields, data = 64, b"", b""
    for p in payload:
        fields += struct.pack("<HHI", len(p), len(p), head + len(data))
        data += p
    return ntlm.SIGNATURE + struct.pack("<I", 3) + fields + struct.pack("<HHI", 0, 0, head + len(data)) \
        + struct.pack("<I", ntlm.NEGOTIATE_UNICODE | ntlm.NEGOTIATE_NTLM) + data


class NtlmLoginTest(unittest.TestCase):
    """GET /api/v1/login/ntlm: the NTLM handshake of a Windows server, per connection."""

    @classmethod
    def setUpClass(cls):
        cls.running = start(SITE, {"qrs": QRS, "cloud": Cloud, "nprinting": NPrinting})
        cls.info = cls.running.info
        cls.url = cls.info["nprinting_url"]
        cls.tls = ssl.create_default_context(cafile=cls.info["certs"]["ca"])

    @classmethod
    def tearDownClass(cls):
        cls.running.stop()

    def conn(self):
        c = Client(self.url, self.tls)
        self.addCleanup(c.close)
        return c

    def handshake(self, first, second, user="npadmin", password="Adm1n-pw", **kw):
        login = "/api/v1/login/ntlm"
        r = first.request("GET", login, headers={"Authorization": ntlm.header(_type1())})
        self.assertEqual(r.status, 401)
        kind, challenge_msg = ntlm.decode(r.headers["WWW-Authenticate"])
        self.assertEqual(kind, 2)
        self.assertTrue(struct.unpack_from("<I", challenge_msg, 20)[0] & ntlm.NEGOTIATE_TARGET_INFO)
        return second.request("GET", login, headers={
            "Authorization": ntlm.header(_type3(challenge_msg, user, "CORP", password, **kw))})

    def test_handshake_on_one_connection_gives_a_session(self):
        c = self.conn()
        r = c.request("GET", "/api/v1/login/ntlm")
        self.assertEqual((r.status, r.headers["WWW-Authenticate"]), (401, "NTLM"))
        r = self.handshake(c, c)
        self.assertEqual(r.status, 200, r.data)
        self.assertEqual(r.json()["code"], 0)
        cookies = {v.split("=", 1)[0]: v.split("=", 1)[1].split(";")[0] for v in r.headers.get_all("Set-Cookie")}
        self.assertEqual(sorted(cookies), ["NPWEBCONSOLE_SESSION", "NPWEBCONSOLE_XSRF-TOKEN"])
        # the session cookie authenticates any connection
        other = self.conn()
        session = "NPWEBCONSOLE_SESSION=" + cookies["NPWEBCONSOLE_SESSION"]
        r = other.request("GET", "/api/v1/apps", headers={"Cookie": session})
        self.assertEqual(r.status, 200)
        self.assertEqual(other.request("GET", "/api/v1/apps", headers={"Cookie": "NPWEBCONSOLE_SESSION=x"}).status, 401)
        # the authenticated connection stays authenticated: a second login on it needs no handshake
        self.assertEqual(c.request("GET", "/api/v1/login/ntlm").status, 200)

    def test_refusals(self):
        self.assertEqual(self.handshake(self.conn(), self.conn()).status, 401)   # type 3 on another connection
        c = self.conn()
        r = self.handshake(c, c, password="wrong")
        self.assertEqual((r.status, r.headers["WWW-Authenticate"]), (401, "NTLM"))
        c = self.conn()
        self.assertEqual(self.handshake(c, c, v1=True).status, 401)              # NTLMv1
        c = self.conn()
        self.assertEqual(self.handshake(c, c, user="off", password="0ff-pw").status, 401)   # disabled user
        c = self.conn()
        self.assertEqual(self.handshake(c, c, user="nobody").status, 401)
        c = self.conn()
        r = c.request("GET", "/api/v1/login/ntlm", headers={"Authorization": "NTLM !!!"})
        self.assertEqual(r.status, 401)

    @unittest.skipUnless(shutil.which("curl"), "no curl")
    def test_curl_ntlm(self):
        """libcurl's NTLM (type 1, reads type 2, type 3 on the same connection) is accepted."""
        if "NTLM" not in subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout:
            self.skipTest("curl without NTLM")
        base = ["curl", "-s", "--cacert", self.info["certs"]["ca"], "--ntlm", "-D", "-"]

        def run(user):
            return subprocess.run(base + ["-u", user, self.url + "/api/v1/login/ntlm"], capture_output=True,
                                  text=True, timeout=30).stdout
        out = run("CORP\\npadmin:Adm1n-pw")
        self.assertRegex(out, r"HTTP/1.1 200")
        self.assertRegex(out, r"Set-Cookie: NPWEBCONSOLE_SESSION=")
        self.assertNotRegex(run("CORP\\npadmin:nope"), r"HTTP/1.1 200")
        session = out.split("NPWEBCONSOLE_SESSION=", 1)[1].split(";", 1)[0]
        c = self.conn()
        self.assertEqual(c.request("GET", "/api/v1/apps", headers={"Cookie": "NPWEBCONSOLE_SESSION=" + session}).status,
                         200)
        r = Client(self.info["nprinting_url"], self.tls)
        self.addCleanup(r.close)
        self.assertEqual(r.request("POST", "/_sim/nprinting/expire-sessions").status, 200)
        self.assertEqual(c.request("GET", "/api/v1/apps", headers={"Cookie": "NPWEBCONSOLE_SESSION=" + session}).status,
                         401)


if __name__ == "__main__":
    unittest.main()
