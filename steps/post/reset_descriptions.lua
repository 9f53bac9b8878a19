-- Reset App Descriptions (QAMT Post Migration): removes the qmig-lua marker
-- from the description of each imported app and of its published copy,
-- giving back the original description.  Run it last, once every other
-- step is finished: afterwards the apps can no longer be found by their
-- marker in the tenant.  Later runs still find them through the cache
-- (apps.import checks the app it recorded before searching by marker), but
-- a lost project folder or apps.delete then only reach apps in the cache.
-- Undo puts the markers back.
--
-- Items come from the cache (kind "app" and "app.published"), so apps
-- imported by earlier waves are covered even when the plan's scope moved
-- on; the fingerprint is the set of target apps.
local errors = require "qmig.clients.errors"
local retrieve = require "qmig.clients.retrieve"

local function live(rec)
  return rec and rec.target_id and rec.status ~= "deleted" and rec.status ~= "failed" and rec.status ~= "in_progress"
end

return {
  name = "post.reset_descriptions", object = "app.description",
  produces = { data = { "reset" } },
  consumes = { { kind = "app" }, { kind = "app.published" } },
  requires = { "apps.import" },
  items = function(ctx)
    local out = {}
    for _, rec in ipairs(ctx.cache:items("app")) do
      if live(rec) then
        local x = { id = rec.source_id, apps = { rec.target_id } }
        local pub = ctx.cache:get("app.published", rec.source_id)
        if live(pub) and pub.target_id ~= rec.target_id then x.apps[2] = pub.target_id end
        out[#out + 1] = x
      end
    end
    return out
  end,
  key = function(x) return x.id end,
  fingerprint = function(x) return table.concat(x.apps, ",") end,
  run = function(ctx, x)
    local changed, missing = {}, {}
    for _, app_id in ipairs(x.apps) do
      local ok, reply = pcall(ctx.target.get, ctx.target, "apps/" .. app_id)
      if not ok then
        if not (errors.is(reply) and reply.status == 404) then error(reply, 0) end
        missing[#missing + 1] = app_id
      else
        local description = reply.attributes and reply.attributes.description or ""
        local source_id, original = retrieve.read_marker(description)
        if source_id == x.id then
          ctx.undo { action = "restore", method = "PUT", path = "apps/" .. app_id, forget = false,
            target_id = app_id, body = { attributes = { description = description } } }
          ctx.target:put("apps/" .. app_id, { attributes = { description = original } })
          changed[#changed + 1] = app_id
        end
      end
    end
    local reason = #missing > 0 and ("gone from the tenant: " .. table.concat(missing, ", ")) or nil
    if #changed == 0 then return { status = "unchanged", target_id = x.apps[1], reason = reason } end
    return { status = "updated", target_id = x.apps[1], reason = reason, data = { reset = changed } }
  end,
}
