-- apps.shares — Add Shares To Applications (QAMT "Add Shares To
-- Applications").
--
-- plan.apps.shares maps an app name (as in QSEoW; exact, else
-- case-insensitive) to a list of {user = 'DIR\user' | email, roles} or
-- {group = name, roles}.  Each entry becomes an app-level share on the app
-- users open (ctx.app_for: the published app when there is one):
-- POST /spaces/{spaceId}/shares {assigneeId, resourceId, resourceType:
-- "app", roles, type}.
--   * users resolve through users.import (kind "user", by the QRS user
--     id); an entry with '@' is looked up by email; groups by name;
--   * an assignee that does not resolve is skipped and named in the reason
--     (QAMT: "skipped without error"); once it resolves, the item's
--     fingerprint changes and the next run adds it;
--   * a share that already exists for the assignee is not duplicated
--     (listing first; a 409 on a resumed write counts as existing); one
--     whose roles differ is reported, not changed (the API has no update);
--   * personal apps have no space to share in: skipped.
-- Undo: DELETE of each share created.
local common = require "qmig.domain.apps"
local errors = require "qmig.clients.errors"
local json = require "qmig.json"
local qrs = require "qmig.clients.qrs"
local retrieve = require "qmig.clients.retrieve"

local function shares_for(plan_shares, name)
  if type(plan_shares) ~= "table" or not name then return nil end
  if plan_shares[name] then return plan_shares[name] end
  local lower = name:lower()
  for k, v in pairs(plan_shares) do
    if type(k) == "string" and k:lower() == lower then return v end
  end
  return nil
end

-- Resolves one plan entry -> type, assignee id (or false), label.
local function resolver(ctx)
  -- (in ctx.memo: items() is called again as apps get through the steps
  -- before, qmig.engine.overlap, and each look-up is a request)
  local memo = ctx.memo.assignees or {}
  ctx.memo.assignees = memo
  return function(entry)
    local typ, who = entry.group and "group" or "user", entry.group or entry.user
    local key = typ .. ":" .. tostring(who)
    if memo[key] == nil then
      local id = false
      if typ == "group" then
        local g = retrieve.group(ctx.target, who)
        id = g and g.id or false
      elseif type(who) == "string" and who:find("@", 1, true) then
        local u = retrieve.user(ctx.target, { email = who })
        id = u and u.id or false
      elseif type(who) == "string" then
        local dir, uid = who:match("^([^\\]+)\\(.+)$")
        if dir then
          local users = ctx.source:full("user", qrs.all { qrs.eq("userDirectory", dir), qrs.eq("userId", uid) })
          for _, u in ipairs(users) do
            id = common.user(ctx, u.id) or id
          end
        end
      end
      memo[key] = id
    end
    return typ, memo[key], typ .. " " .. tostring(who)
  end
end

local function same_roles(a, b)
  local set = {}
  for _, r in ipairs(a or {}) do set[r] = true end
  local n = 0
  for _, r in ipairs(b or {}) do
    if not set[r] then return false end
    n = n + 1
  end
  return n == #(a or {})
end

return {
  name = "apps.shares",
  object = "app.shares",
  produces = { data = { "app_id", "space_id", "created", "existing", "skipped" } },
  consumes = {
    { kind = "app", data = { "space_id", "bound_for" } },
    { kind = "app.published" },
    { kind = "space", data = { "name" } },
    { kind = "user" },
  },
  requires = { "apps.import", "users.import" },
  items = function(ctx)
    local plan_shares = ctx.plan and ctx.plan.apps and ctx.plan.apps.shares
    local out = json.array()
    if type(plan_shares) ~= "table" or next(plan_shares) == nil then return out end
    local resolve = resolver(ctx)
    for _, item in ipairs(common.imported(ctx)) do
      local entries = shares_for(plan_shares, item.name)
      if entries then
        item.open_id = ctx.app_for(item.id) or item.app_id
        item.shares = json.array()
        for _, e in ipairs(entries) do
          local typ, id, label = resolve(e)
          item.shares[#item.shares + 1] = { type = typ, assignee = id, label = label,
            roles = json.array(e.roles or { "consumer" }) }
        end
        out[#out + 1] = item
      end
    end
    return out
  end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(item) return item.id end,
  run = function(ctx, item)
    local app_id = item.open_id
    local app = common.app(ctx, app_id)
    if not app then common.fail("app " .. app_id .. " no longer exists") end
    local space_id = app.spaceId
    if not space_id or space_id == "" then
      return { status = "skipped", target_id = app_id, reason = "personal app: shares need a shared or managed space" }
    end
    local path = "spaces/" .. space_id .. "/shares"
    local existing = {}
    for sh in ctx.target:each(path, { resourceId = app_id }) do
      if sh.resourceId == app_id then existing[sh.type .. ":" .. tostring(sh.assigneeId)] = sh end
    end
    local created, kept, skipped, notes = 0, 0, {}, {}
    for _, s in ipairs(item.shares) do
      if not s.assignee then
        skipped[#skipped + 1] = s.label
      else
        local have = existing[s.type .. ":" .. s.assignee]
        if have then
          kept = kept + 1
          if not same_roles(have.roles, s.roles) then
            notes[#notes + 1] = s.label .. " already shared with roles " .. table.concat(have.roles or {}, ",")
          end
        else
          local ok, reply = pcall(ctx.target.post, ctx.target, path, {
            assigneeId = s.assignee, resourceId = app_id, resourceType = "app", roles = s.roles, type = s.type,
          })
          if ok then
            created = created + 1
            if reply and reply.id then
              ctx.undo { method = "DELETE", path = path .. "/" .. reply.id, target_id = app_id }
            end
          elseif errors.is(reply) and reply.status == 409 then
            kept = kept + 1   -- created by an attempt whose reply was lost
          else
            error(reply, 0)
          end
        end
      end
    end
    if #skipped > 0 then notes[#notes + 1] = #skipped .. " assignee(s) not found: " .. common.list(skipped) end
    local reason = #notes > 0 and table.concat(notes, "; ") or nil
    local data = { app_id = app_id, space_id = space_id, created = created, existing = kept, skipped = #skipped }
    if created > 0 then return { status = "created", target_id = app_id, reason = reason, data = data } end
    if kept > 0 then return { status = "unchanged", target_id = app_id, reason = reason, data = data } end
    return { status = "skipped", target_id = app_id, reason = reason, data = data }
  end,
}
