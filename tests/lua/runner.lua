-- Runs tests/lua/test_*.lua (or the files named on the command line) with
-- the qmig-lua binary and ends with "N passed, N failed".
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
      end
      ::continue::
    end
    for _, fn in ipairs(suite.teardown) do pcall(fn) end
  end
end

for _, f in ipairs(failures) do io.stderr:write("\n--- ", f, "\n") end
print(string.format("%d passed, %d failed, %d skipped", passed, failed, skipped))
os.exit(failed == 0 and 0 or 1, true)  -- close the state: valgrind sees every block freed
