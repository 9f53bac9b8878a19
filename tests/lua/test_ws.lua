-- qmig.ws: the WebSocket client (src/ws_*.c) -- the pure framing (parse,
-- encode) and a live connection to the simulator's own server
-- (tests/qliksim/wsserver.py): echo, fragments both ways, pings both
-- ways, the closing handshake from either side, the message cap, TLS with
-- a client certificate, refusals, and waits that yield in scheduler tasks.
local t = require "testing"
local ws = require "qmig.ws"
local json = require "qmig.json"
local sched = require "qmig.engine.sched"
local simlib = require "sim"

local T = t.suite("ws")

local sim
local function get_sim()
  if not sim then sim = simlib.start { site = "examples/demo/site.json" } end
  return sim
end
T.after_all(function() if sim then sim:stop() end end)

local function echo(opts)
  opts = opts or {}
  opts.url = opts.url or get_sim().info.cloud_engine_url .. "/_ws/echo"
  return ws.connect(opts)
end

local function qrs_tls(extra)
  local c = get_sim().info.certs
  local o = { url = get_sim().info.qrs_engine_url .. "/_ws/echo", ca = c.ca, cert = c.client_cert, key = c.client_key }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- {====== framing without I/O
T.test("parse: a fragmented text message with a ping between its fragments", function()
  local bytes = ws.encode(1, "Hel", false) .. ws.encode(9, "mid") .. ws.encode(0, "lo", false) .. ws.encode(0, "!")
  local frames, msgs, consumed, err = ws.parse(bytes)
  t.eq(err, nil)
  t.eq(consumed, #bytes)
  t.eq(#frames, 4)
  t.eq(frames[2].opcode, 9)
  t.eq(frames[2].payload, "mid")
  t.eq(#msgs, 1)
  t.eq(msgs[1], { opcode = 1, data = "Hello!" })
end)

T.test("parse: lengths in 7, 16 and 64 bits; a partial frame waits for more bytes", function()
  for _, n in ipairs { 0, 125, 126, 65535, 65536, 200000 } do
    local f = ws.encode(2, string.rep("x", n))
    local frames, msgs, consumed = ws.parse(f)
    t.eq(#frames, 1, "length " .. n)
    t.eq(#msgs[1].data, n)
    t.eq(consumed, #f)
    local partial, _, used, err = ws.parse(f:sub(1, #f - 1))
    t.eq(#partial, 0)
    t.eq(used, 0)
    t.eq(err, nil)
  end
end)

T.test("parse: protocol violations are named", function()
  local cases = {
    { "\xC1\x00", "rsv" },                                   -- RSV1 without an extension
    { "\x83\x00", "opcode" },                                -- reserved opcode 3
    { "\x09\x00", "control" },                               -- a fragmented ping
    { "\x89\x7E\x00\x80" .. string.rep("p", 128), "control" },  -- a ping over 125 bytes
    { "\x82\x7E\x00\x10" .. string.rep("x", 16), "length" },   -- 16 bytes in the 16-bit form
    { "\x82\x7F\x80\0\0\0\0\0\0\0", "length" },              -- the 64-bit length's top bit
    { "\x81\x85abcd" .. "hello", "masked" },                 -- servers never mask
    { ws.encode(0, "x"), "sequence" },                       -- continuation without a start
    { ws.encode(1, "a", false) .. ws.encode(1, "b"), "sequence" },
    { ws.encode(1, "\xC3\x28"), "utf8" },
    { ws.encode(1, "\xED\xA0\x80"), "utf8" },                -- a surrogate
    { ws.encode(8, "\x03"), "close" },                       -- a 1-byte close payload
    { ws.encode(8, "\x03\xED"), "close" },                   -- status 1005 is never sent
  }
  for _, c in ipairs(cases) do
    local _, _, _, err = ws.parse(c[1])
    t.eq(err, c[2], string.format("%q", c[1]:sub(1, 8)))
  end
  local _, _, _, err = ws.parse(ws.encode(2, string.rep("x", 2000)), 1000)
  t.eq(err, "too_big")
  _, _, _, err = ws.parse(ws.encode(2, string.rep("x", 600), false) .. ws.encode(0, string.rep("x", 600)), 1000)
  t.eq(err, "too_big", "the cap is on the message, not the frame")
  local frames = ws.parse(ws.encode(1, "masked", true, "abcd"), nil, true)
  t.eq(frames[1].payload, "masked", "a masked frame decodes when allowed")
end)
-- }======

T.test("echo over ws://, a message the client sends in fragments, and binary", function()
  local c = assert(echo())
  t.eq(c:info().state, "open")
  t.truthy(c:send("hello"))
  t.eq({ c:receive(5) }, { "hello", "text" })
  t.truthy(c:send("a message sent in five-byte frames", { fragment = 5 }))
  t.eq(c:receive(5), "a message sent in five-byte frames")
  t.truthy(c:send("\0\1\2\255", { binary = true }))
  t.eq({ c:receive(5) }, { "\0\1\2\255", "binary" })
  t.truthy(c:send("!stats"))
  local stats = json.decode((c:receive(5)))
  t.eq(stats.fragmented_messages, 1)
  t.eq(stats.frames, 10)  -- hello, 7 fragments, the binary one, !stats
  t.eq({ c:close() }, { true, 1000 })
  t.eq(c:info().state, "closed")
end)

T.test("fragments from the server with a ping between them: reassembled, the ping answered", function()
  local c = assert(echo())
  local text = string.rep("0123456789", 30)
  t.truthy(c:send("!frag 7 " .. text))
  t.eq(c:receive(5), text)
  t.eq(c:info().pings_answered, 1)
  t.truthy(c:send("!ping are-you-there"))
  t.eq(c:receive(5), "pong are-you-there", "the server got our pong with its payload")
  t.truthy(c:ping("client ping"))
  t.truthy(c:send("after"))
  t.eq(c:receive(5), "after")
  t.eq(c:info().pongs, 1, "the server answered our ping")
  t.truthy(c:send("!stats"))
  t.eq(json.decode((c:receive(5))).pongs, 2)
  c:close()
end)

T.test("the server closes: receive says so with its status, close() then releases", function()
  local c = assert(echo())
  t.truthy(c:send("!close 4001"))
  local data, err, code = c:receive(5)
  t.eq(data, nil)
  t.eq(code, "closed")
  t.match(err, "closed by the server %(4001 server closing%)")
  t.eq(c:info().close_code, 4001)
  local ok, sent = c:send("late")
  t.eq(ok, nil)
  t.match(sent, "closed")
  t.eq({ c:close() }, { true, 4001 })
end)

T.test("a message over max_message is refused with a clear error, in bounded memory", function()
  local c = assert(echo { max_message = 1000 })
  t.truthy(c:send("!big 1000"))
  t.eq(#c:receive(5), 1000, "exactly the cap is fine")
  t.truthy(c:send("!big 5000000"))
  local data, err, code = c:receive(5)
  t.eq(data, nil)
  t.eq(code, "too_large")
  t.match(err, "message larger than the cap %(1000 bytes%), refused")
  t.eq(c:info().state, "failed")
  t.eq(select(3, c:receive(1)), "too_large", "the connection stays failed")
  local too, _, tcode = c:send(string.rep("y", 1001))
  t.eq({ too, tcode }, { nil, "too_large" })
  c:close()
end)

T.test("wss:// with a client certificate (and an encrypted key); refused without one", function()
  local c = assert(ws.connect(qrs_tls()))
  t.truthy(c:send("over TLS"))
  t.eq(c:receive(5), "over TLS")
  c:close()
  local certs = get_sim().info.certs
  local e = assert(ws.connect(qrs_tls { key = certs.client_key_encrypted, key_password = certs.client_key_password }))
  e:close()
  local no, err, code = ws.connect(qrs_tls { cert = false, key = false })
  t.eq({ no, code }, { nil, "tls" }, err)
  no, err, code = ws.connect(qrs_tls { cert = certs.rogue_client_cert, key = certs.rogue_client_key })
  t.eq({ no, code }, { nil, "tls" }, err)
  no, err, code = ws.connect(qrs_tls { ca = certs.rogue_ca })
  t.eq({ no, code }, { nil, "tls" }, err)
  no, err, code = ws.connect(qrs_tls { key = certs.client_key_encrypted, key_password = "wrong" })
  t.eq({ no, code }, { nil, "tls" }, err)
end)

T.test("refusals: no credentials (401), an unknown path (404), nothing listening", function()
  local s = get_sim()
  local no, err, code = ws.connect { url = s.info.cloud_engine_url .. "/app/x" }
  t.eq({ no, code }, { nil, "auth" })
  t.match(err, "upgrade refused: HTTP 401")
  no, err, code = ws.connect { url = s.info.cloud_engine_url .. "/nothing",
    headers = { Authorization = "Bearer " .. s.info.api_key } }
  t.eq({ no, code }, { nil, "not_found" }, err)
  no, err, code = ws.connect { url = "ws://127.0.0.1:1/x" }
  t.eq({ no, code }, { nil, "refused" }, err)
  t.raises("not a ws:// or wss:// URL", function() assert(ws.connect { url = "http://x/" }) end)
end)

T.test("inside scheduler tasks a receive yields: a waiting task does not hold up the others", function()
  local s = sched.new { concurrency = 4 }
  local order = {}
  local slow = s:spawn(function()
    local c = assert(echo())
    local data, _, code = c:receive(1.0)  -- nothing comes: times out
    order[#order + 1] = "slow"
    c:close()
    return { data, code }
  end)
  local quick = s:spawn(function()
    local c = assert(echo())
    for i = 1, 20 do
      assert(c:send("m" .. i))
      assert(c:receive(5) == "m" .. i)
    end
    order[#order + 1] = "quick"
    c:close()
    return true
  end)
  local started = qmig.monotonic()
  s:run()
  t.truthy(slow.ok and quick.ok, tostring(slow.error or quick.error))
  t.eq(slow.result, { nil, "timeout" })
  t.eq(order, { "quick", "slow" })
  local took = qmig.monotonic() - started
  t.truthy(took >= 0.9 and took < 5, string.format("took %.2f s", took))
end)

T.test("twelve connections waited on at once by twelve tasks, with HTTP requests in between", function()
  local s = sched.new { concurrency = 12 }
  local http = require "qmig.http"
  local control = http.client { base_url = get_sim().info.cloud_url }
  local tasks = {}
  for i = 1, 12 do
    tasks[i] = s:spawn(function()
      local c = assert(echo())
      local got = {}
      for j = 1, 10 do
        assert(c:send(("t%d-%d"):format(i, j), { fragment = (j % 3 == 0) and 2 or 0 }))
        got[#got + 1] = assert(c:receive(10))
        if j == 5 then assert(control:request { path = "/_sim/counts" }) end
      end
      assert(c:close())
      return table.concat(got, ",")
    end)
  end
  s:run()
  for i, task in ipairs(tasks) do
    t.truthy(task.ok, tostring(task.error))
    local want = {}
    for j = 1, 10 do want[j] = ("t%d-%d"):format(i, j) end
    t.eq(task.result, table.concat(want, ","))
  end
end)

return T
