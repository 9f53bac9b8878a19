-- Minimal assertion helpers for the Lua test suites (Lua's own testes/
-- style: plain functions, no framework).  A test file returns a suite.
local M = {}

local function show(v, depth)
  depth = depth or 0
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" or depth > 3 then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = "[" .. show(k) .. "]=" .. show(v[k], depth + 1)
  end
  local mt = getmetatable(v)
  return (mt and mt.__name and mt.__name .. " " or "") .. "{" .. table.concat(parts, ", ") .. "}"
end
M.show = show

local function deep_equal(a, b, path)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then
    return false, path .. ": expected " .. show(b) .. ", got " .. show(a)
  end
  for k, v in pairs(b) do
    local ok, why = deep_equal(a[k], v, path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(a) do
    if b[k] == nil then return false, path .. "." .. tostring(k) .. ": unexpected " .. show(a[k]) end
  end
  return true
end

function M.eq(actual, expected, msg)
  local ok, why = deep_equal(actual, expected, "value")
  if not ok then error((msg and msg .. ": " or "") .. why, 2) end
end

function M.truthy(v, msg)
  if not v then error(msg or "expected a true value", 2) end
  return v
end

function M.match(s, pattern, msg)
  if type(s) ~= "string" or not s:find(pattern) then
    error((msg and msg .. ": " or "") .. "expected " .. show(s) .. " to match " .. show(pattern), 2)
  end
end

-- Calls fn and expects an error whose message matches pattern.
function M.raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected an error matching " .. show(pattern), 2) end
  err = tostring(err)
  if pattern and not err:find(pattern) then
    error("error " .. show(err) .. " does not match " .. show(pattern), 2)
  end
  return err
end

-- RFC 4648 base64 (qmig.hash has none), for the secret scans.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function M.base64(s)
  return ((s:gsub(".", function(c)
    local byte, bits = c:byte(), {}
    for i = 8, 1, -1 do bits[#bits + 1] = (byte >> (i - 1)) & 1 end
    return table.concat(bits)
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(b)
    if #b < 6 then return "" end
    return B64:sub(tonumber(b, 2) + 1, tonumber(b, 2) + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

-- A fresh scratch folder under tests/tmp (tests/run empties it first).
local counter = 0
function M.tmpdir()
  counter = counter + 1
  local base = os.getenv("QMIG_TEST_TMP") or "tests/tmp"
  local dir = string.format("%s/%d-%d", base, qmig.getpid(), counter)
  assert(os.execute("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "'"))
  return dir
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

-- Suites: local T = testing.suite("json"); T.test("name", fn); return T
function M.suite(name)
  local s = { name = name, cases = {}, teardown = {} }
  function s.test(case, fn) s.cases[#s.cases + 1] = { name = case, fn = fn } end
  function s.after_all(fn) s.teardown[#s.teardown + 1] = fn end
  return s
end

return M
