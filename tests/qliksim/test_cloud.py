"""Tests for the qliksim Cloud half (cloud.py).

Run:  python3 -m unittest tests/qliksim/test_cloud.py      (from the repo root)
  or: python3 tests/qliksim/test_cloud.py

Most tests drive Cloud.handle() directly with real core.Request objects built over
an in-memory body; CloudOverHttp repeats the key flows through the real server.
"""
import email.message
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import unittest
import urllib.parse
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import core  # noqa: E402
import qvf  # noqa: E402
from testlib import CloudReply, cloud_call  # noqa: E402
from cloud import (Cloud, FilterError, parse_scim, script_connections,  # noqa: E402
                   validate_rrule)

ADMIN, ALICE, BOB, BAD = "qsim-admin-key", "alice-key", "bob-key", "forbidden-key"

SEED = {
    "tenant": {"name": "acme", "hostnames": ["acme.eu.qlikcloud.com"]},
    "api_keys": [{"key": ADMIN, "user": "admin@acme.com"},
                 {"key": ALICE, "user": "alice@acme.com"},
                 {"key": BOB, "user": "bob@acme.com"},
                 {"key": BAD, "user": "admin@acme.com", "forbidden": True}],
    "users": [
        {"subject": "auth0|admin", "email": "admin@acme.com", "name": "Admin",
         "status": "active", "roles": ["TenantAdmin"]},
        {"subject": "auth0|alice", "email": "alice@acme.com", "name": "Alice Smith",
         "status": "active", "roles": ["Developer"], "groups": ["Sales"]},
        {"subject": "CORP\\bob", "email": "bob@corp.com", "name": "Bob \"The\" Builder",
         "status": "disabled"},
        {"subject": "auth0|bob", "email": "bob@acme.com", "name": "Bob Jones", "status": "active"},
    ],
    "groups": [{"name": "Sales", "providerType": "idp"}],
    "spaces": [{"name": "Existing Space", "type": "shared", "owner": "admin@acme.com"}],
    "identity_providers": [{"protocol": "OIDC", "provider": "auth0"}],
    "quotas": {"app_upload_disk_size": 10737418240},
}


def make_qvf(name="Sales", script="LOAD 1 AS x AUTOGENERATE 1;", objects=None, payload=4096,
             seed="s1", tables=None):
    meta = {"format": 1, "source": "qrs", "app_id": "qrs-" + name, "name": name,
            "description": "desc of " + name, "script": script,
            "objects": objects if objects is not None else [
                {"engineObjectId": "sheet-base", "objectType": "sheet", "name": "Base",
                 "state": "base", "owner": "CORP\\jdoe"},
                {"engineObjectId": "sheet-comm", "objectType": "sheet", "name": "Community",
                 "state": "community", "owner": "CORP\\ann"},
                {"engineObjectId": "sheet-priv", "objectType": "sheet", "name": "Private",
                 "state": "private", "owner": "CORP\\ann"},
                {"engineObjectId": "bm-1", "objectType": "bookmark", "name": "BM",
                 "state": "private", "owner": "CORP\\ann"}],
            "data_model": {"tables": tables if tables is not None else
                           [{"name": "Sales", "no_of_rows": 100, "fields": ["Region", "Amount"]}]},
            "has_data": payload > 0, "payload_size": payload, "payload_seed": seed}
    return b"".join(qvf.qvf_chunks(meta, payload, seed))


def make_zip(name, typ="visualization", with_qext=True):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w") as z:
        if with_qext:
            z.writestr(f"{name}/{name}.qext", json.dumps({"name": name, "type": typ,
                                                         "version": "1.2.3", "author": "me"}))
        z.writestr(f"{name}/{name}.js", "define([], function(){return {};});")
    return bio.getvalue()


def multipart(parts):
    boundary = "----qsimBoundary7d3f"
    out = bytearray()
    for name, filename, ctype, data in parts:
        out += f"--{boundary}\r\n".encode()
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"Content-Disposition: {disp}\r\n".encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


Reply = CloudReply  # DirectClient answers in the same shape as the HTTP tests


class DirectClient:
    """Calls Cloud.handle() with real core.Request objects."""

    def __init__(self, cloud):
        self.cloud = cloud

    def call(self, method, path, body=None, query=None, key=ADMIN, headers=None, ctype=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            ctype = ctype or "application/json"
        body = body or b""
        raw_path = path if path.startswith("/api") else "/api/v1" + path
        if query:
            raw_path += "?" + urllib.parse.urlencode(query)
        h = email.message.Message()
        h["Host"] = "acme.eu.qlikcloud.com"
        h["Content-Length"] = str(len(body))
        if ctype:
            h["Content-Type"] = ctype
        if key:
            h["Authorization"] = "Bearer " + key
        for k, v in (headers or {}).items():
            h[k] = v
        req = core.Request(method, raw_path, h, io.BytesIO(body), None, core._Throttle(0))
        try:
            resp = self.cloud.handle(req)
        except core.ApiError as err:
            resp = self.cloud.render_error(err)
        self.last_endpoint = req.endpoint
        if resp.file is not None:
            with open(resp.file, "rb") as f:
                raw = f.read()
        elif resp.chunks is not None:
            raw = b"".join(resp.chunks)
            assert len(raw) == resp.length, "chunks length mismatch"
        else:
            raw = resp.body
        return Reply(resp.status, resp.headers, raw)

    def follow(self, href, key=ADMIN):
        u = urllib.parse.urlsplit(href)
        return self.call("GET", u.path + ("?" + u.query if u.query else ""), key=key)


class CloudTestBase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qsim-cloud-test-")
        self.ctx = core.SimContext(self.tmp)
        self.cloud = Cloud(json.loads(json.dumps(SEED)), self.ctx)
        self.c = DirectClient(self.cloud)
        self.users = {u["email"]: u["id"] for u in self.cloud.users.values()}
        self.existing = next(iter(self.cloud.spaces))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def ok(self, reply, status=200):
        self.assertEqual(reply.status, status, reply)
        return reply.json

    def space(self, name, typ="shared", key=ADMIN):
        return self.ok(self.c.call("POST", "/spaces", {"name": name, "type": typ}, key=key), 201)["id"]

    def import_app(self, data=None, key=ADMIN, **query):
        return self.c.call("POST", "/apps/import", data if data is not None else make_qvf(),
                           query=query, key=key, ctype="application/octet-stream")

    def walk(self, path, query, key=ADMIN):
        r = self.c.call("GET", path, query=query, key=key)
        seen, pages = [], 0
        while True:
            body = self.ok(r)
            pages += 1
            seen += [d.get("id") or d.get("qID") for d in body["data"]]
            nxt = (body.get("links") or {}).get("next")
            if not nxt or not nxt.get("href"):
                return seen, pages, body
            self.assertTrue(nxt["href"].startswith("http"), nxt)
            r = self.c.follow(nxt["href"], key=key)


class AuthTests(CloudTestBase):
    def test_missing_and_unknown_key(self):
        for key in (None, "nope"):
            r = self.c.call("GET", "/spaces", key=key)
            self.assertEqual(r.status, 401)
            self.assertEqual(r.json["errors"][0]["code"], "HTTP-401")
            self.assertEqual(r.json["errors"][0]["status"], 401)
            self.assertIn("traceId", r.json)

    def test_forbidden_key(self):
        for method, path in (("GET", "/users/me"), ("POST", "/spaces"), ("GET", "/apps/x")):
            self.assertEqual(self.c.call(method, path, {"name": "x", "type": "shared"}, key=BAD).status, 403)

    def test_endpoint_and_tiers(self):
        self.c.call("POST", f"/spaces/{self.existing}/assignments", {})
        self.assertEqual(self.c.last_endpoint, "POST /api/v1/spaces/{spaceId}/assignments")
        self.assertEqual(self.cloud.tier("GET", "/api/v1/spaces"), "tier1")
        self.assertEqual(self.cloud.tier("POST", "/api/v1/spaces"), "tier2")
        self.assertEqual(self.cloud.tier("POST", "/api/v1/reloads"), "special")
        self.assertEqual(self.cloud.tier("GET", "/api/v1/reloads/abc"), "special")

    def test_unknown_path_and_method(self):
        self.assertEqual(self.c.call("GET", "/nothing").status, 404)
        self.assertEqual(self.c.call("PATCH", "/spaces").status, 405)


class PagingTests(CloudTestBase):
    def test_spaces_paging_visits_each_once(self):
        ids = [self.space(f"S{i:02d}") for i in range(25)]
        seen, pages, _ = self.walk("/spaces", {"limit": 7})
        self.assertEqual(sorted(seen), sorted(ids + [self.existing]))
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(pages, 4)
        # default limit for spaces is 10
        body = self.ok(self.c.call("GET", "/spaces"))
        self.assertEqual(len(body["data"]), 10)
        self.assertEqual(body["meta"]["count"], 26)
        self.assertIn("next=", body["links"]["next"]["href"])

    def test_limit_validation(self):
        for bad in ("0", "101", "abc", "-1"):
            self.assertEqual(self.c.call("GET", "/spaces", query={"limit": bad}).status, 400, bad)
            self.assertEqual(self.c.call("GET", "/items", query={"limit": bad}).status, 400, bad)
        self.assertEqual(self.c.call("GET", "/spaces", query={"limit": "100"}).status, 200)

    def test_prev_links_and_exact_last_page(self):
        for i in range(9):
            self.space(f"Q{i}")
        p1 = self.ok(self.c.call("GET", "/spaces", query={"limit": 5}))
        self.assertNotIn("prev", p1["links"])
        p2 = self.ok(self.c.follow(p1["links"]["next"]["href"]))
        self.assertEqual(len(p2["data"]), 5)
        self.assertNotIn("next", p2["links"], "10 spaces, limit 5: no third page")
        back = self.ok(self.c.follow(p2["links"]["prev"]["href"]))
        self.assertEqual([s["id"] for s in back["data"]], [s["id"] for s in p1["data"]])
        self.assertEqual(self.c.call("GET", "/spaces", query={"next": "garbage!"}).status, 400)

    def test_stable_under_insertion(self):
        for i in range(12):
            self.space(f"P{i}")
        r = self.ok(self.c.call("GET", "/spaces", query={"limit": 5}))
        first = [s["id"] for s in r["data"]]
        self.space("Late arrival")
        r2 = self.ok(self.c.follow(r["links"]["next"]["href"]))
        self.assertFalse(set(first) & {s["id"] for s in r2["data"]})

    def test_data_connections_use_page(self):
        ids = []
        for i in range(23):
            ids.append(self.ok(self.c.call("POST", "/data-connections", {
                "qName": f"C{i}", "qConnectStatement": "x", "qType": "QvOdbcConnectorPackage.exe",
                "datasourceID": "odbc", "space": self.existing}), 201)["qID"])
        r = self.ok(self.c.call("GET", "/data-connections",
                                query={"limit": 5, "spaceId": self.existing, "noDatafiles": "true"}))
        href = r["links"]["next"]["href"]
        self.assertIn("page=", href)
        self.assertNotIn("next=", href)
        seen, pages, _ = self.walk("/data-connections", {"limit": 5, "spaceId": self.existing,
                                                         "noDatafiles": "true"})
        self.assertEqual(seen, ids)
        self.assertEqual(pages, 5)

    def test_users_items_reload_tasks_paging(self):
        self.cloud.legacy_reload_tasks = True     # an old tenant: POST /reload-tasks still creates
        for i in range(30):
            self.ok(self.c.call("POST", "/users", {"subject": f"auth0|u{i}", "email": f"u{i}@x.com"}), 201)
        seen, _, _ = self.walk("/users", {"limit": 8})
        self.assertEqual(len(seen), 34)
        self.assertEqual(len(set(seen)), 34)
        app_ids = [self.ok(self.import_app(spaceId=self.existing))["attributes"]["id"] for _ in range(13)]
        seen, _, _ = self.walk("/items", {"limit": 4, "resourceType": "app"})
        self.assertEqual(len(set(seen)), 13)
        for a in app_ids:
            self.ok(self.c.call("POST", "/reload-tasks", {"appId": a, "timeZone": "UTC",
                                                          "startDateTime": "2025-01-01T06:00:00",
                                                          "recurrence": ["RRULE:FREQ=DAILY"]}), 201)
        seen, _, _ = self.walk("/reload-tasks", {"limit": 3})
        self.assertEqual(len(set(seen)), 13)


class ScimTests(CloudTestBase):
    CASES = [
        ('email eq "alice@acme.com"', ["alice@acme.com"]),
        ('EMAIL EQ "ALICE@ACME.COM"', ["alice@acme.com"]),
        ('email co "acme"', ["admin@acme.com", "alice@acme.com", "bob@acme.com"]),
        ('name sw "bob"', ["bob@corp.com", "bob@acme.com"]),
        ('subject eq "CORP\\\\bob"', ["bob@corp.com"]),
        ('name eq "Bob \\"The\\" Builder"', ["bob@corp.com"]),
        ('(status eq "active" or status eq "disabled")',
         ["admin@acme.com", "alice@acme.com", "bob@corp.com", "bob@acme.com"]),
        ('status eq "disabled"', ["bob@corp.com"]),
        ('email co "acme" and name sw "a"', ["admin@acme.com", "alice@acme.com"]),
        ('email eq "x@y" or email eq "bob@acme.com"', ["bob@acme.com"]),
        ('(email co "acme" or email co "corp") and (status eq "disabled")', ["bob@corp.com"]),
        ('email co "acme" and name sw "a" or subject eq "CORP\\\\bob"',
         ["admin@acme.com", "alice@acme.com", "bob@corp.com"]),
        ('assignedRoles.name eq "TenantAdmin"', ["admin@acme.com"]),
        ('assignedGroups.name eq "sales"', ["alice@acme.com"]),
        ('email eq "nobody@nowhere"', []),
    ]
    BAD = ['email eq alice@acme.com', 'email', 'email eq', 'email gt "a"', 'foo eq "a"',
           '(email eq "a"', 'email eq "a")', 'email eq "a" and', 'and email eq "a"',
           'email eq "a" xor name eq "b"', 'email eq "unterminated', 'email ~ "a"']

    def test_filter_table(self):
        for flt, want in self.CASES:
            body = self.ok(self.c.call("GET", "/users", query={"filter": flt}))
            self.assertEqual([u["email"] for u in body["data"]], want, flt)
            body = self.ok(self.c.call("POST", "/users/actions/filter", {"filter": flt}))
            self.assertEqual([u["email"] for u in body["data"]], want, flt)

    def test_malformed_filters(self):
        for flt in self.BAD:
            r = self.c.call("GET", "/users", query={"filter": flt})
            self.assertEqual(r.status, 400, flt)
            self.assertIn("errors", r.json)

    def test_parser_direct(self):
        pred = parse_scim('a eq "x" or (b co "y" and b sw "Z")', {"a": lambda r: r["a"], "b": lambda r: r["b"]})
        self.assertTrue(pred({"a": "X", "b": ""}))
        self.assertTrue(pred({"a": "", "b": "zzy"}))
        self.assertFalse(pred({"a": "", "b": "ay"}))
        with self.assertRaises(FilterError):
            parse_scim("", {"a": lambda r: r})

    def test_groups_filter_and_users_misc(self):
        body = self.ok(self.c.call("GET", "/groups", query={"filter": 'name eq "Sales"'}))
        self.assertEqual([g["name"] for g in body["data"]], ["Sales"])
        g = self.ok(self.c.call("POST", "/groups", {"name": "Custom1", "providerType": "custom"}), 201)
        self.assertEqual(g["providerType"], "custom")
        self.assertEqual(self.c.call("POST", "/groups", {"name": "custom1"}).status, 409)
        me = self.ok(self.c.call("GET", "/users/me", key=ALICE))
        self.assertEqual(me["email"], "alice@acme.com")
        self.assertEqual(self.ok(self.c.call("GET", "/users/actions/count"))["total"], 4)
        u = self.ok(self.c.call("POST", "/users", {"subject": "auth0|new", "email": "new@x.com",
                                                   "name": "New", "status": "invited"}), 201)
        self.assertEqual(u["status"], "invited")
        self.assertEqual(self.c.call("POST", "/users", {"subject": "AUTH0|NEW"}).status, 409)
        self.assertEqual(self.c.call("POST", "/users", {"subject": "other", "email": "NEW@x.com"}).status, 409)
        self.assertEqual(self.c.call("POST", "/users", {"email": "x@x.com"}).status, 400)
        self.assertEqual(self.c.call("PATCH", f"/users/{u['id']}",
                                     [{"op": "replace", "path": "/name", "value": "Renamed"}]).status, 204)
        self.assertEqual(self.ok(self.c.call("GET", f"/users/{u['id']}"))["name"], "Renamed")
        self.assertEqual(self.c.call("DELETE", f"/users/{u['id']}").status, 204)
        self.assertEqual(self.c.call("GET", f"/users/{u['id']}").status, 404)
        self.ok(self.c.call("GET", "/tenants/me"))
        self.assertEqual(self.ok(self.c.call("GET", "/identity-providers"))["data"][0]["provider"], "auth0")
        q = self.ok(self.c.call("GET", "/quotas/app_upload_disk_size"))
        self.assertEqual(q["data"][0]["attributes"]["quota"], 10737418240)
        self.assertEqual(self.ok(self.c.call("GET", "/spaces/types"))["data"], ["shared", "managed", "data"])


class SpaceTests(CloudTestBase):
    def test_duplicate_and_names(self):
        self.space("Finance")
        r = self.c.call("POST", "/spaces", {"name": "Finance", "type": "managed"})
        self.assertEqual(r.status, 409)
        # names are compared case-sensitively (documented choice)
        self.space("finance")
        for ch in '"*?<>/|\\:':
            r = self.c.call("POST", "/spaces", {"name": f"A{ch}B", "type": "shared"})
            self.assertEqual(r.status, 400, ch)
        for bad in ({"name": "", "type": "shared"}, {"name": "x" * 257, "type": "shared"},
                    {"name": "ok", "type": "personal"}, {"name": "ok"}, {"type": "shared"}):
            self.assertEqual(self.c.call("POST", "/spaces", bad).status, 400, bad)
        self.assertEqual(self.c.call("POST", "/spaces", {"name": "x" * 256, "type": "data"}).status, 201)

    def test_get_filters_put_patch_delete(self):
        m = self.space("Managed One", "managed")
        self.space("Data One", "data")
        body = self.ok(self.c.call("GET", "/spaces", query={"filter": 'name eq "managed one"'}))
        self.assertEqual([s["id"] for s in body["data"]], [m])
        body = self.ok(self.c.call("GET", "/spaces", query={"name": "one"}))
        self.assertEqual(len(body["data"]), 2)
        body = self.ok(self.c.call("GET", "/spaces", query={"type": "managed,data"}))
        self.assertEqual({s["type"] for s in body["data"]}, {"managed", "data"})
        s = self.ok(self.c.call("GET", f"/spaces/{m}"))
        self.assertEqual(s["ownerId"], self.users["admin@acme.com"])
        self.assertIn("publisher", s["meta"]["assignableRoles"])
        s = self.ok(self.c.call("PATCH", f"/spaces/{m}", [{"op": "replace", "path": "/ownerId",
                                                           "value": self.users["alice@acme.com"]}]))
        self.assertEqual(s["ownerId"], self.users["alice@acme.com"])
        self.assertEqual(self.c.call("PUT", f"/spaces/{m}", {"name": "Existing Space"}).status, 409)
        self.ok(self.c.call("PUT", f"/spaces/{m}", {"name": "Managed Two", "description": "d"}))
        self.assertEqual(self.c.call("GET", "/spaces/nope").status, 404)
        self.ok(self.import_app(spaceId=self.existing))
        self.assertEqual(self.c.call("DELETE", f"/spaces/{self.existing}").status, 412)
        self.assertEqual(self.c.call("DELETE", f"/spaces/{m}").status, 204)

    def test_delete_refused_with_connection(self):
        s = self.space("WithConn")
        self.ok(self.c.call("POST", "/data-connections", {"qName": "c", "qConnectStatement": "x",
                                                          "qType": "t", "datasourceID": "d", "space": s}), 201)
        self.assertEqual(self.c.call("DELETE", f"/spaces/{s}").status, 412)

    def test_role_validity_table(self):
        table = {
            "consumer": "SMD", "contributor": "M", "dataconsumer": "SMD", "facilitator": "SMD",
            "operator": "MD", "producer": "SD", "publisher": "MD", "basicconsumer": "M",
            "codeveloper": "S", "datapreview": "D",
        }
        spaces = {"S": self.space("RS", "shared"), "M": self.space("RM", "managed"),
                  "D": self.space("RD", "data")}
        for role, ok_in in table.items():
            for t, sid in spaces.items():
                r = self.c.call("POST", f"/spaces/{sid}/assignments",
                                {"type": "user", "assigneeId": self.users["alice@acme.com"], "roles": [role]})
                if t in ok_in:
                    self.assertEqual(r.status, 201, (role, t, r))
                    self.assertEqual(self.c.call("DELETE", f"/spaces/{sid}/assignments/{r.json['id']}").status, 204)
                else:
                    self.assertEqual(r.status, 400, (role, t))
        r = self.c.call("POST", f"/spaces/{spaces['S']}/assignments",
                        {"type": "user", "assigneeId": self.users["alice@acme.com"], "roles": ["Consumer"]})
        self.assertEqual(r.status, 400, "roles are case-sensitive")

    def test_assignment_rules(self):
        m = self.space("AM", "managed")
        alice = self.users["alice@acme.com"]
        a = self.ok(self.c.call("POST", f"/spaces/{m}/assignments",
                                {"type": "user", "assigneeId": alice, "roles": ["consumer"]}), 201)
        self.assertEqual(a["spaceId"], m)
        r = self.c.call("POST", f"/spaces/{m}/assignments",
                        {"type": "user", "assigneeId": alice, "roles": ["publisher"]})
        self.assertEqual(r.status, 409)
        self.assertEqual(self.c.call("POST", f"/spaces/{m}/assignments",
                                     {"type": "user", "assigneeId": "nobody", "roles": ["consumer"]}).status, 404)
        self.assertEqual(self.c.call("POST", f"/spaces/{m}/assignments",
                                     {"type": "user", "assigneeId": alice, "roles": []}).status, 400)
        g = next(iter(self.cloud.groups))
        self.ok(self.c.call("POST", f"/spaces/{m}/assignments",
                            {"type": "group", "assigneeId": g, "roles": ["consumer", "contributor"]}), 201)
        a2 = self.ok(self.c.call("PUT", f"/spaces/{m}/assignments/{a['id']}", {"roles": ["consumer", "publisher"]}))
        self.assertEqual(a2["roles"], ["consumer", "publisher"])
        self.assertEqual(self.c.call("PUT", f"/spaces/{m}/assignments/{a['id']}", {"roles": ["producer"]}).status, 400)
        body = self.ok(self.c.call("GET", f"/spaces/{m}/assignments"))
        self.assertEqual(body["meta"]["count"], 2)
        body = self.ok(self.c.call("GET", f"/spaces/{m}/assignments", query={"type": "group"}))
        self.assertEqual(len(body["data"]), 1)
        self.assertEqual(self.c.call("POST", "/spaces/nope/assignments",
                                     {"type": "user", "assigneeId": alice, "roles": ["consumer"]}).status, 404)

    def test_shares(self):
        app = self.ok(self.import_app(spaceId=self.existing))["attributes"]["id"]
        alice = self.users["alice@acme.com"]
        sh = self.ok(self.c.call("POST", f"/spaces/{self.existing}/shares",
                                 {"assigneeId": alice, "resourceId": app, "resourceType": "app",
                                  "roles": ["consumer"], "type": "user"}), 201)
        self.assertEqual(sh["resourceName"], "Sales")
        self.assertEqual(self.c.call("POST", f"/spaces/{self.existing}/shares",
                                     {"assigneeId": alice, "resourceId": app, "resourceType": "app",
                                      "roles": ["consumer"], "type": "user"}).status, 409)
        self.assertEqual(self.c.call("POST", f"/spaces/{self.existing}/shares",
                                     {"assigneeId": alice, "resourceId": app, "resourceType": "app",
                                      "roles": ["producer"], "type": "user"}).status, 400)
        self.assertEqual(len(self.ok(self.c.call("GET", f"/spaces/{self.existing}/shares"))["data"]), 1)
        self.assertEqual(self.c.call("DELETE", f"/spaces/{self.existing}/shares/{sh['id']}").status, 204)


class AppTests(CloudTestBase):
    def test_import_rules(self):
        m = self.space("Gov", "managed")
        d = self.space("DataSp", "data")
        self.assertEqual(self.import_app(spaceId=m).status, 403)
        self.assertEqual(self.import_app(spaceId=d).status, 403)
        self.assertEqual(self.import_app(spaceId="nope").status, 404)
        self.assertEqual(self.import_app(b"PK\x03\x04 not a qvf", spaceId=self.existing).status, 400)
        self.assertEqual(self.import_app(b"", spaceId=self.existing).status, 400)
        self.assertFalse(self.cloud.apps)

    def test_create_empty_app(self):
        body = {"attributes": {"name": "From QlikView", "description": "d", "spaceId": self.existing}}
        app = self.ok(self.c.call("POST", "/apps", body))
        at = app["attributes"]
        self.assertEqual((at["name"], at["description"], at["spaceId"], at["usage"]),
                         ("From QlikView", "d", self.existing, "ANALYTICS"))
        self.assertEqual(self.c.last_endpoint, "POST /api/v1/apps")
        self.assertEqual(self.cloud.tier("POST", "/api/v1/apps"), "tier2")
        st = next(a for a in self.cloud.state()["apps"] if a["id"] == at["id"])
        self.assertEqual(st["script"], "")
        self.assertFalse(self.cloud.apps[at["id"]]["has_data"])
        personal = self.ok(self.c.call("POST", "/apps", {"attributes": {"name": "Mine"}}, key=ALICE))["attributes"]
        self.assertNotIn("spaceId", personal)
        self.assertEqual(personal["ownerId"], self.users["alice@acme.com"])
        m = self.space("Gov", "managed")
        self.assertEqual(self.c.call("POST", "/apps", {"attributes": {"name": "x", "spaceId": m}}).status, 403)
        self.assertEqual(self.c.call("POST", "/apps", {"attributes": {"name": "x", "spaceId": "nope"}}).status, 404)
        self.assertEqual(self.c.call("POST", "/apps", {"attributes": {"name": "x", "usage": "NOPE"}}).status, 400)

    def test_personal_import_and_attributes(self):
        app = self.ok(self.import_app(key=ALICE, name="Renamed"))
        at = app["attributes"]
        self.assertNotIn("spaceId", at)
        self.assertEqual(at["name"], "Renamed")
        self.assertEqual(at["ownerId"], self.users["alice@acme.com"])
        self.assertEqual(at["_resourcetype"], "app")
        self.assertEqual(at["usage"], "ANALYTICS")
        self.assertEqual(at["originAppId"], "")
        self.assertIn("privileges", app)
        items = self.ok(self.c.call("GET", "/items", query={"spaceId": "personal", "resourceType": "app"}))
        self.assertEqual([i["resourceId"] for i in items["data"]], [at["id"]])
        self.assertEqual(items["data"][0]["spaceId"], "")
        self.assertEqual(len(items["data"][0]["id"]), 24)
        self.assertNotEqual(items["data"][0]["id"], at["id"])
        self.assertFalse(self.ok(self.c.call("GET", "/items", query={"spaceId": self.existing}))["data"])
        st = self.cloud.state()
        objs = st["apps"][0]["objects"]
        self.assertEqual({o["id"] for o in objs}, {"sheet-base", "sheet-comm", "sheet-priv", "bm-1"})
        self.assertTrue(all(o["ownerId"] == self.users["alice@acme.com"] for o in objs))
        self.assertEqual(st["apps"][0]["script"], "LOAD 1 AS x AUTOGENERATE 1;")
        json.dumps(st)

    def test_export_round_trip(self):
        data = make_qvf(payload=300000, seed="rt")
        app = self.ok(self.import_app(data, spaceId=self.existing))["attributes"]["id"]
        self.assertEqual(self.cloud.apps[app]["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(self.c.call("POST", f"/apps/{app}/scripts",
                                     {"script": "LOAD 2 AS y AUTOGENERATE 1;", "versionMessage": "v2"}).status, 200)
        r = self.c.call("POST", f"/apps/{app}/export", query={"NoData": "false"})
        self.assertEqual(r.status, 201)
        self.assertEqual(r.raw, b"")
        loc = r.headers["Location"]
        self.assertTrue(loc.startswith("/api/v1/temp-contents/"))
        got = self.c.call("GET", loc)
        self.assertEqual(got.status, 200)
        meta, hlen = qvf.read_header(io.BytesIO(got.raw))
        self.assertEqual(meta["script"], "LOAD 2 AS y AUTOGENERATE 1;")
        self.assertEqual({o["engineObjectId"]: o["state"] for o in meta["objects"]},
                         {"sheet-base": "base", "sheet-comm": "community", "sheet-priv": "private", "bm-1": "private"})
        self.assertEqual(got.raw[hlen:], data[len(data) - 300000:])
        # and it imports again
        again = self.ok(self.import_app(got.raw, spaceId=self.existing))
        self.assertNotEqual(again["attributes"]["id"], app)
        nodata = self.c.call("GET", self.c.call("POST", f"/apps/{app}/export", query={"NoData": "true"}).headers["Location"])
        m2, h2 = qvf.read_header(io.BytesIO(nodata.raw))
        self.assertEqual(len(nodata.raw), h2)
        self.assertFalse(m2["has_data"])

    def test_import_from_temp_content(self):
        data = make_qvf(name="ViaTemp")
        r = self.c.call("POST", "/temp-contents", data, query={"filename": "ViaTemp.qvf", "ttl": "600"},
                        ctype="application/octet-stream")
        self.assertEqual(r.status, 201)
        tid = r.headers["Location"].rsplit("/", 1)[1]
        det = self.ok(self.c.call("GET", f"/temp-contents/{tid}/details"))
        self.assertEqual(det["Size"], len(data))
        self.assertEqual(det["Name"], "ViaTemp.qvf")
        self.assertEqual(self.c.call("GET", f"/temp-contents/{tid}").raw, data)
        app = self.ok(self.c.call("POST", "/apps/import", b"{}", ctype="application/json",
                                  query={"fileId": tid, "spaceId": self.existing}))
        self.assertEqual(app["attributes"]["name"], "ViaTemp")
        self.assertEqual(self.c.call("POST", "/apps/import", b"{}", ctype="application/json",
                                     query={"fileId": "nope"}).status, 404)
        self.assertEqual(self.c.call("POST", "/temp-contents", b"x", query={"ttl": "0"}).status, 400)
        self.assertEqual(self.c.call("POST", "/temp-contents", b"x", query={"ttl": "259201"}).status, 400)
        self.assertEqual(self.c.call("GET", "/temp-contents/nope").status, 404)

    def test_tus_upload(self):
        data = make_qvf(name="Tus", payload=10000)
        r = self.c.call("POST", "/temp-contents/files", b"", headers={"Upload-Length": str(len(data)), "Tus-Resumable": "1.0.0"})
        self.assertEqual(r.status, 201)
        loc = r.headers["Location"]
        tid = loc.rsplit("/", 1)[1]
        r = self.c.call("PATCH", loc, data[:5000], headers={"Upload-Offset": "0"},
                        ctype="application/offset+octet-stream")
        self.assertEqual(r.status, 204)
        self.assertEqual(self.c.call("PATCH", loc, data[5000:], headers={"Upload-Offset": "4000"}).status, 409)
        self.assertEqual(self.c.call("HEAD", loc).headers["Upload-Offset"], "5000")
        self.assertEqual(self.c.call("PATCH", loc, data[5000:], headers={"Upload-Offset": "5000"}).status, 204)
        app = self.ok(self.c.call("POST", "/apps/import", b"{}", ctype="application/json", query={"fileId": tid}))
        self.assertEqual(app["attributes"]["name"], "Tus")

    def test_change_owner_only_by_current_owner(self):
        app = self.ok(self.import_app(spaceId=self.existing))["attributes"]["id"]
        alice, bob = self.users["alice@acme.com"], self.users["bob@acme.com"]
        url = f"/apps/{app}/objects/sheet-comm/actions/change-owner"
        self.assertEqual(self.c.call("POST", url, {"ownerId": bob}, key=ALICE).status, 403)
        r = self.ok(self.c.call("POST", url, {"ownerId": alice}))
        self.assertEqual(r["attributes"]["ownerId"], alice)
        self.assertEqual(r["attributes"]["objectType"], "sheet")
        self.assertFalse(r["attributes"]["approved"])
        self.assertEqual(self.c.call("POST", url, {"ownerId": bob}).status, 403, "admin is no longer owner")
        self.ok(self.c.call("POST", url, {"ownerId": bob}, key=ALICE))
        self.assertEqual(self.c.call("POST", f"/apps/{app}/objects/nope/actions/change-owner", {"ownerId": bob}).status, 404)
        self.assertEqual(self.c.call("POST", f"/apps/{app}/objects/sheet-priv/actions/change-owner", {"ownerId": "ghost"}).status, 400)
        objs = {o["id"]: o["ownerId"] for o in self.cloud.state()["apps"][0]["objects"]}
        self.assertEqual(objs["sheet-comm"], bob)
        self.assertEqual(objs["sheet-base"], self.users["admin@acme.com"])

    def test_app_owner_space_update_delete(self):
        app = self.ok(self.import_app())["attributes"]["id"]
        self.assertEqual(self.c.call("PUT", f"/apps/{app}/owner", {"ownerId": "ghost"}).status, 404)
        at = self.ok(self.c.call("PUT", f"/apps/{app}/owner", {"ownerId": self.users["bob@acme.com"]}))["attributes"]
        self.assertEqual(at["ownerId"], self.users["bob@acme.com"])
        at = self.ok(self.c.call("PUT", f"/apps/{app}/space", {"spaceId": self.existing}))["attributes"]
        self.assertEqual(at["spaceId"], self.existing)
        m = self.space("MM", "managed")
        self.assertEqual(self.c.call("PUT", f"/apps/{app}/space", {"spaceId": m}).status, 403)
        at = self.ok(self.c.call("PUT", f"/apps/{app}", {"attributes": {"name": "N2", "description": "D2"}}))["attributes"]
        self.assertEqual((at["name"], at["description"]), ("N2", "D2"))
        md = self.ok(self.c.call("GET", f"/apps/{app}/data/metadata"))
        self.assertEqual(md["tables"][0]["name"], "Sales")
        self.assertEqual(md["tables"][0]["no_of_rows"], 100)
        self.assertIn("has_section_access", md)
        self.assertEqual(self.c.call("DELETE", f"/apps/{app}").status, 200)
        self.assertEqual(self.c.call("GET", f"/apps/{app}").status, 404)

    def test_scripts(self):
        app = self.ok(self.import_app())["attributes"]["id"]
        self.ok(self.c.call("POST", f"/apps/{app}/scripts", {"script": "A", "versionMessage": "m1"}))
        lst = self.ok(self.c.call("GET", f"/apps/{app}/scripts"))["scripts"]
        self.assertEqual(len(lst), 2)
        self.assertEqual(lst[0]["versionMessage"], "m1")
        self.assertEqual(set(lst[0]), {"scriptId", "versionMessage", "modifiedTime", "modifierId", "size"})
        self.assertEqual(self.ok(self.c.call("GET", f"/apps/{app}/scripts/current"))["script"], "A")
        old = self.ok(self.c.call("GET", f"/apps/{app}/scripts/{lst[1]['scriptId']}"))
        self.assertEqual(old["script"], "LOAD 1 AS x AUTOGENERATE 1;")
        self.assertEqual(self.c.call("GET", f"/apps/{app}/scripts/nope").status, 404)

    def test_publish_and_republish(self):
        src = self.ok(self.import_app(spaceId=self.existing))["attributes"]["id"]
        m = self.space("Prod", "managed")
        self.assertEqual(self.c.call("POST", f"/apps/{src}/publish", {"spaceId": self.existing}).status, 400)
        self.assertEqual(self.c.call("POST", f"/apps/{src}/publish", {"spaceId": "nope"}).status, 404)
        pub = self.ok(self.c.call("POST", f"/apps/{src}/publish", {"spaceId": m, "data": "source"}))["attributes"]
        self.assertNotEqual(pub["id"], src)
        self.assertEqual(pub["originAppId"], src)
        self.assertTrue(pub["published"])
        self.assertTrue(pub["publishTime"])
        self.assertEqual(pub["spaceId"], m)
        st = {a["id"]: a for a in self.cloud.state()["apps"]}
        self.assertEqual([o["id"] for o in st[pub["id"]]["objects"]], ["sheet-base"])
        self.assertEqual(len(st[src]["objects"]), 4, "source untouched")
        items = self.ok(self.c.call("GET", "/items", query={"resourceType": "app", "resourceId": pub["id"]}))["data"]
        self.assertEqual(items[0]["spaceId"], m)
        # republish keeps the id, updates the script
        self.ok(self.c.call("POST", f"/apps/{src}/scripts", {"script": "NEW SCRIPT"}))
        rep = self.ok(self.c.call("PUT", f"/apps/{src}/publish", {"targetId": pub["id"], "data": "source"}))["attributes"]
        self.assertEqual(rep["id"], pub["id"])
        self.assertEqual(self.cloud.state()["apps"][1]["script"], "NEW SCRIPT")
        other = self.ok(self.import_app(spaceId=self.existing))["attributes"]["id"]
        self.assertEqual(self.c.call("PUT", f"/apps/{other}/publish", {"targetId": pub["id"]}).status, 400)
        self.assertEqual(self.c.call("PUT", f"/apps/{src}/publish", {"targetId": src}).status, 400)
        self.assertEqual(self.c.call("PUT", f"/apps/{src}/publish", {"targetId": "nope"}).status, 404)
        # moveApp moves the original, keeping every object and owner
        mv = self.ok(self.c.call("POST", f"/apps/{other}/publish", {"spaceId": m, "moveApp": True}))["attributes"]
        self.assertEqual(mv["id"], other)
        self.assertEqual(mv["spaceId"], m)
        self.assertEqual(len(self.cloud.apps[other]["objects"]), 4)

    def test_items_and_collections(self):
        app = self.ok(self.import_app(spaceId=self.existing))["attributes"]["id"]
        item = self.ok(self.c.call("GET", "/items", query={"resourceType": "app", "resourceId": app}))["data"][0]
        self.assertEqual(item["resourceType"], "app")
        self.assertEqual(item["resourceAttributes"]["id"], app)
        self.assertEqual(self.ok(self.c.call("GET", f"/items/{item['id']}"))["resourceId"], app)
        self.assertEqual(self.c.call("GET", "/items", query={"resourceId": app}).status, 400)
        self.assertEqual(len(self.ok(self.c.call("GET", "/items", query={"name": "SAL"}))["data"]), 1)
        self.assertEqual(len(self.ok(self.c.call("GET", "/items", query={"name": "zzz"}))["data"]), 0)
        c = self.ok(self.c.call("POST", "/collections", {"name": "Finance", "type": "public"}), 201)
        self.assertEqual(self.c.call("POST", "/collections", {"name": "Finance", "type": "public"}).status, 409)
        self.ok(self.c.call("POST", f"/collections/{c['id']}/items", {"id": item["id"]}), 201)
        self.assertEqual(self.c.call("POST", f"/collections/{c['id']}/items", {"id": item["id"]}).status, 409)
        self.assertEqual(self.c.call("POST", f"/collections/{c['id']}/items", {"id": "nope"}).status, 404)
        got = self.ok(self.c.call("GET", f"/collections/{c['id']}/items"))["data"]
        self.assertEqual([i["id"] for i in got], [item["id"]])
        it = self.ok(self.c.call("GET", f"/items/{item['id']}"))
        self.assertEqual(it["meta"]["tags"], [{"id": c["id"], "name": "Finance"}])
        self.assertEqual(len(self.ok(self.c.call("GET", "/items", query={"collectionId": c["id"]}))["data"]), 1)
        lst = self.ok(self.c.call("GET", "/collections", query={"type": "public", "name": "Finance"}))["data"]
        self.assertEqual(lst[0]["itemCount"], 1)
        self.assertEqual(self.c.call("DELETE", f"/collections/{c['id']}/items/{item['id']}").status, 204)
        it = self.ok(self.c.call("PUT", f"/items/{item['id']}", {"resourceType": "app",
                                                                  "resourceCustomAttributes": {"Dept": ["IT"]}}))
        self.assertEqual(it["resourceCustomAttributes"], {"Dept": ["IT"]})


class ReloadTests(CloudTestBase):
    def reload(self, script, space=None, key=ADMIN):
        q = {"spaceId": space} if space else {}
        app = self.ok(self.import_app(make_qvf(script=script), key=key, **q))["attributes"]["id"]
        r = self.ok(self.c.call("POST", "/reloads", {"appId": app, "partial": False}, key=key), 201)
        self.assertEqual(r["status"], "QUEUED")
        statuses = []
        for _ in range(5):
            r = self.ok(self.c.call("GET", f"/reloads/{r['id']}", key=key))
            statuses.append(r["status"])
            if r["status"] in ("SUCCEEDED", "FAILED"):
                break
        self.assertEqual(statuses[0], "RELOADING")
        return r, app

    def test_an_app_with_only_a_script_loads_its_tables(self):
        script = "Targets:\nLOAD * INLINE [\nRegion, Target\nEMEA, 5\nAmericas, 8\n];\n"
        q = {"spaceId": self.existing}
        app = self.ok(self.import_app(make_qvf(script=script, tables=[]), key=ADMIN, **q))["attributes"]["id"]
        r = self.ok(self.c.call("POST", "/reloads", {"appId": app, "partial": False}, key=ADMIN), 201)
        for _ in range(5):
            r = self.ok(self.c.call("GET", f"/reloads/{r['id']}", key=ADMIN))
        self.assertEqual(r["status"], "SUCCEEDED")
        self.assertEqual(self.cloud.apps[app]["data_model"]["tables"],
                         [{"name": "Targets", "no_of_rows": 2, "fields": ["Region", "Target"]}])
        self.assertTrue(self.cloud.apps[app]["has_data"])
        _, kept = self.reload("LOAD 1 AS x AUTOGENERATE 1;")      # an app with data keeps its tables
        self.assertEqual(self.cloud.apps[kept]["data_model"]["tables"][0]["name"], "Sales")

    def test_rules(self):
        self.ok(self.c.call("POST", "/data-connections", {
            "qName": "SalesDB", "qConnectStatement": "x", "qType": "QvOdbcConnectorPackage.exe",
            "datasourceID": "odbc", "space": self.existing}), 201)
        data_space = self.space("Shared Data", "data")
        self.ok(self.c.call("POST", "/data-connections", {
            "qName": "Warehouse", "qConnectStatement": "x", "qType": "rest",
            "datasourceID": "rest", "space": data_space}), 201)
        cases = [
            ("LIB CONNECT TO 'SalesDB'; LOAD * FROM t;", self.existing, "SUCCEEDED"),
            ("LIB CONNECT TO 'Existing Space:SalesDB';", None, "SUCCEEDED"),
            ("LIB CONNECT TO 'Shared Data:Warehouse';", self.existing, "SUCCEEDED"),
            ("LIB CONNECT TO [SalesDB];", self.existing, "SUCCEEDED"),
            ("LOAD * FROM [lib://DataFiles/a.qvd] (qvd);", None, "SUCCEEDED"),
            ("LOAD * FROM [lib://Existing Space:DataFiles/a.qvd] (qvd);", None, "SUCCEEDED"),
            ("LOAD * FROM [lib://SalesDB/x.csv];", self.existing, "SUCCEEDED"),
            ("// ODBC CONNECT TO 'x';\n/* OLEDB CONNECT TO x; */\nLOAD 1 AS a AUTOGENERATE 1;", None, "SUCCEEDED"),
            ("ODBC CONNECT TO 'SalesDSN';", self.existing, "FAILED"),
            ("OLEDB CONNECT TO [Provider=SQLOLEDB];", self.existing, "FAILED"),
            ("CUSTOM CONNECT TO \"Provider=QvRestConnector.exe\";", self.existing, "FAILED"),
            ("LIB CONNECT TO 'SalesDB';", None, "FAILED"),
            ("LIB CONNECT TO 'Missing';", self.existing, "FAILED"),
            ("LIB CONNECT TO 'No Such Space:SalesDB';", self.existing, "FAILED"),
            ("LOAD * FROM [lib://Folder/x.qvd] (qvd);", self.existing, "FAILED"),
            ("LOAD * FROM [lib://Other:DataFiles/x.qvd] (qvd);", self.existing, "FAILED"),
        ]
        for script, space, want in cases:
            r, app = self.reload(script, space)
            self.assertEqual(r["status"], want, script)
            if want == "FAILED":
                self.assertTrue(r["errorMessage"], script)
                self.assertEqual(self.cloud.apps[app]["lastReloadTime"], "")
            else:
                self.assertEqual(self.cloud.apps[app]["lastReloadTime"], r["endTime"])
                self.assertTrue(self.ok(self.c.call("GET", f"/apps/{app}"))["attributes"]["lastReloadTime"])

    def test_script_rewrite_fixes_reload(self):
        app = self.ok(self.import_app(make_qvf(script="ODBC CONNECT TO 'DSN';"), spaceId=self.existing))["attributes"]["id"]
        self.ok(self.c.call("POST", f"/apps/{app}/scripts", {"script": "LIB CONNECT TO 'Existing Space:DataFiles';"}))
        r = self.ok(self.c.call("POST", "/reloads", {"appId": app}), 201)
        for _ in range(3):
            r = self.ok(self.c.call("GET", f"/reloads/{r['id']}"))
        self.assertEqual(r["status"], "SUCCEEDED")
        lst = self.ok(self.c.call("GET", "/reloads", query={"appId": app}))
        self.assertEqual([x["id"] for x in lst["data"]], [r["id"]])
        self.assertEqual(self.c.call("POST", "/reloads", {"appId": "nope"}).status, 404)
        self.assertEqual(self.c.call("GET", "/reloads", key=ALICE).status, 400)

    def test_script_connections_helper(self):
        bad, refs = script_connections("LIB CONNECT TO \"A:B\";\nLOAD * FROM [lib://C/d.qvd];\nodbc connect to x;")
        self.assertEqual(bad, ["ODBC CONNECT"])
        self.assertEqual(refs, ["A:B", "C"])


RRULE_VALID = [
    "RRULE:FREQ=DAILY",
    "FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=0;BYSECOND=0",
    "RRULE:FREQ=DAILY;COUNT=1",
    "RRULE:FREQ=HOURLY;INTERVAL=2;BYMINUTE=15",
    "RRULE:FREQ=MINUTELY;INTERVAL=90",
    "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;BYHOUR=6;BYMINUTE=30",
    "RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15;BYHOUR=23;BYMINUTE=59",
    "RRULE:FREQ=MONTHLY;BYMONTHDAY=-1",
    "RRULE:FREQ=MONTHLY;BYDAY=2FR",
    "RRULE:FREQ=MONTHLY;BYDAY=-1FR",
    "RRULE:FREQ=MONTHLY;BYDAY=+1MO",
    "RRULE:FREQ=YEARLY;BYMONTH=1,7;BYMONTHDAY=1",
    "RRULE:FREQ=MONTHLY;INTERVAL=3;BYMONTH=1,4,7,10;BYDAY=1MO",
    "RRULE:FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
    "RRULE:FREQ=YEARLY;BYYEARDAY=1,100,-1",
    "RRULE:FREQ=DAILY;UNTIL=20251231",
    "RRULE:FREQ=DAILY;UNTIL=20251231T235959Z",
    "RRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
    "RRULE:FREQ=WEEKLY;WKST=SU;BYDAY=SU",
    "rrule:freq=daily;byhour=8",
    "RRULE:FREQ=DAILY;BYSECOND=60",
    "RRULE:FREQ=HOURLY;BYHOUR=0,23",
]
RRULE_INVALID = [
    "", "RRULE:", "INTERVAL=1", "RRULE:FREQ=SECONDLY", "RRULE:FREQ=FORTNIGHTLY",
    "RRULE:FREQ=DAILY;INTERVAL=0", "RRULE:FREQ=DAILY;INTERVAL=-1", "RRULE:FREQ=DAILY;INTERVAL=x",
    "RRULE:FREQ=DAILY;COUNT=0", "RRULE:FREQ=DAILY;COUNT=2;UNTIL=20250101",
    "RRULE:FREQ=DAILY;UNTIL=20251301", "RRULE:FREQ=DAILY;UNTIL=2025-12-31",
    "RRULE:FREQ=DAILY;BYHOUR=24", "RRULE:FREQ=DAILY;BYMINUTE=60", "RRULE:FREQ=DAILY;BYSECOND=61",
    "RRULE:FREQ=DAILY;BYHOUR=-1", "RRULE:FREQ=WEEKLY;BYDAY=XX", "RRULE:FREQ=WEEKLY;BYDAY=1MO",
    "RRULE:FREQ=DAILY;BYDAY=2FR", "RRULE:FREQ=MONTHLY;BYDAY=0MO", "RRULE:FREQ=MONTHLY;BYDAY=54MO",
    "RRULE:FREQ=MONTHLY;BYMONTHDAY=0", "RRULE:FREQ=MONTHLY;BYMONTHDAY=32",
    "RRULE:FREQ=WEEKLY;BYMONTHDAY=1", "RRULE:FREQ=MONTHLY;BYYEARDAY=1",
    "RRULE:FREQ=YEARLY;BYYEARDAY=367", "RRULE:FREQ=MONTHLY;BYWEEKNO=1",
    "RRULE:FREQ=YEARLY;BYWEEKNO=54", "RRULE:FREQ=YEARLY;BYMONTH=13", "RRULE:FREQ=YEARLY;BYMONTH=0",
    "RRULE:FREQ=DAILY;BYSETPOS=1", "RRULE:FREQ=WEEKLY;WKST=XX",
    "DTSTART:20250101T060000Z", "RRULE:FREQ=DAILY;DTSTART=20250101T060000",
    "DTSTART:20250101T060000\nRRULE:FREQ=DAILY", "EXRULE:FREQ=DAILY",
    "RRULE:FREQ=DAILY;FREQ=WEEKLY", "RRULE:FREQ=DAILY;", "RRULE:FREQ=DAILY;;BYHOUR=1",
    "RRULE:FREQ=DAILY;BYHOUR=", "RRULE:FREQ=DAILY;X-NAME=1", "RRULE:FREQ=DAILY;BYHOUR=1,,2",
    "RRULE:FREQ=YEARLY;BYWEEKNO=1;BYDAY=1MO", "RRULE:FREQ=DAILY;BYMINUTE=+5",
]


class ReloadTaskTests(CloudTestBase):
    def test_rrule_table(self):
        self.assertGreaterEqual(len(RRULE_VALID) + len(RRULE_INVALID), 25)
        for r in RRULE_VALID:
            self.assertIsNone(validate_rrule(r), r)
        for r in RRULE_INVALID:
            self.assertIsNotNone(validate_rrule(r), r)

    def test_endpoint_validation(self):
        self.cloud.legacy_reload_tasks = True     # an old tenant: POST /reload-tasks still creates
        app = self.ok(self.import_app(spaceId=self.existing))["attributes"]["id"]
        good = {"appId": app, "timeZone": "Europe/Paris", "startDateTime": "2024-01-11T06:00:00",
                "recurrence": ["RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=0;BYSECOND=0"]}
        t = self.ok(self.c.call("POST", "/reload-tasks", good), 201)
        self.assertEqual(t["state"], "Enabled")
        self.assertEqual(t["spaceId"], self.existing)
        self.assertEqual(t["nextExecutionTime"], "2024-01-11T05:00:00.000Z")
        bads = [
            dict(good, appId="nope"), dict(good, appId=None), dict(good, timeZone="Mars/Olympus"),
            dict(good, timeZone="CEST"), dict(good, startDateTime="2024-01-11T06:00:00Z"),
            dict(good, startDateTime="2024-01-11 06:00:00"), dict(good, startDateTime="1969-12-31T23:00:00"),
            dict(good, startDateTime="2024-02-30T06:00:00"), dict(good, endDateTime="2024-01-01T00:00:00"),
            dict(good, recurrence=["RRULE:FREQ=DAILY;BYHOUR=25"]), dict(good, recurrence="RRULE:FREQ=DAILY"),
            dict(good, recurrence=["DTSTART:20240111T060000", "RRULE:FREQ=DAILY"]),
            {"appId": app, "startDateTime": "2024-01-11T06:00:00", "recurrence": ["RRULE:FREQ=DAILY"]},
        ]
        for b in bads:
            r = self.c.call("POST", "/reload-tasks", b)
            self.assertIn(r.status, (400, 404), b)
            self.assertTrue(r.json["errors"][0]["code"].startswith("TASKS-"), r.json)
        self.assertEqual(self.c.call("POST", "/reload-tasks", dict(good, appId="nope")).status, 404)
        ok2 = {"appId": app, "startDateTime": "2024-01-11T06:00:00+01:00", "recurrence": ["FREQ=HOURLY"]}
        self.ok(self.c.call("POST", "/reload-tasks", ok2), 201)
        t2 = self.ok(self.c.call("PUT", f"/reload-tasks/{t['id']}", dict(good, state="Disabled")))
        self.assertEqual((t2["state"], t2["disabledCode"]), ("Disabled", "MANUALLY"))
        self.assertEqual(self.c.call("PUT", f"/reload-tasks/{t['id']}", dict(good, state="Paused")).status, 400)
        lst = self.ok(self.c.call("GET", "/reload-tasks", query={"appId": app}))["data"]
        self.assertEqual(len(lst), 2)
        self.assertEqual(self.c.call("DELETE", f"/reload-tasks/{t['id']}").status, 204)
        self.assertEqual(self.c.call("GET", f"/reload-tasks/{t['id']}").status, 404)


class DataConnectionTests(CloudTestBase):
    def body(self, name, space=None, **kw):
        b = {"qName": name, "qConnectStatement": "ODBC CONNECT TO [SalesDSN]", "qType": "QvOdbcConnectorPackage.exe",
             "datasourceID": "odbc", "qUsername": "svc", "qPassword": "S3cr3t-Pa55!"}
        if space:
            b["space"] = space
        b.update(kw)
        return b

    def test_conflicts_and_passwords(self):
        s2 = self.space("Second")
        r = self.ok(self.c.call("POST", "/data-connections", self.body("SalesDB", self.existing)), 201)
        self.assertNotIn("qPassword", r)
        self.assertEqual(self.c.call("POST", "/data-connections", self.body("SalesDB", self.existing)).status, 409)
        self.ok(self.c.call("POST", "/data-connections", self.body("SalesDB", s2)), 201)
        self.ok(self.c.call("POST", "/data-connections", self.body("SalesDB")), 201)  # personal
        self.assertEqual(self.c.call("POST", "/data-connections", self.body("SalesDB")).status, 409)
        self.ok(self.c.call("POST", "/data-connections", self.body("SalesDB"), key=ALICE), 201)
        self.assertEqual(self.c.call("POST", "/data-connections", self.body("X", "nope")).status, 404)
        self.assertEqual(self.c.call("POST", "/data-connections", self.body("X", datasourceID=None)).status, 400)
        self.assertEqual(self.c.call("POST", "/data-connections", self.body("DataFiles", s2)).status, 409)
        g = self.ok(self.c.call("GET", f"/data-connections/{r['qID']}"))
        self.assertEqual(g["qName"], "SalesDB")
        self.assertEqual(g["space"], self.existing)
        self.assertIn(g["qLogOn"], (0, 1))
        byname = self.ok(self.c.call("GET", "/data-connections/SalesDB",
                                     query={"type": "connectionname", "spaceId": s2}))
        self.assertNotEqual(byname["qID"], r["qID"])
        lst = self.ok(self.c.call("GET", "/data-connections", query={"filter": 'qName eq "salesdb"'}))
        self.assertEqual(len(lst["data"]), 4)
        lst = self.ok(self.c.call("GET", "/data-connections", query={"spaceId": self.existing}))
        self.assertEqual(sorted(d["qName"] for d in lst["data"]), ["DataFiles", "SalesDB"])
        lst = self.ok(self.c.call("GET", "/data-connections", query={"personal": "true"}))
        self.assertEqual(len(lst["data"]), 2)
        self.assertEqual(self.c.call("PATCH", f"/data-connections/{r['qID']}",
                                     [{"op": "replace", "path": "/qPassword", "value": "N3w-S3cr3t"},
                                      {"op": "replace", "path": "/qName", "value": "Renamed"}]).status, 204)
        self.assertEqual(self.c.call("PUT", f"/data-connections/{r['qID']}",
                                     self.body("Renamed", self.existing, qID=r["qID"], qPassword="Th1rd")).status, 204)
        state = self.cloud.state()
        # what the simulator was sent is kept for tests only, under a key of its own
        received = [(d["qName"], d.pop("test_only_received_secrets")) for d in state["data_connections"]]
        self.assertIn(("Renamed", {"qPassword": "Th1rd"}), received)
        self.assertIn(("DataFiles", {}), received)
        self.assertEqual([r for n, r in received if n == "SalesDB"], [{"qPassword": "S3cr3t-Pa55!"}] * 3)
        every = json.dumps(state) + json.dumps(self.ok(self.c.call("GET", "/data-connections")))
        every += json.dumps(self.ok(self.c.call("GET", f"/data-connections/{r['qID']}")))
        for secret in ("S3cr3t-Pa55!", "N3w-S3cr3t", "Th1rd", "qPassword"):
            self.assertNotIn(secret, every)
        self.assertTrue(all(d["has_password"] for d in self.cloud.state()["data_connections"] if not d["builtin"]))
        dfid = next(d["qID"] for d in lst["data"] if d["qName"] == "DataFiles") if False else \
            next(d["qID"] for d in self.cloud.state()["data_connections"] if d["builtin"])
        self.assertEqual(self.c.call("DELETE", f"/data-connections/{dfid}").status, 403)
        self.assertEqual(self.c.call("DELETE", f"/data-connections/{r['qID']}").status, 204)
        self.assertEqual(self.c.call("GET", f"/data-connections/{r['qID']}").status, 404)


class ExtensionTests(CloudTestBase):
    def upload(self, kind, zdata, data=None, key=ADMIN):
        parts = [("file", "ext.zip", "application/x-zip-compressed", zdata)]
        if data is not None:
            parts.append(("data", None, "application/json", json.dumps(data).encode()))
        body, ctype = multipart(parts)
        return self.c.call("POST", "/" + kind, body, ctype=ctype, key=key)

    def test_extension_multipart(self):
        z = make_zip("MyChart")
        e = self.ok(self.upload("extensions", z), 201)
        self.assertEqual(e["name"], "MyChart")
        self.assertEqual(e["qextFilename"], "MyChart")
        self.assertEqual(e["version"], "1.2.3")
        self.assertEqual(self.upload("extensions", z).status, 409)
        self.assertEqual(self.upload("extensions", b"not a zip").status, 400)
        self.assertEqual(self.upload("extensions", make_zip("NoQext", with_qext=False)).status, 400)
        e2 = self.ok(self.upload("extensions", z, {"name": "MyChart2", "tags": ["t"]}), 201)
        self.assertEqual(e2["name"], "MyChart2")
        lst = self.ok(self.c.call("GET", "/extensions"))
        self.assertEqual([x["name"] for x in lst["data"]], ["MyChart", "MyChart2"])
        self.assertNotIn("links", lst)
        self.assertEqual(self.c.call("GET", f"/extensions/{e['id']}/file").raw, z)
        self.assertEqual(self.c.call("GET", f"/extensions/{e['id']}/file/MyChart.js").status, 200)
        self.assertEqual(self.ok(self.c.call("GET", "/extensions/MyChart"))["id"], e["id"])
        p = self.ok(self.c.call("PATCH", f"/extensions/{e['id']}", {"description": "new"}))
        self.assertEqual(p["description"], "new")
        self.assertEqual(self.c.call("DELETE", f"/extensions/{e['id']}").status, 204)
        self.assertEqual(self.c.call("GET", f"/extensions/{e['id']}").status, 404)
        self.assertEqual(self.c.call("POST", "/extensions", b"{}", ctype="application/json").status, 400)

    def test_themes(self):
        z = make_zip("DarkTheme", "theme")
        t = self.ok(self.upload("themes", z), 201)
        self.assertEqual(t["name"], "DarkTheme")
        self.assertEqual(self.upload("themes", z).status, 409)
        self.assertEqual(len(self.ok(self.c.call("GET", "/themes"))["data"]), 1)
        self.assertEqual(self.c.call("GET", f"/themes/{t['id']}/file").raw, z)


class SeedTests(unittest.TestCase):
    def test_defaults_without_cloud_part(self):
        tmp = tempfile.mkdtemp()
        try:
            cl = Cloud({}, core.SimContext(tmp))
            c = DirectClient(cl)
            me = c.call("GET", "/users/me", key="qsim-admin-key")
            self.assertEqual(me.status, 200)
            self.assertEqual(me.json["assignedRoles"][0]["name"], "TenantAdmin")
            json.dumps(cl.state())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_seeded_apps_and_connections(self):
        tmp = tempfile.mkdtemp()
        try:
            seed = json.loads(json.dumps(SEED))
            seed["data_connections"] = [{"qName": "Seeded", "space": "Existing Space", "qConnectStatement": "x",
                                         "qType": "t", "datasourceID": "d", "qPassword": "pw-seeded"}]
            seed["apps"] = [{"name": "Seeded App", "space": "Existing Space", "owner": "alice@acme.com",
                             "script": "LIB CONNECT TO 'Seeded';",
                             "objects": [{"engineObjectId": "o1", "objectType": "sheet", "state": "private",
                                          "owner": "bob@acme.com"}]}]
            seed["extensions"] = [{"name": "SeedExt"}]
            cl = Cloud(seed, core.SimContext(tmp))
            st = cl.state()
            self.assertEqual(st["apps"][0]["objects"][0]["ownerId"], cl._seed_user_ref("bob@acme.com"))
            self.assertEqual(st["extensions"][0]["name"], "SeedExt")
            kept = [d.pop("test_only_received_secrets") for d in st["data_connections"]]
            self.assertIn({"qPassword": "pw-seeded"}, kept)
            self.assertNotIn("pw-seeded", json.dumps(st))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class CloudOverHttp(unittest.TestCase):
    """The same Cloud class behind the real core server."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qsim-cloud-http-")
        cls.running = core.start({"cloud": json.loads(json.dumps(SEED))}, {"cloud": Cloud},
                                 certs_dir=os.path.join(cls.tmp, "certs"),
                                 data_dir=os.path.join(cls.tmp, "data"))
        cls.base = cls.running.info["cloud_url"]

    @classmethod
    def tearDownClass(cls):
        cls.running.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def call(self, method, url, body=None, key=ADMIN, ctype=None, headers=None):
        return cloud_call(self.base, method, url, body, key=key, ctype=ctype, headers=headers)

    def test_flow(self):
        self.assertEqual(self.call("GET", "/api/v1/users/me", key=None).status, 401)
        self.assertEqual(self.call("GET", "/api/v1/users/me", key=BAD).status, 403)
        for i in range(12):
            self.assertEqual(self.call("POST", "/api/v1/spaces", {"name": f"H{i}", "type": "managed"}).status, 201)
        r = self.call("GET", "/api/v1/spaces?limit=5")
        seen = []
        while True:
            seen += [s["id"] for s in r.json["data"]]
            nxt = r.json["links"].get("next")
            if not nxt:
                break
            self.assertTrue(nxt["href"].startswith(self.base), nxt)
            r = self.call("GET", nxt["href"])
        self.assertEqual(len(set(seen)), 13)
        shared = next(s for s in self.running.sim.half("cloud").spaces.values() if s["type"] == "shared")["id"]

        def gen():  # chunked upload of a 3 MiB QVF
            data = make_qvf(name="Big", payload=3 << 20, seed="big")
            for i in range(0, len(data), 100000):
                yield data[i:i + 100000]
        req = urllib.request.Request(self.base + f"/api/v1/apps/import?spaceId={shared}", data=gen(), method="POST")
        req.add_header("Authorization", "Bearer " + ADMIN)
        req.add_header("Content-Type", "application/octet-stream")
        with urllib.request.urlopen(req, timeout=60) as resp:
            app = json.loads(resp.read())["attributes"]["id"]
        ex = self.call("POST", f"/api/v1/apps/{app}/export")
        self.assertEqual(ex.status, 201)
        got = self.call("GET", ex.headers["Location"])
        meta, hlen = qvf.read_header(io.BytesIO(got.raw))
        self.assertEqual(meta["name"], "Big")
        self.assertEqual(len(got.raw) - hlen, 3 << 20)
        self.assertEqual(hashlib.sha256(got.raw[hlen:]).hexdigest(),
                         hashlib.sha256(b"".join(qvf.payload_chunks("big", 3 << 20))).hexdigest())
        body, ctype = multipart([("file", "e.zip", "application/zip", make_zip("HttpExt"))])
        self.assertEqual(self.call("POST", "/api/v1/extensions", body, ctype=ctype).status, 201)
        with urllib.request.urlopen(self.base + "/_sim/state") as resp:
            st = json.loads(resp.read())["cloud"]
        self.assertEqual(st["apps"][0]["payload_size"], 3 << 20)
        self.assertEqual(st["extensions"][0]["name"], "HttpExt")


class CloudOverHttpFaults(CloudOverHttp):
    test_flow = None

    def test_injected_429_and_tiers_use_cloud_error_shape(self):
        faults = {"rules": [{"match": "GET /api/v1/spaces", "action": "429", "retry_after": 7}]}
        self.call("POST", "/_sim/faults", faults, key=None)
        try:
            r = self.call("GET", "/api/v1/spaces")
            self.assertEqual(r.status, 429)
            self.assertEqual(r.headers.get("Retry-After"), "7")
            self.assertEqual(r.json["errors"][0]["code"], "HTTP-429")
            self.assertEqual(r.json["errors"][0]["status"], 429)
            self.assertIn("traceId", r.json)
            self.assertEqual(self.call("GET", "/api/v1/spaces").status, 200)
            # tier 2 bucket exhausted: writes get 429, reads (tier 1) still pass
            self.call("POST", "/_sim/faults", {"tiers": {"tier2": {"per_minute": 1, "burst": 1}}}, key=None)
            self.assertEqual(self.call("POST", "/api/v1/spaces", {"name": "T1", "type": "shared"}).status, 201)
            self.assertEqual(self.call("POST", "/api/v1/spaces", {"name": "T2", "type": "shared"}).status, 429)
            self.assertEqual(self.call("GET", "/api/v1/spaces").status, 200)
        finally:
            self.call("POST", "/_sim/faults", {}, key=None)
        counts = self.call("GET", "/_sim/counts", key=None).json
        self.assertIn("GET /api/v1/spaces", json.dumps(counts))


class CloudOverHttpConcurrency(CloudOverHttp):
    test_flow = None

    def test_upload_does_not_block_other_requests(self):
        import socket
        data = make_qvf(name="Slow", payload=1 << 20, seed="slow")
        u = urllib.parse.urlsplit(self.base)
        sock = socket.create_connection((u.hostname, u.port), timeout=30)
        try:
            head = ("POST /api/v1/apps/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (ADMIN, len(data)))
            sock.sendall(head.encode() + data[:2000])  # the handler is now streaming, waiting for more
            import time
            time.sleep(0.3)
            r = self.call("GET", "/api/v1/users/me")  # must not wait for the upload
            self.assertEqual(r.status, 200)
            sock.sendall(data[2000:])
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += sock.recv(65536)
            self.assertIn(b" 200 ", reply.split(b"\r\n")[0])
        finally:
            sock.close()


if __name__ == "__main__":
    unittest.main()
