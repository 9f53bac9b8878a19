-- qmig.ui.log — levelled, structured logging with redaction.
--
-- Secrets (API keys, passwords, private-key passphrases) must never reach a
-- log, the cache, a report or an error message.  Everything that leaves the
-- process through this module is passed through log.redact first, and the
-- cache uses log.redact for every free-text field it stores.  Redaction is
-- three layers, because any one of them alone misses cases:
--   1. registered secrets (log.add_secret), also in their URL-encoded and
--      base64 forms (a key can travel inside a query string or a Basic
--      header), replaced wherever they occur;
--   2. table fields whose key names a credential (password, token, ...);
--   3. credential-shaped text ("Bearer x", "password=x", "token": "x").
--
-- Sinks: stderr (human-readable, default level warn), JSON-lines files
-- (log.open_jsonl) and functions (log.add_sink).  A failing sink never
-- breaks the caller.

local qmig = require "qmig"

local M = {}

-- "off" is only a threshold (a quiet stderr for --json output), never a
-- record's level.
local LEVELS = { debug = 10, info = 20, warn = 30, error = 40, off = 100 }
local LEVEL_NAMES = { "debug", "info", "warn", "error" }

local level = LEVELS.info          -- records below this reach no sink
local stderr_level = LEVELS.warn
local sinks = {}                   -- { {fn=, level=, file=} }

local function check_level(name)
  local n = LEVELS[name]
  if not n then error("unknown log level '" .. tostring(name) .. "'", 3) end
  return n
end

-- {====== redaction: lua/qmig/ui/redact.lua
local redact = require "qmig.ui.redact"
local redact_string, keep_metatable = redact.redact_string, redact.keep_metatable
M.redact, M.add_secret, M.secrets_count = redact.redact, redact.add_secret, redact.secrets_count
-- }======

-- {====== sinks

local function json_encoder()
  local ok, json = pcall(require, "qmig.json")
  if ok and type(json) == "table" and type(json.encode) == "function" then return json end
  return nil
end

-- Minimal JSON for when qmig.json is unavailable: records are flat tables
-- of strings, numbers and booleans with nested plain tables.
local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function fallback_json(v, depth)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return ESC[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return '"' .. tostring(v) .. '"' end
    return math.type(v) == "integer" and tostring(v) or string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" and depth < 20 then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if #keys > 0 and #keys == #v then
      local parts = {}
      for i = 1, #v do parts[i] = fallback_json(v[i], depth + 1) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = fallback_json(tostring(k), depth + 1) .. ":" .. fallback_json(v[k], depth + 1)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

-- Replaces what JSON cannot carry (functions, userdata, cycles, inf/nan)
-- with strings, so that encoding a record can never fail.
local function plain(v, seen)
  local t = type(v)
  if t == "table" then
    if seen[v] then return "<cycle>" end
    seen[v] = true
    local copy = {}
    for k, x in pairs(v) do
      if type(k) == "string" or math.type(k) == "integer" then copy[k] = plain(x, seen) end
    end
    seen[v] = nil
    return keep_metatable(copy, v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    return v
  elseif t == "string" or t == "boolean" or t == "nil" then
    return v
  end
  local json = json_encoder()
  if json and v == json.null then return v end
  return tostring(v)
end

local function encode_record(record)
  local clean = plain(record, {})
  local json = json_encoder()
  if json then
    local ok, line = pcall(json.encode, clean, { sort_keys = true })
    if ok and type(line) == "string" then return line end
  end
  return fallback_json(clean, 0)
end

local RESERVED = { ts = true, level = true, msg = true }

local function format_value(v)
  if type(v) == "string" then
    if v == "" or v:find("[%s\"=]") then return string.format("%q", v) end
    return v
  elseif type(v) == "table" then
    return fallback_json(plain(v, {}), 0)
  end
  return tostring(v)
end

local function stderr_line(record)
  local keys = {}
  for k in pairs(record) do
    if not RESERVED[k] then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = { record.ts, string.format("%-5s", record.level:upper()), record.msg }
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. format_value(record[k]) end
  return table.concat(parts, " ")
end

-- Names from the source reach messages; on a terminal their control
-- characters (escape sequences) must not act, so they are shown as "?".
-- log.before_stderr: called before a line goes to stderr (the progress
-- line on the terminal clears itself: a warning written onto it would be
-- glued to its end and wiped by its next redraw).
local function stderr_sink(record)
  if LEVELS[record.level] >= stderr_level then
    if M.before_stderr then pcall(M.before_stderr) end
    io.stderr:write((stderr_line(record):gsub("[%z\1-\8\11-\31\127]", "?")), "\n")
  end
end

--- log.set_level(name): records below it are dropped before any sink.
function M.set_level(name)
  level = check_level(name)
end

--- log.set_stderr_level(name)
function M.set_stderr_level(name)
  stderr_level = check_level(name)
end

--- log.add_sink(fn) -> fn; fn(record) gets every redacted record.
function M.add_sink(fn)
  if type(fn) ~= "function" then error("log.add_sink: function expected", 2) end
  sinks[#sinks + 1] = { fn = fn }
  return fn
end

--- log.remove_sink(fn)
function M.remove_sink(fn)
  for i = #sinks, 1, -1 do
    if sinks[i].fn == fn then table.remove(sinks, i) end
  end
end

--- log.open_jsonl(path) -> true | nil, msg, code.  The file is created
-- 0600 (it records what a run did to whom) and appended to.
function M.open_jsonl(path)
  local fs = require "qmig.fs"
  local ok, msg, code = fs.write_file(path, "", { mode = tonumber("600", 8), append = true })
  if not ok then return nil, msg, code end
  ok, msg, code = fs.chmod(path, tonumber("600", 8))
  if not ok then return nil, msg, code end
  local f, err, errno = io.open(path, "a")
  if not f then return nil, err, errno end
  local sink = { file = f, path = path }
  function sink.fn(record)
    f:write(encode_record(record), "\n")
    f:flush()
  end
  sinks[#sinks + 1] = sink
  return true
end

--- log.close(): closes the JSON-lines files and drops every added sink.
function M.close()
  for _, sink in ipairs(sinks) do
    if sink.file then pcall(sink.file.close, sink.file) end
  end
  sinks = {}
end
-- }======

-- {====== records

local function emit(lvl, msg, base, fields)
  if LEVELS[lvl] < level then return end
  -- A logging call must never be what fails: odd arguments are kept, not refused.
  if fields ~= nil and type(fields) ~= "table" then fields = { detail = fields } end
  local record = {}
  for _, src in ipairs({ base or {}, fields or {} }) do
    for k, v in pairs(src) do
      if RESERVED[k] then k = "_" .. k end
      record[k] = v
    end
  end
  record.ts = qmig.isotime()
  record.level = lvl
  record.msg = tostring(msg)
  record = M.redact(record)
  pcall(stderr_sink, record)
  for _, sink in ipairs(sinks) do
    local ok, err = pcall(sink.fn, record)
    if not ok then
      pcall(io.stderr.write, io.stderr, "qmig.log: a sink failed: ", redact_string(tostring(err)), "\n")
    end
  end
end

-- Builds debug/info/warn/error for a logger whose records carry base.
-- Both log.info(msg) and logger:info(msg) work.
local function add_methods(obj, base)
  for _, name in ipairs(LEVEL_NAMES) do
    obj[name] = function(a, b, c)
      if a == obj then a, b = b, c end
      emit(name, a, base, b)
    end
  end
  obj.with = function(a, b)
    if a == obj then a = b end
    local merged = {}
    for k, v in pairs(base or {}) do merged[k] = v end
    for k, v in pairs(a or {}) do merged[k] = v end
    return add_methods({}, merged)
  end
  return obj
end

add_methods(M, nil)
-- }======

return M
