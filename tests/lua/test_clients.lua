-- The QRS and Qlik Cloud clients and the retrieval helpers against qliksim:
-- filter quoting with hostile names, paging, retries, Retry-After, errors,
-- natural keys and the app description marker.
local t = require "testing"
local cloud = require "qmig.clients.cloud"
local json = require "qmig.json"
local qrs = require "qmig.clients.qrs"
local retrieve = require "qmig.clients.retrieve"
local retry = require "qmig.rate.retry"
local simlib = require "sim"

local T = t.suite("clients")
local sim

local SITE = {
  qrs = {
    users = { { userDirectory = "CORP", userId = "jdoe", name = "John" } },
    streams = {
      { name = "O'Brien's ''Reports''" }, { name = "A/B: test" }, { name = "Sales" },
    },
    apps = {
      { name = "It's an app", owner = "CORP\\jdoe", stream = "O'Brien's ''Reports''" },
      { name = "Plain", owner = "CORP\\jdoe", stream = "Sales" },
    },
  },
  cloud = simlib.ADMIN_CLOUD,
}

local function the_sim()
  if not sim then sim = simlib.start { site = SITE } end
  return sim
end

T.after_all(function() if sim then sim:stop() end end)

local function source()
  local c = the_sim().info.certs
  return qrs.new { url = the_sim().info.qrs_url, cert = c.client_cert, key = c.client_key, ca = c.ca,
    user = "INTERNAL\\sa_api" }
end

local function target(opts)
  return cloud.new({ url = the_sim().info.cloud_url, api_key = the_sim().info.api_key }, opts)
end

T.test("QRS filter values are quoted with doubled quotes", function()
  t.eq(qrs.quote("O'Brien"), "'O''Brien'")
  t.eq(qrs.eq("stream.name", "It's"), "stream.name eq 'It''s'")
  t.eq(qrs.eq("id", "2972ab89-1234-4cde-8f00-0123456789ab"), "id eq 2972ab89-1234-4cde-8f00-0123456789ab")
  t.eq(qrs.eq("published", true), "published eq true")
  t.raises("bad QRS property", qrs.eq, "name) or (1", "x")
  t.eq(qrs.user_header("CORP\\jdoe"), "UserDirectory=CORP; UserId=jdoe")
end)

T.test("QRS through a virtual proxy: a JWT or the proxy's user header instead of X-Qlik-User", function()
  local servers = require "servers"
  local echo = servers.start()
  local function headers(src)
    local c = qrs.new(src)
    local resp = c:raw("GET", "/echo")
    return json.decode(resp.body).headers
  end
  local h = headers { url = echo.base, user = "CORP\\jane", jwt = "eyJ.test.jwt" }
  t.eq(h.authorization, "Bearer eyJ.test.jwt"); t.eq(h["x-qlik-user"], nil)
  t.match(h["x-qlik-xrfkey"], "^%w+$")
  h = headers { url = echo.base, user = "CORP\\jane", header = "hdr-usr" }
  t.eq(h["hdr-usr"], "CORP\\jane"); t.eq(h["x-qlik-user"], nil)
  h = headers { url = echo.base, user = "CORP\\jane" }
  t.eq(h["x-qlik-user"], "UserDirectory=CORP; UserId=jane")
  echo.stop()
end)

T.test("QRS: names with quotes and slashes select exactly their objects", function()
  the_sim():reset()
  local src = source()
  local streams = src:full("stream", qrs.eq("name", "O'Brien's ''Reports''"))
  t.eq(#streams, 1)
  t.eq(streams[1].name, "O'Brien's ''Reports''")
  local apps = src:full("app", qrs.eq("stream.name", "O'Brien's ''Reports''"))
  t.eq(#apps, 1)
  t.eq(apps[1].name, "It's an app")
  t.eq(#src:full("stream", qrs.eq("name", "A/B: test")), 1)
  t.eq(src:count("app", qrs.any { qrs.eq("name", "Plain"), qrs.eq("name", "It's an app") }), 2)
end)

T.test("QRS: app export streams the QVF to a file", function()
  local src = source()
  local app = src:full("app", qrs.eq("name", "Plain"))[1]
  local dir = t.tmpdir()
  local path, bytes = src:export_app(app.id, { with_data = false, scope = "all" }, dir .. "/a.qvf")
  t.eq(path, dir .. "/a.qvf")
  t.truthy(bytes > 0)
  t.eq(t.read(path):sub(1, 9), "QSIMQVF1\n")
end)

T.test("Cloud: paging visits every item exactly once (next= and page= cursors)", function()
  the_sim():reset()
  local tgt = target()
  for i = 1, 23 do tgt:post("spaces", { name = string.format("Paged %02d", i), type = "shared" }) end
  local seen = {}
  for s in tgt:each("spaces", { limit = 5 }) do
    t.eq(seen[s.id], nil, "visited twice")
    seen[s.id] = true
  end
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  t.truthy(n >= 23, "saw " .. n)
  local space = retrieve.space(tgt, "Paged 01")
  for i = 1, 12 do
    tgt:post("data-connections", { qName = "conn " .. i, qConnectStatement = "x", qType = "QvOdbcConnectorPackage.exe",
      datasourceID = "odbc", space = space.id })
  end
  local conns = tgt:all("data-connections", { spaceId = space.id, limit = 5, noDatafiles = true })
  t.eq(#conns, 12)
end)

T.test("Cloud: transient 5xx on reads are retried; Retry-After is honoured", function()
  the_sim():reset()
  local saved = retry.base_delay
  retry.base_delay = 0.01
  the_sim():faults { rules = { { match = "GET /api/v1/spaces", nth = 1, action = "error", status = 503, times = 2 } } }
  local tgt = target()
  local list = tgt:get("spaces")
  t.truthy(type(list.data) == "table")
  the_sim():faults { rules = { { match = "GET /api/v1/spaces", nth = 1, action = "429" } }, retry_after = 1 }
  local started = qmig.monotonic()
  t.truthy(tgt:get("spaces").data)
  t.truthy(qmig.monotonic() - started >= 0.9, "waited for Retry-After")
  the_sim():faults {}
  retry.base_delay = saved
end)

T.test("Cloud: a POST whose reply is lost is reported as unknown, never retried blindly", function()
  the_sim():reset()
  the_sim():faults { rules = { { match = "POST /api/v1/spaces", nth = 1, action = "drop_after_apply" } } }
  local tgt = target()
  local ok, err = pcall(tgt.post, tgt, "spaces", { name = "Lost reply", type = "shared" })
  the_sim():faults {}
  t.eq(ok, false)
  t.truthy(err.unknown, "unknown outcome")
  t.truthy(retrieve.space(tgt, "Lost reply"), "applied by the server")
  t.eq(the_sim():counts().writes["POST /api/v1/spaces"], 1)
end)

T.test("Cloud: errors carry Qlik's code and message; 409 is not transient", function()
  the_sim():reset()
  local tgt = target()
  tgt:post("spaces", { name = "Dup", type = "shared" })
  local ok, err = pcall(tgt.post, tgt, "spaces", { name = "Dup", type = "shared" })
  t.eq(ok, false)
  t.eq(err.status, 409)
  t.eq(err.transient, false)
  t.match(tostring(err), "POST /api/v1/spaces: HTTP 409")
  local bad = cloud.new({ url = the_sim().info.cloud_url, api_key = "nope" })
  ok, err = pcall(bad.get, bad, "users/me")
  t.eq(ok, false); t.eq(err.status, 401); t.truthy(err.auth)
  t.truthy(not tostring(err):find("nope", 1, true), "the key is not in the message")
end)

T.test("Cloud: dry-run refuses writes with a description", function()
  local tgt = target { dry_run = true }
  local ok, err = pcall(tgt.post, tgt, "spaces", { name = "x", type = "shared" })
  t.eq(ok, false)
  t.eq(getmetatable(err), cloud.DryRun)
  t.eq(err.method, "POST"); t.eq(err.path, "/api/v1/spaces")
end)

T.test("retrieval: users by email then subject, connections by name and space", function()
  the_sim():reset()
  local tgt = target()
  local admin = retrieve.user(tgt, { email = "ADMIN@acme.com" })
  t.eq(admin.email, "admin@acme.com")
  t.eq(retrieve.user(tgt, { email = "nobody@x.com", subject = "auth0|admin" }).id, admin.id)
  t.eq(retrieve.user(tgt, { email = "nobody@x.com" }), nil)
  local a = tgt:post("spaces", { name = "A", type = "shared" })
  local b = tgt:post("spaces", { name = "B", type = "shared" })
  tgt:post("data-connections", { qName = "DB", qConnectStatement = "x", qType = "x", datasourceID = "x", space = b.id })
  t.eq(retrieve.data_connection(tgt, "DB", a.id), nil)
  t.eq(retrieve.data_connection(tgt, "DB", b.id).qName, "DB")
  t.eq(retrieve.space(tgt, "a"), nil, "space names compare as written")
end)

T.test("the app description marker: write, find, strip", function()
  t.eq(retrieve.mark("", "abc"), "[qmig-lua:1:abc]")
  local d = retrieve.mark("Sales figures\nper region", "abc")
  t.eq(d, "Sales figures\nper region\n\n[qmig-lua:1:abc]")
  local id, original = retrieve.read_marker(d)
  t.eq(id, "abc"); t.eq(original, "Sales figures\nper region")
  t.eq(retrieve.strip(d), "Sales figures\nper region")
  t.eq(retrieve.mark(d, "abc"), d, "marking twice changes nothing")
  t.eq(retrieve.read_marker("no marker [qmig-lua:1:x] in the middle"), nil)
  the_sim():reset()
  local tgt = target()
  local space = tgt:post("spaces", { name = "Apps", type = "shared" })
  local qvf = "QSIMQVF1\n" .. json.encode { format = 1, name = "Marked", script = "", objects = json.array(),
    has_data = false, payload_size = 0, payload_seed = "x" } .. "\n"
  local resp = tgt:request("POST", "apps/import", { query = { spaceId = space.id, name = "Marked" }, body = qvf,
    headers = { ["Content-Type"] = "application/octet-stream" } })
  local app = json.decode(resp.body).attributes
  t.truthy(retrieve.unmarked_app(tgt, "Marked", { spaceId = space.id }, app.ownerId, nil), "found before marking")
  tgt:put("apps/" .. app.id, { attributes = { description = retrieve.mark("", "src-1") } })
  local found = retrieve.apps_by_marker(tgt, "src-1", { spaceId = space.id })
  t.eq(#found, 1)
  t.eq(found[1].resourceId, app.id)
  t.eq(#retrieve.apps_by_marker(tgt, "src-2"), 0)
  t.eq(retrieve.unmarked_app(tgt, "Marked", { spaceId = space.id }, app.ownerId, nil), nil)
end)

return T
