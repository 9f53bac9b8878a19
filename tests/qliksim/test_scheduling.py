"""Tests for the Scheduling Tasks API, the legacy Reload Tasks rules and OAuth M2M of the
Cloud half (scheduling.py, oauth.py), over HTTP through the real core server."""
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

ADMIN, ALICE = "qsim-admin-key", "alice-key"
OLD_MIGRATED, OLD_PLAIN = "67ffd32c08e939e2f3a31184", "67ffd32c08e939e2f3a31185"
APP_A, APP_B, APP_C = ("aaaaaaaa-0000-4000-8000-00000000000%d" % i for i in (1, 2, 3))
APP_FULL = "aaaaaaaa-0000-4000-8000-000000000009"
MISSING_APP = "bbbbbbbb-0000-4000-8000-000000000000"

SEED = {
    "api_keys": [{"key": ADMIN, "user": "admin@acme.com"}, {"key": ALICE, "user": "alice@acme.com"}],
    "users": [{"subject": "auth0|admin", "email": "admin@acme.com", "roles": ["TenantAdmin"]},
              {"subject": "auth0|alice", "email": "alice@acme.com"},
              {"subject": "auth0|svc", "email": "svc@acme.com", "roles": ["TenantAdmin"]}],
    "spaces": [{"name": "Sales", "type": "shared", "owner": "admin@acme.com"}],
    "apps": [{"id": APP_A, "name": "A", "space": "Sales"}, {"id": APP_B, "name": "B", "space": "Sales"},
             {"id": APP_C, "name": "C"}, {"id": APP_FULL, "name": "Full", "space": "Sales"}],
    "max_tasks_per_app": 4,
    "reload_tasks": [
        {"id": OLD_MIGRATED, "app": "A", "migrated": True, "timeZone": "Europe/Paris",
         "startDateTime": "2025-04-17T06:00:00", "recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6"]},
        {"id": OLD_PLAIN, "app": "B", "migrated": False}],
    "oauth_clients": [
        {"client_id": "m2m", "client_secret": "s3cret", "user": "svc@acme.com"},
        {"client_id": "short", "client_secret": "x", "user": "alice@acme.com",
         "lifetime_seconds": 1, "send_expires_in": False}],
}


def full_body(app_id, name="Full task", **extra):
    body = {"name": name, "specVersion": "1.16.0", "version": "1.0.0", "resourceId": "ignored",
            "start": {"stateName": "Reload",
                      "schedule": {"recurrence": "RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
                                   "timezone": "Europe/Stockholm", "startDateTime": "2026-10-01T06:00:00",
                                   "endDateTime": "2099-10-01T00:00:00"}},
            "states": [{"name": "Reload", "type": "EVENT", "end": True, "exclusive": False,
                        "onEvents": [{"eventRefs": [], "actions": [{"name": "app.reload", "functionRef": {
                            "refName": "app.reload", "arguments": {"appId": app_id, "partial": False}}}]}]}]}
    body.update(extra)
    return body


class SimCase(unittest.TestCase):
    seed = SEED

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="qsim-sched-")
        self.running = core.start({"cloud": json.loads(json.dumps(self.seed))}, {"cloud": Cloud},
                                  certs_dir=os.path.join(self.tmp, "certs"),
                                  data_dir=os.path.join(self.tmp, "data"))
        self.base = self.running.info["cloud_url"]

    def tearDown(self):
        self.running.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def call(self, method, path, body=None, key=ADMIN, ctype=None, headers=None):
        r = cloud_call(self.base, method, path, body, key=key, ctype=ctype, headers=headers)
        return r.status, r.json

    def ok(self, reply, status=200):
        self.assertEqual(reply[0], status, reply[1])
        return reply[1]

    def fails(self, reply, status, code):
        self.assertEqual(reply[0], status, reply[1])
        err = reply[1]["errors"][0]
        self.assertEqual(err["code"], code, reply[1])
        self.assertIn("title", err)
        self.assertIn("traceId", reply[1])

    def state(self):
        return self.ok(self.call("GET", "/_sim/state", key=None))["cloud"]

    def on_time(self, app_id, **body):
        b = {"name": "Daily", "recurrence": "RRULE:FREQ=DAILY;BYHOUR=5", "timezone": "Europe/Paris"}
        b.update(body)
        return self.call("POST", "/api/scheduling/tasks/resources/%s/actions/reload/on-time-schedule" % app_id, b)

    def on_event(self, app_id, up, status="succeeded", **body):
        b = {"name": "After", "onTaskId": up, "onTaskStatus": status}
        b.update(body)
        return self.call("POST", "/api/scheduling/tasks/resources/%s/actions/reload/on-task-event" % app_id, b)


class LegacyReloadTasks(SimCase):
    def test_post_gone_get_kept_migrated_refused(self):
        self.fails(self.call("POST", "/api/v1/reload-tasks", {"appId": APP_A}), 410, "TASKS-011")
        lst = self.ok(self.call("GET", "/api/v1/reload-tasks"))["data"]
        self.assertEqual(sorted(t["id"] for t in lst), [OLD_MIGRATED, OLD_PLAIN])
        old = self.ok(self.call("GET", "/api/v1/reload-tasks/" + OLD_MIGRATED))
        self.assertEqual((old["migrated"], old["appId"], old["recurrence"]),
                         (True, APP_A, ["RRULE:FREQ=DAILY;BYHOUR=6"]))
        self.fails(self.call("PUT", "/api/v1/reload-tasks/" + OLD_MIGRATED, {"state": "Disabled"}), 400, "TASKS-001")
        self.fails(self.call("DELETE", "/api/v1/reload-tasks/" + OLD_MIGRATED), 400, "TASKS-001")
        self.ok(self.call("PUT", "/api/v1/reload-tasks/" + OLD_PLAIN, {"state": "Disabled"}))
        self.assertEqual(self.call("DELETE", "/api/v1/reload-tasks/" + OLD_PLAIN)[0], 204)
        new = self.ok(self.call("GET", "/api/scheduling/tasks?resourceId=" + APP_A))["data"]
        self.assertEqual(len(new), 1)
        t = new[0]
        self.assertEqual(t["metadata"]["migratedFrom"], OLD_MIGRATED)
        self.assertEqual(t["start"]["schedule"], {"recurrence": "RRULE:FREQ=DAILY;BYHOUR=6",
                                                  "timezone": "Europe/Paris",
                                                  "startDateTime": "2025-04-17T06:00:00"})
        self.assertTrue(t["enabled"])
        self.assertEqual(self.state()["reload_tasks"][0]["id"], OLD_MIGRATED)


class OldTenant(SimCase):
    seed = dict(SEED, legacy_reload_tasks=True)

    def test_knob_brings_post_back(self):
        t = self.ok(self.call("POST", "/api/v1/reload-tasks", {
            "appId": APP_B, "timeZone": "UTC", "startDateTime": "2025-01-01T06:00:00",
            "recurrence": ["RRULE:FREQ=DAILY"]}), 201)
        self.assertFalse(t["migrated"])


class TasksCrud(SimCase):
    def test_create_full_body(self):
        t = self.ok(self.call("POST", "/api/scheduling/tasks", full_body(APP_FULL, enabled=True)), 201)
        self.assertRegex(t["id"], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertEqual(t["resourceId"], APP_FULL)
        self.assertTrue(t["enabled"])
        m = t["metadata"]
        users = {u["email"]: u["id"] for u in self.state()["users"]}
        self.assertEqual((m["ownerId"], m["createdBy"], m["resourceType"], m["resourceName"]),
                         (users["admin@acme.com"], users["admin@acme.com"], "app", "Full"))
        spaces = {s["name"]: s["id"] for s in self.state()["spaces"]}
        self.assertEqual((m["spaceId"], m["spaceType"]), (spaces["Sales"], "shared"))
        for k in ("createdAt", "updatedAt", "tenantId"):
            self.assertIn(k, m)
        self.assertNotIn("migratedFrom", m)
        body = full_body(APP_FULL)
        del body["version"]
        t2 = self.ok(self.call("POST", "/api/scheduling/tasks?migrateFrom=" + OLD_PLAIN, body), 201)
        self.assertFalse(t2["enabled"])              # disabled unless enabled:true
        self.assertEqual(t2["metadata"]["migratedFrom"], OLD_PLAIN)
        self.assertEqual(self.ok(self.call("GET", "/api/scheduling/tasks/" + t2["id"]))["id"], t2["id"])
        sched = full_body(APP_FULL)["start"]["schedule"]
        bad = [
            ({"name": ""}, 400, "CHO-001"), ({"name": "x" * 257}, 400, "CHO-001"),
            ({"specVersion": None}, 400, "CHO-001"), ({"states": []}, 400, "CHO-001"),
            ({"enabled": "yes"}, 400, "CHO-001"),
            ({"states": [{"name": "S", "onEvents": [{"eventRefs": [], "actions": []}]}]}, 400, "CHO-001"),
            ({"start": {"schedule": dict(sched, recurrence="RRULE:FREQ=DAILY;BYHOUR=25")}}, 400, "CHO-017"),
            ({"start": {"schedule": dict(sched, recurrence="FREQ=SECONDLY")}}, 400, "CHO-017"),
            ({"start": {"schedule": dict(sched, timezone="CEST")}}, 400, "CHO-017"),
            ({"start": {"schedule": dict(sched, endDateTime="2026-09-01T00:00:00")}}, 400, "CHO-017"),
            ({"start": {"schedule": dict(sched, startDateTime="2020-01-01T00:00:00",
                                         endDateTime="2021-01-01T00:00:00")}}, 400, "CHO-017"),
            ({"start": {"schedule": dict(sched, startDateTime="tomorrow")}}, 400, "CHO-017"),
            ({"events": [{"name": "e", "source": "system-events.task", "type": "com.qlik.v1.task.run.finished",
                          "correlation": [{"contextAttributeName": "id",
                                           "contextAttributeValue": MISSING_APP}]}]}, 400, "CHO-016"),
            ({"events": [{"name": "e", "source": "elsewhere"}]}, 400, "CHO-001"),
        ]
        for change, status, code in bad:
            with self.subTest(change=change):
                self.fails(self.call("POST", "/api/scheduling/tasks", dict(full_body(APP_FULL), **change)),
                           status, code)
        self.fails(self.call("POST", "/api/scheduling/tasks", full_body(MISSING_APP)), 403, "CHO-003")
        self.fails(self.call("POST", "/api/scheduling/tasks?migrateFrom=nope", full_body(APP_FULL)), 400, "CHO-001")
        self.ok(self.call("POST", "/api/scheduling/tasks", dict(
            full_body(APP_FULL), start={"schedule": "FREQ=HOURLY"})), 201)   # bare RRULE, string schedule
        self.assertEqual(self.call("POST", "/api/scheduling/tasks", full_body(APP_FULL), key=None)[0], 401)

    def test_list_filter_sort_paging(self):
        ids = [self.ok(self.on_time(app, name="T%d" % i, enabled=i % 2 == 0), 201)["id"]
               for i, app in enumerate([APP_B, APP_B, APP_B, APP_C, APP_C])]
        everything = self.ok(self.call("GET", "/api/scheduling/tasks?limit=100"))["data"]
        self.assertEqual(len(everything), 6)        # + the one migrated from OLD_MIGRATED
        by_app = self.ok(self.call("GET", "/api/scheduling/tasks?resourceId=" + APP_B))["data"]
        self.assertEqual(sorted(t["id"] for t in by_app), sorted(ids[:3]))
        f = urllib.parse.quote('resourceId eq "%s" and enabled eq true' % APP_B)
        got = self.ok(self.call("GET", "/api/scheduling/tasks?filter=" + f))["data"]
        self.assertEqual(sorted(t["id"] for t in got), sorted([ids[0], ids[2]]))
        got = self.ok(self.call("GET", "/api/scheduling/tasks?filter=" + urllib.parse.quote("enabled eq false")))["data"]
        self.assertEqual(sorted(t["id"] for t in got), sorted([ids[1], ids[3]]))
        self.fails(self.call("GET", "/api/scheduling/tasks?filter=" + urllib.parse.quote("colour eq 1")), 400, "CHO-001")
        self.fails(self.call("GET", "/api/scheduling/tasks?sort=-colour"), 400, "CHO-001")
        self.assertEqual(self.call("GET", "/api/scheduling/tasks?limit=0")[0], 400)
        names = [t["name"] for t in self.ok(self.call("GET", "/api/scheduling/tasks?sort=%2Bname&limit=100"))["data"]]
        self.assertEqual(names, sorted(names, key=str.casefold))
        seen, url, pages = [], "/api/scheduling/tasks?limit=2&sort=-name", 0
        while url:
            page = self.ok(self.call("GET", url))
            seen += [t["name"] for t in page["data"]]
            url = (page["links"].get("next") or {}).get("href")
            self.assertTrue(page["links"]["self"]["href"].startswith("http://"))
            pages += 1
        self.assertEqual(pages, 3)
        self.assertEqual(seen, sorted(names, key=str.casefold, reverse=True))

    def test_put_patch_delete(self):
        t = self.ok(self.call("POST", "/api/scheduling/tasks",
                              full_body(APP_FULL, description="keep?", enabled=True)), 201)
        path = "/api/scheduling/tasks/" + t["id"]
        put = self.ok(self.call("PUT", path, full_body(APP_FULL, name="Renamed"), key=ALICE))
        self.assertEqual(put["name"], "Renamed")
        self.assertNotIn("description", put)        # left out -> back to the default
        self.assertFalse(put["enabled"])
        self.assertEqual(put["metadata"]["disabledCode"], "MANUALLY")
        users = {u["email"]: u["id"] for u in self.state()["users"]}
        self.assertEqual(put["metadata"]["ownerId"], users["alice@acme.com"])
        self.assertEqual(put["metadata"]["createdBy"], users["admin@acme.com"])
        self.assertEqual(put["metadata"]["createdAt"], t["metadata"]["createdAt"])
        self.fails(self.call("PUT", path, dict(full_body(APP_FULL), name=None)), 400, "CHO-001")
        p = self.ok(self.call("PATCH", path, [{"op": "replace", "path": "/enabled", "value": True},
                                              {"op": "add", "path": "/description", "value": "d"},
                                              {"op": "replace", "path": "/name", "value": "Patched"}]))
        self.assertEqual((p["enabled"], p["description"], p["name"]), (True, "d", "Patched"))
        self.assertEqual(p["metadata"]["ownerId"], users["admin@acme.com"])   # ownership moves back
        self.assertNotIn("disabledCode", p["metadata"])
        p = self.ok(self.call("PATCH", path, [{"op": "remove", "path": "/description"}]))
        self.assertNotIn("description", p)
        p = self.ok(self.call("PATCH", path, [{"op": "replace", "path": "/start/schedule/timezone", "value": "UTC"}]))
        self.assertEqual(p["start"]["schedule"]["timezone"], "UTC")
        for ops, code in [([{"op": "replace", "path": "/id", "value": "x"}], "CHO-001"),
                          ([{"op": "replace", "path": "/nope/deep", "value": 1}], "CHO-001"),
                          ([{"op": "test", "path": "/name", "value": "x"}], "CHO-001"),
                          ([{"op": "replace", "path": "/enabled", "value": "on"}], "CHO-001"),
                          ([{"op": "replace", "path": "/start/schedule/timezone", "value": "Mars"}], "CHO-017"),
                          ([], "CHO-001")]:
            with self.subTest(ops=ops):
                self.fails(self.call("PATCH", path, ops), 400, code)
        self.assertEqual(self.call("DELETE", path)[0], 204)
        for m, b in (("GET", None), ("DELETE", None), ("PUT", full_body(APP_FULL)),
                     ("PATCH", [{"op": "replace", "path": "/name", "value": "x"}])):
            self.assertEqual(self.call(m, path, b)[0], 404, m)

    def test_deleting_the_app_deletes_its_tasks(self):
        self.ok(self.on_time(APP_B), 201)
        self.ok(self.call("DELETE", "/api/v1/apps/" + APP_B))
        self.assertEqual(self.ok(self.call("GET", "/api/scheduling/tasks?resourceId=" + APP_B))["data"], [])

    def test_tiers(self):
        cloud = self.running.sim.half("cloud") if hasattr(self.running, "sim") else None
        c = cloud or Cloud.__new__(Cloud)
        self.assertEqual(c.tier("GET", "/api/scheduling/tasks"), "tier1")
        self.assertEqual(c.tier("GET", "/api/scheduling/tasks/x/runs/last"), "tier1")
        for m in ("POST", "PUT", "PATCH", "DELETE"):
            self.assertEqual(c.tier(m, "/api/scheduling/tasks/x"), "tier2")
        self.assertEqual(c.tier("POST", "/oauth/token"), "tier2")
        self.call("POST", "/_sim/faults", {"tiers": {"tier2": {"per_minute": 1, "burst": 1}}}, key=None)
        try:
            self.ok(self.on_time(APP_B), 201)
            self.assertEqual(self.on_time(APP_B)[0], 429)
            self.ok(self.call("GET", "/api/scheduling/tasks"))
        finally:
            self.call("POST", "/_sim/faults", {}, key=None)


class Convenience(SimCase):
    def test_on_time_schedule(self):
        t = self.ok(self.on_time(APP_B, description="every day", startDateTime="2026-01-01T05:00:00",
                                 endDateTime="2099-01-01T00:00:00", partial=True), 201)
        self.assertEqual(sorted(t), ["description", "enabled", "id", "metadata", "name", "resourceId",
                                     "specVersion", "start", "states", "version"])
        self.assertEqual(t["start"], {"stateName": "Reload", "schedule": {
            "recurrence": "RRULE:FREQ=DAILY;BYHOUR=5", "timezone": "Europe/Paris",
            "startDateTime": "2026-01-01T05:00:00", "endDateTime": "2099-01-01T00:00:00"}})
        self.assertFalse(t["enabled"])
        fr = t["states"][0]["onEvents"][0]["actions"][0]["functionRef"]
        self.assertEqual(fr, {"refName": "app.reload", "arguments": {"appId": APP_B, "partial": True}})
        self.assertEqual(t["metadata"]["topology"], {"isChild": False, "isParent": False})
        t = self.ok(self.on_time(APP_C, recurrence=["FREQ=WEEKLY;BYDAY=MO"], enabled=True), 201)
        self.assertEqual(t["start"]["schedule"]["recurrence"], "FREQ=WEEKLY;BYDAY=MO")
        self.assertEqual(t["metadata"]["spaceType"], "personal")
        self.assertTrue(t["enabled"])
        cases = [({"recurrence": "RRULE:FREQ=DAILY;BYHOUR=24"}, 400, "CHO-017"),
                 ({"recurrence": ["FREQ=DAILY", "FREQ=HOURLY"]}, 400, "CHO-001"),
                 ({"recurrence": None}, 400, "CHO-001"),
                 ({"timezone": "Europe/Atlantis"}, 400, "CHO-017"),
                 ({"startDateTime": "2030-01-01T00:00:00", "endDateTime": "2029-01-01T00:00:00"}, 400, "CHO-017"),
                 ({"endDateTime": "2001-01-01T00:00:00Z"}, 400, "CHO-017"),
                 ({"name": "n" * 257}, 400, "CHO-001"), ({"name": None}, 400, "CHO-001"),
                 ({"description": "d" * 1025}, 400, "CHO-001"),
                 ({"timeZone": "UTC"}, 400, "CHO-001"), ({"enabled": 1}, 400, "CHO-001")]
        for change, status, code in cases:
            with self.subTest(change=change):
                self.fails(self.on_time(APP_B, **change), status, code)
        self.fails(self.on_time(MISSING_APP), 403, "CHO-003")
        self.fails(self.on_time("not-a-uuid"), 400, "CHO-001")

    def test_limit_per_app(self):
        for i in range(4):
            self.ok(self.on_time(APP_B, name="T%d" % i), 201)
        self.fails(self.on_time(APP_B), 422, "CHO-014")
        up = self.ok(self.call("GET", "/api/scheduling/tasks?resourceId=" + APP_B))["data"][0]["id"]
        self.fails(self.on_event(APP_B, up), 422, "CHO-014")
        self.fails(self.call("POST", "/api/scheduling/tasks", full_body(APP_B)), 422, "CHO-014")

    def test_on_task_event(self):
        up = self.ok(self.on_time(APP_A), 201)
        t = self.ok(self.on_event(APP_B, up["id"], description="chained", enabled=True), 201)
        self.assertNotIn("start", t)
        self.assertTrue(t["enabled"])
        self.assertEqual(t["events"], [{"name": "upstream-task-finished", "source": "system-events.task",
                                        "type": "com.qlik.v1.task.run.finished", "correlation": [
            {"contextAttributeName": "id", "contextAttributeValue": up["id"]},
            {"contextAttributeName": "status", "contextAttributeValue": "SUCCEEDED"},
            {"contextAttributeName": "appId", "contextAttributeValue": APP_A},
            {"contextAttributeName": "spaceId", "contextAttributeValue": up["metadata"]["spaceId"]}]}])
        self.assertEqual(t["states"][0]["onEvents"][0]["eventRefs"], ["upstream-task-finished"])
        self.assertEqual(t["metadata"]["topology"], {"isChild": True, "isParent": False})
        self.assertEqual(self.ok(self.call("GET", "/api/scheduling/tasks/" + up["id"]))["metadata"]["topology"],
                         {"isChild": False, "isParent": True})
        failed = self.ok(self.on_event(APP_C, up["id"], "failed"), 201)
        self.assertEqual(failed["events"][0]["correlation"][1]["contextAttributeValue"], "FAILED")
        anyone = self.ok(self.on_event(APP_C, up["id"], "any"), 201)
        self.assertEqual([c["contextAttributeName"] for c in anyone["events"][0]["correlation"]],
                         ["id", "appId", "spaceId"])
        self.fails(self.on_event(APP_B, "not-a-uuid"), 400, "CHO-016")
        self.fails(self.on_event(APP_B, MISSING_APP), 400, "CHO-016")
        self.fails(self.on_event(APP_B, up["id"], "done"), 400, "CHO-001")
        self.fails(self.on_event(MISSING_APP, up["id"]), 403, "CHO-003")
        self.fails(self.on_event(APP_B, up["id"], name=""), 400, "CHO-001")
        # a full body may chain on a task too, with the correlation an on-task-event task has
        body = full_body(APP_FULL, events=t["events"])
        del body["start"]
        body["states"][0]["onEvents"][0]["eventRefs"] = ["upstream-task-finished"]
        self.ok(self.call("POST", "/api/scheduling/tasks", body), 201)
        body["states"][0]["onEvents"][0]["eventRefs"] = ["no-such-event"]
        self.fails(self.call("POST", "/api/scheduling/tasks", body), 400, "CHO-001")


class FireAndRuns(SimCase):
    def fire(self, task_id, status="succeeded", **extra):
        return self.call("POST", "/_sim/scheduling/fire", dict(taskId=task_id, status=status, **extra), key=None)

    def test_chain_cycle_and_join(self):
        a = self.ok(self.on_time(APP_A, name="A"), 201)["id"]
        b = self.ok(self.on_event(APP_B, a, name="B", enabled=True), 201)["id"]
        c = self.ok(self.on_event(APP_C, b, name="C"), 201)["id"]
        d = self.ok(self.on_event(APP_C, a, "failed", name="D"), 201)["id"]
        e = self.ok(self.on_event(APP_FULL, c, "any", name="E"), 201)["id"]
        ran = self.ok(self.fire(a))
        self.assertEqual([(r["name"], r["triggeredBy"], r["enabled"], r["status"]) for r in ran],
                         [("A", "manual", False, "SUCCEEDED"), ("B", a, True, "SUCCEEDED"),
                          ("C", b, False, "SUCCEEDED"), ("E", c, False, "SUCCEEDED")])
        self.assertEqual(ran[1]["resourceId"], APP_B)
        self.assertEqual(sorted(ran[0]), ["enabled", "name", "resourceId", "status", "taskId", "triggeredBy"])
        ran = self.ok(self.fire(a, "failed"))
        self.assertEqual([r["taskId"] for r in ran], [a, d])
        ran = self.ok(self.fire(a, outcomes={b: "failed"}))
        self.assertEqual([r["taskId"] for r in ran], [a, b])
        # exclusive:false: the join runs only once both upstreams finished in the cascade
        ev = lambda name, up: {"name": name, "source": "system-events.task",  # noqa: E731
                               "type": "com.qlik.v1.task.run.finished",
                               "correlation": [{"contextAttributeName": "id", "contextAttributeValue": up},
                                               {"contextAttributeName": "status", "contextAttributeValue": "succeeded"}]}
        body = full_body(APP_FULL, name="Join", events=[ev("b", b), ev("c", c)])
        del body["start"]
        body["states"][0]["onEvents"][0]["eventRefs"] = ["b", "c"]
        join = self.ok(self.call("POST", "/api/scheduling/tasks", body), 201)["id"]
        self.assertNotIn(join, [r["taskId"] for r in self.ok(self.fire(c))])
        self.assertIn(join, [r["taskId"] for r in self.ok(self.fire(b))])
        # close a cycle: A also waits for E
        patch = [{"op": "add", "path": "/events", "value": [
            {"name": "e", "source": "system-events.task", "type": "com.qlik.v1.task.run.finished",
             "correlation": [{"contextAttributeName": "id", "contextAttributeValue": e}]}]}]
        self.ok(self.call("PATCH", "/api/scheduling/tasks/" + a, patch))
        ran = self.ok(self.fire(b))
        self.assertEqual([r["taskId"] for r in ran], [b, c, e, join, a])   # A ran, B not again
        self.assertEqual(self.fire("nope")[0], 404)
        self.assertEqual(self.fire(a, "done")[0], 400)
        self.assertEqual(self.call("POST", "/_sim/scheduling/fire", [1], key=None)[0], 400)

    def test_runs_and_state(self):
        a = self.ok(self.on_time(APP_A, name="A"), 201)["id"]
        b = self.ok(self.on_event(APP_B, a, name="B"), 201)["id"]
        self.fails(self.call("GET", "/api/scheduling/tasks/%s/runs/last" % a), 404, "CHO-004")
        self.ok(self.fire(a))
        self.ok(self.fire(a, "failed"))
        runs = self.ok(self.call("GET", "/api/scheduling/tasks/%s/runs" % a))["data"]
        self.assertEqual([r["status"] for r in runs], ["FAILED", "SUCCEEDED"])
        last = self.ok(self.call("GET", "/api/scheduling/tasks/%s/runs/last" % b))
        self.assertEqual((last["status"], last["triggeredBy"], last["taskId"], last["resourceId"]),
                         ("SUCCEEDED", a, b, APP_B))
        self.assertEqual(len(self.ok(self.call("GET", "/api/scheduling/tasks/resources/%s/runs" % APP_A))["data"]), 2)
        st = {t["id"]: t for t in self.state()["scheduling_tasks"]}
        self.assertEqual(len(st[a]["runs"]), 2)
        self.assertEqual(st[b]["events"][0]["correlation"][0]["contextAttributeValue"], a)
        self.assertTrue(next(x for x in self.state()["apps"] if x["id"] == APP_B)["lastReloadTime"])
        got = self.ok(self.call("GET", "/api/scheduling/tasks?filter=" + urllib.parse.quote('lastStatus eq "FAILED"')))
        self.assertEqual([t["id"] for t in got["data"]], [a])


class OAuth(SimCase):
    def token(self, body=None, form=False, headers=None):
        body = body if body is not None else {"grant_type": "client_credentials", "client_id": "m2m",
                                              "client_secret": "s3cret"}
        if form:
            return self.call("POST", "/oauth/token", urllib.parse.urlencode(body).encode(), key=None,
                             ctype="application/x-www-form-urlencoded", headers=headers)
        return self.call("POST", "/oauth/token", body, key=None, headers=headers)

    def test_client_credentials(self):
        t = self.ok(self.token())
        self.assertEqual(sorted(t), ["access_token", "expires_at", "expires_in", "scope", "token_type"])
        self.assertEqual((t["token_type"], t["expires_in"], t["scope"]), ("bearer", 21600, "admin_classic user_default"))
        self.assertTrue(t["expires_at"].endswith("Z"))
        me = self.ok(self.call("GET", "/api/v1/users/me", key=t["access_token"]))
        self.assertEqual(me["email"], "svc@acme.com")
        self.ok(self.call("GET", "/api/scheduling/tasks", key=t["access_token"]))
        task = self.ok(self.on_time(APP_B), 201)
        self.assertNotEqual(task["metadata"]["ownerId"], me["id"])
        f = self.ok(self.token({"grant_type": "client_credentials", "client_id": "m2m",
                                "client_secret": "s3cret", "scope": "admin_classic"}, form=True))
        self.assertEqual(f["scope"], "admin_classic")
        self.assertNotEqual(f["access_token"], t["access_token"])
        s = self.ok(self.token({"grant_type": "client_credentials", "client_id": "short", "client_secret": "x"}))
        self.assertNotIn("expires_in", s)
        self.assertIn("expires_at", s)
        self.assertEqual(self.state()["oauth"]["tokens_issued"], 3)
        time.sleep(1.1)
        self.assertEqual(self.call("GET", "/api/v1/users/me", key=s["access_token"])[0], 401)
        self.ok(self.call("GET", "/api/v1/users/me", key=t["access_token"]))

    def test_errors_and_expire(self):
        good = {"grant_type": "client_credentials", "client_id": "m2m", "client_secret": "s3cret"}
        self.fails(self.token(dict(good, client_secret="wrong")), 401, "OAUTH-3")
        self.fails(self.token(dict(good, client_id="who")), 401, "OAUTH-3")
        self.fails(self.token(dict(good, grant_type="password")), 400, "OAUTH-2")
        self.fails(self.token({"client_id": "m2m", "client_secret": "s3cret"}), 400, "OAUTH-2")
        self.fails(self.token(dict(good, scope="admin_classic root")), 400, "OAUTH-4")
        self.assertEqual(self.call("POST", "/oauth/token", b"{", key=None, ctype="application/json")[0], 400)
        self.assertEqual(self.call("GET", "/oauth/token", key=None)[0], 405)
        import base64
        basic = "Basic " + base64.b64encode(b"m2m:s3cret").decode()
        tok = self.ok(self.token({"grant_type": "client_credentials"}, form=True,
                                 headers={"Authorization": basic}))["access_token"]
        self.ok(self.call("GET", "/api/v1/users/me", key=tok))
        self.assertEqual(self.ok(self.call("POST", "/_sim/oauth/expire", key=None)), {"expired": 1})
        r = self.call("GET", "/api/v1/users/me", key=tok)
        self.fails(r, 401, "HTTP-401")
        tok2 = self.ok(self.token())["access_token"]       # renew after the 401
        self.ok(self.call("GET", "/api/v1/users/me", key=tok2))
        self.assertEqual(self.state()["oauth"]["active_tokens"], 1)


if __name__ == "__main__":
    unittest.main()
