"""Qlik Cloud reporting in qliksim: report filters of an app (/api/v1/apps/{appId}/report-filters).

Modelled on the reference (qlik.dev apps API, the @qlik/api 2.19 apps.d.ts FilterRequest,
Filter, FilterList and FilterError types; docs/nprinting.md):
  * POST body {name, filterType: REP|SUB, filterVersion: filter-1.0|filter-2.0, description?,
    ownerId?, filterV1_0: {fieldsByState: {state: [{name, values: [{valueAsText,
    valueAsNumber, valueType: string|number|evaluate|search}], overrideValues,
    selectExcluded}]}, variables: [{name, value, evaluate}]}} -> 201 with the filter.
  * Unknown app -> 404 REP-404000; a malformed body -> 400 REP-400000; a field the app's
    data model does not have -> 400 REP-400044 (missing or renamed field); a name another
    filter of the app already has -> 409 REP-409043; more than 125 states, 125 fields or
    150000 values -> 400 REP-400000.
  * GET list needs filterTypes (REP, SUB; repeated or comma separated), takes filter
    (SCIM: name/description co, id/ownerId eq), limit (1..100, default 20), page (a
    cursor), sort; its items carry no filter definition (filterV1_0), as the reference
    says; GET one has it.  PATCH [{op: replace, path: /filter, value: {Filter: {...}}}]
    -> 204; DELETE -> 204.  A deleted app takes its filters with it.
"""
import json
import os
import shutil
from datetime import timedelta

from core import Response

REPORTING_ROUTES = [
    ("GET", "/report-templates"), ("POST", "/report-templates"),
    ("GET", "/report-templates/{id}"), ("PUT", "/report-templates/{id}"), ("DELETE", "/report-templates/{id}"),
    ("POST", "/report-templates/{id}/actions/download"),
    ("GET", "/sharing-tasks"), ("POST", "/sharing-tasks"),
    ("GET", "/sharing-tasks/{taskId}"), ("PATCH", "/sharing-tasks/{taskId}"), ("DELETE", "/sharing-tasks/{taskId}"),
    ("GET", "/apps/{appId}/report-filters"), ("POST", "/apps/{appId}/report-filters"),
    ("GET", "/apps/{appId}/report-filters/actions/count"),
    ("GET", "/apps/{appId}/report-filters/{id}"), ("PATCH", "/apps/{appId}/report-filters/{id}"),
    ("DELETE", "/apps/{appId}/report-filters/{id}"),
]

FILTER_TYPES = ("REP", "SUB")
VERSIONS = ("filter-1.0", "filter-2.0")
VALUE_TYPES = ("string", "number", "evaluate", "search")
MAX_STATES, MAX_FIELDS, MAX_VALUES = 125, 125, 150000
# a template file's type (as NPrinting names it) -> the report template type
TEMPLATE_TYPES = {"excel": "excel", "word": "word", "powerpoint": "powerPoint", "html": "html",
                  "pixelperfect": "pixelPerfect"}
# a report template type -> the type a sharing task's template entry names
SHARING_TEMPLATE_TYPES = {"excel": "excel", "word": "word", "powerPoint": "powerpoint", "html": "html",
                          "pixelPerfect": "pixel-perfect"}
TASK_TYPES = ("chart-monitoring", "chart-sharing", "sheet-sharing", "template-sharing")


class ReportingMixin:
    """Report filters, templates and sharing tasks; needs the Cloud half's _json, _page, err,
    _hex, _now, _scim, _rrule_problem, _tz_ok, temp."""

    def _reporting_init(self):
        self.report_templates = {}
        self.sharing_tasks = {}

    def _rep_err(self, status, code, title, detail=None):
        return self.err(status, code, title, detail)

    def _rep_app(self, appId):
        a = self.apps.get(appId)
        if a is None:
            raise self._rep_err(404, "REP-404000", "Not found", "app %s not found" % appId)
        a.setdefault("_report_filters", {})
        return a

    def _app_fields(self, a):
        out = set()
        for t in a["data_model"].get("tables") or []:
            for f in t.get("fields") or []:
                out.add(f if isinstance(f, str) else f.get("name", ""))
        return out

    def _check_filter_def(self, a, body):
        bad = lambda why: self._rep_err(400, "REP-400000", "Bad request", why)  # noqa: E731
        if body.get("filterVersion") not in VERSIONS:
            raise bad("filterVersion must be one of %s" % ", ".join(VERSIONS))
        definition = body.get("filterV1_0")
        if definition is None:
            return None
        if not isinstance(definition, dict):
            raise bad("filterV1_0 must be an object")
        states = definition.get("fieldsByState") or {}
        if not isinstance(states, dict) or len(states) > MAX_STATES:
            raise bad("fieldsByState must be an object of at most %d states" % MAX_STATES)
        known, nfields, nvalues = self._app_fields(a), 0, 0
        for state, fields in states.items():
            if not isinstance(fields, list):
                raise bad("fieldsByState.%s must be a list" % state)
            for f in fields:
                if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
                    raise bad("every field needs a name")
                nfields += 1
                values = f.get("values") or []
                if not isinstance(values, list):
                    raise bad("field %s: values must be a list" % f["name"])
                for v in values:
                    if not isinstance(v, dict) or v.get("valueType", "string") not in VALUE_TYPES:
                        raise bad("field %s: a value's valueType must be one of %s" % (f["name"], ", ".join(VALUE_TYPES)))
                    if v.get("valueType") == "number" and not isinstance(v.get("valueAsNumber"), (int, float)):
                        raise bad("field %s: a number value needs valueAsNumber" % f["name"])
                nvalues += len(values)
                if f["name"] not in known:
                    raise self._rep_err(400, "REP-400044", "Missing or renamed field",
                                        "field %s does not exist in app %s" % (f["name"], a["id"]))
        if nfields > MAX_FIELDS or nvalues > MAX_VALUES:
            raise bad("at most %d fields and %d values" % (MAX_FIELDS, MAX_VALUES))
        for v in definition.get("variables") or []:
            if not isinstance(v, dict) or not isinstance(v.get("name"), str):
                raise bad("every variable needs a name")
        return definition

    def _filter_types(self, req):
        raw = [v for k, v in req.query_list if k == "filterTypes"]
        types = [t for v in raw for t in v.split(",") if t]
        if not types:
            raise self._rep_err(400, "REP-400000", "Bad request", "filterTypes is required")
        for t in types:
            if t not in FILTER_TYPES:
                raise self._rep_err(400, "REP-400000", "Bad request", "unknown filterType %s" % t)
        return set(types)

    @staticmethod
    def _filter_out(f, with_definition=True):
        out = {k: v for k, v in f.items() if not k.startswith("_")}
        if not with_definition:
            out.pop("filterV1_0", None)
        return out

    def h_get_apps_x_report_filters(self, req, me, appId):
        a = self._rep_app(appId)
        types = self._filter_types(req)
        recs = [f for f in a["_report_filters"].values() if f["filterType"] in types]
        text = req.query.get("filter")
        if text:
            try:
                pred = self._scim(text, {"name": lambda f: f["name"], "description": lambda f: f["description"],
                                         "id": lambda f: f["id"], "ownerId": lambda f: f["ownerId"]},
                                  ops=("eq", "co"))
            except self._FilterError as exc:
                raise self._rep_err(400, "REP-400000", "Bad request", "invalid filter: %s" % exc)
            recs = [f for f in recs if pred(f)]
        page, links, _ = self._page(req, recs, default_limit=20, param="page")
        return self._ok({"data": [self._filter_out(f, False) for f in page], "links": links})

    def h_get_apps_x_report_filters_actions_count(self, req, me, appId):
        a = self._rep_app(appId)
        types = self._filter_types(req)
        return self._ok({"total": sum(1 for f in a["_report_filters"].values() if f["filterType"] in types)})

    def _name_taken(self, a, name, exclude=None):
        return any(f["name"] == name and f["id"] != exclude for f in a["_report_filters"].values())

    def h_post_apps_x_report_filters(self, req, me, appId):
        a = self._rep_app(appId)
        body = self._json(req)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self._rep_err(400, "REP-400000", "Bad request", "name is required")
        if body.get("filterType") not in FILTER_TYPES:
            raise self._rep_err(400, "REP-400000", "Bad request", "filterType must be REP or SUB")
        definition = self._check_filter_def(a, body)
        if self._name_taken(a, name):
            raise self._rep_err(409, "REP-409043", "Filter name conflict",
                                "the filter name must be unique: %s" % name)
        now = self._now()
        fid = self._hex()
        f = {"_seq": self._next_seq(), "id": fid, "appId": appId, "name": name,
             "description": body.get("description") or "", "filterType": body["filterType"],
             "filterVersion": body["filterVersion"], "ownerId": body.get("ownerId") or me["id"],
             "createdAt": now, "updatedAt": now}
        if definition is not None:
            f["filterV1_0"] = definition
        a["_report_filters"][fid] = f
        return self._ok(self._filter_out(f), 201)

    def _report_filter(self, appId, fid):
        a = self._rep_app(appId)
        f = a["_report_filters"].get(fid)
        if f is None:
            raise self._rep_err(404, "REP-404000", "Not found", "filter %s not found" % fid)
        return a, f

    def h_get_apps_x_report_filters_x(self, req, me, appId, id):
        return self._ok(self._filter_out(self._report_filter(appId, id)[1]))

    def h_patch_apps_x_report_filters_x(self, req, me, appId, id):
        a, f = self._report_filter(appId, id)
        ops = self._json(req, want=list)
        changed = dict(f)
        for op in ops:
            if not isinstance(op, dict) or op.get("op") != "replace" or op.get("path") != "/filter":
                raise self._rep_err(400, "REP-400000", "Bad request", "only replace of /filter is supported")
            value = op.get("value") or {}
            item = value.get("Filter") if isinstance(value, dict) else None
            if not isinstance(item, dict):
                raise self._rep_err(400, "REP-400000", "Bad request", "value.Filter must be an object")
            for k in ("id", "filterType", "appId"):
                if k in item:
                    raise self._rep_err(400, "REP-400000", "Bad request", "%s cannot be patched" % k)
            for k in ("name", "description", "ownerId", "filterVersion", "filterV1_0"):
                if k in item:
                    changed[k] = item[k]
        if not isinstance(changed.get("name"), str) or not changed["name"].strip():
            raise self._rep_err(400, "REP-400000", "Bad request", "name is required")
        definition = self._check_filter_def(a, changed)
        if self._name_taken(a, changed["name"], exclude=id):
            raise self._rep_err(409, "REP-409043", "Filter name conflict",
                                "the filter name must be unique: %s" % changed["name"])
        if definition is not None:
            changed["filterV1_0"] = definition
        changed["updatedAt"] = self._now()
        a["_report_filters"][id] = changed
        return Response(204)

    def h_delete_apps_x_report_filters_x(self, req, me, appId, id):
        a, _ = self._report_filter(appId, id)
        del a["_report_filters"][id]
        return Response(204)

    # ================================================================ report templates
    #
    # The template file is read from the temporary content: the sim's template files are
    # JSON {type, fields, sourceAppId?, ...} (what its NPrinting half exports).  No
    # sourceAppId in the body -> the file's; "validate" -> they must be equal; "replace"
    # -> the body's.  An unknown app -> 404; a field the app does not have -> 400
    # REP-400044; a file that is not a template, or of a type reporting has no template
    # for -> 400.

    def _template_file(self, tid):
        t = self.temp.get(tid) if isinstance(tid, str) else None
        if t is None:
            raise self._rep_err(400, "REP-400000", "Bad request", "temporary content %s not found" % tid)
        try:
            with open(t["path"], encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise self._rep_err(400, "REP-400000", "Bad request", "the file is not a report template")
        typ = TEMPLATE_TYPES.get(doc["type"].lower())
        if typ is None:
            raise self._rep_err(400, "REP-400000", "Bad request",
                                "template type %s is not supported" % doc["type"])
        return t, doc, typ

    def h_post_report_templates(self, req, me):
        body = self._json(req)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self._rep_err(400, "REP-400000", "Bad request", "name is required")
        t, _, typ, a = self._checked_template(body)
        app_id = a["id"]
        now = self._now()
        rid = self.ctx.new_id()
        path = os.path.join(self.data_dir, "template-" + rid)
        shutil.copyfile(t["path"], path)
        rec = {"_seq": self._next_seq(), "_path": path, "id": rid, "name": name,
               "description": body.get("description") or "", "type": typ, "sourceAppId": app_id,
               "sourceAppName": a["name"], "ownerId": me["id"], "createdBy": me["id"], "updatedBy": me["id"],
               "createdAt": now, "updatedAt": now, "metadataVersion": 1}
        self.report_templates[rid] = rec
        return self._ok(self._pub(rec), 201)

    def _checked_template(self, body, app_id=None):
        """(temp record, file, type, app) for a create or update body; raises the 4xx."""
        t, doc, typ = self._template_file(body.get("temporaryContentId"))
        action = body.get("sourceAppAction")
        if action not in (None, "validate", "replace"):
            raise self._rep_err(400, "REP-400000", "Bad request", "sourceAppAction must be validate or replace")
        app_id = body.get("sourceAppId") or app_id or doc.get("sourceAppId")
        if not app_id:
            raise self._rep_err(400, "REP-400000", "Bad request", "the template names no source app")
        if action == "validate" and doc.get("sourceAppId") != app_id:
            raise self._rep_err(400, "REP-400000", "Bad request", "the template's source app is not %s" % app_id)
        a = self._rep_app(app_id)
        known = self._app_fields(a)
        for f in doc.get("fields") or []:
            if f not in known:
                raise self._rep_err(400, "REP-400044", "Missing or renamed field",
                                    "template field %s does not exist in app %s" % (f, app_id))
        return t, doc, typ, a

    def h_put_report_templates_x(self, req, me, id):
        """updateReportTemplate: a new file (and name, description) for the same template id."""
        rec = self._report_template(id)
        body = self._json(req)
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise self._rep_err(400, "REP-400000", "Bad request", "name is required")
        t, _, typ, a = self._checked_template(body, rec["sourceAppId"])
        if typ != rec["type"]:
            raise self._rep_err(400, "REP-400000", "Bad request", "the template type cannot change")
        shutil.copyfile(t["path"], rec["_path"])
        rec.update({"name": body["name"], "description": body.get("description") or "", "sourceAppId": a["id"],
                    "sourceAppName": a["name"], "updatedAt": self._now(), "updatedBy": me["id"]})
        return self._ok(self._pub(rec))

    def _report_template(self, rid):
        rec = self.report_templates.get(rid)
        if rec is None:
            raise self._rep_err(404, "REP-404000", "Not found", "template %s not found" % rid)
        return rec

    def h_get_report_templates(self, req, me):
        recs = list(self.report_templates.values())
        app = req.query.get("sourceAppId")
        if app:
            recs = [r for r in recs if r["sourceAppId"] == app]
        name = (req.query.get("name") or "").lower()
        if name:
            recs = [r for r in recs if name in r["name"].lower()]
        page, links, _ = self._page(req, recs, default_limit=20)
        return self._ok({"data": [self._pub(r) for r in page], "links": links})

    def h_get_report_templates_x(self, req, me, id):
        return self._ok(self._pub(self._report_template(id)))

    def h_delete_report_templates_x(self, req, me, id):
        rec = self._report_template(id)
        del self.report_templates[id]
        try:
            os.remove(rec["_path"])
        except OSError:
            pass
        return Response(204)

    def h_post_report_templates_x_actions_download(self, req, me, id):
        rec = self._report_template(id)
        return Response(200, file=rec["_path"], content_type="application/octet-stream")

    # ================================================================ sharing tasks
    #
    # POST {name, type, templates: [{type, templateId, fileName?}], state, scheduleOptions:
    # {recurrence: [RRULE...] (1..5, no DTSTART/UNTIL), timezone, startDateTime (local, no
    # offset, not older than a year), endDateTime?}, recipients: {userIds: [{value}],
    # groupIds?, emailAddresses?}, description?, enabled?} -> 201.  A template-sharing task
    # needs templates naming existing report templates of one app; recipients must be users
    # of the tenant.  Errors: 400 {"errors": [{code, title, detail}]} (codes inferred).
    # The listing is {"sharingTasks": [...], "links"}, filtered by ?appid.

    def _share_err(self, detail):
        return self.err(400, "SHARING-400", "Bad request", detail)

    def _check_sharing(self, b):
        """Validates a task body; -> (app id, recurrence, timezone, start, recipients)."""
        if not isinstance(b.get("name"), str) or not b["name"].strip():
            raise self._share_err("name is required")
        if b.get("type") not in TASK_TYPES:
            raise self._share_err("type must be one of %s" % ", ".join(TASK_TYPES))
        if not isinstance(b.get("state"), dict):
            raise self._share_err("state is required")
        templates = b.get("templates")
        if not isinstance(templates, list) or not templates:
            raise self._share_err("templates is required")
        app_ids = set()
        for t in templates:
            if not isinstance(t, dict) or t.get("type") not in SHARING_TEMPLATE_TYPES.values():
                raise self._share_err("a template entry needs a type of a report template")
            rec = self.report_templates.get(t.get("templateId"))
            if rec is None:
                raise self._share_err("template %s not found" % t.get("templateId"))
            if SHARING_TEMPLATE_TYPES[rec["type"]] != t["type"]:
                raise self._share_err("template %s is of type %s" % (rec["id"], rec["type"]))
            app_ids.add(rec["sourceAppId"])
        if len(app_ids) != 1:
            raise self._share_err("the templates of a task must use one app")
        so = b.get("scheduleOptions") or {}
        rec_rules = so.get("recurrence")
        if not isinstance(rec_rules, list) or not 1 <= len(rec_rules) <= 5:
            raise self._share_err("scheduleOptions.recurrence must hold 1 to 5 rules")
        for line in rec_rules:
            why = self._rrule_problem(line)
            if why or "UNTIL" in str(line).upper():
                raise self._share_err("scheduleOptions.recurrence: %s" % (why or "UNTIL is not allowed"))
        tz = so.get("timezone") or "UTC"
        if not self._tz_ok(tz):
            raise self._share_err("unknown timezone %s" % tz)
        start = so.get("startDateTime")
        if start:
            try:
                dt = self._task_datetime(start, True)
            except ValueError as exc:
                raise self._share_err("scheduleOptions.startDateTime %s" % exc)
            if dt < self.ctx.now().replace(tzinfo=None) - timedelta(days=366):
                raise self._share_err("scheduleOptions.startDateTime must not be older than 1 year")
        recipients = b.get("recipients") or {}
        for r in recipients.get("userIds") or []:
            if not isinstance(r, dict) or r.get("value") not in self.users:
                raise self._share_err("recipient user %s not found" % (r or {}).get("value"))
        return app_ids.pop(), rec_rules, tz, start, recipients

    def h_post_sharing_tasks(self, req, me):
        b = self._json(req)
        app_id, rec_rules, tz, start, recipients = self._check_sharing(b)
        so = b.get("scheduleOptions") or {}
        now = self._now()
        tid = self._hex()
        task = {"_seq": self._next_seq(), "id": tid, "name": b["name"], "description": b.get("description") or "",
                "type": b["type"], "templates": b["templates"], "state": b["state"],
                "scheduleOptions": {"recurrence": list(rec_rules), "timezone": tz,
                                    "startDateTime": start or self.ctx.now().strftime("%Y-%m-%dT%H:%M:%S"),
                                    "endDateTime": so.get("endDateTime") or "",
                                    "chronosJobID": self._hex()},
                "recipients": {"userIds": [{"value": r["value"], "enabled": True}
                                           for r in recipients.get("userIds") or []],
                               "groupIds": list(recipients.get("groupIds") or []),
                               "emailAddresses": list(recipients.get("emailAddresses") or [])},
                "enabled": b.get("enabled", True) is not False, "appId": app_id, "owner": me["id"],
                "ownerName": me.get("name", ""), "createdBy": me["id"], "dateCreated": now, "lastUpdated": now,
                "status": "active"}
        self.sharing_tasks[tid] = task
        return self._ok(self._pub(task), 201)

    def _sharing_task(self, tid):
        t = self.sharing_tasks.get(tid)
        if t is None:
            raise self.err(404, "SHARING-404", "Not found", "sharing task %s not found" % tid)
        return t

    def h_get_sharing_tasks(self, req, me):
        recs = list(self.sharing_tasks.values())
        app = req.query.get("appid")
        if app:
            recs = [t for t in recs if t["appId"] == app]
        page, links, _ = self._page(req, recs, default_limit=10, param="page")
        return self._ok({"sharingTasks": [self._pub(t) for t in page], "links": links})

    def h_get_sharing_tasks_x(self, req, me, taskId):
        return self._ok(self._pub(self._sharing_task(taskId)))

    PATCHABLE = ("/name", "/enabled", "/description", "/scheduleOptions", "/templates", "/recipients")

    def h_patch_sharing_tasks_x(self, req, me, taskId):
        """[{op: replace, path, value}] on the paths the reference lists (some of them) -> 204."""
        task = self._sharing_task(taskId)
        ops = self._json(req, want=list)
        changed = json.loads(json.dumps(self._pub(task)))
        for op in ops:
            if not isinstance(op, dict) or op.get("op") != "replace" or op.get("path") not in self.PATCHABLE:
                raise self._share_err("only replace of %s" % ", ".join(self.PATCHABLE))
            changed[op["path"][1:]] = op.get("value")
        checked = changed
        probe = dict(checked)
        probe["scheduleOptions"] = {k: v for k, v in (checked.get("scheduleOptions") or {}).items()
                                    if k in ("recurrence", "timezone", "startDateTime", "endDateTime")}
        probe["recipients"] = {"userIds": [{"value": r.get("value")} for r in
                                           (checked.get("recipients") or {}).get("userIds") or []]}
        self._check_sharing(probe)
        for k in ("name", "enabled", "description", "templates"):
            task[k] = checked[k]
        task["scheduleOptions"].update(probe["scheduleOptions"])
        task["recipients"]["userIds"] = [{"value": r["value"], "enabled": True} for r in probe["recipients"]["userIds"]]
        task["lastUpdated"] = self._now()
        return Response(204)

    def h_delete_sharing_tasks_x(self, req, me, taskId):
        self._sharing_task(taskId)
        del self.sharing_tasks[taskId]
        return Response(204)

    def reporting_state(self):
        out = []
        for a in self.apps.values():
            for f in (a.get("_report_filters") or {}).values():
                out.append(self._filter_out(f))
        return {"report_filters": out,
                "report_templates": [self._pub(r) for r in self.report_templates.values()],
                "sharing_tasks": [self._pub(t) for t in self.sharing_tasks.values()]}
