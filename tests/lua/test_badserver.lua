-- Bad server replies: invalid JSON, HTML pages,
-- truncated bodies, odd content types, Qlik error bodies, redirects, huge
-- headers, paging links to other hosts or looping, `data` not a list,
-- 429 without Retry-After, 401 mid-run.  The Cloud and QRS clients turn
-- each into a qmig error with a clear message (never a Lua error, never
-- a hang); the engine turns them into failed items (exit 1) or exit 3.
-- The server is tests/support/badserver.py (one case per URL prefix).
local t = require "testing"
local cli = require "cli"
local cloud = require "qmig.clients.cloud"
local errors = require "qmig.clients.errors"
local fs = require "qmig.fs"
local qrs = require "qmig.clients.qrs"
local retry = require "qmig.rate.retry"
local servers = require "servers"
local simlib = require "sim"

local T = t.suite("badserver")
local FIXTURES = fs.realpath("tests/lua/fixtures")
local bad, sim

local function start_bad()
  local port, pid = servers.launch("tests/support/badserver.py", "", t.tmpdir())
  local base = "http://127.0.0.1:" .. port
  local control = require("qmig.http").client { base_url = base }
  return {
    base = base,
    url = function(case) return base .. "/case/" .. case end,
    hits = function()
      local resp = assert(control:request { method = "GET", path = "/_hits" })
      return require("qmig.json").decode(resp.body)
    end,
    reset = function() assert(control:request { method = "POST", path = "/_reset" }) end,
    stop = function() os.execute("kill " .. pid .. " 2>/dev/null") end,
  }
end

local function the_bad()
  if not bad then bad = start_bad() end
  return bad
end

T.after_all(function()
  if bad then bad.stop() end
  if sim then sim:stop() end
end)

local function client(case, opts)
  return cloud.new({ url = the_bad().url(case), api_key = "canary-key-1234" }, opts or { retries = 2 })
end

-- Calls fn; it must raise a qmig error (a table from qmig.clients.errors, so the
-- engine can read its fields) whose message matches pattern.
local function fails(what, pattern, fn)
  local started = qmig.monotonic()
  local ok, err = pcall(fn)
  local took = qmig.monotonic() - started
  t.truthy(not ok, what .. ": expected an error")
  t.truthy(errors.is(err), what .. ": not a qmig error but " .. type(err) .. ": " .. tostring(err))
  local msg = tostring(err)
  t.match(msg, pattern, what)
  t.truthy(not msg:find("stack traceback", 1, true) and not msg:find("%.lua:%d+:"), what .. ": a Lua error: " .. msg)
  t.truthy(#msg < 2000, what .. ": a " .. #msg .. "-byte message")
  t.truthy(took < 20, what .. ": took " .. took .. " s")
  return err
end

-- Cloud client cases: case, call (default: list every space), pattern, check(err).
local CLOUD = {
  { "badjson", nil, "GET /api/v1/spaces: the reply is not JSON %(invalid JSON: " },
  { "html200", nil, "the reply is not JSON %(invalid JSON: .- at character 1" },
  { "html500", nil, "GET /api/v1/spaces: HTTP 500 <html>", function(e) t.eq(e.transient, true) end },
  { "truncated", nil, "transfer closed with %d+ bytes remaining to read",
    function(e) t.truthy(e.code, "a transport error code") end },
  { "wrongtype", nil, "the reply is not JSON" },
  { "qlikerror200", nil, "GET /api/v1/spaces: reply has no data list" },
  { "qlikerror500", nil, "HTTP 500 Space store unavailable %(try later%)", function(e) t.eq(e.code, "SPACES-42") end },
  { "redirect", nil, "HTTP 302 redirect to http://evil%.invalid/api/v1/spaces %(not followed: check target%.url%)" },
  { "redirect-same", nil, "HTTP 301 redirect to http://127%.0%.0%.1:%d+/case/redirect%-same/elsewhere" },
  { "hugeheaders", nil, "reply headers too large" },
  { "manyheaders", nil, "[Tt]oo large response headers: %d+ > %d+" },
  { "nextother", nil, "next page points to another host: http://evil%.invalid/" },
  { "nextport", nil, "next page points to another host: http://127%.0%.0%.1:%d+9/" },
  { "nextsuffix", nil, "next page points to another host: http://127%.0%.0%.1%.evil%.invalid:" },
  { "nextself", nil, "next page link loops back to a page already read" },
  { "nextcycle", nil, "next page link loops back to a page already read" },
  { "datamap", nil, "reply has no data list" },
  { "datastring", nil, "reply has no data list" },
  { "datanull", nil, "reply has no data list" },
  { "empty200", nil, "reply has no data list" },
  { "deep", nil, "the reply is not JSON %(invalid JSON: " },
  { "huge_number", nil, "the reply is not JSON %(invalid JSON: number out of range at character 18" },
  { "badgzip", nil, "GET /api/v1/spaces: the reply is not JSON" },
  { "r429", nil, "GET /api/v1/spaces: HTTP 429 Too many requests", function(e)
      t.eq(e.transient, true); t.eq(e.retry_after, nil) end },
  { "r401", nil, "HTTP 401 Unauthorized", function(e) t.eq(e.auth, true) end },
  { "r401post", function(c) return c:post("spaces", { name = "x", type = "shared" }) end,
    "POST /api/v1/spaces: HTTP 401", function(e) t.eq(e.auth, true); t.eq(e.unknown, false) end },
  { "stall", function(c) return c:raw("GET", "spaces", { timeout = 1 }) end, "timed out after 10%d%d milliseconds",
    function(e) t.eq(e.code, "timeout") end },
}

T.test("Cloud client: every bad reply becomes a clear qmig error, never a Lua error or a hang", function()
  local saved = retry.base_delay
  retry.base_delay = 0.01
  local hits_before = the_bad().hits()
  for _, case in ipairs(CLOUD) do
    local name = case[1]
    local c = client(name)
    local err = fails(name, case[3], function()
      if case[2] then return case[2](c) end
      return c:all("spaces", { filter = "name eq \"x\"" })
    end)
    if case[4] then case[4](err) end
  end
  retry.base_delay = saved
  -- each case reached the server (not failed before sending)
  local hits = the_bad().hits()
  for _, case in ipairs(CLOUD) do
    local n = 0
    for k, v in pairs(hits) do
      if k:find("/case/" .. case[1] .. "/", 1, true) then n = n + v - (hits_before[k] or 0) end
    end
    t.truthy(n >= 1, case[1] .. ": no request reached the bad server")
  end
end)

T.test("Cloud client: retries are bounded; 401 is never retried; a next link is followed only on the same origin",
  function()
  local saved = retry.base_delay
  retry.base_delay = 0.01
  the_bad().reset()
  pcall(function() return client("r429"):all("spaces") end)
  pcall(function() return client("r401"):all("spaces") end)
  pcall(function() return client("nextother"):all("spaces") end)
  local hits = the_bad().hits()
  t.eq(hits["GET /case/r429/api/v1/spaces"], 3, "429 without Retry-After: first try + 2 retries")
  t.eq(hits["GET /case/r401/api/v1/spaces"], 1, "401 is not retried")
  t.eq(hits["GET /case/nextother/api/v1/spaces"], 1, "the foreign next link was not followed")
  -- an endless run of fresh next links stops at max_pages
  local saved_max = cloud.max_pages
  cloud.max_pages = 25
  fails("nextendless", "more than 25 pages; giving up", function() return client("nextendless"):all("spaces") end)
  cloud.max_pages = saved_max
  -- valid JSON with an odd content type is accepted
  local items = client("plainjson"):all("spaces")
  t.eq(#items, 1)
  retry.base_delay = saved
end)

T.test("QRS client: object for a list, HTML, odd count and export replies, redirects", function()
  local saved = retry.base_delay
  retry.base_delay = 0.01
  local function source(case)
    return qrs.new({ url = the_bad().url(case), user = "INTERNAL\\sa_api" }, { retries = 1 })
  end
  fails("qrs object", "GET /qrs/stream/full: expected a list",
    function() return source("qrs_object"):full("stream") end)
  fails("qrs html", "GET /qrs/stream/full: the QRS reply is not JSON",
    function() return source("qrs_html"):full("stream") end)
  fails("qrs count", "GET /qrs/app/count: expected {\"value\": n}",
    function() return source("qrs_count"):count("app") end)
  fails("qrs export", "reply has no downloadPath", function()
    return source("qrs_export"):export_app("0b5a2f4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b", {}, t.tmpdir() .. "/x.qvf")
  end)
  fails("qrs redirect", "HTTP 302 redirect to http://evil%.invalid/qrs/stream/full %(not followed: check source%.url%)",
    function() return source("redirect"):full("stream") end)
  fails("qrs html 500", "HTTP 500 <html>", function() return source("html500"):full("stream") end)
  fails("qrs truncated", "transfer closed with %d+ bytes remaining to read",
    function() return source("truncated"):full("stream") end)
  retry.base_delay = saved
end)

-- {====== through the engine: source = qliksim, target = a bad case

local function job(case, extra_jobs)
  if not sim then sim = simlib.start() end
  local dir = fs.realpath(t.tmpdir())
  local text = sim:job_yaml { project_dir = dir .. "/project", api_key = "canary-key-1234",
    extra = "steps_path: [" .. FIXTURES .. "/steps]",
    jobs = extra_jobs or "  - {name: a, steps: [test.spaces]}" }
  text = text:gsub("url: " .. sim.info.cloud_url:gsub("%p", "%%%0"), "url: " .. the_bad().url(case))
  text = text:gsub("options: {concurrency: 4,", "options: {concurrency: 4, retries: 1, retry_delay: 0.01,")
  t.write(dir .. "/job.yaml", text)
  return dir .. "/job.yaml", dir
end

-- (dataitems: a list of numbers reaches the step as it is, the client checks
-- only that `data` is a list: the test step fails indexing one.)
T.test("engine: bad listings fail every item with a clear reason, exit 1; the report escapes what the server said",
  function()
  for _, case in ipairs { { "html500", "HTTP 500 <html>" }, { "badjson", "the reply is not JSON" },
    { "nextother", "next page points to another host" }, { "datamap", "reply has no data list" },
    { "nextself", "loops back" }, { "dataitems", "failed %(.-attempt to index a number value" },
    { "huge_number", "number out of range" },
    { "r429", "HTTP 429" }, { "redirect", "redirect to http://evil%.invalid" } } do
    local file, dir = job(case[1])
    local code, out, err = cli.run { "run", file, "--verbose" }
    t.eq(code, 1, case[1] .. ": " .. out .. err)
    t.match(out, "test%.spaces%s+4 failed", case[1])
    t.match(out, case[2], case[1])
    t.truthy(not err:find("stack traceback", 1, true), case[1] .. ": " .. err)
    t.truthy(not (out .. err):find("canary-key-1234", 1, true), case[1] .. ": the API key was printed")
    local html = t.read(dir .. "/project/reports/report.html")
    t.truthy(not html:find("<h1>500", 1, true) and not html:find("<script>alert", 1, true),
      case[1] .. ": unescaped server markup in the report")
    if case[1] == "html500" then t.truthy(html:find("&lt;h1&gt;500", 1, true), "the reason is shown escaped") end
  end
end)

T.test("engine: a 401 on the first write stops the run with exit 3; no write after it", function()
  the_bad().reset()
  local file = job("r401post")
  t.write(file, (t.read(file):gsub("concurrency: 4", "concurrency: 1")))
  local code, out, err = cli.run { "run", file }
  t.eq(code, 3, out .. err)
  t.match(err, "stopped: POST /api/v1/spaces: HTTP 401")
  local hits = the_bad().hits()
  t.eq(hits["POST /case/r401post/api/v1/spaces"], 1, "no write after the 401")
end)

-- }======

return T
