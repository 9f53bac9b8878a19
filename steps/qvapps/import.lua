-- Import QlikView Applications (QAMT "Import QlikView Applications"): a
-- Qlik Sense app per converted document (qvapps.convert), created empty
-- over REST (POST /apps, named after the document, its description marked
-- "[qmig-lua:1:qlikview:<qv id>]" in the same call), then filled over the
-- engine (qmig.domain.qlikview.engine): SetScript, CreateVariableEx,
-- CreateDimension, CreateMeasure, CreateObject for the master
-- visualizations, DoSave.
--
-- Where: plan.qlikview.spaces maps a folder of the share (the longest
-- mapped prefix of the document's folder) to a shared space, found by
-- name; documents of unmapped folders go to the staging space
-- (spaces.create's "@staging", else plan.spaces.staging by name).
-- A folder mapped to a managed space is staged there too, and published
-- by qvapps.publish, as an app of a stream with a managed space; so is a
-- folder plan.qlikview.publish maps to one (recorded as data.bound_for).  A missing space skips
-- the document with the reason.
--
-- Never a duplicate: ctx.ensure finds the app recorded in the cache, else
-- the app carrying the document's marker in that space (an earlier
-- attempt whose reply was lost, or a lost cache), before it creates one;
-- the master items keep the ids of the conversion, so filling an app
-- again adds only what is missing.  The fingerprint is the document's: a
-- document converted again is filled again (new master items are added, a
-- master measure whose expression or label changed is changed in place;
-- the script follows the document).  Undo deletes the apps it created.
local conversion = require "qmig.domain.qlikview.conversion"
local errors = require "qmig.clients.errors"
local qvengine = require "qmig.domain.qlikview.engine"
local retrieve = require "qmig.clients.retrieve"

local function marker_id(qv_id) return "qlikview:" .. qv_id end

-- The value of the longest folder prefix of the document's folder in map.
local function mapped(map, folder)
  local best
  for f, v in pairs(map or {}) do
    f = f:gsub("^/+", ""):gsub("/+$", "")
    if (f == "" or folder == f or folder:sub(1, #f + 1) == f .. "/") and (not best or #f > #best.f) then
      best = { f = f, space = v }
    end
  end
  return best
end

-- A space by name: one spaces.create made (its record, also in a plan,
-- where the space is only planned), else the tenant's.
local USABLE = require("qmig.store.status").USABLE
local function space_named(ctx, name)
  for _, rec in ipairs(ctx.cache:items("space")) do
    local d = type(rec.data) == "table" and rec.data or {}
    if d.name == name and rec.target_id and USABLE[rec.status] then
      return { id = rec.target_id, name = name, type = d.type or "shared" }
    end
  end
  return retrieve.space(ctx.target, name)
end

-- The space of a document: {space_id, name, bound_for} or nil, why.
local function placement(ctx, item)
  local p = ctx.plan.qlikview or {}
  local best = mapped(p.spaces, item.folder)
  local managed
  local pub = mapped(p.publish, item.folder)
  if pub then
    managed = space_named(ctx, pub.space)
    if not (managed and managed.type == "managed") then
      return nil, "managed space '" .. pub.space .. "' (plan.qlikview.publish) is not in the tenant"
    end
  end
  if best then
    local s = space_named(ctx, best.space)
    if not s then return nil, "space '" .. best.space .. "' is not in the tenant (create it first)" end
    if s.type ~= "managed" then return { space_id = s.id, name = s.name, bound_for = managed and managed.id } end
    managed = s   -- as for a stream's managed space: staged, then published there
  end
  local function staged(where)
    where.bound_for = managed and managed.id or nil
    return where
  end
  local staging = ctx.lookup("space", "@staging")
  if staging then return staged { space_id = staging, name = ctx.plan.spaces and ctx.plan.spaces.staging } end
  local name = ctx.plan.spaces and ctx.plan.spaces.staging or "Migration staging"
  local s = space_named(ctx, name)
  if not s then
    return nil, "no shared space for folder '" .. item.folder .. "' and no staging space '" .. name .. "'"
  end
  return staged { space_id = s.id, name = s.name }
end

return {
  name = "qvapps.import", object = "qvapp",
  requires = { "qvapps.convert" },
  items = function(ctx)
    -- Only documents the share still has and the plan still selects: a
    -- renamed or removed document's app would otherwise be made again
    -- each time a user deletes it in Qlik Cloud.
    local items = conversion.current(ctx)
    for _, item in ipairs(items) do
      local rec = ctx.cache:get("qvapp.convert", item.id)
      item.fp = rec and rec.fingerprint or ""
    end
    return items
  end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(item) return item.id end,
  fingerprint = function(item) return item.fp end,
  target_path = function(rec) return "apps/" .. rec.target_id end,
  -- what a plan records: where the app would go (qvapps.publish reads bound_for)
  planned = function(item, ctx)
    local where = placement(ctx, item)
    if not where then return nil end
    -- read back, the app is the importing identity's, in its space, marked
    return { data = { qv_id = item.qv_id, name = item.name, space_id = where.space_id, bound_for = where.bound_for },
      object = { attributes = { name = item.name, ownerId = ctx.target:me().id, spaceId = where.space_id,
        description = retrieve.mark("", marker_id(item.qv_id)) } } }
  end,
  run = function(ctx, item)
    local conv, why = conversion.load(ctx, item.qv_id)
    -- (in a plan the conversion may be one qvapps.convert would write)
    if not conv and not ctx.dry_run then return { status = "skipped", reason = why } end
    local where, wwhy = placement(ctx, item)
    if not where then return { status = "skipped", reason = wwhy } end
    local mid = marker_id(item.qv_id)
    local r = ctx.ensure {
      get = function(id)
        local reply = ctx.target:find("apps/" .. id)
        return type(reply) == "table" and type(reply.attributes) == "table" and reply.attributes or nil
      end,
      candidates = function() return retrieve.apps_by_marker(ctx.target, mid, { spaceId = where.space_id }) end,
      create = function()
        local reply = ctx.target:post("apps", { attributes = { name = item.name, usage = "ANALYTICS",
          description = retrieve.mark("", mid), spaceId = where.space_id } })
        return reply.attributes
      end,
      id = function(o) return o.resourceId or o.id end,
      undo = function(id) return { method = "DELETE", path = "apps/" .. id } end,
    }
    local data = { qv_id = item.qv_id, space_id = where.space_id, name = item.name, bound_for = where.bound_for }
    if ctx.dry_run or ctx.is_planned(r.id) then
      error(setmetatable({ method = "engine", path = "apps/" .. r.id, target_id = r.id, data = data,
        reason = "would set the script and write the master items" }, errors.DryRun), 0)
    end
    local session, doc = qvengine.open(ctx, r.id)
    local ok, counts = pcall(qvengine.write, doc, conv)
    session:close()
    if not ok then error(counts, 0) end
    data.written = counts
    local made = (counts.variable or 0) + (counts.dimension or 0) + (counts.measure or 0)
      + (counts.visualization or 0) + (counts.changed or 0)
    local reason = string.format("%d variable(s), %d dimension(s), %d measure(s), %d visualization(s) written%s%s%s",
      counts.variable or 0, counts.dimension or 0, counts.measure or 0, counts.visualization or 0,
      counts.changed and (", " .. counts.changed .. " measure(s) changed") or "",
      counts.existing and (", " .. counts.existing .. " already there") or "", counts.script and ", script set" or "")
    local status = r.status
    if status == "unchanged" and (made > 0 or counts.script) then status = "updated" end
    return { status = status, target_id = r.id, natural_key = retrieve.marker_token(mid), data = data,
      reason = reason }
  end,
}
