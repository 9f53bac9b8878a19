-- qvapps.validate through the qmig-lua binary: the demo's QlikView share
-- (examples/demo/qlikview) converted, imported, reloaded on the simulated
-- tenant, and its charts compared with their exports from QlikView, which
-- tests/qliksim/qlikview.py computes from each -prj folder the way the
-- simulated engine computes the converted app's hypercubes.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
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

-- A project of its own, the share's exports in dir/exports (the charts as
-- QlikView shows them).
local function job()
  local s = the_sim()
  local dir = fs.realpath(t.tmpdir())
  local rc = os.execute(string.format("python3 tests/qliksim/qlikview.py exports '%s' '%s' >/dev/null", SHARE,
    dir .. "/exports"))
  assert(rc, "qlikview.py exports")
  local c = s.info.certs
  t.write(dir .. "/job.yaml", table.concat({
    "version: 1",
    "project: {name: qvv, dir: " .. dir .. "/project}",
    "source:",
    "  type: qrs",
    "  url: " .. s.info.qrs_url,
    "  cert: " .. c.client_cert, "  key: " .. c.client_key, "  ca: " .. c.ca,
    "  user: 'INTERNAL\\sa_api'",
    "  qlikview: {folder: '" .. SHARE .. "', exports: exports}",
    "target: {type: cloud, url: " .. s.info.cloud_url .. ", api_key: " .. s.info.api_key .. "}",
    PLAN,
    "options: {concurrency: 4, catalogue_lag: " .. simlib.CATALOGUE_LAG .. "}",
    "jobs:",
    "  - {name: qv, steps: [qvapps.convert, qvapps.import, qvapps.scripts, qvapps.reload, qvapps.validate]}",
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
  assert(os.remove(dir .. "/exports/Operations/Inventory/CH01.csv"))
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  local st = status(file)
  local sales, inv = st["qvapp.validation " .. SALES], st["qvapp.validation " .. INVENTORY]
  t.eq(sales.status, "unchanged")
  t.match(sales.reason, "^equal: 4 chart%(s%), %d+ cell%(s%) as the QlikView exports show them$")
  t.eq(inv.status, "unchanged")
  t.match(inv.reason, "^equal: 1 chart%(s%), %d+ cell%(s%) as the QlikView exports show them; "
    .. "1 chart%(s%) not validated: no export %(CH01%)$")
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
  code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  inv = status(file)["qvapp.validation " .. INVENTORY]
  t.eq(inv.status, "skipped")
  t.eq(inv.reason, "not validated: no export for any of its 2 chart(s) (CH01, CH02)")
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

return T
