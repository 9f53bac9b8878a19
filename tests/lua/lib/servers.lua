-- Starts tests/support/httpd.py in the background for the HTTP tests and
-- stops it at the end of the suite.
local t = require "testing"
local M = {}

-- M.start{tls=bool, mtls=bool} -> {port=, base=, certs=, stop=fn}
function M.start(opts)
  opts = opts or {}
  local dir = t.tmpdir()
  local certs = (os.getenv("QMIG_TEST_TMP") or "tests/tmp") .. "/certs"
  local portfile = dir .. "/port"
  local flags = ""
  if opts.tls then flags = flags .. " --tls" end
  if opts.mtls then flags = flags .. " --mtls" end
  local cmd = string.format("python3 tests/support/httpd.py --port-file %s --certs %s%s >%s/log 2>&1 & echo $! >%s/pid",
    portfile, certs, flags, dir, dir)
  assert(os.execute(cmd))
  local deadline = qmig.monotonic() + 30
  local f
  repeat
    qmig.sleep(0.05)
    f = io.open(portfile)
  until f or qmig.monotonic() > deadline
  assert(f, "test HTTP server did not start: " .. t.read(dir .. "/log"))
  local port = tonumber(f:read("a"))
  f:close()
  local pid = t.read(dir .. "/pid"):match("%d+")
  local scheme = (opts.tls or opts.mtls) and "https" or "http"
  return {
    port = port,
    base = string.format("%s://127.0.0.1:%d", scheme, port),
    certs = certs,
    stop = function() os.execute("kill " .. pid .. " 2>/dev/null") end,
  }
end

return M
