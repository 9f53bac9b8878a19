-- qvapps.validate through the qmig-lua binary: the demo's QlikView share
-- (examples/demo/qlikview) converted, imported, reloaded on the simulated
-- tenant, and its charts compared with their exports from QlikView, which
-- tests/qliksim/qlikview.py computes from each -prj folder the way the
-- simulated engine computes the converted app's hypercubes.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local qix = require "qmig.clients.qix"
local read = require "qmig.domain.validation.read"
local simlib = require "sim"

local T = t.suite("qvvalidate")

local SHARE = fs.realpath("examples/demo/qlikview")
local SALES, INVENTORY = "Finance/Sales Dashboard.qvw", "Operations/Inventory.qvw"
local sim

local function the_sim()
  if not sim then sim = simlib.start {} end
  return sim
end
T.after_all(function() if sim then sim:stop() end end)

local function api(method, path, body)
  local resp = assert(the_sim().control:request { method = method, path = "/api/v1/" .. path, json = body,
    headers = { Authorization = "Bearer " .. the_sim().info.api_key } })
  return resp.status, resp.body ~= "" and json.decode(resp.body) or nil
end

-- The tenant the share's documents go to: their spaces and connections.
local function tenant()
  the_sim():reset()
  local ids = {}
  for _, name in ipairs { "Finance QV", "QV staging" } do
    local st, body = api("POST", "spaces", { name = name, type = "shared" })
    assert(st == 201, name .. ": " .. st)
    ids[name] = body.id
  end
  for _, c in ipairs { { "Sales DB", "Finance QV" }, { "Warehouse", "QV staging" } } do
    local st = api("POST", "data-connections", { qName = c[1], datasourceID = "ODBC",
      qType = "QvOdbcConnectorPackage.exe", qConnectStatement = "CUSTOM CONNECT TO \"provider=x;\"",
      space = ids[c[2]] })
    assert(st == 201, c[1] .. ": " .. st)
  end
end

local PLAN = [[
plan:
  qlikview:
    spaces: {Finance: Finance QV}
  spaces: {staging: QV staging}
  scripts:
    replace:
      - {find: "ODBC CONNECT TO 'Warehouse ODBC'", replace: "LIB CONNECT TO 'QV staging:Warehouse'"}
      - {find: 'lib://Shared Files/', replace: 'lib://QV staging:DataFiles/'}]]

local function copy_tree(from, to)
  assert(fs.mkdirs(to, 448))
  for _, n in ipairs(assert(fs.dir(from))) do
    local st = fs.stat(from .. "/" .. n)
    if st.type == "directory" then copy_tree(from .. "/" .. n, to .. "/" .. n)
    else t.write(to .. "/" .. n, t.read(from .. "/" .. n)) end
  end
end

-- The charts as QlikView shows them, exported into dir/exports.
local function export(share, dir)
  local rc = os.execute(string.format("python3 tests/qliksim/qlikview.py exports '%s' '%s' >/dev/null", share,
    dir .. "/exports"))
  assert(rc, "qlikview.py exports")
end

-- A project of its own, with the share's exports (share: the demo's unless
-- given).
local function job(share)
  local s = the_sim()
  local dir = fs.realpath(t.tmpdir())
  share = share and share(dir) or SHARE
  export(share, dir)
  local c = s.info.certs
  t.write(dir .. "/job.yaml", table.concat({
    "version: 1",
    "project: {name: qvv, dir: " .. dir .. "/project}",
    "source:",
    "  type: qrs",
    "  url: " .. s.info.qrs_url,
    "  cert: " .. c.client_cert, "  key: " .. c.client_key, "  ca: " .. c.ca,
    "  user: 'INTERNAL\\sa_api'",
    "  qlikview: {folder: '" .. share .. "', exports: exports}",
    "target: {type: cloud, url: " .. s.info.cloud_url .. ", api_key: " .. s.info.api_key .. "}",
    PLAN,
    "options: {concurrency: 4, catalogue_lag: " .. simlib.CATALOGUE_LAG .. "}",
    "jobs:",
    "  - {name: qv, steps: [qvapps.convert, qvapps.import, qvapps.scripts, qvapps.reload, qvapps.validate]}",
  }, "\n") .. "\n")
  return dir .. "/job.yaml", dir
end

local function by(list, field)
  local out = {}
  for _, x in ipairs(list) do out[x[field]] = x end
  return out
end

local function status(file)
  local code, out, err = cli.run { "status", file, "--json" }
  assert(code == 0, err)
  local recs = {}
  for _, r in ipairs(json.decode(out)) do recs[r.kind .. " " .. r.source_id] = r end
  return recs
end

local function rows_of(dir)
  local out = {}
  for _, row in ipairs(json.decode(t.read(dir .. "/project/reports/validation.json")).apps) do
    out[row.source_id] = row
  end
  return out
end

T.test("equal charts pass; a chart with no export is not validated; a re-run writes nothing", function()
  tenant()
  local file, dir = job()
  -- Inventory's line chart was never exported (its scatter chart, CH03, has no master visualization)
  -- and its export is saved under the chart's title, as a user might
  assert(os.rename(dir .. "/exports/Operations/Inventory/CH01.csv", dir .. "/exports/Operations/Inventory/Stock.csv"))
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  local st = status(file)
  local sales, inv = st["qvapp.validation " .. SALES], st["qvapp.validation " .. INVENTORY]
  t.eq(sales.status, "unchanged")
  t.match(sales.reason, "^equal: 4 chart%(s%), %d+ cell%(s%) as the QlikView exports show them$")
  t.eq(inv.status, "unchanged")
  t.match(inv.reason, "^equal: 1 chart%(s%), %d+ cell%(s%) as the QlikView exports show them; "
    .. "1 chart%(s%) not validated: no export %(CH01%); 1 export%(s%) named after no chart of the document, "
    .. "not compared %(name each file after the chart's object id%): Stock%.csv$")
  -- the rows join apps.validate's reports, marked as QlikView's
  local rows = rows_of(dir)
  t.eq({ rows[SALES].outcome, rows[SALES].origin, rows[INVENTORY].outcome }, { "equal", "qlikview", "equal" })
  t.truthy(rows[SALES].cells > 10, "cells compared: " .. tostring(rows[SALES].cells))
  t.match(t.read(dir .. "/project/reports/validation.csv"), "Finance/Sales Dashboard%.qvw,Sales Dashboard,")
  t.truthy(fs.stat(dir .. "/project/" .. json.decode(t.read(dir .. "/project/reports/validation.json")).workbook))

  the_sim():reset_counters()
  code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  t.eq(the_sim():counts().total_writes, 0, "an identical re-run writes nothing")
  t.match(out, "qvapps%.validate%s+2 unchanged")

  -- no export at all for a document: skipped, saying so
  assert(os.remove(dir .. "/exports/Operations/Inventory/CH02.csv"))
  assert(os.remove(dir .. "/exports/Operations/Inventory/Stock.csv"))
  code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  inv = status(file)["qvapp.validation " .. INVENTORY]
  t.eq(inv.status, "skipped")
  t.eq(inv.reason, "not validated: no export for any of its 2 chart(s) (CH01, CH02)")
end)

T.test("a FIFO in the exports folder does not block the run; it is named as no chart's export", function()
  tenant()
  local file, dir = job()
  -- the exports folder is on a share others write to
  local fifo = dir .. "/exports/Operations/Inventory/CH09.csv"
  assert(os.execute(string.format("mkfifo '%s'", fifo)))
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(status(file)["qvapp.validation " .. INVENTORY].reason, "not compared [^\n]*: CH09%.csv$")
end)

T.test("a changed value fails naming the chart and the cell; a malformed export names its file and line", function()
  tenant()
  local file, dir = job()
  local path = dir .. "/exports/Finance/Sales Dashboard/CH03.csv"
  local text = t.read(path)
  local lines = {}
  for line in text:gmatch("[^\r\n]+") do lines[#lines + 1] = line end
  -- the document shows another revenue for the second country
  local country, revenue, rest = lines[3]:match("^([^,]+),([^,]+),(.*)$")
  lines[3] = country .. "," .. string.format("%.2f", tonumber(revenue) + 10) .. "," .. rest
  t.write(path, table.concat(lines, "\r\n") .. "\r\n")
  local code, out = cli.run { "run", file }
  t.eq(code, 1, out)
  local sales = status(file)["qvapp.validation " .. SALES]
  t.eq(sales.status, "failed")
  t.match(sales.last_error, "validation differs: chart table 'Orders by country' %(CH03%): row 2 %(" .. country
    .. "%), Revenue: source " .. string.format("%.2f", tonumber(revenue) + 10):gsub("%.", "%%.")
    .. ", Qlik Cloud " .. revenue:gsub("%.", "%%."))
  t.eq(status(file)["qvapp.validation " .. INVENTORY].status, "unchanged", "the other document is equal")
  t.eq(rows_of(dir)[SALES].first_differences[1].where, "row 2 (" .. country .. "), Revenue")

  -- a quoted field never closed, on line 4
  lines[4] = '"' .. lines[4]
  t.write(path, table.concat(lines, "\r\n") .. "\r\n")
  code, out = cli.run { "run", file }
  t.eq(code, 1, out)
  sales = status(file)["qvapp.validation " .. SALES]
  t.eq(sales.status, "failed")
  t.match(sales.last_error, "^" .. path:gsub("%p", "%%%0") .. ":4: a quoted field is not closed")
  -- a row with one field too many, on line 3
  lines[4] = lines[4]:sub(2)
  lines[3] = lines[3] .. ",7"
  t.write(path, table.concat(lines, "\r\n") .. "\r\n")
  code, out = cli.run { "run", file }
  t.eq(code, 1, out)
  t.match(status(file)["qvapp.validation " .. SALES].last_error, path:gsub("%p", "%%%0")
    .. ":3: 4 field%(s%), the header row has 3")
end)

T.test("a document saved with a changed expression changes its master measure in place; validation follows", function()
  tenant()
  local file, dir = job(function(d)
    copy_tree(SHARE, d .. "/share")
    return d .. "/share"
  end)
  local code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  local st = status(file)
  local app_id = st["qvapp " .. SALES].target_id
  local conv_file = dir .. "/project/" .. st["qvapp.convert " .. SALES].target_id .. "/conversion.json"
  local before = json.decode(t.read(conv_file))
  -- the document saved in QlikView with CH03's "Orders" counting something else
  local ch03 = dir .. "/share/Finance/Sales Dashboard-prj/CH03.xml"
  local xml = t.read(ch03)
  local changed, n = xml:gsub("=Count%(DISTINCT OrderID%)", "=Max(Sales)")
  assert(n == 1)
  t.write(ch03, changed)
  assert(os.execute("rm -rf '" .. dir .. "/exports'"))
  export(dir .. "/share", dir)
  code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  st = status(file)
  t.eq(st["qvapp " .. SALES].status, "updated")
  t.match(st["qvapp " .. SALES].reason, "0 measure%(s%), 0 visualization%(s%) written, 1 measure%(s%) changed")
  t.eq(st["qvapp " .. SALES].target_id, app_id)
  local after = json.decode(t.read(conv_file))
  t.eq(#after.measures, #before.measures, "the same master measures")
  local ids = {}
  for _, m in ipairs(before.measures) do ids[m.id] = m.expression end
  for _, m in ipairs(after.measures) do t.truthy(ids[m.id], "measure " .. m.id .. " kept its id") end
  -- the Cloud app has the one measure, changed, and the chart is equal to its new export
  local session = assert(qix.open { url = the_sim().info.cloud_engine_url, app_id = app_id,
    headers = { Authorization = "Bearer " .. the_sim().info.api_key } })
  local doc = assert(session:open_doc())
  local counts = assert(read.counts(doc))
  local id = by(after.measures, "title").Orders.id
  local r = assert(doc:call("GetMeasure", { qId = id }))
  local props = assert(session:call(r.qReturn.qHandle, "GetProperties"))
  session:close()
  t.eq(counts.measures, #before.measures, "no second measure")
  t.eq(props.qProp.qMeasure.qDef, "Max(Sales)")
  t.eq(st["qvapp.validation " .. SALES].status, "unchanged", tostring(st["qvapp.validation " .. SALES].last_error))
  t.match(st["qvapp.validation " .. SALES].reason, "^equal: 4 chart%(s%)")
end)

return T
