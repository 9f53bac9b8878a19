-- Export Users: the QRS users this plan migrates, and the identity each
-- maps to in Qlik Cloud (lua/qmig/domain/users.lua has the rules).
-- Writes users.json and userMappings.json into the project folder (not in
-- a dry run) and records one "user.export" item per user; never touches
-- the target.  userMappings.json: {"DIR\\userid": {email, subject, name,
-- source_id}}; a user without an email maps by subject only.
local identity = require "qmig.domain.users"
local errors = require "qmig.clients.errors"
local json = require "qmig.json"

return {
  name = "users.export",
  object = "user.export",
  produces = { data = { "email", "subject", "name", "dir_user", "source" } },
  consumes = {},
  items = function(ctx)
    local users, _, warnings = identity.in_scope(ctx)
    for _, w in ipairs(warnings) do ctx.log.warn(w) end
    local items, listing, mappings = {}, json.array(), {}
    for _, u in ipairs(users) do
      local m = identity.mapping(ctx.plan, u)
      items[#items + 1] = { user = u, mapping = m }
      mappings[m.dir_user] = { email = m.email, subject = m.subject, name = m.name, source_id = m.source_id }
      listing[#listing + 1] = {
        id = u.id, userDirectory = u.userDirectory, userId = u.userId, name = u.name,
        roles = u.roles or json.array(), inactive = u.inactive, email = m.email, email_source = m.email_source,
        subjects = m.subjects,
      }
    end
    if not ctx.dry_run then
      assert(ctx.project:write_json("users.json", listing))
      assert(ctx.project:write_json("userMappings.json", mappings))
    end
    return items
  end,
  key = function(item) return item.user.id end,
  fingerprint = function(item) return json.encode(item.mapping, { sort_keys = true }) end,
  run = function(ctx, item)
    local m = item.mapping
    local outcome = {
      status = ctx.previous and ctx.previous.target_id and "updated" or "created",
      target_id = m.email or m.subject, natural_key = m.dir_user,
      reason = not m.email and "no email (no attribute, map entry or domain rule): matched by subject only" or nil,
      data = { email = m.email, subject = m.subject, name = m.name, dir_user = m.dir_user, source = m.email_source },
    }
    if ctx.dry_run then
      -- a plan writes no users.json: the mapping is what it would export
      error(setmetatable({ method = "export", path = "users.json", target_id = outcome.target_id,
        data = outcome.data }, errors.DryRun), 0)
    end
    return outcome
  end,
}
