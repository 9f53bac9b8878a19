-- Delete Users: deletes the Qlik Cloud users this project created
-- (users.import with plan.users.create_missing), never adopted ones.  A
-- user already gone counts as deleted.  Irreversible: undo lists it.
return {
  name = "users.delete",
  object = "user.delete",
  produces = {},
  consumes = { { kind = "user", data = { "email", "dir_user" } } },
  items = function(ctx) return ctx.created("user") end,
  key = function(rec) return rec.source_id end,
  fingerprint = function(rec) return rec.target_id end,
  run = function(ctx, rec)
    local who = rec.data and (rec.data.dir_user or rec.data.email) or rec.source_id
    local deleted = ctx.target:remove("users/" .. rec.target_id)
    ctx.forget("user", rec.source_id)
    ctx.undo { action = "irreversible", reason = "deleted Cloud user " .. rec.target_id .. " (" .. who ..
      "); users.import with create_missing creates it again" }
    return { status = "deleted", target_id = rec.target_id,
      reason = deleted and ("deleted user " .. who) or ("user " .. who .. " was already gone") }
  end,
}
