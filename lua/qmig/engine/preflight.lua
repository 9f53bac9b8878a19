-- The day-one preflight of `qmig-lua check` (docs/qmig-lua.1): everything that
-- would make a migration fail, found before anything is written.  Only
-- reads.  Each finding: {level = "ok" | "warn" | "fail", text = ...}.
local assets = require "qmig.domain.assets"
local errors = require "qmig.clients.errors"
local glob = require "qmig.job.glob"
local identity_spaces = require "qmig.domain.spaces"
local identity_users = require "qmig.domain.users"
local retrieve = require "qmig.clients.retrieve"

local M = {}

-- QRS releases before November 2022 (14.97) cannot export community and
-- private sheets (exportScope).
local function version_number(v)
  local major, minor = tostring(v or ""):match("^(%d+)%.(%d+)")
  return major and (tonumber(major) * 1000 + tonumber(minor)) or nil
end

local function add(out, level, fmt, ...)
  out[#out + 1] = { level = level, text = string.format(fmt, ...) }
end

local function try(out, what, fn)
  local ok, err = pcall(fn)
  if not ok then add(out, "warn", "%s: could not check (%s)", what, errors.is(err) and err.message or tostring(err)) end
end

-- M.run(job, source, target, transforms) -> findings
function M.run(job, source, target, transforms)
  local out = {}
  local ctx = { plan = job.plan, job = job, source = source, target = target, transforms = transforms or {},
    transform = function(name, ...)
      local hook = (transforms or {})[name]
      if hook then return hook(...) end
      return (select(name == "script" and 1 or 2, ...))
    end }

  try(out, "QRS version", function()
    local about = source:about()
    local v = version_number(about.buildVersion)
    if v and v < 14097 and job.plan.apps and job.plan.apps.export_scope ~= "approved" then
      add(out, "warn", "QRS %s predates November 2022: only approved (base) sheets can be exported",
        about.buildVersion)
    else
      add(out, "ok", "QRS %s", tostring(about.buildVersion))
    end
  end)

  local largest = 0
  local identity = target.oauth and "the OAuth client" or "the API key"
  try(out, identity, function()
    local me = target:me()
    local roles = {}
    for _, r in ipairs(type(me.assignedRoles) == "table" and me.assignedRoles or {}) do roles[#roles + 1] = r.name end
    local admin = false
    for _, r in ipairs(roles) do admin = admin or r == "TenantAdmin" end
    add(out, admin and "ok" or "warn", "%s acts as %s (roles: %s)%s", identity, tostring(me.email or me.name or me.id),
      #roles > 0 and table.concat(roles, ", ") or "none",
      admin and "" or "; creating spaces, users and owners needs TenantAdmin")
  end)

  try(out, "upload quota", function()
    for _, app in ipairs(source:full("app")) do
      if type(app.fileSize) == "number" and app.fileSize > largest then largest = app.fileSize end
    end
    local q = target:get("quotas/app_upload_disk_size")
    local quota = q and q.data and q.data[1] and q.data[1].attributes and q.data[1].attributes.quota
    if type(quota) == "number" and quota >= 0 and largest > quota then
      add(out, "fail", "the largest app (%d MiB) exceeds the tenant's upload quota (%d MiB)",
        largest >> 20, quota >> 20)
    else
      add(out, "ok", "largest app %d MiB, within the upload quota", largest >> 20)
    end
  end)

  try(out, "identity providers", function()
    local idps = target:get("identity-providers")
    local names = {}
    for _, p in ipairs(idps and idps.data or idps or {}) do
      names[#names + 1] = tostring(p.provider) .. "/" .. tostring(p.protocol)
    end
    add(out, "ok", "identity providers: %s (user subjects follow their format)",
      #names > 0 and table.concat(names, ", ") or "none")
  end)

  try(out, "users", function()
    local users = identity_users.in_scope(ctx)
    local unmapped = {}
    for _, u in ipairs(users) do
      local m = identity_users.mapping(job.plan, u)
      if not m.email then unmapped[#unmapped + 1] = m.dir_user end
    end
    if #unmapped > 0 then
      add(out, "warn", "%d of %d users in scope have no email and will be matched by subject only: %s",
        #unmapped, #users, table.concat(unmapped, ", "))
    else
      add(out, "ok", "%d users in scope, all with an email", #users)
    end
  end)

  try(out, "spaces", function()
    local n = 0
    for _, item in ipairs(identity_spaces.items(ctx)) do
      if item.problem then add(out, "fail", "space %s: %s", tostring(item.name or item.key), item.problem) end
      if item.missing then add(out, "warn", "plan.spaces.map names stream '%s', which does not exist", item.missing) end
      n = n + 1
    end
    add(out, "ok", "%d spaces planned", n)
  end)

  -- The spaces plan.qlikview maps folders to: qvapps.import (steps/qvapps/import.lua,
  -- placement) skips the documents of a folder whose space is not in the tenant, and
  -- `plan` says so; check warns as it does for a stream of plan.spaces.map that is missing.
  try(out, "QlikView spaces", function()
    local qv = job.plan.qlikview
    if type(qv) ~= "table" or not (qv.spaces or qv.publish) then return end
    -- (a space spaces.create will make, when the job runs it, is there by then)
    local creates, planned = false, {}
    for _, j in ipairs(job.jobs or {}) do
      for _, st in ipairs(j.steps or {}) do creates = creates or st == "spaces.create" or st.name == "spaces.create" end
    end
    for _, item in ipairs(creates and identity_spaces.items(ctx) or {}) do
      if item.name then planned[item.name] = true end
    end
    for _, key in ipairs { "spaces", "publish" } do
      local names = {}
      for folder, name in pairs(qv[key] or {}) do names[#names + 1] = { folder = folder, name = name } end
      table.sort(names, function(x, y) return x.folder < y.folder end)
      for _, m in ipairs(names) do
        local sp = retrieve.space(target, m.name)
        if not sp and not planned[m.name] then
          add(out, "warn", "plan.qlikview.%s maps folder '%s' to space '%s', which is not in the tenant "
            .. "(create it first: qvapps.import skips its documents)", key, m.folder, m.name)
        elseif sp and key == "publish" and sp.type ~= "managed" then
          add(out, "warn", "plan.qlikview.publish maps folder '%s' to space '%s', which is not a managed space",
            m.folder, m.name)
        end
      end
    end
  end)

  try(out, "data connections", function()
    local dc = job.plan.data_connections
    if not dc then return end
    local without = {}
    for _, c in ipairs(source:full("dataconnection")) do
      if glob.any(dc.names, c.name, true)
        and not assets.map_entry(dc.map or {}, { c.name, assets.strip_owner_suffix(c.name, c.owner) }) then
        without[#without + 1] = c.name
      end
    end
    if #without > 0 then
      add(out, "warn", "%d data connections have no target space in plan.data_connections.map: %s", #without,
        table.concat(without, ", "))
    end
  end)
  return out
end

-- check JOB: M.check(opts, say, complain) -> exit status.  Loads the job
-- file and its transforms, opens both connections (dry run: no write can
-- leave), says who they are, then the findings of M.run.
function M.check(opts, say, complain)
  local runner = require "qmig.engine.job"
  local EXIT = runner.EXIT
  local job, err = runner.load(opts)
  if not job then complain("%s", err); return EXIT.config end
  local hooks, terr = require("qmig.job.transforms").load(job.transforms)
  if not hooks then complain("%s", terr); return EXIT.config end
  for _, text in ipairs(require("qmig.engine.contract").check(job)) do complain("warning: %s", text) end
  local source, target, status = require("qmig.clients.connect").open(job, { dry_run = true })
  if not source then complain("%s", target); return status end
  local about = source:about()
  say("job file %s: valid", job.file)
  say("source %s: QRS %s", job.source.url, tostring(about.buildVersion))
  local me = target:me()
  say("target %s: authenticated as %s with %s", job.target.url, tostring(me and (me.email or me.name or me.id)),
    target:auth_description())
  local failed = false
  for _, f in ipairs(M.run(job, source, target, hooks)) do
    say("%-4s %s", f.level, f.text)
    failed = failed or f.level == "fail"
  end
  return failed and EXIT.failed or EXIT.ok
end

return M
