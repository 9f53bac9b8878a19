-- Import Applications (QAMT "Import Applications"): uploads each exported
-- QVF (streamed from exports/apps/<source app id>.qvf, never read into
-- memory) into the right place, then writes the description marker
-- (qmig.retrieve.mark: "<original description>\n\n[qmig-lua:1:<source id>]").
--
-- Where an app goes:
--   published in a stream whose space (kind "space", key = stream id) is
--     shared                  -> that space
--     managed                 -> the staging shared space (kind "space", key
--                                "@staging"); data.bound_for = the managed
--                                space, where apps.publish publishes it
--   unpublished (personal)    -> the importing identity's personal space (no
--                                spaceId); apps.owners gives it to its owner
-- The `app` transform hook sees (qrs_app, {name, space_id, description})
-- and may change them, or return nil to leave the app out.
--
-- Files up to plan.apps.large_app_mb MiB (default 512) are sent as the body
-- of POST /apps/import; larger ones go to POST /temp-contents first and are
-- imported with ?fileId=.
--
-- Never a duplicate, through the engine's find-or-create (ctx.ensure,
-- which also waits out the items catalogue's lag for an item in doubt):
--   1. the cache: an app recorded by an earlier run that still exists is
--      this app (this is what keeps working after post.reset_descriptions
--      removed the markers);
--   2. the marker, searched in the target space (and, for apps bound for a
--      managed space, an app moved there by publish with moveApp);
--   3. when a previous attempt may have imported without marking
--      (ctx.resume): an unmarked app in that space, owned by the importing
--      identity, still carrying its importing name, that the attempt made
--      (ctx.ensure's clock-safe age check) is ours: it is renamed, marked
--      and kept.  The upload uses the name "<name> [qmig-lua:importing:<source
--      id>]" (qmig.domain.apps.importing_name) and the marker write sets the final name,
--      so a half-finished import can never be confused with a pre-existing
--      app, nor with the import of another source app of the same name in
--      the same stream.
-- A pre-existing app of the same name that this project did not create is
-- never adopted or touched.
--
-- data = {space_id (nil: personal), name, bound_for (managed space id or
-- nil), staged, fingerprint (source definition at import), file}.  An app
-- whose source definition changed since it was imported is reported
-- (status "unchanged" with reason "changed at the source ...", kept in the
-- cache record) and left as it is: replacing it needs --replace (not yet
-- in the CLI).
local cloud = require "qmig.clients.cloud"
local errors = require "qmig.clients.errors"
local fs = require "qmig.fs"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"
local common = require "qmig.domain.apps"
local scope = require "qmig.domain.scope"

local MiB = 1024 * 1024

-- Where the app should go: {space_id, bound_for, query} or nil, why.
local function placement(ctx, app)
  local stream = scope.stream(app)
  if not stream then return { space_id = nil, query = { spaceId = "personal" } } end
  local space_id, rec = ctx.lookup("space", stream.id)
  if not space_id then
    return nil, "no space for stream '" .. tostring(stream.name) .. "' (run spaces.create first)"
  end
  local stype = rec and type(rec.data) == "table" and rec.data.type or "shared"
  if stype == "managed" then
    local staging = ctx.lookup("space", "@staging")
    if not staging then
      return nil, "stream '" .. tostring(stream.name) .. "' maps to a managed space and there is no staging space"
    end
    return { space_id = staging, bound_for = space_id, query = { spaceId = staging } }
  end
  return { space_id = space_id, query = { spaceId = space_id } }
end

local function item_created(item)
  return item.createdAt or item.resourceCreatedAt or ""
end

-- Marked apps of this source in the target space; for an app bound for a
-- managed space also the original moved there (not a published copy,
-- whose originAppId names the staged app).
local function by_marker(ctx, app, where)
  local found = retrieve.apps_by_marker(ctx.target, app.id, where.query)
  if #found == 0 and where.space_id == nil and type(app.owner) == "table" and app.owner.id then
    -- a personal app apps.owners already gave to its owner (QAMT looks in
    -- the intended owner's personal space)
    local owner = ctx.lookup("user", app.owner.id)
    if owner then found = retrieve.apps_by_marker(ctx.target, app.id, { spaceId = "personal", ownerId = owner }) end
  end
  if #found == 0 and where.bound_for then
    for _, item in ipairs(retrieve.apps_by_marker(ctx.target, app.id, { spaceId = where.bound_for })) do
      local attrs = item.resourceAttributes or {}
      if attrs.originAppId == nil or attrs.originAppId == "" then found[#found + 1] = item end
    end
  end
  table.sort(found, function(a, b) return item_created(a) < item_created(b) end)
  return found  -- oldest first
end

local function upload(ctx, file, size, target)
  local p = ctx.plan.apps or {}
  local limit = (p.large_app_mb or 512) * MiB
  local query = { name = target.name, spaceId = target.space_id }
  local resp
  if size > limit then
    local tmp = ctx.target:request("POST", "temp-contents", {
      query = { filename = fs.basename(file) }, source = file,
      headers = { ["Content-Type"] = "application/octet-stream" },
    })
    local location = tmp.headers and (tmp.headers.location or tmp.headers.Location)
    local file_id = type(location) == "string" and location:match("([^/?]+)/*$")
    if not file_id then error(errors.new { message = "POST temp-contents: no Location in the reply" }, 0) end
    query.fileId = file_id
    resp = ctx.target:request("POST", "apps/import", { query = query, json = {} })
  else
    resp = ctx.target:request("POST", "apps/import", {
      query = query, source = file, headers = { ["Content-Type"] = "application/octet-stream" },
    })
  end
  local reply = resp.body and json.decode(resp.body)
  local attrs = type(reply) == "table" and reply.attributes
  if type(attrs) ~= "table" or type(attrs.id) ~= "string" then
    error(errors.new { message = "POST apps/import: the reply has no attributes.id" }, 0)
  end
  return attrs
end

-- The final name and the marker, in one write.
local function mark(ctx, app_id, target, source_id)
  ctx.target:put("apps/" .. app_id,
    { attributes = { name = target.name, description = retrieve.mark(target.description, source_id) } })
end

return {
  name = "apps.import", object = "app",
  produces = { data = { "space_id", "name", "bound_for", "staged", "fingerprint", "file" } },
  consumes = {
    { kind = "space", data = { "type" }, keys = { "@staging" } },
    { kind = "user" },
    { kind = "app.export" },
  },
  requires = { "apps.export", "spaces.create" },
  items = function(ctx) return scope.list(ctx) end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(app) return app.id end,
  fingerprint = common.definition_fingerprint,
  -- (an app gone from the tenant is imported again; what later steps did
  -- on it is redone, as the engine forgets their records)
  target_path = function(rec) return "apps/" .. rec.target_id end,
  -- what a plan records for later steps: where the app would go
  planned = function(app, ctx)
    local where = placement(ctx, app)
    if not where then return nil end
    local data = { space_id = where.space_id, name = app.name, bound_for = where.bound_for,
      staged = where.bound_for ~= nil, fingerprint = common.definition_fingerprint(app) }
    -- read back, the app is the importing identity's, in its space
    return { data = data, object = { attributes = { name = app.name, ownerId = ctx.target:me().id,
      spaceId = where.space_id, description = retrieve.mark(app.description or "", app.id) } } }
  end,
  run = function(ctx, app)
    local where, why = placement(ctx, app)
    if not where then return { status = "skipped", reason = why } end
    local target = ctx.transform("app", app, { name = app.name, space_id = where.space_id,
      description = app.description or "" })
    if target == nil then return { status = "skipped", reason = "left out by transforms.lua (app hook)" } end
    if target.space_id ~= where.space_id then
      where = { space_id = target.space_id, bound_for = where.bound_for,
        query = { spaceId = target.space_id or "personal" } }
    end
    local fingerprint = common.definition_fingerprint(app)
    local data = { space_id = where.space_id, name = target.name, bound_for = where.bound_for,
      staged = where.bound_for ~= nil, fingerprint = fingerprint }

    local me = ctx.target:me()
    local marked, not_exported = 0, false
    local r = ctx.ensure {
      -- 1. recorded by an earlier run and still there
      get = function(id)
        local reply = ctx.target:find("apps/" .. id)
        return type(reply) == "table" and type(reply.attributes) == "table" and reply.attributes or nil
      end,
      -- 2. marked by an earlier attempt (a lost reply, a crash, a lost
      -- cache); 3. imported by an interrupted attempt that never wrote the
      -- marker (its importing name is this source app's alone)
      candidates = function()
        local found = by_marker(ctx, app, where)
        marked = #found
        if #found == 0 and ctx.resume then
          local half = retrieve.unmarked_app(ctx.target, common.importing_name(target.name, app.id), where.query,
            me.id)
          if half then half.half_imported = true; found[1] = half end
        end
        return found
      end,
      mine = { by = function(item) return item.ownerId == me.id end, created = item_created },
      -- a half-finished import of an attempt that is not this item's own
      -- is left alone and the app imported anew
      adopt = function(item) return not item.half_imported end,
      others = "ignore",
      -- 4. import
      create = function()
        local file = common.export_path(ctx, app.id)
        local st = fs.stat(file)
        if not st or st.type ~= "file" then
          if ctx.dry_run then
            error(setmetatable({ method = "POST", path = "/api/v1/apps/import" }, cloud.DryRun), 0)
          end
          not_exported = true
          return nil
        end
        data.file = "exports/apps/" .. fs.basename(file)
        local attrs = upload(ctx, file, st.size, { name = common.importing_name(target.name, app.id),
          space_id = where.space_id })
        -- (the undo first: a failed marker write must not leave an app undo forgets)
        ctx.undo { method = "DELETE", path = "apps/" .. attrs.id }
        mark(ctx, attrs.id, target, app.id)
        return attrs
      end,
      id = function(o) return o.resourceId or o.id end,
      undo = function(id, o)
        if o.half_imported then mark(ctx, id, target, app.id) end
        return { method = "DELETE", path = "apps/" .. id }
      end,
    }
    if not_exported then return { status = "skipped", reason = "not exported yet (run apps.export first)" } end
    if r.how == "recorded" then
      local known = r.object
      local pdata = type(ctx.previous.data) == "table" and ctx.previous.data or {}
      data.fingerprint = pdata.fingerprint or fingerprint
      data.space_id, data.name = pdata.space_id, pdata.name or known.name
      local content = data.fingerprint ~= fingerprint
        and "; its content is left as it is (changed at the source since it was imported)" or ""
      if ctx.previous.created_by_us and known.name ~= target.name then
        -- an app renamed at the source (or by the app hook) keeps following
        -- it, as spaces follow their streams; never one this project adopted
        ctx.change("name", known.name, target.name)
        ctx.undo { action = "restore", method = "PUT", path = "apps/" .. known.id,
          body = { attributes = { name = known.name, description = known.description } }, forget = false }
        mark(ctx, known.id, target, app.id)
        data.name = target.name
        return { status = "updated", target_id = known.id, data = data,
          reason = "renamed from '" .. tostring(known.name) .. "'" .. content }
      end
      if data.fingerprint ~= fingerprint then
        -- "unchanged", not "skipped": the app is imported and later steps
        -- (which act on done records) keep working on it
        return { status = "unchanged", target_id = known.id, data = data,
          reason = "changed at the source since it was imported; the imported app is left as it is" }
      end
      return { status = "unchanged", target_id = known.id, data = data }
    end
    local reason
    if r.how == "recovered" then
      reason = r.object.half_imported and "recovered after an interrupted import"
        or "recovered after an interrupted attempt"
    elseif r.status == "adopted" and marked > 1 then
      reason = marked .. " apps carry this marker; the oldest is used"
    end
    return { status = r.status, target_id = r.id, data = data, natural_key = retrieve.marker_token(app.id),
      reason = reason }
  end,
}
