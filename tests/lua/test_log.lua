-- qmig.ui.log: levels, sinks, JSON lines, and above all redaction.
local t = require "testing"
local log = require "qmig.ui.log"
local fs = require "qmig.fs"
local json = require "qmig.json"

local T = t.suite("log")

-- Collects records into a table for one test; restores the levels.
local function capture(level)
  local got = {}
  log.set_level(level or "debug")
  log.set_stderr_level("off")
  log.add_sink(function(r) got[#got + 1] = r end)
  return got
end

local function done()
  log.close()
  log.set_level("info")
  log.set_stderr_level("warn")
end

-- Every base64 rendering of s inside a longer base64 value, whatever its
-- alignment, as an attacker (or a Basic header) would produce it.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  return (s:gsub("..?.?", function(c)
    local a, b, d = c:byte(1, 3)
    local n = a * 65536 + (b or 0) * 256 + (d or 0)
    local out = ""
    for i = 1, 4 do
      local x = (n >> (6 * (4 - i))) & 63
      out = out .. B64:sub(x + 1, x + 1)
    end
    if not b then return out:sub(1, 2) .. "==" elseif not d then return out:sub(1, 3) .. "=" end
    return out
  end))
end

T.test("levels filter records; set_level rejects unknown names", function()
  local got = capture("warn")
  log.debug("d")
  log.info("i")
  log.warn("w")
  log.error("e")
  t.eq(#got, 2)
  t.eq({ got[1].level, got[1].msg, got[2].level, got[2].msg }, { "warn", "w", "error", "e" })
  t.match(got[1].ts, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$")
  t.raises("unknown log level", log.set_level, "loud")
  t.raises("unknown log level", log.set_stderr_level, "loud")
  done()
end)

T.test("fields travel with the record; reserved names cannot be overwritten", function()
  local got = capture()
  log.info("hello", { step = "apps.import", n = 3, msg = "field", level = "x" })
  t.eq(got[1].step, "apps.import")
  t.eq(got[1].n, 3)
  t.eq(got[1].msg, "hello")
  t.eq(got[1].level, "info")
  t.eq(got[1]._msg, "field")
  t.eq(got[1]._level, "x")
  done()
end)

T.test("odd arguments are logged, not refused", function()
  local got = capture()
  log.info(nil)
  log.warn({ 1 }, "not a table")
  log.error(42, { [1] = "array part", [true] = "odd key" })
  t.eq(got[1].msg, "nil")
  t.match(got[2].msg, "^table: ")
  t.eq(got[2].detail, "not a table")
  t.eq(got[3].msg, "42")
  t.eq(got[3][1], "array part")
  done()
end)

T.test("with() adds fields, nests, and works with . and :", function()
  local got = capture()
  local l = log.with({ step = "spaces.create" })
  l.info("a", { item = "s1" })
  l:warn("b")
  l.with({ item = "s2" }).error("c", { extra = true })
  t.eq({ got[1].step, got[1].item }, { "spaces.create", "s1" })
  t.eq({ got[2].step, got[2].msg }, { "spaces.create", "b" })
  t.eq({ got[3].step, got[3].item, got[3].extra }, { "spaces.create", "s2", true })
  log:info("colon on the module")
  t.eq(got[4].msg, "colon on the module")
  done()
end)

T.test("add_secret: raw, URL-encoded and base64 forms are redacted", function()
  local secret = "Zq8/k+Ey=Pa ss!"
  local before = log.secrets_count()
  log.add_secret(secret)
  log.add_secret(secret)
  log.add_secret("")
  log.add_secret(nil)
  t.eq(log.secrets_count(), before + 1)
  local function urlenc(fmt)
    return (secret:gsub("[^%w%-%._~]", function(c) return fmt:format(c:byte()) end))
  end
  local enc = urlenc("%%%02X")
  local forms = {
    secret, enc, urlenc("%%%02x"), (enc:gsub("%%20", "+")), b64(secret),
    b64("user:" .. secret), b64("ab:" .. secret .. ":x"), b64("x" .. secret),
  }
  for _, f in ipairs(forms) do
    local r = log.redact("before " .. f .. " after")
    t.truthy(not r:find(secret, 1, true), "raw left in " .. r)
    t.truthy(not r:find(enc, 1, true) and not r:find(urlenc("%%%02x"), 1, true),
             "encoded left in " .. r)
    t.truthy(not r:find(b64(secret):sub(1, 12), 1, true), "base64 left in " .. r)
    t.match(r, "%*%*%*")
  end
end)

T.test("a secret added later is redacted from strings seen before it (no stale answer)", function()
  local text = "conn=late-secret-7Hq2 user=bob"
  t.eq(log.redact(text), text)
  t.eq(log.redact({ conn = "late-secret-7Hq2" }).conn, "late-secret-7Hq2")
  log.add_secret("late-secret-7Hq2")
  t.eq(log.redact(text), "conn=*** user=bob")
  t.eq(log.redact({ conn = "late-secret-7Hq2" }).conn, "***")
  -- a key read again is still judged by its name
  t.eq(log.redact({ api_key = "x", name = "y" }), { api_key = "***", name = "y" })
  t.eq(log.redact({ api_key = "x", name = "y" }), { api_key = "***", name = "y" })
end)

T.test("redact: key-based, deep, cyclic, without touching the input", function()
  local input = {
    password = "p1", Passwd = "p2", client_secret = "p3", ["X-Api-Key"] = "p4", apikey = "p5",
    access_token = "p6", Authorization = "Bearer p7", passphrase = "p8", qPassword = "p9",
    key_password = "p10", user = "jane", count = 3,
    nested = { deeper = { token = { any = "thing" }, fine = "ok" } },
    list = { { password = "p11" }, "plain" },
  }
  input.self = input
  local r = log.redact(input)
  for _, k in ipairs({ "password", "Passwd", "client_secret", "X-Api-Key", "apikey",
                       "access_token", "Authorization", "passphrase", "qPassword",
                       "key_password" }) do
    t.eq(r[k], "***", k)
  end
  t.eq(r.user, "jane")
  t.eq(r.count, 3)
  t.eq(r.nested.deeper.token, "***")
  t.eq(r.nested.deeper.fine, "ok")
  t.eq(r.list[1].password, "***")
  t.eq(r.list[2], "plain")
  t.truthy(rawequal(r.self, r), "a cycle maps onto the copy")
  t.eq(input.password, "p1", "input untouched")
  t.eq(log.redact(42), 42)
  t.eq(log.redact(nil), nil)
  t.eq(log.redact(json.null), json.null)
  local arr = json.decode("[]")
  t.truthy(json.is_array(log.redact({ a = arr }).a), "array marking survives")
end)

T.test("redact: credential-shaped text", function()
  local cases = {
    { "Authorization: Bearer eyJhbGciOi.J9xx-yy_zz", "eyJhbGciOi" },
    { "bearer abc123def", "abc123def" },
    { "https://h/x?password=hunter2&user=a", "hunter2" },
    { "PASSWORD = 'hunter2'", "hunter2" },
    { '{"password": "hunter2", "user": "a"}', "hunter2" },
    { '{"qPassword":"hunter2"}', "hunter2" },
    { "api_key=K123456; next", "K123456" },
    { "X-Api-Key: K123456", "K123456" },
    { "client_secret: s3cr3tvalue", "s3cr3tvalue" },
    { "Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy" },
    { "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----", "MIIEvQ" },
  }
  for _, c in ipairs(cases) do
    local r = log.redact(c[1])
    t.truthy(not r:find(c[2], 1, true), c[1] .. " -> " .. r)
    t.match(r, "%*%*%*")
  end
  t.eq(log.redact("user=a&page=2"), "user=a&page=2", "ordinary text untouched")
  t.eq(log.redact("token refresh failed: 401"), "token refresh failed: 401")
  -- long runs of letters stay fast (no quadratic pattern)
  local big = ("A"):rep(1000000)
  local started = qmig.monotonic()
  t.eq(log.redact(big), big)
  t.truthy(qmig.monotonic() - started < 5, "redaction of 1 MB took too long")
end)

T.test("every record is redacted before any sink sees it", function()
  local got = capture()
  log.add_secret("tok-ABCDEFGH-123")
  log.error("call failed with tok-ABCDEFGH-123", {
    url = "https://x/?api_key=tok-ABCDEFGH-123",
    headers = { Authorization = "Bearer tok-ABCDEFGH-123" },
    body = { list = { "tok-ABCDEFGH-123" } },
  })
  local seen = {}
  local function walk(v)
    if type(v) == "table" then for k, x in pairs(v) do walk(k); walk(x) end
    elseif type(v) == "string" then seen[#seen + 1] = v end
  end
  walk(got[1])
  for _, s in ipairs(seen) do t.truthy(not s:find("ABCDEFGH", 1, true), s) end
  t.eq(got[1].msg, "call failed with ***")
  done()
end)

T.test("open_jsonl writes one JSON object per line, file 0600, flushed", function()
  local dir = t.tmpdir()
  local path = dir .. "/logs/run-1.jsonl"
  fs.mkdirs(dir .. "/logs")
  log.set_level("debug")
  log.set_stderr_level("off")
  log.add_secret("jsonl-secret-999")
  assert(log.open_jsonl(path))
  t.eq(fs.stat(path).mode, tonumber("600", 8))
  log.info("first", { item = "a1", n = 2, secret_note = "x" })
  -- flushed per line: another reader sees it before close
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  t.eq(#lines, 1)
  log.warn("second jsonl-secret-999", { nested = { ok = true }, f = print })
  log.close()
  lines = {}
  for line in io.lines(path) do lines[#lines + 1] = json.decode(line) end
  t.eq(#lines, 2)
  t.eq({ lines[1].level, lines[1].msg, lines[1].item, lines[1].n, lines[1].secret_note },
       { "info", "first", "a1", 2, "***" })
  t.match(lines[1].ts, "Z$")
  t.eq(lines[2].msg, "second ***")
  t.eq(lines[2].nested.ok, true)
  t.match(lines[2].f, "^function")
  t.truthy(not t.read(path):find("jsonl-secret-999", 1, true))
  -- reopening appends
  assert(log.open_jsonl(path))
  log.info("third")
  log.close()
  local n = 0
  for _ in io.lines(path) do n = n + 1 end
  t.eq(n, 3)
  local ok, _, code = log.open_jsonl(dir .. "/missing/x.jsonl")
  t.eq(ok, nil)
  t.eq(code, 2)
  done()
end)

T.test("a failing sink neither raises nor starves the other sinks", function()
  local got = capture()
  log.add_sink(function() error("sink broken") end)
  local after = {}
  log.add_sink(function(r) after[#after + 1] = r end)
  -- the failure note goes to stderr; keep the test output clean
  local real = io.stderr
  local notes = {}
  io.stderr = { write = function(_, ...) notes[#notes + 1] = table.concat({ ... }) end }  -- luacheck: ignore 122
  local ok = pcall(log.info, "still delivered")
  io.stderr = real  -- luacheck: ignore 122
  t.eq(ok, true)
  t.eq(#got, 1)
  t.eq(#after, 1)
  t.match(table.concat(notes), "a sink failed")
  done()
end)

T.test("remove_sink and close detach sinks", function()
  local got = capture()
  local other = {}
  local fn = log.add_sink(function(r) other[#other + 1] = r end)
  log.remove_sink(fn)
  log.info("x")
  t.eq(#got, 1)
  t.eq(#other, 0)
  log.close()
  log.info("y")
  t.eq(#got, 1)
  done()
end)

-- What a Lua script run by a qmig-lua of its own writes to stdout and
-- stderr (the stderr sink writes to the process's real stderr).
local function child_output(source)
  local script = t.tmpdir() .. "/s.lua"
  t.write(script, source)
  local exe = assert(fs.realpath("/proc/self/exe"))
  local p = io.popen("'" .. exe .. "' '" .. script .. "' 2>&1")
  local out = p:read("a")
  t.eq(select(3, p:close()), 0, "child exit status: " .. out)
  return out
end

-- The terminal's progress line (qmig.ui.cli sets the hook to clear it):
-- a warning is written after the hook ran, on a line of its own.
T.test("before_stderr runs before each line the stderr sink writes, and only for those", function()
  local out = child_output [[
    local log = require "qmig.ui.log"
    log.before_stderr = function() io.stderr:write("[cleared]") end
    log.info("below the stderr level")
    log.warn("a warning")
  ]]
  t.match(out, "^%[cleared%][^\n]*WARN  a warning\n$")
end)

T.test("the stderr sink is human-readable and respects its level", function()
  local out = child_output [[
    local log = require "qmig.ui.log"
    log.add_secret("stderr-secret-42")
    log.info("not shown")
    log.warn("shown stderr-secret-42", { step = "users.import", note = "two words" })
    log.set_stderr_level("debug")
    log.debug("dropped by the global level")
    log.set_level("debug")
    log.debug("now shown")
    log.error("app \27]0;evil\7name\r")
  ]]
  t.truthy(not out:find("not shown", 1, true))
  t.truthy(not out:find("stderr-secret-42", 1, true))
  t.match(out, "WARN  shown %*%*%* note=\"two words\" step=users.import")
  t.truthy(not out:find("dropped", 1, true))
  t.match(out, "DEBUG now shown")
  t.match(out, "ERROR app %?%]0;evil%?name%?\n")
  t.truthy(not out:find("\27", 1, true), "no raw escape reaches the terminal")
end)

T.test("key-based redaction keeps boolean flags readable", function()
  local r = log.redact { has_password = false, password = "x1", pin_token = 1234,
    credentials = { username = "jane", password = "pw" } }
  t.eq(r.has_password, false)
  t.eq(r.password, "***")
  t.eq(r.pin_token, "***")
  t.eq(r.credentials, "***")
end)

T.test("secrets shorter than 4 characters do not shred every message", function()
  log.add_secret("p")
  log.add_secret("ab")
  t.eq(log.redact("apps.export: a plain message"), "apps.export: a plain message")
  t.eq(log.redact { password = "p" }.password, "***", "a field named like a secret is still hidden")
end)

return T
