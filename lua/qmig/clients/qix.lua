-- qmig.clients.qix: the Qlik engine API (QIX, JSON-RPC 2.0 over a WebSocket).
--
--   local s = assert(qix.open { url = "wss://host:4747", app_id = id, cert =, key =, ca =,
--                               headers = { ["X-Qlik-User"] = "UserDirectory=INTERNAL; UserId=sa_engine" } })
--   local doc = assert(s:open_doc())
--   for _, sheet in ipairs(assert(doc:sheets())) do ... end
--   local chart = assert(doc:object(id)); local layout = assert(chart:layout())
--   local rows = assert(chart:hypercube_rows())      -- every page, under the 10,000-cell limit
--   s:close()
--
-- Every call returns its result, or nil, message, code (code "qix" for an
-- engine error, whose {code=, message=, parameter=} is the 4th value; the
-- WebSocket's codes -- timeout, tls, auth, closed, too_large, ... -- for
-- the connection).  Calls made in a scheduler task yield on the socket
-- like HTTP requests do.  A session serves one call at a time: tasks
-- sharing one take turns.  What the engine answers: the simulator
-- tests/qliksim/engine.py and tests/lua/test_qix.lua.
local qmig = require "qmig"
local json = require "qmig.json"
local ws = require "qmig.ws"

local M = {}

M.MAX_CELLS = 10000  -- GetHyperCubeData: cells over all pages of one call (else error 7009)

local Session, Doc, Object = {}, {}, {}
Session.__index, Doc.__index, Object.__index = Session, Doc, Object

local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Session states the engine may announce (OnConnected); only these two let it work.
local GOOD_STATES = { SESSION_CREATED = true, SESSION_ATTACHED = true }

-- qix.open{url = "wss://host[:port]" (the engine's base URL), app_id =,
--   headers =, cert =, key =, key_password =, ca =, insecure =,
--   identity = (a separate engine session), timeout = 60, connect_timeout = 15,
--   max_message = 64 MiB} -> session | nil, msg, code
function M.open(opts)
  assert(type(opts) == "table" and opts.url and opts.app_id, "qix.open needs url and app_id")
  local url = opts.url:gsub("/+$", "") .. "/app/" .. escape(opts.app_id)
  if opts.identity then url = url .. "/identity/" .. escape(opts.identity) end
  local conn, err, code = ws.connect {
    url = url, headers = opts.headers, cert = opts.cert, key = opts.key, key_password = opts.key_password,
    ca = opts.ca, insecure = opts.insecure, connect_timeout = opts.connect_timeout,
    timeout = opts.timeout or 60, max_message = opts.max_message or 64 * 1024 * 1024,
  }
  if not conn then return nil, err, code end
  local self = setmetatable({ ws = conn, url = url, app_id = opts.app_id, next_id = 0,
    notifications = {}, timeout = opts.timeout or 60 }, Session)
  -- the engine speaks first: OnConnected, before any request (engine 12.20+)
  local msg, merr, mcode = self:_next(nil)
  if not msg then
    conn:close()
    return nil, merr, mcode
  end
  if msg.method == "OnConnected" then
    local state = type(msg.params) == "table" and msg.params.qSessionState
    self.session_state = state
    if not GOOD_STATES[state] then
      conn:close()
      return nil, url .. ": the engine refused the session (" .. tostring(state) .. ")", "session"
    end
  end
  return self
end

-- Reads messages until the reply to `id` (nil: the first message of any
-- kind); notifications on the way are kept (the last 100).
function Session:_next(id)
  while true do
    local data, err, code = self.ws:receive(self.timeout)
    if not data then return nil, err, code end
    local msg, jerr = json.decode(data)
    if type(msg) ~= "table" then
      return nil, self.url .. ": not JSON from the engine: " .. tostring(jerr), "protocol"
    end
    if id == nil then return msg end
    if msg.id == id then return msg end
    if msg.id == nil and msg.method then
      local n = self.notifications
      n[#n + 1] = msg
      if #n > 100 then table.remove(n, 1) end
    end
  end
end

-- session:call(handle, method, params) -> result | nil, msg, "qix", error
-- params: an array (by position) or a table (by name); nil sends [].
function Session:call(handle, method, params)
  if self.closed then return nil, self.url .. ": the session is closed", "closed" end
  while self.busy do qmig.sleep(0.002) end  -- another task's call is on the wire
  self.busy = true
  self.next_id = self.next_id + 1
  local id = self.next_id
  local ok, err, code = self.ws:send(json.encode { jsonrpc = "2.0", id = id, method = method, handle = handle,
    params = params or json.array() })
  local msg
  if ok then msg, err, code = self:_next(id) end
  self.busy = false
  if not msg then return nil, err, code end
  if msg.error ~= nil then
    local e = type(msg.error) == "table" and msg.error or { message = tostring(msg.error) }
    return nil, string.format("%s: %s failed: %s (%s%s)", self.url, method, tostring(e.message), tostring(e.code),
      (e.parameter and e.parameter ~= "") and ", " .. tostring(e.parameter) or ""), "qix", e
  end
  return msg.result or {}
end

-- The handle of a qReturn (GetObject on a missing id gives qHandle null).
local function returned(result, what)
  local r = result.qReturn
  if type(r) ~= "table" or type(r.qHandle) ~= "number" then
    return nil, what .. " not found", "not_found"
  end
  return r
end

-- session:open_doc([app_id [, no_data]]) -> doc | nil, msg, code
function Session:open_doc(app_id, no_data)
  local res, err, code, e = self:call(-1, "OpenDoc", { qDocName = app_id or self.app_id, qNoData = no_data or false })
  if not res then return nil, err, code, e end
  local r, rerr, rcode = returned(res, "app " .. tostring(app_id or self.app_id))
  if not r then return nil, rerr, rcode end
  return setmetatable({ session = self, handle = r.qHandle, id = r.qGenericId or app_id or self.app_id }, Doc)
end

-- session:close() -> true: the closing handshake; handles die with the socket.
function Session:close()
  if self.closed then return true end
  self.closed = true
  self.ws:close(1000, "done", 5)
  return true
end
Session.__close = Session.close

function Session:version()
  local res, err, code = self:call(-1, "EngineVersion")
  if not res then return nil, err, code end
  return res.qVersion and res.qVersion.qComponentVersion
end

-- {====== Doc
function Doc:call(method, params) return self.session:call(self.handle, method, params) end

local function object(doc, res, what)
  local r, err, code = returned(res, what)
  if not r then return nil, err, code end
  return setmetatable({ doc = doc, session = doc.session, handle = r.qHandle, id = r.qGenericId,
    type = r.qGenericType }, Object)
end

-- doc:tables_and_keys() -> qtr, qk (tables with their fields, and keys)
function Doc:tables_and_keys()
  local res, err, code, e = self:call("GetTablesAndKeys", { qWindowSize = { qcx = 0, qcy = 0 },
    qNullSize = { qcx = 0, qcy = 0 }, qCellHeight = 0, qSyntheticMode = false, qIncludeSysVars = false })
  if not res then return nil, err, code, e end
  return res.qtr or {}, res.qk or {}
end

-- doc:session_object(props) -> object (CreateSessionObject)
function Doc:session_object(props)
  local res, err, code, e = self:call("CreateSessionObject", { props })
  if not res then return nil, err, code, e end
  return object(self, res, "session object")
end

-- A list object's items (@qlik/api's list mixins do the same: a session
-- object, then its layout).
local function list_items(doc, props, key)
  local obj, err, code, e = doc:session_object(props)
  if not obj then return nil, err, code, e end
  local layout, lerr, lcode, le = obj:layout()
  doc:call("DestroySessionObject", { qId = obj.id })
  if not layout then return nil, lerr, lcode, le end
  return (layout[key] or {}).qItems or {}
end

-- doc:field_list() -> NxFieldDescription[] ({qName, qCardinal, qTags, ...})
function Doc:field_list()
  return list_items(self, { qInfo = { qType = "FieldList" }, qFieldListDef = { qShowSystem = false,
    qShowHidden = false, qShowSrcTables = true, qShowSemantic = true, qShowDerivedFields = true } }, "qFieldList")
end

-- doc:sheets() -> items {qInfo, qMeta, qData = {title, cells = [{name, type, ...}], rank, ...}}
function Doc:sheets()
  return list_items(self, { qInfo = { qType = "SheetList" }, qAppObjectListDef = { qType = "sheet", qData = {
    title = "/qMetaDef/title", description = "/qMetaDef/description", cells = "/cells", rank = "/rank",
    columns = "/columns", rows = "/rows", showCondition = "/showCondition" } } }, "qAppObjectList")
end

-- doc:objects(types) -> NxContainerEntry[] (GetObjects)
function Doc:objects(types)
  local res, err, code, e = self:call("GetObjects", { qOptions = { qTypes = types or json.array(),
    qIncludeSessionObjects = false, qData = {} } })
  if not res then return nil, err, code, e end
  return res.qList or {}
end

-- doc:object(id) -> object | nil, "... not found", "not_found"
function Doc:object(id)
  local res, err, code, e = self:call("GetObject", { qId = id })
  if not res then return nil, err, code, e end
  return object(self, res, "object " .. tostring(id))
end

-- doc:evaluate(expr) -> {qText, qIsNumeric, qNumber} (EvaluateEx)
function Doc:evaluate(expr)
  local res, err, code, e = self:call("EvaluateEx", { qExpression = expr })
  if not res then return nil, err, code, e end
  return res.qValue or { qText = res.qReturn, qIsNumeric = false }
end

local function create(doc, method, props, what)
  local res, err, code, e = doc:call(method, { qProp = props })
  if not res then return nil, err, code, e end
  return object(doc, res, what)
end

-- Writes (the QlikView pipeline): each returns the new object.
function Doc:create_object(props) return create(self, "CreateObject", props, "object") end
function Doc:create_dimension(props) return create(self, "CreateDimension", props, "dimension") end
function Doc:create_measure(props) return create(self, "CreateMeasure", props, "measure") end
function Doc:create_variable(props) return create(self, "CreateVariableEx", props, "variable") end

function Doc:set_script(script)
  local res, err, code, e = self:call("SetScript", { qScript = script })
  if not res then return nil, err, code, e end
  return true
end

function Doc:script()
  local res, err, code, e = self:call("GetScript")
  if not res then return nil, err, code, e end
  return res.qScript
end

function Doc:save()
  local res, err, code, e = self:call("DoSave")
  if not res then return nil, err, code, e end
  return true
end
-- }======

-- {====== GenericObject
function Object:call(method, params) return self.session:call(self.handle, method, params) end

function Object:layout()
  local res, err, code, e = self:call("GetLayout")
  if not res then return nil, err, code, e end
  return res.qLayout
end

function Object:properties()
  local res, err, code, e = self:call("GetProperties")
  if not res then return nil, err, code, e end
  return res.qProp
end

-- object:hypercube_data(pages [, path]) -> qDataPages (one call: at most
-- MAX_CELLS cells over its pages, or the engine's error 7009)
function Object:hypercube_data(pages, path)
  local res, err, code, e = self:call("GetHyperCubeData", { qPath = path or "/qHyperCubeDef", qPages = pages })
  if not res then return nil, err, code, e end
  return res.qDataPages or {}
end

-- object:hypercube_pivot_data(pages [, path]) -> NxPivotPage[] ({qLeft, qTop,
-- qData, qArea}: pivot tables, qMode "P")
function Object:hypercube_pivot_data(pages, path)
  local res, err, code, e = self:call("GetHyperCubePivotData", { qPath = path or "/qHyperCubeDef", qPages = pages })
  if not res then return nil, err, code, e end
  return res.qDataPages or {}
end

-- object:hypercube_stack_data(pages [, path [, max_cells = 10000]]) -> NxStackPage[]
-- (stacked charts, qMode "K")
function Object:hypercube_stack_data(pages, path, max_cells)
  local res, err, code, e = self:call("GetHyperCubeStackData", { qPath = path or "/qHyperCubeDef",
    qPages = pages, qMaxNbrCells = max_cells or M.MAX_CELLS })
  if not res then return nil, err, code, e end
  return res.qDataPages or {}
end

-- object:hypercube_rows{path =, size = {qcx, qcy} (default: from the
-- layout), page_cells = MAX_CELLS} -> every row of a straight hypercube,
-- read page after page: width qcx, height floor(page_cells / qcx).
function Object:hypercube_rows(opts)
  opts = opts or {}
  local size = opts.size
  if not size then
    local layout, err, code, e = self:layout()
    if not layout then return nil, err, code, e end
    size = (layout.qHyperCube or {}).qSize
    if not size then return nil, tostring(self.id) .. " has no hypercube", "not_found" end
  end
  local rows, width = {}, size.qcx
  if width == 0 or size.qcy == 0 then return rows end
  local height = math.max(1, (opts.page_cells or M.MAX_CELLS) // width)
  local top = 0
  while top < size.qcy do
    local pages, err, code, e = self:hypercube_data({ { qLeft = 0, qTop = top, qWidth = width,
      qHeight = math.min(height, size.qcy - top) } }, opts.path)
    if not pages then return nil, err, code, e end
    local matrix = pages[1] and pages[1].qMatrix or {}
    if #matrix == 0 then break end  -- the cube shrank under us: what there is
    for _, row in ipairs(matrix) do rows[#rows + 1] = row end
    top = top + #matrix
  end
  return rows
end
-- }======

return M
