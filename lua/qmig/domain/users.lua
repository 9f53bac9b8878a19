-- Users: which QRS users a plan migrates, and how each maps to a Qlik
-- Cloud identity (plan.users in docs/job-file.md).
--
-- Email, first rule that gives one:
--   1. plan.users.map['DIR\userid'] (explicit; keys compared ignoring case)
--   2. the QRS user's attribute email / Email / mail (any case)
--   3. plan.users.domains[DIR]: userid (lower-cased) @ domain
-- Subject candidates, tried in order after the email: 'DIR\userid' (what
-- a Qlik Cloud tenant behind the same directory, or a JWT IdP, sees),
-- then userid@domain when the directory has a domain rule.
-- Users of plan.users.skip_directories (default INTERNAL) are never
-- migrated.
--
-- Scope (plan.users.scope): `all` = every user not skipped; `content`
-- (default) = the users a migration of this plan needs: owners of the
-- streams, apps (and their sheets/stories/bookmarks) and data connections
-- in scope, users named in plan.spaces.assignments / owners,
-- plan.apps.shares and plan.users.map, and users named by security rules
-- on streams in scope.
local glob = require "qmig.job.glob"
local rules = require "qmig.domain.rules"
local scope = require "qmig.domain.scope"

local M = {}

function M.dir_user(u)
  return tostring(u.userDirectory) .. "\\" .. tostring(u.userId)
end

local function skip_dirs(plan)
  local users = plan and plan.users
  return users and users.skip_directories or { "INTERNAL" }
end

function M.skipped(plan, u)
  local dir = tostring(u.userDirectory or ""):lower()
  for _, d in ipairs(skip_dirs(plan)) do
    if d:lower() == dir then return true end
  end
  return false
end

local EMAIL_TYPES = { email = true, mail = true }

function M.email_attribute(u)
  for _, a in ipairs(type(u.attributes) == "table" and u.attributes or {}) do
    if type(a) == "table" and EMAIL_TYPES[tostring(a.attributeType):lower()]
      and type(a.attributeValue) == "string" and a.attributeValue:find("@", 1, true) then
      return a.attributeValue
    end
  end
  return nil
end

-- M.mapping(plan, u) -> {email, email_source, subject, subjects, name,
-- source_id, dir_user}; email may be nil (no rule gives one).
function M.mapping(plan, u)
  local users = plan and plan.users or {}
  local dir_user = M.dir_user(u)
  local domain = scope.ci_get(users.domains, u.userDirectory)
  local email, source = scope.ci_get(users.map, dir_user), "map"
  if not email then email, source = M.email_attribute(u), "attribute" end
  if not email and domain then email, source = tostring(u.userId):lower() .. "@" .. domain, "domain" end
  if not email then source = nil end
  local subjects = { dir_user }
  if domain then
    local guess = tostring(u.userId):lower() .. "@" .. domain
    if guess ~= dir_user then subjects[#subjects + 1] = guess end
  end
  return {
    email = email, email_source = source, subject = dir_user, subjects = subjects,
    name = u.name, source_id = u.id, dir_user = dir_user,
  }
end

-- Index of QRS users: by id, and by lower-case 'dir\userid'.
function M.index(list)
  local idx = { by_id = {}, by_dir_user = {}, list = list }
  for _, u in ipairs(list) do
    idx.by_id[u.id] = u
    idx.by_dir_user[M.dir_user(u):lower()] = u
  end
  return idx
end

-- A plan reference ('DIR\userid') -> the QRS user, or nil.
function M.find(idx, ref)
  if type(ref) ~= "string" then return nil end
  return idx.by_dir_user[ref:lower()]
end

-- QRS users a rule assignee names ({user_id=, directory=} | {user_name=}).
function M.matching(idx, who)
  local out = {}
  for _, u in ipairs(idx.list) do
    local hit
    if who.user_id then
      hit = tostring(u.userId):lower() == who.user_id:lower()
        and (not who.directory or tostring(u.userDirectory):lower() == who.directory:lower())
    elseif who.user_name then
      hit = type(u.name) == "string" and u.name:lower() == who.user_name:lower()
    end
    if hit then out[#out + 1] = u end
  end
  return out
end

local function add_owner(set, obj)
  local o = type(obj) == "table" and obj.owner
  if type(o) == "table" and o.id then set[o.id] = true end
end

-- M.in_scope(ctx) -> list of QRS users (sorted by DIR\userid), the index of
-- all QRS users, and warnings (plan references that match no user).
function M.in_scope(ctx)
  local plan = ctx.plan or {}
  local idx = M.index(ctx.source:full("user"))
  local warnings = {}
  local wanted = {}
  local mode = plan.users and plan.users.scope or "content"
  local function want_ref(ref, where)
    if type(ref) ~= "string" or ref:find("@", 1, true) and not ref:find("\\", 1, true) then return end
    local u = M.find(idx, ref)
    if u then wanted[u.id] = true
    else warnings[#warnings + 1] = string.format("%s names %s: no such user in the source", where, ref) end
  end
  if mode == "all" then
    for _, u in ipairs(idx.list) do wanted[u.id] = true end
  else
    local all_streams = ctx.source:full("stream")
    local streams = scope.streams(ctx, all_streams)
    local stream_ids, globs = {}, scope.stream_globs(plan)
    for _, s in ipairs(streams) do
      add_owner(wanted, s)
      if glob.any(globs, s.name, false) then stream_ids[s.id] = true end
    end
    local apps = scope.apps(ctx, stream_ids)
    if #apps > 0 then
      local app_ids = {}
      for _, a in ipairs(apps) do app_ids[a.id] = true; add_owner(wanted, a) end
      for _, o in ipairs(ctx.source:full("app/object")) do
        if type(o.app) == "table" and app_ids[o.app.id] then add_owner(wanted, o) end
      end
    end
    for _, c in ipairs(scope.data_connections(ctx)) do add_owner(wanted, c) end
    local spaces = plan.spaces or {}
    for stream, list in pairs(spaces.assignments or {}) do
      for _, a in ipairs(list) do if a.user then want_ref(a.user, "plan.spaces.assignments." .. stream) end end
    end
    for stream, ref in pairs(spaces.owners or {}) do want_ref(ref, "plan.spaces.owners." .. stream) end
    for app, list in pairs(plan.apps and plan.apps.shares or {}) do
      for _, a in ipairs(list) do if a.user then want_ref(a.user, "plan.apps.shares." .. app) end end
    end
    if #streams > 0 then
      local all_rules = ctx.source:full("systemrule")
      for _, s in ipairs(streams) do
        if not scope.ci_get(spaces.assignments, s.name) then
          for _, g in ipairs((rules.derive(all_rules, s))) do
            if not g.who.group then
              for _, u in ipairs(M.matching(idx, g.who)) do wanted[u.id] = true end
            end
          end
        end
      end
    end
  end
  for ref in pairs(plan.users and plan.users.map or {}) do want_ref(ref, "plan.users.map") end
  local out = {}
  for id in pairs(wanted) do
    local u = idx.by_id[id]
    if u and not M.skipped(plan, u) then out[#out + 1] = u end
  end
  table.sort(out, function(a, b) return M.dir_user(a):lower() < M.dir_user(b):lower() end)
  table.sort(warnings)
  return out, idx, warnings
end

return M
