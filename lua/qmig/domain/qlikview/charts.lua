-- A converted document's charts against the QlikView document's own: each
-- master visualization qvapps.import wrote is read back from the Cloud app
-- (the visualization, then its master dimensions and measures), opened as
-- a session object with those dimensions and measures inline, and its rows
-- (qmig.domain.validation.read's paging) compared with the chart's export from
-- QlikView (qmig.domain.qlikview.exports) cell by cell by compare.cells: dimension
-- values as text, expression values as numbers within compare's tolerance.
--
-- An export holds values as QlikView displays them, so a Cloud value is
-- first rounded to the decimals its exported value shows; rows are
-- compared in the order of their dimension values, since a chart's sort
-- order is the chart's and not the data's.  A chart with no export is "not
-- validated: no export"; an export that cannot be read raises
-- "file:line: why".
--
--   charts.compare(doc, conv, folder [, opts]) -> result in compare.app's
--   shape ({outcome, counts, differences, found, details, no_data}) | nil, msg, code
local compare = require "qmig.domain.validation.compare"
local exports = require "qmig.domain.qlikview.exports"
local json = require "qmig.json"
local read = require "qmig.domain.validation.read"

local M = {}

-- The separators the document's script sets (QlikView's defaults otherwise).
local function separators(script)
  local function set(name, default)
    local v = (script or ""):match("[Ss][Ee][Tt]%s+" .. name .. "%s*=%s*'([^']*)'")
    return v or default
  end
  return set("ThousandSep", ","), set("DecimalSep", ".")
end

-- A displayed number -> number, decimals shown | nil.
local function displayed_number(text, thousand, decimal)
  local s = text:gsub("^%s+", ""):gsub("%s+$", "")
  if thousand ~= "" then s = s:gsub(thousand:gsub("%p", "%%%0"), "") end
  if decimal ~= "." then s = s:gsub(decimal:gsub("%p", "%%%0"), ".") end
  if not s:match("^[-+]?%d*%.?%d+$") and not s:match("^[-+]?%d+%.$") then return nil end
  local frac = s:match("%.(%d*)$") or ""
  return tonumber(s), #frac
end

-- A master item's properties by id, or nil (the engine's null handle).
local function library(doc, method, id)
  local res, err, code = doc:call(method, { qId = id })
  if not res then return nil, err, code end
  local h = type(res.qReturn) == "table" and res.qReturn.qHandle or nil
  if type(h) ~= "number" then return false end
  local props, perr, pcode = doc.session:call(h, "GetProperties", json.array())
  if not props then return nil, perr, pcode end
  return props.qProp or {}
end

-- The hypercube of visualization v as the Cloud app holds it:
-- {def, dims = {titles}, measures = {labels}} | false, why | nil, msg, code
local function cube_def(doc, v)
  local obj, err, code = doc:object(v.id)
  if not obj then
    if code == "not_found" then return false, "not in the Cloud app" end
    return nil, err, code
  end
  local props, perr, pcode = obj:properties()
  if not props then return nil, perr, pcode end
  local hc = props.qHyperCubeDef or {}
  local def = { qDimensions = json.array(), qMeasures = json.array(), qMode = "S",
    qInitialDataFetch = json.array(), qSuppressZero = false, qSuppressMissing = true }
  local out = { def = def, dims = {}, measures = {} }
  for _, d in ipairs(hc.qDimensions or {}) do
    local p, derr, dcode = library(doc, "GetDimension", d.qLibraryId)
    if p == nil then return nil, derr, dcode end
    if not p then return false, "master dimension " .. tostring(d.qLibraryId) .. " is not in the Cloud app" end
    local qdim = p.qDim or {}
    def.qDimensions[#def.qDimensions + 1] = { qDef = { qGrouping = qdim.qGrouping or "N",
      qFieldDefs = qdim.qFieldDefs, qFieldLabels = qdim.qFieldLabels } }
    out.dims[#out.dims + 1] = tostring(qdim.title or (p.qMetaDef or {}).title or d.qLibraryId)
  end
  for _, m in ipairs(hc.qMeasures or {}) do
    local p, merr, mcode = library(doc, "GetMeasure", m.qLibraryId)
    if p == nil then return nil, merr, mcode end
    if not p then return false, "master measure " .. tostring(m.qLibraryId) .. " is not in the Cloud app" end
    local qm = p.qMeasure or {}
    def.qMeasures[#def.qMeasures + 1] = { qDef = { qDef = qm.qDef, qLabel = qm.qLabel } }
    out.measures[#out.measures + 1] = tostring(qm.qLabel or (p.qMetaDef or {}).title or m.qLibraryId)
  end
  return out
end

local function target_rows(doc, v, def)
  local obj, err, code = doc:session_object { qInfo = { qType = "qmig-validation" }, qHyperCubeDef = def }
  if not obj then return nil, err, code end
  local c, cerr, ccode = read.cube(obj, v.id)
  doc:call("DestroySessionObject", { qId = obj.id })
  if not c then return nil, cerr, ccode end
  if c.error then return nil, "the engine could not calculate it (error " .. tostring(c.error) .. ")" end
  return c.rows or {}
end

local function by_dimensions(ndims)
  return function(a, b)
    for i = 1, ndims do
      local x, y = tostring(a[i].qText), tostring(b[i].qText)
      if x ~= y then return x < y end
    end
    return false
  end
end

-- One chart: differences, cells compared, differing, rows exported |
-- false, why (no export) | nil, msg, code.
local function chart(doc, v, conv, folder, seps, max_cells)
  local path = exports.find(folder, conv.doc, v.from)
  if not path then return false, "no export" end
  local export, xerr = exports.read(path)
  if not export then error(xerr, 0) end
  local name = string.format("%s '%s' (%s)", tostring(v.type), tostring(v.title), tostring(v.from))
  local cube, cerr, ccode = cube_def(doc, v)
  if cube == nil then return nil, cerr, ccode end
  if not cube then
    return { { check = "chart", object = name, where = cerr, source = path, target = "" } }, 0, 1, #export.rows
  end
  local ndims, width = #cube.dims, #cube.dims + #cube.measures
  if #export.header ~= width then
    return { { check = "chart", object = name, where = "columns",
      source = table.concat(export.header, ", "), target = table.concat(cube.dims, ", ")
        .. (ndims > 0 and #cube.measures > 0 and ", " or "") .. table.concat(cube.measures, ", ") } }, 0, 1,
      #export.rows
  end
  local rows, rerr, rcode = target_rows(doc, v, cube.def)
  if not rows then return nil, rerr, rcode end
  local thousand, decimal = seps[1], seps[2]
  local src = {}
  for r, fields in ipairs(export.rows) do
    local row = {}
    for c, text in ipairs(fields) do
      local n, decimals = nil, nil
      if c > ndims then n, decimals = displayed_number(text, thousand, decimal) end
      row[c] = { qText = text, qNum = n or "NaN", decimals = decimals }
    end
    src[r] = row
  end
  local order = by_dimensions(ndims)
  table.sort(src, order)
  table.sort(rows, order)
  -- a Cloud value as the export shows it: to the decimals of its counterpart
  for r = 1, math.min(#src, #rows) do
    for c = ndims + 1, width do
      local s, t = src[r][c], rows[r][c]
      if s and t and s.decimals and type(t.qNum) == "number" then
        t = { qText = t.qText, qNum = tonumber(string.format("%." .. s.decimals .. "f", t.qNum)) }
        rows[r][c] = t
      end
    end
  end
  local diffs, n, differing = compare.cells({ dims = cube.dims, measures = cube.measures, rows = src },
    { rows = rows }, max_cells)
  for _, d in ipairs(diffs) do d.check, d.object = "chart", name end
  return diffs, n, differing, #src
end

function M.compare(doc, conv, folder, opts)
  opts = opts or {}
  local max = opts.max_differences or 20
  local model, merr, mcode = read.model(doc)
  if not model then return nil, merr, mcode end
  local result = { differences = json.array(), found = 0, counts = { tables = #model.table_names, rows = 0,
    target_rows = model.rows, fields = #model.field_names, charts = 0, cells = 0 } }
  local seps = { separators(conv.script) }
  local missing = {}
  for _, v in ipairs(conv.visualizations or {}) do
    local diffs, n, differing, nrows = chart(doc, v, conv, folder, seps, opts.max_cells)
    if diffs == nil then return nil, n, differing end
    if diffs == false then
      missing[#missing + 1] = v.from
    else
      result.counts.charts = result.counts.charts + 1
      result.counts.cells = result.counts.cells + n
      result.counts.rows = result.counts.rows + (nrows or 0)
      for _, d in ipairs(diffs) do
        if #result.differences < max then result.differences[#result.differences + 1] = d end
      end
      result.found = result.found + differing
    end
  end
  local not_validated = #missing > 0
    and string.format("%d chart(s) not validated: no export (%s)", #missing, table.concat(missing, ", ")) or nil
  local known = {}
  for _, v in ipairs(conv.visualizations or {}) do known[v.from] = true end
  for _, n in ipairs(conv.not_carried or {}) do if n.object then known[n.object] = true end end
  local stray = exports.unmatched(folder, conv.doc, known)
  if #stray > 0 then
    local note = string.format("%d export(s) named after no chart of the document, not compared (name each "
      .. "file after the chart's object id): %s", #stray, table.concat(stray, ", "))
    not_validated = not_validated and (not_validated .. "; " .. note) or note
  end
  if result.counts.charts == 0 then
    result.outcome, result.no_data = "no data", "export"
    result.details = #missing > 0 and ("not validated: no export for any of its " .. #missing .. " chart(s) ("
      .. table.concat(missing, ", ") .. ")") or "no master visualization to validate"
  elseif result.found > 0 then
    result.outcome = "differs"
    result.details = compare.summary(result) .. (not_validated and ("; " .. not_validated) or "")
  else
    result.outcome = "equal"
    result.details = string.format("equal: %d chart(s), %d cell(s) as the QlikView exports show them%s",
      result.counts.charts, result.counts.cells, not_validated and ("; " .. not_validated) or "")
  end
  return result
end

return M
