-- nprinting.filters end to end through the qmig-lua binary against qliksim
-- (fixture site tests/lua/fixtures/sites/nprinting.json: an NPrinting
-- server whose apps read QSEoW apps through Qlik Sense connections): NPrinting
-- filters -> report filters on the migrated Cloud apps, what cannot be
-- carried visible, re-runs without writes, a lost reply and a kill without
-- duplicates, a filter deleted in the tenant made again, plan without
-- writes, undo.  The apps come from the stand-in step
-- tests/lua/fixtures/steps/fixture22 (apps named "Legacy..." are never
-- imported).
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"

local T = t.suite("steps_nprinting")
local FIXTURES = fs.realpath("tests/lua/fixtures")
local sim

local function the_sim()
  if not sim then sim = simlib.start { site = FIXTURES .. "/sites/nprinting.json" } end
  return sim
end
T.after_all(function() if sim then sim:stop() end end)

local function job(opts)
  opts = opts or {}
  local s = the_sim()
  local dir = fs.realpath(t.tmpdir())
  local extra = table.concat({
    "steps_path: [" .. FIXTURES .. "/steps]",
    "nprinting:",
    "  url: " .. s.info.nprinting_url,
    "  jwt: '" .. (opts.jwt or s.info.nprinting_jwt) .. "'",
    "  ca: " .. s.info.certs.ca,
    -- the drafts app holds a filter naming a field the app does not have: only where asked
    opts.plan or "plan: {nprinting: {apps: ['NP Sales', 'NP Ops']}}",
  }, "\n")
  t.write(dir .. "/job.yaml", s:job_yaml {
    project_dir = dir .. "/project", concurrency = opts.concurrency or 4, extra = extra,
    jobs = "  - {name: np, steps: [fixture22.apps, nprinting.filters]}",
  })
  return dir .. "/job.yaml", dir
end

local function clean()
  the_sim():reset()
  the_sim():faults {}
end

-- The Cloud report filters as "app name | filter name | state:field=type:value,..." rows, sorted.
local function filters()
  local st = the_sim():state().cloud
  local names = {}
  for _, a in ipairs(st.apps) do names[a.id] = a.name end
  local rows = {}
  for _, f in ipairs(st.report_filters) do
    local parts = {}
    for state, fields in pairs(f.filterV1_0.fieldsByState) do
      for _, fld in ipairs(fields) do
        local vals = {}
        for _, v in ipairs(fld.values) do vals[#vals + 1] = v.valueType .. ":" .. v.valueAsText end
        parts[#parts + 1] = state .. ":" .. fld.name .. "=" .. table.concat(vals, ",")
      end
    end
    table.sort(parts)
    rows[#rows + 1] = table.concat({ names[f.appId] or f.appId, f.name, table.concat(parts, " ") }, " | ")
  end
  table.sort(rows)
  return rows
end

-- "name: reason" of every item the last run's report lists as skipped or failed.
local function not_done(file)
  local report = json.decode(t.read(file:match("^(.*)/job.yaml$") .. "/project/reports/report.json"))
  local out = {}
  for _, group in ipairs(report.skipped or {}) do
    for _, it in ipairs(group.items) do out[#out + 1] = tostring(it.name) .. ": " .. it.reason end
  end
  for _, f in ipairs(report.failures or {}) do out[#out + 1] = "failed: " .. f.reason end
  return table.concat(out, "\n")
end

local EXPECTED = {
  "Finance | Big orders | $:Account=number:4000",
  "Sales | Big orders | $:Amount=search:>=10000",
  "Sales | North | $:Region=string:North,string:North-East",
}

T.test("NPrinting filters become report filters on the migrated apps; what is not carried is said", function()
  clean()
  local file = job { plan = "" }
  local code, out, err = cli.run { "run", file, "--verbose" }
  t.eq(code, 1, out .. err)   -- the filter naming a field the app does not have fails, the others go on
  t.eq(filters(), EXPECTED)
  local why = not_done(file)
  t.match(why, "failed: [^\n]*HTTP 400 Missing or renamed field %(field Territory")
  t.match(why, "Ops only: [^\n]*not migrated: run apps%.import first")
  t.match(why, "Old: the NPrinting filter is disabled")
  -- the marker makes each one findable again; the original description is kept
  for _, f in ipairs(the_sim():state().cloud.report_filters) do
    t.match(f.description, "%[qmig%-lua:1:[%x-]+:[%x-]+%]$")
    if f.name == "North" then t.match(f.description, "^Northern region\n\n") end
  end
  -- the token never reaches the logs
  local dir = file:match("^(.*)/job.yaml$")
  for _, name in ipairs(fs.dir(dir .. "/project/logs") or {}) do
    t.eq(t.read(dir .. "/project/logs/" .. name):find(the_sim().info.nprinting_jwt, 1, true), nil, name)
  end
end)

T.test("the re-run makes zero writes", function()
  clean()
  local file = job()
  cli.run { "run", file }
  the_sim():reset_counters()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "nprinting%.filters%s+[^\n]*3 unchanged")
  local counts = the_sim():counts()
  t.eq(counts.total_writes, 0, json.encode(counts.writes))
  t.eq(filters(), EXPECTED)
end)

T.test("a reply lost after the server made the filter, and a kill, never duplicate", function()
  clean()
  local file = job { concurrency = 1 }
  t.eq(cli.run { "run", file, "--step", "fixture22.apps" }, 0)
  the_sim():faults { rules = { { match = "~^POST /api/v1/apps/[^/]+/report-filters$", nth = 1,
    action = "drop_after_apply" } } }
  t.eq(cli.run { "run", file }, 0)
  t.eq(the_sim():counts().injected.drop_after_apply, 1)
  t.eq(filters(), EXPECTED)
  clean()
  file = job { concurrency = 1 }
  t.eq(cli.run { "run", file, "--step", "fixture22.apps" }, 0)
  local pid, release = cli.spawn_held { "run", file }
  the_sim():faults { rules = { { match = "~^POST /api/v1/apps/[^/]+/report-filters$", nth = 2, action = "kill",
    pid = pid, signal = 9 } } }
  t.eq(release(), 137)
  the_sim():faults {}
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.eq(filters(), EXPECTED)
  -- what the killed attempt made is ours: undo removes it too
  local cu, ou, eu = cli.run { "undo", file }
  t.eq(cu, 0, ou .. eu)
  t.eq(filters(), {})
end)

T.test("a filter deleted in the tenant is made again; one changed at the source is updated in place", function()
  clean()
  local file = job()
  cli.run { "run", file }
  local st = the_sim():state().cloud
  local north
  for _, f in ipairs(st.report_filters) do if f.name == "North" then north = f end end
  local admin = require("qmig.http").client { base_url = the_sim().info.cloud_url,
    headers = { Authorization = "Bearer " .. the_sim().info.api_key } }
  local resp = admin:request { method = "DELETE",
    path = "/api/v1/apps/" .. north.appId .. "/report-filters/" .. north.id }
  t.eq(resp.status, 204)
  local code, out, err = cli.run { "run", file, "--verbose" }
  t.eq(code, 0, out .. err)
  t.match(out .. err, "1 created, 2 unchanged")
  t.eq(filters(), EXPECTED)
  -- someone edits it in the tenant: --force puts the source's definition back, same id
  for _, f in ipairs(the_sim():state().cloud.report_filters) do if f.name == "North" then north = f end end
  resp = admin:request { method = "PATCH", path = "/api/v1/apps/" .. north.appId .. "/report-filters/" .. north.id,
    json = { { op = "replace", path = "/filter", value = { Filter = { filterV1_0 = { fieldsByState = {
      ["$"] = { { name = "Region", values = { { valueAsText = "South", valueType = "string" } } } } } } } } } } }
  t.eq(resp.status, 204)
  code, out, err = cli.run { "run", file, "--force", "--step", "nprinting.filters" }
  t.eq(code, 0, out .. err)
  t.match(out, "nprinting%.filters%s+[^\n]*1 updated")
  t.eq(filters(), EXPECTED)
  for _, f in ipairs(the_sim():state().cloud.report_filters) do
    if f.name == "North" then t.eq(f.id, north.id) end
  end
end)

T.test("a same-name filter not made by this project is left alone", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file, "--step", "fixture22.apps" }, 0)
  local sales
  for _, a in ipairs(the_sim():state().cloud.apps) do if a.name == "Sales" then sales = a.id end end
  local admin = require("qmig.http").client { base_url = the_sim().info.cloud_url,
    headers = { Authorization = "Bearer " .. the_sim().info.api_key } }
  local resp = admin:request { method = "POST", path = "/api/v1/apps/" .. sales .. "/report-filters", json = {
    name = "North", filterType = "REP", filterVersion = "filter-1.0", description = "hand made" } }
  t.eq(resp.status, 201, resp.body)
  local code, out, err = cli.run { "run", file, "--verbose" }
  t.eq(code, 0, out .. err)
  t.match(not_done(file),
    "North: a report filter named 'North' already exists on app [%x-]+ and was not made by this project")
  local hand = 0
  for _, f in ipairs(the_sim():state().cloud.report_filters) do
    if f.name == "North" and f.appId == sales then hand = hand + 1; t.eq(f.description, "hand made") end
  end
  t.eq(hand, 1)
end)

T.test("plan shows each filter by name and writes nothing; plan.nprinting.apps narrows", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file, "--step", "fixture22.apps" }, 0)
  the_sim():reset_counters()
  local code, out, err = cli.run { "plan", file }
  t.eq(code, 0, out .. err)
  t.match(out, "nprinting%.filters[^\n]*North[^\n]*would create")
  t.match(out, "nprinting%.filters%s+[^\n]*3 to create")
  t.eq(the_sim():counts().total_writes, 0)
  file = job { plan = "plan: {nprinting: {apps: ['NP Ops']}}" }
  code, out, err = cli.run { "plan", file }
  t.eq(code, 0, out .. err)
  t.eq(out:find("North", 1, true), nil, out)
  t.match(out, "Ops only")
end)

T.test("a bad NPrinting token stops the run before anything is written", function()
  clean()
  local file = job { jwt = "e30.e30.AAAA" }
  local code, out, err = cli.run { "run", file }
  t.eq(code, 3, out .. err)
  t.match(out .. err, "HTTP 401")
  t.eq(filters(), {})
end)

return T
