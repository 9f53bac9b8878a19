-- Delete Users: deletes the Qlik Cloud users this project created
-- (users.import with plan.users.create_missing), never adopted ones.  A
-- user already gone counts as deleted.  Irreversible: undo lists it.
local errors = require "qmig.errors"

return {
  name = "users.delete", title = "Delete Users", order = 10,
  object = "user.delete",
  items = function(ctx)
    local out = {}
    for _, rec in ipairs(ctx.cache:items("user")) do
      if rec.created_by_us and rec.status ~= "deleted" and rec.target_id then out[#out + 1] = rec end
    end
    return out
  end,
  key = function(rec) return rec.source_id end,
  fingerprint = function(rec) return rec.target_id end,
  run = function(ctx, rec)
    local who = rec.data and (rec.data.dir_user or rec.data.email) or rec.source_id
    local ok, err = pcall(ctx.target.delete, ctx.target, "users/" .. rec.target_id)
    if not ok and not (errors.is(err) and err.status == 404) then error(err, 0) end
    ctx.forget("user", rec.source_id)
    ctx.undo { action = "irreversible", reason = "deleted Cloud user " .. rec.target_id .. " (" .. who ..
      "); users.import with create_missing creates it again" }
    return { status = "deleted", target_id = rec.target_id,
      reason = ok and ("deleted user " .. who) or ("user " .. who .. " was already gone") }
  end,
}
