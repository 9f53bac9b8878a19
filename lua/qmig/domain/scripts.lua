-- Load-script rewriting for apps.scripts (plan.scripts.replace in
-- docs/job-file.md; docs/catalogue.md, apps.scripts): pure functions, no I/O, so they are unit-tested alone.
--
-- Order: (1) data-connection renames, (2) the plan's replace rules in the
-- order written (`find` = plain text, `pattern` = a Lua pattern with %1
-- captures), (3) the `script` transform hook (applied by the step).
--
-- Connection references are written space-qualified,
-- `LIB CONNECT TO 'Space:Conn'` and `lib://Space:Conn/`, because an app
-- bound for a managed space reloads first in the staging space and later
-- in the managed one: an unqualified name would resolve against a
-- different space each time.  `ODBC|OLEDB|CUSTOM CONNECT TO [x]` (not
-- supported in Qlik Cloud) becomes `LIB CONNECT TO 'Space:Conn'` when x is
-- the name of a mapped connection, or the DSN/connection string of one;
-- the `(XUserId is ..., XPassword is ...)` clause is dropped with it.
-- References already qualified (containing ':') are left alone, so
-- rewriting is idempotent.
local M = {}

-- conns: list of {source = <QSEoW connection name>, space = <Cloud space
-- name>, name = <Cloud connection name>, connect = <QSEoW connection
-- string or nil>}.  Returns a lookup table by lower-cased reference.
function M.index(conns)
  local by_name, by_connect = {}, {}
  for _, c in ipairs(conns or {}) do
    if c.source and c.space and c.name then
      by_name[c.source:lower()] = c
      -- "ODBC CONNECT TO [FinanceDSN]" -> "financedsn"
      local target = type(c.connect) == "string"
        and c.connect:match("^%s*%a+%s+[Cc][Oo][Nn][Nn][Ee][Cc][Tt]%s+[Tt][Oo]%s+(.-)%s*;?%s*$")
      if target then
        target = target:gsub("%s*%b()%s*$", "")
        target = target:match("^%[(.*)%]$") or target:match("^'(.*)'$") or target:match('^"(.*)"$') or target
        if target ~= "" and not by_connect[target:lower()] then by_connect[target:lower()] = c end
      end
    end
  end
  return { by_name = by_name, by_connect = by_connect }
end

-- 'Space:Conn' (double quotes when the name holds a single quote).
function M.qualified(c)
  local ref = c.space .. ":" .. c.name
  if ref:find("'", 1, true) then return '"' .. ref .. '"' end
  return "'" .. ref .. "'"
end

local function unquote(x)
  return x:match("^%[(.*)%]$") or x:match("^'(.*)'$") or x:match('^"(.*)"$') or x
end

-- A case-insensitive Lua pattern for a keyword ("lib" -> "[lL][iI][bB]").
local function ci(word)
  return (word:gsub("%a", function(ch) return "[" .. ch:lower() .. ch:upper() .. "]" end))
end

local CONNECT = ci("connect") .. "%s+" .. ci("to") .. "%s+"

-- The quoted or bracketed or bare operand at position i of text:
-- returns its raw text and the position after it.
local function operand(text, i)
  local first = text:sub(i, i)
  local close = ({ ["'"] = "'", ['"'] = '"', ["["] = "]" })[first]
  if close then
    local j = text:find(close, i + 1, true)
    if not j then return nil end
    return text:sub(i, j), j + 1
  end
  local j = text:find("[%s;]", i) or (#text + 1)
  if j == i then return nil end
  return text:sub(i, j - 1), j
end

-- Rewrites every "<KW> CONNECT TO <operand>" for the keywords given.
local function rewrite_connects(text, idx, keywords, lib, counts)
  for _, kw in ipairs(keywords) do
    local out, pos = {}, 1
    local pat = "()" .. ci(kw) .. "%s+" .. CONNECT .. "()"
    while true do
      local s, e = text:match(pat, pos)
      if not s then break end
      -- keyword must start a word
      local prev = s > 1 and text:sub(s - 1, s - 1) or ""
      local raw, after = operand(text, e)
      if prev:match("[%w_]") or not raw then
        out[#out + 1] = text:sub(pos, e - 1)
        pos = e
      else
        local ref = unquote(raw)
        local c
        if not ref:find(":", 1, true) then
          c = idx.by_name[ref:lower()] or (not lib and idx.by_connect[ref:lower()]) or nil
        end
        if c then
          local stop = after
          if not lib then
            -- drop "(XUserId is ..., XPassword is ...)"
            local ws, paren_end = text:match("^(%s*)%b()()", after)
            if ws then stop = paren_end end
          end
          out[#out + 1] = text:sub(pos, s - 1) .. "LIB CONNECT TO " .. M.qualified(c)
          counts.connections = counts.connections + 1
          pos = stop
        else
          out[#out + 1] = text:sub(pos, after - 1)
          pos = after
        end
      end
    end
    out[#out + 1] = text:sub(pos)
    text = table.concat(out)
  end
  return text
end

-- lib://Conn/... -> lib://Space:Conn/...
local function rewrite_paths(text, idx, counts)
  return (text:gsub("([lL][iI][bB]://)([^/'\"%]\r\n]*)/", function(scheme, ref)
    if ref:find(":", 1, true) then return nil end
    local c = idx.by_name[ref:lower()]
    if not c then return nil end
    counts.connections = counts.connections + 1
    return scheme .. c.space .. ":" .. c.name .. "/"
  end))
end

-- Renames data-connection references (step 1).
function M.rename_connections(text, conns)
  local idx = conns.by_name and conns or M.index(conns)
  local counts = { connections = 0 }
  text = rewrite_connects(text, idx, { "lib" }, true, counts)
  text = rewrite_connects(text, idx, { "odbc", "oledb", "custom" }, false, counts)
  text = rewrite_paths(text, idx, counts)
  return text, counts.connections
end

local function plain_pattern(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- Applies the plan's replace rules (step 2).  Returns text, replacements.
function M.apply_rules(text, rules)
  local n = 0
  for _, r in ipairs(rules or {}) do
    local k
    if r.find then
      if r.find ~= "" then
        text, k = text:gsub(plain_pattern(r.find), (r.replace:gsub("%%", "%%%%")))
        n = n + k
      end
    else
      text, k = text:gsub(r.pattern, r.replace)
      n = n + k
    end
  end
  return text, n
end

-- Steps 1 and 2; the step applies the transform hook after.
-- -> new text, {connections = n, replacements = n}
function M.rewrite(text, conns, rules)
  local c, r
  text, c = M.rename_connections(text or "", conns)
  text, r = M.apply_rules(text, rules)
  return text, { connections = c, replacements = r }
end

return M
