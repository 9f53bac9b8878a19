#!/usr/bin/env python3
"""Synthetic qliksim site generator (for benchmarks and large tests).

  python3 tests/qliksim/generate.py --apps 2000 --users 5000 --streams 200 \\
      --connections 1000 --tasks 1000 [--app-size BYTES] [--seed S] \\
      [--qlikview DIR [--qv-documents N]] > site.json

--qlikview also writes a QlikView estate under DIR (DIR/share, DIR/exports:
tests/qliksim/qv_estate.py) whose scripts use the site's data connections.

The output is deterministic for a given set of arguments. About 1 name in 37 is
deliberately awkward (quotes, ampersands, non-ASCII) so clients meet them at scale.
"""
import argparse
import json
import random
import sys

DEPARTMENTS = ["Sales", "Finance", "Operations", "HR", "Marketing", "Logistics", "IT",
               "Procurement", "Legal", "Support", "R&D", "Quality"]
AWKWARD = ["O'Brien's", "Ünïcødé", "Q&A / Tests", "\"Quoted\"", "Ops' Reports", "Café 50%"]
DC_TYPES = [
    ("folder", "\\\\fileserver\\qlik\\{n}\\"),
    ("ODBC", "ODBC CONNECT TO [DSN_{n}]"),
    ("OLEDB", "OLEDB CONNECT TO [Provider=SQLOLEDB.1;Data Source=db{n};Initial Catalog=DW]"),
    ("QvOdbcConnectorPackage.exe",
     "CUSTOM CONNECT TO \"provider=QvOdbcConnectorPackage.exe;driver=postgres;host=pg{n};port=5432;db=dw;\""),
    ("QvRestConnector.exe",
     "CUSTOM CONNECT TO \"provider=QvRestConnector.exe;url=https://api{n}.example.com/v1;method=GET;\""),
    ("internet", "https://files{n}.example.com/"),
]
# (incrementOption, incrementDescription, schemaFilterDescription)
TRIGGERS = [
    (2, "0 0 1 0", "* * - * * * * *"),          # daily
    (3, "0 0 1 0", "* * - 1,3,5 1 * * *"),      # weekly Mon/Wed/Fri
    (4, "0 0 1 0", "* * - * * 1,15 * *"),       # monthly 1st and 15th
    (1, "0 1 0 0", "* * - * * * * *"),          # hourly
    (0, "0 0 0 0", "* * - * * * * *"),          # once
    (3, "0 0 1 0", "* * - 0 2 * * *"),          # every 2 weeks on Sunday
]
ZONES = ["Europe/Paris", "UTC", "America/New_York", "Asia/Tokyo", "Europe/London"]
STATES = ["base", "base", "base", "community", "private"]
OBJECT_TYPES = ["sheet", "sheet", "sheet", "story", "bookmark"]


def label(kind, i, rnd):
    """A readable name; about 1 in 37 carries awkward characters."""
    dept = DEPARTMENTS[i % len(DEPARTMENTS)]
    name = f"{kind} {i:05d} {dept}"
    if i % 37 == 5:
        name += " " + rnd.choice(AWKWARD)
    return name


def make_users(n, rnd):
    users = [{"userDirectory": "INTERNAL", "userId": u, "name": u,
              "roles": ["RootAdmin"], "attributes": []}
             for u in ("sa_repository", "sa_api", "sa_scheduler")]
    for i in range(n):
        uid = f"user{i:05d}"
        attrs = []
        if i % 7 != 3:
            attrs.append({"attributeType": "email", "attributeValue": f"{uid}@corp.example"})
        for g in rnd.sample(DEPARTMENTS, 1 + i % 3):
            attrs.append({"attributeType": "group", "attributeValue": g})
        users.append({"userDirectory": "CORP", "userId": uid, "name": f"User {i:05d}",
                      "roles": [], "attributes": attrs, "inactive": i % 97 == 13})
    return users


def owner_of(i, n_users):
    return f"CORP\\user{i % n_users:05d}" if n_users else "INTERNAL\\sa_repository"


def make_streams(n, n_users, rnd):
    return [{"name": label("Stream", i, rnd), "owner": owner_of(i * 13, n_users),
             "tags": [DEPARTMENTS[i % len(DEPARTMENTS)]],
             "customProperties": {"Region": [["EMEA", "Americas", "APAC"][i % 3]]}}
            for i in range(n)]


def make_connections(n, n_users, rnd):
    out = []
    for i in range(n):
        kind, template = DC_TYPES[i % len(DC_TYPES)]
        dc = {"name": label("Conn", i, rnd), "type": kind,
              "connectionstring": template.format(n=i), "owner": owner_of(i * 7, n_users)}
        if kind in ("ODBC", "OLEDB", "QvOdbcConnectorPackage.exe"):
            dc.update(username=f"svc{i}", password=f"secret-{i}")
        out.append(dc)
    return out


def make_objects(app_index, owner, n_users, rnd):
    objects = []
    for j in range(3 + app_index % 4):
        state = STATES[(app_index + j) % len(STATES)]
        obj_owner = owner if state == "base" else owner_of(app_index + j * 31, n_users)
        objects.append({"engineObjectId": f"obj{app_index:05d}x{j:02d}{rnd.randrange(16**6):06x}",
                        "objectType": OBJECT_TYPES[j % len(OBJECT_TYPES)],
                        "name": f"Object {j}", "owner": obj_owner, "state": state})
    return objects


def make_script(app_index, connections, rnd):
    if not connections:
        return "T:\nLOAD * INLINE [\nA\n1\n];\n"
    dc = connections[(app_index * 11) % len(connections)]
    if dc["type"] in ("folder", "internet"):
        return f"T:\nLOAD * FROM [lib://{dc['name']}/data{app_index}.qvd] (qvd);\n"
    return f"LIB CONNECT TO '{dc['name'].replace(chr(39), chr(39) * 2)}';\nT:\nSQL SELECT * FROM t{app_index};\n"


def make_apps(n, streams, connections, n_users, size, rnd):
    apps = []
    for i in range(n):
        personal = not streams or i % 10 == 9
        owner = owner_of(i * 3, n_users)
        fields = [f"F{i}_{k}" for k in range(1 + i % 4)]
        apps.append({
            "name": label("App", i, rnd), "description": f"Generated app {i}", "owner": owner,
            "stream": None if personal else streams[i % len(streams)]["name"],
            "tags": [DEPARTMENTS[i % len(DEPARTMENTS)]],
            "customProperties": {"Region": [["EMEA", "Americas", "APAC"][i % 3]]},
            "fileSize": size, "lastReloadTime": "2024-03-01T05:00:00.000Z",
            "script": make_script(i, connections, rnd),
            "data_model": {"tables": [{"name": "T", "no_of_rows": 100 + i, "fields": fields}]},
            "objects": make_objects(i, owner, n_users, rnd)})
    return apps


def make_tasks(n, apps, rnd):
    tasks = []
    for i in range(min(n, len(apps)) if apps else 0):
        option, increment, schema_filter = TRIGGERS[i % len(TRIGGERS)]
        task = {"name": f"Reload {apps[i]['name']}", "app": apps[i]["name"],
                "enabled": i % 23 != 7, "isPartialReload": i % 41 == 1,
                "schema_events": [{
                    "name": f"Trigger {i}", "enabled": True, "timeZone": ZONES[i % len(ZONES)],
                    "daylightSavingTime": 0,
                    "startDate": f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:{(i * 5) % 60:02d}:00.000",
                    "expirationDate": "9999-01-01T00:00:00.000", "incrementOption": option,
                    "incrementDescription": increment, "schemaFilterDescription": [schema_filter]}]}
        if i % 10 == 9:
            task["composite_events"] = [{
                "name": f"After task {i - 1}", "enabled": True,
                "timeConstraint": {"days": 0, "hours": 0, "minutes": 360, "seconds": 0},
                "compositeRules": [{"ruleState": 1, "reloadTask": tasks[i - 1]["name"]}]}]
        tasks.append(task)
    return tasks


def make_extensions():
    exts = []
    for i in range(5):
        name = f"gen-ext-{i}"
        exts.append({"name": name, "type": "visualization", "owner": "INTERNAL\\sa_repository",
                     "files": {f"{name}.qext": json.dumps({"name": name, "type": "visualization",
                                                           "version": "1.0.0"}),
                               f"{name}.js": "define([], function () { return {}; });\n"}})
    exts.append({"name": "gen-theme", "type": "theme", "owner": "INTERNAL\\sa_repository",
                 "files": {"gen-theme.qext": json.dumps({"name": "gen-theme", "type": "theme",
                                                         "version": "1.0.0"}),
                           "theme.json": json.dumps({"_inherit": True, "color": "#333"})}})
    return exts


def make_rules(streams):
    return [{"name": f"Read {s['name']}", "category": "Security", "type": "Custom",
             "rule": f"((user.group=\"{DEPARTMENTS[i % len(DEPARTMENTS)]}\"))",
             "resourceFilter": f"Stream_{s['name']}", "actions": 2 if i % 2 else 34,
             "disabled": False, "ruleContext": 0} for i, s in enumerate(streams)]


def make_cloud(users):
    emails = [a["attributeValue"] for u in users for a in u["attributes"]
              if a["attributeType"] == "email"]
    cloud_users = [{"subject": "auth0|admin", "email": "admin@acme.com", "name": "Admin",
                    "status": "active", "roles": ["TenantAdmin"]}]
    cloud_users += [{"subject": f"auth0|{e.split('@')[0]}", "email": e, "name": e.split("@")[0],
                     "status": "active", "roles": []} for e in emails[::3]]
    return {"tenant": {"name": "acme", "hostnames": ["acme.eu.qlikcloud.com"]},
            "api_keys": [{"key": "qsim-admin-key", "user": "admin@acme.com"}],
            "users": cloud_users,
            "groups": [{"name": d, "providerType": "idp"} for d in DEPARTMENTS[:4]],
            "spaces": [{"name": "Existing Space", "type": "shared", "owner": "admin@acme.com"}],
            "identity_providers": [{"protocol": "OIDC", "provider": "auth0"}],
            "quotas": {"app_upload_disk_size": 10737418240}}


def generate(apps, users, streams, connections, tasks, app_size=200 * 1024, seed=1):
    rnd = random.Random(seed)
    user_list = make_users(users, rnd)
    stream_list = make_streams(streams, users, rnd)
    conn_list = make_connections(connections, users, rnd)
    app_list = make_apps(apps, stream_list, conn_list, users, app_size, rnd)
    qrs = {"about": {"buildVersion": "14.113.2"}, "users": user_list,
           "tags": [{"name": d} for d in DEPARTMENTS],
           "custom_properties": [{"name": "Region", "valueType": "Text",
                                  "choiceValues": ["Americas", "APAC", "EMEA"],
                                  "objectTypes": ["App", "Stream"]}],
           "streams": stream_list, "apps": app_list, "data_connections": conn_list,
           "reload_tasks": make_tasks(tasks, app_list, rnd), "extensions": make_extensions(),
           "content_libraries": [], "system_rules": make_rules(stream_list)}
    return {"qrs": qrs, "cloud": make_cloud(user_list)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("apps", "users", "streams", "connections", "tasks"):
        p.add_argument(f"--{name}", type=int, default=10)
    p.add_argument("--app-size", type=int, default=200 * 1024, help="fileSize of every app")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--qlikview", help="a folder for a generated QlikView estate (share and exports)")
    p.add_argument("--qv-documents", type=int, default=4, help="ordinary QlikView documents in it")
    a = p.parse_args(argv)
    site = generate(a.apps, a.users, a.streams, a.connections, a.tasks, a.app_size, a.seed)
    if a.qlikview:
        import qv_estate
        qv_estate.write(a.qlikview, a.qv_documents, [dc["name"] for dc in site["qrs"]["data_connections"]], a.seed)
    json.dump(site, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
