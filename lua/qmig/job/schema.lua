-- A small validator for job files: checks types, unknown keys (with a
-- suggestion), enums, paths and ${VAR} references, and reports every
-- problem at once as "file:line: message" using the YAML positions.
local json = require "qmig.json"
local catalogue = require "qmig.job.catalogue"

local M = {}

-- Schema constructors.
function M.string(o) o = o or {}; o.kind = "string"; return o end
function M.integer(o) o = o or {}; o.kind = "integer"; return o end
function M.number(o) o = o or {}; o.kind = "number"; return o end
function M.boolean(o) o = o or {}; o.kind = "boolean"; return o end
function M.enum(values, o) o = o or {}; o.kind = "enum"; o.values = values; return o end
function M.path(o) o = o or {}; o.kind = "path"; return o end
function M.list(of, o) o = o or {}; o.kind = "list"; o.of = of; return o end
function M.map(of, o) o = o or {}; o.kind = "map"; o.of = of; return o end
function M.record(fields, o) o = o or {}; o.kind = "record"; o.fields = fields; return o end
function M.oneof(options, o) o = o or {}; o.kind = "oneof"; o.options = options; return o end

local function type_name(v)
  if v == json.null then return "null" end
  if type(v) == "table" then return (json.is_array(v) or (#v > 0)) and "list" or "mapping" end
  if math.type(v) == "integer" then return "integer" end
  return type(v)
end

local Checker = {}
Checker.__index = Checker

-- Path heads naming a credential.  log.redact hides "api_key: x"-shaped
-- text, so "target.api_key: expected a string" would reach the user as
-- "target.api_key: *** a string"; such messages use " - " instead.
local CREDENTIAL_WORDS = { "password", "passwd", "secret", "api_key", "apikey", "token", "passphrase",
  "authorization" }

function Checker:fail(line, msg)
  local head, rest = msg:match("^([^%s:]+): (.*)$")
  if head then
    local lower = head:lower():gsub("%-", "_")
    for _, word in ipairs(CREDENTIAL_WORDS) do
      if lower:find(word, 1, true) then msg = head .. " - " .. rest; break end
    end
  end
  if #msg > 400 then  -- a 10 MB value must not make a 10 MB message
    msg = msg:sub(1, 300) .. string.format("...(%d bytes)...", #msg - 360) .. msg:sub(-60)
  end
  local where = self.file .. (line and (":" .. line) or "")
  self.errors[#self.errors + 1] = { line = line or 0, message = where .. ": " .. msg }
end

-- Line of key (or list index) inside tbl, or the fallback line.
function Checker:line_of(tbl, key, fallback)
  local pos = self.positions and self.positions[tbl]
  if pos then
    if type(key) == "string" and pos.keys and pos.keys[key] then return pos.keys[key] end
    if type(key) == "number" and pos.items and pos.items[key] then return pos.items[key] end
    if pos.line then return pos.line end
  end
  return fallback
end

-- ${NAME} reads the environment; $${ is a literal "${".
function Checker:interpolate(s, line, path)
  if not s:find("$", 1, true) then return s end
  local missing
  local out = s:gsub("%$(%$?){([%w_]*)}", function(escape, name)
    if escape == "$" then return "${" .. name .. "}" end
    local v = self.env(name)
    if v == nil then missing = missing or name; return "" end
    return v
  end)
  if missing then
    self:fail(line, string.format("%s: environment variable ${%s} is not set", path, missing))
    return nil
  end
  return out
end

local check

local checkers = {}

function checkers.string(self, node, v, line, path)
  if type(v) == "number" and node.coerce_number then v = tostring(v) end
  if type(v) ~= "string" then
    return self:fail(line, string.format("%s: expected a string, got %s", path, type_name(v)))
  end
  v = self:interpolate(v, line, path)
  if v == nil then return nil end
  if node.nonempty and v == "" then return self:fail(line, path .. ": must not be empty") end
  if node.secret and self.on_secret then self.on_secret(v) end
  return v
end

function checkers.integer(self, node, v, line, path)
  if math.type(v) ~= "integer" then
    return self:fail(line, string.format("%s: expected an integer, got %s", path, type_name(v)))
  end
  if node.min and v < node.min then return self:fail(line, string.format("%s: must be at least %d", path, node.min)) end
  if node.max and v > node.max then return self:fail(line, string.format("%s: must be at most %d", path, node.max)) end
  return v
end

function checkers.number(self, node, v, line, path)
  if type(v) ~= "number" then
    return self:fail(line, string.format("%s: expected a number, got %s", path, type_name(v)))
  end
  if node.min and v < node.min then return self:fail(line, string.format("%s: must be at least %s", path, node.min)) end
  return v
end

function checkers.boolean(self, _, v, line, path)
  if type(v) ~= "boolean" then
    return self:fail(line, string.format("%s: expected true or false, got %s", path, type_name(v)))
  end
  return v
end

function checkers.enum(self, node, v, line, path)
  if type(v) ~= "string" then
    return self:fail(line, string.format("%s: expected one of %s, got %s", path, table.concat(node.values, ", "),
      type_name(v)))
  end
  for _, allowed in ipairs(node.values) do if v == allowed then return v end end
  local hint = #v <= 100 and catalogue.nearest(v, node.values)  -- Levenshtein is O(n*m)
  return self:fail(line, string.format("%s: '%s' is not one of %s%s", path, v, table.concat(node.values, ", "),
    hint and (" (did you mean '" .. hint .. "'?)") or ""))
end

function checkers.path(self, node, v, line, path)
  v = checkers.string(self, { kind = "string" }, v, line, path)
  if v == nil then return nil end
  local full = v:sub(1, 1) == "/" and v or (self.base_dir .. "/" .. v)
  if node.exists then
    local f = io.open(full, "rb")
    if not f then
      return self:fail(line, string.format("%s: %s '%s' does not exist", path, node.folder and "folder" or "file", v))
    end
    f:close()
  end
  -- A folder given as a file would otherwise fail later, inside a step,
  -- after the run has started.
  if node.folder and self.fs and not self.fs.dir(full) then
    return self:fail(line, string.format("%s: '%s' is not a folder", path, v))
  end
  if node.private and self.fs then
    local st = self.fs.stat(full)
    if st and (st.mode & 0x3f) ~= 0 then
      return self:fail(line, string.format("%s: '%s' is readable by group or others; chmod 600 it", path, v))
    end
  end
  return full
end

function checkers.list(self, node, v, line, path)
  if v == json.null then return json.array() end
  if type(v) ~= "table" or (next(v) ~= nil and #v == 0) then
    return self:fail(line, string.format("%s: expected a list, got %s", path, type_name(v)))
  end
  local out = json.array()
  for i, item in ipairs(v) do
    out[#out + 1] = check(self, node.of, item, self:line_of(v, i, line), string.format("%s[%d]", path, i))
  end
  if node.unique_by then
    local seen = {}
    for i, item in ipairs(out) do
      local key = type(item) == "table" and item[node.unique_by] or item
      if key ~= nil and seen[key] then
        self:fail(self:line_of(v, i, line), string.format("%s: duplicate %s '%s'", path, node.unique_by, tostring(key)))
      end
      if key ~= nil then seen[key] = true end
    end
  end
  return out
end

function checkers.map(self, node, v, line, path)
  if v == json.null then return {} end
  if type(v) ~= "table" or json.is_array(v) then
    return self:fail(line, string.format("%s: expected a mapping, got %s", path, type_name(v)))
  end
  local out = {}
  for k, item in pairs(v) do
    out[k] = check(self, node.of, item, self:line_of(v, k, line), path .. "." .. tostring(k))
  end
  return out
end

function checkers.record(self, node, v, line, path)
  if path == "" and (v == json.null or v == nil) then  -- an empty file, or only comments
    return self:fail(line, "the job file is empty: expected a mapping with version, project, source, target, jobs")
  end
  if type(v) ~= "table" or json.is_array(v) or (#v > 0) then
    return self:fail(line, string.format("%s: expected a mapping, got %s", path == "" and "the job file" or path,
      type_name(v)))
  end
  local out, names = {}, {}
  for name in pairs(node.fields) do names[#names + 1] = name end
  table.sort(names)
  for k, item in pairs(v) do
    local kline = self:line_of(v, k, line)
    local field = node.fields[k]
    local kpath = path == "" and tostring(k) or (path .. "." .. tostring(k))
    if not field then
      local hint = type(k) == "string" and #k <= 100 and catalogue.nearest(k, names)
      self:fail(kline, string.format("unknown key '%s'%s", kpath, hint and (" (did you mean '" .. hint .. "'?)") or ""))
    elseif item ~= json.null then
      out[k] = check(self, field, item, kline, kpath)
    end
  end
  for _, name in ipairs(names) do
    local field = node.fields[name]
    if out[name] == nil and v[name] == nil then
      if field.required then
        self:fail(line, string.format("%s: missing required key '%s'", path == "" and "job" or path, name))
      elseif field.kind == "record" and field.default ~= nil then
        -- an absent section still gets its fields' defaults: without this a
        -- job file with no `options:` ran with options.retry_delay = nil
        -- and the first retry raised "arithmetic on a nil value"
        out[name] = check(self, field, field.default, line, path == "" and name or (path .. "." .. name))
      elseif field.default ~= nil then
        out[name] = field.default
      end
    end
  end
  return out
end

function checkers.oneof(self, node, v, line, path)
  for _, option in ipairs(node.options) do
    if option.accepts(v) then return check(self, option, v, line, path) end
  end
  return self:fail(line, string.format("%s: expected %s, got %s", path, node.describe, type_name(v)))
end

function check(self, node, v, line, path)
  local before = #self.errors
  local result = checkers[node.kind](self, node, v, line, path)
  -- validators only see values that passed their own checks (a record
  -- missing a required field is reported once, not handed to validate;
  -- tests/fuzz/fuzz_job found a validator indexing such a nil field)
  if result ~= nil and node.validate and #self.errors == before then
    local ok, msg = node.validate(result)
    if not ok then self:fail(line, path .. ": " .. msg) end
  end
  return result
end

-- schema.check(node, value, {file=, positions=, base_dir=, env=fn, fs=,
-- on_secret=fn, path=, line=}) -> normalised value, errors (sorted by line,
-- each {line=, message=}).  path names value in the messages ("plan.acme"
-- for a pack's section: lua/qmig/job/packopts.lua); "" is the whole file.
function M.check(node, value, ctx)
  local self = setmetatable({
    file = ctx.file or "<job>", positions = ctx.positions, base_dir = ctx.base_dir or ".",
    env = ctx.env or os.getenv, fs = ctx.fs, on_secret = ctx.on_secret, errors = {},
  }, Checker)
  local out = check(self, node, value, self:line_of(value, nil, ctx.line or (self.positions and 1 or nil)),
    ctx.path or "")
  table.sort(self.errors, function(a, b) return a.line < b.line end)
  return out, self.errors
end

return M
