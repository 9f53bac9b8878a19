-- The QlikView pipeline end to end over a generated estate
-- (tests/qliksim/generate.py --qlikview: tests/qliksim/qv_estate.py):
-- documents whose scripts load through the site's data connections, one
-- with what Qlik Sense cannot carry, one hostile; converted, imported,
-- reloaded and validated against the charts' exports, which the generator
-- computed on the data the simulated engine loads.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"

local T = t.suite("qv_estate")

local DOCUMENTS = 4
local HOSTILE = "Operations/Hostile.qvw"

local function api(sim, method, path, body)
  local resp = assert(sim.control:request { method = method, path = "/api/v1/" .. path, json = body,
    headers = { Authorization = "Bearer " .. sim.info.api_key } })
  return resp.status, resp.body ~= "" and json.decode(resp.body) or nil
end

local function status(file)
  local code, out, err = cli.run { "status", file, "--json" }
  assert(code == 0, err)
  local by = {}
  for _, r in ipairs(json.decode(out)) do by[r.kind .. " " .. r.source_id] = r end
  return by
end

T.test("a generated estate: every chart equal but the hostile document's refusal; a re-run writes nothing", function()
  local dir = fs.realpath(t.tmpdir())
  assert(os.execute(string.format("python3 tests/qliksim/generate.py --apps 2 --users 3 --streams 1 --connections 3 "
    .. "--tasks 0 --qlikview '%s/estate' --qv-documents %d > '%s/site.json'", dir, DOCUMENTS, dir)))
  local site = json.decode(t.read(dir .. "/site.json"))
  local sim = simlib.start { site = dir .. "/site.json" }
  local ok, err = pcall(function()
    -- the tenant: the staging space, and the site's connections in it (what
    -- dataconnections.migrate would have made), so the scripts' LIB CONNECT resolve
    local st, space = api(sim, "POST", "spaces", { name = "QV staging", type = "shared" })
    assert(st == 201, st)
    for _, dc in ipairs(site.qrs.data_connections) do
      st = api(sim, "POST", "data-connections", { qName = dc.name, datasourceID = "ODBC",
        qType = "QvOdbcConnectorPackage.exe", qConnectStatement = "CUSTOM CONNECT TO \"provider=x;\"",
        space = space.id })
      assert(st == 201, dc.name .. ": " .. st)
    end
    local c = sim.info.certs
    local file = dir .. "/job.yaml"
    t.write(file, table.concat({
      "version: 1",
      "project: {name: estate, dir: " .. dir .. "/project}",
      "source:",
      "  type: qrs",
      "  url: " .. sim.info.qrs_url,
      "  cert: " .. c.client_cert, "  key: " .. c.client_key, "  ca: " .. c.ca,
      "  user: 'INTERNAL\\sa_api'",
      "  qlikview: {folder: estate/share, exports: estate/exports}",
      "target: {type: cloud, url: " .. sim.info.cloud_url .. ", api_key: " .. sim.info.api_key .. "}",
      "plan: {spaces: {staging: QV staging}}",
      "options: {concurrency: 4, catalogue_lag: " .. simlib.CATALOGUE_LAG .. "}",
      "jobs:",
      "  - {name: qv, steps: [qvapps.convert, qvapps.import, qvapps.reload, qvapps.validate]}",
    }, "\n") .. "\n")
    local code, out, rerr = cli.run { "run", file }
    t.eq(code, 1, "the hostile document fails its conversion: " .. out .. rerr)
    local by = status(file)
    -- refused, naming the file and the line; nothing of it imported
    local hostile = by["qvapp.convert " .. HOSTILE]
    t.eq(hostile.status, "failed")
    t.match(hostile.last_error, "Hostile%-prj/QlikViewProject%.xml:%d+:%d+: [^\n]*entit")
    t.eq(by["qvapp " .. HOSTILE], nil)
    t.match(out, "qvapps%.convert%s+" .. (DOCUMENTS + 1) .. " created, 1 failed")
    -- every other document converted, imported, reloaded, and each of its charts equal to its export
    local docs = {}
    for key, rec in pairs(by) do
      local doc = key:match("^qvapp%.validation (.*)$")
      if doc then docs[#docs + 1] = doc; t.eq(rec.status, "unchanged", doc .. ": " .. tostring(rec.last_error)) end
    end
    t.eq(#docs, DOCUMENTS + 1)
    for _, doc in ipairs(docs) do
      t.eq(by["qvapp.reload " .. doc].status, "created", doc)
      t.match(by["qvapp.validation " .. doc].reason, "^equal: 6 chart%(s%), %d+ cell%(s%)")
    end
    -- what Qlik Sense cannot carry is in the conversion report, per document
    local csv = t.read(dir .. "/project/reports/qlikview-not-carried.csv")
    for _, what in ipairs { "Module%.txt,macros", "triggers,triggers", "CT01,container", "BU01,button",
        "CH07,chart %(scatter%)", "bookmarks,bookmarks", "Section Access,section access" } do
      t.match(csv, "Operations/Legacy Macros%.qvw,[^,\r\n]*," .. what)
    end
    t.truthy(not csv:find("Document 000.qvw,[^\r\n]*,macros"), "an ordinary document has no macros")

    sim:reset_counters()
    code, out = cli.run { "run", file }
    t.eq(code, 1, out)
    t.eq(sim:counts().total_writes, 0, "a re-run writes nothing")
    t.match(out, "qvapps%.validate%s+" .. (DOCUMENTS + 1) .. " unchanged")
  end)
  sim:stop()
  if not ok then error(err, 0) end
end)

return T
