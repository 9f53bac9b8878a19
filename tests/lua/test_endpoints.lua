-- Every Qlik Cloud endpoint the code calls has a conformance check.
-- tests/conformance/endpoints.txt lists them (method, path, the check in
-- conformance.mjs that calls it and the client function it uses); this
-- suite reads the endpoints out of lua/ and steps/ and fails on a call the
-- list lacks, on an entry nothing calls any more, on an entry whose check
-- does not exist or does not make that call, and, with @qlik/api
-- installed, on an entry whose client function is another endpoint.
--
-- What counts as a call: target:get/find/each/all/post/put/patch/delete/
-- remove/request/raw (also through pcall(target.post, target, ...)), and
-- request tables {method = "POST", path = ...} (undo entries, dry-run
-- refusals, the OAuth token request) the client replays, and what a step's
-- target_path returns (the engine GETs it).  A path is read
-- from string literals; what is concatenated to them becomes {id};
-- locals, module constants and one-line module functions (cloudtasks'
-- task_path) are followed.  A call whose path cannot be read fails the
-- suite, unless it lies in a function that passes its caller's path on
-- (RELAYS): then the callers are read instead.
local t = require "testing"

local T = t.suite("endpoints")

local LIST = "tests/conformance/endpoints.txt"
local CONFORMANCE = "tests/conformance/conformance.mjs"
local QLIK_API = "tests/conformance/node_modules/@qlik/api"

-- Functions that take the path (and the method) from their caller, per
-- file and function: arg = which argument of the function is the path,
-- method = which one is the method (absent: the method of the call inside).
-- client = the client's own plumbing; entries = the path comes from a
-- request table ({method =, path =}), which is read where it is written.
local RELAYS = {
  ["lua/qmig/clients/cloud.lua"] = { client = true },
  ["lua/qmig/clients/retrieve.lua"] = { fns = { first = { arg = 2 }, by_name = { arg = 2 } } },
  ["lua/qmig/domain/extensions.lua"] = { fns = { upload = { arg = 4, method = 3 } } },
  ["lua/qmig/engine/undo.lua"] = { entries = true },
  ["steps/apps/schedules.lua"] = { entries = true },
  -- declared = the paths are what the steps' target_path functions return
  ["lua/qmig/engine/gone.lua"] = { declared = true },
}

-- Values the scanner cannot see (a field of a table chosen at run time).
local VALUES = {
  ["lua/qmig/domain/extensions.lua"] = { ["k.api"] = { "extensions", "themes" } },
}

local METHOD_OF = { get = "GET", find = "GET", each = "GET", all = "GET", post = "POST", put = "PUT",
  patch = "PATCH", delete = "DELETE", remove = "DELETE", request = true, raw = true }
local HTTP = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }
local OPAQUE = "\1"

-- {====== a Lua lexer: names, strings (decoded), numbers, punctuation

local ESC = { n = "\n", t = "\t", r = "\r", a = "\a", b = "\b", f = "\f", v = "\v", ["\\"] = "\\", ['"'] = '"',
  ["'"] = "'", ["\n"] = "\n" }
local PUNCT3 = { ["..."] = true }
local PUNCT2 = { [".."] = true, ["=="] = true, ["~="] = true, ["<="] = true, [">="] = true, ["::"] = true,
  ["//"] = true, ["<<"] = true, [">>"] = true }

local function lex(src)
  local toks, i, line, n = {}, 1, 1, #src
  local function lines_in(s) local _, k = s:gsub("\n", ""); return k end
  local function long_bracket(at)  -- at "[" of [==[ -> text, index after
    local eq = src:match("^%[(=*)%[", at)
    local close = "]" .. eq .. "]"
    local from = at + #eq + 2
    local j = src:find(close, from, true) or (n + 1)
    local text = src:sub(from, j - 1)
    line = line + lines_in(src:sub(at, j))
    return text:gsub("^\r?\n", ""), j + #close
  end
  while i <= n do
    local c = src:sub(i, i)
    if c == "\n" then
      line, i = line + 1, i + 1
    elseif c:match("%s") then
      i = i + 1
    elseif src:sub(i, i + 1) == "--" then
      if src:match("^%[=*%[", i + 2) then
        local _
        _, i = long_bracket(i + 2)
      else
        i = src:find("\n", i, true) or (n + 1)
      end
    elseif c == '"' or c == "'" then
      local j, buf, at = i + 1, {}, line
      while j <= n do
        local d = src:sub(j, j)
        if d == c or d == "\n" then break end
        if d == "\\" then
          local e = src:sub(j + 1, j + 1)
          if e == "z" then
            local ws = src:match("^%s*", j + 2)
            line, j = line + lines_in(ws), j + 2 + #ws
          elseif e == "x" then
            buf[#buf + 1], j = string.char(tonumber(src:sub(j + 2, j + 3), 16)), j + 4
          elseif e == "u" then
            local hex = src:match("^{(%x+)}", j + 2)
            buf[#buf + 1], j = utf8.char(tonumber(hex, 16)), j + 4 + #hex
          elseif e:match("%d") then
            local dec = src:match("^%d%d?%d?", j + 1)
            buf[#buf + 1], j = string.char(tonumber(dec)), j + 1 + #dec
          else
            if e == "\n" then line = line + 1 end
            buf[#buf + 1], j = ESC[e] or e, j + 2
          end
        else
          buf[#buf + 1], j = d, j + 1
        end
      end
      toks[#toks + 1] = { t = "str", v = table.concat(buf), line = at }
      i = j + 1
    elseif c == "[" and src:match("^%[=*%[", i) then
      local at = line
      local text
      text, i = long_bracket(i)
      toks[#toks + 1] = { t = "str", v = text, line = at }
    elseif c:match("[%a_]") then
      local w = src:match("^[%a_][%w_]*", i)
      toks[#toks + 1] = { t = "name", v = w, line = line }
      i = i + #w
    elseif c:match("%d") or (c == "." and src:sub(i + 1, i + 1):match("%d")) then
      local num = src:match("^0[xX][%x%.]*[pP]?[%+%-]?%x*", i) or src:match("^[%d%.]+[eE][%+%-]?%d+", i)
        or src:match("^[%d%.]+", i)
      toks[#toks + 1] = { t = "num", v = num, line = line }
      i = i + #num
    else
      local p = PUNCT3[src:sub(i, i + 2)] and src:sub(i, i + 2) or PUNCT2[src:sub(i, i + 1)] and src:sub(i, i + 1) or c
      toks[#toks + 1] = { t = "punct", v = p, line = line }
      i = i + #p
    end
  end
  toks[#toks + 1] = { t = "eof", v = "", line = line }
  return toks
end
-- }======

-- {====== scopes: which local or parameter a name is, which function a token is in

local OPENS = { ["function"] = true, ["if"] = true, ["do"] = true, ["repeat"] = true }
local CLOSES = { ["end"] = true, ["until"] = true }

-- -> {bindings = {{name, from, to, value = token index | nil}}, fn_at = {[i] = named function}}
local function scopes(tk)
  local bindings, fn_at = {}, {}
  local stack = { { first = 1, names = {} } }
  local pending_for
  local function bind(name, from, value)
    local b = { name = name, from = from, to = #tk, value = value }
    bindings[#bindings + 1] = b
    local top = stack[#stack].names
    top[#top + 1] = b
  end
  local function named()
    for k = #stack, 1, -1 do if stack[k].fname then return stack[k].fname end end
    return nil
  end
  local i = 1
  while i <= #tk do
    local v, kind = tk[i].v, tk[i].t
    if kind == "name" and v == "function" then
      local j, parts = i + 1, {}
      while tk[j].v ~= "(" and tk[j].t ~= "eof" do parts[#parts + 1] = tk[j].v; j = j + 1 end
      local fname = #parts > 0 and table.concat(parts) or nil
      if fname and tk[i - 1] and tk[i - 1].v == "local" then bind(fname, i) end
      stack[#stack + 1] = { fname = fname and (fname:match("[%.:]([%w_]+)$") or fname), names = {} }
      if fname and fname:find(":", 1, true) then bind("self", i) end
      j = j + 1
      while tk[j].v ~= ")" and tk[j].t ~= "eof" do
        if tk[j].t == "name" then bind(tk[j].v, j) end
        j = j + 1
      end
      for k = i, j do fn_at[k] = named() end
      i = j + 1
    else
      if kind == "name" and OPENS[v] then
        stack[#stack + 1] = { names = {} }
        if v == "do" and pending_for then
          for _, p in ipairs(pending_for) do bind(p[1], p[2]) end
          pending_for = nil
        end
      elseif kind == "name" and CLOSES[v] and #stack > 1 then
        for _, b in ipairs(table.remove(stack).names) do b.to = i end
      elseif kind == "name" and v == "for" then
        pending_for = {}
        local j = i + 1
        while tk[j].t == "name" and tk[j].v ~= "in" do
          pending_for[#pending_for + 1] = { tk[j].v, j }
          j = tk[j + 1].v == "," and j + 2 or j + 1
        end
      elseif kind == "name" and v == "local" and tk[i + 1].v ~= "function" then
        local j, names = i + 1, {}
        while tk[j].t == "name" do
          names[#names + 1] = tk[j].v
          j = j + 1
          if tk[j].v == "<" then j = j + 3 end  -- <const>, <close>
          if tk[j].v ~= "," then break end
          j = j + 1
        end
        local value = tk[j].v == "=" and #names == 1 and j + 1 or nil
        for _, name in ipairs(names) do bind(name, j, value) end
      end
      fn_at[i] = named()
      i = i + 1
    end
  end
  return { bindings = bindings, fn_at = fn_at }
end

local function lookup(file, name, at)
  local best
  for _, b in ipairs(file.scope.bindings) do
    if b.name == name and b.from < at and at <= b.to and (not best or b.from > best.from) then best = b end
  end
  return best
end
-- }======

-- {====== reading path expressions

local files = {}

local function load(path)
  if files[path] ~= nil then return files[path] or nil end
  local f = io.open(path, "rb")
  if not f then files[path] = false; return nil end
  local src = f:read("a")
  f:close()
  local tk = lex(src)
  local file = { path = path, tk = tk, scope = scopes(tk) }
  -- the table a module returns ("return M" at the end)
  if tk[#tk - 2] and tk[#tk - 2].v == "return" and tk[#tk - 1].t == "name" then file.returns = tk[#tk - 1].v end
  files[path] = file
  return file
end

-- Index after the bracket that closes the one at i; counts blocks too, so
-- a function passed as an argument does not end the list at its commas.
local PAIRS = { ["("] = ")", ["["] = "]", ["{"] = "}" }
local function after_close(tk, i)
  local depth = 0
  while tk[i].t ~= "eof" do
    local v = tk[i].v
    if (tk[i].t == "punct" and PAIRS[v]) or (tk[i].t == "name" and OPENS[v]) then
      depth = depth + 1
    elseif (tk[i].t == "punct" and (v == ")" or v == "]" or v == "}")) or (tk[i].t == "name" and CLOSES[v]) then
      depth = depth - 1
      if depth == 0 then return i + 1 end
    end
    i = i + 1
  end
  return i
end

-- The arguments of a call whose "(" is at i: {{first, last}, ...}, index after ")".
local function arguments(tk, i)
  if tk[i].t == "str" then return { { i, i } }, i + 1 end
  if tk[i].v == "{" then local e = after_close(tk, i); return { { i, e - 1 } }, e end
  local args, depth, from = {}, 0, i + 1
  local j = i
  while tk[j].t ~= "eof" do
    local v, kind = tk[j].v, tk[j].t
    if (kind == "punct" and PAIRS[v]) or (kind == "name" and OPENS[v]) then
      depth = depth + 1
    elseif (kind == "punct" and (v == ")" or v == "]" or v == "}")) or (kind == "name" and CLOSES[v]) then
      depth = depth - 1
      if depth == 0 then
        if j > from then args[#args + 1] = { from, j - 1 } end
        return args, j + 1
      end
    elseif depth == 1 and v == "," and kind == "punct" then
      args[#args + 1] = { from, j - 1 }
      from = j + 1
    end
    j = j + 1
  end
  return args, j
end

local function product(a, b)
  local out = {}
  for _, x in ipairs(a) do
    for _, y in ipairs(b) do out[#out + 1] = x .. y end
  end
  return out
end

local eval_range, eval_expr

-- The module a name stands for (local X = require "m", local Y = X) -> file
local function module_of(file, name, at, depth)
  local b = lookup(file, name, at)
  if not b then
    return file.returns == name and file or nil
  end
  if not b.value or depth > 8 then
    return file.returns == name and b.value and file.tk[b.value].v == "{" and file or nil
  end
  local tk, v = file.tk, b.value
  if tk[v].v == "require" then
    local s = tk[v + 1].t == "str" and tk[v + 1] or (tk[v + 1].v == "(" and tk[v + 2].t == "str" and tk[v + 2])
    if s and s.v:match("^qmig%.") then return load("lua/" .. s.v:gsub("%.", "/") .. ".lua") end
    return nil
  end
  if tk[v].t == "name" and tk[v + 1].v ~= "." and tk[v + 1].v ~= "(" then
    return module_of(file, tk[v].v, v, depth + 1)
  end
  return file.returns == name and tk[v].v == "{" and file or nil
end

-- M.field = value, or function M.field(params) return value end, in a module
local function field_of(mod, field)
  local tk = mod.tk
  for i = 1, #tk - 3 do
    if tk[i].v == mod.returns and tk[i + 1].v == "." and tk[i + 2].v == field then
      if tk[i + 3].v == "=" and (i == 1 or tk[i - 1].v ~= ".") then return { value = i + 4 } end
      if tk[i - 1] and tk[i - 1].v == "function" and tk[i + 3].v == "(" then
        local params, j = {}, i + 4
        while tk[j].v ~= ")" do
          if tk[j].t == "name" then params[#params + 1] = tk[j].v end
          j = j + 1
        end
        if tk[j + 1].v == "return" then return { params = params, value = j + 2 } end
      end
    end
  end
  return nil
end

-- One operand at i (not past last) -> alternatives, index after; nil when
-- it is not something a path is made of (the caller makes it opaque).
local function operand(file, i, last, env, depth)
  local tk = file.tk
  local tok = tk[i]
  if i > last or depth > 12 then return nil end
  if tok.t == "str" then return { tok.v }, i + 1 end
  if tok.v == "(" and tok.t == "punct" then
    local e = after_close(tk, i)
    local inner = eval_range(file, i + 1, e - 2, env, depth + 1)
    return inner, e
  end
  if tok.t ~= "name" then return nil end
  local chain, j = { tok.v }, i + 1
  while j + 1 <= last and tk[j].v == "." and tk[j + 1].t == "name" do chain[#chain + 1] = tk[j + 1].v; j = j + 2 end
  local text = table.concat(chain, ".")
  local called = j <= last and (tk[j].v == "(" or tk[j].t == "str" or tk[j].v == "{")
  local result
  local values = VALUES[file.path] and VALUES[file.path][text]
  if values then
    file.values_used = file.values_used or {}
    file.values_used[text] = true
    result = values
  elseif called then
    local args, after = arguments(tk, j)
    j = after
    if text == "tostring" and #args == 1 then
      result = eval_range(file, args[1][1], args[1][2], env, depth + 1)
    elseif #chain == 2 then
      local mod = module_of(file, chain[1], i, 0)
      local f = mod and field_of(mod, chain[2])
      if f and f.params then
        local params = {}
        for k, p in ipairs(f.params) do
          params[p] = args[k] and eval_range(file, args[k][1], args[k][2], env, depth + 1) or { OPAQUE }
        end
        result = eval_expr(mod, f.value, #mod.tk, { params = params }, depth + 1)
      end
    end
  elseif #chain == 1 and env.params and env.params[text] then
    result = env.params[text]
  elseif #chain == 1 then
    local b = lookup(file, text, i)
    if b and b.value then result = eval_expr(file, b.value, #tk, {}, depth + 1) end
  elseif #chain == 2 then
    local mod = module_of(file, chain[1], i, 0)
    local f = mod and field_of(mod, chain[2])
    if f and not f.params then result = eval_expr(mod, f.value, #mod.tk, {}, depth + 1) end
  end
  -- what follows (a method call, an index) makes it something else
  local function suffix(k)
    local v = tk[k].v
    return v == ":" or v == "[" or v == "(" or (v == "." and tk[k + 1].t == "name")
  end
  while j <= last and suffix(j) do
    result = nil
    if tk[j].v == ":" then
      local _
      _, j = arguments(tk, j + 2)
    elseif tk[j].v == "." then
      j = j + 2
    else
      j = after_close(tk, j)
    end
  end
  return result or { OPAQUE }, j
end

local BINARY = { ["or"] = true, ["and"] = true, ["=="] = true, ["~="] = true, ["<"] = true, [">"] = true,
  ["<="] = true, [">="] = true, ["+"] = true, ["-"] = true, ["*"] = true, ["/"] = true, ["//"] = true,
  ["%"] = true, ["^"] = true, ["&"] = true, ["|"] = true, ["~"] = true, ["<<"] = true, [">>"] = true }

-- A concatenation starting at i -> alternatives, index after it; anything
-- but a chain of operands joined by .. is opaque.
function eval_expr(file, i, last, env, depth)
  local alts, j = operand(file, i, last, env, depth)
  if not alts then return { OPAQUE }, i + 1 end
  while j <= last and file.tk[j].v == ".." do
    local more
    more, j = operand(file, j + 1, last, env, depth)
    if not more then return { OPAQUE }, j end
    alts = product(alts, more)
    if #alts > 64 then return { OPAQUE }, j end
  end
  if j <= last and BINARY[file.tk[j].v] then return { OPAQUE }, j end
  return alts, j
end

function eval_range(file, first, last, env, depth)
  if first > last then return { OPAQUE } end
  local alts, j = eval_expr(file, first, last, env, depth)
  if j ~= last + 1 then return { OPAQUE } end
  return alts
end

-- The endpoint a path stands for, as the client sends it (cloud.api_path),
-- ids as {id}; nil when it does not start with text.
local function endpoint(method, path)
  if path:sub(1, 1) == OPAQUE or path == "" then return nil end
  path = path:gsub("%?.*$", ""):gsub(OPAQUE .. "+", "{id}")
  if not (path:match("^/api/") or path:match("^/oauth/")) then path = "/api/v1/" .. path:gsub("^/", "") end
  return method .. " " .. path
end
-- }======

-- {====== the scan

local function source_files()
  local out = {}
  local p = io.popen("find lua steps -name '*.lua' | LC_ALL=C sort")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

local function literal_method(file, arg)
  if not arg then return nil end
  local alts = eval_range(file, arg[1], arg[2], {}, 0)
  if #alts == 1 and HTTP[alts[1]] then return alts[1] end
  return nil
end

-- -> {["GET /api/v1/users/me"] = {"file:line", ...}}, problems, relays and values never used
local function scan(paths)
  files = {}
  local found, problems, used = {}, {}, {}
  local function add(file, line, method, alts)
    for _, a in ipairs(alts) do
      local e = endpoint(method, a)
      found[e] = found[e] or {}
      table.insert(found[e], file.path .. ":" .. line)
    end
  end
  local callers = {}  -- [file][fn] = {method =} for relays in use
  local function call(file, i, name, args)
    local tk = file.tk
    local method, path = METHOD_OF[name], args[1]
    if method == true then method, path = literal_method(file, args[1]), args[2] end
    local alts = path and eval_range(file, path[1], path[2], {}, 0) or { OPAQUE }
    local readable = method ~= nil
    for _, a in ipairs(alts) do if not endpoint("GET", a) then readable = false end end
    if readable then return add(file, tk[i].line, method, alts) end
    local relay = RELAYS[file.path]
    local fn = file.scope.fn_at[i]
    if relay and (relay.client or relay.entries or relay.declared) then
      used[file.path] = true
    elseif relay and relay.fns and fn and relay.fns[fn] then
      used[file.path .. " " .. fn] = true
      callers[file.path] = callers[file.path] or {}
      callers[file.path][fn] = { method = method }
    else
      problems[#problems + 1] = string.format("%s:%d: cannot read the endpoint of this %s call (write its path "
        .. "as a string with the ids concatenated, or add the function to RELAYS in tests/lua/test_endpoints.lua)",
        file.path, tk[i].line, name)
    end
  end
  local function is_target(file, tok)
    return tok and tok.t == "name"
      and (tok.v == "target" or (tok.v == "self" and file.path == "lua/qmig/clients/cloud.lua"))
  end
  local function request_table(file, i)
    local tk = file.tk
    local stop = after_close(tk, i) - 1
    local method, path
    local j = i + 1
    while j < stop do
      if tk[j].t == "name" and tk[j + 1].v == "=" and tk[j + 1].t == "punct" then
        local from = j + 2
        -- the value runs to the next , or ; of this table
        local k = from
        while k < stop and not ((tk[k].v == "," or tk[k].v == ";") and tk[k].t == "punct") do
          if (tk[k].t == "punct" and PAIRS[tk[k].v]) or (tk[k].t == "name" and OPENS[tk[k].v]) then
            k = after_close(tk, k)
          else
            k = k + 1
          end
        end
        if tk[j].v == "method" then method = literal_method(file, { from, k - 1 }) end
        if tk[j].v == "path" then path = { from, k - 1 } end
        j = k + 1
      elseif (tk[j].t == "punct" and PAIRS[tk[j].v]) or (tk[j].t == "name" and OPENS[tk[j].v]) then
        j = after_close(tk, j)
      else
        j = j + 1
      end
    end
    if method and path then
      local alts = eval_range(file, path[1], path[2], {}, 0)
      local readable = true
      for _, a in ipairs(alts) do if not endpoint("GET", a) then readable = false end end
      if readable then
        add(file, tk[i].line, method, alts)
      else
        problems[#problems + 1] = string.format("%s:%d: cannot read the path of this %s request table",
          file.path, tk[i].line, method)
      end
    end
  end
  -- step.target_path = function(rec) ... end: the engine GETs what it
  -- returns (is a done record's object still in the tenant?)
  local function declared(file, at)
    local tk = file.tk
    local stop = after_close(tk, at) - 1
    for j = at + 1, stop - 1 do
      if tk[j].t == "name" and tk[j].v == "return" and tk[j + 1].v ~= "nil" then
        local alts, after = eval_expr(file, j + 1, stop - 1, {}, 0)
        local readable = CLOSES[tk[after].v] or tk[after].v == "else" or tk[after].v == "elseif"
        for _, a in ipairs(alts) do if not endpoint("GET", a) then readable = false end end
        if readable then
          add(file, tk[j].line, "GET", alts)
        else
          problems[#problems + 1] = string.format("%s:%d: cannot read the path this target_path returns",
            file.path, tk[j].line)
        end
      end
    end
  end
  for _, path in ipairs(paths) do
    local file = load(path)
    local tk = file.tk
    for i = 2, #tk - 2 do
      local v = tk[i].v
      if v == ":" and tk[i].t == "punct" and is_target(file, tk[i - 1]) and METHOD_OF[tk[i + 1].v]
        and (tk[i + 2].v == "(" or tk[i + 2].t == "str" or tk[i + 2].v == "{") then
        call(file, i, tk[i + 1].v, (arguments(tk, i + 2)))
      elseif v == "pcall" and tk[i + 1].v == "(" then
        local args = arguments(tk, i + 1)
        local f = args[1]
        if f and f[2] - f[1] >= 2 and tk[f[2] - 1].v == "." and is_target(file, tk[f[2] - 2])
          and METHOD_OF[tk[f[2]].v] then
          call(file, i, tk[f[2]].v, { table.unpack(args, 3) })
        end
      elseif v == "{" and tk[i].t == "punct" then
        request_table(file, i)
      elseif v == "target_path" and tk[i].t == "name" and tk[i + 1].v == "=" and tk[i + 2].v == "function" then
        declared(file, i + 2)
      end
    end
  end
  -- the callers of the relays: their arguments are the paths
  for path, fns in pairs(callers) do
    local file = load(path)
    local tk = file.tk
    for i = 2, #tk - 1 do
      local fn = tk[i].v
      local spec = RELAYS[path].fns[fn]
      if spec and fns[fn] and tk[i].t == "name" and tk[i - 1].v ~= "function" and tk[i - 1].v ~= "."
        and tk[i - 1].v ~= ":" then
        local args
        if tk[i + 1].v == "(" then
          args = arguments(tk, i + 1)
        elseif tk[i - 1].v == "(" and tk[i - 2].v == "pcall" and tk[i + 1].v == "," then
          args = { table.unpack(arguments(tk, i - 1), 2) }
        end
        if args then
          local method = spec.method and literal_method(file, args[spec.method]) or fns[fn].method
          local arg = args[spec.arg]
          local alts = arg and eval_range(file, arg[1], arg[2], {}, 0) or { OPAQUE }
          local readable = method ~= nil
          for _, a in ipairs(alts) do if not endpoint("GET", a) then readable = false end end
          if readable then
            add(file, tk[i].line, method, alts)
          else
            problems[#problems + 1] = string.format("%s:%d: cannot read the endpoint %s passes to %s",
              path, tk[i].line, fn, fn)
          end
        end
      end
    end
  end
  local stale = {}
  for path, relay in pairs(RELAYS) do
    if (relay.client or relay.entries or relay.declared) and not used[path] then
      stale[#stale + 1] = "RELAYS " .. path
    end
    for fn in pairs(relay.fns or {}) do
      if not used[path .. " " .. fn] then stale[#stale + 1] = "RELAYS " .. path .. " " .. fn end
    end
  end
  for path, names in pairs(VALUES) do
    for name in pairs(names) do
      local file = files[path]
      if not (file and file.values_used and file.values_used[name]) then
        stale[#stale + 1] = "VALUES " .. path .. " " .. name
      end
    end
  end
  table.sort(problems)
  table.sort(stale)
  return found, problems, stale
end
-- }======

-- {====== the list and the conformance checks

-- -> {{method, path, key = "METHOD /path", check, client, line}}
local function read_list(text)
  local out, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if not line:match("^%s*#") and line:match("%S") then
      local method, path, check, client = line:match("^(%u+)%s+(%S+)%s*|%s*(.-)%s*|%s*(.-)%s*$")
      assert(method, LIST .. ":" .. n .. ": not 'METHOD /path | check | client call': " .. line)
      out[#out + 1] = { method = method, path = path, key = method .. " " .. path, check = check, client = client,
        line = n }
    end
  end
  return out
end

-- check name -> the code of that check (up to the next check)
local function read_checks(text)
  local starts = {}
  local from = 1
  while true do
    local s, e, name = text:find('await check%("(.-)", async', from)
    if not s then break end
    starts[#starts + 1] = { s = s, e = e, name = name }
    from = e + 1
  end
  local out = {}
  for k, c in ipairs(starts) do
    out[c.name] = text:sub(c.e + 1, starts[k + 1] and starts[k + 1].s - 1 or #text)
  end
  return out
end

-- import * as alias from "@qlik/api/module" -> {alias = "module"}
local function read_imports(text)
  local out = {}
  for alias, mod in text:gmatch('import %* as ([%w_]+) from "@qlik/api/([%w%-/]+)"') do out[alias] = mod end
  return out
end

-- What a check's code must contain for the entry's client call.
local function needles(entry)
  if entry.client == "fetch" then
    return { "fetch(", entry.path:match("([^/{}]+)$") }
  elseif entry.client == "oauth2" then
    return { 'authType: "oauth2"' }
  end
  return { entry.client .. "(" }
end

-- Every problem of the list against the code's endpoints and the checks.
local function audit(found, entries, checks)
  local out, listed = {}, {}
  for _, e in ipairs(entries) do
    if listed[e.key] then out[#out + 1] = LIST .. ":" .. e.line .. ": " .. e.key .. " listed twice" end
    listed[e.key] = true
    if not found[e.key] then
      out[#out + 1] = LIST .. ":" .. e.line .. ": " .. e.key .. " is listed but nothing in lua/ or steps/ calls it"
    end
    local body = checks[e.check]
    if not body then
      out[#out + 1] = LIST .. ":" .. e.line .. ": " .. e.key .. ": no check named '" .. e.check .. "' in "
        .. CONFORMANCE
    else
      for _, n in ipairs(needles(e)) do
        if not body:find(n, 1, true) then
          out[#out + 1] = LIST .. ":" .. e.line .. ": " .. e.key .. ": check '" .. e.check .. "' has no " .. n
        end
      end
    end
  end
  local keys = {}
  for k in pairs(found) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not listed[k] then
      out[#out + 1] = k .. " (called at " .. table.concat(found[k], ", ") .. ") has no entry in " .. LIST
        .. ": add one naming the conformance check that calls it"
    end
  end
  return out
end
-- }======

local function the_scan()
  local found, problems, stale = scan(source_files())
  return found, problems, stale
end

T.test("every endpoint the code calls is listed with a conformance check that calls it", function()
  local found, problems, stale = the_scan()
  t.eq(problems, {}, "calls whose endpoint cannot be read")
  t.eq(stale, {}, "RELAYS or VALUES that no call uses any more")
  local entries = read_list(t.read(LIST))
  local report = audit(found, entries, read_checks(t.read(CONFORMANCE)))
  t.truthy(#report == 0, "\n  " .. table.concat(report, "\n  "))
end)

T.test("the scan sees what the forms of call in the code ask for", function()
  -- an id concatenated, a local, a module function, pcall, a request table, a relay
  local found = the_scan()
  for _, key in ipairs { "GET /api/v1/users/me", "POST /api/v1/apps/{id}/objects/{id}/actions/change-owner",
    "PUT /api/v1/spaces/{id}/assignments/{id}",
    "POST /api/scheduling/tasks/resources/{id}/actions/reload/on-task-event",
    "DELETE /api/scheduling/tasks/{id}", "POST /oauth/token", "GET /api/v1/groups", "PATCH /api/v1/themes/{id}",
    "GET /api/v1/apps/{id}/scripts/current", "DELETE /api/v1/collections/{id}/items/{id}" } do
    t.truthy(found[key], key .. " not found by the scan")
  end
end)

T.test("a call the list lacks, an entry nothing calls, a check that does not exist: each fails", function()
  local dir = t.tmpdir()
  os.execute("mkdir -p '" .. dir .. "/steps/fake'")
  t.write(dir .. "/steps/fake/widgets.lua", table.concat({
    'local errors = require "qmig.clients.errors"',
    "local function go(ctx, id)",
    '  local base = "widgets/" .. id',
    "  ctx.target:get(base)",
    '  local ok = pcall(ctx.target.post, ctx.target, "widgets", {})',
    '  ctx.undo { method = "DELETE", path = base .. "/parts/" .. id }',
    "  ctx.target:patch(ctx.somewhere, {})",
    "  return ok, errors",
    "end",
    "return { run = go, target_path = function(rec) return 'gizmos/' .. rec.target_id end }" }, "\n"))
  local found, problems = scan { dir .. "/steps/fake/widgets.lua" }
  t.eq(#problems, 1)
  t.match(problems[1], "widgets%.lua:7: cannot read the endpoint of this patch call")
  local report = audit(found, read_list(table.concat({
    "GET /api/v1/widgets/{id} | widgets | widgets.getWidget",
    "GET /api/v1/gadgets | gadgets | gadgets.getGadgets",
    "POST /api/v1/widgets | no such check | widgets.createWidget" }, "\n")),
    { widgets = "await widgets.getWidget(id)", gadgets = "x" })
  local text = table.concat(report, "\n")
  t.match(text, "GET /api/v1/gadgets is listed but nothing in lua/ or steps/ calls it")
  t.match(text, "GET /api/v1/gadgets: check 'gadgets' has no gadgets%.getGadgets%(")
  t.match(text, "POST /api/v1/widgets: no check named 'no such check'")
  t.match(text, "DELETE /api/v1/widgets/{id}/parts/{id} %(called at [^)]*widgets%.lua:6%) has no entry")
  -- the engine reads what target_path returns
  t.match(text, "GET /api/v1/gizmos/{id} %(called at [^)]*widgets%.lua:10%) has no entry")
  t.eq(#report, 5, text)
end)

-- @qlik/api's own description of each function it calls (its path
-- template and method) says whether the list names the right function.
T.test("each listed @qlik/api function is the endpoint it is listed for", function()
  local pkg = io.open(QLIK_API .. "/package.json")
  if not pkg then return "skip" end  -- the conformance suite cannot run either
  pkg:close()
  local imports = read_imports(t.read(CONFORMANCE))
  local wrong, checked = {}, 0
  for _, e in ipairs(read_list(t.read(LIST))) do
    local alias, fn = e.client:match("^([%w_]+)%.([%w_]+)$")
    if alias then
      checked = checked + 1
      local mod = imports[alias]
      local f = mod and io.open(QLIK_API .. "/" .. mod .. ".js", "rb")
      local src = f and f:read("a")
      if f then f:close() end
      local at = src and src:find("async function " .. fn .. "(", 1, true)
      local method, template
      if at then method, template = src:sub(at, at + 600):match('method: "(%a+)",%s*pathTemplate: "([^"]+)"') end
      if not template then
        wrong[#wrong + 1] = e.key .. ": " .. e.client .. " not found in @qlik/api/" .. tostring(mod)
      else
        -- a literal segment of the entry (scripts/current) may fill a variable of the template
        local want, have = {}, {}
        for s in e.path:gmatch("[^/]+") do want[#want + 1] = s end
        for s in template:gmatch("[^/]+") do have[#have + 1] = s end
        local same = #want == #have and method:upper() == e.method
        for k = 1, #want do
          if same and want[k] ~= have[k] and not have[k]:match("^{.*}$") then same = false end
          if same and want[k] == "{id}" and not have[k]:match("^{.*}$") then same = false end
        end
        if not same then
          wrong[#wrong + 1] = string.format("%s: %s is %s %s", e.key, e.client, method:upper(), template)
        end
      end
    end
  end
  t.eq(wrong, {})
  t.truthy(checked > 0, "no @qlik/api function in " .. LIST)
end)

return T
