-- A step pack's own options (docs/steps.md, "A pack's own options"): a step
-- module declares `options = S.record {...}` in the schema language of
-- lua/qmig/job/schema.lua, and the job file's `plan.<category>` section (the
-- category of the step's name: `acme` for `acme.export`) is checked against
-- it when the job file is loaded, like the built-in keys (file:line, "did
-- you mean", exit 2 before anything is contacted).  The steps of one
-- category share the section: each declares the fields it reads (a pack
-- usually has them all `require` one module), and a field two steps
-- declare differently is an error.  The step reads the result as
-- ctx.options (lua/qmig/engine/context.lua).
local S = require "qmig.job.schema"
local catalogue = require "qmig.job.catalogue"
local yaml = require "qmig.yaml"

local M = {}

local function category(name) return type(name) == "string" and name:match("^([%w_]+)%.") end

-- Takes out of doc.plan the sections the built-in schema (fields) does not
-- know; returns them {name = value}.  The built-in check then sees only its
-- own keys, and the rest waits for the steps that declare them.
function M.split(fields, doc)
  local out = {}
  if type(doc) ~= "table" or type(doc.plan) ~= "table" or #doc.plan > 0 then return out end
  for k, v in pairs(doc.plan) do
    if type(k) == "string" and not fields[k] then out[k] = v end
  end
  for k in pairs(out) do doc.plan[k] = nil end
  return out
end

-- The categories of the steps the raw file's jobs name.
function M.categories(doc)
  local cats = {}
  for _, j in ipairs(type(doc) == "table" and type(doc.jobs) == "table" and doc.jobs or {}) do
    for _, s in ipairs(type(j) == "table" and type(j.steps) == "table" and j.steps or {}) do
      local c = category(s)
      if c then cats[c] = true end
    end
  end
  return cats
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The unknown-section error of a plain job file, with what may have been meant.
local function unknown(ctx, name, why)
  local names = sorted_keys(ctx.fields)
  for _, d in ipairs(ctx.declared or {}) do names[#names + 1] = d end
  local hint = #name <= 100 and catalogue.nearest(name, names)
  local line = ctx.positions and yaml.position(ctx.positions, ctx.doc.plan, name)
  ctx.errors[#ctx.errors + 1] = { line = line or 0, message = string.format("%s%s: unknown key 'plan.%s'%s%s",
    ctx.file, line and (":" .. line) or "", name, hint and (" (did you mean '" .. hint .. "'?)") or "", why or "") }
end

-- Before the steps are known (the built-in keys have errors, so steps are
-- not resolved): a section no step of the file could declare is the
-- unknown key it always was.
function M.early(ctx, sections)
  local cats = M.categories(ctx.doc)
  for _, name in ipairs(sorted_keys(sections)) do
    if not cats[name] then unknown(ctx, name) end
  end
end

-- The schema of each category from the resolved modules (job.modules[name]
-- = {module=, path=}): {cat = {schema=, steps={...}}}; conflicts are errors.
local function declared(ctx, modules)
  local by_cat = {}
  for _, step in ipairs(sorted_keys(modules)) do
    local m = modules[step]
    local cat = category(step)
    if m and m.module.options ~= nil and cat then
      local where = ctx.file .. ": step " .. step .. " (" .. m.path .. ")"
      if ctx.fields[cat] then
        ctx.errors[#ctx.errors + 1] = { line = 0, message = where .. " declares options, but plan." .. cat
          .. " is a section of the job file's own; a pack's steps take a category of their own" }
      else
        local d = by_cat[cat] or { fields = {}, from = {}, steps = {} }
        by_cat[cat] = d
        d.steps[#d.steps + 1] = step
        for f, node in pairs(m.module.options.fields) do
          if d.fields[f] ~= nil and d.fields[f] ~= node and d.fields[f].kind ~= node.kind then
            ctx.errors[#ctx.errors + 1] = { line = 0, message = string.format("%s declares plan.%s.%s as a %s, "
              .. "but %s declares it as a %s", where, cat, f, node.kind, d.from[f], d.fields[f].kind) }
          else
            d.fields[f], d.from[f] = node, d.from[f] or step
          end
        end
      end
    end
  end
  return by_cat
end

-- ctx: {file=, doc=, positions=, fields= (the built-in plan fields),
-- errors=, base_dir=, env=, fs=, on_secret=}.  Checks each section against
-- the schema its steps declare, puts the result in job.plan[cat] (a
-- declared section left out of the file gets its defaults) and reports a
-- section nothing declares.
function M.check(ctx, job, sections)
  local by_cat = declared(ctx, job.modules or {})
  ctx.declared = sorted_keys(by_cat)
  for _, cat in ipairs(ctx.declared) do
    local value = sections[cat]
    if value == nil then value = {} end
    local line = ctx.positions and yaml.position(ctx.positions, ctx.doc.plan, cat)
    local out, errs = S.check(S.record(by_cat[cat].fields), value, {
      file = ctx.file, positions = ctx.positions, base_dir = ctx.base_dir, env = ctx.env, fs = ctx.fs,
      on_secret = ctx.on_secret, path = "plan." .. cat, line = line,
    })
    for _, e in ipairs(errs) do ctx.errors[#ctx.errors + 1] = e end
    job.plan[cat] = out
  end
  for _, name in ipairs(sorted_keys(sections)) do
    if not by_cat[name] then
      local steps = {}
      for _, step in ipairs(sorted_keys(job.modules or {})) do
        local m = job.modules[step]
        if m and category(step) == name then steps[#steps + 1] = step .. " (" .. m.path .. ")" end
      end
      unknown(ctx, name, #steps > 0 and ("; its steps " .. table.concat(steps, ", ") .. " declare no options "
        .. "(a step pack declares them with `options = S.record {...}`: docs/steps.md)") or nil)
    end
  end
end

-- Checks a module's `options` field (lua/qmig/engine/loader.lua): nil or a
-- record schema.
function M.validate(mod)
  local o = mod.options
  if o == nil then return true end
  if type(o) ~= "table" or o.kind ~= "record" or type(o.fields) ~= "table" then
    return nil, "field 'options' must be a record schema (require \"qmig.job.schema\".record {...})"
  end
  return true
end

return M
