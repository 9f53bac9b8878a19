-- Delete Data Connections: deletes the Qlik Cloud
-- connections this project created (cache kind "dataconnection", created
-- by us), never adopted ones.  The dataconnection record is then marked
-- deleted, so a later dataconnections.migrate creates it again.
return {
  name = "dataconnections.delete",
  object = "dataconnection.delete",
  produces = {},
  consumes = { { kind = "dataconnection", data = { "name" } } },

  items = function(ctx)
    local out = {}
    for _, rec in ipairs(ctx.created("dataconnection")) do
      out[#out + 1] = { id = rec.source_id, target_id = rec.target_id, name = rec.data and rec.data.name }
    end
    return out
  end,

  key = function(item) return item.id end,
  fingerprint = function(item) return item.target_id end,

  run = function(ctx, item)
    local deleted = ctx.target:remove("data-connections/" .. item.target_id)
    ctx.undo { action = "irreversible", reason = "data connection '" .. tostring(item.name) .. "' was deleted" }
    ctx.forget("dataconnection", item.id)
    return { status = "deleted", target_id = item.target_id, reason = not deleted and "already gone" or nil }
  end,
}
