-- Runs the qmig-lua binary as a child process, as a user would.  Every
-- child has a time limit (QMIG_CHILD_TIMEOUT seconds, default 600): a hung
-- child fails its test instead of hanging the suite.  A child that exits
-- with the sanitizers' own status (QMIG_SANITIZER_EXIT, default 86: the
-- Makefile's test-asan sets ASAN/LSAN/UBSAN_OPTIONS exitcode to it) fails
-- the test whatever status the test expected.
local t = require "testing"
local M = {}

M.bin = os.getenv("QMIG_BIN") or "./qmig-lua"
M.timeout = tonumber(os.getenv("QMIG_CHILD_TIMEOUT") or "600")
M.SANITIZER_EXIT = tonumber(os.getenv("QMIG_SANITIZER_EXIT") or "86")

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = shell_quote

-- Raises when a child's status is the sanitizers' (with its report) or
-- says that it ran out of time.
function M.check_status(code, err, what, timed_out)
  if timed_out then
    error(string.format("%s: no exit after %d s (QMIG_CHILD_TIMEOUT): killed", what, M.timeout), 3)
  end
  if code == M.SANITIZER_EXIT then
    error(string.format("%s: exit %d, a sanitizer report:\n%s", what, code, err or ""), 3)
  end
end

-- M.run({args...}, {env = {K = V}}) -> exit status, stdout, stderr
function M.run(args, opts)
  opts = opts or {}
  local dir = t.tmpdir()
  local parts = {}
  for k, v in pairs(opts.env or {}) do parts[#parts + 1] = k .. "=" .. shell_quote(v) end
  -- timeout: TERM at the limit, KILL 10 s later; 124 (or 137) then
  parts[#parts + 1] = string.format("timeout -k 10 %d", M.timeout)
  parts[#parts + 1] = M.bin
  for _, a in ipairs(args) do parts[#parts + 1] = shell_quote(a) end
  local cmd = table.concat(parts, " ") .. " >" .. dir .. "/out 2>" .. dir .. "/err"
  local started = qmig.monotonic()
  local _, _, code = os.execute(cmd)
  local out, err = t.read(dir .. "/out"), t.read(dir .. "/err")
  local late = qmig.monotonic() - started >= M.timeout
  M.check_status(code, err, "qmig-lua " .. table.concat(args, " "), late and (code == 124 or code == 137))
  return code, out, err
end

-- Starts the binary held at a barrier so a test can learn its pid first:
-- returns pid, release() (lets it run and waits for it, -> exit status).
-- A watchdog kills it (SIGKILL) after QMIG_CHILD_TIMEOUT seconds and
-- release() then raises, so a hang never passes for a kill a test made.
function M.spawn_held(args, opts)
  local dir = t.tmpdir()
  local quoted = {}
  for _, a in ipairs(args) do quoted[#quoted + 1] = shell_quote(a) end
  -- `exec env K=V bin`: env execs the binary in turn, so the pid stays
  local vars = {}
  for k, v in pairs(opts and opts.env or {}) do vars[#vars + 1] = k .. "=" .. shell_quote(v) end
  local watchdog = string.format(
    "(sleep %d; touch %s/timedout; kill -9 $$) </dev/null >/dev/null 2>&1 & echo $! > %s/watchdog", M.timeout, dir, dir)
  local inner = string.format("echo $$ > %s/pid; read go; %s; exec env %s %s %s >%s/out 2>%s/err", dir, watchdog,
    table.concat(vars, " "), M.bin, table.concat(quoted, " "), dir, dir)
  local p = io.popen("sh -c " .. shell_quote(inner) .. "; echo $? > " .. dir .. "/status", "w")
  local pid
  repeat
    qmig.sleep(0.02)
    local f = io.open(dir .. "/pid")
    if f then pid = f:read("n"); f:close() end
  until pid
  return pid, function()
    p:write("go\n")
    p:close()
    local wd = io.open(dir .. "/watchdog")
    if wd then
      local wpid = wd:read("n")
      wd:close()
      if wpid then os.execute("kill " .. wpid .. " 2>/dev/null") end
    end
    local status, out, err = tonumber(t.read(dir .. "/status")), t.read(dir .. "/out"), t.read(dir .. "/err")
    local timed_out = io.open(dir .. "/timedout")
    if timed_out then timed_out:close() end
    M.check_status(status, err, "qmig-lua " .. table.concat(args, " "), timed_out ~= nil)
    return status, out, err
  end
end

return M
