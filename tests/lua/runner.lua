-- Runs tests/lua/test_*.lua (or the files named on the command line) with
-- the qmig-lua binary and ends with "N passed, N failed, N skipped".  A
-- run in which no test ran (a QMIG_TEST_FILTER matching nothing, every
-- case skipped) fails.  After a failing case the globals and the fields of
-- the loaded qmig modules are put back as they were before it, so a case
-- that dies before restoring what it changed (retry delays, stubs) cannot
-- change the cases after it.
package.path = "tests/lua/lib/?.lua;" .. package.path

local files = { ... }
if #files == 0 then
  -- the suites, and those of the examples (e.g. the step pack)
  local p = io.popen("ls tests/lua/test_*.lua examples/*/tests/test_*.lua 2>/dev/null")
  for line in p:lines() do files[#files + 1] = line end
  p:close()
end

local filter = os.getenv("QMIG_TEST_FILTER")
local passed, failed, skipped = 0, 0, 0
local failures = {}

-- What a case may change: the globals, and the fields of the qmig modules.
local function snapshot()
  local s = { globals = {}, modules = {} }
  for k, v in pairs(_G) do s.globals[k] = v end
  for name, m in pairs(package.loaded) do
    if type(m) == "table" and (name == "qmig" or name:match("^qmig%.")) then
      local fields = {}
      for k, v in pairs(m) do fields[k] = v end
      s.modules[m] = fields
    end
  end
  return s
end

local function restore(s)
  for k in pairs(_G) do if s.globals[k] == nil then _G[k] = nil end end
  for k, v in pairs(s.globals) do if rawget(_G, k) ~= v then _G[k] = v end end
  for m, fields in pairs(s.modules) do
    for k in pairs(m) do if fields[k] == nil then m[k] = nil end end
    for k, v in pairs(fields) do if rawget(m, k) ~= v then m[k] = v end end
  end
end

for _, file in ipairs(files) do
  local chunk, err = loadfile(file)
  local ok, suite = false, err
  if chunk then ok, suite = xpcall(chunk, debug.traceback) end
  if not ok or type(suite) ~= "table" then
    failed = failed + 1
    failures[#failures + 1] = file .. ": cannot load suite: " .. tostring(suite)
    print("FAIL " .. file .. " (load)")
  else
    for _, case in ipairs(suite.cases) do
      local label = (suite.name or file) .. ": " .. case.name
      if filter and not label:find(filter, 1, true) then goto continue end
      local before = snapshot()
      local started = qmig.monotonic()
      local cok, cerr = xpcall(case.fn, debug.traceback)
      local took = qmig.monotonic() - started
      if cok and cerr == "skip" then
        skipped = skipped + 1
        print(string.format("skip %s", label))
      elseif cok then
        passed = passed + 1
        print(string.format("ok   %s (%.2fs)", label, took))
      else
        failed = failed + 1
        failures[#failures + 1] = label .. "\n" .. tostring(cerr)
        print(string.format("FAIL %s (%.2fs)", label, took))
        restore(before)
      end
      ::continue::
    end
    for _, fn in ipairs(suite.teardown) do pcall(fn) end
  end
end

for _, f in ipairs(failures) do io.stderr:write("\n--- ", f, "\n") end
if passed + failed == 0 then
  io.stderr:write("no test ran", filter and (" (QMIG_TEST_FILTER=" .. filter .. " matches none)") or "", "\n")
end
print(string.format("%d passed, %d failed, %d skipped", passed, failed, skipped))
-- close the state: valgrind sees every block freed
os.exit((failed == 0 and passed > 0) and 0 or 1, true)
