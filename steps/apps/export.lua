-- Export Applications (QAMT "Export Applications"): each QRS app in scope
-- is exported with the two-call QRS export and streamed to
-- exports/apps/<source app id>.qvf (never the app name in a path), with a
-- sidecar exports/apps/<source app id>.json {fingerprint, size, scope,
-- with_data, name, exported_at}.  A file already exported for the same
-- fingerprint (qmig.domain.apps.export_fingerprint: modifiedDate, fileSize,
-- lastReloadTime, with_data, export scope) is reused, not downloaded again.
--
-- Export scope: plan.apps.export_scope (default all).  QRS releases before
-- November 2022 (buildVersion < 14.97) have no exportScope: the app is
-- exported without it, so only base (approved) objects are in the file; the
-- item's reason says so.
--
-- The app's sheets, stories and bookmarks (GET /qrs/app/object/full) are
-- kept in the item's data (objects = [{engineObjectId, objectType, name,
-- owner = {id, userId, userDirectory}, state = base|community|private,
-- exported = whether the export scope carried it}]) and, after every item,
-- written together to appObjects.json in the project folder (apps.object_owners
-- reads either).
local cloud = require "qmig.clients.cloud"
local fs = require "qmig.fs"
local json = require "qmig.json"
local qmig = require "qmig"
local qrs = require "qmig.clients.qrs"
local common = require "qmig.domain.apps"
local scope = require "qmig.domain.scope"

local EXPORT_SCOPE_SINCE = { 14, 97 }  -- Qlik Sense November 2022
local SCOPE_STATES = {
  approved = { base = true },
  published = { base = true, community = true },
  all = { base = true, community = true, private = true },
}

local function version_at_least(v, min)
  local parts = {}
  for n in tostring(v or ""):gmatch("%d+") do parts[#parts + 1] = tonumber(n) end
  for i = 1, #min do
    local x = parts[i] or 0
    if x ~= min[i] then return x > min[i] end
  end
  return true
end

local function object_state(o)
  if o.approved then return "base" end
  if o.published then return "community" end
  return "private"
end

local function app_objects(ctx, app_id, effective_scope)
  local filter = qrs.all {
    qrs.eq("app.id", app_id),
    qrs.any { qrs.eq("objectType", "sheet"), qrs.eq("objectType", "story"), qrs.eq("objectType", "bookmark") },
  }
  local out = json.array()
  for _, o in ipairs(ctx.source:full("app/object", filter)) do
    local owner = type(o.owner) == "table" and o.owner or {}
    local state = object_state(o)
    out[#out + 1] = {
      id = o.id, engineObjectId = o.engineObjectId, objectType = o.objectType, name = o.name,
      owner = { id = owner.id, userId = owner.userId, userDirectory = owner.userDirectory },
      state = state, exported = SCOPE_STATES[effective_scope][state] == true,
    }
  end
  table.sort(out, function(a, b) return tostring(a.engineObjectId) < tostring(b.engineObjectId) end)
  return out
end

-- The sidecar of an earlier export, when it still describes the file.
local function reusable(meta_path, file, fingerprint)
  local text = fs.read_file(meta_path)
  local meta = text and json.decode(text)
  if type(meta) ~= "table" or meta.fingerprint ~= fingerprint then return nil end
  local st = fs.stat(file)
  if not st or st.type ~= "file" or st.size ~= meta.size then return nil end
  return meta
end

return {
  name = "apps.export", object = "app.export",
  produces = { data = { "file", "name", "stream", "published", "owner", "description", "scope", "with_data",
    "objects" } },
  consumes = {},
  requires = {},
  items = function(ctx)
    local p = ctx.plan.apps or {}
    local about = ctx.source:about()
    local opts = {
      with_data = p.with_data or false,
      scope = p.export_scope or "all",
      scope_supported = version_at_least(about and about.buildVersion, EXPORT_SCOPE_SINCE),
      build = about and about.buildVersion,
    }
    ctx.memo.export = opts
    return scope.list(ctx)
  end,
  key = function(app) return app.id end,
  fingerprint = function(app, ctx)
    local o = ctx.memo.export
    return common.export_fingerprint(app,
      { with_data = o.with_data, scope = o.scope_supported and o.scope or "approved" })
  end,
  run = function(ctx, app)
    local o = ctx.memo.export
    local effective = o.scope_supported and o.scope or "approved"
    local fingerprint = ctx.fingerprint
    local file, meta_path = common.export_path(ctx, app.id), common.export_meta_path(ctx, app.id)
    local rel = "exports/apps/" .. fs.basename(file)
    local reason
    if not o.scope_supported and o.scope ~= "approved" then
      reason = string.format("QRS %s predates November 2022: exported without exportScope (base objects only)",
        tostring(o.build))
    end
    local objects = app_objects(ctx, app.id, effective)
    local stream = scope.stream(app)
    local data = {
      file = rel, name = app.name, stream = stream and { id = stream.id, name = stream.name } or nil,
      published = stream ~= nil, owner = app.owner and { id = app.owner.id, userId = app.owner.userId,
        userDirectory = app.owner.userDirectory } or nil,
      description = app.description, scope = effective, with_data = o.with_data, objects = objects,
    }
    local meta = reusable(meta_path, file, fingerprint)
    if meta then
      data.size = meta.size
      return { status = "unchanged", target_id = rel, data = data, reason = reason or "export reused" }
    end
    if ctx.dry_run then
      -- The QRS client does not refuse writes: say what would happen.
      error(setmetatable({ method = "export", path = rel, target_id = rel, data = data }, cloud.DryRun), 0)
    end
    fs.remove(meta_path)  -- the old sidecar no longer describes the file
    local _, bytes = ctx.source:export_app(app.id,
      { with_data = o.with_data, scope = o.scope_supported and o.scope or nil }, file)
    local st = assert(fs.stat(file))
    bytes = st.size or bytes
    assert(fs.write_file(meta_path, json.encode({
      fingerprint = fingerprint, size = bytes, scope = effective, with_data = o.with_data, name = app.name,
      app_id = app.id, exported_at = qmig.isotime(),
    }, { sort_keys = true }) .. "\n", { mode = 384, atomic = true }))
    data.size = bytes
    return { status = ctx.previous and ctx.previous.target_id and "updated" or "created", target_id = rel,
      data = data, reason = reason }
  end,
  -- appObjects.json: every exported app's objects, from the cache (so apps
  -- exported by earlier runs are in it too).
  finish = function(ctx)
    if ctx.dry_run then return end
    local out = json.array()
    for _, rec in ipairs(ctx.cache:items("app.export")) do
      local d = rec.data
      if type(d) == "table" and rec.status ~= "failed" and rec.status ~= "deleted" and rec.status ~= "in_progress" then
        out[#out + 1] = {
          appId = rec.source_id, appName = d.name, stream = d.stream, published = d.published, owner = d.owner,
          file = d.file, scope = d.scope, objects = d.objects or json.array(),
        }
      end
    end
    assert(ctx.project:write_json("appObjects.json", out))
  end,
}
