-- Which QRS apps a plan covers (SPEC §4.2 `plan.apps`), and the shared
-- helpers of the application steps (apps.export, apps.import, apps.reload,
-- apps.delete, post.reset_descriptions).
--
-- Scope rules, all case-insensitive:
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
local hash = require "qmig.hash"
local json = require "qmig.json"

local M = {}

M.glob_match = glob.match

local function any_glob(globs, text) return glob.any(globs, text, false) end

local function tag_names(app)
  local names = {}
  for _, tag in ipairs(type(app.tags) == "table" and app.tags or {}) do
    if type(tag) == "table" and type(tag.name) == "string" then names[tag.name:lower()] = true end
  end
  return names
end

local function has_any_tag(app, wanted)
  local have = tag_names(app)
  for _, t in ipairs(wanted or {}) do
    if have[tostring(t):lower()] then return true end
  end
  return false
end

-- The stream of a published app, or nil for a personal one.
function M.stream(app)
  if app.published == true and type(app.stream) == "table" and app.stream.id then return app.stream end
  return nil
end

-- M.in_scope(plan_apps, app) -> true | false, why
function M.in_scope(p, app)
  p = p or {}
  local stream = M.stream(app)
  if stream then
    local streams = p.streams or { "*" }
    if not any_glob(streams, stream.name) then return false, "stream not in plan.apps.streams" end
  elseif not p.personal then
    return false, "personal app (plan.apps.personal is false)"
  end
  if p.names and #p.names > 0 and not any_glob(p.names, app.name) then
    return false, "name not in plan.apps.names"
  end
  if p.tags and #p.tags > 0 and not has_any_tag(app, p.tags) then return false, "no tag of plan.apps.tags" end
  local ex = p.exclude or {}
  if any_glob(ex.names, app.name) then return false, "excluded by name" end
  if ex.tags and has_any_tag(app, ex.tags) then return false, "excluded by tag" end
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

-- {====== fingerprints
-- apps.export: the app's modifiedDate, fileSize and lastReloadTime (a
-- reload changes the data an export with data carries) and the export
-- options; a change re-exports the app.  Object-only changes (a user editing
-- a private sheet) do not change the app's modifiedDate in every QRS
-- release: re-export those with --force.
function M.export_fingerprint(app, opts)
  opts = opts or {}
  return table.concat({ "v1", tostring(app.modifiedDate), tostring(app.fileSize), tostring(app.lastReloadTime),
    tostring(opts.with_data or false), tostring(opts.scope or "") }, "|")
end

-- apps.import and later: the definition only (modifiedDate, name,
-- description, where it is published), so a mere reload at the source is
-- not reported as a change.
function M.definition_fingerprint(app)
  local stream = M.stream(app)
  return hash.sha256(json.encode({
    v = 1, modified = app.modifiedDate, name = app.name, description = app.description,
    stream = stream and stream.id or json.null,
  }, { sort_keys = true }))
end
-- }======

-- Path of an app's export, by source id only (never its name).
function M.export_path(ctx, app_id)
  return ctx.project:object_path("exports/apps", app_id, ".qvf")
end

function M.export_meta_path(ctx, app_id)
  return ctx.project:object_path("exports/apps", app_id, ".json")
end

-- {====== the name an app carries between its import and its marker
-- apps.import uploads under "<name> [qmig-lua:importing:<source id>]" and
-- sets the final name together with the marker (one PUT).  An app still
-- carrying that name is a half-finished import of exactly that source app:
-- never a pre-existing app, never another source app of the same name.
function M.importing_name(name, source_id)
  return string.format("%s [qmig-lua:importing:%s]", name, source_id)
end

-- -> source id, or nil when the name is not an importing name.
function M.read_importing(name)
  if type(name) ~= "string" then return nil end
  return name:match(" %[qmig%-lua:importing:([^%]]+)%]$")
end
-- }======


return M
