-- qmig.domain.validation.read: what validation reads of one app through an open
-- engine document (qmig.clients.qix): its data model, fields, public sheets and
-- their charts, master items and variables, and a chart's hypercube.
-- Shapes: the engine's GetTablesAndKeys, GetFieldDescription, GetLayout and
-- GetHyperCubeData replies, as tests/qliksim/engine_data.py answers them.
local json = require "qmig.json"

local M = {}

-- A list object's items (@qlik/api's list mixins: a session object, its
-- layout, then it goes).
local function list(doc, props, key)
  local obj, err, code = doc:session_object(props)
  if not obj then return nil, err, code end
  local layout, lerr, lcode = obj:layout()
  doc:call("DestroySessionObject", { qId = obj.id })
  if not layout then return nil, lerr, lcode end
  return (layout[key] or {}).qItems or {}
end

-- read.model(doc) -> {tables = {name = rows}, table_names = {...},
--   rows = total, fields = {name = cardinality}, field_names = {...}}
function M.model(doc)
  local qtr, err, code = doc:tables_and_keys()
  if not qtr then return nil, err, code end
  local out = { tables = {}, table_names = {}, rows = 0, fields = {}, field_names = {} }
  for _, t in ipairs(qtr) do
    if not t.qIsSynthetic then
      local rows = tonumber(t.qNoOfRows) or 0
      out.tables[t.qName] = rows
      out.table_names[#out.table_names + 1] = t.qName
      out.rows = out.rows + rows
    end
  end
  local fields, ferr, fcode = doc:field_list()
  if not fields then return nil, ferr, fcode end
  for _, f in ipairs(fields) do
    if not f.qIsSystem and not f.qIsSemantic then
      out.fields[f.qName] = tonumber(f.qCardinal) or 0
      out.field_names[#out.field_names + 1] = f.qName
    end
  end
  table.sort(out.table_names)
  table.sort(out.field_names)
  return out
end

-- read.charts(doc) -> {{id, type, sheet = title, sheet_id}} in sheet rank
-- and cell order, public sheets only (the engine lists the sheets the user
-- may see; a private one of another user is not public).
function M.charts(doc)
  local sheets, err, code = doc:sheets()
  if not sheets then return nil, err, code end
  table.sort(sheets, function(a, b)
    local ra, rb = tonumber((a.qData or {}).rank) or 0, tonumber((b.qData or {}).rank) or 0
    if ra ~= rb then return ra < rb end
    return tostring(a.qInfo.qId) < tostring(b.qInfo.qId)
  end)
  local out = {}
  for _, s in ipairs(sheets) do
    local meta = s.qMeta or {}
    if meta.published ~= false or meta.approved then
      local title = (s.qData or {}).title or meta.title or s.qInfo.qId
      for _, cell in ipairs((s.qData or {}).cells or {}) do
        if type(cell.name) == "string" then
          out[#out + 1] = { id = cell.name, type = cell.type, sheet = title, sheet_id = s.qInfo.qId }
        end
      end
    end
  end
  return out
end

-- read.counts(doc) -> {dimensions =, measures =, masterobjects =, variables =}
function M.counts(doc)
  local defs = {
    dimensions = { { qInfo = { qType = "DimensionList" }, qDimensionListDef = { qType = "dimension" } },
      "qDimensionList" },
    measures = { { qInfo = { qType = "MeasureList" }, qMeasureListDef = { qType = "measure" } }, "qMeasureList" },
    masterobjects = { { qInfo = { qType = "MasterObjectList" }, qAppObjectListDef = { qType = "masterobject",
      qData = { name = "/qMetaDef/title" } } }, "qAppObjectList" },
    variables = { { qInfo = { qType = "VariableList" }, qVariableListDef = { qType = "variable",
      qShowReserved = false, qShowConfig = false } }, "qVariableList" },
  }
  local out = {}
  for _, name in ipairs { "dimensions", "measures", "masterobjects", "variables" } do
    local items, err, code = list(doc, defs[name][1], defs[name][2])
    if not items then return nil, err, code end
    local n = 0
    for _, it in ipairs(items) do
      if not it.qIsReserved and not it.qIsConfig then n = n + 1 end
    end
    out[name] = n
  end
  return out
end

-- read.infos(doc) -> {id = type} of every object the app stores (GetAllInfos)
function M.infos(doc)
  local res, err, code = doc:call("GetAllInfos", json.array())
  if not res then return nil, err, code end
  local out = {}
  for _, i in ipairs(res.qInfos or {}) do out[i.qId] = i.qType end
  return out
end

local function pivot_rows(obj, size)
  -- a pivot page: the left dimension cells and the value points across
  local rows, top = {}, 0
  local width = math.max(1, size.qcx)
  local height = math.max(1, 10000 // width)
  while top < size.qcy do
    local pages, err, code = obj:hypercube_pivot_data({ { qLeft = 0, qTop = top, qWidth = width,
      qHeight = math.min(height, size.qcy - top) } })
    if not pages then return nil, err, code end
    local page = pages[1] or {}
    local data = page.qData or {}
    if #data == 0 then break end
    for i, points in ipairs(data) do
      local left = (page.qLeft or {})[i] or {}
      local row = { { qText = left.qText, qNum = "NaN" } }
      for _, p in ipairs(points) do row[#row + 1] = { qText = p.qText, qNum = p.qNum } end
      rows[#rows + 1] = row
    end
    top = top + #data
  end
  return rows
end

-- read.chart(doc, id) -> {title, type, dims = {titles}, measures = {titles},
--   mode, size, error, rows} | nil, "... not found", "not_found"
function M.chart(doc, id)
  local obj, err, code = doc:object(id)
  if not obj then return nil, err, code end
  return M.cube(obj, id)
end

-- read.cube(obj, id) -> the same of an open object (a session object of
-- qvapps.validate's, say): its layout, then every row of its hypercube.
function M.cube(obj, id)
  local layout, lerr, lcode = obj:layout()
  if not layout then return nil, lerr, lcode end
  local meta = layout.qMeta or {}
  local c = { id = id, type = obj.type or (layout.qInfo or {}).qType,
    title = (type(layout.title) == "string" and layout.title ~= "" and layout.title) or meta.title or id }
  local hc = layout.qHyperCube
  if type(hc) ~= "table" then return c end  -- text, images, buttons: no data to compare
  c.dims, c.measures = {}, {}
  for _, d in ipairs(hc.qDimensionInfo or {}) do c.dims[#c.dims + 1] = tostring(d.qFallbackTitle) end
  for _, m in ipairs(hc.qMeasureInfo or {}) do c.measures[#c.measures + 1] = tostring(m.qFallbackTitle) end
  c.mode, c.size = hc.qMode or "S", hc.qSize or { qcx = 0, qcy = 0 }
  if type(hc.qError) == "table" then c.error = hc.qError.qErrorCode end
  if c.error then return c end
  local rows, rerr, rcode
  if c.mode == "P" then
    rows, rerr, rcode = pivot_rows(obj, c.size)
  else
    -- straight, stacked and tree cubes all answer GetHyperCubeData on
    -- their flat view (unverified for K and T on a real engine)
    rows, rerr, rcode = obj:hypercube_rows { size = c.size }
  end
  if not rows then return nil, rerr, rcode end
  c.rows = rows
  return c
end

return M
