-- What a step hands to the steps after it, and what it reads of theirs
-- (docs/steps.md, "produces and consumes"):
--   produces = {data = {field...}, keys = {key...}}: the `data` fields of the
--     records of its cache kind (step.object) that other steps may read, and
--     keys it records besides one per item (spaces.create's "@staging");
--   consumes = {{kind =, data = {field...}, keys = {key...}}...}: the records
--     of other steps it reads, and which of their data fields and keys.
-- A step that replaces a built-in one (found first on steps_path,
-- QMIG_STEPS_PATH or package.path) is checked against it before anything
-- is contacted: same cache kind, and every field and key the built-in
-- records that a step of the job file reads is declared.  What is missing
-- is a warning, not a refusal (the override may record it all the same);
-- the step that would fail later is named.
local loader = require "qmig.engine.loader"
local qmig = require "qmig"

local M = {}

local function is_list_of_strings(v)
  if type(v) ~= "table" then return false end
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or type(x) ~= "string" then return false end
  end
  return true
end

-- Checks the shape of a module's produces / consumes; true or nil, why.
function M.validate(mod)
  local p = mod.produces
  if p ~= nil then
    if type(p) ~= "table" then return nil, "field 'produces' must be a table, got " .. type(p) end
    for _, f in ipairs { "data", "keys" } do
      if p[f] ~= nil and not is_list_of_strings(p[f]) then
        return nil, "field 'produces." .. f .. "' must be a list of strings"
      end
    end
  end
  local c = mod.consumes
  if c ~= nil then
    if type(c) ~= "table" then return nil, "field 'consumes' must be a table, got " .. type(c) end
    for i, e in ipairs(c) do
      if type(e) ~= "table" or type(e.kind) ~= "string" then
        return nil, string.format("field 'consumes[%d]' must be {kind = <cache kind>, data = {...}}", i)
      end
      for _, f in ipairs { "data", "keys" } do
        if e[f] ~= nil and not is_list_of_strings(e[f]) then
          return nil, string.format("field 'consumes[%d].%s' must be a list of strings", i, f)
        end
      end
    end
  end
  return true
end

-- The built-in step of that name, loaded from the host's steps/ folder
-- without running anything of it; nil when there is none.
function M.builtin(name)
  local category, action = name:match("^([%w_]+)%.([%w_]+)$")
  if not category then return nil end
  local path = qmig.home .. "/steps/" .. category .. "/" .. action .. ".lua"
  local f = io.open(path, "rb")
  if not f then return nil end
  f:close()
  return loader.load_file(path, name), path
end

local function set(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

local function quoted(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = string.format("%q", v) end
  return table.concat(out, ", ")
end

-- Who reads what of kind, among the job's steps: field -> {step names},
-- key -> {step names}.
local function readers(job, kind)
  local fields, keys = {}, {}
  local names = {}
  for name in pairs(job.modules or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local m = job.modules[name]
    for _, e in ipairs(m and type(m.module.consumes) == "table" and m.module.consumes or {}) do
      if e.kind == kind then
        for _, f in ipairs(e.data or {}) do fields[f] = fields[f] or {}; table.insert(fields[f], name) end
        for _, k in ipairs(e.keys or {}) do keys[k] = keys[k] or {}; table.insert(keys[k], name) end
      end
    end
  end
  return fields, keys
end

-- Warnings (strings) for the steps of the job file that replace built-in
-- ones.  Only reads files: nothing is contacted.
function M.check(job)
  local out = {}
  local names = {}
  for name, m in pairs(job.modules or {}) do if m then names[#names + 1] = name end end
  table.sort(names)
  for _, name in ipairs(names) do
    local used = job.modules[name]
    local base, base_path = M.builtin(name)
    if base and base_path ~= used.path then
      local mod = used.module
      local where = string.format("%s (%s) replaces the built-in step", name, used.path)
      if mod.object ~= base.object then
        out[#out + 1] = string.format("%s but records cache kind %q, not %q: the steps that read %q records "
          .. "will not find its objects", where, tostring(mod.object), base.object, base.object)
      end
      local declared = type(mod.produces) == "table" and mod.produces or {}
      local have_data, have_keys = set(declared.data), set(declared.keys)
      local fields, keys = readers(job, base.object)
      local base_p = type(base.produces) == "table" and base.produces or {}
      local missing = {}
      for _, f in ipairs(base_p.data or {}) do
        if fields[f] and not have_data[f] then
          missing[#missing + 1] = string.format("data.%s (read by %s)", f, table.concat(fields[f], ", "))
        end
      end
      for _, k in ipairs(base_p.keys or {}) do
        if keys[k] and not have_keys[k] then
          missing[#missing + 1] = string.format("the key %q (read by %s)", k, table.concat(keys[k], ", "))
        end
      end
      if #missing > 0 then
        out[#out + 1] = string.format("%s but does not declare what its %q records carry for the steps after it: "
          .. "%s. Record %s and declare produces = {data = {%s}%s} (docs/steps.md, produces and consumes), "
          .. "or those steps will fail or go wrong on its objects", where, base.object, table.concat(missing, ", "),
          #missing == 1 and "it" or "them", quoted(base_p.data or {}),
          base_p.keys and (", keys = {" .. quoted(base_p.keys) .. "}") or "")
      end
    end
  end
  return out
end

return M
