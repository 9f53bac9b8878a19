-- Reload Applications: reloads each imported app (the app users open:
-- ctx.app_for, i.e. the published copy once there is one) with POST
-- /reloads and polls GET /reloads/{id} until it ends.  SUCCEEDED -> the
-- item is done (target_id = the reload id); FAILED, CANCELED or
-- EXCEEDED_LIMIT -> the item fails with the engine's message, and the next
-- run reloads it again (fix the connection or the script first).
-- Apps not imported are skipped.
--
-- A previous attempt that may have started a reload (reply lost, crash)
-- is resolved by looking for a reload of that app started by us since the
-- attempt began (ctx.ensure), and following it instead of starting another.
--
-- Polling is bounded: M.poll.first seconds after the start, doubling up to
-- M.poll.max between polls, giving up after M.poll.timeout seconds (the
-- reload goes on in Qlik Cloud; the next run finds it again, see above).
local errors = require "qmig.clients.errors"
local qmig = require "qmig"
local scope = require "qmig.domain.scope"

local POLL = { first = 0.05, max = 10, timeout = 3600 }
local ENDED = { SUCCEEDED = true, FAILED = true, CANCELED = true, EXCEEDED_LIMIT = true }

-- Reloads of app_id by the importing identity, newest first; one that
-- ended badly is not reused (this attempt reloads again).
local function our_reloads(ctx, app_id)
  local me = ctx.target:me()
  local reply = ctx.target:get("reloads", { appId = app_id, sort = "-creationTime", limit = 10 })
  local out = {}
  for _, r in ipairs(type(reply) == "table" and reply.data or {}) do
    if (r.status == "SUCCEEDED" or not ENDED[r.status]) and r.userId == me.id then out[#out + 1] = r end
  end
  return out
end

local function wait(ctx, reload)
  local delay, deadline = POLL.first, qmig.monotonic() + POLL.timeout
  while not ENDED[reload.status] do
    if qmig.monotonic() > deadline then
      error(errors.new { message = string.format("reload %s of app %s still %s after %d s", reload.id,
        reload.appId, tostring(reload.status), POLL.timeout) }, 0)
    end
    qmig.sleep(delay)
    delay = math.min(delay * 2, POLL.max)
    reload = ctx.target:get("reloads/" .. reload.id)
  end
  return reload
end

return {
  name = "apps.reload", object = "app.reload",
  produces = { data = { "app_id", "app_kind", "status", "endTime" } },
  consumes = { { kind = "app" }, { kind = "app.published" } },
  requires = { "apps.import" },
  poll = POLL,
  items = function(ctx) return scope.list(ctx) end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(app) return app.id end,
  -- Reloaded once: a changed source app is not re-imported by apps.import,
  -- so there is nothing new to reload (apps.delete forgets the reload of
  -- the apps it deletes, so a re-import is reloaded again).
  fingerprint = function() return "v1" end,
  run = function(ctx, app)
    local app_id, kind = ctx.app_for(app.id)
    if not app_id then return { status = "skipped", reason = "not imported" } end
    -- a reload started by an earlier attempt (reply lost, crash) is
    -- followed; one started before it is no reason not to reload
    local r = ctx.ensure {
      -- (not `ctx.resume and ...` here: this reload, once made, is a
      -- witness for the items of the step in doubt, looked for by this
      -- function; ctx.resume stays false for it, and its look found
      -- nothing, so no witness ever counted and each lost reply of
      -- POST /reloads waited the whole options.catalogue_lag: bench/,
      -- part 6, 40 s over the step's tasks)
      candidates = function() return our_reloads(ctx, app_id) end,
      fresh_look = false,  -- (a special-tier request saved per reload)
      mine = { created = function(x) return x.creationTime end },
      adopt = function() return false end,
      others = "ignore",
      create = function() return ctx.target:post("reloads", { appId = app_id, partial = false }) end,
    }
    local reload = wait(ctx, r.object)
    if reload.status ~= "SUCCEEDED" then
      error(errors.new { message = string.format("reload %s: %s%s%s", reload.status,
        tostring(reload.errorCode or ""), reload.errorMessage and ": " or "", tostring(reload.errorMessage or "")) }, 0)
    end
    return { status = "created", target_id = reload.id,
      data = { app_id = app_id, app_kind = kind, status = reload.status, endTime = reload.endTime } }
  end,
}
