-- Import Users: finds each exported user in the Qlik Cloud tenant by email,
-- then by subject ('DIR\userid', then userid@domain) and adopts it.  A
-- user not in the tenant is created (status "invited"; no invitation is
-- sent) only with plan.users.create_missing, else skipped.  The `user`
-- hook of transforms.lua gets (QRS user, {subject, email, name, status})
-- and may change the identity looked for and created, or drop the user.
-- Cache: kind "user", key = QRS user id, target = Cloud user id,
-- data = {email, subject, dir_user}.
local errors = require "qmig.clients.errors"
local identity = require "qmig.domain.users"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"

local function find(ctx, want, subjects)
  if want.email then
    local u = retrieve.user(ctx.target, { email = want.email })
    if u then return u, "email " .. want.email end
  end
  for _, s in ipairs(subjects) do
    local u = retrieve.user(ctx.target, { subject = s })
    if u then return u, "subject " .. s end
  end
  return nil
end

return {
  name = "users.import",
  object = "user",
  produces = { data = { "email", "subject", "dir_user" } },
  consumes = {},
  requires = { "users.export" },
  items = function(ctx)
    local items = {}
    for _, u in ipairs((identity.in_scope(ctx))) do
      items[#items + 1] = { user = u, mapping = identity.mapping(ctx.plan, u) }
    end
    return items
  end,
  key = function(item) return item.user.id end,
  fingerprint = function(item) return json.encode(item.mapping, { sort_keys = true }) end,
  -- A user deleted in the tenant is reported, not invited back: a tenant
  -- admin removing someone (offboarding, a licence taken back) is a
  -- decision a re-run must not undo behind their back; --force makes it
  -- again.
  target_path = function(rec) return "users/" .. rec.target_id end,
  if_gone = "report",
  run = function(ctx, item)
    local m = item.mapping
    local want = ctx.transform("user", item.user, { subject = m.subject, email = m.email, name = m.name,
      status = "invited" })
    if want == nil then return { status = "skipped", reason = "left out by the transforms.lua user hook" } end
    local subjects = { want.subject or nil }
    for _, s in ipairs(m.subjects) do if s ~= want.subject then subjects[#subjects + 1] = s end end
    local how
    local looked = (want.email and ("email " .. want.email .. ", ") or "") .. "subject " .. table.concat(subjects, ", ")
    local create_missing = ctx.plan.users and ctx.plan.users.create_missing
    local r = ctx.ensure {
      -- the recorded user, while it is still the one the mapping names
      get = function(id)
        local u = ctx.target:find("users/" .. id)
        if not u then return nil end
        if want.email and type(u.email) == "string" and u.email:lower() == want.email:lower() then return u end
        for _, sub in ipairs(subjects) do if u.subject == sub then return u end end
        return nil
      end,
      find = function()
        local u
        u, how = find(ctx, want, subjects)
        return u
      end,
      -- a user carries no creator: one with the subject this item gives,
      -- made since its attempt began, is that attempt's
      mine = { by = function(u) return u.subject == want.subject end, created = function(u) return u.createdAt end },
      -- a subject or an email is (a 409, below): but a user is looked
      -- for by several, and created only with create_missing
      unique = create_missing and true or false,
      create = create_missing and function()
        local ok, user = pcall(ctx.target.post, ctx.target, "users",
          { subject = want.subject, email = want.email, name = want.name, status = want.status or "invited" })
        if ok then return user end
        if errors.is(user) and user.status == 409 then
          -- made meanwhile, and not listed yet?
          local u = ctx.listed(function() return (find(ctx, want, subjects)) end)
          if u then return u, "exists" end
          error(errors.new { message = "cannot create " .. m.dir_user .. ": the tenant already has a user with " ..
            "that subject or email, but it was not found by " .. looked }, 0)
        end
        error(user, 0)
      end or nil,
      undo = function(id) return { method = "DELETE", path = "users/" .. id } end,
    }
    if not r.object then
      return { status = "skipped", reason = m.dir_user .. " is not in the tenant (looked for " .. looked ..
        "); plan.users.create_missing: true creates it" }
    end
    local u = r.object
    return { status = r.status, target_id = r.id, natural_key = u.email or u.subject,
      reason = r.status == "adopted" and (m.dir_user .. " found by " .. how) or nil,
      data = { email = u.email or want.email, subject = u.subject or want.subject, dir_user = m.dir_user } }
  end,
}
