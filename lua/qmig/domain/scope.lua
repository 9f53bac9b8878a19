-- What the plan puts in scope (the `plan` part of docs/job-file.md): streams,
-- apps and data connections read from the QRS, filtered by the plan's
-- case-insensitive globs (qmig.job.glob).  Read-only; one QRS call per
-- entity type.  The one place app scope is decided: the application steps
-- (apps.export, apps.import, apps.reload, apps.delete, apps.schedules,
-- tags.migrate: M.list) and the identity steps (users.export: M.apps over
-- the streams it counts) share M.in_scope.
--
-- plan.apps, all case-insensitive:
--   streams  globs over stream names; a published app is in scope when its
--            stream matches one of them.  Absent: every stream ('*').  [] :
--            no published app.
--   personal true: unpublished ("My work") apps too (default false).
--   names    globs over app names; absent or []: every name.
--   tags     only apps carrying one of these QRS tags; absent or []: no filter.
--   exclude  {names = globs, tags = list}: apps matching either are left out.
-- A glob has `*` (any run of characters, `/` included) and `?` (one
-- character); every other character stands for itself.
local glob = require "qmig.job.glob"

local M = {}

-- Case-insensitive look-up in a plan map keyed by names (streams,
-- DIR\userid): the exact key first, then any key equal ignoring case.
function M.ci_get(map, name)
  if type(map) ~= "table" or type(name) ~= "string" then return nil end
  if map[name] ~= nil then return map[name], name end
  local lname = name:lower()
  for k, v in pairs(map) do
    if type(k) == "string" and k:lower() == lname then return v, k end
  end
  return nil
end

local function by_name(list)
  table.sort(list, function(a, b)
    local la, lb = tostring(a.name):lower(), tostring(b.name):lower()
    if la ~= lb then return la < lb end
    return tostring(a.id) < tostring(b.id)
  end)
  return list
end

function M.stream_globs(plan)
  return plan and plan.apps and plan.apps.streams or { "*" }
end

-- Streams in scope, sorted by name then id: those matching
-- plan.apps.streams (absent: all, as for apps; [] : none) plus those named
-- in plan.spaces.map.  Returns streams, missing (names in plan.spaces.map
-- with no stream).
function M.streams(ctx, all_streams)
  local plan = ctx.plan or {}
  local globs = M.stream_globs(plan)
  local map = plan.spaces and plan.spaces.map or {}
  all_streams = all_streams or ctx.source:full("stream")
  local out, named = {}, {}
  for _, s in ipairs(all_streams) do
    local in_map, key = M.ci_get(map, s.name)
    if in_map then named[key] = true end
    if in_map or glob.any(globs, s.name, false) then out[#out + 1] = s end
  end
  local missing = {}
  for k in pairs(map) do
    if not named[k] then missing[#missing + 1] = k end
  end
  table.sort(missing)
  return by_name(out), missing
end

-- {====== tags
-- The QRS tag names of an object (an app), as listed.
function M.tags(obj)
  local names = {}
  for _, tag in ipairs(type(obj.tags) == "table" and obj.tags or {}) do
    if type(tag) == "table" and type(tag.name) == "string" then names[#names + 1] = tag.name end
  end
  return names
end

-- True when obj carries one of the wanted tags; names compare ignoring case.
function M.has_tag(obj, wanted)
  local have = {}
  for _, n in ipairs(M.tags(obj)) do have[n:lower()] = true end
  for _, w in ipairs(wanted or {}) do
    if have[tostring(w):lower()] then return true end
  end
  return false
end
-- }======

-- The stream of a published app, or nil for a personal one.
function M.stream(app)
  if app.published == true and type(app.stream) == "table" and app.stream.id then return app.stream end
  return nil
end

-- M.in_scope(plan_apps, app [, stream_in]) -> true | false, why.
-- stream_in(stream) says whether a published app's stream is in scope;
-- default: its name matches plan.apps.streams.
function M.in_scope(p, app, stream_in)
  p = p or {}
  local stream = M.stream(app)
  if stream then
    local ok
    if stream_in then ok = stream_in(stream) else ok = glob.any(p.streams or { "*" }, stream.name, false) end
    if not ok then return false, "stream not in plan.apps.streams" end
  elseif p.personal ~= true then
    return false, "personal app (plan.apps.personal is false)"
  end
  if not glob.any(p.names, app.name, true) then return false, "name not in plan.apps.names" end
  if p.tags and #p.tags > 0 and not M.has_tag(app, p.tags) then return false, "no tag of plan.apps.tags" end
  local ex = p.exclude or {}
  if glob.any(ex.names, app.name, false) then return false, "excluded by name" end
  if M.has_tag(app, ex.tags) then return false, "excluded by tag" end
  return true
end

-- Every QRS app in scope, ordered by id (stable across runs).
function M.list(ctx)
  local out = {}
  for _, app in ipairs(ctx.source:full("app")) do
    if M.in_scope(ctx.plan.apps, app) then out[#out + 1] = app end
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

-- The apps in scope of the identity steps, sorted by name then id: the
-- rules of M.in_scope, a published app's stream tested against stream_ids
-- (a set of stream ids: users.export passes those matching plan.apps.streams).
function M.apps(ctx, stream_ids, all_apps)
  local a = ctx.plan and ctx.plan.apps or {}
  local function stream_in(stream) return stream_ids[stream.id] == true end
  local out = {}
  for _, app in ipairs(all_apps or ctx.source:full("app")) do
    if M.in_scope(a, app, stream_in) then out[#out + 1] = app end
  end
  return by_name(out)
end

-- True when some job of the file lists a step of the category.
function M.job_uses(ctx, category)
  for _, j in ipairs(ctx.job and ctx.job.jobs or {}) do
    for _, name in ipairs(j.steps or {}) do
      if name:match("^" .. category .. "%.") then return true end
    end
  end
  return false
end

-- Data connections in scope: plan.data_connections.names (default all)
-- when the plan has a data_connections part or a job migrates them.
function M.data_connections(ctx)
  local dc = ctx.plan and ctx.plan.data_connections
  if not dc and not M.job_uses(ctx, "dataconnections") then return {} end
  local names = dc and dc.names or { "*" }
  local out = {}
  for _, c in ipairs(ctx.source:full("dataconnection")) do
    if glob.any(names, c.name, false) then out[#out + 1] = c end
  end
  return by_name(out)
end

return M
