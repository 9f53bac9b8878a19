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
from core import Response

REPORTING_ROUTES = [
    ("GET", "/apps/{appId}/report-filters"), ("POST", "/apps/{appId}/report-filters"),
    ("GET", "/apps/{appId}/report-filters/actions/count"),
    ("GET", "/apps/{appId}/report-filters/{id}"), ("PATCH", "/apps/{appId}/report-filters/{id}"),
    ("DELETE", "/apps/{appId}/report-filters/{id}"),
]

FILTER_TYPES = ("REP", "SUB")
VERSIONS = ("filter-1.0", "filter-2.0")
VALUE_TYPES = ("string", "number", "evaluate", "search")
MAX_STATES, MAX_FIELDS, MAX_VALUES = 125, 125, 150000


class ReportingMixin:
    """Report filters; needs the Cloud half's _app, _json, _page, err, _hex, _now, _scim."""

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

    def reporting_state(self):
        out = []
        for a in self.apps.values():
            for f in (a.get("_report_filters") or {}).values():
                out.append(self._filter_out(f))
        return {"report_filters": out}
