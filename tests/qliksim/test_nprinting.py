"""Tests for the NPrinting half (nprinting.py) and the Cloud report filters (reporting.py),
over HTTP(S) through the real core server."""
import json
import os
import ssl
import sys
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cloud import Cloud  # noqa: E402
from nprinting import NPrinting, sign_jwt  # noqa: E402
from qrs import QRS  # noqa: E402
from testlib import cloud_call, start  # noqa: E402

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
        "users": [{"name": "Admin", "email": "npadmin@corp.example", "domainAccount": "CORP\\npadmin"},
                  {"name": "Off", "email": "off@corp.example", "enabled": False}],
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


if __name__ == "__main__":
    unittest.main()
