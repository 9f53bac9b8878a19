-- Create Spaces: one space per stream in scope (named by the rules of
-- lua/qmig/identity/spaces.lua; managed unless plan.spaces.map says
-- otherwise) plus the shared staging space (key "@staging") when a target
-- space is managed.  An existing space of that name is adopted.  A stream
-- renamed since it was migrated renames the space this project created.
-- Cache: kind "space", key = QRS stream id, target = space id,
-- data = {name, type} (the actual type of an adopted space).
local errors = require "qmig.errors"
local retrieve = require "qmig.retrieve"
local spaces = require "qmig.identity.spaces"

local function fail(message) error(errors.new { message = message }, 0) end

-- A space this project's identity made since the item's first attempt:
-- the work of an attempt whose reply was lost.
local function ours(ctx, space)
  return ctx.resume and ctx.started_at and space.createdBy == spaces.me(ctx.target).id
    and tostring(space.createdAt or "") >= ctx.started_at
end

local function outcome(status, space, item, reason)
  return { status = status, target_id = space.id, natural_key = space.name, reason = reason,
    data = { name = space.name, type = space.type or item.type } }
end

-- The space this project created on an earlier run, if it still exists;
-- renamed when the name it should have changed (a stream renamed, a new
-- plan.spaces.map entry, a run undone).
local function reconcile(ctx, item, prev)
  local ok, space = pcall(ctx.target.get, ctx.target, "spaces/" .. prev.target_id)
  if not ok then
    if errors.is(space) and space.status == 404 then return nil end
    error(space, 0)
  end
  if space.name == item.name then return outcome("unchanged", space, item) end
  if retrieve.space(ctx.target, item.name) then
    fail("cannot rename space '" .. space.name .. "' to '" .. item.name .. "': a space of that name exists")
  end
  ctx.undo { action = "restore", method = "PATCH", path = "spaces/" .. space.id,
    body = { { op = "replace", path = "/name", value = space.name } } }
  ctx.target:patch("spaces/" .. space.id, { { op = "replace", path = "/name", value = item.name } })
  local old = space.name
  space.name = item.name
  return outcome("updated", space, item, "renamed from '" .. old .. "'")
end

return {
  name = "spaces.create", title = "Create Spaces", order = 130,
  object = "space",
  items = spaces.items,
  key = function(item) return item.key end,
  fingerprint = function(item)
    return table.concat({ tostring(item.name), tostring(item.type), tostring(item.description),
      tostring(item.problem), tostring(item.left_out) }, "|")
  end,
  run = function(ctx, item)
    if item.missing then
      return { status = "skipped", reason = "plan.spaces.map names stream '" .. item.missing ..
        "', which the source does not have" }
    end
    if item.left_out then return { status = "skipped", reason = "left out by the transforms.lua space hook" } end
    if item.problem then fail(item.problem) end
    local prev = ctx.previous
    if prev and prev.target_id and prev.created_by_us then
      local res = reconcile(ctx, item, prev)
      if res then return res end
    end
    local existing = retrieve.space(ctx.target, item.name)
    if existing then
      if ours(ctx, existing) then
        ctx.undo { method = "DELETE", path = "spaces/" .. existing.id }
        return outcome("created", existing, item)
      end
      local reason = existing.type ~= item.type and string.format("the existing space is %s, not %s",
        tostring(existing.type), item.type) or nil
      if prev and prev.target_id == existing.id then return outcome("unchanged", existing, item, reason) end
      return outcome("adopted", existing, item, reason)
    end
    local space = ctx.target:post("spaces", { name = item.name, type = item.type, description = item.description })
    ctx.undo { method = "DELETE", path = "spaces/" .. space.id }
    return outcome("created", space, item)
  end,
}
