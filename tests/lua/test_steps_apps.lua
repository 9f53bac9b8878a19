-- The application pipeline's first half end to end, through the qmig-lua
-- binary against qliksim: apps.export, apps.import, apps.reload,
-- apps.delete, post.reset_descriptions.  Spaces come from the fixture step
-- fixture.spaces (tests/lua/fixtures/steps/fixture/spaces.lua).
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"
local simlib = require "sim"

local T = t.suite("steps_apps")
local FIXTURES = fs.realpath("tests/lua/fixtures")
local sim

local AWKWARD = "O'Brien's ../Q1/Sales"
local function guid(n) return string.format("00000000-0000-4000-8000-%012d", n) end
-- Ids in import order (concurrency 1 imports by id): the first two share a
-- name, a space and the importing owner with a pre-existing app.
local ID = { budget = guid(1), budget2 = guid(2), awkward = guid(3), kpis = guid(4), scratch = guid(5), odbc = guid(6) }
local SITE = {
  qrs = {
    users = { { userDirectory = "CORP", userId = "jdoe", name = "John Doe" },
      { userDirectory = "CORP", userId = "ann", name = "Ann" } },
    streams = { { name = "Finance" }, { name = "Governed" }, { name = "Other" } },
    apps = {
      -- first by id: the kill test's first import is the one sharing its name,
      -- space and owner with a pre-existing app
      { id = ID.budget, name = "Budget", description = "Budget app", owner = "CORP\\jdoe", stream = "Finance",
        fileSize = 300000, script = "LOAD 1 AS x AUTOGENERATE 1;",
        objects = { { engineObjectId = "s1", objectType = "sheet", name = "Overview", state = "base" },
          { engineObjectId = "s2", objectType = "sheet", name = "Mine", owner = "CORP\\ann", state = "private" },
          { engineObjectId = "b1", objectType = "bookmark", name = "Q1", owner = "CORP\\ann", state = "community" },
          { engineObjectId = "m1", objectType = "masterobject", name = "KPI", state = "base" } } },
      { id = ID.budget2, name = "Budget", description = "Ann's budget", owner = "CORP\\ann", stream = "Finance" },
      { id = ID.awkward, name = AWKWARD, owner = "CORP\\ann", stream = "Finance",
        script = "LOAD 1 AS x AUTOGENERATE 1;" },
      { id = ID.kpis, name = "KPIs", description = "Governed KPIs", owner = "CORP\\jdoe", stream = "Governed",
        script = "LOAD 1 AS x AUTOGENERATE 1;" },
      { id = ID.scratch, name = "Scratch", description = "jdoe's scratch", owner = "CORP\\jdoe",
        script = "LOAD 1 AS x AUTOGENERATE 1;" },
      { name = "Scratch_old", owner = "CORP\\jdoe" },
      { name = "Legacy", stream = "Finance", tags = { "obsolete" } },
      { name = "Elsewhere", stream = "Other" },
      { id = ID.odbc, name = "ODBC app", stream = "Finance",
        script = "ODBC CONNECT TO [DSN];\nLOAD 1 AS x AUTOGENERATE 1;" },
    },
  },
  cloud = {
    api_keys = simlib.ADMIN_CLOUD.api_keys, users = simlib.ADMIN_CLOUD.users,
    spaces = { { name = "Finance", type = "shared" } },
    apps = { { name = "Budget", space = "Finance", owner = "admin@acme.com", description = "pre-existing" },
      { name = "Scratch", owner = "admin@acme.com", description = "somebody's own scratch" } },
  },
}
-- source id -> {name, where it goes}
local EXPECT = {
  [ID.budget] = { "Budget", "Finance" }, [ID.budget2] = { "Budget", "Finance" }, [ID.awkward] = { AWKWARD, "Finance" },
  [ID.kpis] = { "KPIs", "Staging" }, [ID.scratch] = { "Scratch", "(personal)" }, [ID.odbc] = { "ODBC app", "Finance" },
}
local N = 6

local PLAN = [[
plan:
  apps:
    streams: [finance, GOVERNED]
    personal: true
    exclude: {names: ['*_OLD'], tags: [Obsolete]}
%s
  spaces:
    map: {Governed: {name: Governed, type: managed}}
    staging: Staging]]

local function the_sim()
  if not sim then sim = simlib.start { site = SITE } end
  return sim
end

-- Second simulators (a changed or older source); stopped even when a test fails.
local extra = {}
local function start_extra(site)
  local s = simlib.start { site = site }
  extra[#extra + 1] = s
  return s
end

T.after_all(function()
  if sim then sim:stop() end
  for _, s in ipairs(extra) do s:stop() end
end)

local function clean()
  the_sim():reset()
  the_sim():faults {}
end

-- A fresh project; returns job file, project dir.
local function job(opts)
  opts = opts or {}
  local dir = fs.realpath(t.tmpdir())
  local text = the_sim():job_yaml {
    project_dir = dir .. "/project", concurrency = opts.concurrency, catalogue_lag = opts.catalogue_lag,
    extra = "steps_path: [" .. FIXTURES .. "/steps]\n" .. PLAN:format(opts.apps_extra or ""),
    jobs = opts.jobs or "  - {name: apps, steps: [fixture.spaces, apps.export, apps.import]}",
  }
  t.write(dir .. "/job.yaml", text)
  return dir .. "/job.yaml", dir .. "/project"
end

local function run(args, msg)
  local code, out, err = cli.run(args)
  return code, out, err, (msg and msg .. ": " or "") .. out .. err
end

-- QRS app id -> QRS app
local function qrs_apps()
  local out = {}
  for _, a in ipairs(the_sim():state().qrs.entities.app) do out[a.id] = a end
  return out
end

-- Cloud state: apps, spaces by id
local function cloud()
  local st = the_sim():state().cloud
  local spaces = {}
  for _, s in ipairs(st.spaces) do spaces[s.id] = s end
  return st.apps, spaces
end

-- source app id -> list of cloud apps carrying its marker
local function marked()
  local apps = cloud()
  local out = {}
  for _, a in ipairs(apps) do
    local id = retrieve.read_marker(a.description)
    if id then
      out[id] = out[id] or {}
      table.insert(out[id], a)
    end
  end
  return out
end

-- Imports a minimal QVF straight through the API (not through qmig-lua).
local function api_import(name, description)
  local resp = assert(the_sim().control:request { method = "POST", path = "/api/v1/apps/import",
    query = { name = name }, headers = { Authorization = "Bearer " .. the_sim().info.api_key,
      ["Content-Type"] = "application/octet-stream" },
    body = "QSIMQVF1\n" .. json.encode { format = 1, name = name, description = description } .. "\n" })
  t.eq(resp.status, 200, resp.body)
end

-- Publishes the staged KPIs app to the managed space through the API (as
-- apps.publish would); returns the copy's id.
local function publish_kpis()
  local _, spaces = cloud()
  local governed
  for id, sp in pairs(spaces) do if sp.name == "Governed" then governed = id end end
  local resp = assert(the_sim().control:request { method = "POST",
    path = "/api/v1/apps/" .. marked()[ID.kpis][1].id .. "/publish",
    headers = { Authorization = "Bearer " .. the_sim().info.api_key }, json = { spaceId = governed } })
  t.eq(resp.status, 200, resp.body)
  return json.decode(resp.body).attributes.id
end

local function space_name(spaces, a)
  if type(a.spaceId) ~= "string" or a.spaceId == "" then return "(personal)" end
  return spaces[a.spaceId] and spaces[a.spaceId].name or "?"
end

-- Every in-scope app exactly once, in the right place; the rest untouched.
local function check_imported(msg)
  local src = qrs_apps()
  local m = marked()
  local apps, spaces = cloud()
  local count = 0
  for id, want in pairs(EXPECT) do
    local list = m[id]
    t.eq(list and #list, 1, msg .. ": " .. want[1] .. " imported once")
    t.eq(list[1].name, want[1], msg .. ": final name")
    t.eq(space_name(spaces, list[1]), want[2], msg .. ": " .. want[1] .. " placed")
    local _, original = retrieve.read_marker(list[1].description)
    t.eq(original, src[id].description, msg .. ": original description kept in the marker")
    count = count + 1
  end
  for _ in pairs(m) do count = count - 1 end
  t.eq(count, 0, msg .. ": nothing out of scope imported")
  -- the pre-existing apps of the same names are untouched
  local pre = {}
  for _, a in ipairs(apps) do
    if a.description == "pre-existing" or a.description == "somebody's own scratch" then pre[#pre + 1] = a.name end
  end
  table.sort(pre)
  t.eq(pre, { "Budget", "Scratch" }, msg .. ": pre-existing apps untouched")
  t.eq(#apps, N + 2, msg .. ": no other app in the tenant")
end

T.test("scope: streams, personal, names, tags and excludes, case-insensitive globs", function()
  local scope = require "qmig.domain.scope"
  local glob = require "qmig.job.glob"
  local function app(name, stream, tags)
    local tl = {}
    for _, x in ipairs(tags or {}) do tl[#tl + 1] = { name = x } end
    return { name = name, published = stream ~= nil, stream = stream and { id = "s-" .. stream, name = stream },
      tags = tl }
  end
  local p = { streams = { "Fin*" }, personal = false, names = { "*" },
    exclude = { names = { "*_old" }, tags = { "x" } } }
  t.truthy(scope.in_scope(p, app("A", "finance")))
  t.truthy(not scope.in_scope(p, app("A", "Sales")))
  t.truthy(not scope.in_scope(p, app("A")), "personal off")
  t.truthy(scope.in_scope({ personal = true }, app("A")))
  t.truthy(scope.in_scope({}, app("A", "Any")), "no streams key: every stream")
  t.truthy(not scope.in_scope({ streams = {} }, app("A", "Any")), "streams: [] -> none")
  t.truthy(not scope.in_scope(p, app("B_OLD", "Finance")), "exclude names")
  t.truthy(not scope.in_scope(p, app("B", "Finance", { "X" })), "exclude tags")
  t.truthy(scope.in_scope({ tags = { "keep" } }, app("B", "S", { "Keep" })))
  t.truthy(not scope.in_scope({ tags = { "keep" } }, app("B", "S", { "other" })))
  t.truthy(glob.match("O'Brien's ../Q1/*", AWKWARD))
  t.truthy(glob.match("?udget", "budget"))
  t.truthy(not glob.match("B.dget", "Budget"), "'.' is literal")
  t.truthy(glob.match("100%", "100%"))
end)

T.test("export + import: every app once in the right place, QVFs by id, markers; re-run makes zero writes", function()
  clean()
  local file, proj = job()
  local code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.export%s+6 created")
  t.match(out, "apps%.import%s+6 created")
  check_imported("first run")
  -- files named by source id only, with a sidecar; never an app name
  local names = fs.dir(proj .. "/exports/apps")
  local want = {}
  for id in pairs(EXPECT) do
    want[#want + 1] = id .. ".json"
    want[#want + 1] = id .. ".qvf"
  end
  table.sort(want)
  t.eq(names, want)
  local qvf = t.read(proj .. "/exports/apps/" .. ID.budget .. ".qvf")
  t.eq(#qvf, 64 * 1024, "skipData export: 64 KiB")
  t.match(qvf, "^QSIMQVF1\n")
  local meta = json.decode(qvf:match("^QSIMQVF1\n([^\n]+)\n"))
  t.eq(#meta.objects, 4, "exportScope=all carries private and community objects")
  -- appObjects.json: the objects of every exported app, sheets/stories/bookmarks only
  local objs = json.decode(t.read(proj .. "/appObjects.json"))
  t.eq(#objs, 6)
  for _, a in ipairs(objs) do
    if a.appId == ID.budget then
      t.eq(#a.objects, 3)
      local by = {}
      for _, o in ipairs(a.objects) do by[o.engineObjectId] = o end
      t.eq(by.s2.state, "private"); t.eq(by.s2.owner.userId, "ann"); t.eq(by.s2.owner.userDirectory, "CORP")
      t.eq(by.b1.state, "community"); t.eq(by.s1.state, "base"); t.eq(by.s1.exported, true)
    end
  end
  -- the app bound for the managed space says so
  local status = select(2, run({ "status", file, "--json" }))
  local recs = json.decode(status)
  local kpis
  for _, r in ipairs(recs) do if r.kind == "app" and r.source_id == ID.kpis then kpis = r end end
  t.truthy(kpis and kpis.data.bound_for, "KPIs is bound for the managed space")
  t.truthy(kpis.data.staged)
  the_sim():reset_counters()
  code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.import%s+6 unchanged")
  t.eq(the_sim():counts().total_writes, 0, "re-run writes nothing")
  check_imported("re-run")
  -- --force re-runs every item: files are reused and apps found, still no write
  the_sim():reset_counters()
  code, out, _, msg = run({ "run", file, "--force" })
  t.eq(code, 0, msg)
  t.match(out, "apps%.export%s+6 unchanged")
  t.eq(the_sim():counts().total_writes, 0, "--force finds everything: no write")
  check_imported("forced")
end)

T.test("a lost project cache: exports reused from their sidecars, apps adopted by marker, no write", function()
  clean()
  local file, proj = job()
  t.eq(run({ "run", file }), 0)
  for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(proj .. "/qmig.db" .. suffix) end
  the_sim():reset_counters()
  local code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.export%s+6 unchanged")
  t.match(out, "apps%.import%s+6 adopted")
  t.eq(the_sim():counts().total_writes, 0)
  check_imported("after a lost cache")
end)

T.test("plan lists what would happen and writes nothing (no export either)", function()
  clean()
  local file = job()
  the_sim():reset_counters()
  local code, out, _, msg = run({ "plan", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.export .-: would export %(export exports/apps/")
  t.match(out, "apps%.export%s+6 to export")
  t.eq(the_sim():counts().total_writes, 0)
  -- with spaces and exports done, the plan shows the imports
  t.eq(run({ "run", file, "--step", "fixture.spaces", "--step", "apps.export" }), 0)
  the_sim():reset_counters()
  code, out, _, msg = run({ "plan", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.import .-: would create[^\n]* %(POST /api/v1/apps/import%)")
  t.match(out, "apps%.import%s+6 to create")
  t.eq(the_sim():counts().total_writes, 0)
end)

T.test("a reply lost after the import was applied never duplicates", function()
  clean()
  local file = job()
  t.eq(run({ "run", file, "--step", "fixture.spaces", "--step", "apps.export" }), 0)
  the_sim():faults { rules = {
    { match = "POST /api/v1/apps/import", nth = 1, action = "drop_after_apply" },
    { match = "PUT /api/v1/apps/", nth = 2, action = "drop_after_apply" },
    { match = "POST /api/v1/apps/import", nth = 4, action = "error", status = 503 },
  } }
  local code, _, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  check_imported("after lost replies")
  local reasons = {}
  for _, r in ipairs(json.decode((select(2, run({ "status", file, "--json" }))))) do
    if r.kind == "app" and r.reason then reasons[#reasons + 1] = r.reason end
  end
  table.sort(reasons)
  t.eq(reasons, { "recovered after an interrupted attempt", "recovered after an interrupted import" })
end)

-- QRS serves an export's download once.  A download whose reply is lost after
-- the server served it (on a reused connection curl asks again by itself, and
-- gets 404) needs a new export, not a failed item.
T.test("a download reply lost after the QRS served it: exported again with a new token", function()
  clean()
  local file = job()
  t.eq(run({ "run", file, "--step", "fixture.spaces" }), 0)
  the_sim():faults { rules = {
    { match = "~^GET /tempcontent/", nth = 1, action = "drop_after_apply" },
    { match = "~^GET /tempcontent/", nth = 3, action = "drop_after_apply" },
  } }
  local code, out, _, msg = run({ "run", file, "--step", "apps.export", "--concurrency", "1" })
  t.eq(code, 0, msg)
  t.match(out, "apps%.export%s+6 created")
  t.eq(the_sim():counts().injected.drop_after_apply, 2)
end)

T.test("SIGKILL right after an import write, then resume: never a duplicate", function()
  for n = 1, 6 do
    clean()
    local file = job { concurrency = 1 }
    t.eq(run({ "run", file, "--step", "fixture.spaces", "--step", "apps.export" }), 0)
    local pid, release = cli.spawn_held { "run", file }
    the_sim():faults { kill_after_writes = { pid = pid, n = n, signal = 9 } }
    local status = release()
    t.eq(status, 137, "killed at write " .. n)
    the_sim():faults {}
    local code, _, _, msg = run({ "run", file }, "resume after kill at " .. n)
    t.eq(code, 0, msg)
    check_imported("after kill at write " .. n)
    -- the half-finished import was recognised, not repeated
    local recovered = 0
    for _, r in ipairs(json.decode((select(2, run({ "status", file, "--json" }))))) do
      if r.kind == "app" and tostring(r.reason):match("recovered") then recovered = recovered + 1 end
    end
    t.eq(recovered, 1, "kill at write " .. n .. ": one import recovered")
    the_sim():reset_counters()
    t.eq(run({ "run", file }), 0)
    t.eq(the_sim():counts().total_writes, 0, "third run after kill at write " .. n)
  end
end)

T.test("SIGKILL anywhere in the whole job (spaces, export, import, reload), concurrency 4, then resume", function()
  for _, n in ipairs { 2, 4, 7, 10, 13, 16, 19, 22, 23, 24, 25, 26 } do
    clean()
    local file = job { concurrency = 4,
      jobs = "  - {name: apps, steps: [fixture.spaces, apps.export, apps.import, apps.reload]}" }
    local pid, release = cli.spawn_held { "run", file }
    the_sim():faults { kill_after_writes = { pid = pid, n = n, signal = 9 } }
    t.eq(release(), 137, "killed at write " .. n)
    the_sim():faults {}
    local code, _, _, msg = run({ "run", file }, "resume after kill at " .. n)
    t.eq(code, 1, msg)  -- the ODBC app's reload fails
    check_imported("after kill at write " .. n)
    -- one reload per app: a reload started before the kill is followed, not repeated
    local per_app, succeeded = {}, 0
    for _, r in ipairs(the_sim():state().cloud.reloads) do
      per_app[r.appId] = (per_app[r.appId] or 0) + 1
      if r.status == "SUCCEEDED" then succeeded = succeeded + 1 end
    end
    local apps = 0
    for _, k in pairs(per_app) do apps = apps + 1; t.eq(k, 1, "one reload per app, kill at " .. n) end
    t.eq({ apps, succeeded }, { N, N - 1 })
    the_sim():reset_counters()
    t.eq(run({ "run", file }), 1)
    local writes = the_sim():counts().writes
    t.eq(writes, { ["POST /api/v1/reloads"] = 1 }, "third run: only the failed reload again, kill at " .. n)
  end
end)

T.test("a source app changed since its import is reported, re-exported, and its imported app left alone",
  function()
  clean()
  local file = job()
  t.eq(run({ "run", file }), 0)
  -- the same site with one app changed, served by a second simulator as the source
  local site = json.decode(json.encode(SITE))
  for _, a in ipairs(site.qrs.apps) do
    if a.id == ID.awkward then a.modifiedDate = "2025-06-01T10:00:00.000Z"; a.description = "now documented" end
  end
  local s2 = start_extra(site)
  local text = t.read(file):gsub("url: " .. the_sim().info.qrs_url:gsub("%p", "%%%0"), "url: " .. s2.info.qrs_url)
  t.write(file, text)
  the_sim():reset_counters()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "apps%.export%s+1 updated, 5 unchanged")
  t.match(out, "apps%.import%s+6 unchanged")
  t.eq(the_sim():counts().total_writes, 0, "the target is not touched")
  local status = json.decode((select(2, run({ "status", file, "--json" }))))
  for _, r in ipairs(status) do
    if r.kind == "app" and r.source_id == ID.awkward then
      t.match(r.reason, "changed at the source")
      t.truthy(r.target_id)
    end
  end
  check_imported("after a source change")
  -- still reported by later runs (the reason stays with the record)
  the_sim():reset_counters()
  t.eq(run({ "run", file }), 0)
  t.eq(the_sim():counts().total_writes, 0)
  local reported = 0
  for _, r in ipairs(json.decode((select(2, run({ "status", file, "--json" }))))) do
    if r.kind == "app" and tostring(r.reason):match("changed at the source") then reported = reported + 1 end
  end
  t.eq(reported, 1)
end)

T.test("large QVFs (with data) go through temp-contents (plan.apps.large_app_mb)", function()
  clean()
  local file, proj = job { apps_extra = "    large_app_mb: 0\n    with_data: true" }
  local code, _, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  check_imported("via temp-contents")
  local counts = the_sim():counts()
  t.eq(counts.writes["POST /api/v1/temp-contents"], N)
  t.eq(counts.writes["POST /api/v1/apps/import"], N)
  t.eq(fs.stat(proj .. "/exports/apps/" .. ID.budget .. ".qvf").size, 300000, "with data: the whole app")
  for _, a in ipairs((cloud())) do
    if retrieve.read_marker(a.description) == ID.budget then
      t.eq(a.file_size, 300000); t.truthy(a.has_data)
    end
  end
end)

T.test("reload: success recorded, a failing script fails its item with the engine's message", function()
  clean()
  local file = job { jobs = "  - {name: apps, steps: [fixture.spaces, apps.export, apps.import, apps.reload]}" }
  local code, out, _, msg = run({ "run", file })
  t.eq(code, 1, msg)
  t.match(out, "apps%.reload%s+5 created, 1 failed")
  t.match(out, "EDC_ERROR_UNSUPPORTED_CONNECT")
  local reloads = the_sim():state().cloud.reloads
  local ok, failed = 0, 0
  for _, r in ipairs(reloads) do
    if r.status == "SUCCEEDED" then ok = ok + 1 elseif r.status == "FAILED" then failed = failed + 1 end
  end
  t.eq({ ok, failed }, { 5, 1 })
  -- the failed one is tried again by the next run; the others are left alone
  code, out = run({ "run", file })
  t.eq(code, 1)
  t.match(out, "apps%.reload%s+5 unchanged, 1 failed")
  t.eq(#the_sim():state().cloud.reloads, 7)
end)

T.test("reload: a lost POST /reloads stops looking once a later reload of the step is listed (a witness)", function()
  clean()
  local file = job { concurrency = 2, catalogue_lag = 60,
    jobs = "  - {name: apps, steps: [fixture.spaces, apps.export, apps.import, apps.reload]}" }
  -- (the polls slowed, each reload takes 2 s: the later ones begin after the doubt)
  the_sim():faults { slow_ms = 2000, rules = { { match = "POST /api/v1/reloads", nth = 1, action = "error" },
    { match = "GET /api/v1/reloads/", nth = 1, times = 1000, action = "slow" } } }
  local code, out, _, msg = run({ "run", file })
  t.eq(code, 1, msg)
  t.match(out, "apps%.reload%s+5 created, 1 failed")
  t.eq(#the_sim():state().cloud.reloads, 6, "the 503 made nothing; each app reloaded once")
  -- waiting out the lag re-listed the app's reloads every 2 s for 60 s
  local listed = the_sim():counts().requests["GET /api/v1/reloads"] or 0
  t.truthy(listed < 15, "reloads listed " .. listed .. " times")
end)

T.test("apps not imported are not reloaded", function()
  clean()
  local file = job { jobs = "  - {name: apps, steps: [apps.reload]}" }
  local code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.reload%s+6 skipped")
  t.eq(#the_sim():state().cloud.reloads, 0)
end)

T.test("delete removes only this project's marked apps; a later import brings them back", function()
  clean()
  local file = job { jobs = "  - {name: apps, steps: [fixture.spaces, apps.export, apps.import]}\n" ..
    "  - {name: clean, steps: [apps.delete]}" }
  t.eq(run({ "run", file, "--job", "apps" }), 0)
  -- an app marked for a source app outside this project is not ours; a
  -- half-finished import of one of ours (still under its importing name) is
  api_import("Foreign", "[qmig-lua:1:not-ours]")
  -- a published copy of the staged KPIs app in the managed space carries its marker too
  publish_kpis()
  t.eq(#marked()[ID.kpis], 2)
  api_import("Budget [qmig-lua:importing:" .. ID.budget .. "]", "Budget app")
  the_sim():reset_counters()
  local code, out, _, msg = run({ "plan", file, "--job", "clean" })
  t.eq(code, 0, msg)
  t.match(out, "would delete")
  t.eq(the_sim():counts().total_writes, 0)
  code, out, _, msg = run({ "run", file, "--job", "clean", "--yes" })
  t.eq(code, 0, msg)
  t.match(out, "apps%.delete%s+6 deleted")
  local status = json.decode((select(2, run({ "status", file, "--json" }))))
  for _, r in ipairs(status) do
    if r.kind == "app.delete" and (r.source_id == ID.budget or r.source_id == ID.kpis) then
      t.match(r.reason, "deleted 2 app")
    end
    if r.kind == "app" then t.eq(r.status, "deleted") end
  end
  local apps = cloud()
  local left = {}
  for _, a in ipairs(apps) do left[#left + 1] = a.name end
  table.sort(left)
  t.eq(left, { "Budget", "Foreign", "Scratch" })
  for _, a in ipairs(apps) do
    if a.name ~= "Foreign" then t.truthy(not retrieve.read_marker(a.description), "pre-existing app kept") end
  end
  -- nothing left to delete
  the_sim():reset_counters()
  code, out = run({ "run", file, "--job", "clean", "--yes" })
  t.eq(code, 0); t.match(out, "apps%.delete%s+nothing to do")
  t.eq(the_sim():counts().total_writes, 0)
  -- the cache knows they are gone: the import imports them again
  code, out, _, msg = run({ "run", file, "--job", "apps" })
  t.eq(code, 0, msg)
  t.match(out, "apps%.import%s+6 created")
end)

T.test("reset_descriptions restores the original descriptions; later runs still find the apps", function()
  clean()
  local file = job { jobs = "  - {name: apps, steps: [fixture.spaces, apps.export, apps.import]}\n" ..
    "  - {name: post, steps: [post.reset_descriptions]}" }
  t.eq(run({ "run", file, "--job", "apps" }), 0)
  local ids = {}
  for id, list in pairs(marked()) do ids[id] = list[1].id end
  -- KPIs also has a published copy, recorded as apps.publish would
  local copy = publish_kpis()
  local c = assert(require("qmig.store.cache").open(fs.dirname(file) .. "/project/qmig.db"))
  c:finish_item("app.published", ID.kpis, { status = "created", target_id = copy, step = "apps.publish" })
  c:close()
  local code, out, _, msg = run({ "run", file, "--job", "post" })
  t.eq(code, 0, msg)
  t.match(out, "post%.reset_descriptions%s+6 updated")
  for _, a in ipairs((cloud())) do
    if a.id == copy then t.eq(a.description, "Governed KPIs", "the published copy is reset too") end
  end
  local src = qrs_apps()
  local apps = cloud()
  local by_id = {}
  for _, a in ipairs(apps) do by_id[a.id] = a end
  for id, want in pairs(EXPECT) do
    local a = by_id[ids[id]]
    t.eq(a.description, src[id].description, want[1] .. ": original description back")
  end
  t.eq(next(marked()), nil, "no marker left")
  -- re-runs: nothing to reset, nothing re-imported (the cache still knows the apps)
  the_sim():reset_counters()
  code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "post%.reset_descriptions%s+6 unchanged")
  t.eq(the_sim():counts().total_writes, 0)
  code, _, _, msg = run({ "run", file, "--job", "apps", "--force" })
  t.eq(code, 0, msg)
  t.eq(#cloud(), N + 3, "forced import after the reset finds the apps through the cache")
  t.eq(the_sim():counts().total_writes, 0)
  -- undo of the reset puts the markers back
  code, _, _, msg = run({ "undo", file, "--run", "2" })
  t.eq(code, 0, msg)
  local m, n = marked(), 0
  for id, list in pairs(m) do
    n = n + 1
    t.eq(#list, id == ID.kpis and 2 or 1, "markers restored by undo")
  end
  t.eq(n, N)
end)

T.test("undo deletes the imported apps and nothing else; the next run imports them again", function()
  clean()
  local file = job()
  t.eq(run({ "run", file }), 0)
  local code, out, _, msg = run({ "undo", file })
  t.eq(code, 0, msg)
  t.match(out, "undone app ")
  local left = {}
  for _, a in ipairs((cloud())) do left[#left + 1] = a.description end
  table.sort(left)
  t.eq(left, { "pre-existing", "somebody's own scratch" })
  code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.import%s+6 created")
  check_imported("after undo and re-run")
end)

T.test("transforms.lua app hook renames or leaves apps out", function()
  clean()
  local file = job()
  local dir = fs.dirname(file)
  t.write(dir .. "/transforms.lua", [[
    return { app = function(app, target)
      if app.name == "Scratch" then return nil end
      target.name = "[M] " .. target.name
      return target
    end }
  ]])
  t.write(file, t.read(file) .. "transforms: transforms.lua\n")
  local code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.import%s+5 created, 1 skipped")
  local m = marked()
  t.eq(m[ID.budget][1].name, "[M] Budget")
  t.eq(m[ID.scratch], nil)
end)

T.test("with the real spaces.create and apps.publish: staged, then published into the managed space", function()
  -- a renamed step must fail this test, not switch it off
  for _, f in ipairs { "steps/spaces/create.lua", "steps/apps/publish.lua" } do
    t.truthy(fs.exists(f), "step file missing: " .. f)
  end
  clean()
  local file = job { jobs = "  - {name: apps, steps: [spaces.create, apps.export, apps.import, apps.publish]}" }
  t.write(file, (t.read(file):gsub("map: {Governed: {name: Governed, type: managed}}",
    "map: {Governed: {name: Governed, type: managed}, Finance: {name: Finance, type: shared},"
    .. " Other: {name: Other, type: shared}}")))
  local code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.import%s+6 created")
  local m = marked()
  local _, spaces = cloud()
  t.eq(#m[ID.kpis], 1, "KPIs once (moved, not copied)")
  t.eq(space_name(spaces, m[ID.kpis][1]), "Governed")
  t.eq(space_name(spaces, m[ID.budget][1]), "Finance")
  the_sim():reset_counters()
  code, _, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.eq(the_sim():counts().total_writes, 0)
  -- a lost cache: the moved app is found by its marker in the managed space, nothing is imported again
  for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(fs.dirname(file) .. "/project/qmig.db" .. suffix) end
  code, out, _, msg = run({ "run", file })
  t.eq(code, 0, msg)
  t.match(out, "apps%.import%s+6 adopted")
  t.eq(#marked()[ID.kpis], 1)
end)

T.test("QRS before November 2022: exported without exportScope", function()
  local site = json.decode(json.encode(SITE))
  site.qrs.about = { buildVersion = "14.67.1" }
  local s = start_extra(site)
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/job.yaml", s:job_yaml { project_dir = dir .. "/p",
    extra = "steps_path: [" .. FIXTURES .. "/steps]\n" .. PLAN:format(""),
    jobs = "  - {name: apps, steps: [apps.export]}" })
  local code, out, err = cli.run { "run", dir .. "/job.yaml", "--verbose" }
  t.eq(code, 0, out .. err)
  t.match(out, "predates November 2022")
  local objs = json.decode(t.read(dir .. "/p/appObjects.json"))
  for _, a in ipairs(objs) do
    t.eq(a.scope, "approved")
    for _, o in ipairs(a.objects) do t.eq(o.exported, o.state == "base") end
  end
end)

return T
