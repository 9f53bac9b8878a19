-- qmig.clients.qix: JSON-RPC sessions with the simulated engine on both halves --
-- open the same app on QSEoW (mutual TLS, X-Qlik-User) and in Qlik Cloud
-- (Bearer key), read the data model, list sheets, get a chart's layout and
-- its hypercube page after page under the 10,000-cell limit, engine
-- errors as nil, msg, "qix", and the writes the QlikView pipeline needs.
local t = require "testing"
local qix = require "qmig.clients.qix"
local sched = require "qmig.engine.sched"
local simlib = require "sim"

local T = t.suite("qix")

local APP = "5a1c7d7e-0000-4000-8000-00000000a001"
local MODEL = { tables = {
  { name = "Orders", no_of_rows = 6000, fields = { "OrderID", "Customer", "Region", "Amount" } },
  { name = "Customers", no_of_rows = 40, fields = { "Customer", "Country" } },
} }
local OBJECTS = {
  { engineObjectId = "sheet-overview", objectType = "sheet", name = "Overview", state = "base" },
  { engineObjectId = "sheet-mine", objectType = "sheet", name = "Mine", state = "community" },
  { engineObjectId = "sheet-private", objectType = "sheet", name = "Scratch", state = "private" },
}
local SITE = {
  qrs = {
    users = { { userDirectory = "CORP", userId = "jdoe", name = "John Doe" } },
    apps = { { id = APP, name = "Sales", owner = "CORP\\jdoe", data_model = MODEL, objects = OBJECTS } },
  },
  cloud = {
    api_keys = simlib.ADMIN_CLOUD.api_keys, users = simlib.ADMIN_CLOUD.users,
    -- the same app as imported with its data: same data_model, same sheets
    apps = { { id = APP, name = "Sales", data_model = MODEL, objects = OBJECTS, payload_size = 1000 } },
  },
}

local sim
local function get_sim()
  if not sim then sim = simlib.start { site = SITE } end
  return sim
end
T.after_all(function() if sim then sim:stop() end end)

local function open_qrs(extra)
  local info = get_sim().info
  local o = { url = info.qrs_engine_url, app_id = APP, ca = info.certs.ca, cert = info.certs.client_cert,
    key = info.certs.client_key, headers = { ["X-Qlik-User"] = "UserDirectory=INTERNAL; UserId=sa_engine" } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return qix.open(o)
end

local function open_cloud(extra)
  local info = get_sim().info
  local o = { url = info.cloud_engine_url, app_id = APP, headers = { Authorization = "Bearer " .. info.api_key } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return qix.open(o)
end

local SIDES = { qrs = open_qrs, cloud = open_cloud }

local function digest(rows)
  local parts = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for _, c in ipairs(row) do cells[#cells + 1] = c.qText end
    parts[#parts + 1] = table.concat(cells, "|")
  end
  return table.concat(parts, "\n")
end

T.test("open the app on both sides: OnConnected, the data model, fields, EvaluateEx", function()
  for side, open in pairs(SIDES) do
    local s = assert(open())
    t.eq(s.session_state, "SESSION_CREATED", side)
    local doc = assert(s:open_doc())
    local qtr, qk = assert(doc:tables_and_keys())
    t.eq(#qtr, 2, side)
    t.eq(qtr[1].qName, "Orders")
    t.eq(qtr[1].qNoOfRows, 6000)
    t.eq(qk, { { qKeyFields = { "Customer" }, qTables = { "Orders", "Customers" } } })
    local fields = assert(doc:field_list())
    local card = {}
    for _, f in ipairs(fields) do card[f.qName] = f.qCardinal end
    t.eq(card.OrderID, 6000, side)
    t.truthy(card.Customer > 1 and card.Customer < 20, side)
    local v = assert(doc:evaluate("Count(OrderID)"))
    t.eq({ v.qNumber, v.qIsNumeric }, { 6000, true })
    t.eq(assert(doc:evaluate("NoOfRows('Customers')")).qNumber, 40)
    t.eq(assert(doc:evaluate("Bogus(")).qIsNumeric, false)
    s:close()
  end
end)

T.test("list sheets and their charts; a chart's layout; the same on both sides", function()
  local seen = {}
  for side, open in pairs(SIDES) do
    local s = assert(open())
    local doc = assert(s:open_doc())
    local sheets = assert(doc:sheets())
    local titles = {}
    for _, sh in ipairs(sheets) do titles[#titles + 1] = sh.qData.title end
    table.sort(titles)
    t.eq(titles, { "Mine", "Overview" }, side .. ": private sheets are not listed")
    local overview
    for _, sh in ipairs(sheets) do if sh.qInfo.qId == "sheet-overview" then overview = sh end end
    t.eq(overview.qMeta.approved, true)
    local cells = overview.qData.cells
    t.truthy(#cells >= 2, side)
    local chart = assert(doc:object(cells[1].name))
    t.eq(chart.type, cells[1].type)
    local layout = assert(chart:layout())
    local cube = layout.qHyperCube
    t.eq(cube.qDimensionInfo[1].qFallbackTitle, "Customer")
    t.eq(cube.qMeasureInfo[1].qFallbackTitle, "Sum(Amount)")
    t.eq(cube.qSize.qcx, 3)
    local rows = assert(chart:hypercube_rows())
    t.eq(#rows, cube.qSize.qcy)
    for i = 2, #rows do t.truthy(rows[i - 1][1].qText < rows[i][1].qText, "sorted by the dimension") end
    local count = 0
    for _, r in ipairs(rows) do count = count + r[3].qNum end
    t.eq(count, 6000, "Count(OrderID) over the groups is every row")
    seen[side] = digest(rows)
    local props = assert(chart:properties())
    t.eq(props.qHyperCubeDef.qMeasures[1].qDef.qDef, "Sum(Amount)")
    local missing, err, code = doc:object("no-such-object")
    t.eq({ missing, code }, { nil, "not_found" }, err)
    s:close()
  end
  t.eq(seen.qrs, seen.cloud, "the migrated copy computes the same cube")
end)

T.test("a hypercube over 10,000 cells: paged by hypercube_rows, one big page is error 7009", function()
  local s = assert(open_cloud())
  local doc = assert(s:open_doc())
  local records
  for _, sh in ipairs(assert(doc:sheets())) do
    for _, c in ipairs(sh.qData.cells) do if c.name:find("rec$") then records = c.name end end
  end
  t.truthy(records, "the sheet has a chart with a row per order")
  local chart = assert(doc:object(records))
  local size = assert(chart:layout()).qHyperCube.qSize
  t.eq(size, { qcx = 2, qcy = 6000 })
  local pages, err, code, e = chart:hypercube_data { { qLeft = 0, qTop = 0, qWidth = 2, qHeight = 6000 } }
  t.eq({ pages, code, e and e.code }, { nil, "qix", 7009 })
  t.match(err, "GetHyperCubeData failed: .*7009")
  local rows = assert(chart:hypercube_rows { page_cells = 10000 })
  t.eq(#rows, 6000)
  t.eq(rows[1][1].qText, "1")
  t.eq(rows[6000][1].qText, "6000")
  local small = assert(chart:hypercube_rows { page_cells = 999 })  -- 499 rows a page
  t.eq(digest(small), digest(rows))
  s:close()
end)

T.test("pivot data of a two-dimension table: customers down, regions times the measure across", function()
  local s = assert(open_qrs())
  local doc = assert(s:open_doc())
  local chart = assert(doc:create_object { qInfo = { qType = "pivot-table" }, qHyperCubeDef = { qMode = "P",
    qDimensions = { { qDef = { qFieldDefs = { "Customer" } } }, { qDef = { qFieldDefs = { "Region" } } } },
    qMeasures = { { qDef = { qDef = "Count(OrderID)" } } } } })
  local pages = assert(chart:hypercube_pivot_data { { qLeft = 0, qTop = 0, qWidth = 50, qHeight = 50 } })
  local page = pages[1]
  t.truthy(#page.qLeft > 1 and #page.qTop > 1)
  t.eq(#page.qData, #page.qLeft)
  t.match(page.qTop[1].qText, "^Region %d+ / Count%(OrderID%)$")
  local total = 0
  for _, row in ipairs(page.qData) do
    for _, v in ipairs(row) do if type(v.qNum) == "number" then total = total + v.qNum end end
  end
  t.eq(total, 6000)
  local _, _, code, e = chart:hypercube_stack_data { { qLeft = 0, qTop = 0, qWidth = 3, qHeight = 10 } }
  t.eq({ code, e.code }, { "qix", -32601 }, "the simulator has no stacked cubes")
  s:close()
end)

T.test("engine errors and refusals come back as nil, msg, code", function()
  local s = assert(open_cloud())
  local doc, err, code, e = s:open_doc("not-this-app")
  t.eq({ doc, code, e.code }, { nil, "qix", 1003 })
  t.match(err, "OpenDoc failed: App not found")
  local res, _, mcode, me = s:call(-1, "NoSuchMethod")
  t.eq({ res, mcode, me.code }, { nil, "qix", -32601 })
  s:close()
  local _, _, closed = s:call(-1, "EngineVersion")
  t.eq(closed, "closed")
  local no, nerr, ncode = open_qrs { headers = {} }
  t.eq({ no, ncode }, { nil, "auth" }, nerr)
  no, _, ncode = open_cloud { headers = { Authorization = "Bearer wrong" } }
  t.eq({ no, ncode }, { nil, "auth" })
  no, _, ncode = open_qrs { cert = false, key = false }
  t.eq({ no, ncode }, { nil, "tls" })
end)

T.test("writes: variables, master dimension and measure, an object, the script, save", function()
  local s = assert(open_cloud())
  local doc = assert(s:open_doc())
  local var = assert(doc:create_variable { qName = "vYear", qDefinition = "2024" })
  t.truthy(var.handle)
  local again, _, code, e = doc:create_variable { qName = "vYear", qDefinition = "2025" }
  t.eq({ again, code, e.code }, { nil, "qix", 11 })
  local dim = assert(doc:create_dimension { qInfo = { qType = "dimension" },
    qDim = { qFieldDefs = { "Region" }, qGrouping = "N" }, qMetaDef = { title = "Region" } })
  t.eq(assert(dim:properties()).qDim.qFieldDefs, { "Region" })
  assert(doc:create_measure { qInfo = { qType = "measure" }, qMeasure = { qDef = "Sum(Amount)" } })
  local obj = assert(doc:create_object { qInfo = { qId = "my-table", qType = "table" },
    qHyperCubeDef = { qDimensions = { { qDef = { qFieldDefs = { "Region" } } } },
      qMeasures = { { qDef = { qDef = "Sum(Amount)" } } } } })
  local layout = assert(obj:layout())
  t.eq(layout.qHyperCube.qSize.qcx, 2)
  t.truthy(#assert(obj:hypercube_rows()) > 1)
  t.truthy(assert(doc:object("my-table")), "a stored object opens by id")
  t.truthy(doc:set_script("LOAD 1 AS x AUTOGENERATE 1;"))
  t.eq(doc:script(), "LOAD 1 AS x AUTOGENERATE 1;")
  t.truthy(doc:save())
  s:close()
  -- another session sees what was saved in the app
  local s2 = assert(open_cloud())
  local doc2 = assert(s2:open_doc())
  t.eq(doc2:script(), "LOAD 1 AS x AUTOGENERATE 1;")
  t.truthy(assert(doc2:object("my-table")))
  s2:close()
end)

T.test("sessions in scheduler tasks: both sides at once, calls yield on the socket", function()
  local s = sched.new { concurrency = 4 }
  local tasks = {}
  for side, open in pairs(SIDES) do
    tasks[side] = s:spawn(function()
      local session = assert(open())
      local doc = assert(session:open_doc())
      local n = 0
      for _, sh in ipairs(assert(doc:sheets())) do
        for _, cell in ipairs(sh.qData.cells) do
          local chart = assert(doc:object(cell.name))
          n = n + #assert(chart:hypercube_rows())
        end
      end
      session:close()
      return n
    end)
  end
  s:run()
  t.truthy(tasks.qrs.ok and tasks.cloud.ok, tostring(tasks.qrs.error or tasks.cloud.error))
  t.eq(tasks.qrs.result, tasks.cloud.result)
  t.truthy(tasks.qrs.result > 12000)
end)

return T
