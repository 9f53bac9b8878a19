-- Delete Spaces: deletes the spaces this project created (spaces.create,
-- the staging space included), never adopted ones.  Qlik Cloud deletes
-- only empty spaces: a space still holding apps or data connections (412)
-- is skipped with that reason, so delete those first (apps.delete,
-- dataconnections.delete run before this step).  A space already gone
-- counts as deleted.  Irreversible: undo lists it.
local errors = require "qmig.clients.errors"

return {
  name = "spaces.delete",
  object = "space.delete",
  produces = {},
  consumes = { { kind = "space", data = { "name" } } },
  items = function(ctx) return ctx.created("space") end,
  key = function(rec) return rec.source_id end,
  fingerprint = function(rec) return rec.target_id end,
  run = function(ctx, rec)
    local name = rec.data and rec.data.name or rec.target_id
    local ok, deleted = pcall(ctx.target.remove, ctx.target, "spaces/" .. rec.target_id)
    if not ok then
      if errors.is(deleted) and deleted.status == 412 then
        return { status = "skipped", target_id = rec.target_id,
          reason = "space '" .. name .. "' is not empty (apps or data connections): Qlik Cloud refuses to delete it" }
      end
      error(deleted, 0)
    end
    ctx.forget("space", rec.source_id)
    ctx.undo { action = "irreversible", reason = "deleted space '" .. name .. "' (" .. rec.target_id ..
      "); spaces.create makes a new one" }
    return { status = "deleted", target_id = rec.target_id,
      reason = deleted and ("deleted space '" .. name .. "'") or ("space '" .. name .. "' was already gone") }
  end,
}
