-- qmig.http against a loopback server: methods, queries, headers, bodies,
-- streaming to and from files, multipart, redirects, failures, mutual TLS,
-- and requests yielding inside scheduler tasks.
local t = require "testing"
local servers = require "servers"
local http = require "qmig.http"
local json = require "qmig.json"
local sched = require "qmig.engine.sched"
local fs = require "qmig.fs"

local T = t.suite("http")
local plain, mtls

local function server()
  if not plain then plain = servers.start() end
  return plain
end

local function mtls_server()
  if not mtls then mtls = servers.start { mtls = true } end
  return mtls
end

T.after_all(function()
  if plain then plain.stop() end
  if mtls then mtls.stop() end
end)

local function client(opts)
  opts = opts or {}
  opts.base_url = opts.base_url or server().base
  return http.client(opts)
end

local function echo(c, req)
  req.path = req.path or "/echo"
  local resp, err, code = c:request(req)
  assert(resp, tostring(err) .. " " .. tostring(code))
  t.eq(resp.status, 200)
  return json.decode(resp.body), resp
end

T.test("GET sends the URL-encoded query with sorted keys", function()
  local query = { filter = "name eq 'O''Brien & Co/ü'", b = 1, flag = true, list = { "x", "y" } }
  local got = echo(client(), { query = query })
  t.eq(got.method, "GET")
  t.eq(got.query, "b=1&filter=name%20eq%20%27O%27%27Brien%20%26%20Co%2F%C3%BC%27&flag=true&list=x&list=y")
end)

T.test("a long query (a QRS filter over many names) builds the whole URL", function()
  local names = {}
  for i = 1, 300 do names[i] = string.format("name eq 'App %03d'", i) end
  local filter = table.concat(names, " or ")
  local got = echo(client(), { path = "/echo", query = { filter = filter } })
  t.eq(#got.query, #("filter=") + #http.escape(filter))
end)

T.test("a path with its own query string gets the rest appended with &", function()
  local got = echo(client(), { path = "/echo?xrfkey=abc", query = { filter = "a" } })
  t.eq(got.query, "xrfkey=abc&filter=a")
end)

T.test("default headers merge with per-request ones; false removes one", function()
  local c = client { headers = { ["X-Qlik-User"] = "UserDirectory=INTERNAL; UserId=sa_api",
    ["X-Keep"] = "1", ["X-Drop"] = "d" } }
  local got = echo(c, { headers = { ["x-keep"] = "2", ["X-Drop"] = false, ["X-New"] = "n" } })
  t.eq(got.headers["x-qlik-user"], "UserDirectory=INTERNAL; UserId=sa_api")
  t.eq(got.headers["x-keep"], "2")
  t.eq(got.headers["x-drop"], nil)
  t.eq(got.headers["x-new"], "n")
end)

T.test("a header value with a line break is refused (header injection)", function()
  t.raises("line break", function() client():request { path = "/echo", headers = { ["X-A"] = "a\r\nX-B: b" } } end)
end)

T.test("JSON bodies are encoded and typed; raw bodies are sent as given", function()
  local c = client()
  local got = echo(c, { method = "post", json = { name = "Finance", tags = json.array() } })
  t.eq(got.method, "POST")
  t.eq(got.headers["content-type"], "application/json")
  t.eq(json.decode(got.body), { name = "Finance", tags = {} })
  t.match(got.body, '"tags":%[%]')
  got = echo(c, { method = "PUT", body = "raw\0bytes", headers = { ["Content-Type"] = "application/octet-stream" } })
  t.eq(got.method, "PUT")
  t.eq(got.bytes, 9)
  t.eq(got.headers.expect, nil, "no 100-continue round trip")
end)

T.test("error statuses are responses, not failures, with the body kept", function()
  local resp = client():request { path = "/status/409", method = "POST", json = {} }
  t.eq(resp.status, 409)
  t.eq(json.decode(resp.body).errors[1].code, "HTTP-409")
  t.eq(resp.headers["content-type"], "application/json")
end)

T.test("redirects are followed only when asked, and bounded", function()
  local c = client()
  local resp = c:request { path = "/redirect/3" }
  t.eq(resp.status, 302)
  t.eq(resp.headers.location, "/redirect/2")
  resp = c:request { path = "/redirect/3", follow = 5 }
  t.eq(resp.status, 200)
  t.match(resp.url, "/echo$")
  local ok, msg, code = c:request { path = "/redirect/9", follow = 3 }
  t.eq(ok, nil)
  t.eq(code, "redirects")
  t.match(msg, "redirect/9")
end)

T.test("timeouts, stalls, refused and dropped connections give nil, msg, code", function()
  local c = client()
  local ok, msg, code = c:request { path = "/slow", query = { ms = 3000 }, timeout = 0.3 }
  t.eq(ok, nil); t.eq(code, "timeout"); t.match(msg, "^GET http://127.0.0.1:%d+/slow%?ms=3000: ")
  ok, msg, code = c:request { path = "/stall", idle_timeout = 1 }
  t.eq(ok, nil); t.eq(code, "timeout"); t.match(msg, "/stall")
  ok, msg, code = c:request { path = "/drop" }
  t.eq(ok, nil); t.eq(code, "dropped"); t.match(msg, "/drop")
  local closed = http.client { base_url = "http://127.0.0.1:1" }
  ok, msg, code = closed:request { path = "/x" }
  t.eq(ok, nil); t.eq(code, "refused"); t.match(msg, "127.0.0.1:1/x")
end)

T.test("a write whose reply is lost is never re-sent behind the caller's back", function()
  local c = client()
  assert(c:request { path = "/echo" })  -- leaves a pooled keep-alive connection
  local before = json.decode(assert(c:request { path = "/drop-count" }).body).drops
  local ok, _, code = c:request { method = "POST", path = "/drop-counted", json = { name = "x" } }
  t.eq(ok, nil); t.eq(code, "dropped")
  local after = json.decode(assert(c:request { path = "/drop-count" }).body).drops
  t.eq(after - before, 1, "the server saw the POST exactly once")
  -- a body streamed from a file: curl cannot rewind it to re-send, which
  -- is the same lost reply, not an HTTP error
  local dir = t.tmpdir()
  t.write(dir .. "/app.qvf", string.rep("q", 300000))
  assert(c:request { path = "/echo" })
  ok, _, code = c:request { method = "POST", path = "/drop-counted", source = dir .. "/app.qvf" }
  t.eq(ok, nil); t.eq(code, "dropped")
  local last = json.decode(assert(c:request { path = "/drop-count" }).body).drops
  t.eq(last - after, 1, "the server saw the upload exactly once")
end)

T.test("writes reuse pooled connections; a redirect after a write is still followed", function()
  local c = client()
  local first = json.decode(assert(c:request { path = "/echo" }).body).peer_port
  local post = json.decode(assert(c:request { method = "POST", path = "/echo", json = { a = 1 } }).body)
  t.eq(post.method, "POST")
  t.eq(post.peer_port, first, "the POST went over the pooled connection (no new TLS handshake per write)")
  local resp = assert(c:request { method = "POST", path = "/redirect/2", json = {}, follow = 3 })
  t.eq(resp.status, 200)
  t.match(resp.url, "/echo$")
end)

T.test("a reply larger than max_body fails instead of eating memory", function()
  local ok, _, code = client { max_body = 1024 * 1024 }:request { path = "/bytes", query = { n = 2 * 1024 * 1024 } }
  t.eq(ok, nil)
  t.eq(code, "too_large")
end)

T.test("absurdly large response headers fail cleanly", function()
  local ok, msg, code = client():request { path = "/big-headers" }
  t.eq(ok, nil)
  t.eq(code, "too_large")
  t.match(msg, "reply headers too large")
end)

T.test("a body streams to a file (via .part) and back up from it", function()
  local dir = t.tmpdir()
  local c = client()
  local n = 3 * 1024 * 1024 + 7
  local resp = assert(c:request { path = "/bytes", query = { n = n, seed = "s1" }, sink = dir .. "/app.qvf" })
  t.eq(resp.status, 200)
  t.eq(resp.body, nil)
  t.eq(resp.sink, dir .. "/app.qvf")
  t.eq(resp.bytes, n)
  t.eq(io.open(dir .. "/app.qvf.part"), nil)
  local up = json.decode(assert(c:request { method = "POST", path = "/upload", source = dir .. "/app.qvf",
    headers = { ["Content-Type"] = "application/octet-stream" } }).body)
  local want = json.decode(assert(c:request { path = "/bytes-sha", query = { n = n, seed = "s1" } }).body)
  t.eq(up.bytes, n)
  t.eq(up.sha256, want.sha256)
end)

T.test("inside tasks, downloads to files are closed (fsync, rename) by the I/O worker", function()
  local dir = t.tmpdir()
  local c = client()
  local s = sched.new { concurrency = 4 }
  local got = {}
  for i = 1, 6 do
    s:spawn(function()
      local status = i == 6 and 404 or nil
      got[i] = assert(c:request { path = status and "/status/404" or "/bytes",
        query = { n = 100000 + i, seed = "t" .. i }, sink = dir .. "/f" .. i })
    end)
  end
  s:run()
  for i = 1, 5 do
    t.eq(got[i].sink, dir .. "/f" .. i)
    t.eq(got[i].bytes, 100000 + i)
    t.eq(fs.stat(dir .. "/f" .. i).size, 100000 + i)
  end
  t.eq(got[6].status, 404); t.eq(got[6].sink, nil)
  t.eq(fs.dir(dir), { "f1", "f2", "f3", "f4", "f5" })
end)

T.test("an error reply to a sink request stays in memory and leaves no file", function()
  local dir = t.tmpdir()
  local resp = client():request { path = "/status/404", sink = dir .. "/x.qvf" }
  t.eq(resp.status, 404)
  t.match(resp.body, "HTTP%-404")
  t.eq(io.open(dir .. "/x.qvf"), nil)
  t.eq(io.open(dir .. "/x.qvf.part"), nil)
end)

T.test("a missing source file is an I/O failure, not a crash", function()
  local ok, msg, code = client():request { method = "POST", path = "/upload", source = "/nonexistent/file.qvf" }
  t.eq(ok, nil); t.eq(code, "io"); t.match(msg, "No such file")
end)

T.test("multipart/form-data upload from a file plus a JSON part", function()
  local dir = t.tmpdir()
  t.write(dir .. "/ext.zip", string.rep("PK\3\4", 1000))
  local resp = assert(client():request { method = "POST", path = "/multipart", multipart = {
    { name = "file", path = dir .. "/ext.zip", filename = "ext.zip", content_type = "application/x-zip-compressed" },
    { name = "data", data = '{"name":"ext"}', content_type = "application/json" },
  } })
  local parts = json.decode(resp.body).parts
  t.eq(#parts, 2)
  t.eq(parts[1].name, "file"); t.eq(parts[1].filename, "ext.zip"); t.eq(parts[1].size, 4000)
  t.eq(parts[1].content_type, "application/x-zip-compressed")
  t.eq(parts[2].name, "data"); t.eq(parts[2].data, '{"name":"ext"}')
end)

T.test("mutual TLS: the client certificate is presented and checked", function()
  local s = mtls_server()
  local c = http.client { base_url = s.base, ca = s.certs .. "/ca.pem", cert = s.certs .. "/client.pem",
    key = s.certs .. "/client_key.pem" }
  local got = echo(c, {})
  t.eq(got.client_cert.commonName, "client")
  local enc = http.client { base_url = s.base, ca = s.certs .. "/ca.pem", cert = s.certs .. "/client.pem",
    key = s.certs .. "/client_key_enc.pem", key_password = "test-pass" }
  t.eq(echo(enc, {}).client_cert.commonName, "client")
end)

T.test("mutual TLS failures: no client cert, rogue cert, wrong key password", function()
  local s = mtls_server()
  local ok, _, code = http.client { base_url = s.base, ca = s.certs .. "/ca.pem" }:request { path = "/echo" }
  t.eq(ok, nil); t.truthy(code == "tls" or code == "dropped", code)
  ok, _, code = http.client { base_url = s.base, ca = s.certs .. "/ca.pem", cert = s.certs .. "/rogue_client.pem",
    key = s.certs .. "/rogue_client_key.pem" }:request { path = "/echo" }
  t.eq(ok, nil); t.truthy(code == "tls" or code == "dropped", code)
  -- Files of its own: curl pools connections by certificate path, and a
  -- pooled connection made with the right passphrase would be reused.
  local dir = t.tmpdir()
  t.write(dir .. "/key.pem", t.read(s.certs .. "/client_key_enc.pem"))
  t.write(dir .. "/cert.pem", t.read(s.certs .. "/client.pem"))
  local msg
  ok, msg, code = http.client { base_url = s.base, ca = s.certs .. "/ca.pem", cert = dir .. "/cert.pem",
    key = dir .. "/key.pem", key_password = "wrong" }:request { path = "/echo" }
  t.eq(ok, nil); t.eq(code, "tls")
  t.truthy(not msg:find("wrong", 1, true), "the passphrase never appears in the message")
end)

T.test("an untrusted server certificate is refused unless insecure", function()
  local s = mtls_server()
  local ok, msg, code = http.client { base_url = s.base, cert = s.certs .. "/client.pem",
    key = s.certs .. "/client_key.pem" }:request { path = "/echo" }
  t.eq(ok, nil); t.eq(code, "tls"); t.match(msg:lower(), "certificate")
  local c = http.client { base_url = s.base, insecure = true, cert = s.certs .. "/client.pem",
    key = s.certs .. "/client_key.pem" }
  t.eq(echo(c, {}).client_cert.commonName, "client")
end)

T.test("requests inside scheduler tasks run concurrently", function()
  local c = client()
  assert(c:request { path = "/concurrent-reset" })
  local s = sched.new { concurrency = 8 }
  local peaks = {}
  for i = 1, 8 do
    s:spawn(function()
      local resp = assert(c:request { path = "/concurrent", query = { ms = 400, i = i } })
      peaks[#peaks + 1] = json.decode(resp.body).max_in_flight
    end)
  end
  s:run()
  t.eq(#peaks, 8)
  t.truthy(math.max(table.unpack(peaks)) >= 6, "server saw overlapping requests: " .. table.concat(peaks, ","))
end)

-- The most requests the server saw at once while 6 tasks each made one
-- slow request through c, at the given scheduler concurrency.
local function peak_in_flight(c, concurrency)
  assert(c:request { path = "/concurrent-reset" })
  local s = sched.new { concurrency = concurrency }
  local peak = 0
  for _ = 1, 6 do
    s:spawn(function()
      local resp = assert(c:request { path = "/concurrent", query = { ms = 100 } })
      peak = math.max(peak, json.decode(resp.body).max_in_flight)
    end)
  end
  s:run()
  return peak
end

T.test("the concurrency limit is respected", function()
  t.eq(peak_in_flight(client(), 2), 2)
end)

T.test("http.configure bounds the connections to one host (options.max_per_host)", function()
  -- set before the first request (as the CLI does): curl applies it when
  -- it opens connections, so a fresh server, no pooled connection yet
  http.configure { max_host_connections = 2 }
  local fresh = servers.start()
  local peak = peak_in_flight(http.client { base_url = fresh.base }, 8)
  http.configure { max_host_connections = 0 }
  fresh.stop()
  t.eq(peak, 2)
end)

T.test("sleep yields to other tasks; failures in one task never stop the others", function()
  local s = sched.new { concurrency = 4 }
  local order = {}
  local slow = s:spawn(function() qmig.sleep(0.3); order[#order + 1] = "slow" end)
  local fast = s:spawn(function() order[#order + 1] = "fast"; return 42 end)
  local bad = s:spawn(function() error("boom") end)
  local net = s:spawn(function() return (assert(client():request { path = "/echo" })).status end)
  s:run()
  t.eq(order, { "fast", "slow" })
  t.truthy(slow.ok); t.eq(fast.result, 42); t.eq(net.result, 200)
  t.eq(bad.ok, false); t.match(bad.error, "boom")
end)

T.test("a sleeping task gives its place up; max_open bounds the sleepers", function()
  -- concurrency 1: the request runs while the first task sleeps, so a
  -- reload poll's pause or a backoff never idles the API
  local s = sched.new { concurrency = 1 }
  local order = {}
  s:spawn(function() qmig.sleep(0.3); order[#order + 1] = "sleeper" end)
  s:spawn(function()
    assert(client():request { path = "/echo" })
    order[#order + 1] = "request"
  end)
  s:run()
  t.eq(order, { "request", "sleeper" })

  -- sleepers count against max_open, and woken ones go before new tasks
  s = sched.new { concurrency = 2, max_open = 3 }
  local open, peak, log = 0, 0, {}
  for i = 1, 9 do
    s:spawn(function()
      open = open + 1
      peak = math.max(peak, open)
      log[#log + 1] = "start " .. i
      qmig.sleep(0.05)
      log[#log + 1] = "end " .. i
      open = open - 1
    end)
  end
  s:run()
  t.eq(peak, 3)
  t.eq(#log, 18)
  t.eq(s.peak_running, 2)
  t.eq({ table.unpack(log, 1, 4) }, { "start 1", "start 2", "start 3", "end 1" })
  t.raises("max_open", function() sched.new { concurrency = 4, max_open = 2 } end)
end)

T.test("200 MiB down to disk and back up with peak RSS under 40 MiB", function()
  if os.getenv("QMIG_SANITIZED") then return "skip" end  -- ASan's shadow memory inflates RSS
  local dir = t.tmpdir()
  local n = 200 * 1024 * 1024
  local script = string.format([[
    local http = require "qmig.http"
    local c = http.client { base_url = %q }
    local d = assert(c:request { path = "/bytes", query = { n = %d, seed = "big" }, sink = %q })
    local u = assert(c:request { method = "POST", path = "/upload", source = %q })
    local hwm = io.open("/proc/self/status"):read("a"):match("VmHWM:%%s*(%%d+)")
    io.write(d.bytes, " ", u.body:match('"sha256": "(%%x+)"'), " ", hwm)
  ]], server().base, n, dir .. "/big.qvf", dir .. "/big.qvf")
  t.write(dir .. "/big.lua", script)
  local p = io.popen((os.getenv("QMIG_BIN") or "./qmig-lua") .. " " .. dir .. "/big.lua")
  local out = p:read("a")
  t.eq(select(3, p:close()), 0, "child exit status: " .. out)
  local bytes, sha, hwm_kb = out:match("^(%d+) (%x+) (%d+)$")
  t.truthy(bytes, "child output: " .. out)
  t.eq(tonumber(bytes), n)
  local want = json.decode(assert(client():request { path = "/bytes-sha", query = { n = n, seed = "big" } }).body)
  t.eq(sha, want.sha256)
  t.truthy(tonumber(hwm_kb) < 40 * 1024, "peak RSS " .. hwm_kb .. " KiB")
  print(string.format("     200 MiB round trip: peak RSS %.1f MiB", tonumber(hwm_kb) / 1024))
end)

return T
