-- Create Spaces: one space per stream in scope (named by the rules of
-- lua/qmig/domain/spaces.lua; managed unless plan.spaces.map says
-- otherwise) plus the shared staging space (key "@staging") when a target
-- space is managed.  An existing space of that name is adopted.  A stream
-- renamed since it was migrated renames the space this project created.
-- Cache: kind "space", key = QRS stream id, target = space id,
-- data = {name, type} (the actual type of an adopted space).
local errors = require "qmig.clients.errors"
local retrieve = require "qmig.clients.retrieve"
local spaces = require "qmig.domain.spaces"

local function fail(message) error(errors.new { message = message }, 0) end

local function outcome(status, space, item, reason)
  return { status = status, target_id = space.id, natural_key = space.name, reason = reason,
    data = { name = space.name, type = space.type or item.type } }
end

-- A space this project created keeps following its stream: renamed when
-- the name it should have changed (a stream renamed, a new
-- plan.spaces.map entry, a run undone).
local function rename(ctx, item, space)
  if retrieve.space(ctx.target, item.name) then
    fail("cannot rename space '" .. space.name .. "' to '" .. item.name .. "': a space of that name exists")
  end
  ctx.change("name", space.name, item.name)
  ctx.undo { action = "restore", method = "PATCH", path = "spaces/" .. space.id,
    body = { { op = "replace", path = "/name", value = space.name } } }
  ctx.target:patch("spaces/" .. space.id, { { op = "replace", path = "/name", value = item.name } })
  local old = space.name
  space.name = item.name
  return outcome("updated", space, item, "renamed from '" .. old .. "'")
end

return {
  name = "spaces.create",
  object = "space",
  produces = { data = { "name", "type" }, keys = { "@staging" } },
  consumes = {},
  items = spaces.items,
  key = function(item) return item.key end,
  fingerprint = function(item)
    return table.concat({ tostring(item.name), tostring(item.type), tostring(item.description),
      tostring(item.problem), tostring(item.left_out) }, "|")
  end,
  -- is the space still in the tenant? (a done record is otherwise not looked at again)
  target_path = function(rec) return "spaces/" .. rec.target_id end,
  -- what a plan records for later steps (apps.import reads the type)
  planned = function(item) return { data = { name = item.name, type = item.type } } end,
  run = function(ctx, item)
    if item.missing then
      return { status = "skipped", reason = "plan.spaces.map names stream '" .. item.missing ..
        "', which the source does not have" }
    end
    if item.left_out then return { status = "skipped", reason = "left out by the transforms.lua space hook" } end
    if item.problem then fail(item.problem) end
    local prev = ctx.previous
    local r = ctx.ensure {
      -- the recorded space, when this project made it (an adopted one of
      -- another name is not followed: the space of the new name is)
      get = function(id)
        local space = ctx.target:find("spaces/" .. id)
        if space and (prev.created_by_us or space.name == item.name) then return space end
        return nil
      end,
      find = function() return retrieve.space(ctx.target, item.name) end,
      unique = true,  -- space names are (a 409, below)
      mine = { by = function(space) return space.createdBy == ctx.target:me().id end,
        created = function(space) return space.createdAt end },
      create = function()
        local ok, made = pcall(ctx.target.post, ctx.target, "spaces",
          { name = item.name, type = item.type, description = item.description })
        if ok then return made end
        -- made meanwhile by someone else (another qmig-lua project on this
        -- tenant): space names are unique, so that space is the one
        if errors.is(made) and made.status == 409 then
          local existing = ctx.listed(function() return retrieve.space(ctx.target, item.name) end)
          if existing then return existing, "exists" end
        end
        error(made, 0)
      end,
      undo = function(id) return { method = "DELETE", path = "spaces/" .. id } end,
    }
    local space = r.object
    if r.how == "recorded" and space.name ~= item.name then return rename(ctx, item, space) end
    local reason = r.status == "adopted" and space.type ~= item.type
      and string.format("the existing space is %s, not %s", tostring(space.type), item.type) or nil
    return outcome(r.status, space, item, reason)
  end,
}
