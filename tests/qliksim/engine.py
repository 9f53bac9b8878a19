"""The simulated Qlik engine (QIX JSON-RPC over WebSocket) on both halves.

Served on the halves' own listeners (`install`): a request with `Upgrade:
websocket` to `/app/<appId>` becomes an engine session (wsserver.py), every
other request goes on to the REST half as before.

- QSEoW: `wss://<qrs listener>/app/<appId>`; the listener's mutual TLS
  checks the client certificate; `X-Qlik-User: UserDirectory=D; UserId=U` is
  required (as on port 4747).
- Qlik Cloud: `ws(s)://<cloud listener>/app/<appId>` with
  `Authorization: Bearer <API key or OAuth token>`, checked like REST.
- `/_ws/echo` on both: the WebSocket test endpoint (wsserver.echo_session).

The engine reads the app from the half's state: name, data_model (rows are a
pure function of it, engine_data.py), its sheets (base and community; private
ones are hidden) with charts derived from each sheet's id and the data model.
Objects made over the engine (CreateObject, CreateDimension, CreateMeasure,
CreateVariableEx) and SetScript live in the engine's per-app state; DoSave
counts saves.  See README.md, "The engine".
"""
import json
import re
import threading
import urllib.parse

import core
import engine_data
import wsserver

ENGINE_VERSION = "12.1306.0"

# positional parameter names, for calls that send params as an array
PARAMS = {
    "OpenDoc": ["qDocName", "qUserName", "qPassword", "qSerial", "qNoData"],
    "GetObject": ["qId"], "GetObjects": ["qOptions"], "EvaluateEx": ["qExpression"],
    "Evaluate": ["qExpression"], "CreateSessionObject": ["qProp"], "CreateObject": ["qProp"],
    "CreateDimension": ["qProp"], "CreateMeasure": ["qProp"], "CreateVariableEx": ["qProp"],
    "DestroySessionObject": ["qId"], "SetScript": ["qScript"], "DoSave": ["qFileName"],
    "GetHyperCubeData": ["qPath", "qPages"], "GetHyperCubePivotData": ["qPath", "qPages"],
    "GetTablesAndKeys": ["qWindowSize", "qNullSize", "qCellHeight", "qSyntheticMode", "qIncludeSysVars"],
    "GetDimension": ["qId"], "GetMeasure": ["qId"], "GetVariableById": ["qId"],
    "GetVariableByName": ["qName"], "SetProperties": ["qProp"],
}


_UNSENT = object()


class RpcError(Exception):
    def __init__(self, code, message, parameter=""):
        super().__init__(message)
        self.code, self.message, self.parameter = code, message, parameter


class _AuthRequest:
    """What Cloud._caller reads of a request."""
    def __init__(self, headers):
        self.headers = headers


# ------------------------------------------------------------------ the app as the engine sees it

class EngineApp:
    def __init__(self, app_id, name, data_model, sheets, has_data=True):
        self.id, self.name = app_id, name
        self.model = engine_data.model_for(data_model if has_data else {"tables": []})
        self.sheets = sheets          # [{"id", "title", "approved", "published", "rank"}]
        self.charts = {}              # chart id -> chart
        for sheet in sheets:
            sheet["charts"] = engine_data.charts_for_sheet(sheet["id"], self.model)
            for c in sheet["charts"]:
                self.charts[c["id"]] = c


def _qrs_app(half, app_id):
    app = half.db["app"].get(app_id)
    if app is None:
        return None
    extra = half.app_extra.get(app_id) or {}
    sheets = []
    for o in half.app_objects.get(app_id, ()):
        if o["objectType"] != "sheet" or not o["published"]:
            continue
        sheets.append({"id": o["engineObjectId"], "title": o["name"], "approved": o["approved"],
                       "published": True})
    return EngineApp(app_id, app["name"], extra.get("data_model"), sheets)


def _cloud_app(half, app_id):
    app = half.apps.get(app_id)
    if app is None:
        return None
    sheets = []
    for o in app["objects"].values():
        if o["objectType"] != "sheet" or o["state"] == "private":
            continue
        sheets.append({"id": o["id"], "title": o.get("name", ""), "approved": o["state"] == "base",
                       "published": True})
    return EngineApp(app_id, app["name"], app["data_model"], sheets, app.get("has_data", True))


LOADERS = {"qrs": _qrs_app, "cloud": _cloud_app}


class AppState:
    """What engine calls changed in one app (shared by its sessions)."""
    def __init__(self):
        self.objects = {}             # id -> properties (CreateObject/Dimension/Measure/VariableEx)
        self.script = None
        self.saves = 0
        self.lock = threading.Lock()


class Engine:
    def __init__(self, sim):
        self.sim = sim
        self.states = {}
        self.lock = threading.Lock()
        self.sessions = 0

    def state(self, half_name, app_id):
        # per half instance: a reset makes new halves (and may hand out the same
        # app ids again), and the apps of a reset tenant have no engine state
        half = self.sim.half(half_name)
        with self.lock:
            cur = self.states.get((half_name, app_id))
            if cur is None or cur[0] is not half:
                cur = self.states[(half_name, app_id)] = (half, AppState())
            return cur[1]

    def load(self, half_name, app_id):
        with self.sim.ctx.lock:
            return LOADERS[half_name](self.sim.half(half_name), app_id)


# ------------------------------------------------------------------ one session

def _json_pointer(doc, pointer):
    cur = doc
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


class Session:
    def __init__(self, engine, half_name, app_id, ws):
        self.engine, self.half_name, self.url_app, self.ws = engine, half_name, app_id, ws
        self.handles = {}             # handle -> ("doc", None) | ("object", props) | ...
        self.next_handle = 1
        self.app = None
        self.session_objects = {}
        self.sent = {}                # (handle, method, out key) -> last value sent (delta)

    def new_handle(self, kind, obj):
        h = self.next_handle
        self.next_handle += 1
        self.handles[h] = (kind, obj)
        return h

    def run(self):
        self.ws.send_text(json.dumps({"jsonrpc": "2.0", "method": "OnConnected",
                                      "params": {"qSessionState": "SESSION_CREATED"}}))
        while True:
            try:
                _, data = self.ws.receive()
            except wsserver.Closed:
                return
            try:
                req = json.loads(data)
            except ValueError:
                self.reply({"jsonrpc": "2.0", "id": None,
                            "error": {"code": -32700, "parameter": "", "message": "Parse error"}})
                continue
            fault = self.engine_fault(req)
            if fault == "stall":
                continue      # an engine that stops answering: the request is read, never answered
            if fault == "close":
                return        # the connection dropped: closed with no reply and no close frame
            self.reply(self.call(req))

    def engine_fault(self, req):
        """The action of the first of the faults' engine_faults (core.Faults)
        naming this request's method (or "*"), on a half they apply to."""
        faults = self.engine.sim.faults
        if not faults.applies(self.half_name):
            return None
        for ef in faults.cfg.get("engine_faults") or []:
            if ef.get("method", "*") in ("*", req.get("method")):
                return ef["action"]
        return None

    def reply(self, msg):
        if msg is not None:
            self.ws.send_text(json.dumps(msg, separators=(",", ":")))

    def call(self, req):
        rid = req.get("id")
        try:
            method = req.get("method")
            handle = req.get("handle", -1)
            params = req.get("params", {})
            if isinstance(params, list):
                names = PARAMS.get(method, [])
                params = {names[i]: v for i, v in enumerate(params) if i < len(names)}
            result = self.dispatch(handle, method, params or {})
            out = {"jsonrpc": "2.0", "id": rid, "result": result}
            if req.get("delta") is True and isinstance(result, dict):
                out = {"jsonrpc": "2.0", "id": rid, "delta": True, "result": self.delta(handle, method, result)}
        except RpcError as err:
            out = {"jsonrpc": "2.0", "id": rid,
                   "error": {"code": err.code, "parameter": err.parameter, "message": err.message}}
        return out if rid is not None else None

    def delta(self, handle, method, result):
        """A delta response (the request said `delta: true`, as enigma.js
        does by default): each out value as JSON patches against the value
        this handle's method sent last -- none when it is unchanged, else
        one that replaces the root (a valid patch, if not the smallest)."""
        out = {}
        for key, value in result.items():
            slot = (handle, method, key)
            old = self.sent.get(slot, _UNSENT)
            if old is not _UNSENT and old == value:
                out[key] = []
            else:
                out[key] = [{"op": "add" if old is _UNSENT else "replace", "path": "/", "value": value}]
            self.sent[slot] = json.loads(json.dumps(value))
        return out

    def dispatch(self, handle, method, p):
        if handle == -1:
            fn = getattr(self, "g_" + str(method), None)
            if fn is None:
                raise RpcError(-32601, "Method not found", str(method))
            return fn(p)
        if handle not in self.handles:
            raise RpcError(-32602, "Invalid handle", str(handle))
        kind, obj = self.handles[handle]
        fn = getattr(self, f"{kind}_{method}", None)
        if fn is None:
            raise RpcError(-32601, "Method not found", str(method))
        return fn(obj, p) if kind != "doc" else fn(p)

    # -- Global
    def g_OpenDoc(self, p):
        doc = p.get("qDocName")
        if not doc or doc != self.url_app:
            raise RpcError(1003, "App not found", str(doc))
        if self.app is None:
            self.app = self.engine.load(self.half_name, doc)
            if self.app is None:
                raise RpcError(1003, "App not found", str(doc))
            self.app.state = self.engine.state(self.half_name, doc)
            self.doc_handle = self.new_handle("doc", None)
        return {"qReturn": {"qType": "Doc", "qHandle": self.doc_handle, "qGenericId": doc}}

    def g_GetActiveDoc(self, p):
        if self.app is None:
            raise RpcError(1007, "App not open")
        return {"qReturn": {"qType": "Doc", "qHandle": self.doc_handle, "qGenericId": self.app.id}}

    def g_EngineVersion(self, p):
        return {"qVersion": {"qComponentVersion": ENGINE_VERSION}}

    def g_ProductVersion(self, p):
        return {"qReturn": ENGINE_VERSION}

    # -- Doc
    def doc_GetAppLayout(self, p):
        return {"qLayout": {"qTitle": self.app.name, "qFileName": self.app.id,
                            "qHasScript": True, "qHasData": bool(self.app.model.tables)}}

    def doc_GetTablesAndKeys(self, p):
        qtr, qk = self.app.model.tables_and_keys()
        return {"qtr": qtr, "qk": qk}

    def doc_GetAllInfos(self, p):
        infos = []
        for s in self.app.sheets:
            infos.append({"qId": s["id"], "qType": "sheet"})
            infos.extend({"qId": c["id"], "qType": c["type"]} for c in s["charts"])
        with self.app.state.lock:
            infos.extend({"qId": k, "qType": v["qInfo"]["qType"]} for k, v in self.app.state.objects.items())
        return {"qInfos": infos}

    def _sheet_props(self, sheet, rank):
        cells = [{"name": c["id"], "type": c["type"], "col": (i % 2) * 12, "row": (i // 2) * 6,
                  "colspan": 12, "rowspan": 6, "bounds": {"x": (i % 2) * 50, "y": (i // 2) * 50,
                                                          "width": 50, "height": 50}}
                 for i, c in enumerate(sheet["charts"])]
        return {"qInfo": {"qId": sheet["id"], "qType": "sheet"},
                "qMetaDef": {"title": sheet["title"], "description": ""},
                "title": sheet["title"], "description": "", "rank": rank, "columns": 24, "rows": 12,
                "cells": cells, "showCondition": "", "labelExpression": "", "thumbnail": {}}

    def _sheet_meta(self, sheet):
        return {"title": sheet["title"], "description": "", "approved": sheet["approved"],
                "published": sheet["published"]}

    def doc_GetObjects(self, p):
        types = ((p.get("qOptions") or {}).get("qTypes")) or []
        out = []
        for rank, s in enumerate(self.app.sheets):
            if not types or "sheet" in types:
                out.append({"qInfo": {"qId": s["id"], "qType": "sheet"}, "qMeta": self._sheet_meta(s),
                            "qData": {}})
            for c in s["charts"]:
                if c["type"] in types:
                    out.append({"qInfo": {"qId": c["id"], "qType": c["type"]}, "qMeta": {"title": c["title"]},
                                "qData": {}})
        return {"qList": out}

    def doc_CreateSessionObject(self, p):
        prop = p.get("qProp") or {}
        info = prop.get("qInfo") or {}
        if not info.get("qType"):
            raise RpcError(-32602, "Invalid parameters", "qInfo.qType is required")
        qid = info.get("qId") or f"session-{self.next_handle}"
        while qid in self.session_objects:
            qid += "x"
        prop = dict(prop, qInfo={"qId": qid, "qType": info["qType"]})
        self.session_objects[qid] = prop
        h = self.new_handle("object", {"kind": "session", "prop": prop})
        return {"qReturn": {"qType": "GenericObject", "qHandle": h, "qGenericType": info["qType"],
                            "qGenericId": qid}}

    def doc_DestroySessionObject(self, p):
        qid = p.get("qId")
        if self.session_objects.pop(qid, None) is None:
            return {"qSuccess": False}
        for h, (kind, obj) in list(self.handles.items()):
            if kind == "object" and obj.get("kind") == "session" and obj["prop"]["qInfo"]["qId"] == qid:
                del self.handles[h]
        return {"qSuccess": True}

    def doc_GetObject(self, p):
        qid = p.get("qId")
        for rank, s in enumerate(self.app.sheets):
            if s["id"] == qid:
                return self._object_return({"kind": "sheet", "sheet": s, "rank": rank}, "sheet", qid)
        chart = self.app.charts.get(qid)
        if chart is not None:
            return self._object_return({"kind": "chart", "chart": chart}, chart["type"], qid)
        with self.app.state.lock:
            stored = self.app.state.objects.get(qid)
        if stored is not None and stored["_class"] == "object":
            return self._object_return({"kind": "stored", "prop": stored}, stored["qInfo"]["qType"], qid)
        return {"qReturn": {"qType": None, "qHandle": None}}    # as the engine: no error

    def _object_return(self, obj, qtype, qid):
        h = self.new_handle("object", obj)
        return {"qReturn": {"qType": "GenericObject", "qHandle": h, "qGenericType": qtype, "qGenericId": qid}}

    def doc_EvaluateEx(self, p):
        v = self.app.model.evaluate(p.get("qExpression", ""))
        if v is None:
            return {"qValue": {"qText": "Error in expression", "qIsNumeric": False, "qNumber": "NaN"}}
        return {"qValue": {"qText": engine_data.fmt(v), "qIsNumeric": True, "qNumber": v}}

    def doc_Evaluate(self, p):
        v = self.app.model.evaluate(p.get("qExpression", ""))
        return {"qReturn": "Error in expression" if v is None else engine_data.fmt(v)}

    def _store(self, cls, qtype, p, id_key="qInfo"):
        prop = json.loads(json.dumps(p.get("qProp") or {}))
        info = prop.get("qInfo") or {}
        qid = info.get("qId")
        if not qid:
            with self.engine.sim.ctx.lock:
                qid = self.engine.sim.ctx.new_hex_id(22)
        prop["qInfo"] = {"qId": qid, "qType": info.get("qType") or qtype}
        prop["_class"] = cls
        with self.app.state.lock:
            if qid in self.app.state.objects:
                raise RpcError(11, "Object already exists", qid)
            self.app.state.objects[qid] = prop
        return prop

    def doc_CreateObject(self, p):
        if not ((p.get("qProp") or {}).get("qInfo") or {}).get("qType"):
            raise RpcError(-32602, "Invalid parameters", "qInfo.qType is required")
        prop = self._store("object", "generic", p)
        return self._object_return({"kind": "stored", "prop": prop}, prop["qInfo"]["qType"], prop["qInfo"]["qId"])

    def doc_CreateDimension(self, p):
        prop = self._store("dimension", "dimension", p)
        h = self.new_handle("object", {"kind": "stored", "prop": prop})
        return {"qReturn": {"qType": "GenericDimension", "qHandle": h, "qGenericId": prop["qInfo"]["qId"]},
                "qInfo": prop["qInfo"]}

    def doc_CreateMeasure(self, p):
        prop = self._store("measure", "measure", p)
        h = self.new_handle("object", {"kind": "stored", "prop": prop})
        return {"qReturn": {"qType": "GenericMeasure", "qHandle": h, "qGenericId": prop["qInfo"]["qId"]},
                "qInfo": prop["qInfo"]}

    def doc_CreateVariableEx(self, p):
        name = (p.get("qProp") or {}).get("qName")
        if not name:
            raise RpcError(-32602, "Invalid parameters", "qName is required")
        with self.app.state.lock:
            if any(o.get("qName") == name for o in self.app.state.objects.values() if o["_class"] == "variable"):
                raise RpcError(11, "Variable already exists", name)
        prop = self._store("variable", "variable", p)
        h = self.new_handle("object", {"kind": "stored", "prop": prop})
        return {"qReturn": {"qType": "GenericVariable", "qHandle": h, "qGenericId": prop["qInfo"]["qId"]},
                "qInfo": prop["qInfo"]}

    # Get{Dimension,Measure,VariableByName}: the engine's answer for an id or
    # name it does not know is a null handle, as GetObject's (no RPC error)
    def _stored_return(self, cls, qtype, pred):
        with self.app.state.lock:
            found = next((o for o in self.app.state.objects.values() if o["_class"] == cls and pred(o)), None)
        if found is None:
            return {"qReturn": {"qType": None, "qHandle": None}}
        h = self.new_handle("object", {"kind": "stored", "prop": found})
        return {"qReturn": {"qType": qtype, "qHandle": h, "qGenericId": found["qInfo"]["qId"]}}

    def doc_GetDimension(self, p):
        return self._stored_return("dimension", "GenericDimension", lambda o: o["qInfo"]["qId"] == p.get("qId"))

    def doc_GetMeasure(self, p):
        return self._stored_return("measure", "GenericMeasure", lambda o: o["qInfo"]["qId"] == p.get("qId"))

    def doc_GetVariableByName(self, p):
        return self._stored_return("variable", "GenericVariable", lambda o: o.get("qName") == p.get("qName"))

    def doc_SetScript(self, p):
        with self.app.state.lock:
            self.app.state.script = p.get("qScript", "")
        return {}

    def doc_GetScript(self, p):
        with self.app.state.lock:
            script = self.app.state.script
        if script is None:
            with self.engine.sim.ctx.lock:
                half = self.engine.sim.half(self.half_name)
                if self.half_name == "qrs":
                    script = (half.app_extra.get(self.app.id) or {}).get("script", "")
                else:
                    script = half._current_script(half.apps[self.app.id]) if self.app.id in half.apps else ""
        return {"qScript": script}

    def doc_DoSave(self, p):
        # DoSave persists the session's script into the app: a reload (which
        # reads the app, not a session) then runs it, and GetScript in a later
        # session, or the REST script history, show it
        with self.app.state.lock:
            self.app.state.saves += 1
            script, self.app.state.script = self.app.state.script, None
        if self.half_name == "cloud" and script is not None:
            with self.engine.sim.ctx.lock:
                half = self.engine.sim.half("cloud")
                app = half.apps.get(self.app.id)
                if app is not None and half._current_script(app) != script:
                    half._add_script_version(app, script, "", app["ownerId"])
        return {}

    # -- GenericObject and friends
    def object_GetLayout(self, obj, p):
        kind = obj["kind"]
        if kind == "sheet":
            props = self._sheet_props(obj["sheet"], obj["rank"])
            return {"qLayout": dict(props, qMeta=self._sheet_meta(obj["sheet"]))}
        if kind == "chart":
            return {"qLayout": self._chart_layout(obj["chart"])}
        prop = obj["prop"]
        layout = {k: v for k, v in prop.items() if not k.startswith("_") and not k.endswith("Def")}
        layout["qInfo"] = prop["qInfo"]
        layout.setdefault("qMeta", {})
        if "qAppObjectListDef" in prop:
            layout["qAppObjectList"] = {"qItems": self._object_list(prop["qAppObjectListDef"])}
        if "qFieldListDef" in prop:
            layout["qFieldList"] = {"qItems": self.app.model.field_list()}
        for key, cls in (("qDimensionList", "dimension"), ("qMeasureList", "measure"),
                         ("qVariableList", "variable")):
            if key + "Def" in prop:
                layout[key] = {"qItems": self._stored_items(cls)}
        if "qHyperCubeDef" in prop:
            layout["qHyperCube"] = self._cube_layout(prop["qHyperCubeDef"])
        return {"qLayout": layout}

    def _stored_items(self, cls, qtype=None):
        """The list items of what CreateDimension/Measure/VariableEx/Object
        stored in this app (of one qType for objects)."""
        with self.app.state.lock:
            stored = [o for o in self.app.state.objects.values()
                      if o["_class"] == cls and (qtype is None or o["qInfo"]["qType"] == qtype)]
        items = []
        for o in stored:
            item = {"qInfo": o["qInfo"], "qMeta": o.get("qMetaDef") or {}, "qData": {}}
            if cls == "variable":
                item.update(qName=o.get("qName"), qDefinition=o.get("qDefinition", ""))
            items.append(item)
        return items

    def _object_list(self, definition):
        if definition.get("qType") != "sheet":
            return self._stored_items("object", definition.get("qType"))
        items = []
        for rank, s in enumerate(self.app.sheets):
            props = self._sheet_props(s, rank)
            data = {k: _json_pointer(props, v) for k, v in (definition.get("qData") or {}).items()
                    if isinstance(v, str)}
            items.append({"qInfo": {"qId": s["id"], "qType": "sheet"}, "qMeta": self._sheet_meta(s),
                          "qData": data})
        return items

    def _cube_layout(self, hdef):
        dim_info, meas_info, rows = self.app.model.hypercube(hdef)
        pages = [self._page(rows, pg, len(dim_info) + len(meas_info))
                 for pg in hdef.get("qInitialDataFetch") or []]
        return {"qSize": {"qcx": len(dim_info) + len(meas_info), "qcy": len(rows)},
                "qDimensionInfo": dim_info, "qMeasureInfo": meas_info, "qMode": "S",
                "qDataPages": pages, "qGrandTotalRow": [], "qNoOfLeftDims": -1,
                "qEffectiveInterColumnSortOrder": list(range(len(dim_info) + len(meas_info)))}

    def _chart_layout(self, chart):
        return {"qInfo": {"qId": chart["id"], "qType": chart["type"]}, "qMeta": {"title": chart["title"]},
                "title": chart["title"], "visualization": chart["type"], "showTitles": True,
                "qHyperCube": self._cube_layout(engine_data.hypercube_def(chart))}

    def object_GetProperties(self, obj, p):
        kind = obj["kind"]
        if kind == "sheet":
            return {"qProp": self._sheet_props(obj["sheet"], obj["rank"])}
        if kind == "chart":
            c = obj["chart"]
            return {"qProp": {"qInfo": {"qId": c["id"], "qType": c["type"]}, "qMetaDef": {"title": c["title"]},
                              "title": c["title"], "visualization": c["type"],
                              "qHyperCubeDef": engine_data.hypercube_def(c)}}
        return {"qProp": {k: v for k, v in obj["prop"].items() if not k.startswith("_")}}

    def object_SetProperties(self, obj, p):
        """GenericObject/GenericDimension/GenericMeasure SetProperties: the
        object's properties become qProp, its id and type stay (a stored
        object's change is the app's, seen by every later session)."""
        prop = p.get("qProp")
        if not isinstance(prop, dict):
            raise RpcError(-32602, "Invalid parameters", "qProp")
        if obj["kind"] not in ("stored", "session"):
            # (a sheet or chart derived from the site's data: not writable here)
            raise RpcError(-32601, "Method not found", "SetProperties")
        old = obj["prop"]
        new = json.loads(json.dumps(prop))
        new["qInfo"] = old["qInfo"]
        if "_class" in old:
            new["_class"] = old["_class"]
        with self.app.state.lock:
            old.clear()
            old.update(new)
        return {}

    def object_GetInfo(self, obj, p):
        if obj["kind"] == "sheet":
            return {"qInfo": {"qId": obj["sheet"]["id"], "qType": "sheet"}}
        if obj["kind"] == "chart":
            return {"qInfo": {"qId": obj["chart"]["id"], "qType": obj["chart"]["type"]}}
        return {"qInfo": obj["prop"]["qInfo"]}

    def object_GetChildInfos(self, obj, p):
        if obj["kind"] == "sheet":
            return {"qInfos": [{"qId": c["id"], "qType": c["type"]} for c in obj["sheet"]["charts"]]}
        return {"qInfos": []}

    def _cube_def(self, obj, path):
        if path not in ("/qHyperCubeDef", None, ""):
            raise RpcError(2, "Not found", str(path))
        if obj["kind"] == "chart":
            return engine_data.hypercube_def(obj["chart"])
        hdef = obj.get("prop", {}).get("qHyperCubeDef")
        if hdef is None:
            raise RpcError(2, "Not found", str(path))
        return hdef

    def _page(self, rows, page, width_all):
        left, top = int(page.get("qLeft", 0)), int(page.get("qTop", 0))
        width, height = int(page.get("qWidth", 0)), int(page.get("qHeight", 0))
        matrix = [r[left:left + width] for r in rows[top:top + height]]
        return {"qMatrix": matrix, "qTails": [], "qArea": {
            "qLeft": left, "qTop": top, "qWidth": min(width, max(0, width_all - left)),
            "qHeight": len(matrix)}}

    def object_GetHyperCubeData(self, obj, p):
        hdef = self._cube_def(obj, p.get("qPath"))
        pages = p.get("qPages") or []
        cells = sum(max(0, int(pg.get("qWidth", 0))) * max(0, int(pg.get("qHeight", 0))) for pg in pages)
        if cells > engine_data.MAX_CELLS:
            raise RpcError(7009, "Calculation pages too large", "qPages")
        dim_info, meas_info, rows = self.app.model.hypercube(hdef)
        return {"qDataPages": [self._page(rows, pg, len(dim_info) + len(meas_info)) for pg in pages]}


    def object_GetHyperCubePivotData(self, obj, p):
        """A pivot view of the cube: the first dimension's values down the left,
        the second's (if any) times the measures across the top."""
        hdef = self._cube_def(obj, p.get("qPath"))
        dim_info, meas_info, rows = self.app.model.hypercube(hdef)
        nd = len(dim_info)
        left_keys, top_keys, cells = [], [], {}
        for r in rows:
            lk = r[0]["qText"] if nd else ""
            tk = r[1]["qText"] if nd > 1 else None
            if lk not in cells:
                left_keys.append(lk)
                cells[lk] = {}
            if tk not in top_keys:
                top_keys.append(tk)
            cells[lk][tk] = r[nd:]
        columns = [(tk, j) for tk in top_keys for j in range(len(meas_info))]
        pages = []
        for pg in p.get("qPages") or []:
            left, top = int(pg.get("qLeft", 0)), int(pg.get("qTop", 0))
            width, height = int(pg.get("qWidth", 0)), int(pg.get("qHeight", 0))
            lks, cols = left_keys[top:top + height], columns[left:left + width]
            data = []
            for lk in lks:
                row = []
                for tk, j in cols:
                    m = cells[lk].get(tk)
                    c = m[j] if m else engine_data.measure_cell(None)
                    row.append({"qLabel": c["qText"], "qText": c["qText"], "qNum": c["qNum"], "qType": "V"})
                data.append(row)
            pages.append({
                "qLeft": [{"qText": lk, "qElemNo": i + top, "qValue": "NaN", "qType": "N", "qCanExpand": False,
                           "qCanCollapse": False, "qSubNodes": []} for i, lk in enumerate(lks)],
                "qTop": [{"qText": (f"{tk} / " if tk is not None else "") + meas_info[j]["qFallbackTitle"],
                          "qElemNo": j, "qValue": "NaN", "qType": "P", "qCanExpand": False,
                          "qCanCollapse": False, "qSubNodes": []} for tk, j in cols],
                "qData": data,
                "qArea": {"qLeft": left, "qTop": top, "qWidth": len(cols), "qHeight": len(lks)}})
        return {"qDataPages": pages}


# ------------------------------------------------------------------ HTTP side

QLIK_USER = re.compile(r"^\s*UserDirectory\s*=\s*([^;]+?)\s*;\s*UserId\s*=\s*([^;]+?)\s*;?\s*$", re.I)


def _authorize(engine, half_name, headers):
    """None when the caller may open an engine session, else (status, why)."""
    if half_name == "qrs":
        if not QLIK_USER.match(headers.get("X-Qlik-User", "")):
            return 401, "X-Qlik-User: UserDirectory=...; UserId=... is required"
        return None
    try:
        with engine.sim.ctx.lock:
            engine.sim.half("cloud")._caller(_AuthRequest(headers))
    except core.ApiError as err:
        return err.status, err.detail or err.title
    return None


def serve(handler, engine, half_name):
    """Handles one upgrade request on a listener's handler, to its end."""
    handler.close_connection = True
    headers = handler.headers
    path = urllib.parse.urlsplit(handler.path).path
    bad = wsserver.upgrade_error(headers)
    if bad is None and path != "/_ws/echo":
        bad = _authorize(engine, half_name, headers)
    m = re.match(r"^/app/([^/]+)(?:/.*)?$", path)
    if bad is None and path != "/_ws/echo" and not m:
        bad = (404, "no engine endpoint at " + path)
    if bad is not None:
        status, why = bad
        body = why.encode()
        handler.wfile.write(f"HTTP/1.1 {status} {why[:40]}\r\nContent-Type: text/plain\r\n"
                            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        return
    handler.wfile.write(wsserver.handshake_reply(headers))
    handler.wfile.flush()
    handler.connection.settimeout(None)
    ws = wsserver.WsConnection(handler.rfile, handler.wfile)
    try:
        if path == "/_ws/echo":
            wsserver.echo_session(ws)
        else:
            with engine.lock:
                engine.sessions += 1
            Session(engine, half_name, urllib.parse.unquote(m.group(1)), ws).run()
    except (OSError, ValueError):
        pass


def install(running):
    """Serves the engine on a started simulator's listeners (core.Running)."""
    engine = Engine(running.sim)

    class EngineHandler(core.Handler):
        def dispatch(self):
            if self.headers.get("Upgrade", "").lower() == "websocket":
                return serve(self, engine, self.server.half_name)
            return super().dispatch()

    for listener in running.listeners.values():
        listener.RequestHandlerClass = EngineHandler
    info = running.info
    if "qrs_url" in info:
        info["qrs_engine_url"] = info["qrs_url"].replace("https://", "wss://")
    if "cloud_url" in info:
        info["cloud_engine_url"] = info["cloud_url"].replace("https://", "wss://").replace("http://", "ws://")
    return engine
