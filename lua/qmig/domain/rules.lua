-- QRS security rules on streams -> who may read / publish in each stream
-- (the roles each space type allows: docs/catalogue.md, spaces.assign).
-- Only what translates exactly is
-- translated; every other rule or condition is reported, never guessed.
--
-- A rule applies to a stream when it is a Custom Security rule, enabled,
-- not QMC-only (ruleContext 2), and one entry of its comma-separated
-- resourceFilter is `Stream_<id>` or `Stream_*`.  Actions: Read (2) ->
-- read; Publish (32), or Create (1) with Update (4) -> publish.
-- The condition is parsed (and/or/parentheses, = == like, quoted values)
-- and put in disjunctive normal form; each conjunction must name exactly
-- one assignee: `user.group = "X"`, `user.userId = "x"` (optionally with
-- `user.userDirectory = "D"`) or `user.name = "X"`, optionally narrowed
-- by `resource.name = "S"` / `resource.id = "..."` (which decide whether
-- it applies to this stream).  Wildcards, negations, roles, custom
-- properties and anything else make that conjunction "not translated".
local M = {}

M.READ, M.PUBLISH, M.CREATE, M.UPDATE = 2, 32, 1, 4

local function tokens(text)
  local out, i, n = {}, 1, #text
  while i <= n do
    local c = text:sub(i, i)
    if c:match("%s") then
      i = i + 1
    elseif c == "(" or c == ")" then
      out[#out + 1] = { t = c }; i = i + 1
    elseif c == '"' or c == "'" then
      local j, buf = i + 1, {}
      while j <= n and text:sub(j, j) ~= c do buf[#buf + 1] = text:sub(j, j); j = j + 1 end
      if j > n then return nil, "unterminated string" end
      out[#out + 1] = { t = "str", v = table.concat(buf) }; i = j + 1
    elseif text:sub(i, i + 1) == "==" or text:sub(i, i + 1) == "!=" then
      out[#out + 1] = { t = "op", v = text:sub(i, i + 1) }; i = i + 2
    elseif c == "=" then
      out[#out + 1] = { t = "op", v = "=" }; i = i + 1
    else
      local w = text:match("^[%w_%.@%-]+", i)
      if not w then return nil, "unexpected '" .. c .. "'" end
      local lw = w:lower()
      if lw == "and" or lw == "or" then out[#out + 1] = { t = lw }
      elseif lw == "like" then out[#out + 1] = { t = "op", v = "like" }
      else out[#out + 1] = { t = "id", v = w } end
      i = i + #w
    end
  end
  return out
end

-- Recursive descent to DNF: a list of conjunctions, each a list of atoms
-- {prop=, op=, value=}.  Bounded, so a huge rule is reported, not expanded.
local MAX_TERMS = 64

local function parse(toks)
  local pos = 1
  local function peek() return toks[pos] end
  local expr
  local function factor()
    local tk = peek()
    if not tk then error("unexpected end of rule", 0) end
    if tk.t == "(" then
      pos = pos + 1
      local e = expr()
      if not peek() or peek().t ~= ")" then error("missing ')'", 0) end
      pos = pos + 1
      return e
    end
    if tk.t ~= "id" then error("unexpected token", 0) end
    local op, val = toks[pos + 1], toks[pos + 2]
    if not op or op.t ~= "op" or not val or val.t ~= "str" then error("unsupported condition near " .. tk.v, 0) end
    pos = pos + 3
    return { { { prop = tk.v:lower(), op = op.v, value = val.v } } }
  end
  local function term()
    local acc = factor()
    while peek() and peek().t == "and" do
      pos = pos + 1
      local rhs, out = factor(), {}
      for _, a in ipairs(acc) do
        for _, b in ipairs(rhs) do
          local c = {}
          for _, x in ipairs(a) do c[#c + 1] = x end
          for _, x in ipairs(b) do c[#c + 1] = x end
          out[#out + 1] = c
        end
      end
      if #out > MAX_TERMS then error("too complex", 0) end
      acc = out
    end
    return acc
  end
  expr = function()
    local acc = term()
    while peek() and peek().t == "or" do
      pos = pos + 1
      for _, c in ipairs(term()) do acc[#acc + 1] = c end
      if #acc > MAX_TERMS then error("too complex", 0) end
    end
    return acc
  end
  local dnf = expr()
  if pos <= #toks then error("unexpected token after the condition", 0) end
  return dnf
end

-- M.conditions(text) -> DNF | nil, why
function M.conditions(text)
  if type(text) ~= "string" or text:match("^%s*$") then return nil, "empty condition" end
  local toks, err = tokens(text)
  if not toks then return nil, err end
  local ok, dnf = pcall(parse, toks)
  if not ok then return nil, tostring(dnf) end
  return dnf
end

local function applies_to_stream(rule, stream_id)
  for entry in tostring(rule.resourceFilter or ""):gmatch("[^,]+") do
    local f = entry:match("^%s*(.-)%s*$")
    if f == "Stream_*" or f:lower() == ("stream_" .. stream_id):lower() then return true end
  end
  return false
end

function M.in_force(rule)
  return type(rule) == "table" and tostring(rule.category):lower() == "security"
    and rule.type == "Custom" and rule.disabled ~= true and rule.ruleContext ~= 2
end

-- Rules that concern this stream.
function M.for_stream(rules, stream)
  local out = {}
  for _, r in ipairs(rules or {}) do
    if M.in_force(r) and applies_to_stream(r, stream.id) then out[#out + 1] = r end
  end
  return out
end

-- What a rule's actions grant: {read=bool, publish=bool}.
function M.grants(actions)
  actions = math.tointeger(actions) or 0
  local function has(bit) return actions & bit ~= 0 end
  return { read = has(M.READ), publish = has(M.PUBLISH) or (has(M.CREATE) and has(M.UPDATE)) }
end

-- One conjunction -> assignee {group=} | {user_id=, directory=} |
-- {user_name=}, or false when it does not apply to this stream, or nil,
-- why when it cannot be translated.
local function assignee(conj, stream)
  local who, dir = nil, nil
  for _, atom in ipairs(conj) do
    local op, p, v = atom.op, atom.prop, atom.value
    if op == "!=" or (op == "like" and v:find("[%*%?]")) then
      return nil, string.format("%s %s \"%s\"", p, op, v)
    end
    if p == "resource.name" then
      if v:lower() ~= tostring(stream.name):lower() then return false end
    elseif p == "resource.id" then
      if v:lower() ~= tostring(stream.id):lower() then return false end
    elseif p == "resource.resourcetype" then
      if v:lower() ~= "stream" then return false end
    elseif p == "user.userdirectory" then
      if dir then return nil, "two userDirectory conditions" end
      dir = v
    elseif p == "user.group" or p == "user.userid" or p == "user.name" then
      if who then return nil, "more than one user or group condition in a conjunction" end
      who = { kind = p, value = v }
    else
      return nil, string.format("condition on %s", p)
    end
  end
  if not who then return nil, dir and "a whole user directory" or "no user or group condition" end
  if who.kind == "user.group" then
    if dir then return nil, "group and directory together" end
    return { group = who.value }
  elseif who.kind == "user.userid" then
    return { user_id = who.value, directory = dir }
  end
  if dir then return nil, "user.name with a directory" end
  return { user_name = who.value }
end

-- M.derive(rules, stream) -> grants, notes.  grants = list of
-- {who = assignee, read = bool, publish = bool, rule = name}; notes =
-- list of strings for what was not translated.
function M.derive(rules, stream)
  local grants, notes = {}, {}
  for _, r in ipairs(M.for_stream(rules, stream)) do
    local g = M.grants(r.actions)
    local label = "rule '" .. tostring(r.name) .. "'"
    if not g.read and not g.publish then
      notes[#notes + 1] = label .. ": actions " .. tostring(r.actions) .. " grant neither read nor publish"
    else
      local dnf, why = M.conditions(r.rule)
      if not dnf then
        notes[#notes + 1] = label .. " not translated: " .. why
      else
        for _, conj in ipairs(dnf) do
          local who, err = assignee(conj, stream)
          if who then
            grants[#grants + 1] = { who = who, read = g.read, publish = g.publish, rule = r.name }
          elseif who == nil then
            notes[#notes + 1] = label .. " not translated: " .. err
          end
        end
      end
    end
  end
  return grants, notes
end

return M
