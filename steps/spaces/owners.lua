-- Update Space Owners: the stream owner (or plan.spaces.owners[stream]:
-- 'DIR\userid' or an email) becomes the space owner (PATCH /ownerId).
-- Users resolve through users.import (cache kind "user"); an owner not in
-- the tenant, or a service account (INTERNAL\sa_repository owns the
-- default streams), is skipped with the reason.  Before the migration
-- identity hands a space over, it keeps facilitator + publisher (managed)
-- or producer (shared) so later steps can still import and publish.
-- Undo puts the previous owner back.  Cache: kind "space.owner", key =
-- stream id, target = space id, data = {owner_id}.
local identity = require "qmig.domain.users"
local retrieve = require "qmig.clients.retrieve"
local names = require "qmig.store.names"
local scope = require "qmig.domain.scope"
local spaces = require "qmig.domain.spaces"

local KEEP = { managed = { "facilitator", "publisher" }, data = { "facilitator", "publisher" },
  shared = { "facilitator", "producer" } }

local function items(ctx)
  local streams = scope.streams(ctx)
  if #streams == 0 then return {} end
  local idx = identity.index(ctx.source:full("user"))
  local out = {}
  for _, s in ipairs(streams) do
    local space = spaces.space_of(ctx, s.id)
    local item = { stream = { id = s.id, name = s.name }, space_id = space and space.id,
      space_type = space and space.type }
    local ref = scope.ci_get(ctx.plan.spaces and ctx.plan.spaces.owners, s.name)
    if ref and ref:find("@", 1, true) and not ref:find("\\", 1, true) then
      item.owner = ref
      local u = retrieve.user(ctx.target, { email = ref })
      if u then item.owner_id = u.id else item.why = ref .. " is not in the tenant" end
    else
      local u = ref and identity.find(idx, ref) or (type(s.owner) == "table" and idx.by_id[s.owner.id])
      item.owner = ref or (type(s.owner) == "table" and identity.dir_user(s.owner)) or "(none)"
      if not u then
        item.why = "owner " .. item.owner .. " is not a user of the source"
      elseif identity.skipped(ctx.plan, u) then
        item.why = "owner " .. item.owner .. " is a service account (plan.users.skip_directories)"
      else
        item.owner_id = ctx.lookup("user", u.id)
        if not item.owner_id then item.why = "owner " .. item.owner .. " is not in the tenant (users.import)" end
      end
    end
    out[#out + 1] = item
  end
  return out
end

return {
  name = "spaces.owners",
  object = "space.owner",
  produces = { data = { "owner_id", "previous_owner_id" } },
  consumes = { { kind = "space", data = { "name", "type" } }, { kind = "user" } },
  requires = { "spaces.create", "users.import" },
  items = items,
  key = function(item) return item.stream.id end,
  run = function(ctx, item)
    if not item.space_id then
      return { status = "skipped", reason = "no space for stream '" .. item.stream.name .. "' yet (spaces.create)" }
    end
    if not item.owner_id then return { status = "skipped", reason = item.why } end
    local path = "spaces/" .. item.space_id
    local space = ctx.target:get(path)
    if space.ownerId == item.owner_id then
      return { status = "unchanged", target_id = item.space_id, data = { owner_id = item.owner_id } }
    end
    local me = ctx.target:me()
    if space.ownerId == me.id and KEEP[space.type] and not ctx.dry_run then  -- a plan shows the owner change
      spaces.ensure(ctx, item.space_id, spaces.assignments(ctx, item.space_id), "user", me.id, KEEP[space.type])
    end
    ctx.change("owner", names.cloud_user(ctx.target, space.ownerId), item.owner)
    ctx.undo { action = "restore", method = "PATCH", path = path,
      body = { { op = "replace", path = "/ownerId", value = space.ownerId } } }
    ctx.target:patch(path, { { op = "replace", path = "/ownerId", value = item.owner_id } })
    return { status = "updated", target_id = item.space_id, reason = "owner " .. item.owner,
      data = { owner_id = item.owner_id, previous_owner_id = space.ownerId } }
  end,
}
