"""The QSEoW half of qliksim: a read-mostly Qlik Repository Service (QRS) API.

Entities are built once from the site seed (`site["qrs"]`) in their full QRS shape;
condensed shapes, filters and ordering are derived from those dicts on each call.
"""
import base64
import hashlib
import json
import mimetypes
import re
import urllib.parse
import uuid

import lineage
import qrs_filter
import qvf
from core import ApiError, Response

NEVER = "1753-01-01T00:00:00.000Z"
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
BASE_DATE = "2024-01-01T08:00:00.000Z"
SYSTEM_USER = "INTERNAL\\sa_repository"
DEFAULT_BUILD = "14.113.2"
EXPORT_SCOPE_SINCE = (14, 97)          # November 2022 (14.97) introduced exportScope
SKIPDATA_MAX = 64 * 1024
XRF_MESSAGE = "XSRF prevention check failed. Possible XSRF discovered."
_XRFKEY = re.compile(r"^[0-9a-zA-Z]{16}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_QLIK_USER = re.compile(r"^\s*UserDirectory\s*=\s*([^;]*?)\s*;\s*UserId\s*=\s*(.*?)\s*;?\s*$",
                        re.IGNORECASE)
_NS = uuid.UUID("5b0c1f3e-7a52-4c8e-9a0b-51a1c5e0c0de")
ALL_PRIVILEGES = ["create", "read", "update", "delete", "export", "publish", "changeowner",
                  "changerole", "exportdata", "offlineaccess", "distribute", "duplicate",
                  "approve"]

FLAG_ACTIONS = {"publish": {"published": True},
                "unpublish": {"published": False, "approved": False},
                "approve": {"published": True, "approved": True},
                "unapprove": {"approved": False}}
STATE_FLAGS = {"base": (True, True), "community": (True, False), "private": (False, False)}
SCOPE_STATES = {"approved": {"base"}, "published": {"base", "community"},
                "all": {"base", "community", "private"}}
CONDENSED = {
    "user": ("id", "userId", "userDirectory", "userDirectoryConnectorName", "name", "privileges"),
    "stream": ("id", "name", "privileges"),
    "tag": ("id", "name", "privileges"),
    "custompropertydefinition": ("id", "name", "valueType", "choiceValues", "privileges"),
    "app": ("id", "name", "appId", "publishTime", "published", "stream", "savedInProductVersion",
            "migrationHash", "availabilityStatus", "privileges"),
    "app/object": ("id", "name", "engineObjectId", "contentHash", "engineObjectType",
                   "description", "objectType", "publishTime", "published", "privileges"),
    "dataconnection": ("id", "name", "connectionstring", "type", "engineObjectId", "username",
                       "password", "logOn", "architecture", "privileges"),
    "reloadtask": ("id", "operational", "name", "taskType", "enabled", "taskSessionTimeout",
                   "maxRetries", "privileges"),
    "schemaevent": ("id", "operational", "name", "enabled", "eventType", "privileges"),
    "compositeevent": ("id", "operational", "name", "enabled", "eventType", "privileges"),
    "extension": ("id", "name", "privileges"),
    "contentlibrary": ("id", "name", "privileges"),
    "systemrule": ("id", "category", "subcategory", "type", "name", "rule", "resourceFilter",
                   "actions", "comment", "disabled", "ruleContext", "privileges"),
}
TYPES = tuple(CONDENSED)
# What PUT /qrs/{type}/{id} changes (the QMC's edits a migration follows).
PUT_FIELDS = {
    "app": ("name", "description"),
    "stream": ("name",),
    "user": ("name", "attributes"),
    "reloadtask": ("name", "enabled"),
    "schemaevent": ("name", "enabled", "timeZone", "startDate", "expirationDate", "daylightSavingTime",
                    "schemaFilterDescription", "incrementDescription", "incrementOption"),
}


def _stamp(entity, schema_path, seed=None):
    """Common entity fields."""
    seed = seed or {}
    entity.setdefault("createdDate", seed.get("createdDate", BASE_DATE))
    entity.setdefault("modifiedDate", seed.get("modifiedDate", entity["createdDate"]))
    entity.setdefault("modifiedByUserName", seed.get("modifiedByUserName", SYSTEM_USER))
    entity["privileges"] = None
    entity["schemaPath"] = schema_path
    return entity


def _pick(entity, keys):
    return {k: entity.get(k) for k in keys}


def _conjuncts(tree):
    if tree[0] == "and":
        return _conjuncts(tree[1]) + _conjuncts(tree[2])
    return [tree] if tree[0] == "cmp" else []


def _version(text):
    nums = [int(x) for x in re.findall(r"\d+", text or "")[:2]]
    return tuple(nums + [0] * (2 - len(nums)))


class QRS:
    """Seeded QRS repository plus the request router."""

    def __init__(self, seed, ctx):
        self.ctx = ctx
        self.about = {"buildVersion": DEFAULT_BUILD, "buildDate": "9/20/2013 10:09:00 AM",
                      "databaseProvider": "Devart.Data.PostgreSql", "nodeType": 1,
                      "sharedPersistence": True, "requiresBootstrap": False,
                      "singleNodeOnly": False, "schemaPath": "About",
                      **(seed.get("about") or {})}
        self.db = {t: {} for t in TYPES}
        self.files = {}             # (kind, lowercase name) -> {path: str|bytes}
        self.exports = {}           # token -> export record
        self.export_guids = {}      # download guid -> export record
        self.app_extra = {}         # app id -> {"script", "data_model"} (QVF content)
        self.user_index = {}        # "dir\\userid" (lower case) -> user entity
        self.app_objects = {}       # app id -> its app/object entities (fixed by the seed)
        self.eq_index = {}          # (kind, path) -> {lower-case value: [entities]} or None
        self.json_texts = {}        # entity id -> json.dumps(entity), see json_list
        self._used_ids = set()
        SeedLoader(self, seed).load()

    # ------------------------------------------------------------------ interface
    def tier(self, method, path):
        return "qrs"

    def state(self):
        return {"about": self.about,
                "entities": {t: list(items.values()) for t, items in self.db.items()},
                "exports": self.exports}

    def handle(self, req):
        user = self.authenticate(req)
        raw = urllib.parse.urlsplit(req.raw_path).path
        parts = [urllib.parse.unquote(p) for p in raw.split("/") if p]
        head = parts[0].lower() if parts else ""
        if head == "qrs" and len(parts) > 1 and parts[1].lower() == "tempcontent":
            return self.download(req, user, parts[2:])
        if head == "tempcontent":
            return self.download(req, user, parts[1:])
        if head in ("extensions", "content"):
            return self.static_file(req, head, parts[1:])
        if head != "qrs":
            raise ApiError(404, "HTTP-404", "Not Found", f"no route for {req.path}")
        return self.route(req, user, parts[1:])

    # ------------------------------------------------------------------ auth
    def authenticate(self, req):
        key = req.query_ci("xrfkey")
        header = req.headers.get("X-Qlik-Xrfkey")
        if not key or not header or key != header or not _XRFKEY.match(key):
            raise ApiError(403, "HTTP-403", "Forbidden", XRF_MESSAGE)
        match = _QLIK_USER.match(req.headers.get("X-Qlik-User") or "")
        if not match:
            raise ApiError(403, "HTTP-403", "Forbidden", "X-Qlik-User header missing or malformed")
        user = self.find_user(match.group(1), match.group(2))
        if user is None:
            raise ApiError(403, "HTTP-403", "Forbidden",
                           f"Access denied for user {match.group(1)}\\{match.group(2)}")
        return user

    def find_user(self, directory, user_id):
        return self.user_index.get(f"{directory}\\{user_id}".lower())

    # ------------------------------------------------------------------ routing
    def route(self, req, user, parts):
        if not parts:
            raise ApiError(404, "HTTP-404", "Not Found", "no route for /qrs")
        lowered = [p.lower() for p in parts]
        if lowered[0] == "about":
            return self.about_route(req, lowered[1:])
        if lowered[:2] == ["app", "object"]:
            kind, rest = "app/object", parts[2:]
        else:
            kind, rest = lowered[0], parts[1:]
        if kind not in self.db:
            raise ApiError(404, "HTTP-404", "Not Found", f"unknown resource type {parts[0]}")
        template = f"/qrs/{kind}"
        if kind == "app" and len(rest) == 3 and rest[1].lower() == "export":
            req.endpoint = f"{req.method} /qrs/app/{{id}}/export/{{id}}"
            return self.export_route(req, user, rest[0], rest[2])
        if kind in PUT_FIELDS and req.method == "PUT" and len(rest) == 1:
            req.endpoint = f"PUT {template}/{{id}}"
            return self.put_entity(req, user, kind, rest[0])
        if kind == "app/object" and req.method == "PUT" and rest:
            req.endpoint = f"PUT {template}/{{id}}" + "".join(f"/{p.lower()}" for p in rest[1:])
            return self.update_object(req, user, rest[0], [p.lower() for p in rest[1:]])
        if req.method != "GET":
            raise ApiError(405, "HTTP-405", "Method Not Allowed",
                           f"{req.method} is not supported on {req.path} by qliksim")
        return self.read_route(req, kind, template, rest)

    def about_route(self, req, rest):
        req.endpoint = "GET /qrs/about/" + "/".join(rest) if rest else "GET /qrs/about"
        if req.method != "GET":
            raise ApiError(405, "HTTP-405", "Method Not Allowed", "about is read-only")
        if not rest:
            return Response(200, self.about)
        if rest == ["api", "enums"]:
            return Response(200, ENUMS)
        raise ApiError(404, "HTTP-404", "Not Found", f"no route for {req.path}")

    def read_route(self, req, kind, template, rest):
        if not rest or rest[0].lower() in ("full", "count"):
            suffix = rest[0].lower() if rest else ""
            if len(rest) > 1:
                raise ApiError(404, "HTTP-404", "Not Found", f"no route for {req.path}")
            req.endpoint = f"GET {template}" + (f"/{suffix}" if suffix else "")
            items = self.select(req, kind)
            if suffix == "count":
                return Response(200, {"value": len(items)})
            keys = None if suffix == "full" else CONDENSED[kind]
            privileges = self.with_privileges(req)
            if keys is None and not privileges:
                return self.json_list(items)
            return Response(200, [self.render(e, keys, privileges) for e in items])
        if len(rest) != 1:
            raise ApiError(404, "HTTP-404", "Not Found", f"no route for {req.path}")
        req.endpoint = f"GET {template}/{{id}}"
        return Response(200, self.render(self.get(kind, rest[0]), None, self.with_privileges(req)))

    def get(self, kind, entity_id):
        entity = self.db[kind].get(entity_id.lower())
        if entity is None:
            raise ApiError(404, "HTTP-404", "Not Found", f"{kind} {entity_id} not found")
        return entity

    def json_list(self, entities):
        """A reply with the entities as they are, as a JSON array joined from each
        one's JSON text, kept until update_object changes the entity: the bytes of
        json.dumps(list) (its default separators) without re-serialising the
        tables (11 MB of objects on a 2000-app site) for every listing."""
        texts = []
        for entity in entities:
            text = self.json_texts.get(entity["id"])
            if text is None:
                text = self.json_texts[entity["id"]] = json.dumps(entity)
            texts.append(text)
        return Response(200, ("[" + ", ".join(texts) + "]").encode("utf-8"),
                        content_type="application/json; charset=utf-8")

    @staticmethod
    def with_privileges(req):
        return (req.query_ci("privileges") or "").lower() == "true"

    @staticmethod
    def render(entity, keys, privileges):
        """The reply shape of an entity: the entity itself when it needs no change
        (Response serialises it at once, so it is not copied)."""
        if keys is not None:
            out = _pick(entity, keys)
        elif privileges:
            out = dict(entity)
        else:
            return entity
        if privileges:
            out["privileges"] = list(ALL_PRIVILEGES)
        return out

    def select(self, req, kind):
        """The entities the request's filter and orderby select; a view of the whole
        table when it has neither (not copied: read it before the next change)."""
        items = self.db[kind].values()
        text = req.query_ci("filter")
        if text:
            items = self.apply_filter(kind, items, text)
        order = req.query_ci("orderby")
        if order:
            items = self.apply_order(items, order)
        return items

    def apply_filter(self, kind, items, text):
        try:
            tree = qrs_filter.parse(text)
        except qrs_filter.FilterError as exc:
            raise ApiError(400, "HTTP-400", "Bad Request", f"Invalid filter: {exc}") from None
        if items:
            known = {k.lower() for k in next(iter(items))}
            unknown = sorted(qrs_filter.first_segments(tree) - known)
            if unknown:
                raise ApiError(400, "HTTP-400", "Bad Request",
                               f"Invalid filter: unknown property '{unknown[0]}' on {kind}")
        return [e for e in self.narrow(kind, tree, items) if qrs_filter.evaluate(tree, e)]

    def narrow(self, kind, tree, items):
        """Candidates for a filter whose top-level `and` chain has a string `eq`.

        Uses a lazily built value index per (type, path); the caller still evaluates
        the whole filter on the candidates, so this only saves time.
        """
        for node in _conjuncts(tree):
            _, path, op, want = node
            if op != "eq" or not isinstance(want, str):
                continue
            index = self.value_index(kind, tuple(path), items)
            if index is not None:
                return index.get(want.lower(), [])
        return items

    def value_index(self, kind, path, items):
        key = (kind, path)
        if key not in self.eq_index:
            index = {}
            for entity in items:
                values = qrs_filter.lookup(entity, list(path))
                if len(values) != 1 or not isinstance(values[0], (str, type(None))):
                    index = None
                    break
                if isinstance(values[0], str):
                    index.setdefault(values[0].lower(), []).append(entity)
            self.eq_index[key] = index
        return self.eq_index[key]

    @staticmethod
    def apply_order(items, order):
        words = order.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ApiError(400, "HTTP-400", "Bad Request", f"Invalid orderby: {order}")
        path = words[0].lower().split(".")

        def key(entity):
            value = qrs_filter.lookup(entity, path)[0]
            return (value is None, "" if value is None else str(value).lower())
        return sorted(items, key=key, reverse=len(words) == 2 and words[1].lower() == "desc")

    # ------------------------------------------------------------------ edits
    def put_entity(self, req, user, kind, entity_id):
        """PUT /qrs/{kind}/{id}: the entity as read, with changes (what the QMC
        does).  As in the QRS, a modifiedDate older than the entity's is a
        409; fields qliksim does not let change (ids, references, privileges)
        are left as they are."""
        entity = self.get(kind, entity_id)
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "HTTP-400", "Bad Request", f"expected a {kind} JSON body")
        if body.get("modifiedDate") != entity["modifiedDate"]:
            raise ApiError(409, "HTTP-409", "Conflict",
                           "Conflict: the entity was modified since it was read (modifiedDate)")
        for field in PUT_FIELDS[kind]:
            if field not in body:
                continue
            value = body[field]
            if field == "name" and (not isinstance(value, str) or not value.strip()):
                raise ApiError(400, "HTTP-400", "Bad Request", "name must be a non-empty string")
            entity[field] = value
        if kind == "app" and "name" in body:
            for task in self.db["reloadtask"].values():
                if isinstance(task.get("app"), dict) and task["app"].get("id") == entity["id"]:
                    task["app"]["name"] = entity["name"]
        self.eq_index.clear()
        self.json_texts.pop(entity["id"], None)
        entity["modifiedDate"] = self.ctx.iso()
        entity["modifiedByUserName"] = f"{user['userDirectory']}\\{user['userId']}"
        return Response(200, entity)

    # ------------------------------------------------------------------ app objects
    def update_object(self, req, user, object_id, action):
        obj = self.get("app/object", object_id)
        self.eq_index.clear()
        self.json_texts.pop(obj["id"], None)
        if len(action) == 1 and action[0] in FLAG_ACTIONS:
            self.set_flags(obj, FLAG_ACTIONS[action[0]])
        elif action:
            raise ApiError(404, "HTTP-404", "Not Found", f"no route for {req.path}")
        else:
            self.put_object(req, obj)
        obj["modifiedDate"] = self.ctx.iso()
        obj["modifiedByUserName"] = f"{user['userDirectory']}\\{user['userId']}"
        return Response(200, obj)

    def put_object(self, req, obj):
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "HTTP-400", "Bad Request", "expected an App.Object JSON body")
        if body.get("modifiedDate") != obj["modifiedDate"]:
            raise ApiError(409, "HTTP-409", "Conflict",
                           "Conflict: the entity was modified since it was read (modifiedDate)")
        owner = body.get("owner")
        if isinstance(owner, dict) and owner.get("id"):
            new_owner = self.db["user"].get(str(owner["id"]).lower())
            if new_owner is None:
                raise ApiError(400, "HTTP-400", "Bad Request", f"unknown owner {owner['id']}")
            obj["owner"] = _pick(new_owner, CONDENSED["user"])
        self.set_flags(obj, {flag: body[flag] for flag in ("approved", "published")
                             if isinstance(body.get(flag), bool)})

    def set_flags(self, obj, flags):
        was_published = obj["published"]
        obj.update(flags)
        if obj["published"] != was_published:
            obj["publishTime"] = self.ctx.iso() if obj["published"] else NEVER

    # ------------------------------------------------------------------ export
    def export_route(self, req, user, app_id, token):
        app = self.get("app", app_id)
        if req.method == "DELETE":
            record = self.exports.get(token)
            if record is None or record["appId"] != app["id"]:
                raise ApiError(404, "HTTP-404", "Not Found", f"no export with token {token}")
            record["cancelled"] = True
            return Response(204)
        if req.method != "POST":
            raise ApiError(405, "HTTP-405", "Method Not Allowed", "use POST or DELETE")
        if not _GUID.match(token):
            raise ApiError(400, "HTTP-400", "Bad Request", f"export token {token} is not a GUID")
        if token in self.exports:
            raise ApiError(409, "HTTP-409", "Conflict", f"export token {token} already used")
        skip = (req.query_ci("skipData") or "false").lower()
        if skip not in ("true", "false"):
            raise ApiError(400, "HTTP-400", "Bad Request", "skipData must be true or false")
        scope = self.export_scope(req)
        guid, node = self.ctx.new_id(), self.ctx.new_id()
        path = f"/tempcontent/{guid}/{urllib.parse.quote(app['name'], safe='')}.qvf?serverNodeId={node}"
        record = {"exportToken": token, "appId": app["id"], "guid": guid,
                  "downloadPath": path, "skipData": skip == "true",
                  "exportScope": scope, "cancelled": False, "downloaded": False,
                  "user": user["id"]}
        self.exports[token] = self.export_guids[guid] = record
        return Response(201, {"exportToken": token, "appId": app["id"], "downloadPath": path,
                              "cancelled": False, "schemaPath": "AppExportResponse"})

    def export_scope(self, req):
        if _version(self.about.get("buildVersion")) < EXPORT_SCOPE_SINCE:
            return "approved"
        scope = (req.query_ci("exportScope") or "approved").lower()
        if scope not in SCOPE_STATES:
            raise ApiError(400, "HTTP-400", "Bad Request",
                           "exportScope must be one of all, approved, published")
        return scope

    def download(self, req, user, parts):
        req.endpoint = f"{req.method} /tempcontent/{{id}}/{{file}}"
        if req.method != "GET" or len(parts) != 2:
            raise ApiError(404, "HTTP-404", "Not Found", f"no route for {req.path}")
        record = self.export_guids.get(parts[0].lower())
        if record is None or record["downloaded"] or record["cancelled"]:
            raise ApiError(404, "HTTP-404", "Not Found", "temporary content not found")
        if record["user"] != user["id"]:
            raise ApiError(403, "HTTP-403", "Forbidden", "export belongs to another user")
        record["downloaded"] = True
        meta, payload = self.qvf_meta(record)
        name = self.db["app"][record["appId"]]["name"]
        disposition = f"attachment; filename*=UTF-8''{urllib.parse.quote(name + '.qvf', safe='')}"
        return Response(200, content_type="application/octet-stream",
                        headers={"Content-Disposition": disposition},
                        chunks=qvf.qvf_chunks(meta, payload, meta["payload_seed"]),
                        length=qvf.qvf_length(meta, payload))

    def qvf_meta(self, record):
        """QVF metadata for an export and the payload size giving the right total length."""
        app = self.db["app"][record["appId"]]
        extra = self.app_extra[app["id"]]
        states = SCOPE_STATES[record["exportScope"]]
        objects = [self.qvf_object(o) for o in self.app_objects.get(app["id"], ())]
        total = min(app["fileSize"], SKIPDATA_MAX) if record["skipData"] else app["fileSize"]
        meta = {"format": 1, "source": "qrs", "app_id": app["id"], "name": app["name"],
                "description": app["description"], "script": extra["script"],
                "objects": [o for o in objects if o["state"] in states],
                "data_model": dict(extra["data_model"],
                                   lineage=lineage.sources(extra["script"], self.connect_statement)),
                "has_data": not record["skipData"],
                "payload_size": 0,
                "payload_seed": f"qrs:{app['id']}:{'nodata' if record['skipData'] else 'data'}"}
        for _ in range(4):          # header length depends on the digits of payload_size
            payload = max(0, total - len(qvf.header_bytes(meta)))
            if payload == meta["payload_size"]:
                break
            meta["payload_size"] = payload
        return meta, meta["payload_size"]

    def connect_statement(self, name):
        """A data connection's connect statement by the name a script uses
        (QSEoW appends " (DIR_user)" to a user's connection)."""
        for dc in self.db["dataconnection"].values():
            if dc["name"] == name or dc["name"].startswith(name + " ("):
                return dc.get("connectionstring", "")
        return None

    @staticmethod
    def qvf_object(obj):
        state = "base" if obj["approved"] else ("community" if obj["published"] else "private")
        owner = obj["owner"]
        return {"engineObjectId": obj["engineObjectId"], "objectType": obj["objectType"],
                "name": obj["name"], "state": state,
                "owner": f"{owner['userDirectory']}\\{owner['userId']}"}

    # ------------------------------------------------------------------ static files
    def static_file(self, req, head, parts):
        req.endpoint = f"{req.method} /{head}/{{name}}/{{file}}"
        if req.method != "GET" or len(parts) < 2:
            raise ApiError(404, "HTTP-404", "Not Found", f"no route for {req.path}")
        files = self.files.get((head, parts[0].lower()))
        rel = "/".join(parts[1:])
        if files is None or rel not in files:
            raise ApiError(404, "HTTP-404", "Not Found", f"no file {req.path}")
        data = files[rel]
        ctype = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        if rel.endswith(".qext"):
            ctype = "application/json"
        return Response(200, data.encode("utf-8") if isinstance(data, str) else data,
                        content_type=ctype)

    # ------------------------------------------------------------------ helpers for the loader
    def new_entity_id(self, kind, key, explicit=None):
        """An explicit id, else a UUID derived from the type and a natural key."""
        if explicit:
            entity_id = str(explicit).lower()
        else:
            entity_id, n = str(uuid.uuid5(_NS, f"{kind}:{key}")), 1
            while entity_id in self._used_ids:
                n += 1
                entity_id = str(uuid.uuid5(_NS, f"{kind}:{key}#{n}"))
        if entity_id in self._used_ids:
            raise ValueError(f"duplicate id {entity_id} in site ({kind} {key!r})")
        self._used_ids.add(entity_id)
        return entity_id


class SeedLoader:
    """Turns the site description into full QRS entities."""

    def __init__(self, qrs, seed):
        self.qrs, self.seed, self.db = qrs, seed, qrs.db
        self._names = {}            # kind -> (entity count when built, {name: entity})

    def load(self):
        for step in (self.users, self.tags, self.custom_properties, self.streams, self.apps,
                     self.data_connections, self.reload_tasks, self.extensions,
                     self.content_libraries, self.system_rules):
            step()

    # -- lookups
    def user_ref(self, text):
        directory, _, user_id = (text or SYSTEM_USER).partition("\\")
        user = self.qrs.find_user(directory, user_id)
        if user is None:
            raise ValueError(f"site refers to unknown user {text!r}")
        return _pick(user, CONDENSED["user"])

    def by_name_or_id(self, kind, ref):
        ref_l = str(ref).lower()
        if ref_l in self.db[kind]:
            return self.db[kind][ref_l]
        size, index = self._names.get(kind, (-1, None))
        if size != len(self.db[kind]):
            index = {}
            for entity in self.db[kind].values():
                index.setdefault(entity["name"], entity)
            self._names[kind] = (len(self.db[kind]), index)
        if ref in index:
            return index[ref]
        raise ValueError(f"site refers to unknown {kind} {ref!r}")

    def tag_refs(self, names):
        refs = []
        for name in names or []:
            tag = next((t for t in self.db["tag"].values() if t["name"] == name), None)
            if tag is None:
                tag = self.add_tag({"name": name})
            refs.append({"id": tag["id"], "name": tag["name"], "privileges": None})
        return refs

    def custom_property_values(self, values, owner_id, schema):
        """`{"Name": ["v", ...]}` -> custom-property value objects of entity `owner_id`."""
        out = []
        for name, vals in (values or {}).items():
            definition = next((d for d in self.db["custompropertydefinition"].values()
                               if d["name"] == name), None)
            if definition is None:
                definition = self.add_custom_property({"name": name})
            ref = _pick(definition, ("id", "name", "valueType", "choiceValues", "privileges"))
            for value in vals if isinstance(vals, list) else [vals]:
                value_id = str(uuid.uuid5(_NS, f"cpv:{owner_id}:{len(out)}"))
                out.append(_stamp({"id": value_id, "value": value, "definition": ref},
                                  f"{schema}.CustomProperty"))
        return out

    def new_id(self, kind, key, spec):
        return self.qrs.new_entity_id(kind, key, spec.get("id"))

    # -- users
    def users(self):
        specs = list(self.seed.get("users") or [])
        present = {(u.get("userDirectory", "").lower(), u.get("userId", "").lower()) for u in specs}
        for user_id in ("sa_repository", "sa_api", "sa_scheduler"):
            if ("internal", user_id) not in present:
                specs.append({"userDirectory": "INTERNAL", "userId": user_id, "name": user_id,
                              "roles": ["RootAdmin"] if user_id != "sa_scheduler" else []})
        for spec in specs:
            self.add_user(spec)

    def add_user(self, spec):
        directory, user_id = spec["userDirectory"], spec["userId"]
        entity_id = self.new_id("user", f"{directory}\\{user_id}".lower(), spec)
        attributes = []
        for i, attr in enumerate(spec.get("attributes") or []):
            attributes.append(_stamp({"id": str(uuid.uuid5(_NS, f"attr:{entity_id}:{i}")),
                                      "attributeType": attr["attributeType"],
                                      "attributeValue": attr["attributeValue"],
                                      "externalId": attr.get("externalId", "")}, "UserAttribute"))
        user = self.db["user"][entity_id] = _stamp({
            "id": entity_id, "customProperties": [], "userId": user_id,
            "userDirectory": directory, "userDirectoryConnectorName": directory,
            "name": spec.get("name", user_id), "roles": list(spec.get("roles") or []),
            "attributes": attributes, "inactive": bool(spec.get("inactive", False)),
            "removedExternally": bool(spec.get("removedExternally", False)),
            "blacklisted": bool(spec.get("blacklisted", False)), "deleteProhibited": False,
            "tags": []}, "User", spec)
        self.qrs.user_index[f"{directory}\\{user_id}".lower()] = user

    # -- tags and custom properties
    def tags(self):
        for spec in self.seed.get("tags") or []:
            self.add_tag(spec)

    def add_tag(self, spec):
        entity_id = self.new_id("tag", spec["name"], spec)
        tag = _stamp({"id": entity_id, "name": spec["name"]}, "Tag", spec)
        self.db["tag"][entity_id] = tag
        return tag

    def custom_properties(self):
        for spec in self.seed.get("custom_properties") or []:
            self.add_custom_property(spec)

    def add_custom_property(self, spec):
        entity_id = self.new_id("custompropertydefinition", spec["name"], spec)
        definition = _stamp({
            "id": entity_id, "name": spec["name"], "valueType": spec.get("valueType", "Text"),
            "choiceValues": list(spec.get("choiceValues") or []),
            "objectTypes": list(spec.get("objectTypes") or ["App", "Stream"]),
            "description": spec.get("description", ""), "impactSecurityAccess": False},
            "CustomPropertyDefinition", spec)
        self.db["custompropertydefinition"][entity_id] = definition
        return definition

    # -- streams and apps
    def streams(self):
        for spec in self.seed.get("streams") or []:
            entity_id = self.new_id("stream", spec["name"], spec)
            self.db["stream"][entity_id] = _stamp({
                "id": entity_id,
                "customProperties": self.custom_property_values(
                    spec.get("customProperties"), entity_id, "Stream"),
                "owner": self.user_ref(spec.get("owner")), "name": spec["name"],
                "tags": self.tag_refs(spec.get("tags"))}, "Stream", spec)

    def apps(self):
        for spec in self.seed.get("apps") or []:
            self.add_app(spec)

    def add_app(self, spec):
        stream = self.by_name_or_id("stream", spec["stream"]) if spec.get("stream") else None
        owner = self.user_ref(spec.get("owner"))
        key = f"{spec['name']}|{stream['id'] if stream else ''}|{owner['id']}"
        entity_id = self.new_id("app", key, spec)
        created = spec.get("createdDate", BASE_DATE)
        app = _stamp({
            "id": entity_id,
            "customProperties": self.custom_property_values(
                spec.get("customProperties"), entity_id, "App"),
            "owner": owner, "name": spec["name"], "appId": "", "sourceAppId": EMPTY_GUID,
            "targetAppId": EMPTY_GUID,
            "publishTime": spec.get("publishTime", created) if stream else NEVER,
            "published": stream is not None, "tags": self.tag_refs(spec.get("tags")),
            "description": spec.get("description", ""),
            "stream": _pick(stream, CONDENSED["stream"]) if stream else None,
            "fileSize": int(spec.get("fileSize", 1505637)),
            "lastReloadTime": spec.get("lastReloadTime", created),
            "thumbnail": "", "savedInProductVersion": spec.get("savedInProductVersion", "12.1306.0"),
            "migrationHash": hashlib.sha1(entity_id.encode()).hexdigest(),
            "dynamicColor": "", "availabilityStatus": 0}, "App", spec)
        self.db["app"][entity_id] = app
        self.qrs.app_extra[entity_id] = {"script": spec.get("script", ""),
                                         "data_model": spec.get("data_model") or {"tables": []}}
        for obj in spec.get("objects") or []:
            self.add_object(app, obj)

    def add_object(self, app, spec):
        engine_id = spec["engineObjectId"]
        state = spec.get("state", "base")
        if state not in STATE_FLAGS:
            raise ValueError(f"object {engine_id!r}: state must be base, community or private")
        published, approved = STATE_FLAGS[state]
        entity_id = self.new_id("app/object", f"{app['id']}:{engine_id}", spec)
        attributes = base64.b64encode(json.dumps({"title": spec.get("name", "")}).encode()).decode()
        obj = self.db["app/object"][entity_id] = _stamp({
            "id": entity_id, "owner": self.user_ref(spec.get("owner") or self.owner_text(app)),
            "engineObjectType": spec.get("objectType", "sheet"),
            "description": spec.get("description", ""), "attributes": attributes,
            "objectType": spec.get("objectType", "sheet"),
            "publishTime": app["publishTime"] if published else NEVER,
            "published": published, "approved": approved, "tags": [],
            "sourceObject": "", "draftObject": "", "name": spec.get("name", engine_id),
            "app": _pick(app, CONDENSED["app"]), "appObjectBlobId": "",
            "engineObjectId": engine_id,
            "contentHash": hashlib.sha1(f"{entity_id}".encode()).hexdigest(), "size": -1},
            "App.Object", spec)
        self.qrs.app_objects.setdefault(app["id"], []).append(obj)

    @staticmethod
    def owner_text(entity):
        return f"{entity['owner']['userDirectory']}\\{entity['owner']['userId']}"

    # -- data connections
    def data_connections(self):
        for spec in self.seed.get("data_connections") or []:
            entity_id = self.new_id("dataconnection", spec["name"], spec)
            self.db["dataconnection"][entity_id] = _stamp({
                "id": entity_id,
                "customProperties": self.custom_property_values(
                    spec.get("customProperties"), entity_id, "DataConnection"),
                "owner": self.user_ref(spec.get("owner")), "name": spec["name"],
                "connectionstring": spec.get("connectionstring", ""),
                "type": spec.get("type", "folder"), "engineObjectId": "",
                "username": spec.get("username", ""), "password": "",
                "logOn": int(spec.get("logOn", 0)), "architecture": int(spec.get("architecture", 0)),
                "tags": self.tag_refs(spec.get("tags"))}, "DataConnection", spec)

    # -- reload tasks and triggers
    def reload_tasks(self):
        specs = self.seed.get("reload_tasks") or []
        tasks = [self.add_task(spec) for spec in specs]
        for spec, task in zip(specs, tasks):
            for i, event in enumerate(spec.get("schema_events") or []):
                self.add_schema_event(task, event, i)
            for i, event in enumerate(spec.get("composite_events") or []):
                self.add_composite_event(task, event, i)

    def add_task(self, spec):
        app = self.by_name_or_id("app", spec["app"])
        entity_id = self.new_id("reloadtask", spec["name"], spec)
        last = spec.get("lastExecution", {})
        self.db["reloadtask"][entity_id] = _stamp({
            "id": entity_id, "customProperties": [], "app": _pick(app, CONDENSED["app"]),
            "isManuallyTriggered": bool(spec.get("isManuallyTriggered", False)),
            "operational": {"id": str(uuid.uuid5(_NS, f"op:{entity_id}")),
                            "lastExecutionResult": {
                                "id": str(uuid.uuid5(_NS, f"res:{entity_id}")),
                                "status": int(last.get("status", 7)),
                                "startTime": last.get("startTime", app["lastReloadTime"]),
                                "stopTime": last.get("stopTime", app["lastReloadTime"]),
                                "duration": int(last.get("duration", 0))},
                            "nextExecution": spec.get("nextExecution", NEVER)},
            "name": spec["name"], "taskType": int(spec.get("taskType", 0)),
            "enabled": bool(spec.get("enabled", True)),
            "taskSessionTimeout": int(spec.get("taskSessionTimeout", 1440)),
            "maxRetries": int(spec.get("maxRetries", 0)), "tags": self.tag_refs(spec.get("tags")),
            "isPartialReload": bool(spec.get("isPartialReload", False)),
            "timeToLive": int(spec.get("timeToLive", 0)),
            "preloadNodes": list(spec.get("preloadNodes") or [])}, "ReloadTask", spec)
        return self.db["reloadtask"][entity_id]

    @staticmethod
    def task_ref(task):
        return {"id": task["id"], "name": task["name"], "taskType": task["taskType"],
                "enabled": task["enabled"], "taskSessionTimeout": task["taskSessionTimeout"],
                "maxRetries": task["maxRetries"], "operational": task["operational"],
                "privileges": None}

    def add_schema_event(self, task, spec, index):
        entity_id = self.new_id("schemaevent", f"{task['id']}:{index}:{spec.get('name', '')}", spec)
        self.db["schemaevent"][entity_id] = _stamp({
            "id": entity_id, "timeZone": spec.get("timeZone", "UTC"),
            "daylightSavingTime": int(spec.get("daylightSavingTime", 0)),
            "startDate": spec.get("startDate", "2024-01-11T06:00:00.000"),
            "expirationDate": spec.get("expirationDate", "9999-01-01T00:00:00.000"),
            "schemaFilterDescription": list(spec.get("schemaFilterDescription") or ["* * - * * * * *"]),
            "incrementDescription": spec.get("incrementDescription", "0 0 1 0"),
            "incrementOption": int(spec.get("incrementOption", 2)),
            "operational": {"id": str(uuid.uuid5(_NS, f"op:{entity_id}")),
                            "timesTriggered": int(spec.get("timesTriggered", 0)),
                            "nextExecution": spec.get("nextExecution", NEVER)},
            "name": spec.get("name", f"Trigger {index + 1}"),
            "enabled": bool(spec.get("enabled", True)), "eventType": 0,
            "reloadTask": self.task_ref(task), "userSyncTask": None,
            "externalProgramTask": None}, "SchemaEvent", spec)

    def add_composite_event(self, task, spec, index):
        entity_id = self.new_id("compositeevent", f"{task['id']}:{index}:{spec.get('name', '')}", spec)
        rules = []
        for i, rule in enumerate(spec.get("compositeRules") or []):
            upstream = self.by_name_or_id("reloadtask", rule["reloadTask"])
            rules.append({"id": str(uuid.uuid5(_NS, f"rule:{entity_id}:{i}")),
                          "ruleState": int(rule.get("ruleState", 1)),
                          "reloadTask": self.task_ref(upstream), "userSyncTask": None,
                          "externalProgramTask": None, "privileges": None,
                          "schemaPath": "CompositeEventRule"})
        constraint = {"days": 0, "hours": 0, "minutes": 360, "seconds": 0,
                      **(spec.get("timeConstraint") or {})}
        self.db["compositeevent"][entity_id] = _stamp({
            "id": entity_id, "timeConstraint": constraint, "compositeRules": rules,
            "operational": {"id": str(uuid.uuid5(_NS, f"op:{entity_id}")),
                            "timesTriggered": 0, "nextExecution": NEVER},
            "name": spec.get("name", f"Composite {index + 1}"),
            "enabled": bool(spec.get("enabled", True)), "eventType": 1,
            "reloadTask": self.task_ref(task), "userSyncTask": None,
            "externalProgramTask": None}, "CompositeEvent", spec)

    # -- extensions, content libraries, rules
    def extensions(self):
        for spec in self.seed.get("extensions") or []:
            files = dict(spec.get("files") or {})
            qext = f"{spec['name']}.qext"
            if qext not in files:
                files[qext] = json.dumps({"name": spec["name"],
                                          "type": spec.get("type", "visualization"),
                                          "version": "1.0.0"})
            self.add_static("extension", "extensions", spec, files)

    def content_libraries(self):
        for spec in self.seed.get("content_libraries") or []:
            self.add_static("contentlibrary", "content", spec, dict(spec.get("files") or {}))

    def add_static(self, kind, prefix, spec, files):
        entity_id = self.new_id(kind, spec["name"], spec)
        self.qrs.files[(prefix, spec["name"].lower())] = files
        references = [{"id": str(uuid.uuid5(_NS, f"ref:{entity_id}:{name}")),
                       "dataLocation": entity_id, "logicalPath": f"/{prefix}/{spec['name']}/{name}",
                       "externalPath": name, "serveOptions": 0, "privileges": None,
                       "schemaPath": "StaticContentReference"} for name in files]
        self.db[kind][entity_id] = _stamp({
            "id": entity_id, "customProperties": [], "owner": self.user_ref(spec.get("owner")),
            "name": spec["name"], "tags": self.tag_refs(spec.get("tags")),
            "whiteList": {"id": str(uuid.uuid5(_NS, f"wl:{entity_id}")),
                          "libraryType": 0 if kind == "extension" else 1,
                          "fileExtensions": ["qext", "js", "css", "json", "png", "svg", "html",
                                             "txt", "jpg", "woff", "ttf"]},
            "references": references}, "Extension" if kind == "extension" else "ContentLibrary",
            spec)

    def system_rules(self):
        for spec in self.seed.get("system_rules") or []:
            entity_id = self.new_id("systemrule", spec["name"], spec)
            self.db["systemrule"][entity_id] = _stamp({
                "id": entity_id, "category": spec.get("category", "Security"),
                "subcategory": spec.get("subcategory", ""), "type": spec.get("type", "Custom"),
                "name": spec["name"], "rule": spec.get("rule", ""),
                "resourceFilter": self.resource_filter(spec.get("resourceFilter", "")),
                "actions": int(spec.get("actions", 2)), "comment": spec.get("comment", ""),
                "disabled": bool(spec.get("disabled", False)),
                "ruleContext": int(spec.get("ruleContext", 0)),
                "seedId": EMPTY_GUID, "version": 0, "tags": []}, "SystemRule", spec)

    def resource_filter(self, text):
        """Replace `Stream_<stream name>` items by `Stream_<stream id>`."""
        out = []
        for item in text.split(","):
            kind, sep, ref = item.strip().partition("_")
            if sep and kind.lower() == "stream" and ref and ref != "*":
                ref = self.by_name_or_id("stream", ref)["id"]
            out.append(f"{kind}{sep}{ref}")
        return ",".join(out)


ENUMS = {
    "SchemaEvent.IncrementOption": {"values": ["0: once", "1: hourly", "2: daily", "3: weekly",
                                               "4: monthly", "5: custom"],
                                    "usages": ["SchemaEvent.IncrementOption"]},
    "SchemaEvent.DaylightSavingTime": {"values": ["0: ObserveDaylightSavingTime",
                                                  "1: PermanentStandardTime",
                                                  "2: PermanentDaylightSavingTime"],
                                       "usages": ["SchemaEvent.DaylightSavingTime"]},
    "Event.EventType": {"values": ["0: Schema", "1: Composite"], "usages": ["Event.EventType"]},
    "CompositeEventRule.RuleState": {"values": ["0: Undefined", "1: TaskSuccessful", "2: TaskFail"],
                                     "usages": ["CompositeEventRule.RuleState"]},
    "Task.TaskType": {"values": ["0: Reload", "1: ExternalProgram", "2: UserSync", "3: Distribute"],
                      "usages": ["Task.TaskType"]},
    "DataConnection.LogOn": {"values": ["0: LOG_ON_SERVICE_USER", "1: LOG_ON_CURRENT_USER"],
                             "usages": ["DataConnection.LogOn"]},
    "DataConnection.Architecture": {"values": ["0: Undefined", "1: x86", "2: x64"],
                                    "usages": ["DataConnection.Architecture"]},
    "SystemRule.RuleContext": {"values": ["0: BothQlikSenseAndQMC", "1: OnlyInQlikSense",
                                          "2: OnlyInQMC"], "usages": ["SystemRule.RuleContext"]},
}
