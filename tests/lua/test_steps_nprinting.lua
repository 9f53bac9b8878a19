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
    opts.auth or ("  jwt: '" .. (opts.jwt or s.info.nprinting_jwt) .. "'"),
    "  ca: " .. s.info.certs.ca,
    "  export: " .. s.info.nprinting_export,
    -- the drafts app holds a filter naming a field the app does not have: only where asked
    opts.plan or "plan: {nprinting: {apps: ['NP Sales', 'NP Ops']}}",
  }, "\n")
  t.write(dir .. "/job.yaml", s:job_yaml {
    project_dir = dir .. "/project", concurrency = opts.concurrency or 4, extra = extra,
    jobs = "  - {name: np, steps: [" .. (opts.steps or "fixture22.apps, nprinting.filters") .. "]}",
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
  local c1, o1, e1 = cli.run { "run", file }
  t.eq(c1, 0, o1 .. e1)
  t.eq(the_sim():counts().injected.drop_after_apply, 1)
  t.eq(filters(), EXPECTED)
  t.match(o1, "nprinting%.filters%s+3 created")   -- the one whose reply was lost is ours, found by its marker
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

-- {====== Windows (NTLM) authentication

-- The Windows account of the site's NPrinting administrator, and its password (what the
-- simulated domain controller knows).
local ACCOUNT = "CORP\\npadmin"
local function account_password()
  return json.decode(t.read(FIXTURES .. "/sites/nprinting.json")).nprinting.users[1].password
end
local NTLM = "  ntlm: {username: '" .. ACCOUNT .. "', password: '${QMIG_NP_PASSWORD}'}"

-- Requests to NPrinting's login endpoint.
local function logins() return the_sim():counts().requests["GET /api/v1/login/ntlm"] end

T.test("ntlm: a Windows account reads the NPrinting server through curl's NTLM handshake", function()
  clean()
  local file = job { auth = NTLM }
  local code, out, err = cli.run({ "run", file }, { env = { QMIG_NP_PASSWORD = account_password() } })
  t.eq(code, 0, out .. err)
  t.eq(filters(), EXPECTED)
  -- one login: its type 1 (answered 401 with the challenge), its type 3 (accepted); every
  -- other call went with the session cookie
  t.eq(logins(), 2)
end)

T.test("ntlm: a wrong password is exit 3, says authentication failed, and is never printed", function()
  clean()
  local file = job { auth = NTLM }
  local wrong = "WRONG-np-p4ss: canary"
  local code, out, err = cli.run({ "run", file }, { env = { QMIG_NP_PASSWORD = wrong } })
  t.eq(code, 3, out .. err)
  t.match(out .. err, "login/ntlm: HTTP 401 %(NTLM authentication as CORP\\npadmin failed%)")
  t.eq((out .. err):find(wrong, 1, true), nil, "the password was printed")
  t.eq(filters(), {})
  local dir = file:match("^(.*)/job.yaml$")
  local p = io.popen("find " .. cli.quote(dir .. "/project") .. " -type f")
  for path in p:lines() do t.eq(t.read(path):find(wrong, 1, true), nil, path) end
  p:close()
  -- a non-ASCII password cannot succeed through curl's NTLM: the message says so
  code, out, err = cli.run({ "run", file }, { env = { QMIG_NP_PASSWORD = "pässwörd" } })
  t.eq(code, 3, out .. err)
  t.match(out .. err, "sends only ASCII passwords right")
end)

T.test("ntlm: a session NPrinting ended is opened again once, and the reads go on", function()
  clean()
  local client = require "qmig.domain.nprinting.client"
  local c = client.new({ url = the_sim().info.nprinting_url, ca = the_sim().info.certs.ca,
    ntlm = { username = ACCOUNT, password = account_password() } }, { retries = 0 })
  t.eq(#c:list("apps"), 3)
  the_sim():call("POST", "nprinting/expire-sessions", {})
  c.memo = {}
  t.eq(#c:list("apps"), 3)
  -- the new login went on the connection the first one authenticated: curl keeps it for
  -- these credentials, and NTLM authenticates a connection, so no second handshake
  t.eq(logins(), 3)
  -- a client with NTLM is for reads: the handshake would send a write twice
  local http = require "qmig.http"
  local ok, why = pcall(function()
    return http.client({ base_url = the_sim().info.nprinting_url, ntlm = { username = ACCOUNT, password = "x" } })
      :request { method = "POST", path = "/api/v1/apps" }
  end)
  t.truthy(not ok)
  t.match(tostring(why), "a client with 'ntlm' sends reads only")
end)

T.test("ntlm: exactly one of jwt or ntlm, and DOMAIN\\user; otherwise exit 2 naming file and line", function()
  local cases = {
    { NTLM .. "\n  jwt: 'abc'", "give exactly one of 'jwt' or 'ntlm'" },
    { "  insecure: false", "give exactly one of 'jwt' or 'ntlm'" },
    { "  ntlm: {username: 'npadmin', password: 'x'}", "ntlm.username: must look like DOMAIN\\user" },
    { "  ntlm: {username: 'CORP\\npadmin'}", "nprinting.ntlm: missing required key 'password'" },
  }
  for _, case in ipairs(cases) do
    local file = job { auth = case[1] }
    local code, out, err = cli.run({ "check", file }, { env = { QMIG_NP_PASSWORD = "x" } })
    t.eq(code, 2, case[1] .. ": " .. out .. err)
    t.match(err, "job%.yaml:%d+: [^\n]*" .. case[2]:gsub("%p", "%%%0"), case[1])
  end
end)
-- }======

-- {====== nprinting.reports

local REPORT_STEPS = "fixture22.apps, nprinting.reports"

-- Report templates as "app | name | type" and sharing tasks as "app | name | rule | zone | start-time |
-- recipients | selections" rows, sorted.
local function reporting()
  local st = the_sim():state().cloud
  local names, users = {}, {}
  for _, a in ipairs(st.apps) do names[a.id] = a.name end
  for _, u in ipairs(st.users) do users[u.id] = u.email end
  local rows, templates = {}, {}
  for _, tp in ipairs(st.report_templates) do
    templates[tp.id] = tp.name
    rows[#rows + 1] = table.concat({ "template", names[tp.sourceAppId] or tp.sourceAppId, tp.name, tp.type }, " | ")
  end
  for _, k in ipairs(st.sharing_tasks) do
    local who, sel = {}, {}
    for _, r in ipairs(k.recipients.userIds) do who[#who + 1] = users[r.value] or r.value end
    table.sort(who)
    for _, s in ipairs(k.state.selections) do sel[#sel + 1] = s.name .. "=" .. table.concat(s.values, ",") end
    table.sort(sel)
    rows[#rows + 1] = table.concat({ "task", names[k.appId] or k.appId, k.name, templates[k.templates[1].templateId]
      or "?", k.scheduleOptions.recurrence[1], k.scheduleOptions.timezone, k.scheduleOptions.startDateTime:sub(12),
      table.concat(who, ","), table.concat(sel, ";") }, " | ")
  end
  table.sort(rows)
  return rows
end

local REPORTS = {
  "task | Sales | Monday mail (Sales deck) | Sales deck | RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;BYHOUR=7;BYMINUTE=30"
    .. " | Europe/Rome | 07:30:00 | ann@corp.example,jdoe@corp.example | Amount=>=10000",
  "task | Sales | Monday mail (Weekly sales) | Weekly sales | RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;BYHOUR=7;"
    .. "BYMINUTE=30 | Europe/Rome | 07:30:00 | ann@corp.example,jdoe@corp.example | Amount=>=10000;Region=North,"
    .. "North-East",
  "template | Finance | Finance pack | pixelPerfect",
  "template | Sales | Sales deck | powerPoint",
  "template | Sales | Weekly sales | excel",
}

local function np_report(file)
  return json.decode(t.read(file:match("^(.*)/job.yaml$") .. "/project/reports/nprinting.json")).reports
end

T.test("reports: templates on the migrated apps, publish tasks as sharing tasks, each report's outcome said", function()
  clean()
  local file = job { steps = REPORT_STEPS }
  local code, out, err = cli.run { "run", file }
  t.eq(code, 1, out .. err)   -- "Broken" names a field the app does not have
  t.eq(reporting(), REPORTS)
  local why = not_done(file)
  t.match(why, "Entity report: a qlikentity report: Qlik Cloud reporting has no template of that kind")
  t.match(why, "Ops shifts: QSEoW app [%x-]+ is not migrated")
  t.match(why, "Month end #1: no recipient maps to a Cloud user %(npadmin@corp%.example%)")
  t.match(why, "Month end #2: its trigger cannot be converted: runs every 5 minute%(s%)")
  t.match(why, "On demand: the publish task has no trigger")
  t.match(why, "failed: [^\n]*report%-templates: HTTP 400 Missing or renamed field %(template field Gone")
  local by_title = {}
  for _, r in ipairs(np_report(file)) do by_title[r.title] = r end
  t.eq(by_title["Weekly sales"].template.status, "created")
  t.match(by_title["Weekly sales"].notes[1], "levels %(Region%)")
  t.eq(#by_title["Weekly sales"].tasks, 2)
  t.eq(by_title["Entity report"].template.status, "skipped")
  t.eq(by_title["Broken"].template.status, "failed")
  -- the old start moved to today, and said so
  for _, k in ipairs(the_sim():state().cloud.sharing_tasks) do
    t.eq(k.scheduleOptions.startDateTime:sub(1, 10), os.date("!%Y-%m-%d"))
    t.match(k.description, "%[qmig%-lua:1:task:")
  end
end)

T.test("reports: the re-run writes nothing; a kill leaves no duplicate; undo removes everything", function()
  clean()
  local file = job { steps = REPORT_STEPS, concurrency = 1 }
  cli.run { "run", file }
  the_sim():reset_counters()
  cli.run { "run", file }
  local writes = the_sim():counts().writes
  -- only "Broken" (failed) is tried again: one upload, one create refused
  t.eq(writes, { ["POST /api/v1/temp-contents"] = 1, ["POST /api/v1/report-templates"] = 1 })
  t.eq(reporting(), REPORTS)
  for _, nth in ipairs { 1, 2 } do
    for _, what in ipairs { "~^POST /api/v1/report%-templates$", "~^POST /api/v1/sharing%-tasks$" } do
      clean()
      file = job { steps = REPORT_STEPS, concurrency = 1 }
      t.eq(cli.run { "run", file, "--step", "fixture22.apps" }, 0)
      local pid, release = cli.spawn_held { "run", file }
      the_sim():faults { rules = { { match = what:gsub("%%", ""), nth = nth, action = "kill", pid = pid,
        signal = 9 } } }
      t.eq(release(), 137, what .. " #" .. nth)
      the_sim():faults {}
      cli.run { "run", file }
      t.eq(reporting(), REPORTS, "after a kill at " .. what .. " #" .. nth)
      local cu, ou, eu = cli.run { "undo", file }
      t.eq(cu, 0, ou .. eu)
      t.eq(reporting(), {}, "undo after a kill at " .. what .. " #" .. nth)
    end
  end
end)

T.test("reports: plan names each report and writes nothing; plan.nprinting.reports and tags narrow", function()
  clean()
  local file = job { steps = REPORT_STEPS }
  t.eq(cli.run { "run", file, "--step", "fixture22.apps" }, 0)
  the_sim():reset_counters()
  local code, out, err = cli.run { "plan", file }
  t.eq(code, 0, out .. err)
  t.match(out, "nprinting%.reports 'Weekly sales'[^\n]*would create")
  t.match(out, "nprinting%.reports 'Monday mail %(Weekly sales%)'[^\n]*would create")
  t.eq(the_sim():counts().total_writes, 0)
  file = job { steps = REPORT_STEPS, plan = "plan: {nprinting: {apps: ['NP Sales'], tags: [Finance]}}" }
  code, out, err = cli.run { "plan", file }
  t.eq(code, 0, out .. err)
  t.eq(out:find("Weekly sales", 1, true), nil, out)
  t.match(out, "Finance pack")
  file = job { steps = REPORT_STEPS, plan = "plan: {nprinting: {reports: ['Sales*']}}" }
  code, out, err = cli.run { "plan", file }
  t.eq(code, 0, out .. err)
  t.eq(out:find("Finance pack", 1, true), nil, out)
  t.match(out, "Sales deck")
end)
T.test("reports: a new template file at the source replaces the file in place; a task changed in the tenant is put "
  .. "back with --force", function()
  clean()
  local file = job { steps = REPORT_STEPS }
  cli.run { "run", file }
  local st = the_sim():state().cloud
  local weekly, monday
  for _, tp in ipairs(st.report_templates) do if tp.name == "Weekly sales" then weekly = tp end end
  for _, k in ipairs(st.sharing_tasks) do if k.name == "Monday mail (Weekly sales)" then monday = k end end
  -- the report's template exported again, now with another field
  local export = the_sim().info.nprinting_export
  local path
  for _, r in ipairs(the_sim():state().nprinting.reports) do
    if r.title == "Weekly sales" then path = export .. "/" .. r.id .. ".xlsx" end
  end
  local doc = json.decode(t.read(path))
  doc.fields[#doc.fields + 1] = "Customer"
  t.write(path, json.encode(doc))
  the_sim():reset_counters()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 1, out .. err)
  t.match(out, "nprinting%.reports%s+1 updated")
  local writes = the_sim():counts().writes
  t.eq(writes["PUT /api/v1/report-templates/{id}"], 1, json.encode(writes))
  t.eq(writes["POST /api/v1/sharing-tasks"], nil, json.encode(writes))   -- the tasks keep naming the same id
  st = the_sim():state().cloud
  for _, tp in ipairs(st.report_templates) do if tp.name == "Weekly sales" then t.eq(tp.id, weekly.id) end end
  -- someone drops a recipient in the tenant; --force puts the source's back, same task
  local admin = require("qmig.http").client { base_url = the_sim().info.cloud_url,
    headers = { Authorization = "Bearer " .. the_sim().info.api_key } }
  local resp = admin:request { method = "PATCH", path = "/api/v1/sharing-tasks/" .. monday.id,
    json = { { op = "replace", path = "/recipients", value = { userIds = { monday.recipients.userIds[1] } } } } }
  t.eq(resp.status, 204, resp.body)
  code, out, err = cli.run { "run", file, "--force", "--step", "nprinting.reports" }
  t.eq(code, 1, out .. err)
  t.match(out, "nprinting%.reports%s+[^\n]*1 updated")
  t.eq(reporting(), REPORTS)
end)

T.test("delete_reports: needs --yes, deletes what nprinting.reports made (also a killed attempt's), nothing else",
function()
  clean()
  local file = job { steps = REPORT_STEPS, concurrency = 1 }
  t.eq(cli.run { "run", file, "--step", "fixture22.apps" }, 0)
  -- a run killed right after the server made its first sharing task, before it was recorded
  local pid, release = cli.spawn_held { "run", file }
  the_sim():faults { rules = { { match = "~^POST /api/v1/sharing-tasks$", nth = 1, action = "kill", pid = pid,
    signal = 9 } } }
  t.eq(release(), 137)
  the_sim():faults {}
  t.eq(#the_sim():state().cloud.sharing_tasks, 1)
  -- and someone's own template on the same app
  local s = the_sim()
  local admin = require("qmig.http").client { base_url = s.info.cloud_url,
    headers = { Authorization = "Bearer " .. s.info.api_key } }
  local sales
  for _, a in ipairs(s:state().cloud.apps) do if a.name == "Sales" then sales = a.id end end
  local up = admin:request { method = "POST", path = "/api/v1/temp-contents", query = { filename = "mine.xlsx" },
    body = json.encode { type = "excel", fields = { "Region" } },
    headers = { ["Content-Type"] = "application/octet-stream" } }
  local tid = up.headers.location:match("([^/]+)$")
  local mine = admin:request { method = "POST", path = "/api/v1/report-templates", json = { name = "Mine",
    temporaryContentId = tid, sourceAppId = sales, sourceAppAction = "replace" } }
  t.eq(mine.status, 201, mine.body)
  local before = #reporting()
  local dfile = file:gsub("job%.yaml$", "delete.yaml")
  t.write(dfile, t.read(file):gsub("steps: %[[^%]]*%]", "steps: [nprinting.delete_reports]"))
  local code, out, err = cli.run { "run", dfile }
  t.eq(code, 2, out .. err)
  t.match(err, "nprinting%.delete_reports deletes objects in the target; run it with %-%-yes")
  t.eq(#reporting(), before)
  code, out, err = cli.run { "run", dfile, "--yes" }
  t.eq(code, 0, out .. err)
  t.eq(reporting(), { "template | Sales | Mine | excel" })
  -- nprinting.reports makes them again afterwards
  code, out, err = cli.run { "run", file }
  t.eq(code, 1, out .. err)
  local again = reporting()
  t.eq(#again, #REPORTS + 1)
end)
-- }======

return T
