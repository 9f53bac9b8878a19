-- The demo job (examples/demo) end to end against qliksim, as `make demo`
-- runs it: every in-scope app once in the right place, published apps in
-- managed spaces, owners and object owners right, scripts rewritten, the
-- re-run writes nothing, and undo gives the tenant back as it was.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"
local simlib = require "sim"
local demo_outcome = require "demo_outcome"

local T = t.suite("demo")
local sim, env, before

local SITE = json.decode(t.read("examples/demo/site.json"))
local SOURCE_APPS  -- the QRS apps as the simulator serves them (with ids)

local function setup()
  if sim then return end
  sim = simlib.start { site = "examples/demo/site.json" }
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/secrets.yaml", "Finance DB: {username: u, password: demo-canary-pw}\n"
    .. "'Sales DB (CORP_jdoe)': {username: s, password: '${QMIG_TEST_DEMO_SALES_PW}'}\n")
  fs.chmod(dir .. "/secrets.yaml", 384)
  env = { QMIG_DEMO_QRS_URL = sim.info.qrs_url, QMIG_DEMO_CLOUD_URL = sim.info.cloud_url,
    QMIG_DEMO_API_KEY = sim.info.api_key, QMIG_DEMO_CERTS = fs.dirname(sim.info.certs.ca),
    QMIG_DEMO_PROJECT = dir .. "/project", QMIG_DEMO_DIR = dir,
    QMIG_TEST_DEMO_SALES_PW = "demo-sales-canary-pw" }
  local st = sim:state()
  before, SOURCE_APPS = st.cloud, st.qrs.entities.app
end

-- Each test can run on its own (QMIG_TEST_FILTER) or in any order: those
-- that need the migration done run it first when no test has.
local migrated = false
local function migrate()
  setup()
  local code, out, err = cli.run({ "run", "examples/demo/job.yaml" }, { env = env })
  demo_outcome.ran(code, out, err)
  migrated = true
  return out
end
local function ensure_migrated()
  setup()
  if not migrated then migrate() end
end

T.after_all(function() if sim then sim:stop() end end)

-- The email the demo plan maps a QRS user to: the email attribute, else
-- the CORP -> corp.example domain rule.
local function email_of(u)
  if not u then return nil end
  for _, a in ipairs(u.attributes or {}) do
    if a.attributeType:lower() == "email" then return a.attributeValue end
  end
  if u.userDirectory == "CORP" then return u.userId .. "@corp.example" end
  return nil
end

local function by(list, field)
  local out = {}
  for _, x in ipairs(list) do out[x[field]] = x end
  return out
end

T.test("check: the day-one preflight reads both sides and writes nothing", function()
  setup()
  sim:reset_counters()
  local code, out, err = cli.run({ "check", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "ok   QRS 14%.")
  t.match(out, "the API key acts as admin@acme%.com %(roles: TenantAdmin%)")
  t.match(out, "ok   largest app %d+ MiB, within the upload quota")
  t.match(out, "users in scope")
  t.match(out, "ok   %d+ spaces planned")
  t.match(out, "data connections have no target space in plan%.data_connections%.map: .*Shared Files")
  t.eq(sim:counts().total_writes, 0)
end)

T.test("the demo job migrates the demo site: placement, owners, scripts, passwords", function()
  migrate()
  local st = sim:state().cloud
  local spaces, users = by(st.spaces, "id"), by(st.users, "id")
  local qrs_users = {}
  for _, u in ipairs(SITE.qrs.users) do qrs_users[u.userDirectory .. "\\" .. u.userId] = u end
  -- every source app exactly once, found by its marker
  -- (the QlikView documents' apps carry "qlikview:<id>" markers: the next test)
  local count, qs_apps = {}, {}
  for _, app in ipairs(st.apps) do
    local src = retrieve.read_marker(app.description)
    if src and not src:find("^qlikview:") then
      count[src] = (count[src] or 0) + 1
      qs_apps[#qs_apps + 1] = app
    end
  end
  local marked = 0
  for _, n in pairs(count) do marked = marked + 1; t.eq(n, 1, "one app per source app") end
  t.eq(marked, #SOURCE_APPS)
  for _, app in ipairs(qs_apps) do
    local src_id = retrieve.read_marker(app.description)
    local src
    for _, a in ipairs(SOURCE_APPS) do if a.id == src_id then src = a end end
    local space = spaces[app.spaceId or ""]
    local stream = src.stream ~= json.null and src.stream and src.stream.name or nil
    if stream == "Everyone" then
      t.eq(space and space.name, "Everyone", src.name)
    elseif stream then
      t.eq(space and space.type, "managed", src.name .. " published into a managed space")
      t.eq(space.name, stream)
    else
      t.eq(space, nil, src.name .. " stays personal")
    end
    local email = email_of(qrs_users[src.owner.userDirectory .. "\\" .. src.owner.userId])
    if email then t.eq(users[app.ownerId].email, email, src.name .. " owner") end
    t.truthy(not app.script:find("ERP OLEDB", 1, true), "OLE DB re-pointed")
    t.truthy(not app.script:find("lib://Shared Files/", 1, true), "folder paths rewritten")
    for _, obj in ipairs(app.objects) do
      if obj.state ~= "base" and obj.sourceOwner and not obj.sourceOwner:match("^INTERNAL") then
        local mail = email_of(qrs_users[obj.sourceOwner])
        if mail then t.eq(users[obj.ownerId].email, mail, obj.name .. " object owner") end
      end
    end
  end
  -- the passwords the tenant received are those of the credentials file, ${VAR} expanded
  local sent = {}
  for _, c in ipairs(st.data_connections) do
    local sp = spaces[c.space or ""]
    sent[(sp and sp.name or "personal") .. ":" .. c.qName] = c.test_only_received_secrets.qPassword or false
  end
  t.eq(sent["Finance:Finance DB"], "demo-canary-pw")
  t.eq(sent["Sales:Sales DB"], "demo-sales-canary-pw", "${QMIG_TEST_DEMO_SALES_PW} expanded")
  t.eq(sent["Operations:Warehouse ODBC"], false, "no credentials: no password")
end)

T.test("the demo's QlikView documents: converted, imported once each, scripted, reloaded, published", function()
  ensure_migrated()
  local st = sim:state().cloud
  local spaces, users = by(st.spaces, "id"), by(st.users, "id")
  local qv = {}
  for _, app in ipairs(st.apps) do
    local src = retrieve.read_marker(app.description)
    if src and src:find("^qlikview:") then
      t.eq(qv[app.name], nil, "one app per document: " .. app.name)
      qv[app.name] = app
    end
  end
  t.eq({ qv["Sales Dashboard"] ~= nil, qv.Inventory ~= nil, qv["Legacy Archive"] }, { true, true, nil },
    "the document without a -prj folder is not imported")
  -- the folders' spaces are the streams' managed spaces: staged, then published there
  t.eq(spaces[qv["Sales Dashboard"].spaceId].name, "Finance")
  t.eq(spaces[qv["Sales Dashboard"].spaceId].type, "managed")
  t.eq(spaces[qv.Inventory.spaceId].name, "Operations")
  t.eq(users[qv["Sales Dashboard"].ownerId].email, "jdoe@corp.example", "plan.qlikview.owners")
  t.match(qv.Inventory.script, "LIB CONNECT TO 'Operations:Warehouse ODBC'", "ODBC CONNECT re-pointed")
  t.truthy(not qv.Inventory.script:find("lib://Shared Files/", 1, true), "folder paths rewritten")
  t.truthy(qv.Inventory.lastReloadTime ~= "" and qv["Sales Dashboard"].lastReloadTime ~= "", "reloaded")
  local csv = t.read(env.QMIG_DEMO_PROJECT .. "/reports/qlikview-not-carried.csv")
  t.match(csv, "Operations/Inventory%.qvw,[^\r]*,Module%.txt,macros,")
end)

T.test("the demo re-run makes zero writes; the password is nowhere in the project", function()
  ensure_migrated()
  sim:reset_counters()
  local code, out, err = cli.run({ "run", "examples/demo/job.yaml" }, { env = env })
  demo_outcome.ran(code, out, err, "the re-run validates the app that differs again")
  t.eq(sim:counts().total_writes, 0, out)
  local files = io.popen("find " .. env.QMIG_DEMO_PROJECT .. " -type f")
  for path in files:lines() do
    local text = t.read(path)
    t.truthy(not text:find("demo-canary-pw", 1, true), "password in " .. path)
    t.truthy(not text:find("demo-sales-canary-pw", 1, true), "password in " .. path)
  end
  files:close()
end)

T.test("validation by data: all equal but the app whose reload loaded other data (QlikView documents too); the XLSX "
  .. "as report.json", function()
  setup()
  local out = migrate()
  -- the differing app: its item names the chart and the first differing cells
  t.match(out, "apps%.validate 'Accounts Payable' %([%x-]+%): failed %(validation differs: chart %a+ '[^']+' "
    .. "%(%w+%) on sheet '[^']+': row 1 %([^)]*%), [^:]+: source [%d.]+, Qlik Cloud [%d.]+; row 2 ")
  t.match(out, "apps%.validate%s+10 unchanged, 1 skipped, 1 failed\n")
  local project = env.QMIG_DEMO_PROJECT
  local report = json.decode(t.read(project .. "/reports/report.json"))
  local v = report.validation
  t.truthy(v, "report.json has the validation")
  -- 10 Qlik Sense apps equal, and the 2 QlikView documents (qvapps.validate) against their charts' exports
  t.eq(v.totals, { equal = 12, differs = 1, ["no data"] = 1 })
  local by_name = {}
  for _, a in ipairs(v.apps) do by_name[a.name] = a end
  t.eq(by_name["Accounts Payable"].outcome, "differs")
  t.eq(by_name["Forecast Draft"].outcome, "no data")
  t.match(by_name["Forecast Draft"].details, "^no data in either app")
  t.eq(by_name["Sales Overview"].outcome, "equal")
  for _, name in ipairs { "Sales Dashboard", "Inventory" } do
    t.eq({ by_name[name].outcome, by_name[name].origin }, { "equal", "qlikview" }, name)
    t.truthy(by_name[name].cells > 0 and by_name[name].charts > 0, name)
  end
  t.truthy(by_name["Sales Overview"].cells > 0 and by_name["Sales Overview"].charts > 0)
  local first = by_name["Accounts Payable"].first_differences[1]
  t.eq(first.check, "chart")
  t.match(first.where, "^row 1 ")
  -- the spreadsheet of the run, read back as a spreadsheet program reads it
  -- (the last validation step's: the QlikView job's, with every row)
  t.match(v.workbook, "^validations/qlikview/%d+%.xlsx$")
  local p = assert(io.popen("python3 tests/lua/lib/read_xlsx.py " .. cli.quote(project .. "/" .. v.workbook)))
  local book = assert(json.decode(p:read("a")))
  p:close()
  t.eq(book.order, { "Summary", "Differences" })
  local summary = book.sheets.Summary
  t.eq(#summary - 1, #v.apps, "a Summary row per app")
  local outcomes, diffs = {}, 0
  for i = 2, #summary do
    local row = summary[i]
    outcomes[row[4]] = (outcomes[row[4]] or 0) + 1
    local a = by_name[row[2]]
    t.truthy(a, row[2])
    t.eq(row[1], a.source_id)
    t.eq(row[6], a.rows)
    t.eq(row[11], a.differences)
    diffs = diffs + #a.first_differences
  end
  t.eq(outcomes, v.totals)
  t.eq(#book.sheets.Differences - 1, diffs, "a Differences row per difference listed")
  t.eq(book.sheets.Differences[2][2], "Accounts Payable")
  t.eq(book.sheets.Differences[2][5], first.where)
  -- the report's section says the same
  local html = t.read(project .. "/reports/report.html")
  t.match(html, "<h2 id=\"validation\">Validation by data %(12 equal, 1 differ, 1 without data%)</h2>")
end)

T.test("the demo's schedules are scheduling tasks, and its two-level chain runs in QSEoW's order", function()
  ensure_migrated()
  local st = sim:state().cloud
  t.eq(#st.reload_tasks, 0)  -- today's tenant: nothing through the removed Reload Tasks API
  local by_name, app_names = {}, {}
  for _, a in ipairs(st.apps) do app_names[a.id] = a.name end
  for _, k in ipairs(st.scheduling_tasks) do
    t.eq(by_name[k.name], nil, "one task per trigger: " .. k.name)
    by_name[k.name] = k
  end
  t.eq(#st.scheduling_tasks, 9)
  -- enabled as at the source (the disabled trigger stays disabled)
  t.eq(by_name["Reload Warehouse KPIs / Daily noon (disabled)"].enabled, false)
  t.eq(by_name["Reload Sales Overview / Daily 6am"].enabled, true)
  local order = {}
  for _, r in ipairs(sim:call("POST", "scheduling/fire", { taskId = by_name["Reload Sales Overview / Daily 6am"].id,
    status = "succeeded" })) do
    order[#order + 1] = r.name .. " on " .. tostring(app_names[r.resourceId])
  end
  t.eq(order, { "Reload Sales Overview / Daily 6am on Sales Overview",
    "Reload Customer Churn / After Sales Overview on Customer Churn",
    "Reload Company News / After Customer Churn on Company News" })
end)

T.test("undo gives the tenant back as it was before the demo", function()
  ensure_migrated()
  local code, out, err = cli.run({ "undo", "examples/demo/job.yaml" }, { env = env })
  migrated = false
  t.eq(code, 0, out .. err)
  local st = sim:state().cloud
  local function names(list, field)
    local out_ = {}
    for _, x in ipairs(list) do out_[#out_ + 1] = tostring(x[field or "name"]) end
    table.sort(out_)
    return out_
  end
  t.eq(names(st.spaces), names(before.spaces))
  t.eq(names(st.users, "email"), names(before.users, "email"))
  t.eq(#st.apps, #before.apps)
  t.eq(names(st.data_connections, "qName"), names(before.data_connections, "qName"))
  t.eq(names(st.extensions), names(before.extensions))
end)

-- What a person checks after a migration, by names: ids differ between
-- two runs, what they point at must not.
local function end_state()
  local st = sim:state().cloud
  local spaces, users = by(st.spaces, "id"), by(st.users, "id")
  local function mail(id) return users[id or ""] and users[id].email or tostring(id) end
  local out = { apps = {}, spaces = {}, tasks = {}, connections = {} }
  for _, s in ipairs(st.spaces) do out.spaces[#out.spaces + 1] = s.name .. " " .. s.type .. " " .. mail(s.ownerId) end
  for _, app in ipairs(st.apps) do
    local src = retrieve.read_marker(app.description)
    if src then
      local objects = {}
      for _, o in ipairs(app.objects) do
        if o.state ~= "base" then objects[#objects + 1] = o.name .. " " .. o.state .. " " .. mail(o.ownerId) end
      end
      table.sort(objects)
      local space = spaces[app.spaceId or ""]
      out.apps[#out.apps + 1] = { name = app.name, source = src, space = space and space.name or "personal",
        owner = mail(app.ownerId), script = app.script, reloaded = (app.lastReloadTime or "") ~= "",
        published = app.published or false, objects = objects }
    end
  end
  table.sort(out.apps, function(a, b) return a.source .. a.space < b.source .. b.space end)
  local app_names = {}
  for _, a in ipairs(st.apps) do app_names[a.id] = a.name end
  for _, k in ipairs(st.scheduling_tasks) do
    out.tasks[#out.tasks + 1] = k.name .. " " .. tostring(k.enabled) .. " " .. tostring(app_names[k.resourceId])
  end
  for _, c in ipairs(st.data_connections) do
    local sp = spaces[c.space or ""]
    out.connections[#out.connections + 1] = (sp and sp.name or "personal") .. ":" .. c.qName
  end
  table.sort(out.spaces); table.sort(out.tasks); table.sort(out.connections)
  return out
end

T.test("run, undo, run ends as one clean run: object owners, reloads, schedules; status says deleted", function()
  ensure_migrated()
  local clean = end_state()
  local code, out, err = cli.run({ "undo", "--yes", "examples/demo/job.yaml" }, { env = env })
  migrated = false
  t.eq(code, 0, out .. err)
  -- a summary per kind first, then each change with the object's name, then the total
  t.match(out, "^undo reverses %d+ recorded change%(s%):\n  app%s+%d+ to delete\n")
  t.match(out, "app%.published%s+%d+ cannot undo: app <id> was moved into managed space <id>")
  t.match(out, "\n  undone app 'Sales Overview' %(%x+%-[%x-]+%) %-> ")
  t.match(out, "\nundo: %d+ undone, %d+ cannot be undone, 0 failed; %d+ dependent record%(s%) forgotten")
  code, out, err = cli.run({ "status", "--objects", "--json", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  for _, r in ipairs(json.decode(out)) do
    if r.step == "apps.import" or r.step == "spaces.create" or r.step == "apps.publish" then
      t.truthy(r.status ~= "created", r.step .. " " .. r.source_id .. " still 'created' after undo")
    end
  end
  code, out, err = cli.run({ "run", "examples/demo/job.yaml" }, { env = env })
  demo_outcome.ran(code, out, err)
  migrated = true
  t.eq(end_state(), clean, out)
end)

T.test("make demo needs no npm; the commands examples/demo/run.sh prints work as printed", function()
  local p = io.popen("make -n demo 2>&1")
  local recipe = p:read("a")
  p:close()
  t.truthy(not recipe:find("npm", 1, true), "make demo runs npm:\n" .. recipe)
  t.truthy(not recipe:find("conformance", 1, true) and not recipe:find("chromium", 1, true), recipe)
  local dir = fs.realpath(t.tmpdir())
  p = io.popen("QMIG_DEMO_DIR=" .. cli.quote(dir) .. " timeout 600 examples/demo/run.sh 2>&1; echo \"exit=$?\"")
  local out = p:read("a")
  p:close()
  -- the app the demo site makes differ (tests/lua/lib/demo_outcome.lua) is the one failure, and run.sh
  -- says it is intended, then goes on with the NPrinting job
  t.match(out, "\nexit=0\n$", out)
  t.match(out, "apps%.validate%s+10 unchanged, 1 skipped, 1 failed\n", out)
  t.match(out, "\nAs the demo intends: apps%.validate finds that Accounts Payable loads other data", out)
  t.match(out, "\n  nprinting%.reports%s+4 created, 1 skipped\n", out)
  local commands = {}
  for line in out:gmatch("\n  (%. [^\n]+)") do commands[#commands + 1] = line end
  t.eq(#commands, 2, out)
  p = io.popen("sh -c " .. cli.quote(commands[1]) .. " 2>&1; echo \"exit=$?\"")
  local status = p:read("a")
  p:close()
  t.match(status, "\nexit=0\n$", commands[1] .. "\n" .. status)
  t.match(status, "apps%.import%s+app%s+created%s+'Sales Overview'", status)
  p = io.popen("sh -c " .. cli.quote(commands[2]) .. " 2>&1; echo \"exit=$?\"")
  local rep_out = p:read("a")
  p:close()
  t.match(rep_out, "report: .-report%.html\n.*exit=0\n$", rep_out)
end)

T.test("status, plan and undo --dry-run name the objects; undo --run of no run is an error", function()
  ensure_migrated()
  local code, out, err = cli.run({ "status", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "\n  apps%.import%s+12 created\n")  -- the summary by default: per step counts
  t.truthy(not out:find("Sales Overview", 1, true), "no object list without --objects")
  code, out = cli.run({ "status", "--objects", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0)
  t.match(out, "apps%.import%s+app%s+created%s+'Sales Overview' %(%x+%-[%x-]+%) %-> ")
  t.match(out, "apps%.reload%s+app%.reload%s+%a+%s+'Sales Overview' %(")
  t.match(out, "users%.import%s+user%s+%a+%s+'John Doe %-> jdoe@corp%.example' %(")
  code, out = cli.run({ "undo", "--dry-run", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out)
  t.match(out, "\n  would DELETE apps/%S+  %(app 'Sales Overview' %(")
  t.match(out, "\nundo: %d+ would be undone")
  code, out, err = cli.run({ "undo", "--run", "99", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 2, out .. err)
  t.match(err, "undo %-%-run 99: no run 99 in .*%(runs: 1")
  -- plan after a source change: the item lines say what would happen to which object
  code, out, err = cli.run({ "plan", "--force", "--verbose", "--step", "spaces.create", "examples/demo/job.yaml" },
    { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "spaces%.create 'Sales' %(%x+%-[%x-]+%): ")
end)

return T
