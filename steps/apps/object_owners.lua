-- apps.object_owners — Update App Object Owners (QAMT
-- "Update App Object Owners").
--
-- After an import every sheet, story and bookmark belongs to the importing
-- identity.  This step gives each community and private object back to the
-- Cloud user mapped (users.import, kind "user") to its QSEoW owner, using
-- the object list apps.export recorded (kind "app.export", data.objects:
-- {engineObjectId, objectType, name, state, owner {id, userId,
-- userDirectory}}; appObjects.json when the cache has no record): POST /apps/{appId}/objects/{engineObjectId}/actions/
-- change-owner {ownerId}.  Base objects stay with the app.
--
-- Only an object's CURRENT owner may call change-owner, so each object is
-- given away exactly once:
--   * progress is recorded per object as it happens (a cache event of kind
--     "app.object_owners", status "object_owner", data {app_id, object,
--     owner}: the engine stores an item's data only when run returns, and a
--     run may be killed half-way through an app's objects), and again in
--     the item's data (data.done) when the app is finished; a resumed or
--     re-run step skips every object found there;
--   * a 403 ("only the current owner ...") for an object not yet recorded
--     means an earlier attempt gave it away and died before recording it
--     (its mapped owner holds it now): it counts as done.
-- Objects whose owner has no mapped Cloud user are skipped and listed in
-- the reason; when the mapping appears later (users.import), the item's
-- fingerprint changes and the next run gives those objects away too.
-- Undo: irreversible (the importer no longer owns the objects, and only
-- their owner can give them back).
--
-- One source app, two target apps (the imported one, the published one) —
-- the choice: this step runs
-- before apps.publish (190 < 220) on the imported app, and apps.publish
-- publishes apps bound for a managed space with `moveApp: true`, which
-- moves that very app (same id) into the managed space keeping every
-- object with its owner and state.  A publish that copies would bring
-- only base objects, owned by the publisher.  On a run after a publish the
-- step works on ctx.app_for(id), the app users open.
local common = require "qmig.domain.apps"
local errors = require "qmig.clients.errors"
local json = require "qmig.json"

local KIND = "app.object_owners"
local NON_BASE = { community = true, private = true }

local function label(o)
  return string.format("%s '%s' (%s)", tostring(o.type), tostring(o.name), tostring(o.id))
end

return {
  name = "apps.object_owners",
  object = KIND,
  produces = { data = { "app_id", "done", "skipped", "missing" } },
  consumes = {
    { kind = "app", data = { "space_id", "bound_for" } },
    { kind = "app.published" },
    { kind = "app.export", data = { "objects" } },
    { kind = "user" },
  },
  requires = { "apps.export", "apps.import" },
  items = function(ctx)
    local items, memo = common.imported(ctx), {}
    for _, item in ipairs(items) do
      item.open_id = ctx.app_for(item.id) or item.app_id
      local list = common.export_objects(ctx, item.id, memo)
      if type(list) == "table" then
        local objects = json.array()
        for _, o in ipairs(list) do
          if NON_BASE[o.state] and o.engineObjectId and o.exported ~= false then
            local owner = type(o.owner) == "table" and o.owner or {}
            objects[#objects + 1] = {
              id = o.engineObjectId, type = o.objectType, name = o.name, state = o.state,
              owner = common.user_label(owner), owner_to = common.user(ctx, owner.id) or false,
            }
          end
        end
        table.sort(objects, function(a, b) return a.id < b.id end)
        item.objects = objects
      end
    end
    return items
  end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(item) return item.id end,
  run = function(ctx, item)
    local app_id = item.open_id
    if not item.objects then
      return { status = "skipped", target_id = app_id,
        reason = "no object list for this app: run apps.export (export scope 'all' or 'published')" }
    end
    if #item.objects == 0 then
      return { status = "unchanged", target_id = app_id, reason = "no community or private objects",
        data = { app_id = app_id, done = {} } }
    end
    -- what earlier attempts and runs already gave away
    local done = {}
    local prev = ctx.previous and type(ctx.previous.data) == "table" and ctx.previous.data
    if prev and prev.app_id == app_id and type(prev.done) == "table" then
      for id, owner in pairs(prev.done) do done[id] = owner end
    end
    for _, ev in ipairs(ctx.cache:events { kind = KIND, source_id = item.id }) do
      local d = ev.data
      if ev.status == "object_owner" and type(d) == "table" and d.app_id == app_id then done[d.object] = d.owner end
    end
    local me = ctx.target:me()
    local given, earlier, skipped, missing, failed = 0, 0, {}, {}, {}
    local function record(o)
      done[o.id] = o.owner_to
      if not ctx.dry_run then
        ctx.cache:event { run_id = ctx.run_id, step = ctx.step, kind = KIND, source_id = item.id,
          status = "object_owner", message = "owner of " .. label(o) .. " -> " .. o.owner_to,
          data = { app_id = app_id, object = o.id, owner = o.owner_to } }
      end
    end
    for _, o in ipairs(item.objects) do
      if not o.owner_to then
        skipped[#skipped + 1] = label(o) .. ": owner " .. o.owner .. " has no Cloud user"
      elseif done[o.id] == o.owner_to then
        earlier = earlier + 1
      elseif o.owner_to == me.id then
        done[o.id] = o.owner_to   -- already the importer's: nothing to give
      else
        local ok, err = pcall(ctx.target.post, ctx.target,
          "apps/" .. app_id .. "/objects/" .. o.id .. "/actions/change-owner", { ownerId = o.owner_to })
        if ok then
          given = given + 1
          record(o)
        elseif not errors.is(err) or err.unknown or err.auth or err.transient then
          error(err, 0)   -- dry run, lost reply (resume looks again), auth, outage
        elseif err.status == 403 then
          -- not ours any more: an earlier attempt gave it away unrecorded
          earlier = earlier + 1
          record(o)
        elseif err.status == 404 then
          missing[#missing + 1] = label(o)
        else
          failed[#failed + 1] = label(o) .. ": " .. tostring(err)
        end
      end
    end
    if given > 0 then
      ctx.undo { action = "irreversible", target_id = app_id,
        reason = string.format("%d object(s) of app %s given to their owners: only those owners can give them back",
          given, app_id) }
    end
    if #failed > 0 then
      common.fail(string.format("%d object owner change(s) failed: %s", #failed, common.list(failed, 4)))
    end
    local notes = {}
    if #skipped > 0 then notes[#notes + 1] = #skipped .. " skipped: " .. common.list(skipped) end
    if #missing > 0 then notes[#notes + 1] = #missing .. " not in the app: " .. common.list(missing) end
    local data = { app_id = app_id, done = done, skipped = #skipped, missing = #missing }
    local status
    if given > 0 then status = "updated"
    elseif #skipped > 0 and earlier == 0 and next(done) == nil then status = "skipped"
    elseif earlier > 0 and not (prev and prev.app_id == app_id) then status = "updated"
    else status = "unchanged" end
    return { status = status, target_id = app_id, data = data,
      reason = #notes > 0 and table.concat(notes, "; ") or nil }
  end,
}
