-- apps.publish — Publish Applications (QAMT "Publish
-- Applications").
--
-- Apps whose stream maps to a MANAGED space were imported into the staging
-- space (managed spaces take no imports).  This step publishes each of
-- them into its managed space and records the result under its own kind,
-- `app.published` (key QRS app id, target = the published app), so
-- ctx.app_for(id) — the app users open — finds it (one source app, two
-- target apps: the cache keeps both, kinds "app" and "app.published").
--
-- First publish: POST /apps/{staged}/publish {spaceId, moveApp: true}.
-- moveApp moves the imported app itself (same id) into the managed space
-- and keeps every object with its state and owner: apps.object_owners ran
-- before (190 < 220) on that app, so the owners it set survive.  (A copy
-- would carry base objects only, owned by the publisher.)
-- Re-runs: an app already published is republished in place —
-- PUT /apps/{source}/publish {targetId} — only when the imported app
-- changed (a re-import gives a new staged app or a new import
-- fingerprint); the published app keeps its id.  A moved app that is
-- still where it was published is left alone (zero writes).
-- Resume: a staged app already in the managed space (the move happened,
-- the reply was lost) is adopted; so is a copy in the managed space whose
-- originAppId is the staged app.
-- Skipped: personal apps, apps whose space is shared (imported in place),
-- streams without a mapped managed space, and everything when
-- plan.apps.publish is false.
-- Undo: a move or a republish cannot be taken back through the API without
-- losing the app (recorded as irreversible: apps.delete / undo of
-- apps.import delete the app itself).  An adopted copy is not ours to
-- delete: nothing is recorded for it.
local common = require "qmig.domain.apps"

local function publish_wanted(ctx)
  local apps = ctx.plan and ctx.plan.apps
  return not (apps and apps.publish == false)
end

-- A copy of `staged` in the managed space (published earlier by copy).
local function find_copy(ctx, space_id, staged)
  for it in ctx.target:each("items", { resourceType = "app", spaceId = space_id }) do
    local attrs = type(it.resourceAttributes) == "table" and it.resourceAttributes or {}
    if attrs.originAppId == staged then return it.resourceId end
  end
  return nil
end

return {
  name = "apps.publish",
  object = "app.published",
  produces = { data = { "mode", "space_id", "staged" } },
  consumes = { { kind = "app", data = { "space_id", "bound_for" } }, { kind = "space", data = { "type" } } },
  requires = { "apps.import", "spaces.create" },
  items = function(ctx)
    local items = common.imported(ctx)
    local wanted = publish_wanted(ctx)
    for _, item in ipairs(items) do
      item.managed = common.managed_space(ctx, item) or false
      item.publish = wanted
    end
    return items
  end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(item) return item.id end,
  fingerprint = function(item)
    return table.concat({ item.app_id, item.import_fp or "", tostring(item.managed), tostring(item.publish) }, "|")
  end,
  -- (moved, the published app is the imported one: the engine reads it once)
  target_path = function(rec) return "apps/" .. rec.target_id end,
  -- a plan's publish moves the app it would import: same id, in the
  -- managed space
  planned = function(item, ctx)
    if not item.managed then return nil end
    return { target_id = item.app_id, data = { mode = "move", space_id = item.managed, staged = item.app_id },
      object = { attributes = { name = item.name, ownerId = ctx.target:me().id, spaceId = item.managed } } }
  end,
  run = function(ctx, item)
    if not item.publish then return { status = "skipped", reason = "plan.apps.publish is false" } end
    if not item.stream then
      return { status = "skipped", reason = "personal app: it stays in its owner's personal space" }
    end
    if not item.managed then
      return { status = "skipped", reason = "stream '" .. tostring(item.stream.name) .. "' has no managed space "
        .. "(shared spaces hold the imported app itself)" }
    end
    local staged, space_id = item.app_id, item.managed
    local published = ctx.lookup("app.published", item.id)
    if published then
      local pub = common.app(ctx, published)
      if pub and pub.spaceId == space_id then
        if published == staged then
          return { status = "unchanged", target_id = published,
            data = { mode = "move", space_id = space_id, staged = staged } }
        end
        -- the imported app changed: republish into the same published app
        ctx.target:put("apps/" .. staged .. "/publish", {
          targetId = published, data = "source", checkOriginAppId = pub.originAppId == staged,
        })
        ctx.undo { action = "irreversible", target_id = published,
          reason = "republished app " .. published .. " from " .. staged .. ": its previous content is replaced" }
        return { status = "updated", target_id = published, reason = "republished in place",
          data = { mode = "republish", space_id = space_id, staged = staged } }
      end
    end
    local r = ctx.ensure {
      find = function()
        local app = common.app(ctx, staged)
        if not app then common.fail("the imported app " .. staged .. " no longer exists: run apps.import again") end
        -- moved by an earlier attempt whose outcome was never recorded
        if app.spaceId == space_id then return { id = staged, mode = "move" } end
        -- (a copy is someone else's: the items catalogue, which may lag)
        local copy = find_copy(ctx, space_id, staged)
        return copy and { id = copy, mode = "copy" } or nil
      end,
      -- What this item's own write makes, a move (moveApp), is seen by the
      -- read of the app by id above, which is never behind: an attempt in
      -- doubt (its reply lost) looks once.  Waiting out the catalogue's lag
      -- here found nothing the read had not, and cost options.catalogue_lag
      -- per lost reply (bench/, part 6: 36 s over the step's tasks).
      consistent = true,
      create = function()
        local reply = ctx.target:post("apps/" .. staged .. "/publish",
          { spaceId = space_id, moveApp = true, data = "source" })
        return { id = reply and reply.attributes and reply.attributes.id or staged, mode = "move" }
      end,
      undo = function(id)
        return { action = "irreversible", target_id = id, reason = "app " .. id .. " was moved into managed space "
          .. space_id .. " (moveApp); undoing apps.import deletes it" }
      end,
    }
    return { status = r.status, target_id = r.id,
      reason = r.status == "adopted" and r.object.mode == "copy" and "a published copy of the imported app exists"
        or nil,
      data = { mode = r.object.mode, space_id = space_id, staged = staged } }
  end,
}
