-- Starts tests/support/httpd.py in the background for the HTTP tests and
-- stops it at the end of the suite.
local t = require "testing"
local M = {}

-- M.launch(script, args, dir) -> port, pid: starts `python3 script
-- --port-file F args` in the background and waits for the port it writes.
function M.launch(script, args, dir)
  local portfile = dir .. "/port"
  assert(os.execute(string.format("python3 %s --port-file %s %s >%s/log 2>&1 & echo $! >%s/pid",
    script, portfile, args or "", dir, dir)))
  local deadline, f = qmig.monotonic() + 30
  repeat
    qmig.sleep(0.05)
    f = io.open(portfile)
  until f or qmig.monotonic() > deadline
  assert(f, script .. " did not start: " .. t.read(dir .. "/log"))
  local port = tonumber(f:read("a"))
  f:close()
  return port, t.read(dir .. "/pid"):match("%d+")
end

-- M.start{tls=bool, mtls=bool} -> {port=, base=, certs=, stop=fn}
function M.start(opts)
  opts = opts or {}
  local dir = t.tmpdir()
  local certs = (os.getenv("QMIG_TEST_TMP") or "tests/tmp") .. "/certs"
  local flags = ""
  if opts.tls then flags = flags .. " --tls" end
  if opts.mtls then flags = flags .. " --mtls" end
  local port, pid = M.launch("tests/support/httpd.py", "--certs " .. certs .. flags, dir)
  local scheme = (opts.tls or opts.mtls) and "https" or "http"
  return {
    port = port,
    base = string.format("%s://127.0.0.1:%d", scheme, port),
    certs = certs,
    stop = function() os.execute("kill " .. pid .. " 2>/dev/null") end,
  }
end

return M
