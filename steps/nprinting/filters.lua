-- nprinting.filters — Migrate NPrinting Filters (order 250; Qlik's
-- migration tool has a step of that name).  An NPrinting filter (per
-- NPrinting app: fields with values, each field read through one Qlik
-- Sense connection) becomes a report filter on the Cloud app the
-- connection's QSEoW app was migrated to (ctx.app_for: the published copy
-- when there is one): POST /apps/{appId}/report-filters {name, filterType
-- REP, filterVersion filter-1.0, filterV1_0.fieldsByState["$"]}.  How the
-- values map, and what is reported instead: docs/nprinting.md.
--
-- One item per (filter, QSEoW app): a filter whose fields come through
-- connections to two QSEoW apps becomes a report filter on each Cloud app
-- (named in the reason).  Cache kind "nprinting.filter", key
-- "<filter id>:<QSEoW app id>", target = the report filter id, data.app_id
-- the Cloud app.  The description carries the marker [qmig-lua:1:<key>]:
-- a resumed run finds the filter its killed attempt made; a filter of the
-- same name not made by this project is never taken over (skipped, named).
-- A filter that differs from the source is replaced in place (PATCH
-- /filter), its previous definition kept for undo.  Skipped: disabled
-- filters, filters whose QSEoW app was not migrated (apps.import), and a
-- filter with no field left; variables are carried.
local errors = require "qmig.clients.errors"
local hash = require "qmig.hash"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"
local scope = require "qmig.domain.nprinting.scope"

local KIND = "nprinting.filter"

-- An NPrinting value -> a report filter value (FilterFieldValue).
local VALUE_TYPE = { text = "string", number = "number", evaluate = "evaluate", advancedsearch = "search" }
local function value_of(v)
  local typ = VALUE_TYPE[tostring(v.type or "text"):lower()]
  if not typ then return nil, "value type '" .. tostring(v.type) .. "'" end
  local out = { valueType = typ, valueAsText = tostring(v.value) }
  if typ == "number" then
    out.valueAsNumber = tonumber(v.value)
    if not out.valueAsNumber then return nil, "number value '" .. tostring(v.value) .. "'" end
  end
  return out
end

-- The report filter body for the fields of one connection.
local function definition(fields, variables)
  local out, dropped = json.array(), {}
  for _, f in ipairs(fields) do
    local values = json.array()
    for _, v in ipairs(f.values or {}) do
      local cv, why = value_of(v)
      if cv then values[#values + 1] = cv else dropped[#dropped + 1] = f.name .. ": " .. why end
    end
    out[#out + 1] = { name = f.name, overrideValues = f.overrideValues == true, selectExcluded = false,
      values = values }
  end
  local vars = json.array()
  for _, v in ipairs(variables or {}) do
    if type(v) == "table" and v.name then
      vars[#vars + 1] = { name = v.name, value = tostring(v.value or ""), evaluate = v.evaluate == true }
    end
  end
  local def = { fieldsByState = { ["$"] = out } }
  if #vars > 0 then def.variables = vars end
  return def, dropped
end

local function items(ctx)
  local np = scope.client(ctx)
  local out = {}
  for _, app in ipairs(scope.apps(ctx)) do
    local conns = scope.connections(ctx, app)
    for _, listed in ipairs(np:list("filters", { appId = app.id })) do
      if listed.appId == app.id then
        local f = np:get("filters/" .. listed.id)  -- the listing may not carry the fields
        local by_app, order, unknown = {}, {}, {}
        for _, field in ipairs(f.fields or {}) do
          local c = conns[field.connectionId]
          if c and c.qs_app then
            if not by_app[c.qs_app] then order[#order + 1] = c.qs_app; by_app[c.qs_app] = { conn = c, fields = {} } end
            table.insert(by_app[c.qs_app].fields, field)
          else
            unknown[#unknown + 1] = field.name
          end
        end
        for _, qs in ipairs(order) do
          local g = by_app[qs]
          local def, dropped = definition(g.fields, f.variables)
          out[#out + 1] = { id = f.id .. ":" .. qs, name = f.name, filter = f, app = app, qs_app = qs,
            target_app = g.conn.target, definition = def, dropped = dropped, unknown = unknown,
            split = #order > 1 and #order or nil, enabled = f.enabled ~= false }
        end
        if #order == 0 then
          out[#out + 1] = { id = f.id .. ":", name = f.name, filter = f, app = app, enabled = f.enabled ~= false,
            unknown = unknown, definition = definition({}, nil) }
        end
      end
    end
  end
  return out
end

local function fingerprint(item)
  return hash.sha256(json.encode({ v = 1, name = item.name, description = item.filter.description or "",
    enabled = item.enabled, def = item.definition, target = item.target_app or json.null,
    unknown = item.unknown }, { sort_keys = true }))
end

local function same(a, b)
  return json.encode(a or json.null, { sort_keys = true }) == json.encode(b or json.null, { sort_keys = true })
end

local function run(ctx, item)
  local data = { app_id = item.target_app, name = item.name, np_app = item.app.name, qs_app = item.qs_app }
  if not item.enabled then
    return { status = "skipped", reason = "the NPrinting filter is disabled", data = data }
  end
  if not item.qs_app then
    return { status = "skipped", reason = "no field is read through a Qlik Sense connection of app '"
      .. item.app.name .. "'", data = data }
  end
  local app_id = item.target_app
  if not app_id then
    return { status = "skipped", reason = "QSEoW app " .. item.qs_app .. " (connection of NPrinting app '"
      .. item.app.name .. "') is not migrated: run apps.import first", data = data }
  end
  local notes = {}
  if item.split then
    notes[#notes + 1] = "its fields read " .. item.split .. " QSEoW apps: one report filter on each"
  end
  if #item.unknown > 0 then
    notes[#notes + 1] = "field(s) of connections that are not Qlik Sense connections left out: "
      .. table.concat(item.unknown, ", ")
  end
  if #item.dropped > 0 then notes[#notes + 1] = "value(s) not carried: " .. table.concat(item.dropped, "; ") end
  local description = retrieve.mark(item.filter.description or "", ctx.item_key)
  local body = { name = item.name, description = description, filterType = "REP", filterVersion = "filter-1.0",
    filterV1_0 = item.definition }
  local r = ctx.ensure {
    get = function(id) return ctx.target:find("apps/" .. app_id .. "/report-filters/" .. id) end,
    candidates = function()
      local out = {}
      for f in ctx.target:each("apps/" .. app_id .. "/report-filters", { filterTypes = "REP" }) do
        if retrieve.read_marker(f.description) == ctx.item_key or f.name == item.name then out[#out + 1] = f end
      end
      return out
    end,
    adopt = function(f)
      if retrieve.read_marker(f.description) == ctx.item_key then return true end
      return false, "a report filter named '" .. item.name .. "' already exists on app " .. app_id
        .. " and was not made by this project"
    end,
    mine = { by = function(f) return retrieve.read_marker(f.description) == ctx.item_key end,
      created = function(f) return f.createdAt end },
    create = function()
      local ok, reply = pcall(ctx.target.post, ctx.target, "apps/" .. app_id .. "/report-filters", body)
      if ok then return reply end
      if errors.is(reply) and reply.status == 409 then return nil, "exists" end
      error(reply, 0)
    end,
    undo = function(id)
      return { method = "DELETE", path = "apps/" .. app_id .. "/report-filters/" .. id, target_id = id }
    end,
  }
  local reason = #notes > 0 and table.concat(notes, "; ") or nil
  if r.refused then return { status = "skipped", reason = r.reason, data = data } end
  if not r.id then
    return { status = "skipped", reason = "a report filter named '" .. item.name .. "' exists on app " .. app_id
      .. " and was not made by this project", data = data }
  end
  if r.status == "created" then return { status = "created", target_id = r.id, reason = reason, data = data } end
  -- recorded or found: put it right when it differs (the listing has no definition)
  local have = r.object
  if not have or have.filterV1_0 == nil then
    have = ctx.target:get("apps/" .. app_id .. "/report-filters/" .. r.id)
  end
  if have.name ~= body.name or have.description ~= body.description or not same(have.filterV1_0, body.filterV1_0) then
    ctx.change("definition", "NPrinting filter as it was", "as it is now")
    ctx.undo { action = "restore", method = "PATCH", path = "apps/" .. app_id .. "/report-filters/" .. r.id,
      target_id = r.id, forget = false,
      body = { { op = "replace", path = "/filter", value = { Filter = { name = have.name,
        description = have.description, filterV1_0 = have.filterV1_0 } } } } }
    ctx.target:patch("apps/" .. app_id .. "/report-filters/" .. r.id, { { op = "replace", path = "/filter",
      value = { Filter = { name = body.name, description = body.description, filterV1_0 = body.filterV1_0 } } } })
    return { status = "updated", target_id = r.id, reason = reason, data = data }
  end
  return { status = r.status, target_id = r.id, reason = reason, data = data }
end

return {
  name = "nprinting.filters",
  object = KIND,
  produces = { data = { "app_id", "name" } },
  consumes = { { kind = "app" }, { kind = "app.published" } },
  requires = { "apps.import" },
  items = items,
  key = function(item) return item.id end,
  fingerprint = fingerprint,
  run = run,
  -- a report filter deleted in the tenant (or with its app) is made again
  target_path = function(rec)
    local app = type(rec.data) == "table" and rec.data.app_id or nil
    if not app then return nil end
    return "apps/" .. app .. "/report-filters/" .. rec.target_id
  end,
  planned = function(item) return { data = { app_id = item.target_app, name = item.name } } end,
}
