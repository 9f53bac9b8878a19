-- apps.owners — Update Application Owners (QAMT
-- "Update Application Owners").
--
-- The owner of the app users open (ctx.app_for: the published app when
-- there is one, else the imported one) becomes the Cloud user mapped by
-- users.import to the QSEoW app owner: PUT /apps/{id}/owner {ownerId}.
-- For a personal ("My work") app this is what moves it into its owner's
-- personal space.  It runs last among the app steps (280): every step
-- before it needs the importing identity to own the app.
--   * an owner without a mapped Cloud user: skipped, named in the reason
--     (the app stays with the importer); once the mapping exists the
--     fingerprint changes and the next run sets it;
--   * already owned by the mapped user: unchanged, no write.
-- The previous owner is recorded in the item's data and in the undo
-- journal, as irreversible: once ownership left the importing
-- identity, taking it back needs the new owner or an administrator in the
-- hub.
local common = require "qmig.domain.apps"
local names = require "qmig.store.names"

return {
  name = "apps.owners",
  object = "app.owner",
  produces = { data = { "owner", "previous_owner" } },
  consumes = { { kind = "app", data = { "space_id", "bound_for" } }, { kind = "app.published" }, { kind = "user" } },
  requires = { "apps.import", "users.import" },
  items = function(ctx)
    local items = common.imported(ctx)
    for _, item in ipairs(items) do
      item.open_id = ctx.app_for(item.id) or item.app_id
      item.owner_to = common.user(ctx, item.owner.id) or false
    end
    return items
  end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(item) return item.id end,
  run = function(ctx, item)
    local app_id = item.open_id
    if not item.owner_to then
      return { status = "skipped", target_id = app_id,
        reason = "owner " .. common.user_label(item.owner) .. " has no Cloud user (run users.import)" }
    end
    local app = common.app(ctx, app_id)
    if not app then common.fail("app " .. app_id .. " no longer exists") end
    local previous = app.ownerId
    if previous == item.owner_to then
      local prev = ctx.previous and type(ctx.previous.data) == "table" and ctx.previous.data
      if ctx.resume and not prev then
        -- an earlier attempt changed it and died before recording: the
        -- owner before was the importing identity
        local me = ctx.target:me().id
        ctx.undo { action = "irreversible", target_id = app_id, previous_owner = me,
          reason = "owner of app " .. app_id .. " changed from " .. me .. " to " .. item.owner_to }
        return { status = "updated", target_id = app_id, data = { owner = item.owner_to, previous_owner = me } }
      end
      return { status = "unchanged", target_id = app_id,
        data = { owner = item.owner_to, previous_owner = prev and prev.previous_owner or previous } }
    end
    ctx.change("owner", names.cloud_user(ctx.target, previous), common.user_label(item.owner))
    ctx.target:put("apps/" .. app_id .. "/owner", { ownerId = item.owner_to })
    ctx.undo { action = "irreversible", target_id = app_id, previous_owner = previous,
      reason = string.format("owner of app %s changed from %s to %s: only the new owner or an administrator can "
        .. "change it back", app_id, tostring(previous), item.owner_to) }
    return { status = "updated", target_id = app_id, data = { owner = item.owner_to, previous_owner = previous } }
  end,
}
