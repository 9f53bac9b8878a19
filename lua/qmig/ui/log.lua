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
local secrets = {}                 -- every form, longest first
local secret_set = {}
local registered = 0               -- secrets given to add_secret

local function check_level(name)
  local n = LEVELS[name]
  if not n then error("unknown log level '" .. tostring(name) .. "'", 3) end
  return n
end

-- {====== redaction

local SENSITIVE_KEYS = {
  "password", "passwd", "secret", "api_key", "apikey", "token", "authorization",
  "passphrase", "qpassword", "key_password", "private_key", "cookie", "credential",
}

-- Every record, log line and report row is redacted, and their keys and
-- short values repeat (id, name, status...): answers for short strings
-- are kept (bounded; emptied when a secret is added, which changes them).
local MEMO_LEN, MEMO_MAX = 200, 20000
local key_memo, key_memo_n, text_memo, text_memo_n = {}, 0, {}, 0

local function sensitive_key(k)
  if type(k) ~= "string" then return false end
  local known = key_memo[k]
  if known ~= nil then return known end
  local lk = k:lower():gsub("%-", "_")
  local found = false
  for _, word in ipairs(SENSITIVE_KEYS) do
    if lk:find(word, 1, true) then found = true; break end
  end
  if #k <= MEMO_LEN and key_memo_n < MEMO_MAX then
    key_memo[k] = found
    key_memo_n = key_memo_n + 1
  end
  return found
end

-- A Lua pattern matching word in any letter case.
local function anycase(word)
  return (word:gsub(".", function(c)
    if c:find("%a") then return "[" .. c:upper() .. c:lower() .. "]" end
    return c:find("%p") and "%" .. c or c
  end))
end

-- Credential-shaped text.  Each rule: a lower-case word that must occur
-- (a plain find, cheap, skips the patterns for almost every string), the
-- pattern, its replacement.  The key part allows suffixes (access_token,
-- x-api-key: the prefix lies before the match and stays as it is).
local TEXT_RULES = {
  -- "*" is in the sets so that a value a registered secret already cut up
  -- is replaced whole.
  { "bearer", "(" .. anycase("bearer") .. "%s+)[%w%-%._~%+/%*]+=*", "%1***" },
  { "basic", "(Basic%s+)[%w%+/%*]+=*", "%1***" },
  { "private key", "(-----BEGIN [%u ]*PRIVATE KEY-----).-(-----END [%u ]*PRIVATE KEY-----)", "%1***%2" },
}
for _, word in ipairs({ "password", "passwd", "secret", "api_key", "api-key", "apikey",
                        "token", "passphrase", "authorization" }) do
  -- No open-ended class before the word: it would make gsub quadratic on
  -- long runs of letters (a base64 blob).
  local key = "(" .. anycase(word) .. "[%w_%-]*"
  -- quoted values: "password": "x", password='x', password = "x"
  TEXT_RULES[#TEXT_RULES + 1] = { word, key .. "[\"']?%s*[:=]%s*\")[^\"]*(\")", "%1***%2" }
  TEXT_RULES[#TEXT_RULES + 1] = { word, key .. "[\"']?%s*[:=]%s*')[^']*(')", "%1***%2" }
  -- bare values: password=x&..., token: x
  TEXT_RULES[#TEXT_RULES + 1] = { word, key .. "%s*[:=]%s*)[^%s&;,\"'}%]]+", "%1***" }
end

-- The rules by their word, so each word is looked for once per string.
local RULES_BY_WORD, SHORTEST_WORD = {}, math.huge
for _, rule in ipairs(TEXT_RULES) do
  local group = RULES_BY_WORD[#RULES_BY_WORD]
  if not group or group.word ~= rule[1] then
    group = { word = rule[1] }
    RULES_BY_WORD[#RULES_BY_WORD + 1] = group
    SHORTEST_WORD = math.min(SHORTEST_WORD, #rule[1])
  end
  group[#group + 1] = rule
end

local function replace_plain(s, needle, by)
  if not s:find(needle, 1, true) then return s end
  local out, pos = {}, 1
  while true do
    local i, j = s:find(needle, pos, true)
    if not i then break end
    out[#out + 1] = s:sub(pos, i - 1)
    out[#out + 1] = by
    pos = j + 1
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

local function redact_uncached(s)
  for _, secret in ipairs(secrets) do s = replace_plain(s, secret, "***") end
  if #s < SHORTEST_WORD then return s end
  local lower = s:lower()
  for _, group in ipairs(RULES_BY_WORD) do
    if lower:find(group.word, 1, true) then
      for _, rule in ipairs(group) do s = s:gsub(rule[2], rule[3]) end
    end
  end
  return s
end

local function redact_string(s)
  if #s > MEMO_LEN then return redact_uncached(s) end
  local known = text_memo[s]
  if known then return known end
  local out = redact_uncached(s)
  if text_memo_n < MEMO_MAX then
    text_memo[s] = out
    text_memo_n = text_memo_n + 1
  end
  return out
end

-- Copies keep a metatable only when it is plain data (json.array_mt): one
-- with __gc or __close would run its finalizer twice.
local function keep_metatable(copy, v)
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__gc == nil and mt.__close == nil then
    setmetatable(copy, mt)
  end
  return copy
end

local function redact_value(v, seen)
  local t = type(v)
  if t == "string" then return redact_string(v) end
  if t ~= "table" then return v end
  if seen[v] then return seen[v] end
  local copy = {}
  seen[v] = copy
  for k, x in pairs(v) do
    local rk = type(k) == "string" and redact_string(k) or k
    -- a flag such as has_password = false holds no secret and must read
    -- back as false; anything else under such a key is hidden whole
    if sensitive_key(k) and type(x) ~= "boolean" then
      copy[rk] = "***"
    else
      copy[rk] = redact_value(x, seen)
    end
  end
  return keep_metatable(copy, v)
end

--- log.redact(v) -> a redacted copy of a string or (deep) table; other
-- values are returned as they are.
function M.redact(v)
  return redact_value(v, {})
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  return ((s:gsub("..?.?", function(chunk)
    local a, b, c = chunk:byte(1, 3)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local out = {}
    for i = 1, 4 do
      local idx = (n >> (6 * (4 - i))) & 63
      out[i] = B64:sub(idx + 1, idx + 1)
    end
    if not b then out[3], out[4] = "=", "=" elseif not c then out[4] = "=" end
    return table.concat(out)
  end)))
end

local function urlencode(s, upper)
  local fmt = upper and "%%%02X" or "%%%02x"
  return (s:gsub("[^%w%-%._~]", function(c) return fmt:format(c:byte()) end))
end

-- The base64 characters that depend only on the secret's bytes, for each
-- of the three alignments it can have inside a longer encoded value.
local function base64_cores(s)
  local cores = { base64(s) }
  for k = 0, 2 do
    local enc = base64(("\0"):rep(k) .. s .. "\0\0")
    local first = (8 * k + 5) // 6                -- ceil(8k / 6)
    local last = (8 * (k + #s) - 6) // 6          -- floor((8(k+n) - 6) / 6)
    local core = enc:sub(first + 1, last + 1)
    if #core >= 8 then cores[#cores + 1] = core end
  end
  return cores
end

-- Forms shorter than this are not searched for in text: a one-letter
-- password would turn every "p" of every message into "***" (and a short
-- base64 core of a long secret would do the same).  Fields named like a
-- secret are still hidden whole, whatever their length.
local MIN_SECRET = 4

local function add_form(form)
  if #form >= MIN_SECRET and not secret_set[form] then
    secret_set[form] = true
    secrets[#secrets + 1] = form
  end
end

--- log.add_secret(s): s is redacted from now on wherever it appears.
function M.add_secret(s)
  if type(s) ~= "string" or s == "" then return end
  if not secret_set[s] then registered = registered + 1 end
  add_form(s)
  add_form(urlencode(s, true))
  add_form(urlencode(s, false))
  add_form((urlencode(s, true):gsub("%%20", "+")))
  for _, core in ipairs(base64_cores(s)) do
    add_form(core)
    add_form((core:gsub("[+/=]", { ["+"] = "-", ["/"] = "_", ["="] = "" })))
  end
  -- Longest first, so that a secret containing another is replaced whole.
  table.sort(secrets, function(a, b) return #a > #b or (#a == #b and a < b) end)
  text_memo, text_memo_n = {}, 0  -- answers given before may now be wrong
end

--- log.secrets_count() -> how many distinct secrets are registered.
function M.secrets_count()
  return registered
end
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
local function stderr_sink(record)
  if LEVELS[record.level] >= stderr_level then
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
