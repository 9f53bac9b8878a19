-- Writes a conversion into a Cloud app over the engine API (qmig.clients.qix):
-- Qlik Cloud's REST API has no call for variables or master items, only
-- the engine does (CreateVariableEx, CreateDimension, CreateMeasure,
-- CreateObject), and SetScript + DoSave keep them with the app.
--
-- Every master item has the id the conversion gave it, so writing the same
-- conversion again finds what an earlier (or interrupted) attempt made:
-- the engine answers 11 "already exists", counted as existing, never a
-- second copy.  Variables are unique by name (the same answer).
local breaker = require "qmig.rate.breaker"
local qix = require "qmig.clients.qix"

local M = {}

local EXISTS = 11   -- LocalizedErrorCode: the object (or variable name) already exists

-- The Cloud engine of the job's target: wss://<tenant>/app/<id>, with the
-- credentials of the REST client (API key, or its OAuth token).
function M.open(ctx, app_id)
  local t = ctx.job.target
  local url = t.url:gsub("^[Hh][Tt][Tt][Pp]([Ss]?)://", "ws%1://")
  local auth = ctx.target.oauth and ctx.target.oauth:header() or ("Bearer " .. tostring(t.api_key))
  -- (the target's breaker is open: the run stops without a session more)
  if ctx.target.breaker and ctx.target.breaker.open then error(ctx.target.breaker:error(), 0) end
  local s, err, code = qix.open { url = url, app_id = app_id, ca = t.ca, insecure = t.insecure,
    headers = { Authorization = auth } }
  -- (a session opened is not an answer: an engine that drops every call
  -- still greets; only a call answered closes the breaker's count)
  if not s then breaker.engine_call(ctx.target, "opening an engine session for app " .. app_id, nil, err, code) end
  local ok, doc = pcall(breaker.engine_call, ctx.target, "opening app " .. app_id .. " (OpenDoc)", s:open_doc(app_id))
  if not ok then
    s:close()
    error(doc, 0)
  end
  -- every failure of write names the app, and counts on the target's engine breaker
  doc.qmig_client, doc.qmig_app = ctx.target, app_id
  return s, doc
end

-- A call's result, else an error saying what was being done on which app
-- with the engine's message (never a Lua position: r21's user saw
-- "engine.lua:124:" from an assert), classified by qmig.rate.breaker's
-- engine_call: a transport failure is retried, many in a row stop the run.
local function check(doc, what, ...)
  return breaker.engine_call(doc.qmig_client, what .. " in app " .. tostring(doc.qmig_app or "?"), ...)
end

local function created(doc, counts, kind, ok, err, code, e)
  if ok then
    counts[kind] = (counts[kind] or 0) + 1
  elseif code == "qix" and type(e) == "table" and e.code == EXISTS then
    counts.existing = (counts.existing or 0) + 1
  else
    check(doc, "creating a " .. kind, nil, err, code or "qix")
  end
end

-- A master item with the id of one already there: the same, counted as
-- existing; else its properties set to the conversion's (SetProperties on
-- the fixed id: no second item, and the visualizations that use it follow).
local function changed(doc, counts, method, props, differs)
  local what = method .. " " .. props.qInfo.qId
  local res = check(doc, what, doc:call(method, { qId = props.qInfo.qId }))
  local h = type(res.qReturn) == "table" and res.qReturn.qHandle
  if type(h) ~= "number" then check(doc, what, nil, "not found", "qix") end
  local cur = check(doc, what .. " (GetProperties)", doc.session:call(h, "GetProperties"))
  if not differs(cur.qProp or {}) then
    counts.existing = (counts.existing or 0) + 1
    return
  end
  check(doc, "SetProperties " .. props.qInfo.qId, doc.session:call(h, "SetProperties", { qProp = props }))
  counts.changed = (counts.changed or 0) + 1
end

local function array(list)
  return setmetatable(list, require("qmig.json").array_mt)
end

-- Properties of the conversion's master items (Qlik Sense's shapes:
-- GenericDimensionProperties qDim, GenericMeasureProperties qMeasure, a
-- master visualization is a generic object of type masterobject).
function M.dimension(d)
  local labels = {}
  for i, f in ipairs(d.fields) do labels[i] = f end
  return { qInfo = { qId = d.id, qType = "dimension" },
    qDim = { qGrouping = d.grouping, qFieldDefs = array(d.fields), qFieldLabels = array(labels), title = d.title },
    qMetaDef = { title = d.title, description = "From QlikView (" .. d.from .. ")", tags = array {} } }
end

function M.measure(m)
  return { qInfo = { qId = m.id, qType = "measure" },
    qMeasure = { qLabel = m.title, qDef = m.expression, qGrouping = "N", qExpressions = array {} },
    qMetaDef = { title = m.title, description = "From QlikView (" .. m.from .. ")", tags = array {} } }
end

function M.visualization(v)
  local dims, measures = {}, {}
  for i, id in ipairs(v.dimensions) do dims[i] = { qLibraryId = id } end
  for i, id in ipairs(v.measures) do measures[i] = { qLibraryId = id } end
  return { qInfo = { qId = v.id, qType = "masterobject" }, visualization = v.type, title = v.title,
    qMetaDef = { title = v.title, description = "From QlikView chart " .. v.from, tags = array {} },
    qHyperCubeDef = { qDimensions = array(dims), qMeasures = array(measures),
      qMode = v.type == "pivot-table" and "P" or "S" } }
end

-- write(doc, conv) -> counts {script = bool, variable, dimension, measure,
-- visualization, existing, changed (master measures whose expression or
-- label changed)}
function M.write(doc, conv)
  local counts = { script = false }
  local current = check(doc, "reading the script (GetScript)", doc:script())
  if current ~= conv.script then
    check(doc, "setting the script (SetScript)", doc:set_script(conv.script))
    counts.script = true
  end
  for _, v in ipairs(conv.variables) do
    created(doc, counts, "variable", doc:create_variable { qInfo = { qType = "variable" }, qName = v.name,
      qDefinition = v.definition, qComment = v.comment, qIncludeInBookmark = false })
  end
  for _, d in ipairs(conv.dimensions) do created(doc, counts, "dimension", doc:create_dimension(M.dimension(d))) end
  for _, m in ipairs(conv.measures) do
    local props = M.measure(m)
    local obj, err, code, e = doc:create_measure(props)
    if not obj and code == "qix" and type(e) == "table" and e.code == EXISTS then
      changed(doc, counts, "GetMeasure", props, function(cur)
        local a, b = cur.qMeasure or {}, props.qMeasure
        return a.qDef ~= b.qDef or a.qLabel ~= b.qLabel or (cur.qMetaDef or {}).title ~= props.qMetaDef.title
      end)
    else
      created(doc, counts, "measure", obj, err, code, e)
    end
  end
  for _, v in ipairs(conv.visualizations) do
    created(doc, counts, "visualization", doc:create_object(M.visualization(v)))
  end
  check(doc, "saving (DoSave)", doc:save())
  return counts
end

return M
