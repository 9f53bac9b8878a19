-- Outages: a side that goes away mid-run, or is unreachable from the
-- start, stops the run at once with one message and exit status 4
-- (qmig.rate.breaker), instead of every item failing on its own; the next run
-- resumes.  A client certificate the server refuses is named as such.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local retrieve = require "qmig.clients.retrieve"
local simlib = require "sim"
local demo_outcome = require "demo_outcome"

local T = t.suite("outage")

-- The demo job against a simulator of its own (each test may kill it).
local function demo(faults)
  local sim = simlib.start { site = "examples/demo/site.json", faults = faults }
  local dir = fs.realpath(t.tmpdir())
  local env = require("demo_env").new(sim, dir, "Finance DB: {username: u, password: pw}\n")
  return sim, env, dir
end

local function failed_lines(out)
  local n = 0
  for _ in out:gmatch(": failed") do n = n + 1 end
  return n
end

T.test("the simulator killed mid-run: exit 4 within seconds, one message, no pile of failures", function()
  local sim, env = demo()
  sim:faults { kill_after_writes = { pid = tonumber(sim.pid), n = 12, signal = 9 } }
  local started = qmig.monotonic()
  local code, out, err = cli.run({ "run", "examples/demo/job.yaml" }, { env = env })
  local took = qmig.monotonic() - started
  sim:stop()
  t.eq(code, 4, out .. err)
  t.match(err, "stopped: target http://127%.0%.0%.1:%d+ is unreachable: .-; nothing more was tried, the next run "
    .. "resumes where this one stopped")
  local _, stops = err:gsub("stopped:", "")
  t.eq(stops, 1, "one message: " .. err)
  t.truthy(failed_lines(out) <= 8, "at most the items in flight fail: " .. out)
  t.truthy(took < 30, string.format("stopped after %.1f s", took))
  -- the steps after it did not run
  t.truthy(not out:find("apps.owners", 1, true), out)
end)

T.test("an outage mid-run (every request dropped) stops the run; the next run resumes and completes", function()
  local sim, env = demo()
  -- from the 80th request on, nothing gets an answer: the server is up, the network is not
  sim:faults { rules = { { match = "~.", nth = 80, times = 1000000, action = "drop" } } }
  local code, out, err = cli.run({ "run", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 4, out .. err)
  t.match(err, "is unreachable: ")
  sim:faults {}
  code, out, err = cli.run({ "run", "examples/demo/job.yaml" }, { env = env })
  demo_outcome.ran(code, out, err)
  local count, apps = {}, sim:state().cloud.apps
  for _, app in ipairs(apps) do
    local src = retrieve.read_marker(app.description)
    if src then count[src] = (count[src] or 0) + 1 end
  end
  local n = 0
  for _, c in pairs(count) do n = n + 1; t.eq(c, 1, "one app per source app") end
  -- 12 Qlik Sense apps and the 2 QlikView documents with -prj folders
  t.eq(n, 14, "every source app migrated once")
  sim:stop()
end)

T.test("a side unreachable from the start (refused, DNS): exit 4, one message, nothing recorded", function()
  local sim, env, dir = demo()
  for _, case in ipairs {
    { "QMIG_DEMO_CLOUD_URL", "http://127.0.0.1:1", "target http://127%.0%.0%.1:1: unreachable: " },
    { "QMIG_DEMO_CLOUD_URL", "http://qmig-outage-test.invalid",
      "target http://qmig%-outage%-test%.invalid: unreachable: .-resolve" },
    { "QMIG_DEMO_QRS_URL", "https://127.0.0.1:1", "source https://127%.0%.0%.1:1: unreachable: " },
  } do
    local e = {}
    for k, v in pairs(env) do e[k] = v end
    e[case[1]] = case[2]
    local code, out, err = cli.run({ "run", "examples/demo/job.yaml" }, { env = e })
    t.eq(code, 4, case[2] .. ": " .. out .. err)
    t.match(err, case[3], case[2])
    t.truthy(not fs.exists(dir .. "/project/qmig.db"), "nothing recorded")
  end
  sim:stop()
end)

T.test("a client certificate the QRS refuses is named as the problem: exit 3", function()
  local sim, env, dir = demo()
  local c = sim.info.certs
  -- the demo job names client.pem and client_key.pem in QMIG_DEMO_CERTS: a folder where they are the rogue pair
  local certs = dir .. "/certs"
  fs.mkdir(certs)
  t.write(certs .. "/client.pem", t.read(c.rogue_client_cert))
  t.write(certs .. "/client_key.pem", t.read(c.rogue_client_key))
  t.write(certs .. "/ca.pem", t.read(c.ca))
  env.QMIG_DEMO_CERTS = certs
  local code, out, err = cli.run({ "check", "examples/demo/job.yaml" }, { env = env })
  sim:stop()
  t.eq(code, 3, out .. err)
  t.match(err, "source https://127%.0%.0%.1:%d+: the server broke off the TLS handshake: it (.-) %(source%.cert "
    .. certs:gsub("%p", "%%%0") .. "/client%.pem%)")
end)

-- The words differ with timing and library versions (TLS 1.3 delivers a
-- refused certificate at the client's first read or write): each is a
-- refused certificate when one was configured, and an outage when none was
-- or when nothing answered at all.  The first message is what CI's curl
-- said under ASan.
T.test("a refused client certificate is exit 3 whatever curl's words; no answer is exit 4", function()
  local connect = require "qmig.clients.connect"
  local errors = require "qmig.clients.errors"
  local breaker = require "qmig.rate.breaker"
  local url = "https://qlik.example:4242"
  local function tripped(msg, code)
    local b = breaker.new { side = "source", url = url, threshold = 1 }
    b:failure(msg, code)
    return b:error()
  end
  local refused_words = {
    "GET " .. url .. "/qrs/about: SSL_write() error: error:0A00007F:SSL routines::bad write retry",
    "GET " .. url .. "/qrs/about: Send failure: Broken pipe",
    "GET " .. url .. "/qrs/about: Recv failure: Connection reset by peer",
    "GET " .. url .. "/qrs/about: OpenSSL SSL_read: error:0A000418:SSL routines::tlsv1 alert unknown ca, errno 0",
    "GET " .. url .. "/qrs/about: OpenSSL SSL_read: error:0A00045C:SSL routines::tlsv13 alert certificate required",
    "GET " .. url .. "/qrs/about: OpenSSL SSL_read: error:0A000126:SSL routines::unexpected eof while reading",
  }
  local with_cert = { url = url, cert = "/certs/client.pem" }
  for _, msg in ipairs(refused_words) do
    for _, err in ipairs { errors.transport("GET", msg, "dropped", false), tripped(msg, "dropped") } do
      local text, status = connect.problem("source", with_cert, err)
      t.eq(status, 3, msg)
      t.match(text, "^source " .. url:gsub("%p", "%%%0")
        .. ": the server broke off the TLS handshake: it .- %(source%.cert /certs/client%.pem%)", msg)
    end
    local _, status = connect.problem("source", { url = url }, errors.transport("GET", msg, "dropped", false))
    t.eq(status, 4, "no certificate configured: " .. msg)
  end
  local _, status = connect.problem("source", with_cert,
    tripped("GET " .. url .. "/qrs/about: Failed to connect to qlik.example port 4242: Connection refused", "refused"))
  t.eq(status, 4, "connection refused is an outage, certificate or not")
  local text
  text, status = connect.problem("source", with_cert, errors.transport("GET",
    "SSL certificate problem: unable to get local issuer certificate", "tls", false))
  t.eq(status, 3)
  t.match(text, "the server's certificate is not trusted: set source%.ca")
end)

return T
