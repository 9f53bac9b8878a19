-- Delete Applications (QAMT "Delete Applications"): deletes every target
-- app this project made for a source app — the imported app (cache kind
-- "app") and its published copy ("app.published") — plus every app in the
-- tenant carrying the marker of a source app this project knows (in the
-- cache or in the plan's scope), personal and shared spaces alike, and
-- every half-finished import of one (an app still carrying its importing
-- name, see apps.import).  Apps
-- without one of those markers and not in the cache are never touched.
-- A deleted app's cache records are marked deleted, so a later apps.import
-- imports it again.  Nothing is asked here (confirmation is the CLI's).
--
-- One item per source app that still has target apps; its fingerprint is
-- the set of those apps, so deleting again after a re-import works.  A
-- delete cannot be undone: it is recorded as irreversible.
local retrieve = require "qmig.clients.retrieve"
local common = require "qmig.domain.apps"
local scope = require "qmig.domain.scope"

local KINDS = { "app", "app.published" }
-- kinds of this pipeline recording work done on the target app
local DEPENDENT = { "app.reload", "app.description" }

local function live(rec)
  return rec.target_id and rec.status ~= "deleted" and rec.status ~= "failed"
end

return {
  name = "apps.delete", object = "app.delete",
  produces = { data = { "deleted" } },
  consumes = { { kind = "app" }, { kind = "app.published" } },
  requires = {},
  items = function(ctx)
    local by_source, known = {}, {}
    local function add(source_id, app_id, kind)
      local x = by_source[source_id]
      if not x then
        x = { id = source_id, apps = {}, kinds = {} }
        by_source[source_id] = x
      end
      if not x.kinds[app_id] then x.apps[#x.apps + 1] = app_id end
      x.kinds[app_id] = x.kinds[app_id] or kind
    end
    for _, kind in ipairs(KINDS) do
      for _, rec in ipairs(ctx.cache:items(kind)) do
        known[rec.source_id] = true
        if live(rec) then add(rec.source_id, rec.target_id, kind) end
      end
    end
    local ok, apps = pcall(scope.list, ctx)
    if ok then for _, app in ipairs(apps) do known[app.id] = true end end
    -- every marked app of the tenant, in one listing
    for item in ctx.target:each("items", { resourceType = "app", query = "[qmig-lua:" }) do
      -- marked, or still carrying its importing name (a half-finished import)
      local source_id = retrieve.read_marker(item.description) or common.read_importing(item.name)
      if source_id and known[source_id] then add(source_id, item.resourceId, "marker") end
    end
    local out = {}
    for _, x in pairs(by_source) do
      table.sort(x.apps)
      out[#out + 1] = x
    end
    table.sort(out, function(a, b) return a.id < b.id end)
    return out
  end,
  key = function(x) return x.id end,
  fingerprint = function(x) return table.concat(x.apps, ",") end,
  run = function(ctx, x)
    local deleted = {}
    for _, app_id in ipairs(x.apps) do
      ctx.target:remove("apps/" .. app_id)  -- already gone counts as deleted
      deleted[#deleted + 1] = app_id
      ctx.undo { action = "irreversible", target_id = app_id, reason = "app " .. app_id .. " was deleted" }
    end
    for _, kind in ipairs(KINDS) do
      local rec = ctx.cache:get(kind, x.id)
      if rec and rec.target_id and x.kinds[rec.target_id] then ctx.forget(kind, x.id, "deleted by apps.delete") end
    end
    -- what was done to the deleted apps is gone with them: a re-import redoes it
    for _, kind in ipairs(DEPENDENT) do
      local rec = ctx.cache:get(kind, x.id)
      if rec and rec.status ~= "deleted" then ctx.forget(kind, x.id, "app deleted by apps.delete") end
    end
    return { status = "deleted", target_id = table.concat(deleted, ","),
      reason = "deleted " .. #deleted .. " app(s): " .. table.concat(deleted, ", "), data = { deleted = deleted } }
  end,
}
