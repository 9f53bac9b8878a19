-- spaces.describe (an example step pack): writes into the description of
-- every space this project made from a stream where it came from, so
-- people in Qlik Cloud can tell migrated spaces apart.  Runs after
-- spaces.create; undo puts the old description back.
local function description(stream)
  return "Migrated from the QSEoW stream '" .. stream.name .. "'"
end

return {
  name = "spaces.describe", title = "Describe Migrated Spaces", order = 135, object = "space.description",
  requires = { "spaces.create" },
  items = function(ctx) return ctx.source:full("stream") end,
  key = function(stream) return stream.id end,
  fingerprint = function(stream) return stream.name end,
  run = function(ctx, stream)
    local space_id = ctx.lookup("space", stream.id)
    if not space_id then return { status = "skipped", reason = "no space was made from this stream" } end
    local space = ctx.target:get("spaces/" .. space_id)
    local wanted = description(stream)
    if space.description == wanted then return { status = "unchanged", target_id = space_id } end
    ctx.undo { action = "restore", method = "PATCH", path = "spaces/" .. space_id, forget = false,
      body = { { op = "replace", path = "/description", value = space.description } } }
    ctx.target:patch("spaces/" .. space_id, { { op = "replace", path = "/description", value = wanted } })
    return { status = "updated", target_id = space_id }
  end,
}
