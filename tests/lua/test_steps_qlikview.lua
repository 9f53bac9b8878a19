-- The QlikView pipeline through the qmig-lua binary: qvapps.convert over
-- the demo's QlikView share (examples/demo/qlikview: two documents with
-- -prj folders, one without), copied to a temporary folder so a test can
-- change or poison a document.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local qix = require "qmig.clients.qix"
local simlib = require "sim"

local T = t.suite("qlikview")

-- A Lua pattern matching s literally.
local function lit(s) return (s:gsub("%p", "%%%0")) end
local SHARE = fs.realpath("examples/demo/qlikview")
local sim

local function the_sim()
  if not sim then sim = simlib.start {} end
  return sim
end
T.after_all(function() if sim then sim:stop() end end)

local function copy_tree(from, to)
  assert(fs.mkdirs(to, 448))
  for _, n in ipairs(assert(fs.dir(from))) do
    local st = fs.stat(from .. "/" .. n)
    if st.type == "directory" then copy_tree(from .. "/" .. n, to .. "/" .. n)
    else t.write(to .. "/" .. n, t.read(from .. "/" .. n)) end
  end
end

-- A fresh project with its own copy of the share.
local function job(steps, plan)
  local s = the_sim()
  local dir = fs.realpath(t.tmpdir())
  copy_tree(SHARE, dir .. "/share")
  local c = s.info.certs
  t.write(dir .. "/job.yaml", table.concat({
    "version: 1",
    "project: {name: qv, dir: " .. dir .. "/project}",
    "source:",
    "  type: qrs",
    "  url: " .. s.info.qrs_url,
    "  cert: " .. c.client_cert, "  key: " .. c.client_key, "  ca: " .. c.ca,
    "  user: 'INTERNAL\\sa_api'",
    "  qlikview: {folder: share}",
    "target: {type: cloud, url: " .. s.info.cloud_url .. ", api_key: " .. s.info.api_key .. "}",
    plan or "",
    "options: {concurrency: 4, catalogue_lag: " .. simlib.CATALOGUE_LAG .. "}",
    "jobs:",
    "  - {name: qv, steps: [" .. steps .. "]}",
  }, "\n") .. "\n")
  return dir .. "/job.yaml", dir
end

local function status(file)
  local code, out, err = cli.run { "status", file, "--json" }
  assert(code == 0, err)
  local by = {}
  for _, r in ipairs(json.decode(out)) do by[r.kind .. " " .. r.source_id] = r end
  return by
end

local SALES, INVENTORY, LEGACY = "Finance/Sales Dashboard.qvw", "Operations/Inventory.qvw",
  "Operations/Legacy Archive.qvw"

local function conversion(dir, rec)
  return json.decode(t.read(dir .. "/project/" .. rec.target_id .. "/conversion.json"))
end

local function by(list, field)
  local out = {}
  for _, x in ipairs(list) do out[x[field]] = x end
  return out
end

T.test("qvapps.convert: script, variables, master items and what was not carried, per document", function()
  local file, dir = job "qvapps.convert"
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  local st = status(file)
  local sales, inv, legacy = st["qvapp.convert " .. SALES], st["qvapp.convert " .. INVENTORY],
    st["qvapp.convert " .. LEGACY]
  t.eq({ sales.status, inv.status, legacy.status }, { "created", "created", "skipped" })
  t.match(legacy.reason, "no 'Legacy Archive%-prj' folder beside it")
  t.match(sales.target_id, "^converted/%x+%-%x+%-%x+%-%x+%-%x+$", "the folder is the id generated at retrieval")

  local c = conversion(dir, sales)
  t.eq(c.doc, SALES)
  t.eq(c.script, t.read(SHARE .. "/Finance/Sales Dashboard-prj/LoadScript.txt"))
  t.eq(t.read(dir .. "/project/" .. sales.target_id .. "/script.qvs"), c.script)
  t.eq(c.variables, { { name = "vCurrentYear", definition = "=Year(Today())", comment = "The year shown by default" },
    { name = "vTarget", definition = "1300000", comment = "" } })
  local dims = by(c.dimensions, "title")
  t.eq({ dims.Geography.grouping, dims.Geography.fields, dims.Geography.from },
    { "H", { "Region", "Country" }, "group Geography" })
  t.eq({ dims["Product line"].fields, dims["Product line"].grouping }, { { "ProductLine" }, "N" })
  t.eq(#c.dimensions, 3, "Geography, Product line, Country: the group used by CH01 is not repeated")
  local measures = by(c.measures, "title")
  t.eq(measures.Revenue.expression, "Sum(Sales)", "the leading '=' dropped")
  t.eq(measures.Orders.expression, "Count(DISTINCT OrderID)")
  t.eq(measures["Target attainment"].expression, "Sum(Sales) / vTarget")
  t.eq(#c.measures, 3, "Revenue is in three charts and is one master measure")
  local vis = by(c.visualizations, "from")
  t.eq({ vis.CH01.type, vis.CH02.type, vis.CH03.type, vis.CH04.type }, { "barchart", "piechart", "table", "kpi" })
  t.eq(vis.CH01.dimensions, { dims.Geography.id }, "a chart on a group uses the group's master dimension")
  t.eq(vis.CH03.measures, { measures.Revenue.id, measures.Orders.id })
  t.eq(vis.CH03.title, "Orders by country")
  local skipped = by(c.not_carried, "object")
  t.truthy(skipped.LB01 and skipped.TX01 and skipped["2 sheet(s)"], json.encode(c.not_carried))

  -- the document with what Qlik Sense cannot take
  local ci = conversion(dir, inv)
  local vi = by(ci.visualizations, "from")
  t.eq({ vi.CH01.type, vi.CH02.type, vi.CH03 }, { "linechart", "pivot-table", nil })
  t.eq(by(ci.dimensions, "title").Period.grouping, "C", "a cyclic group")
  local ni = by(ci.not_carried, "object")
  t.match(ni.CH03.type, "scatter")
  t.match(ni.CH03.reason, "its dimensions and measures are carried")
  t.eq({ ni.BU01.type, ni.CT01.type, ni["Module.txt"].type }, { "button", "container", "macros" })
  t.match(ni.triggers.reason, "OnOpenActions")
  t.truthy(ni.bookmarks and ni["Section Access"], json.encode(ci.not_carried))
  t.match(t.read(dir .. "/project/" .. inv.target_id .. "/not-carried.txt"), "%- Module%.txt %(macros%): ")
  local csv = t.read(dir .. "/project/reports/qlikview-not-carried.csv")
  t.match(csv, "^document,qv_id,object,type,reason\r\n")
  t.match(csv, "\r\nOperations/Inventory%.qvw," .. lit(inv.target_id:match("[^/]+$")) .. ",CH03,")
  t.match(csv, "\r\nFinance/Sales Dashboard%.qvw,[^\r]*,LB01,list box,")
end)

T.test("qvapps.convert: a re-run converts nothing; a saved document is converted again under its id", function()
  local file, dir = job "qvapps.convert"
  t.eq((cli.run { "run", file }), 0)
  local first = status(file)
  local sales_json = dir .. "/project/" .. first["qvapp.convert " .. SALES].target_id .. "/conversion.json"
  local before = t.read(sales_json)
  local code, out = cli.run { "run", file }
  t.eq(code, 0)
  t.match(out, "qvapps%.convert%s+2 unchanged, 1 skipped\n")
  local again = status(file)
  t.eq(again["qvapp.convert " .. SALES].run_id, first["qvapp.convert " .. SALES].run_id, "not run again")
  -- QlikView Desktop saves the inventory document with a new expression
  local ch = dir .. "/share/Operations/Inventory-prj/CH01.xml"
  t.write(ch, (t.read(ch):gsub("Sum%(OnHand%)", "Avg(OnHand)")))
  t.eq((cli.run { "run", file }), 0)
  local third = status(file)
  local inv = third["qvapp.convert " .. INVENTORY]
  t.eq(inv.status, "updated")
  t.eq(inv.target_id, first["qvapp.convert " .. INVENTORY].target_id, "the same generated id")
  t.eq(third["qvapp.convert " .. SALES].run_id, first["qvapp.convert " .. SALES].run_id)
  t.eq(t.read(sales_json), before)
  t.eq(by(conversion(dir, inv).measures, "from")["chart CH01"].expression, "Avg(OnHand)")
end)

T.test("qvapps.convert: a hostile -prj fails its document with file:line:col and writes nothing", function()
  local file, dir = job "qvapps.convert"
  local ch = dir .. "/share/Finance/Sales Dashboard-prj/CH02.xml"
  t.write(ch, '<?xml version="1.0"?>\n<!DOCTYPE g [\n <!ENTITY a "aaaaaaaaaa">\n <!ENTITY b "&a;&a;&a;&a;">\n]>\n'
    .. "<GraphProperties>&b;</GraphProperties>\n")
  local deep = dir .. "/share/Operations/Inventory-prj/CH02.xml"
  t.write(deep, ("<a>"):rep(1000) .. ("</a>"):rep(1000))
  local code, out, err = cli.run { "run", file }
  t.eq(code, 1, out .. err)
  local st = status(file)
  local sales, inv = st["qvapp.convert " .. SALES], st["qvapp.convert " .. INVENTORY]
  t.eq({ sales.status, inv.status }, { "failed", "failed" })
  t.match(sales.last_error, lit(ch) .. ":3:%d+: DTD declares entity 'a': entity declarations are refused")
  t.match(inv.last_error, lit(deep) .. ":1:%d+: elements nested deeper than 256 levels")
  t.eq(fs.dir(dir .. "/project/converted") or {}, {}, "nothing written for a refused document")
end)

T.test("qvapps.convert: a -prj file that is a symlink or a FIFO fails its document; nothing outside is read",
    function()
  local file, dir = job "qvapps.convert"
  -- Anyone who can write to the share could point a project file at the
  -- migration host's files (their text would go into a Cloud app) or at
  -- a FIFO or /dev/zero (the run would block or fill memory).
  t.write(dir .. "/host-secret.txt", "HOST-SECRET-LINE\n")
  local script = dir .. "/share/Finance/Sales Dashboard-prj/LoadScript.txt"
  os.remove(script)
  assert(os.execute(string.format("ln -s '%s/host-secret.txt' '%s'", dir, script)))
  local fifo = dir .. "/share/Operations/Inventory-prj/CH02.xml"
  os.remove(fifo)
  assert(os.execute(string.format("mkfifo '%s'", fifo)))
  local code, out, err = cli.run { "run", file }
  t.eq(code, 1, out .. err)
  local st = status(file)
  local sales, inv = st["qvapp.convert " .. SALES], st["qvapp.convert " .. INVENTORY]
  t.eq({ sales.status, inv.status }, { "failed", "failed" })
  t.match(sales.last_error, lit(script) .. ": a symbolic link, not a file: refused")
  t.match(inv.last_error, lit(fifo) .. ": not a regular file: refused")
  for _, n in ipairs(fs.dir(dir .. "/project/converted") or {}) do
    for _, f in ipairs(fs.dir(dir .. "/project/converted/" .. n) or {}) do
      t.truthy(not t.read(dir .. "/project/converted/" .. n .. "/" .. f):find("HOST-SECRET", 1, true), f)
    end
  end
end)

T.test("plan filters by folder and name; the plan shows each document by name and writes nothing", function()
  local file, dir = job("qvapps.convert", "plan:\n  qlikview:\n    folders: [Operations]\n"
    .. "    exclude: {names: ['Legacy*']}")
  local code, out, err = cli.run { "plan", file }
  t.eq(code, 0, out .. err)
  t.match(out, "'Inventory' %(Operations/Inventory%.qvw%)[^\n]*would convert")
  -- the run generates a new document's id: the plan cannot name its folder yet
  t.match(out, "'Inventory' [^\n]*%(convert converted/%(known after run%)%)\n")
  t.truthy(not out:find("Sales Dashboard", 1, true) and not out:find("Legacy", 1, true), out)
  t.truthy(not fs.exists(dir .. "/project/converted") or #fs.dir(dir .. "/project/converted") == 0)
  file = job("qvapps.convert", "plan:\n  qlikview:\n    names: ['Sales*']")
  code, out = cli.run { "plan", file }
  t.eq(code, 0)
  t.match(out, "'Sales Dashboard' %(Finance/Sales Dashboard%.qvw%)")
  t.truthy(not out:find("Inventory", 1, true), out)
end)

T.test("job file: a QlikView folder that does not exist is a configuration error naming the line", function()
  local file, dir = job "qvapps.convert"
  t.write(file, (t.read(file):gsub("qlikview: {folder: share}", "qlikview: {folder: nowhere}")))
  local code, out, err = cli.run { "check", file }
  t.eq(code, 2, out .. err)
  t.match(err, lit(file) .. ":%d+: source%.qlikview%.folder: folder 'nowhere' does not exist")
  -- a file where the share should be: the same kind of error, before anything is contacted
  t.write(dir .. "/afile", "x")
  for _, key in ipairs { "folder: afile", "folder: share, exports: afile" } do
    t.write(file, (t.read(file):gsub("qlikview: {[^}]*}", "qlikview: {" .. key .. "}")))
    for _, cmd in ipairs { "check", "plan", "run" } do
      code, out, err = cli.run { cmd, file }
      t.eq(code, 2, cmd .. " " .. key .. ": " .. out .. err)
      t.match(err, lit(file) .. ":%d+: source%.qlikview%.%a+: 'afile' is not a folder")
    end
  end
  t.truthy(not fs.exists(dir .. "/project/converted"), "nothing converted")
end)

-- {====== qvapps.import

-- Talks to the simulated tenant directly (set-up, and what a user would see).
local function api(method, path, body, query)
  local resp = assert(the_sim().control:request { method = method, path = "/api/v1/" .. path, json = body,
    query = query, headers = { Authorization = "Bearer " .. the_sim().info.api_key } })
  return resp.status, resp.body ~= "" and json.decode(resp.body) or nil
end

local function space(name)
  local st, body = api("POST", "spaces", { name = name, type = "shared" })
  assert(st == 201, "space " .. name .. ": " .. st)
  return body.id
end

local function apps_named(name)
  local out = {}
  for _, a in ipairs(the_sim():state().cloud.apps) do if a.name == name then out[#out + 1] = a end end
  return out
end

-- What the app holds, read back over the engine as a user's client would.
local function engine_view(app_id, conv)
  local s = assert(qix.open { url = the_sim().info.cloud_engine_url, app_id = app_id,
    headers = { Authorization = "Bearer " .. the_sim().info.api_key } })
  local doc = assert(s:open_doc())
  local view = { script = assert(doc:script()), variables = {}, dimensions = {}, measures = {}, objects = {} }
  for _, v in ipairs(conv.variables) do
    local r = doc:call("GetVariableByName", { qName = v.name })
    view.variables[v.name] = r and r.qReturn and type(r.qReturn.qHandle) == "number" or false
  end
  for kind, method in pairs { dimensions = "GetDimension", measures = "GetMeasure" } do
    for _, m in ipairs(conv[kind]) do
      local r = doc:call(method, { qId = m.id })
      view[kind][m.id] = r and r.qReturn and type(r.qReturn.qHandle) == "number" or false
    end
  end
  for _, v in ipairs(conv.visualizations) do
    local o = doc:object(v.id)
    local props = o and o:properties()
    view.objects[v.id] = props and { type = props.qInfo.qType, visualization = props.visualization,
      dims = #props.qHyperCubeDef.qDimensions, measures = #props.qHyperCubeDef.qMeasures } or false
  end
  s:close()
  return view
end

local IMPORT_PLAN = "plan:\n  qlikview:\n    spaces: {Finance: Finance QV}\n  spaces: {staging: QV staging}"

T.test("qvapps.import: an app per document, filled over the engine; a re-run writes nothing", function()
  the_sim():reset()
  local finance, staging = space("Finance QV"), space("QV staging")
  local file, dir = job("qvapps.convert, qvapps.import", IMPORT_PLAN)
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  local st = status(file)
  local rec = st["qvapp " .. SALES]
  t.eq(rec.status, "created")
  local sales = apps_named("Sales Dashboard")
  t.eq(#sales, 1)
  t.eq(sales[1].id, rec.target_id)
  t.eq(sales[1].spaceId, finance, "the folder's space")
  local qv_id = st["qvapp.convert " .. SALES].target_id:match("[^/]+$")
  t.eq(sales[1].description, "[qmig-lua:1:qlikview:" .. qv_id .. "]", "the marker carries the generated id")
  local inv = apps_named("Inventory")
  t.eq({ #inv, inv[1] and inv[1].spaceId }, { 1, staging }, "an unmapped folder goes to the staging space")
  t.eq(apps_named("Legacy Archive"), {}, "a document never converted is not imported")

  local conv = conversion(dir, st["qvapp.convert " .. SALES])
  local view = engine_view(rec.target_id, conv)
  t.eq(view.script, conv.script, "the script was saved into the app")
  t.eq(view.variables, { vCurrentYear = true, vTarget = true })
  for id, there in pairs(view.dimensions) do t.truthy(there, "dimension " .. id) end
  for id, there in pairs(view.measures) do t.truthy(there, "measure " .. id) end
  local vis = by(conv.visualizations, "from")
  t.eq(view.objects[vis.CH03.id], { type = "masterobject", visualization = "table", dims = 1, measures = 2 })
  t.eq(view.objects[vis.CH04.id], { type = "masterobject", visualization = "kpi", dims = 0, measures = 1 })
  t.match(rec.reason, "2 variable%(s%), 3 dimension%(s%), 3 measure%(s%), 4 visualization%(s%) written")

  the_sim():reset_counters()
  code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  t.eq(the_sim():counts().total_writes, 0, "an identical re-run writes nothing")
  t.match(out, "qvapps%.import%s+2 unchanged")
end)

T.test("qvapps.import: a document gone from the share (renamed, moved, filtered out) is not imported again",
    function()
  the_sim():reset()
  space("Finance QV"); space("QV staging")
  local file, dir = job("qvapps.convert, qvapps.import", IMPORT_PLAN)
  t.eq((cli.run { "run", file }), 0)
  local old = apps_named("Inventory")
  t.eq(#old, 1)
  local prj_dir = dir .. "/share/Operations/"
  assert(os.rename(prj_dir .. "Inventory.qvw", prj_dir .. "Stock.qvw"))
  assert(os.rename(prj_dir .. "Inventory-prj", prj_dir .. "Stock-prj"))
  -- what docs/qlikview.md tells a user to do with the app of the old name
  t.eq((api("DELETE", "apps/" .. old[1].id)), 200)
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.eq(#apps_named("Stock"), 1, "the renamed document is a new app")
  t.eq(apps_named("Inventory"), {}, "the old name's app, deleted in Qlik Cloud, is not made again")
  -- a plan that no longer selects a document leaves its app alone too
  t.write(file, (t.read(file):gsub("  qlikview:\n", "  qlikview:\n    names: ['Stock']\n", 1)))
  local sales = apps_named("Sales Dashboard")
  t.eq((api("DELETE", "apps/" .. sales[1].id)), 200)
  code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.eq(apps_named("Sales Dashboard"), {}, "outside the plan: not imported")
  t.match(out, "qvapps%.import%s+1 unchanged\n")
end)

T.test("qvapps.import: a run that lost its cache finds its apps by marker and adds only what is missing", function()
  the_sim():reset()
  space("Finance QV"); space("QV staging")
  local file, dir = job("qvapps.convert, qvapps.import", IMPORT_PLAN)
  t.eq((cli.run { "run", file }), 0)
  local first = status(file)
  -- the same conversions (the ids generated at retrieval survive in
  -- converted/), but a cache that never heard of the imports: as after a
  -- crash between the create and its record
  local db = dir .. "/project/qmig.db"
  local sqlite = require "qmig.sqlite"
  local conn = assert(sqlite.open(db))
  conn:exec("DELETE FROM items WHERE kind = 'qvapp'")
  conn:close()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  local again = status(file)
  t.eq(#apps_named("Sales Dashboard"), 1, "no second app")
  t.eq(again["qvapp " .. SALES].target_id, first["qvapp " .. SALES].target_id)
  t.eq(again["qvapp " .. SALES].status, "adopted")
  t.match(again["qvapp " .. SALES].reason, "0 variable%(s%), 0 dimension%(s%), 0 measure%(s%), 0 visualization%(s%) "
    .. "written, 12 already there")
end)

T.test("qvapps.import: a mapped space missing from the tenant skips the document with the reason", function()
  the_sim():reset()
  space("QV staging")
  local file = job("qvapps.convert, qvapps.import", IMPORT_PLAN)
  local code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  local st = status(file)
  t.eq(st["qvapp " .. SALES].status, "skipped")
  t.match(st["qvapp " .. SALES].reason, "space 'Finance QV' is not in the tenant")
  t.eq(st["qvapp " .. INVENTORY].status, "created")
end)

-- An engine failure names what was being done, the app and the engine's
-- message, never a Lua position (r21: "engine.lua:124:" from an assert);
-- a dropped connection is retried (errors.engine: unknown outcome), and
-- many in a row stop the run with exit 4 (qmig.rate.breaker.engine_call).
T.test("qvapps.import: an engine that drops its connection fails the document saying what, where and why",
  function()
  the_sim():reset()
  space("Finance QV"); space("QV staging")
  -- one document: its 1 + 3 attempts (retried: unknown outcome) stay below the breaker's 5 in a row;
  -- two documents pass it only because they are retried (the next test)
  local file = job("qvapps.convert, qvapps.import", "plan:\n  qlikview:\n    names: ['Sales*']\n"
    .. "    spaces: {Finance: Finance QV}\n  spaces: {staging: QV staging}")
  the_sim():faults { engine_faults = { { method = "DoSave", action = "close" } } }
  local code, out, err = cli.run { "run", file }
  the_sim():faults {}
  t.eq(code, 1, out .. err)
  local rec = status(file)["qvapp " .. SALES]
  t.eq(rec.status, "failed", out)
  local why = rec.last_error or rec.reason
  t.match(why, "^saving %(DoSave%) in app [%w%-]+: ws://127%.0%.0%.1:%d+/app/[%w%-]+: ")
  t.truthy(not why:find("%.lua:%d"), why)
  t.eq(#apps_named("Sales Dashboard"), 1, "the retries found the app again: no second one")
  code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  t.eq(#apps_named("Sales Dashboard"), 1)
end)

T.test("qvapps.import: an engine that stops answering every document stops the run with exit 4, then resumes",
  function()
  the_sim():reset()
  space("Finance QV"); space("QV staging")
  local file = job("qvapps.convert, qvapps.import", IMPORT_PLAN)
  the_sim():faults { engine_faults = { { method = "*", action = "close" } } }
  local started = qmig.monotonic()
  local code, out, err = cli.run { "run", file }
  local took = qmig.monotonic() - started
  the_sim():faults {}
  t.eq(code, 4, out .. err)
  t.match(err, "target http://127%.0%.0%.1:%d+ is unreachable: its engine: ")
  t.truthy(not (out .. err):find("%.lua:%d"), out .. err)
  t.truthy(took < 60, "stopped in " .. took .. " s")
  code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.eq({ #apps_named("Sales Dashboard"), #apps_named("Inventory") }, { 1, 1 }, "resumed, no duplicate")
end)

T.test("check warns that a space of plan.qlikview.spaces or publish is not in the tenant, as plan does", function()
  the_sim():reset()
  space("QV staging")
  local file = job("qvapps.convert, qvapps.import", "plan:\n  qlikview:\n    spaces: {Finance: Finance QV}\n"
    .. "    publish: {Operations: Ops Reports}\n  spaces: {staging: QV staging}")
  local code, out, err = cli.run { "check", file }
  -- a warning, as for a stream of plan.spaces.map that does not exist: check exits 0
  t.eq(code, 0, out .. err)
  t.match(out, "warn plan%.qlikview%.spaces maps folder 'Finance' to space 'Finance QV', which is not in the tenant")
  t.match(out, "warn plan%.qlikview%.publish maps folder 'Operations' to space 'Ops Reports', which is not in")
  space("Finance QV")
  code, out = cli.run { "check", file }
  t.eq(code, 0, out)
  t.truthy(not out:find("'Finance QV'", 1, true), out)
  t.match(out, "'Ops Reports', which is not in the tenant")
end)

-- {====== the steps after the import: the Qlik Sense app steps, reused

local PIPELINE = "qvapps.convert, qvapps.import, qvapps.scripts, qvapps.reload, qvapps.publish, qvapps.owners"
local PIPELINE_PLAN = [[
plan:
  qlikview:
    spaces: {Finance: Finance QV}
    publish: {Finance: Finance Reports}
    owners: {'Finance/Sales Dashboard.qvw': jane@acme.com, Inventory: nobody@acme.com}
  spaces: {staging: QV staging}
  scripts:
    replace:
      - {find: "ODBC CONNECT TO 'Warehouse ODBC'", replace: "LIB CONNECT TO 'QV staging:Warehouse'"}
      - {find: 'lib://Shared Files/', replace: 'lib://QV staging:DataFiles/'}]]

local function pipeline_tenant()
  the_sim():reset()
  local ids = { finance = space("Finance QV"), staging = space("QV staging") }
  local st, m = api("POST", "spaces", { name = "Finance Reports", type = "managed" })
  assert(st == 201, st)
  ids.managed = m.id
  for _, c in ipairs { { "Sales DB", ids.finance }, { "Warehouse", ids.staging } } do
    st = api("POST", "data-connections", { qName = c[1], datasourceID = "ODBC", qType = "QvOdbcConnectorPackage.exe",
      qConnectStatement = "CUSTOM CONNECT TO \"provider=x;\"", space = c[2] })
    assert(st == 201, "data connection " .. c[1] .. ": " .. st)
  end
  local u
  st, u = api("POST", "users", { subject = "auth0|jane", email = "jane@acme.com", name = "Jane", status = "active" })
  assert(st == 201, "user: " .. st)
  ids.jane = u.id
  return ids
end

local function app_by_id(id)
  for _, a in ipairs(the_sim():state().cloud.apps) do if a.id == id then return a end end
end

T.test("qvapps.scripts, reload, publish, owners: the apps.* steps on the QlikView apps; a re-run writes nothing",
  function()
  local ids = pipeline_tenant()
  local file, dir = job(PIPELINE, PIPELINE_PLAN)
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  local st = status(file)
  local sales_id, inv_id = st["qvapp " .. SALES].target_id, st["qvapp " .. INVENTORY].target_id
  -- scripts: the plan's replacements, with a backup of the script as imported
  t.eq(st["qvapp.script " .. INVENTORY].status, "updated")
  local inv = app_by_id(inv_id)
  t.match(inv.script, "LIB CONNECT TO 'QV staging:Warehouse';")
  t.match(inv.script, "lib://QV staging:DataFiles/rates%.qvd")
  t.eq(t.read(dir .. "/project/backups/scripts/" .. fs.safe_name(INVENTORY) .. ".qvs"),
    t.read(SHARE .. "/Operations/Inventory-prj/LoadScript.txt"))
  t.eq(st["qvapp.script " .. SALES].status, "unchanged", "nothing to rewrite")
  -- reload: both succeed now that their connections resolve
  t.eq({ st["qvapp.reload " .. SALES].status, st["qvapp.reload " .. INVENTORY].status }, { "created", "created" })
  -- publish: the Finance folder's app moved into its managed space
  t.eq(st["qvapp.published " .. SALES].status, "created")
  t.eq(app_by_id(sales_id).spaceId, ids.managed)
  t.eq(st["qvapp.published " .. INVENTORY].status, "skipped")
  -- owners: from the plan's mapping
  t.eq(st["qvapp.owner " .. SALES].status, "updated")
  t.eq(app_by_id(sales_id).ownerId, ids.jane)
  t.eq(st["qvapp.owner " .. INVENTORY].status, "skipped")
  t.match(st["qvapp.owner " .. INVENTORY].reason, "owner nobody@acme%.com has no Cloud user")

  the_sim():reset_counters()
  code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  t.eq(the_sim():counts().total_writes, 0, "an identical re-run writes nothing")
end)

T.test("qvapps.delete and post.reset_qv_descriptions: only this project's QlikView apps, markers and all", function()
  pipeline_tenant()
  local file = job("qvapps.convert, qvapps.import", IMPORT_PLAN)
  t.eq((cli.run { "run", file }), 0)
  local st = status(file)
  local sales_id = st["qvapp " .. SALES].target_id
  -- a Qlik Sense app with its own marker, and an unmarked app: never touched
  api("POST", "apps", { attributes = { name = "Other", description = "[qmig-lua:1:1234]" } })
  api("POST", "apps", { attributes = { name = "Plain" } })
  -- reset: the description loses its marker, and undo would put it back
  t.write(file, (t.read(file):gsub("steps: %[qvapps.convert, qvapps.import%]",
    "steps: [qvapps.convert, qvapps.import, post.reset_qv_descriptions]")))
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.eq(app_by_id(sales_id).description, "")
  t.eq(status(file)["qvapp.description " .. SALES].status, "updated")
  -- delete: this project's two apps, found through the cache
  t.write(file, (t.read(file):gsub("post.reset_qv_descriptions", "qvapps.delete")))
  code, out, err = cli.run { "run", file, "--step", "qvapps.delete", "--yes" }
  t.eq(code, 0, out .. err)
  local names = {}
  for _, a in ipairs(the_sim():state().cloud.apps) do names[#names + 1] = a.name end
  table.sort(names)
  t.eq(names, { "Other", "Plain" })
  st = status(file)
  t.eq({ st["qvapp " .. SALES].status, st["qvapp.delete " .. SALES].status }, { "deleted", "deleted" })
  -- and the next import makes them again
  code, out = cli.run { "run", file, "--step", "qvapps.import" }
  t.eq(code, 0, out)
  t.eq(#apps_named("Sales Dashboard"), 1)
end)

-- r21: reload, owners (and validate, scripts, publish) went on with the apps of documents gone
-- from the share; qvapps.delete must still remove them (qmig.domain.qlikview.conversion.current).
T.test("the steps after qvapps.import leave a gone document's app alone; qvapps.delete still removes it",
  function()
  pipeline_tenant()
  local file, dir = job(PIPELINE, PIPELINE_PLAN)
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  local st = status(file)
  local sales_id, inv_id = st["qvapp " .. SALES].target_id, st["qvapp " .. INVENTORY].target_id
  -- both documents leave the share; the user deletes Inventory's app in Qlik Cloud
  for _, doc in ipairs { SALES, INVENTORY } do
    local base = dir .. "/share/" .. doc:gsub("%.qvw$", "")
    assert(os.execute(string.format("rm -rf '%s.qvw' '%s-prj'", base, base)))
  end
  t.eq((api("DELETE", "apps/" .. inv_id)), 200)
  -- (--force: every item runs again, not only the changed ones)
  code, out, err = cli.run { "run", file, "--force" }
  t.eq(code, 0, out .. err)
  t.truthy(not out:find("Inventory", 1, true) and not out:find("Sales Dashboard", 1, true), out)
  t.eq(#apps_named("Inventory"), 0, "not made again")
  t.truthy(app_by_id(sales_id), "a gone document's app is left as it is")
  -- delete: this project's app of the gone document is removed all the same
  t.write(file, (t.read(file):gsub("steps: %[[^%]]*%]", "steps: [qvapps.delete]")))
  code, out, err = cli.run { "run", file, "--step", "qvapps.delete", "--yes" }
  t.eq(code, 0, out .. err)
  t.eq(#apps_named("Sales Dashboard"), 0, out)
  t.eq(status(file)["qvapp.delete " .. SALES].status, "deleted")
end)

T.test("qvapps.delete finds a marked app the cache does not know (a lost project database)", function()
  pipeline_tenant()
  local file, dir = job("qvapps.convert, qvapps.import, qvapps.delete", IMPORT_PLAN)
  t.eq((cli.run { "run", file, "--step", "qvapps.convert", "--step", "qvapps.import" }), 0)
  local conn = assert(require("qmig.sqlite").open(dir .. "/project/qmig.db"))
  conn:exec("DELETE FROM items WHERE kind = 'qvapp'")
  conn:close()
  local code, out, err = cli.run { "run", file, "--step", "qvapps.delete", "--yes" }
  t.eq(code, 0, out .. err)
  t.eq(apps_named("Sales Dashboard"), {})
  t.eq(apps_named("Inventory"), {})
end)
-- }======

return T
