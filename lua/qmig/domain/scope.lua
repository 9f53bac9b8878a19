-- What the plan puts in scope (SPEC §4.2), shared by the identity steps:
-- streams, apps and data connections read from the QRS, filtered by the
-- plan's case-insensitive globs.  Read-only; one QRS call per entity type.
local glob = require "qmig.job.glob"

local M = {}

-- M.glob_any(globs, name): true when name matches one of the globs
-- (case-insensitive).  An empty or absent list matches nothing.
function M.glob_any(globs, name) return glob.any(globs, name, false) end

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

-- Streams in scope, sorted by name then id: those matching
-- plan.apps.streams (absent: all, as for apps; [] : none) plus those named
-- in plan.spaces.map.  Returns streams, missing (names in plan.spaces.map
-- with no stream).
function M.stream_globs(plan)
  return plan and plan.apps and plan.apps.streams or { "*" }
end

function M.streams(ctx, all_streams)
  local plan = ctx.plan or {}
  local globs = M.stream_globs(plan)
  local map = plan.spaces and plan.spaces.map or {}
  all_streams = all_streams or ctx.source:full("stream")
  local out, named = {}, {}
  for _, s in ipairs(all_streams) do
    local in_map, key = M.ci_get(map, s.name)
    if in_map then named[key] = true end
    if in_map or M.glob_any(globs, s.name) then out[#out + 1] = s end
  end
  local missing = {}
  for k in pairs(map) do
    if not named[k] then missing[#missing + 1] = k end
  end
  table.sort(missing)
  return by_name(out), missing
end

local function tag_names(obj)
  local names = {}
  for _, t in ipairs(type(obj.tags) == "table" and obj.tags or {}) do names[#names + 1] = t.name end
  return names
end

-- Tags compare by name, ignoring case (as in qmig.domain.appscope).
local function any_tag(wanted, obj)
  local have = {}
  for _, n in ipairs(tag_names(obj)) do have[tostring(n):lower()] = true end
  for _, w in ipairs(wanted or {}) do
    if have[tostring(w):lower()] then return true end
  end
  return false
end

-- Apps in scope (the rules of qmig.domain.appscope): published apps in the
-- streams in scope, and unpublished (personal) apps when
-- plan.apps.personal; narrowed by names (absent or [] = all), tags
-- ([] = no filter) and exclude.  stream_ids: set of the ids of the
-- streams matching plan.apps.streams.
function M.apps(ctx, stream_ids, all_apps)
  local a = ctx.plan and ctx.plan.apps or {}
  all_apps = all_apps or ctx.source:full("app")
  local names = a.names and #a.names > 0 and a.names or { "*" }
  local exclude = a.exclude or {}
  local out = {}
  for _, app in ipairs(all_apps) do
    local stream = app.published == true and type(app.stream) == "table" and app.stream or nil
    local wanted
    if stream then
      wanted = stream_ids[stream.id] == true
    else
      wanted = a.personal == true
    end
    wanted = wanted and M.glob_any(names, app.name)
      and (a.tags == nil or #a.tags == 0 or any_tag(a.tags, app))
      and not M.glob_any(exclude.names, app.name) and not any_tag(exclude.tags, app)
    if wanted then out[#out + 1] = app end
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
    if M.glob_any(names, c.name) then out[#out + 1] = c end
  end
  return by_name(out)
end

return M
