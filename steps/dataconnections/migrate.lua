-- Migrate Data Connections: each QSEoW data
-- connection in scope becomes a Qlik Cloud connection in the space the
-- plan names.  Identity in Cloud = (name, space): an existing connection
-- is adopted, never duplicated or changed.  See docs/assets.md.
local common = require "qmig.domain.assets"
local errors = require "qmig.clients.errors"
local glob = require "qmig.job.glob"
local retrieve = require "qmig.clients.retrieve"

-- QSEoW type -> Qlik Cloud qType and datasourceID (docs/assets.md).  The
-- datasourceIDs are our choice (Qlik does not document a mapping); the
-- data_connection transform hook may change them.
local TYPES = {
  odbc = { qType = "QvOdbcConnectorPackage.exe", datasourceID = "DG_odbc" },
  ["qvodbcconnectorpackage.exe"] = { qType = "QvOdbcConnectorPackage.exe", datasourceID = "DG_odbc" },
  ["qvrestconnector.exe"] = { qType = "QvRestConnector.exe", datasourceID = "rest" },
  internet = { qType = "internet", datasourceID = "web" },
}

local OLEDB_REASON = "OLE DB is not supported in Qlik Cloud"
local FOLDER_REASON = "folder connections need Qlik Data Gateway; use scripts.replace to point at a space's DataFiles"

local function classify(conn)
  local ty = tostring(conn.type or ""):lower()
  local cs = tostring(conn.connectionstring or "")
  if ty == "oledb" or ty:find("oledb", 1, true) or cs:match("^%s*OLEDB%s+CONNECT") then
    return nil, OLEDB_REASON
  end
  if ty == "folder" or cs:match("^\\\\") or cs:match("^%a:[\\/]") then return nil, FOLDER_REASON end
  local mapped = TYPES[ty]
  if mapped then return mapped end
  return nil, string.format("connector type '%s' has no Qlik Cloud mapping; give it a datasourceID in the "
    .. "data_connection transform hook", tostring(conn.type))
end

local function plan_of(ctx)
  return ctx.plan and ctx.plan.data_connections or {}
end

-- Space of a plan value: a stream name whose space spaces.create recorded,
-- else a Cloud space of that literal name.  -> id, name | nil
local function resolve_space(ctx, item)
  if item.stream_id then
    local id, rec = ctx.lookup("space", item.stream_id)
    if id then return id, rec and rec.data and rec.data.name or item.space end
  end
  local s = retrieve.space(ctx.target, item.space)
  if s then return s.id, s.name end
  return nil
end

-- {username, password} of the credentials file for the item, or nil.
local function credential(ctx, item)
  return common.map_entry(common.credentials(plan_of(ctx).credentials), { item.source_name, item.name })
end

return {
  name = "dataconnections.migrate",
  object = "dataconnection",
  produces = { data = { "name", "space_id", "space_name", "login_set" } },
  consumes = { { kind = "space", data = { "name" } } },
  requires = {},  -- spaces from spaces.create when the map names streams; literal Cloud spaces otherwise

  -- The QSEoW connections whose names match plan.data_connections.names
  -- (globs, case-insensitive, default '*'), with their plan entry.
  items = function(ctx)
    local p = plan_of(ctx)
    local streams = {}
    for _, s in ipairs(ctx.source:full("stream")) do streams[s.name:lower()] = streams[s.name:lower()] or s end
    local creds = common.credentials(p.credentials)
    local out = {}
    for _, c in ipairs(ctx.source:full("dataconnection")) do
      local clean = common.strip_owner_suffix(c.name, c.owner)
      if glob.any(p.names, c.name, true) or (clean ~= c.name and glob.any(p.names, clean, true)) then
        local entry = common.map_entry(p.map, { c.name, clean }) or {}
        local cred = common.map_entry(creds, { c.name, clean })
        local stream = entry.space and streams[entry.space:lower()]
        out[#out + 1] = {
          id = c.id, source_name = c.name, type = c.type, connectionstring = c.connectionstring,
          username = cred and cred.username or c.username, logOn = c.logOn, architecture = c.architecture,
          modifiedDate = c.modifiedDate,
          name = entry.name or clean, space = entry.space, stream_id = stream and stream.id or nil,
          has_password = cred ~= nil and cred.password ~= nil,
        }
      end
    end
    -- Two connections that would become one Cloud connection (same name,
    -- same space; e.g. "DB (corp_a)" and "DB (corp_b)"): neither is made,
    -- so one never silently stands for the other.
    local seen = {}
    for _, x in ipairs(out) do
      if x.space then
        local k = x.space:lower() .. "\0" .. x.name
        seen[k] = seen[k] or {}
        table.insert(seen[k], x.source_name)
      end
    end
    for _, x in ipairs(out) do
      local same = x.space and seen[x.space:lower() .. "\0" .. x.name]
      if same and #same > 1 then
        table.sort(same)
        x.collision = table.concat(same, "', '")
      end
    end
    return out
  end,

  key = function(item) return item.id end,
  target_path = function(rec) return "data-connections/" .. rec.target_id end,

  run = function(ctx, item)
    local mapped, why = classify(item)
    if not item.space then
      if not mapped then return { status = "skipped", reason = why } end
      return { status = "skipped", reason = "no target space: name one under plan.data_connections.map" }
    end
    if item.collision then
      return { status = "skipped", reason = "'" .. item.collision .. "' would all become '" .. item.name
        .. "' in space '" .. item.space .. "': give them distinct names in plan.data_connections.map" }
    end
    local space_id, space_name = resolve_space(ctx, item)
    if not space_id then
      return { status = "skipped", reason = "target space '" .. item.space .. "' does not exist" }
    end
    local body = {
      qName = item.name, qConnectStatement = item.connectionstring,
      qType = mapped and mapped.qType or item.type, datasourceID = mapped and mapped.datasourceID or nil,
      space = space_id, qUsername = item.username or "", qLogOn = tostring(item.logOn or 0),
      qArchitecture = item.architecture or 0, qSeparateCredentials = false,
    }
    body = ctx.transform("data_connection", body)
    if body == nil then return { status = "skipped", reason = "left out by the data_connection transform" } end
    if not body.datasourceID then return { status = "skipped", reason = why } end
    local name, space = body.qName, body.space
    local data = { name = name, space_id = space, space_name = space == space_id and space_name or nil }
    local natural = tostring(data.space_name or space) .. ":" .. name
    local cred = credential(ctx, item)
    data.login_set = cred ~= nil and cred.password ~= nil

    local prev = ctx.previous
    local r = ctx.ensure {
      get = function(id)
        local c = ctx.target:find("data-connections/" .. id)
        if c and c.qName == name and (c.space or "") == (space or "") then return c end
        return nil
      end,
      find = function() return retrieve.data_connection(ctx.target, name, space) end,
      unique = true,  -- a name is, within its space (a 409, below)
      mine = { by = function(c) return c.user == ctx.target:me().id end, created = function(c) return c.created end },
      create = function()
        local post = {}
        for k, v in pairs(body) do post[k] = v end
        if cred and cred.password then post.qPassword = cred.password end
        local ok, created = pcall(ctx.target.post, ctx.target, "data-connections", post)
        if ok then return created end
        if errors.is(created) and created.status == 409 then
          local existing = ctx.listed(function() return retrieve.data_connection(ctx.target, name, space) end)
          if existing then return existing, "exists" end
        end
        error(created, 0)
      end,
      id = function(c) return c.qID end,
      undo = function(id) return { method = "DELETE", path = "data-connections/" .. id } end,
    }
    local existing = r.object
    if r.status == "adopted" or (r.how == "recorded" and not prev.created_by_us) then
      data.login_set = false  -- never ours to set
      return { status = "adopted", target_id = r.id, natural_key = natural, data = data }
    end
    if r.how == "recorded" and prev.created_by_us then
      -- ours, and the source or the credentials file changed: bring it up to date
      local ops = {}
      if existing.qConnectStatement ~= body.qConnectStatement then
        ctx.undo { action = "restore", method = "PATCH", path = "data-connections/" .. r.id, forget = false,
          body = { { op = "replace", path = "/qConnectStatement", value = existing.qConnectStatement } } }
        ops[#ops + 1] = { op = "replace", path = "/qConnectStatement", value = body.qConnectStatement }
      end
      local had_password = type(prev.data) == "table" and prev.data.login_set or false
      if cred and cred.password and not had_password then
        ops[#ops + 1] = { op = "replace", path = "/qUsername", value = body.qUsername }
        ops[#ops + 1] = { op = "replace", path = "/qPassword", value = cred.password }
      end
      data.login_set = had_password or data.login_set
      if #ops == 0 then return { status = "unchanged", target_id = r.id, natural_key = natural, data = data } end
      ctx.target:patch("data-connections/" .. r.id, ops)
      return { status = "updated", target_id = r.id, natural_key = natural, data = data }
    end
    local reason
    if r.how == "created" and item.username and item.username ~= "" and not (cred and cred.password) then
      reason = "created without a password: none in plan.data_connections.credentials"
    end
    return { status = "created", target_id = r.id, natural_key = natural, data = data, reason = reason }
  end,
}
