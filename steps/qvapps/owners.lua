-- Update QlikView Application Owners: QlikView has no app owner as Qlik
-- Sense does, so the owner comes from plan.qlikview.owners (the document's
-- path below the share, or its name -> an email or subject), found among
-- the tenant's users; then apps.owners changes the owner of the app users
-- open (qmig.domain.qlikview.variant).  A document without a mapping, or whose
-- owner has no Cloud user, is skipped with the reason.
local variant = require "qmig.domain.qlikview.variant"
local retrieve = require "qmig.clients.retrieve"
local base = require "qmig.steps.apps.owners"

return variant.of(base, {
  name = "qvapps.owners", object = "qvapp.owner",
  requires = { "qvapps.import" },
  items = function(ctx)
    local map = ctx.plan.qlikview and ctx.plan.qlikview.owners or {}
    local qv = variant.ctx(ctx)
    local items = require("qmig.domain.apps").imported(qv)
    for _, item in ipairs(items) do
      item.open_id = qv.app_for(item.id) or item.app_id
      local who = map[item.id] or map[item.name]
      item.owner = { userDirectory = "QlikView", userId = who or "(none)" }
      -- (one request per owner for the step's run: items() is called again
      -- as documents get through the steps before, qmig.engine.overlap)
      local users = ctx.memo.owners or {}
      ctx.memo.owners = users
      if who and users[who] == nil then
        local user = retrieve.user(ctx.target, { email = who:find("@", 1, true) and who or nil, subject = who })
        users[who] = user and user.id or false
      end
      item.owner_to = who and users[who] or false
      item.mapped = who ~= nil
    end
    return items
  end,
  run = function(ctx, item)
    if not item.mapped then
      return { status = "skipped", target_id = item.open_id, reason = "no owner for it in plan.qlikview.owners" }
    end
    if not item.owner_to then
      return { status = "skipped", target_id = item.open_id,
        reason = "owner " .. item.owner.userId .. " has no Cloud user" }
    end
    return base.run(variant.ctx(ctx), item)
  end,
})
