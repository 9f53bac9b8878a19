-- Step resolution and the step-module contract (docs/steps.md).
-- Search order for step "cat.action": the job's steps_path folders, then
-- QMIG_STEPS_PATH, then Lua's package.path (module qmig.steps.cat.action,
-- where LuaRocks step packs install), then the built-in steps/ folder.
local catalogue = require "qmig.job.catalogue"
local qmig = require "qmig"

local M = {}

local STATUSES = require("qmig.store.status").OUTCOME
M.statuses = STATUSES

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Every place a step file may come from, in search order.
function M.candidates(name, steps_path)
  local category, action = name:match("^([%w_]+)%.([%w_]+)$")
  if not category then return {} end
  local rel = category .. "/" .. action .. ".lua"
  local out = {}
  for _, dir in ipairs(steps_path or {}) do out[#out + 1] = dir .. "/" .. rel end
  for dir in (os.getenv("QMIG_STEPS_PATH") or ""):gmatch("[^:]+") do out[#out + 1] = dir .. "/" .. rel end
  local module = "qmig.steps." .. category .. "." .. action
  local on_path = package.searchpath(module, package.path)
  if on_path then out[#out + 1] = on_path end
  out[#out + 1] = qmig.home .. "/steps/" .. rel
  return out
end

local required_fields = {
  { "name", "string" }, { "object", "string" },
  { "items", "function" }, { "key", "function" }, { "run", "function" },
}
-- A step of the catalogue (lua/qmig/job/catalogue.lua) takes its order and
-- title from there, declared once; a new step (a pack's) must give both.
local catalogued_fields = { { "title", "string" }, { "order", "number" } }
local optional_fields = {
  requires = "table", fingerprint = "function", description = "string", finish = "function",
  -- depends(item) -> keys of this step's items that must end first
  depends = "function",
  -- undo(target, entry, record) -> true when it undid entry itself
  undo = "function",
  -- planned(item, ctx, write) -> {data, object, target_id}: what a plan records
  planned = "function",
  -- target_path(record) -> path | nil: the read showing a done record's
  -- object is still in the tenant; if_gone: what a 404 there means
  target_path = "function", if_gone = "string",
  -- what it records for later steps, and what it reads of theirs
  -- (lua/qmig/engine/contract.lua)
  produces = "table", consumes = "table",
  -- the schema of its pack's plan.<category> section (lua/qmig/job/packopts.lua)
  options = "table",
  -- after = "object": its item for an object starts once the steps before
  -- it are done for that object (lua/qmig/engine/overlap.lua); object_of(item,
  -- ctx) -> that object's id, when it is not the item's key
  after = "string", object_of = "function",
}

-- Checks a loaded module against the contract; returns true or nil, why.
function M.validate(mod, name)
  if type(mod) ~= "table" then return nil, "the module must return a table, got " .. type(mod) end
  for _, f in ipairs(required_fields) do
    if type(mod[f[1]]) ~= f[2] then
      return nil, string.format("field '%s' must be a %s, got %s", f[1], f[2], type(mod[f[1]]))
    end
  end
  local entry = type(mod.name) == "string" and catalogue.by_name[mod.name]
  for _, f in ipairs(catalogued_fields) do
    if (mod[f[1]] ~= nil or not entry) and type(mod[f[1]]) ~= f[2] then
      return nil, string.format("field '%s' must be a %s, got %s%s", f[1], f[2], type(mod[f[1]]),
        entry and "" or " (a step the catalogue does not list declares its own title and order)")
    end
  end
  for field, ty in pairs(optional_fields) do
    if mod[field] ~= nil and type(mod[field]) ~= ty then
      return nil, string.format("field '%s' must be a %s, got %s", field, ty, type(mod[field]))
    end
  end
  if mod.after ~= nil and mod.after ~= "step" and mod.after ~= "object" then
    return nil, string.format("field 'after' must be \"step\" or \"object\", got '%s'", tostring(mod.after))
  end
  if mod.if_gone ~= nil and mod.if_gone ~= "recreate" and mod.if_gone ~= "report" then
    return nil, string.format("field 'if_gone' must be \"recreate\" or \"report\", got '%s'", tostring(mod.if_gone))
  end
  local shaped, why = require("qmig.engine.contract").validate(mod)
  if not shaped then return nil, why end
  shaped, why = require("qmig.job.packopts").validate(mod)
  if not shaped then return nil, why end
  if mod.name ~= name then
    return nil, string.format("field 'name' is '%s' but the file provides step '%s'", mod.name, name)
  end
  return true
end

-- Loads one step file in protected mode; a broken file never crashes the
-- host: it becomes nil, "<path>:<line>: <why>".
function M.load_file(path, name)
  local chunk, err = loadfile(path, "t")
  if not chunk then return nil, err end
  -- the message names the file and line; a traceback of the host's loader
  -- would only bury it
  local ok, mod = xpcall(chunk, function(e) return tostring(e) end, name)
  if not ok then return nil, path .. ": error while loading: " .. tostring(mod) end
  local valid, why = M.validate(mod, name)
  if not valid then return nil, path .. ": " .. why end
  local entry = catalogue.by_name[name]
  if entry then mod.title, mod.order = entry.title, entry.order end
  return mod
end

-- M.resolve(name, steps_path) -> module, path | nil, message
function M.resolve(name, steps_path)
  local entry = catalogue.by_name[name]
  for _, path in ipairs(M.candidates(name, steps_path)) do
    if file_exists(path) then
      local mod, err = M.load_file(path, name)
      if not mod then return nil, err end
      return mod, path
    end
  end
  local hint = catalogue.nearest(name, catalogue.names())
  if entry then return nil, string.format("step '%s' is in the catalogue but no module provides it", name) end
  return nil, string.format("unknown step '%s'%s", name, hint and (" (did you mean '" .. hint .. "'?)") or "")
end

-- Names of steps found on the search path that the catalogue does not know
-- (step packs, a customer's own steps), sorted.
function M.discover(steps_path)
  local fs = require "qmig.fs"
  local dirs = {}
  for _, d in ipairs(steps_path or {}) do dirs[#dirs + 1] = d end
  for d in (os.getenv("QMIG_STEPS_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d end
  for template in package.path:gmatch("[^;]+") do
    local base = template:match("^(.*)/%?%.lua$")
    if base then dirs[#dirs + 1] = base .. "/qmig/steps" end
  end
  local seen, names = {}, {}
  for _, dir in ipairs(dirs) do
    for _, category in ipairs(fs.dir(dir) or {}) do
      for _, file in ipairs(fs.dir(dir .. "/" .. category) or {}) do
        local action = file:match("^([%w_]+)%.lua$")
        local name = action and category:match("^[%w_]+$") and (category .. "." .. action)
        if name and not catalogue.by_name[name] and not seen[name] then
          seen[name] = true
          names[#names + 1] = name
        end
      end
    end
  end
  table.sort(names)
  return names
end

-- Order of a step: the catalogue's, or the module's own for new steps.
function M.order(mod)
  local entry = catalogue.by_name[mod.name]
  return entry and entry.order or mod.order
end

-- Sorts step modules by the global order (stable for equal orders).
function M.sort(mods)
  local indexed = {}
  for i, m in ipairs(mods) do indexed[i] = { m = m, i = i } end
  table.sort(indexed, function(a, b)
    local oa, ob = M.order(a.m), M.order(b.m)
    if oa ~= ob then return oa < ob end
    return a.i < b.i
  end)
  local out = {}
  for i, e in ipairs(indexed) do out[i] = e.m end
  return out
end

return M
