-- Shared helpers of the application steps: the fingerprints, export paths
-- and importing name of apps.export / apps.import (below), and what the
-- later steps (apps.object_owners, apps.scripts, apps.publish, apps.shares,
-- apps.owners, apps.validate) read of what apps.import recorded.
--
-- The later steps act on what apps.import recorded: their items are the QRS
-- apps that have a done `app` cache record (key QRS app id -> Cloud app
-- id, data {space_id, bound_for}).  Each item carries the ids it depends
-- on, so the engine's fingerprint changes (and the step runs again) when
-- the app is re-imported or a mapping it uses appears later.
local errors = require "qmig.clients.errors"
local hash = require "qmig.hash"
local json = require "qmig.json"
local scope = require "qmig.domain.scope"

local M = {}

local status = require "qmig.store.status"
M.DONE = status.DONE
local USABLE = status.USABLE

-- The cache record of kind for key when it is done and has a target.
function M.done(ctx, kind, key)
  local rec = ctx.cache and ctx.cache:get(kind, tostring(key))
  if rec and USABLE[rec.status] and rec.target_id then return rec end
  return nil
end

-- Imported apps: a list of {id, name, owner = {id, userId, userDirectory},
-- stream = {id, name} | nil, app_id = Cloud app id, space_id, bound_for,
-- import_fp}, sorted by QRS id.  QRS apps deleted since are left out.
function M.imported(ctx)
  local recs = {}
  for _, rec in ipairs(ctx.cache:items("app")) do
    if USABLE[rec.status] and rec.target_id then recs[#recs + 1] = rec end
  end
  if #recs == 0 then return json.array() end
  local by_id = {}
  for _, app in ipairs(ctx.source:full("app")) do by_id[app.id] = app end
  local out = json.array()
  for _, rec in ipairs(recs) do
    local app = by_id[rec.source_id]
    if app then
      local data = type(rec.data) == "table" and rec.data or {}
      local owner = type(app.owner) == "table" and app.owner or {}
      local stream = type(app.stream) == "table" and app.stream or nil
      out[#out + 1] = {
        id = app.id, name = app.name,
        owner = { id = owner.id, userId = owner.userId, userDirectory = owner.userDirectory },
        stream = stream and { id = stream.id, name = stream.name } or nil,
        app_id = rec.target_id, space_id = data.space_id, bound_for = data.bound_for,
        import_fp = rec.fingerprint,
      }
    end
  end
  return out
end

-- The objects apps.export recorded for a QRS app (kind "app.export",
-- data.objects; else appObjects.json in the project folder), or nil.
-- memo: a table kept across calls of one step (appObjects.json is read
-- once).
function M.export_objects(ctx, source_id, memo)
  local rec = ctx.cache:get("app.export", tostring(source_id))
  if rec and rec.status ~= "failed" and rec.status ~= "deleted" and type(rec.data) == "table"
    and type(rec.data.objects) == "table" then
    return rec.data.objects
  end
  memo = memo or {}
  if memo.file == nil then
    memo.file = {}
    local ok, list = pcall(ctx.project.read_json, ctx.project, "appObjects.json")
    for _, a in ipairs(ok and type(list) == "table" and list or {}) do
      if type(a) == "table" and a.appId and type(a.objects) == "table" then memo.file[a.appId] = a.objects end
    end
  end
  return memo.file[source_id]
end

-- "DIR\user" of a QRS owner record.
function M.user_label(owner)
  if type(owner) ~= "table" then return "?" end
  return tostring(owner.userDirectory or "?") .. "\\" .. tostring(owner.userId or "?")
end

-- Cloud user id mapped to a QRS user id by users.import, or nil.
function M.user(ctx, qrs_user_id)
  if not qrs_user_id then return nil end
  return (ctx.lookup("user", qrs_user_id))
end


-- The app's attributes, or nil when it is gone (404).
function M.app(ctx, app_id)
  local ok, reply = pcall(ctx.target.get, ctx.target, "apps/" .. app_id)
  if ok then return reply and reply.attributes or nil end
  if errors.is(reply) and reply.status == 404 then return nil end
  error(reply, 0)
end

-- The managed space an app is bound for (a managed space takes apps only
-- by publishing, so apps.import stages them): the import record's
-- bound_for, else the space mapped to its stream when that space is managed.
function M.managed_space(ctx, item)
  if item.bound_for then return item.bound_for end
  if item.stream then
    local sid, rec = ctx.lookup("space", item.stream.id)
    if sid and rec and type(rec.data) == "table" and rec.data.type == "managed" then return sid end
  end
  return nil
end

-- Raises a qmig error with message (fails the item).
function M.fail(message)
  error(errors.new { message = message }, 0)
end

-- Space id -> name: from the spaces.create records, else the target.
function M.space_names(ctx)
  local names = {}
  for _, rec in ipairs(ctx.cache:items("space")) do
    if rec.target_id and type(rec.data) == "table" and rec.data.name then names[rec.target_id] = rec.data.name end
  end
  return setmetatable(names, { __index = function(t, id)
    local ok, space = pcall(ctx.target.get, ctx.target, "spaces/" .. id)
    local name = ok and type(space) == "table" and space.name or false
    rawset(t, id, name)
    return name
  end })
end

-- Short "a, b, c (+N more)" lists for reasons.
function M.list(words, max)
  max = max or 8
  local shown = {}
  for i = 1, math.min(#words, max) do shown[i] = words[i] end
  local text = table.concat(shown, ", ")
  if #words > max then text = text .. string.format(" (+%d more)", #words - max) end
  return text
end

-- {====== fingerprints
-- apps.export: the app's modifiedDate, fileSize and lastReloadTime (a
-- reload changes the data an export with data carries) and the export
-- options; a change re-exports the app.  Object-only changes (a user editing
-- a private sheet) do not change the app's modifiedDate in every QRS
-- release: re-export those with --force.
function M.export_fingerprint(app, opts)
  opts = opts or {}
  return table.concat({ "v1", tostring(app.modifiedDate), tostring(app.fileSize), tostring(app.lastReloadTime),
    tostring(opts.with_data or false), tostring(opts.scope or "") }, "|")
end

-- apps.import and later: the definition only (modifiedDate, name,
-- description, where it is published), so a mere reload at the source is
-- not reported as a change.
function M.definition_fingerprint(app)
  local stream = scope.stream(app)
  return hash.sha256(json.encode({
    v = 1, modified = app.modifiedDate, name = app.name, description = app.description,
    stream = stream and stream.id or json.null,
  }, { sort_keys = true }))
end
-- }======

-- Path of an app's export, by source id only (never its name).
function M.export_path(ctx, app_id)
  return ctx.project:object_path("exports/apps", app_id, ".qvf")
end

function M.export_meta_path(ctx, app_id)
  return ctx.project:object_path("exports/apps", app_id, ".json")
end

-- {====== the name an app carries between its import and its marker
-- apps.import uploads under "<name> [qmig-lua:importing:<source id>]" and
-- sets the final name together with the marker (one PUT).  An app still
-- carrying that name is a half-finished import of exactly that source app:
-- never a pre-existing app, never another source app of the same name.
function M.importing_name(name, source_id)
  return string.format("%s [qmig-lua:importing:%s]", name, source_id)
end

-- -> source id, or nil when the name is not an importing name.
function M.read_importing(name)
  if type(name) ~= "string" then return nil end
  return name:match(" %[qmig%-lua:importing:([^%]]+)%]$")
end
-- }======

-- The app users open for a source app: the published copy when there is
-- one (apps.publish's record, kind "app.published"), else the imported app
-- (apps.import's, kind "app"); its id and kind, or nil.  ctx.app_for.
function M.app_for(ctx, source_id)
  local published = ctx.lookup("app.published", source_id)
  if published then return published, "app.published" end
  local imported = ctx.lookup("app", source_id)
  return imported, imported and "app" or nil
end

return M
