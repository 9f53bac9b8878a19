"""Self-tests of the QRS half: filters, auth, shapes, export, object owner changes."""
import io
import json
import time
import unittest

import testlib
from testlib import QrsClient

import generate
import qrs_filter
import qvf
from qrs import QRS, NEVER

HOSTILE_STREAM = "Finance & Ops' Reports"
SECRET = "p@ss-never-returned"


def hostile_site(build="14.113.2"):
    return {"qrs": {
        "about": {"buildVersion": build},
        "users": [
            {"userDirectory": "CORP", "userId": "jdoe", "name": "John Doe",
             "attributes": [{"attributeType": "email", "attributeValue": "jdoe@corp.example"},
                            {"attributeType": "group", "attributeValue": "Finance"}]},
            {"userDirectory": "CORP", "userId": "o'neil", "name": "Ann O'Neil", "attributes": []},
            {"userDirectory": "CORP", "userId": "ünï", "name": "Ünï Cødé",
             "attributes": [{"attributeType": "Email", "attributeValue": "uni@corp.example"}]},
        ],
        "tags": [{"name": "Finance"}],
        "custom_properties": [{"name": "Region", "valueType": "Text",
                               "choiceValues": ["EMEA", "APAC"], "objectTypes": ["App"]}],
        "streams": [{"name": HOSTILE_STREAM, "owner": "CORP\\jdoe", "tags": ["Finance"]},
                    {"name": "Sales (EMEA)", "owner": "CORP\\jdoe"}],
        "apps": [
            {"name": "Q1 'Budget' & Plan", "owner": "CORP\\jdoe", "stream": HOSTILE_STREAM,
             "tags": ["Finance"], "customProperties": {"Region": ["EMEA"]}, "fileSize": 300000,
             "script": "LIB CONNECT TO 'Finance DB';\nLOAD 1 AS x AUTOGENERATE 1;",
             "data_model": {"tables": [{"name": "T", "no_of_rows": 1, "fields": ["x"]}]},
             "objects": [
                 {"engineObjectId": "base1", "objectType": "sheet", "name": "Base sheet",
                  "state": "base"},
                 {"engineObjectId": "comm1", "objectType": "sheet", "name": "Community sheet",
                  "owner": "CORP\\o'neil", "state": "community"},
                 {"engineObjectId": "priv1", "objectType": "bookmark", "name": "Private bm",
                  "owner": "CORP\\ünï", "state": "private"},
                 {"engineObjectId": "story1", "objectType": "story", "name": "Story",
                  "state": "base"}]},
            {"name": "Sales/EMEA?#%", "owner": "CORP\\o'neil", "stream": "Sales (EMEA)",
             "fileSize": 5000},
            {"name": "My work", "owner": "CORP\\ünï", "stream": None, "fileSize": 1000,
             "objects": [{"engineObjectId": "p2", "name": "Mine", "state": "private"}]},
        ],
        "data_connections": [
            {"name": "Finance DB", "type": "ODBC", "connectionstring": "ODBC CONNECT TO [X]",
             "owner": "CORP\\jdoe", "username": "svc", "password": SECRET},
            {"name": "Files (corp_jdoe)", "type": "folder", "connectionstring": "C:\\data\\",
             "owner": "CORP\\jdoe"}],
        "reload_tasks": [
            {"name": "Reload Q1", "app": "Q1 'Budget' & Plan",
             "schema_events": [{"name": "Daily", "incrementOption": 2,
                                "incrementDescription": "0 0 1 0",
                                "schemaFilterDescription": ["* * - * * * * *"]},
                               {"name": "Weekly", "incrementOption": 3,
                                "schemaFilterDescription": ["* * - 1,3 1 * * *"]}]},
            {"name": "Reload Sales", "app": "Sales/EMEA?#%",
             "composite_events": [{"name": "After Q1", "compositeRules": [
                 {"ruleState": 1, "reloadTask": "Reload Q1"}]}]}],
        "extensions": [{"name": "my-ext", "type": "visualization", "owner": "CORP\\jdoe",
                        "files": {"my-ext.js": "console.log(1);", "lib/x.css": ".a{}"}}],
        "system_rules": [{"name": "Finance read", "rule": "((user.group=\"Finance\"))",
                          "resourceFilter": f"Stream_{HOSTILE_STREAM}", "actions": 2}],
    }}


# --------------------------------------------------------------------------- filter language

ROWS = [
    {"name": "Sales", "published": True, "fileSize": 100, "stream": {"name": "Finance & Ops' Reports"},
     "owner": {"userId": "jdoe"}, "tags": [{"name": "A"}, {"name": "B"}]},
    {"name": "sales copy", "published": False, "fileSize": 50, "stream": None,
     "owner": {"userId": "o'neil"}, "tags": []},
    {"name": "Budget", "published": True, "fileSize": 300, "stream": {"name": "Finance"},
     "owner": {"userId": "JDOE"}, "tags": [{"name": "B"}]},
]


class FilterTests(unittest.TestCase):
    CASES = [
        ("name eq 'sales'", {"Sales"}),
        ("NAME EQ 'SALES'", {"Sales"}),
        ("name ne 'sales'", {"sales copy", "Budget"}),
        ("name sw 'sal'", {"Sales", "sales copy"}),
        ("name ew 'COPY'", {"sales copy"}),
        ("name so 'udg'", {"Budget"}),
        ("stream.name eq 'Finance & Ops'' Reports'", {"Sales"}),
        ("Stream.Name eq 'finance'", {"Budget"}),
        ("stream.name ne 'Finance'", {"Sales", "sales copy"}),
        ("stream.name eq null", {"sales copy"}),
        ("stream eq null", {"sales copy"}),
        ("stream ne null", {"Sales", "Budget"}),
        ("stream.name sw 'F'", {"Sales", "Budget"}),
        ("published eq true", {"Sales", "Budget"}),
        ("published eq FALSE", {"sales copy"}),
        ("fileSize gt 100", {"Budget"}),
        ("fileSize ge 100", {"Sales", "Budget"}),
        ("fileSize lt 100", {"sales copy"}),
        ("fileSize le 50", {"sales copy"}),
        ("owner.userId eq 'o''neil'", {"sales copy"}),
        ("owner.userid eq 'jdoe'", {"Sales", "Budget"}),
        ("tags.name eq 'B'", {"Sales", "Budget"}),
        ("tags.name eq 'A'", {"Sales"}),
        ("tags.name ne 'A'", {"sales copy", "Budget"}),
        ("name eq 'Sales' or name eq 'Budget' and published eq false", {"Sales"}),
        ("(name eq 'Sales' or name eq 'Budget') and published eq true", {"Sales", "Budget"}),
        ("name eq 'Budget' and (published eq false or fileSize eq 300)", {"Budget"}),
        ("((name eq 'Budget'))", {"Budget"}),
        ("name eq 'x' or name eq 'y' or name so 'copy'", {"sales copy"}),
        ("name eq 'Sales' AND published eq true OR name eq 'Budget'", {"Sales", "Budget"}),
        ("name eq '(not a paren) and ''or'''", set()),
    ]
    BAD = ["", "name", "name eq", "name xx 'a'", "name eq 'unterminated", "(name eq 'a'",
           "name eq 'a')", "name eq 'a' and", "'name' eq 'a'", "name eq 'a' name eq 'b'",
           "and name eq 'a'", "name eq ()"]

    def test_cases(self):
        for text, expected in self.CASES:
            with self.subTest(filter=text):
                tree = qrs_filter.parse(text)
                got = {r["name"] for r in ROWS if qrs_filter.evaluate(tree, r)}
                self.assertEqual(got, expected)

    def test_malformed(self):
        for text in self.BAD:
            with self.subTest(filter=text):
                with self.assertRaises(qrs_filter.FilterError):
                    qrs_filter.parse(text)

    def test_precedence_tree(self):
        tree = qrs_filter.parse("a eq 1 or b eq 2 and c eq 3")
        self.assertEqual(tree[0], "or")
        self.assertEqual(tree[2][0], "and")

    def test_values(self):
        tree = qrs_filter.parse("id eq 2972ab89-1c4a-4e2b-9f1e-000000000001")
        self.assertEqual(tree[3], "2972ab89-1c4a-4e2b-9f1e-000000000001")
        self.assertEqual(qrs_filter.parse("x eq 'it''s'")[3], "it's")
        self.assertIs(qrs_filter.parse("x eq True")[3], True)
        self.assertIsNone(qrs_filter.parse("x eq NULL")[3])
        self.assertEqual(qrs_filter.parse("x eq -1.5")[3], -1.5)


# --------------------------------------------------------------------------- HTTP

class QrsHttpBase(unittest.TestCase):
    build = "14.113.2"

    @classmethod
    def setUpClass(cls):
        cls.sim = testlib.start(hostile_site(cls.build), {"qrs": QRS})
        cls.info = cls.sim.info
        cls.c = QrsClient(cls.info)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.sim.stop()

    def ok(self, path, **params):
        reply = self.c.get(path, **params)
        self.assertEqual(reply.status, 200, reply.data[:300])
        return reply.json()

    def app(self, name):
        apps = self.ok("/qrs/app/full", filter=f"name eq '{name.replace(chr(39), chr(39) * 2)}'")
        self.assertEqual(len(apps), 1)
        return apps[0]

    def export(self, app_id, token, **params):
        reply = self.c.call("POST", f"/qrs/app/{app_id}/export/{token}", params=params)
        self.assertEqual(reply.status, 201, reply.data)
        return reply.json()

    def download(self, path, client=None):
        return (client or self.c).call("GET", path)

    def qvf_of(self, app_name, **params):
        app = self.app(app_name)
        token = f"00000000-0000-4000-8000-{int(time.time() * 1e6) % 10 ** 12:012d}"
        body = self.export(app["id"], token, **params)
        reply = self.download(body["downloadPath"])
        self.assertEqual(reply.status, 200)
        meta, header_len = qvf.read_header(io.BytesIO(reply.data))
        return meta, reply.data, header_len


class AuthTests(QrsHttpBase):
    def test_xrfkey_rejections(self):
        cases = [("param missing", None, XRF_HDR(), "/qrs/about"),
                 ("header missing", testlib.XRF, {}, "/qrs/about"),
                 ("mismatch", testlib.XRF, XRF_HDR("abcdefghijklmnoq"), "/qrs/about"),
                 ("too short", "abc", XRF_HDR("abc"), "/qrs/about"),
                 ("bad chars", "abcdefghijklmno-", XRF_HDR("abcdefghijklmno-"), "/qrs/about"),
                 ("download", None, XRF_HDR(), "/tempcontent/x/y.qvf"),
                 ("extension", None, XRF_HDR(), "/extensions/my-ext/my-ext.js")]
        for label, param, headers, path in cases:
            with self.subTest(label):
                query = f"?xrfkey={param}" if param else ""
                reply = self.c.request("GET", path + query,
                                       headers={"X-Qlik-User": testlib.SA_API, **headers})
                self.assertEqual(reply.status, 403)
                self.assertEqual(reply.text, "XSRF prevention check failed. Possible XSRF discovered.")

    def test_xrfkey_param_name_case_insensitive(self):
        reply = self.c.request("GET", f"/qrs/about?XrfKey={testlib.XRF}",
                               headers={"X-Qlik-User": testlib.SA_API, **XRF_HDR()})
        self.assertEqual(reply.status, 200)

    def test_qlik_user_header(self):
        for value, status in [(None, 403), ("garbage", 403), ("UserDirectory=CORP; UserId=nobody", 403),
                              ("UserDirectory=CORP;UserId=jdoe", 200),
                              ("userdirectory=corp; userid=JDOE", 200),
                              ("UserDirectory=CORP; UserId=o'neil", 200)]:
            with self.subTest(value):
                headers = XRF_HDR()
                if value:
                    headers["X-Qlik-User"] = value
                reply = self.c.request("GET", f"/qrs/about?xrfkey={testlib.XRF}", headers=headers)
                self.assertEqual(reply.status, status, reply.data)

    def test_unknown_route_and_method(self):
        self.assertEqual(self.c.get("/qrs/nosuchtype").status, 404)
        self.assertEqual(self.c.call("DELETE", "/qrs/app/full").status, 405)


def XRF_HDR(key=testlib.XRF):
    return {"X-Qlik-Xrfkey": key}


class ShapeTests(QrsHttpBase):
    def test_about(self):
        about = self.ok("/qrs/about")
        self.assertEqual(about["buildVersion"], "14.113.2")
        self.assertEqual(about["schemaPath"], "About")
        self.assertIn("SchemaEvent.IncrementOption", self.ok("/qrs/about/api/enums"))

    def test_app_full_published(self):
        app = self.app("Q1 'Budget' & Plan")
        for key in ("id", "createdDate", "modifiedDate", "modifiedByUserName", "customProperties",
                    "owner", "name", "publishTime", "published", "tags", "description", "stream",
                    "fileSize", "lastReloadTime", "savedInProductVersion", "availabilityStatus",
                    "privileges", "schemaPath"):
            self.assertIn(key, app)
        self.assertTrue(app["published"])
        self.assertEqual(app["stream"]["name"], HOSTILE_STREAM)
        self.assertEqual(app["owner"]["userId"], "jdoe")
        self.assertEqual(app["tags"][0]["name"], "Finance")
        prop = app["customProperties"][0]
        self.assertEqual((prop["value"], prop["definition"]["name"]), ("EMEA", "Region"))
        self.assertEqual(prop["definition"]["choiceValues"], ["EMEA", "APAC"])
        self.assertIsNone(app["privileges"])
        self.assertEqual(app["schemaPath"], "App")

    def test_app_unpublished(self):
        app = self.app("My work")
        self.assertFalse(app["published"])
        self.assertIsNone(app["stream"])
        self.assertEqual(app["publishTime"], NEVER)

    def test_condensed_count_and_by_id(self):
        condensed = self.ok("/qrs/app")
        self.assertEqual(len(condensed), 3)
        self.assertNotIn("owner", condensed[0])
        self.assertIn("stream", condensed[0])
        self.assertEqual(self.ok("/qrs/app/count"), {"value": 3})
        self.assertEqual(self.ok("/qrs/app/count", filter="stream eq null"), {"value": 1})
        one = self.ok(f"/qrs/app/{condensed[0]['id']}")
        self.assertEqual(one["id"], condensed[0]["id"])
        self.assertIn("owner", one)
        self.assertEqual(self.c.get("/qrs/app/00000000-0000-0000-0000-00000000dead").status, 404)

    def test_type_names_case_insensitive(self):
        self.assertEqual(len(self.ok("/qrs/CustomPropertyDefinition/full")), 1)

    def test_orderby_and_privileges(self):
        names = [a["name"] for a in self.ok("/qrs/app", orderby="name desc")]
        self.assertEqual(names, sorted(names, key=str.lower, reverse=True))
        names = [a["name"] for a in self.ok("/qrs/app", orderby="name")]
        self.assertEqual(names, sorted(names, key=str.lower))
        self.assertIn("read", self.ok("/qrs/stream", privileges="true")[0]["privileges"])
        self.assertEqual(self.c.get("/qrs/app", orderby="name sideways").status, 400)

    def test_http_filters(self):
        apps = self.ok("/qrs/app/full", filter=f"stream.name eq '{HOSTILE_STREAM.replace(chr(39), chr(39) * 2)}'")
        self.assertEqual([a["name"] for a in apps], ["Q1 'Budget' & Plan"])
        apps = self.ok("/qrs/app", filter="stream.name ne 'Sales (EMEA)' and (published eq false or name so 'budget')")
        self.assertEqual({a["name"] for a in apps}, {"My work", "Q1 'Budget' & Plan"})
        users = self.ok("/qrs/user/full", filter="userDirectory eq 'corp' and userId eq 'O''NEIL'")
        self.assertEqual([u["name"] for u in users], ["Ann O'Neil"])
        reply = self.c.get("/qrs/app", filter="name eq 'x")
        self.assertEqual(reply.status, 400)
        self.assertIn("filter", reply.text.lower())
        self.assertEqual(self.c.get("/qrs/app", filter="colour eq 'red'").status, 400)

    def test_app_objects(self):
        app = self.app("Q1 'Budget' & Plan")
        objs = self.ok("/qrs/app/object/full",
                       filter=f"app.id eq {app['id']} and objectType eq 'sheet'")
        self.assertEqual({o["engineObjectId"] for o in objs}, {"base1", "comm1"})
        by_id = {o["engineObjectId"]: o for o in objs}
        self.assertTrue(by_id["base1"]["approved"])
        self.assertEqual((by_id["comm1"]["published"], by_id["comm1"]["approved"]), (True, False))
        self.assertEqual(by_id["comm1"]["owner"]["userId"], "o'neil")
        self.assertEqual(by_id["base1"]["app"]["id"], app["id"])
        self.assertEqual(by_id["base1"]["schemaPath"], "App.Object")
        private = self.ok("/qrs/app/object/full", filter="published eq false")
        self.assertEqual({o["engineObjectId"] for o in private}, {"priv1", "p2"})

    def test_users(self):
        users = self.ok("/qrs/user/full", filter="userDirectory eq 'INTERNAL'")
        self.assertEqual({u["userId"] for u in users}, {"sa_repository", "sa_api", "sa_scheduler"})
        jdoe = self.ok("/qrs/user/full", filter="userId eq 'jdoe'")[0]
        self.assertEqual([a["attributeType"] for a in jdoe["attributes"]], ["email", "group"])
        self.assertEqual(jdoe["schemaPath"], "User")

    def test_data_connection_never_returns_password(self):
        conns = self.ok("/qrs/dataconnection/full")
        self.assertEqual({c["password"] for c in conns}, {""})
        self.assertEqual(conns[0]["connectionstring"], "ODBC CONNECT TO [X]")
        self.assertEqual(conns[0]["username"], "svc")
        for path in ("/qrs/dataconnection", "/_sim/state"):
            self.assertNotIn(SECRET, self.c.call("GET", path).text)

    def test_tasks_and_triggers(self):
        task = self.ok("/qrs/reloadtask/full", filter="name eq 'Reload Q1'")[0]
        self.assertEqual(task["app"]["name"], "Q1 'Budget' & Plan")
        for key in ("taskType", "isManuallyTriggered", "enabled", "taskSessionTimeout",
                    "maxRetries", "isPartialReload", "preloadNodes", "operational"):
            self.assertIn(key, task)
        events = self.ok("/qrs/schemaevent/full", filter=f"reloadTask.id eq {task['id']}")
        self.assertEqual([e["name"] for e in events], ["Daily", "Weekly"])
        self.assertEqual(events[1]["schemaFilterDescription"], ["* * - 1,3 1 * * *"])
        self.assertEqual(events[0]["reloadTask"]["id"], task["id"])
        composite = self.ok("/qrs/compositeevent/full")[0]
        self.assertEqual(composite["compositeRules"][0]["reloadTask"]["id"], task["id"])
        self.assertEqual(composite["reloadTask"]["name"], "Reload Sales")
        self.assertEqual(composite["timeConstraint"]["minutes"], 360)

    def test_extension_and_files(self):
        ext = self.ok("/qrs/extension/full")[0]
        paths = sorted(r["logicalPath"] for r in ext["references"])
        self.assertEqual(paths, ["/extensions/my-ext/lib/x.css", "/extensions/my-ext/my-ext.js",
                                 "/extensions/my-ext/my-ext.qext"])
        self.assertEqual(self.c.call("GET", "/extensions/my-ext/my-ext.js").text, "console.log(1);")
        qext = json.loads(self.c.call("GET", "/extensions/my-ext/my-ext.qext").data)
        self.assertEqual(qext["type"], "visualization")
        self.assertEqual(self.c.call("GET", "/extensions/my-ext/nope.js").status, 404)

    def test_system_rule_resource_filter_uses_stream_id(self):
        stream = self.ok("/qrs/stream/full", filter="name so 'ops'")[0]
        rule = self.ok("/qrs/systemrule/full")[0]
        self.assertEqual(rule["resourceFilter"], f"Stream_{stream['id']}")

    def test_endpoint_templates_counted(self):
        app = self.app("My work")
        self.c.get(f"/qrs/app/{app['id']}")
        counts = self.c.call("GET", "/_sim/counts").json()
        self.assertGreaterEqual(counts["requests"]["GET /qrs/app/{id}"], 1)
        self.assertGreaterEqual(counts["requests"]["GET /qrs/app/full"], 1)


class ExportTests(QrsHttpBase):
    def test_export_reply_and_download_once(self):
        app = self.app("Sales/EMEA?#%")
        token = "11111111-2222-4333-8444-555555555555"
        body = self.export(app["id"], token, skipData="true")
        self.assertEqual(set(body), {"exportToken", "appId", "downloadPath", "cancelled", "schemaPath"})
        self.assertEqual((body["exportToken"], body["appId"], body["schemaPath"]),
                         (token, app["id"], "AppExportResponse"))
        self.assertRegex(body["downloadPath"],
                         r"^/tempcontent/[0-9a-f-]{36}/Sales%2FEMEA%3F%23%25\.qvf\?serverNodeId=[0-9a-f-]{36}$")
        first = self.download(body["downloadPath"])
        self.assertEqual(first.status, 200)
        self.assertTrue(first.data.startswith(qvf.MAGIC))
        self.assertEqual(self.download(body["downloadPath"]).status, 404)
        reused = self.c.call("POST", f"/qrs/app/{app['id']}/export/{token}")
        self.assertEqual(reused.status, 409)
        self.assertEqual(self.c.call("POST", f"/qrs/app/{app['id']}/export/not-a-guid").status, 400)

    def test_qrs_prefixed_download_path(self):
        app = self.app("My work")
        body = self.export(app["id"], "21111111-2222-4333-8444-555555555555")
        self.assertEqual(self.download("/qrs" + body["downloadPath"]).status, 200)
        self.assertEqual(self.download(body["downloadPath"]).status, 404)

    def test_cancel(self):
        app = self.app("My work")
        token = "31111111-2222-4333-8444-555555555555"
        body = self.export(app["id"], token)
        self.assertEqual(self.c.call("DELETE", f"/qrs/app/{app['id']}/export/{token}").status, 204)
        self.assertEqual(self.download(body["downloadPath"]).status, 404)

    def test_only_exporting_user_may_download(self):
        app = self.app("My work")
        body = self.export(app["id"], "41111111-2222-4333-8444-555555555555")
        other = QrsClient(self.info, user="UserDirectory=CORP; UserId=jdoe")
        try:
            self.assertEqual(self.download(body["downloadPath"], other).status, 403)
        finally:
            other.close()
        self.assertEqual(self.download(body["downloadPath"]).status, 200)

    def test_scopes(self):
        expected = {"approved": {"base1", "story1"}, "published": {"base1", "story1", "comm1"},
                    "all": {"base1", "story1", "comm1", "priv1"}}
        for scope, ids in expected.items():
            with self.subTest(scope):
                meta, _, _ = self.qvf_of("Q1 'Budget' & Plan", skipData="true", exportScope=scope)
                self.assertEqual({o["engineObjectId"] for o in meta["objects"]}, ids)
        meta, _, _ = self.qvf_of("Q1 'Budget' & Plan", skipData="true")
        self.assertEqual({o["engineObjectId"] for o in meta["objects"]}, expected["approved"])
        owners = {o["engineObjectId"]: o["owner"] for o in
                  self.qvf_of("Q1 'Budget' & Plan", exportScope="all")[0]["objects"]}
        self.assertEqual(owners["priv1"], "CORP\\ünï")
        bad = self.c.call("POST", f"/qrs/app/{self.app('My work')['id']}/export/"
                                  "51111111-2222-4333-8444-555555555555",
                          params={"exportScope": "everything"})
        self.assertEqual(bad.status, 400)

    def test_qvf_content_and_sizes(self):
        meta, data, header_len = self.qvf_of("Q1 'Budget' & Plan", skipData="false")
        self.assertEqual(len(data), 300000)
        self.assertTrue(meta["has_data"])
        self.assertEqual(meta["source"], "qrs")
        self.assertEqual(meta["name"], "Q1 'Budget' & Plan")
        self.assertIn("LIB CONNECT TO 'Finance DB'", meta["script"])
        self.assertEqual(meta["data_model"]["tables"][0]["name"], "T")
        self.assertEqual(len(data) - header_len, meta["payload_size"])
        expected = b"".join(qvf.payload_chunks(meta["payload_seed"], meta["payload_size"]))
        self.assertEqual(data[header_len:], expected)
        small, data, _ = self.qvf_of("Q1 'Budget' & Plan", skipData="true")
        self.assertFalse(small["has_data"])
        self.assertEqual(len(data), 64 * 1024)


class OldReleaseExportTests(QrsHttpBase):
    build = "13.42.1"

    def test_export_scope_ignored(self):
        meta, _, _ = self.qvf_of("Q1 'Budget' & Plan", skipData="true", exportScope="all")
        self.assertEqual({o["engineObjectId"] for o in meta["objects"]}, {"base1", "story1"})


class EntityEditTests(QrsHttpBase):
    """PUT /qrs/{type}/{id}: what the QMC changes, with the QRS's modifiedDate
    check (a stale copy is a 409 and changes nothing)."""

    def test_rename_app_and_edit_trigger(self):
        app = self.ok("/qrs/app/full")[0]
        renamed = self.c.call("PUT", f"/qrs/app/{app['id']}", body={**app, "name": "Renamed At Source"})
        self.assertEqual(renamed.status, 200, renamed.data)
        self.assertEqual(self.ok(f"/qrs/app/{app['id']}")["name"], "Renamed At Source")
        self.assertNotEqual(renamed.json()["modifiedDate"], app["modifiedDate"])
        stale = self.c.call("PUT", f"/qrs/app/{app['id']}", body={**app, "name": "Again"})
        self.assertEqual(stale.status, 409)
        self.assertEqual(self.ok(f"/qrs/app/{app['id']}")["name"], "Renamed At Source")
        event = self.ok("/qrs/schemaevent/full")[0]
        edited = self.c.call("PUT", f"/qrs/schemaevent/{event['id']}",
                             body={**event, "incrementDescription": "0 0 2 0"})
        self.assertEqual(edited.status, 200, edited.data)
        self.assertEqual(self.ok(f"/qrs/schemaevent/{event['id']}")["incrementDescription"], "0 0 2 0")
        empty = self.c.call("PUT", f"/qrs/app/{app['id']}",
                            body={**self.ok(f"/qrs/app/{app['id']}"), "name": " "})
        self.assertEqual(empty.status, 400)


class ObjectOwnerTests(QrsHttpBase):
    def obj(self, engine_id):
        return self.ok("/qrs/app/object/full", filter=f"engineObjectId eq '{engine_id}'")[0]

    def test_change_owner(self):
        obj = self.obj("priv1")
        jdoe = self.ok("/qrs/user", filter="userId eq 'jdoe'")[0]
        reply = self.c.call("PUT", f"/qrs/app/object/{obj['id']}",
                            body={**obj, "owner": {"id": jdoe["id"]}})
        self.assertEqual(reply.status, 200, reply.data)
        self.assertEqual(reply.json()["owner"]["userId"], "jdoe")
        self.assertEqual(self.obj("priv1")["owner"]["id"], jdoe["id"])
        stale = self.c.call("PUT", f"/qrs/app/object/{obj['id']}",
                            body={**obj, "owner": {"id": jdoe["id"]}})
        self.assertEqual(stale.status, 409)
        current = self.obj("priv1")
        unknown = self.c.call("PUT", f"/qrs/app/object/{obj['id']}",
                              body={**current, "owner": {"id": "00000000-0000-0000-0000-000000000001"}})
        self.assertEqual(unknown.status, 400)
        counts = self.c.call("GET", "/_sim/counts").json()
        # three PUTs sent, one applied (the 409 and the 400 changed nothing)
        self.assertEqual(counts["writes"].get("PUT /qrs/app/object/{id}"), 3)
        self.assertEqual(counts["applied"].get("PUT /qrs/app/object/{id}"), 1)

    def test_publish_and_approve(self):
        obj = self.obj("p2")
        self.assertEqual(self.c.call("PUT", f"/qrs/app/object/{obj['id']}/publish").status, 200)
        self.assertTrue(self.obj("p2")["published"])
        self.assertEqual(self.c.call("PUT", f"/qrs/app/object/{obj['id']}/approve").status, 200)
        self.assertTrue(self.obj("p2")["approved"])
        self.c.call("PUT", f"/qrs/app/object/{obj['id']}/unpublish")
        self.assertEqual((self.obj("p2")["published"], self.obj("p2")["approved"]), (False, False))


class QrsFaultTests(QrsHttpBase):
    def tearDown(self):
        self.c.request("POST", "/_sim/faults", {})

    def test_injected_error_and_429_are_plain_text(self):
        self.c.request("POST", "/_sim/faults", {"rules": [
            {"match": "GET /qrs/app", "action": "error", "status": 503},
            {"match": "GET /qrs/stream", "action": "429"}]})
        reply = self.c.get("/qrs/app")
        self.assertEqual((reply.status, reply.headers["Content-Type"].split(";")[0]),
                         (503, "text/plain"))
        limited = self.c.get("/qrs/stream")
        self.assertEqual((limited.status, limited.headers["Retry-After"]), (429, "1"))
        self.assertEqual(self.c.get("/qrs/app").status, 200)

    def test_fate_ignores_the_xrfkey(self):
        faults = {"seed": 3, "error_rate": 0.5, "apply_to": ["qrs"]}
        runs = []
        for key in ("aaaaaaaaaaaaaaaa", "BBBBBBBBBBBBBBBB"):
            self.c.request("POST", "/_sim/faults", faults)
            runs.append([self.c.call("GET", f"/qrs/tag?n={i}", xrf=key).status for i in range(20)])
        self.assertEqual(runs[0], runs[1])
        self.assertEqual(set(runs[0]), {200, 503})

    def test_cloud_only_faults_spare_qrs(self):
        self.c.request("POST", "/_sim/faults", {"error_rate": 1.0, "apply_to": ["cloud"]})
        self.assertEqual(self.c.get("/qrs/about").status, 200)


# --------------------------------------------------------------------------- generator

class GeneratorTests(unittest.TestCase):
    def test_deterministic_and_loadable(self):
        a = generate.generate(apps=60, users=40, streams=6, connections=12, tasks=30, seed=3)
        b = generate.generate(apps=60, users=40, streams=6, connections=12, tasks=30, seed=3)
        self.assertEqual(json.dumps(a), json.dumps(b))
        ctx = testlib.core.SimContext("/tmp")
        q = QRS(a["qrs"], ctx)
        self.assertEqual(len(q.db["app"]), 60)
        self.assertEqual(len(q.db["user"]), 43)
        self.assertEqual(len(q.db["schemaevent"]), 30)
        self.assertEqual(len(q.db["compositeevent"]), 3)
        self.assertTrue(any(app["stream"] is None for app in q.db["app"].values()))
        self.assertTrue(any("'" in app["name"] for app in q.db["app"].values()))
        self.assertEqual(a["cloud"]["api_keys"][0]["key"], "qsim-admin-key")

    def test_benchmark_scale_is_fast(self):
        start = time.monotonic()
        site = generate.generate(apps=2000, users=5000, streams=200, connections=1000, tasks=1000)
        QRS(site["qrs"], testlib.core.SimContext("/tmp"))
        self.assertLess(time.monotonic() - start, 10)

    def test_demo_site_loads(self):
        path = testlib.os.path.join(testlib.HERE, "..", "..", "examples", "demo", "site.json")
        with open(path, encoding="utf-8") as fh:
            site = json.load(fh)
        q = QRS(site["qrs"], testlib.core.SimContext("/tmp"))
        self.assertGreaterEqual(len(q.db["app"]), 10)
        self.assertGreaterEqual(sum(a["stream"] is None for a in q.db["app"].values()), 2)


if __name__ == "__main__":
    unittest.main()
