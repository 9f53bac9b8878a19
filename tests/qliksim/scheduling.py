"""qliksim — the Scheduling Tasks API (`/api/scheduling/tasks`) of the Cloud half,
and what is left of the legacy Reload Tasks API beside it.

A mixin of cloud.Cloud: it uses the Cloud's records (apps, users, spaces), its
helpers (err, _page, _json, _now, _href) and four validators the Cloud hands over
as attributes (_rrule_problem, _tz_ok, _scim, _FilterError), because this module
cannot import cloud.py (cloud.py imports it). See README-cloud.md, "Scheduling tasks".
"""
import copy
import re
import zoneinfo
from datetime import datetime, timedelta, timezone

from core import Response

SCHED = "/api/scheduling"
SPEC_VERSION = "1.16.0"
NAME_MAX = 256          # the real limit is undocumented; 256 like space names
DESCRIPTION_MAX = 1024
TASK_EVENT_SOURCE, TASK_EVENT_TYPE = "system-events.task", "com.qlik.v1.task.run.finished"
# on-task-event's onTaskStatus -> the correlation value; "any" adds no status correlation
RUN_STATUS = {"succeeded": "SUCCEEDED", "failed": "FAILED"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX24 = re.compile(r"^[0-9a-f]{24}$")
_DT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$")
# Definition fields a PUT replaces (anything else in the body is server-owned or ignored)
DEFINITION = ("name", "description", "enabled", "specVersion", "version", "annotations", "key",
              "keepActive", "start", "events", "states")
SORTABLE = ("createdAt", "enabled", "name", "ownerId", "resourceId", "spaceId", "updatedAt",
            "updatedBy", "lastStatus", "lastTriggeredBy", "lastStartedAt", "lastEndedAt",
            "lastExecutedAs", "triggerType")

SCHED_ROUTES = [
    ("GET", "/tasks"), ("POST", "/tasks"),
    ("POST", "/tasks/resources/{appId}/actions/reload/on-time-schedule"),
    ("POST", "/tasks/resources/{appId}/actions/reload/on-task-event"),
    ("GET", "/tasks/resources/{appId}/runs"),
    ("GET", "/tasks/{id}"), ("PUT", "/tasks/{id}"), ("PATCH", "/tasks/{id}"),
    ("DELETE", "/tasks/{id}"),
    ("GET", "/tasks/{id}/runs"), ("GET", "/tasks/{id}/runs/last"),
]


class _Bad(Exception):
    """A validation failure: (status, CHO code, detail)."""


def _parse_dt(value, zone):
    """ISO 8601 with or without offset (a local time is read in zone). None if invalid."""
    if not isinstance(value, str):
        return None
    m = _DT.match(value)
    if not m:
        return None
    try:
        dt = datetime(*(int(m.group(i)) for i in range(1, 7)))
    except ValueError:
        return None
    off = m.group(8)
    if off is None:
        return dt.replace(tzinfo=zone)
    if off == "Z":
        return dt.replace(tzinfo=timezone.utc)
    sign = 1 if off[0] == "+" else -1
    return dt.replace(tzinfo=timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[4:6]))))


def _pointer(path):
    if not isinstance(path, str) or not path.startswith("/"):
        raise _Bad(400, "CHO-001", "path must be a JSON Pointer")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    """The container holding parts[-1], and that key (an int for lists)."""
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            raise _Bad(400, "CHO-001", "path not found: /%s" % "/".join(parts))
    last = parts[-1]
    if isinstance(cur, list):
        if last == "-":
            return cur, len(cur)
        if not last.isdigit():
            raise _Bad(400, "CHO-001", "bad array index %r" % last)
        return cur, int(last)
    if not isinstance(cur, dict):
        raise _Bad(400, "CHO-001", "path not found: /%s" % "/".join(parts))
    return cur, last


def apply_patch(doc, ops):
    """RFC 6902 add/remove/replace/move/copy on a copy of doc (test is not in the schema)."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list) or not ops:
        raise _Bad(400, "CHO-001", "the body must be a non-empty JSON Patch array")

    def get(parts):
        cont, key = _walk(doc, parts)
        try:
            return cont[key]
        except (KeyError, IndexError):
            raise _Bad(400, "CHO-001", "path not found: /%s" % "/".join(parts))

    def remove(parts):
        value = get(parts)
        cont, key = _walk(doc, parts)
        del cont[key]
        return value

    def add(parts, value):
        cont, key = _walk(doc, parts)
        if isinstance(cont, list):
            if key > len(cont):
                raise _Bad(400, "CHO-001", "array index out of range")
            cont.insert(key, value)
        else:
            cont[key] = value

    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "move", "copy"):
            raise _Bad(400, "CHO-001", "op must be add, remove, replace, move or copy")
        parts = _pointer(op.get("path"))
        if parts[0] not in DEFINITION:
            raise _Bad(400, "CHO-001", "/%s cannot be patched" % parts[0])
        kind = op["op"]
        if kind in ("add", "replace") and "value" not in op:
            raise _Bad(400, "CHO-001", "%s needs a value" % kind)
        if kind == "remove":
            remove(parts)
        elif kind == "replace":
            get(parts)
            cont, key = _walk(doc, parts)
            cont[key] = op["value"]
        elif kind == "add":
            add(parts, op["value"])
        else:
            src = _pointer(op.get("from"))
            value = remove(src) if kind == "move" else copy.deepcopy(get(src))
            add(parts, value)
    return doc


class SchedulingMixin:
    """/api/scheduling/tasks, the legacy /api/v1/reload-tasks rules, /_sim/scheduling/fire."""

    def _sched_init(self, seed):
        self.sched_tasks = {}
        self.legacy_reload_tasks = bool(seed.get("legacy_reload_tasks", False))
        self.max_tasks_per_app = int(seed.get("max_tasks_per_app", 50))
        self._run_seq = 0
        for t in seed.get("reload_tasks") or []:
            self._seed_legacy_task(t)

    # ------------------------------------------------------------------ legacy reload tasks

    def _seed_legacy_task(self, s):
        app = next((a for a in self.apps.values() if s.get("app") in (a["id"], a["name"])), None)
        if app is None:
            raise ValueError("cloud.reload_tasks: unknown app %r" % s.get("app"))
        owner = self._seed_user_ref(s.get("owner")) or app["ownerId"]
        state = s.get("state", "Enabled")
        t = {"_seq": self._next_seq(), "id": s.get("id") or self._hex(), "tenantId": self.tenant["id"],
             "userId": owner, "spaceId": app["spaceId"] or "", "appId": app["id"],
             "timeZone": s.get("timeZone", "UTC"), "startDateTime": s.get("startDateTime", "2024-01-01T06:00:00"),
             "endDateTime": s.get("endDateTime", ""),
             "recurrence": list(s.get("recurrence") or ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0"]),
             "partial": bool(s.get("partial", False)), "autoReload": False, "autoReloadPartial": False,
             "type": "scheduled_reload", "state": state,
             "disabledCode": "MANUALLY" if state == "Disabled" else "",
             "lastExecutionTime": "", "nextExecutionTime": "", "migrated": bool(s.get("migrated", False)),
             "log": "", "createdAt": self._now()}
        self.reload_tasks[t["id"]] = t
        if t["migrated"]:
            sched = {"recurrence": t["recurrence"][0], "timezone": t["timeZone"] or "UTC",
                     "startDateTime": t["startDateTime"]}
            if t["endDateTime"]:
                sched["endDateTime"] = t["endDateTime"]
            body = self._reload_definition(s.get("name") or "Reload %s" % app["name"], "",
                                           state == "Enabled", app["id"], t["partial"], schedule=sched)
            self._store_task(body, app, owner, migrated_from=t["id"])

    def _legacy_post_gone(self):
        if not self.legacy_reload_tasks:
            raise self.err(410, "TASKS-011", "Gone",
                           "The Reload Tasks API no longer creates tasks; use POST /api/scheduling/tasks")

    def _legacy_refuse_migrated(self, t):
        if t.get("migrated"):
            raise self.err(400, "TASKS-001", "Bad Request",
                           "task %s was migrated to the scheduling service; change it with "
                           "/api/scheduling/tasks" % t["id"])

    # ------------------------------------------------------------------ records

    def _cho(self, status, code, detail):
        titles = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 422: "Unprocessable Entity"}
        return self.err(status, code, titles.get(status, "Error"), detail)

    def _sched_task(self, tid):
        t = self.sched_tasks.get(tid)
        if t is None:
            raise self._cho(404, "CHO-004", "task %s not found" % tid)
        return t

    def _reload_definition(self, name, description, enabled, app_id, partial, schedule=None,
                           events=None):
        """The definition the convenience endpoints build: one EVENT state calling app.reload."""
        body = {"name": name, "description": description, "enabled": enabled,
                "specVersion": SPEC_VERSION, "version": "1.0.0",
                "states": [{"name": "Reload", "type": "EVENT", "end": True, "exclusive": True,
                            "onEvents": [{"eventRefs": [e["name"] for e in events or []],
                                          "actions": [{"name": "app.reload",
                                                       "functionRef": {"refName": "app.reload",
                                                                       "arguments": {"appId": app_id,
                                                                                     "partial": bool(partial)}}}]}]}]}
        if schedule is not None:
            body["start"] = {"stateName": "Reload", "schedule": schedule}
        if events is not None:
            body["events"] = events
        return body

    def _store_task(self, body, app, owner, migrated_from=None, task=None):
        """Create (task None) or replace a task from a validated definition."""
        now = self._now()
        is_new = task is None
        if is_new:
            task = {"_seq": self._next_seq(), "_born": self._born(), "_runs": [],
                    "id": self.ctx.new_id(),
                    "metadata": {"createdAt": now, "createdBy": owner}}
        meta = task["metadata"]
        for k in DEFINITION:
            task.pop(k, None)
        task.update({k: copy.deepcopy(body[k]) for k in DEFINITION if k in body})
        task["enabled"] = bool(body.get("enabled", False))
        task["resourceId"] = app["id"]
        space = self.spaces.get(app["spaceId"]) if app["spaceId"] else None
        meta.update({"ownerId": owner, "scriptOwnerId": app["ownerId"], "updatedAt": now,
                     "updatedBy": owner, "tenantId": self.tenant["id"],
                     "spaceId": app["spaceId"] or "", "spaceType": space["type"] if space else "personal",
                     "resourceName": app["name"], "resourceType": "app", "usage": "ANALYTICS"})
        if migrated_from:
            meta["migratedFrom"] = migrated_from
        if task["enabled"]:
            meta.pop("disabledCode", None)
        elif not is_new:
            meta["disabledCode"] = "MANUALLY"
        self.sched_tasks[task["id"]] = task
        return task

    def _upstreams(self, t):
        """Ids of the tasks whose finished runs t's events wait for."""
        out = []
        for ev in t.get("events") or []:
            if isinstance(ev, dict) and ev.get("source") == TASK_EVENT_SOURCE:
                for c in ev.get("correlation") or []:
                    if c.get("contextAttributeName") == "id" and c.get("contextAttributeValue"):
                        out.append(c["contextAttributeValue"])
        return out

    def _sched_out(self, t):
        out = {k: copy.deepcopy(v) for k, v in t.items() if not k.startswith("_")}
        ups = self._upstreams(t)
        out["metadata"]["topology"] = {
            "isChild": bool(ups),
            "isParent": any(t["id"] in self._upstreams(o) for o in self.sched_tasks.values())}
        return out

    # ------------------------------------------------------------------ validation

    def _check_name(self, b, required=True):
        name = b.get("name")
        if name is None and not required:
            return
        if not isinstance(name, str) or not name.strip():
            raise _Bad(400, "CHO-001", "name is required")
        if len(name) > NAME_MAX:
            raise _Bad(400, "CHO-001", "name is longer than %d characters" % NAME_MAX)
        d = b.get("description")
        if d is not None and (not isinstance(d, str) or len(d) > DESCRIPTION_MAX):
            raise _Bad(400, "CHO-001", "description must be a string of at most %d characters" % DESCRIPTION_MAX)
        if "enabled" in b and not isinstance(b["enabled"], bool):
            raise _Bad(400, "CHO-001", "enabled must be a boolean")

    def _check_app(self, app_id):
        app = self.apps.get(app_id) if isinstance(app_id, str) else None
        if app is None:
            # a missing app is 403, not 404: the service cannot tell it from one the caller may not reload
            raise _Bad(403, "CHO-003", "app %s does not exist or the caller may not reload it" % app_id)
        return app

    def _check_schedule(self, sched):
        """RRULE (one string, with or without RRULE:), IANA zone, start/end, end after start and not past."""
        if isinstance(sched, str):
            sched = {"recurrence": sched}
        if not isinstance(sched, dict):
            raise _Bad(400, "CHO-001", "schedule must be a string or an object")
        rec = sched.get("recurrence")
        if rec is None and not sched.get("interval") and not sched.get("cron"):
            raise _Bad(400, "CHO-017", "the schedule needs a recurrence")
        if rec is not None:
            if not isinstance(rec, str):
                raise _Bad(400, "CHO-017", "recurrence must be one RRULE string")
            problem = self._rrule_problem(rec)
            if problem:
                raise _Bad(400, "CHO-017", "invalid recurrence %r: %s" % (rec, problem))
        tz_name = sched.get("timezone", "UTC")
        if not self._tz_ok(tz_name):
            raise _Bad(400, "CHO-017", "timezone %r is not an IANA time zone" % (tz_name,))
        zone = timezone.utc if tz_name == "UTC" else zoneinfo.ZoneInfo(tz_name)
        bounds = {}
        for k in ("startDateTime", "endDateTime"):
            if sched.get(k) not in (None, ""):
                bounds[k] = _parse_dt(sched[k], zone)
                if bounds[k] is None:
                    raise _Bad(400, "CHO-017", "%s must be an ISO 8601 date-time" % k)
        end = bounds.get("endDateTime")
        if end is not None:
            if "startDateTime" in bounds and end <= bounds["startDateTime"]:
                raise _Bad(400, "CHO-017", "endDateTime must be after startDateTime")
            if end <= self.ctx.now():
                raise _Bad(400, "CHO-017", "endDateTime is in the past")

    def _check_events(self, events):
        if events is None:
            return []
        if not isinstance(events, list):
            raise _Bad(400, "CHO-001", "events must be an array")
        names = []
        for ev in events:
            if not isinstance(ev, dict):
                raise _Bad(400, "CHO-001", "every event must be an object")
            src = ev.get("source")
            if src not in (TASK_EVENT_SOURCE, "dataset.updated"):
                raise _Bad(400, "CHO-001", "event source must be %s or dataset.updated" % TASK_EVENT_SOURCE)
            corr = ev.get("correlation") or []
            if not isinstance(corr, list) or not all(isinstance(c, dict) for c in corr):
                raise _Bad(400, "CHO-001", "correlation must be an array of objects")
            if src == TASK_EVENT_SOURCE:
                if ev.get("type") != TASK_EVENT_TYPE:
                    raise _Bad(400, "CHO-001", "a %s event has type %s" % (TASK_EVENT_SOURCE, TASK_EVENT_TYPE))
                ids = [c.get("contextAttributeValue") for c in corr if c.get("contextAttributeName") == "id"]
                if len(ids) != 1 or ids[0] not in self.sched_tasks:
                    raise _Bad(400, "CHO-016", "the event's correlation id must name an existing task")
            names.append(ev.get("name"))
        return names

    def _check_definition(self, b):
        """Validate a full Task body; returns the app its app.reload action reloads."""
        if not isinstance(b, dict):
            raise _Bad(400, "CHO-001", "the body must be a JSON object")
        self._check_name(b)
        if not isinstance(b.get("specVersion"), str) or not b["specVersion"]:
            raise _Bad(400, "CHO-001", "specVersion is required")
        event_names = self._check_events(b.get("events"))
        states = b.get("states")
        if not isinstance(states, list) or not states:
            raise _Bad(400, "CHO-001", "states must be a non-empty array")
        app_ids = []
        for st in states:
            if not isinstance(st, dict):
                raise _Bad(400, "CHO-001", "every state must be an object")
            for oe in st.get("onEvents") or []:
                refs = oe.get("eventRefs") if isinstance(oe, dict) else None
                if not isinstance(refs, list):
                    raise _Bad(400, "CHO-001", "onEvents[].eventRefs is required")
                unknown = [r for r in refs if r not in event_names]
                if unknown:
                    raise _Bad(400, "CHO-001", "eventRefs name no event: %s" % unknown)
                for act in oe.get("actions") or []:
                    fr = act.get("functionRef") if isinstance(act, dict) else None
                    if isinstance(fr, dict) and fr.get("refName") == "app.reload":
                        app_ids.append((fr.get("arguments") or {}).get("appId"))
        if not app_ids:
            raise _Bad(400, "CHO-001", "states must hold an app.reload action with arguments.appId")
        app = self._check_app(app_ids[0])
        start = b.get("start")
        if start is not None:
            if not isinstance(start, dict) or "schedule" not in start:
                raise _Bad(400, "CHO-001", "start needs a schedule")
            self._check_schedule(start["schedule"])
        return app

    def _check_room(self, app, exclude=None):
        n = sum(1 for t in self.sched_tasks.values() if t["resourceId"] == app["id"] and t["id"] != exclude)
        if n >= self.max_tasks_per_app:
            raise _Bad(422, "CHO-014", "app %s already has the maximum of %d tasks"
                       % (app["id"], self.max_tasks_per_app))

    def _validated(self, fn, *args):
        try:
            return fn(*args)
        except _Bad as bad:
            raise self._cho(*bad.args)

    # ------------------------------------------------------------------ handlers

    def _task_filter(self, text):
        def meta(k):
            return lambda t: t["metadata"].get(k)

        def last(k):
            return lambda t: (t["_runs"][-1].get(k) if t["_runs"] else None)
        attrs = {"name": lambda t: t["name"], "enabled": lambda t: t["enabled"],
                 "resourceid": lambda t: t["resourceId"], "ownerid": meta("ownerId"),
                 "spaceid": meta("spaceId"), "createdat": meta("createdAt"),
                 "updatedat": meta("updatedAt"), "updatedby": meta("updatedBy"),
                 "laststatus": last("status"), "lasttriggeredby": last("triggeredBy"),
                 "laststartedat": last("startedAt"), "lastendedat": last("endedAt"),
                 "lastexecutedas": last("executedAs"),
                 "triggertype": lambda t: "event" if t.get("events") else "schedule"}
        try:
            return self._scim(text, attrs, ops=("eq", "ne", "co", "sw"))
        except self._FilterError as exc:
            raise self._cho(400, "CHO-001", "invalid filter: %s" % exc)

    def _sort_value(self, t, field):
        if field in ("name", "enabled", "resourceId"):
            v = t[field]
        elif field.startswith("last"):
            key = {"lastStatus": "status", "lastTriggeredBy": "triggeredBy", "lastStartedAt": "startedAt",
                   "lastEndedAt": "endedAt", "lastExecutedAs": "executedAs"}[field]
            v = t["_runs"][-1].get(key) if t["_runs"] else None
        elif field == "triggerType":
            v = "event" if t.get("events") else "schedule"
        else:
            v = t["metadata"].get(field)
        return (v is None, str(v).casefold() if not isinstance(v, bool) else str(v), t["_seq"])

    def h_get_sched_tasks(self, req, me):
        recs = list(self.sched_tasks.values())
        if req.query.get("resourceId"):
            recs = [t for t in recs if t["resourceId"] == req.query["resourceId"]]
        if req.query.get("filter"):
            pred = self._task_filter(req.query["filter"])
            recs = [t for t in recs if pred(t)]
        sort = req.query.get("sort") or "-updatedAt"
        field = sort.lstrip("+-")
        if field not in SORTABLE:
            raise self._cho(400, "CHO-001", "cannot sort by %r" % sort)
        order = (lambda t, f=field: self._sort_value(t, f), sort.startswith("-"))
        recs = self._settled(req, recs)   # the catalogue lag (cloud.py)
        page, links, _ = self._page(req, recs, 10, param="page", sort_key=order)
        return self._ok({"data": [self._sched_out(t) for t in page], "links": links})

    def h_post_sched_tasks(self, req, me):
        b = self._json(req)
        app = self._validated(self._check_definition, b)
        self._validated(self._check_room, app)
        migrated = req.query.get("migrateFrom") or None
        if migrated is not None and not _HEX24.match(migrated):
            raise self._cho(400, "CHO-001", "migrateFrom must be a reload-task id (24 hex digits)")
        t = self._store_task(b, app, me["id"], migrated_from=migrated)
        return self._ok(self._sched_out(t), 201)

    def h_get_sched_tasks_x(self, req, me, id):
        return self._ok(self._sched_out(self._sched_task(id)))

    def h_put_sched_tasks_x(self, req, me, id):
        t = self._sched_task(id)
        b = self._json(req)
        app = self._validated(self._check_definition, b)
        self._validated(self._check_room, app, id)
        return self._ok(self._sched_out(self._store_task(b, app, me["id"], task=t)))

    def h_patch_sched_tasks_x(self, req, me, id):
        t = self._sched_task(id)
        ops = self._json(req, want=list)
        current = {k: t[k] for k in DEFINITION if k in t}
        b = self._validated(apply_patch, current, ops)
        app = self._validated(self._check_definition, b)
        self._validated(self._check_room, app, id)
        return self._ok(self._sched_out(self._store_task(b, app, me["id"], task=t)))

    def h_delete_sched_tasks_x(self, req, me, id):
        self._sched_task(id)
        del self.sched_tasks[id]
        return Response(204)

    def _convenience(self, req, appId, fields):
        b = self._json(req)
        bad = [k for k in b if k not in fields]
        if bad:
            raise self._cho(400, "CHO-001", "unknown fields: %s" % ", ".join(sorted(bad)))
        self._validated(self._check_name, b)
        if not _UUID.match(appId):
            raise self._cho(400, "CHO-001", "the path id must be an app id (UUID)")
        app = self._validated(self._check_app, appId)
        return b, app

    def h_post_sched_tasks_resources_x_actions_reload_on_time_schedule(self, req, me, appId):
        b, app = self._convenience(req, appId, ("recurrence", "timezone", "startDateTime", "endDateTime",
                                                "enabled", "name", "description", "partial"))
        rec = b.get("recurrence")
        if isinstance(rec, list) and len(rec) == 1:
            rec = rec[0]        # the docs do not say string or array: take a one-line array too
        if not isinstance(rec, str):
            raise self._cho(400, "CHO-001", "recurrence must be one RRULE string")
        if "partial" in b and not isinstance(b["partial"], bool):
            raise self._cho(400, "CHO-001", "partial must be a boolean")
        sched = {"recurrence": rec, "timezone": b.get("timezone") or "UTC",
                 "startDateTime": b.get("startDateTime") or self.ctx.now().strftime("%Y-%m-%dT%H:%M:%S")}
        if b.get("endDateTime"):
            sched["endDateTime"] = b["endDateTime"]
        self._validated(self._check_schedule, sched)
        self._validated(self._check_room, app)
        body = self._reload_definition(b["name"], b.get("description", ""), b.get("enabled", False),
                                       app["id"], b.get("partial", False), schedule=sched)
        return self._ok(self._sched_out(self._store_task(body, app, me["id"])), 201)

    def h_post_sched_tasks_resources_x_actions_reload_on_task_event(self, req, me, appId):
        b, app = self._convenience(req, appId, ("onTaskId", "onTaskStatus", "enabled", "name",
                                                "description", "partial"))
        status = b.get("onTaskStatus", "succeeded")
        if status not in ("succeeded", "failed", "any"):
            raise self._cho(400, "CHO-001", "onTaskStatus must be succeeded, failed or any")
        up_id = b.get("onTaskId")
        if not isinstance(up_id, str) or not _UUID.match(up_id) or up_id not in self.sched_tasks:
            raise self._cho(400, "CHO-016", "onTaskId %r is not the id of a task in this tenant" % (up_id,))
        up = self.sched_tasks[up_id]
        corr = [{"contextAttributeName": "id", "contextAttributeValue": up_id}]
        if status != "any":
            corr.append({"contextAttributeName": "status", "contextAttributeValue": RUN_STATUS[status]})
        corr += [{"contextAttributeName": "appId", "contextAttributeValue": up["resourceId"]},
                 {"contextAttributeName": "spaceId", "contextAttributeValue": up["metadata"]["spaceId"]}]
        events = [{"name": "upstream-task-finished", "source": TASK_EVENT_SOURCE, "type": TASK_EVENT_TYPE,
                   "correlation": corr}]
        self._validated(self._check_room, app)
        body = self._reload_definition(b["name"], b.get("description", ""), b.get("enabled", False),
                                       app["id"], b.get("partial", False), events=events)
        return self._ok(self._sched_out(self._store_task(body, app, me["id"])), 201)

    def h_get_sched_tasks_x_runs(self, req, me, id):
        runs = sorted(self._sched_task(id)["_runs"], key=lambda r: r["_seq"], reverse=True)
        page, links, _ = self._page(req, runs, 10, param="page")
        return self._ok({"data": [self._run_out(r) for r in page], "links": links})

    def h_get_sched_tasks_x_runs_last(self, req, me, id):
        runs = self._sched_task(id)["_runs"]
        if not runs:
            raise self._cho(404, "CHO-004", "task %s has never run" % id)
        return self._ok(self._run_out(runs[-1]))

    def h_get_sched_tasks_resources_x_runs(self, req, me, appId):
        runs = [r for t in self.sched_tasks.values() if t["resourceId"] == appId for r in t["_runs"]]
        runs.sort(key=lambda r: r["_seq"], reverse=True)
        page, links, _ = self._page(req, runs, 10, param="page")
        return self._ok({"data": [self._run_out(r) for r in page], "links": links})

    @staticmethod
    def _run_out(r):
        return {k: v for k, v in r.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ /_sim/scheduling/fire

    def _record_run(self, t, status, triggered_by):
        self._run_seq += 1
        now = self._now()
        run = {"_seq": self._run_seq, "id": self.ctx.new_id(), "status": status, "startedAt": now,
               "endedAt": now, "triggeredBy": triggered_by, "executedAs": t["metadata"]["ownerId"],
               "workerId": self._hex(), "workerType": "reload", "taskId": t["id"], "taskName": t["name"],
               "actionId": "app.reload", "resourceId": t["resourceId"],
               "taskMeta": {k: v for k, v in t["metadata"].items()}}
        t["_runs"].append(run)
        app = self.apps.get(t["resourceId"])
        if app is not None and status == "SUCCEEDED":
            app["lastReloadTime"] = now

    @staticmethod
    def _event_matches(ev, task_id, status):
        if not isinstance(ev, dict) or ev.get("source") != TASK_EVENT_SOURCE:
            return False
        corr = {c.get("contextAttributeName"): c.get("contextAttributeValue")
                for c in ev.get("correlation") or [] if isinstance(c, dict)}
        want = (corr.get("status") or "any").upper()
        return corr.get("id") == task_id and want in ("ANY", status)

    def _waiting_on(self, t):
        """Event names that must all have arrived (exclusive:false) or any one (True, False)."""
        for st in t.get("states") or []:
            for oe in st.get("onEvents") or []:
                refs = oe.get("eventRefs") or []
                if refs:
                    return set(refs), st.get("exclusive", True) is not False
        return set(), True

    def sched_fire(self, body):
        """Run a task with the given outcome, then every task chained on it, breadth first."""
        tid = body.get("taskId")
        if tid not in self.sched_tasks:
            return Response(404, {"error": "unknown task %r" % (tid,)})
        outcomes = {"succeeded": "SUCCEEDED", "failed": "FAILED"}
        status = outcomes.get(str(body.get("status", "succeeded")).lower())
        given = body.get("outcomes") or {}
        if status is None or not isinstance(given, dict) or \
                any(str(v).lower() not in outcomes for v in given.values()):
            return Response(400, {"error": "status (and outcomes values) must be succeeded or failed"})
        ran, order, queue = set(), [], [(tid, status, "manual")]
        arrived = {}            # task id -> names of its events seen in this cascade
        while queue:
            cur, st, by = queue.pop(0)
            if cur in ran:
                continue        # a cycle, or two upstreams of one task: it runs once per cascade
            ran.add(cur)
            t = self.sched_tasks[cur]
            self._record_run(t, st, by)
            order.append({"taskId": cur, "name": t["name"], "resourceId": t["resourceId"],
                          "triggeredBy": by, "enabled": t["enabled"], "status": st})
            for other in self.sched_tasks.values():
                if other["id"] in ran:
                    continue
                hits = {ev.get("name") for ev in other.get("events") or [] if self._event_matches(ev, cur, st)}
                if not hits:
                    continue
                seen = arrived.setdefault(other["id"], set())
                seen |= hits
                needed, any_one = self._waiting_on(other)
                if any_one or not needed or needed <= seen:
                    nxt = outcomes[str(given.get(other["id"], "succeeded")).lower()]
                    queue.append((other["id"], nxt, cur))
        return Response(200, order)

    def sched_state(self):
        out = []
        for t in self.sched_tasks.values():
            x = self._sched_out(t)
            x["runs"] = [self._run_out(r) for r in t["_runs"]]
            out.append(x)
        return out

    def _drop_app_tasks(self, app_id):
        for t in [t for t in self.sched_tasks.values() if t["resourceId"] == app_id]:
            del self.sched_tasks[t["id"]]
