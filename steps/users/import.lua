-- Import Users: finds each exported user in the Qlik Cloud tenant by email,
-- then by subject ('DIR\userid', then userid@domain) and adopts it.  A
-- user not in the tenant is created (status "invited"; no invitation is
-- sent) only with plan.users.create_missing, else skipped.  The `user`
-- hook of transforms.lua gets (QRS user, {subject, email, name, status})
-- and may change the identity looked for and created, or drop the user.
-- Cache: kind "user", key = QRS user id, target = Cloud user id,
-- data = {email, subject, dir_user}.
local errors = require "qmig.errors"
local identity = require "qmig.identity.users"
local json = require "qmig.json"
local retrieve = require "qmig.retrieve"

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
  name = "users.import", title = "Import Users", order = 80,
  object = "user",
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
  run = function(ctx, item)
    local m = item.mapping
    local want = ctx.transform("user", item.user, { subject = m.subject, email = m.email, name = m.name,
      status = "invited" })
    if want == nil then return { status = "skipped", reason = "left out by the transforms.lua user hook" } end
    local subjects = { want.subject or nil }
    for _, s in ipairs(m.subjects) do if s ~= want.subject then subjects[#subjects + 1] = s end end
    local found, how = find(ctx, want, subjects)
    if found then
      -- our own create whose reply was lost: still ours
      local ours = ctx.resume and ctx.started_at and found.subject == want.subject
        and tostring(found.createdAt or "") >= ctx.started_at
      if ours then ctx.undo { method = "DELETE", path = "users/" .. found.id } end
      return { status = ours and "created" or "adopted", target_id = found.id,
        natural_key = found.email or found.subject, reason = not ours and (m.dir_user .. " found by " .. how) or nil,
        data = { email = found.email or want.email, subject = found.subject, dir_user = m.dir_user } }
    end
    local looked = (want.email and ("email " .. want.email .. ", ") or "") .. "subject " .. table.concat(subjects, ", ")
    if not (ctx.plan.users and ctx.plan.users.create_missing) then
      return { status = "skipped", reason = m.dir_user .. " is not in the tenant (looked for " .. looked ..
        "); plan.users.create_missing: true creates it" }
    end
    local ok, user = pcall(ctx.target.post, ctx.target, "users",
      { subject = want.subject, email = want.email, name = want.name, status = want.status or "invited" })
    if not ok then
      if errors.is(user) and user.status == 409 then
        error(errors.new { message = "cannot create " .. m.dir_user .. ": the tenant already has a user with " ..
          "that subject or email, but it was not found by " .. looked }, 0)
      end
      error(user, 0)
    end
    ctx.undo { method = "DELETE", path = "users/" .. user.id }
    return { status = "created", target_id = user.id, natural_key = user.email or user.subject,
      data = { email = want.email, subject = want.subject, dir_user = m.dir_user } }
  end,
}
