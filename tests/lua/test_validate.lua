-- Validation by data (qmig.domain.validation.*): the comparison of an app with
-- its migrated copy through both simulated engines (the same data; a
-- reload that loaded other values; no data; an object on one side only),
-- cells compared as text and numbers within a tolerance, engine sessions
-- bounded per host, and the spreadsheet read back as the XLSX it is.
local t = require "testing"
local compare = require "qmig.domain.validation.compare"
local engines = require "qmig.domain.validation.engines"
local fs = require "qmig.fs"
local json = require "qmig.json"
local qmig = require "qmig"
local sched = require "qmig.engine.sched"
local simlib = require "sim"
local workbook = require "qmig.domain.validation.workbook"

local T = t.suite("validate")

local APP = "5a1c7d7e-0000-4000-8000-00000000b001"
local EMPTY = "5a1c7d7e-0000-4000-8000-00000000b002"
local C_SAME, C_CHANGED, C_EMPTY, C_EXTRA, C_NODATA = "c-same", "c-changed", "c-empty", "c-extra", "c-nodata"
local MODEL = { tables = {
  { name = "Orders", no_of_rows = 3000, fields = { "OrderID", "Customer", "Region", "Amount" } },
  { name = "Customers", no_of_rows = 40, fields = { "Customer", "Country" } },
} }
local EMPTY_MODEL = { tables = { { name = "Forecast", no_of_rows = 0, fields = { "Period", "Value" } } } }
local OBJECTS = {
  { engineObjectId = "sheet-overview", objectType = "sheet", name = "Overview", state = "base" },
  { engineObjectId = "sheet-private", objectType = "sheet", name = "Scratch", state = "private" },
}
local function with(list, extra)
  local out = {}
  for _, o in ipairs(list) do out[#out + 1] = o end
  out[#out + 1] = extra
  return out
end
local function changed(model, variant)
  return { tables = model.tables, variant = variant }
end
local SITE = {
  qrs = {
    users = { { userDirectory = "CORP", userId = "jdoe", name = "John Doe" } },
    apps = {
      { id = APP, name = "Sales", owner = "CORP\\jdoe", data_model = MODEL, objects = OBJECTS },
      { id = EMPTY, name = "Draft", owner = "CORP\\jdoe", data_model = EMPTY_MODEL, objects = OBJECTS },
    },
  },
  cloud = {
    api_keys = simlib.ADMIN_CLOUD.api_keys, users = simlib.ADMIN_CLOUD.users,
    apps = {
      { id = C_SAME, name = "Sales", data_model = MODEL, objects = OBJECTS, payload_size = 1000 },
      -- reloaded from another database: the same tables and fields, other values
      { id = C_CHANGED, name = "Sales", data_model = changed(MODEL, "erp-test"), objects = OBJECTS,
        payload_size = 1000 },
      { id = C_EMPTY, name = "Draft", data_model = EMPTY_MODEL, objects = OBJECTS, payload_size = 1000 },
      { id = C_EXTRA, name = "Sales", data_model = MODEL, payload_size = 1000, objects = with(OBJECTS,
        { engineObjectId = "sheet-new", objectType = "sheet", name = "Added in Cloud", state = "base" }) },
      -- imported without data, never reloaded
      { id = C_NODATA, name = "Sales", data_model = MODEL, objects = OBJECTS, payload_size = 0, has_data = false },
    },
  },
}

local sim
local function get_sim()
  if not sim then sim = simlib.start { site = SITE } end
  return sim
end
T.after_all(function() if sim then sim:stop() end end)

-- What engines.open reads of a step's context: the job's source and target.
local function ctx()
  local info = get_sim().info
  return {
    job = {
      source = { url = info.qrs_url, cert = info.certs.client_cert, key = info.certs.client_key, ca = info.certs.ca,
        user = "INTERNAL\\sa_api" },
      target = { url = info.cloud_url, api_key = info.api_key },
    },
    target = {},
  }
end

local function validate(source_id, target_id)
  local c = ctx()
  local s, sdoc = assert(engines.open(c, "source", source_id))
  local g, gdoc = assert(engines.open(c, "target", target_id))
  local result, err = compare.app(sdoc, gdoc)
  engines.close(s)
  engines.close(g)
  return assert(result, err)
end

T.test("engine URLs: 4242 -> 4747, a proxy's origin, the tenant as wss://, engine_url wins", function()
  t.eq(engines.source_url { url = "https://qs.corp:4242" }, "wss://qs.corp:4747")
  t.eq(engines.source_url { url = "https://qs.corp/" }, "wss://qs.corp")
  t.eq(engines.source_url { url = "https://qs.corp:4242", engine_url = "https://eng.corp:4747/" },
    "wss://eng.corp:4747")
  t.eq(engines.target_url { url = "https://acme.eu.qlikcloud.com" }, "wss://acme.eu.qlikcloud.com")
  t.eq(engines.target_url { url = "http://127.0.0.1:9" }, "ws://127.0.0.1:9")
end)

T.test("cells: dimensions as text, measures as numbers within the tolerance, rows counted", function()
  local function cube(rows) return { dims = { "Customer" }, measures = { "Sum(Amount)" }, rows = rows } end
  local function row(dim, n) return { { qText = dim, qNum = "NaN" }, { qText = tostring(n), qNum = n } } end
  local a = cube { row("A", 1000), row("B", 2.5) }
  local diffs, n, all = compare.cells(a, cube { row("A", 1000 * (1 + 1e-9)), row("B", 2.5) })
  local _
  t.eq(#diffs, 0, "a billionth is rounding")
  t.eq(n, 4)
  t.eq(all, 0)
  diffs, _, all = compare.cells(a, cube { row("A", 1001), row("b", 2.5) })
  t.eq(all, 2)
  t.eq(diffs[1], { where = "row 1 (A), Sum(Amount)", source = "1000", target = "1001" })
  t.eq(diffs[2].where, "row 2 (B), Customer")
  diffs, _, all = compare.cells(a, cube { row("A", 1000) })
  t.eq(diffs[1], { where = "rows", source = 2, target = 1 })
  t.eq(all, 1)
  diffs = compare.cells(a, cube { row("A", 1000), row("B", 2.5) }, 0)
  t.eq(#diffs, 0, "max 0 lists none")
end)

T.test("an app and its copy with the same data are equal: tables, fields, every chart's cells", function()
  local r = validate(APP, C_SAME)
  t.eq(r.outcome, "equal", compare.summary(r))
  t.eq(r.found, 0)
  t.eq(r.counts.tables, 2)
  t.eq(r.counts.rows, 3040)
  t.eq(r.counts.fields, 5)
  t.truthy(r.counts.charts >= 3, "the public sheet's charts: " .. r.counts.charts)
  -- the records table (one row per order) is read page after page
  t.truthy(r.counts.cells > 6000, "cells compared: " .. r.counts.cells)
end)

T.test("a reload that loaded other values: the chart named, its first differing cells", function()
  local r = validate(APP, C_CHANGED)
  t.eq(r.outcome, "differs")
  t.eq(r.no_data, nil)
  local first = r.differences[1]
  t.truthy(first, "differences listed")
  -- tables and row counts are the same; the values are not
  for _, d in ipairs(r.differences) do
    t.truthy(d.check == "chart" or d.check == "field", d.check .. " " .. tostring(d.object))
  end
  local chart
  for _, d in ipairs(r.differences) do if d.check == "chart" then chart = chart or d end end
  t.truthy(chart, json.encode(r.differences))
  t.match(chart.object, "^%a+ '[^']+' %([%w]+%) on sheet 'Overview'$")
  t.match(chart.where, "^row %d+ %([^)]*%), ")
  t.truthy(chart.source ~= chart.target)
  t.truthy(#r.differences <= 20 and r.found >= #r.differences)
  -- the summary names the chart once, then its cells, and counts the rest
  local summary = compare.summary(r, 20)
  t.match(summary, "chart %a+ '[^']+' %([%w]+%) on sheet 'Overview': row 1 %(")
  local _, names = summary:gsub("on sheet 'Overview'", "")
  t.truthy(names < 20, summary)
  t.match(compare.summary(r), "; and %d+ more$")
end)

T.test("no data: on both sides reported as such, on one side a difference", function()
  local r = validate(EMPTY, C_EMPTY)
  t.eq(r.outcome, "no data")
  t.eq(r.no_data, "both")
  t.eq(#r.differences, 0)
  r = validate(APP, C_NODATA)
  t.eq(r.outcome, "differs")
  t.eq(r.no_data, "target")
  t.eq(r.differences[1], { check = "data", object = "app", where = "rows in all tables", source = 3040, target = 0 })
end)

T.test("an object on one side only is a difference, with its id and type", function()
  local r = validate(APP, C_EXTRA)
  t.eq(r.outcome, "differs")
  local found
  for _, d in ipairs(r.differences) do
    if d.check == "object" and d.object == "sheet sheet-new" then found = d end
  end
  t.truthy(found, json.encode(r.differences))
  t.eq(found.where, "only in Qlik Cloud")
end)

T.test("sessions per host are bounded whatever the concurrency, and all close", function()
  local c = ctx()
  local host = engines.target_url(c.job.target):match("^wss?://([^/]+)")
  local s = sched.new { concurrency = 8 }
  local peak, opened = 0, 0
  for _ = 1, 6 do
    s:spawn(function()
      local session, doc = assert(engines.open(c, "target", C_SAME, 2))
      opened = opened + 1
      peak = math.max(peak, engines.open_now(host))
      assert(doc:tables_and_keys())
      qmig.sleep(0.05)
      engines.close(session)
    end)
  end
  s:run()
  t.eq(opened, 6)
  t.eq(peak, 2)
  t.eq(engines.open_now(host), 0)
end)

-- The XLSX as a spreadsheet program reads it: the zip, the workbook's
-- sheets, shared strings and cells (tests/lua/lib/read_xlsx.py).
local function read_xlsx(path)
  local p = assert(io.popen("python3 tests/lua/lib/read_xlsx.py " .. path))
  local out = p:read("a")
  p:close()
  return assert(json.decode(out), out)
end
T.read_xlsx = read_xlsx

T.test("the workbook: a Summary row per app, a Differences row per difference, read back", function()
  local dir = fs.realpath(t.tmpdir())
  local path = dir .. "/validations/apps/3.xlsx"
  local apps = {
    { source_id = "s1", name = "Sales <&> \"Ünïcødé\"", target_id = "t1", outcome = "equal", tables = 2, rows = 3040,
      target_rows = 3040, fields = 5, charts = 4, cells = 6100, differences = 0, details = "equal",
      first_differences = {} },
    { source_id = "s2", name = "AP\0bad \255 bytes", target_id = "t2", outcome = "differs", tables = 1, rows = 10,
      target_rows = 10, fields = 1, charts = 1, cells = 4, differences = 2, details = "chart ...",
      first_differences = { { check = "chart", object = "barchart 'AP' (x) on sheet 'S'", where = "row 1 (A), Sum(X)",
        source = "1", target = "2" }, { check = "table", object = "T", where = "rows", source = 10, target = 11 } } },
  }
  assert(workbook.write(path, apps))
  t.eq(fs.stat(path).mode & 511, 384, "the workbook is 0600")
  t.truthy(not fs.exists(path .. ".tmp"))
  local book = read_xlsx(path)
  t.eq(book.order, { "Summary", "Differences" })
  local summary, diffs = book.sheets.Summary, book.sheets.Differences
  t.eq(#summary, 3)
  t.eq(summary[1][1], "Source app id")
  t.eq(summary[2][2], "Sales <&> \"Ünïcødé\"")
  t.eq(summary[2][6], 3040)
  t.eq(summary[3][2], "APbad ? bytes", "no zero byte, invalid UTF-8 replaced")
  t.eq(summary[3][4], "differs")
  t.eq(#diffs, 3)
  t.eq(diffs[2], { "s2", "APbad ? bytes", "chart",
    "barchart 'AP' (x) on sheet 'S'", "row 1 (A), Sum(X)", "1", "2" })
  t.eq(diffs[3][6], 10)
  -- a folder that cannot be made: nil, msg, code and no file
  local bad, err = workbook.write("/proc/nope/x.xlsx", apps)
  t.eq(bad, nil)
  t.truthy(err)
end)

return T
