-- qmig.ui.redact — what qmig.ui.log does to everything that leaves the
-- process (the three layers are described in lua/qmig/ui/log.lua):
-- registered secrets in every form they travel in, credential-named
-- fields, credential-shaped text.  qmig.ui.log re-exports redact,
-- add_secret and secrets_count.

local M = {}

local secrets = {}                 -- every form, longest first
local secret_set = {}
local registered = 0               -- secrets given to add_secret

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

function M.redact_string(s)
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
function M.keep_metatable(copy, v)
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__gc == nil and mt.__close == nil then
    setmetatable(copy, mt)
  end
  return copy
end

local function redact_value(v, seen)
  local t = type(v)
  if t == "string" then return M.redact_string(v) end
  if t ~= "table" then return v end
  if seen[v] then return seen[v] end
  local copy = {}
  seen[v] = copy
  for k, x in pairs(v) do
    local rk = type(k) == "string" and M.redact_string(k) or k
    -- a flag such as has_password = false holds no secret and must read
    -- back as false; anything else under such a key is hidden whole
    if sensitive_key(k) and type(x) ~= "boolean" then
      copy[rk] = "***"
    else
      copy[rk] = redact_value(x, seen)
    end
  end
  return M.keep_metatable(copy, v)
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

return M
