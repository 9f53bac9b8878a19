"""The catalogue lag (fault knob / site default catalogue_lag_ms) over HTTP.

Run:  python3 tests/qliksim/run_tests.py test_catalogue_lag.py
"""
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import core  # noqa: E402
from cloud import Cloud  # noqa: E402
from testlib import cloud_call  # noqa: E402
from test_cloud import ADMIN, SEED, make_qvf, make_zip, multipart  # noqa: E402

LAG_MS = 400
SEEDED_APP = "11111111-2222-4333-8444-555555555555"


def site(**cloud_extra):
    seed = json.loads(json.dumps(SEED))
    seed["apps"] = [{"id": SEEDED_APP, "name": "Seeded", "description": "from the site",
                     "space": "Existing Space", "owner": "admin@acme.com"}]
    seed.update(cloud_extra)
    return {"cloud": seed}


class LagBase(unittest.TestCase):
    SITE = site()

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qsim-lag-")
        cls.running = core.start(cls.SITE, {"cloud": Cloud},
                                 certs_dir=os.path.join(cls.tmp, "certs"),
                                 data_dir=os.path.join(cls.tmp, "data"))
        cls.base = cls.running.info["cloud_url"]

    @classmethod
    def tearDownClass(cls):
        cls.running.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.call("POST", "/_sim/reset", key=None).status, 200)
        self.faults({})

    def tearDown(self):
        self.faults({})

    def call(self, method, url, body=None, key=ADMIN, ctype=None):
        return cloud_call(self.base, method, url, body, key=key, ctype=ctype)

    def ok(self, method, url, body=None, status=200, **kw):
        r = self.call(method, url, body, **kw)
        self.assertEqual(r.status, status, r)
        return r.json

    def faults(self, cfg):
        r = self.call("POST", "/_sim/faults", cfg, key=None)
        self.assertEqual(r.status, 200, r)

    def lagged(self):
        return self.ok("GET", "/_sim/counts", key=None)["lagged_listings"]

    def ids(self, url, field="id"):
        """Every id a listing returns, following its next links."""
        out = []
        while url:
            body = self.ok("GET", url)
            out += [d[field] for d in body["data"]]
            url = ((body.get("links") or {}).get("next") or {}).get("href")
        return out

    def import_app(self, name, space=None):
        q = "?" + urllib.parse.urlencode({"spaceId": space}) if space else ""
        return self.ok("POST", "/api/v1/apps/import" + q, make_qvf(name=name),
                       ctype="application/octet-stream")["attributes"]["id"]

    def item_of(self, app_id):
        data = self.ok("GET", "/api/v1/items?resourceType=app&resourceId=" + app_id)["data"]
        return data[0] if data else None

    def within_lag(self, t0):
        """The absence checks below are only sound while the lag has not passed."""
        if time.monotonic() - t0 >= LAG_MS / 1000.0:
            self.skipTest("the machine was too slow to look inside the lag window")

    def after_lag(self):
        time.sleep(LAG_MS / 1000.0 + 0.05)


class CatalogueLagTests(LagBase):
    def space_id(self):
        return next(s["id"] for s in self.running.sim.half("cloud").spaces.values()
                    if s["name"] == "Existing Space")

    def test_new_app_absent_from_items_until_the_lag_passed(self):
        self.faults({"catalogue_lag_ms": LAG_MS})
        sp = self.space_id()
        t0 = time.monotonic()
        app = self.import_app("Fresh", space=sp)
        listings = {
            "all": "/api/v1/items?limit=100",
            "resourceId": "/api/v1/items?resourceType=app&resourceId=" + app,
            "name": "/api/v1/items?resourceType=app&name=Fresh",
            "query": "/api/v1/items?query=fresh",
            "spaceId": "/api/v1/items?spaceId=" + sp,
            "ownerId": "/api/v1/items?ownerId=" + self.running.sim.half("cloud").apps[app]["ownerId"],
            "paged": "/api/v1/items?limit=1&sort=-createdAt",
        }
        seen = {k: [i for i in self.ids(u, "resourceId")] for k, u in listings.items()}
        by_id = self.ok("GET", "/api/v1/apps/" + app)["attributes"]
        item_id = self.running.sim.half("cloud").apps[app]["item"]["id"]
        item = self.ok("GET", "/api/v1/items/" + item_id)
        self.within_lag(t0)
        for k, got in seen.items():
            self.assertNotIn(app, got, k)
        self.assertIn(SEEDED_APP, seen["all"])       # what the site holds is old: listed
        self.assertEqual((by_id["name"], item["name"], item["resourceId"]), ("Fresh", "Fresh", app))
        self.assertGreaterEqual(self.lagged().get("GET /api/v1/items", 0), len(listings))
        state = self.ok("GET", "/_sim/state", key=None)["cloud"]
        self.assertEqual(state["catalogue"]["lag_ms"], LAG_MS)
        self.assertIn(app, [i["resourceId"] for i in state["items"]])   # the state is current
        self.after_lag()
        for k, u in listings.items():
            if k != "paged":
                self.assertIn(app, self.ids(u, "resourceId"), k)
        before = self.lagged().get("GET /api/v1/items", 0)
        self.ids(listings["all"])
        self.assertEqual(self.lagged().get("GET /api/v1/items", 0), before)   # nothing hidden

    def test_renamed_app_keeps_its_old_name_in_items_until_the_lag_passed(self):
        self.faults({"catalogue_lag_ms": LAG_MS})
        t0 = time.monotonic()
        self.ok("PUT", "/api/v1/apps/" + SEEDED_APP,
                {"attributes": {"name": "Renamed", "description": "new words"}})
        listed = self.item_of(SEEDED_APP)
        by_name_old = self.ids("/api/v1/items?name=Seeded", "resourceId")
        by_name_new = self.ids("/api/v1/items?name=Renamed", "resourceId")
        by_query_new = self.ids("/api/v1/items?query=new%20words", "resourceId")
        by_id = self.ok("GET", "/api/v1/items/" + listed["id"])
        app = self.ok("GET", "/api/v1/apps/" + SEEDED_APP)["attributes"]
        self.within_lag(t0)
        self.assertEqual((listed["name"], listed["description"]), ("Seeded", "from the site"))
        self.assertEqual(listed["resourceAttributes"]["name"], "Seeded")
        self.assertEqual((by_name_old, by_name_new, by_query_new), ([SEEDED_APP], [], []))
        self.assertEqual((by_id["name"], app["name"], app["description"]),
                         ("Renamed", "Renamed", "new words"))
        self.assertGreaterEqual(self.lagged().get("GET /api/v1/items", 0), 3)
        self.after_lag()
        listed = self.item_of(SEEDED_APP)
        self.assertEqual((listed["name"], listed["description"]), ("Renamed", "new words"))
        self.assertEqual(self.ids("/api/v1/items?name=Renamed", "resourceId"), [SEEDED_APP])
        self.assertEqual(self.ids("/api/v1/items?name=Seeded", "resourceId"), [])

    def test_two_changes_and_a_move_show_in_order(self):
        self.faults({"catalogue_lag_ms": LAG_MS})
        other = self.ok("POST", "/api/v1/spaces", {"name": "Other", "type": "shared"}, status=201)["id"]
        self.ok("PUT", "/api/v1/apps/" + SEEDED_APP, {"attributes": {"name": "First"}})
        time.sleep(LAG_MS / 2000.0)
        t1 = time.monotonic()
        self.ok("PUT", "/api/v1/apps/" + SEEDED_APP + "/space", {"spaceId": other})
        self.ok("PUT", "/api/v1/items/" + self.item_of(SEEDED_APP)["id"], {"name": "Second"})
        listed = self.item_of(SEEDED_APP)
        in_old_space = self.ids("/api/v1/items?spaceId=" + self.space_id(), "resourceId")
        if time.monotonic() - t1 < LAG_MS / 2000.0:     # the first rename not yet shown
            self.assertEqual(listed["name"], "Seeded")
            self.assertIn(SEEDED_APP, in_old_space)
        time.sleep(LAG_MS / 1000.0 - (time.monotonic() - t1) + 0.02)
        # the first rename is older than the lag, the move and second rename not
        listed = self.item_of(SEEDED_APP)
        if time.monotonic() - t1 < LAG_MS / 1000.0:
            self.assertEqual((listed["name"], listed["spaceId"]), ("First", self.space_id()))
        self.after_lag()
        listed = self.item_of(SEEDED_APP)
        self.assertEqual((listed["name"], listed["spaceId"]), ("Second", other))

    def test_deleted_app_disappears_at_once(self):
        self.faults({"catalogue_lag_ms": LAG_MS})
        self.ok("PUT", "/api/v1/apps/" + SEEDED_APP, {"attributes": {"name": "Doomed"}})
        self.assertEqual(self.call("DELETE", "/api/v1/apps/" + SEEDED_APP).status, 200)
        self.assertNotIn(SEEDED_APP, self.ids("/api/v1/items?limit=100", "resourceId"))
        self.assertEqual(self.ids("/api/v1/items?name=Seeded", "resourceId"), [])

    def test_other_listings_show_new_objects_only_after_the_lag(self):
        self.faults({"catalogue_lag_ms": LAG_MS})
        sp = self.space_id()
        t0 = time.monotonic()
        made = {}
        made["space"] = self.ok("POST", "/api/v1/spaces", {"name": "Lagging", "type": "shared"},
                                status=201)["id"]
        made["user"] = self.ok("POST", "/api/v1/users", {"subject": "auth0|late", "email": "late@acme.com",
                                                          "name": "Late"}, status=201)["id"]
        made["group"] = self.ok("POST", "/api/v1/groups", {"name": "Latecomers"}, status=201)["id"]
        made["conn"] = self.ok("POST", "/api/v1/data-connections",
                               {"qName": "Late DB", "datasourceID": "postgres", "qType": "ODBC",
                                "qConnectStatement": "x", "space": sp}, status=201)["qID"]
        body, ctype = multipart([("file", "e.zip", "application/zip", make_zip("LateExt"))])
        made["ext"] = self.ok("POST", "/api/v1/extensions", body, status=201, ctype=ctype)["id"]
        body, ctype = multipart([("file", "t.zip", "application/zip", make_zip("LateTheme", "theme"))])
        made["theme"] = self.ok("POST", "/api/v1/themes", body, status=201, ctype=ctype)["id"]
        made["reload"] = self.ok("POST", "/api/v1/reloads", {"appId": SEEDED_APP}, status=201)["id"]
        made["assignment"] = self.ok("POST", "/api/v1/spaces/%s/assignments" % sp,
                                     {"type": "user", "assigneeId": made["user"], "roles": ["consumer"]},
                                     status=201)["id"]
        made["collection"] = self.ok("POST", "/api/v1/collections", {"name": "Late", "type": "public"},
                                     status=201)["id"]
        made["task"] = self.ok("POST", "/api/scheduling/tasks/resources/%s/actions/reload/on-time-schedule"
                               % SEEDED_APP, {"name": "Nightly", "recurrence": "RRULE:FREQ=DAILY"},
                               status=201)["id"]
        listings = {
            "space": ["/api/v1/spaces?limit=100", "/api/v1/spaces?filter=" +
                      urllib.parse.quote('name eq "Lagging"'), "/api/v1/spaces?name=lagging"],
            "user": ["/api/v1/users?limit=100",
                     "/api/v1/users?filter=" + urllib.parse.quote('email eq "late@acme.com"'),
                     "/api/v1/users?filter=" + urllib.parse.quote('name co "Late"')],
            "group": ["/api/v1/groups?limit=100"],
            "conn": ["/api/v1/data-connections?limit=100", "/api/v1/data-connections?spaceId=" + sp],
            "ext": ["/api/v1/extensions"], "theme": ["/api/v1/themes"],
            "reload": ["/api/v1/reloads?appId=" + SEEDED_APP, "/api/v1/reloads"],
            "assignment": ["/api/v1/spaces/%s/assignments" % sp],
            "collection": ["/api/v1/collections"],
            "task": ["/api/scheduling/tasks?limit=100", "/api/scheduling/tasks?resourceId=" + SEEDED_APP],
        }
        field = {"conn": "qID"}
        seen = {(k, u): self.ids(u, field.get(k, "id")) for k, us in listings.items() for u in us}
        filtered = self.ok("POST", "/api/v1/users/actions/filter",
                           {"filter": 'subject eq "auth0|late"'})["data"]
        direct = {
            "space": "/api/v1/spaces/" + made["space"], "user": "/api/v1/users/" + made["user"],
            "group": "/api/v1/groups/" + made["group"],
            "conn": "/api/v1/data-connections/" + made["conn"],
            "ext": "/api/v1/extensions/" + made["ext"], "theme": "/api/v1/themes/" + made["theme"],
            "reload": "/api/v1/reloads/" + made["reload"],
            "assignment": "/api/v1/spaces/%s/assignments/%s" % (sp, made["assignment"]),
            "collection": "/api/v1/collections/" + made["collection"],
            "task": "/api/scheduling/tasks/" + made["task"],
        }
        got = {k: self.call("GET", u).status for k, u in direct.items()}
        self.within_lag(t0)
        for (k, u), ids in seen.items():
            self.assertNotIn(made[k], ids, u)
        self.assertEqual(filtered, [])
        self.assertEqual(got, {k: 200 for k in direct})      # by id: current
        self.assertIn(sp, seen[("space", "/api/v1/spaces?limit=100")])   # old ones stay listed
        counts = self.lagged()
        for ep in ("GET /api/v1/spaces", "GET /api/v1/users", "POST /api/v1/users/actions/filter",
                   "GET /api/v1/groups", "GET /api/v1/data-connections", "GET /api/v1/extensions",
                   "GET /api/v1/themes", "GET /api/v1/reloads",
                   "GET /api/v1/spaces/{spaceId}/assignments", "GET /api/v1/collections",
                   "GET /api/scheduling/tasks"):
            self.assertGreaterEqual(counts.get(ep, 0), 1, ep)
        self.after_lag()
        for k, us in listings.items():
            for u in us:
                self.assertIn(made[k], self.ids(u, field.get(k, "id")), u)
        filtered = self.ok("POST", "/api/v1/users/actions/filter",
                           {"filter": 'subject eq "auth0|late"'})["data"]
        self.assertEqual([u["id"] for u in filtered], [made["user"]])

    def test_lag_zero_changes_nothing(self):
        self.faults({"catalogue_lag_ms": 0})
        app = self.import_app("Instant")
        self.ok("PUT", "/api/v1/apps/" + SEEDED_APP, {"attributes": {"name": "Now"}})
        sid = self.ok("POST", "/api/v1/spaces", {"name": "Instant", "type": "shared"}, status=201)["id"]
        self.assertIn(app, self.ids("/api/v1/items?name=Instant", "resourceId"))
        self.assertEqual(self.item_of(SEEDED_APP)["name"], "Now")
        self.assertIn(sid, self.ids("/api/v1/spaces?limit=100"))
        self.assertEqual(self.lagged(), {})
        # a change made while the lag was off keeps no history: turning it on later
        # shows the current name
        self.faults({"catalogue_lag_ms": LAG_MS})
        self.assertEqual(self.item_of(SEEDED_APP)["name"], "Now")

    def test_knob_is_validated(self):
        for bad in (-1, "300", True, None):
            r = self.call("POST", "/_sim/faults", {"catalogue_lag_ms": bad}, key=None)
            self.assertEqual(r.status, 400, (bad, r))


class SiteDefaultLagTests(LagBase):
    SITE = site(catalogue_lag_ms=LAG_MS)

    def test_site_default_and_fault_override(self):
        # the site's objects are old: listed at once
        self.assertIn(SEEDED_APP, self.ids("/api/v1/items", "resourceId"))
        t0 = time.monotonic()
        sid = self.ok("POST", "/api/v1/spaces", {"name": "Slow", "type": "shared"}, status=201)["id"]
        hidden = sid not in self.ids("/api/v1/spaces?limit=100")
        self.faults({"catalogue_lag_ms": 0})              # the fault knob overrides the site
        shown_now = sid in self.ids("/api/v1/spaces?limit=100")
        self.faults({})                                    # {} restores the site's default
        hidden_again = sid not in self.ids("/api/v1/spaces?limit=100")
        self.within_lag(t0)
        self.assertEqual((hidden, shown_now, hidden_again), (True, True, True))
        self.after_lag()
        self.assertIn(sid, self.ids("/api/v1/spaces?limit=100"))

    def test_bad_site_value_is_refused(self):
        with self.assertRaises(ValueError):
            Cloud({"catalogue_lag_ms": -5}, core.SimContext(self.tmp))


if __name__ == "__main__":
    unittest.main()
