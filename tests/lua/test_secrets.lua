-- Secrets: a canary API key given as ${ENV} in the
-- job, and the passphrase of an encrypted client key (key_password), never
-- appear on the terminal, in the logs, the cache (and its WAL), the
-- reports, status output or error messages, nor in the process's command
-- line.  TLS verification is on by default: a server whose certificate
-- the job does not trust is refused, with a clear message, before any
-- request is made.
local t = require "testing"
local cli = require "cli"
local servers = require "servers"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"

local T = t.suite("secrets")
local FIXTURES = fs.realpath("tests/lua/fixtures")
local API_KEY = "CANARY-apikey-7f3e9a1c5b"
local sim

local function the_sim()
  if sim then return sim end
  local cloud = { api_keys = { { key = API_KEY, user = "admin@acme.com" } }, users = simlib.ADMIN_CLOUD.users }
  sim = simlib.start { site = { qrs = { streams = { { name = "Finance" }, { name = "Sales" } } }, cloud = cloud } }
  return sim
end

T.after_all(function() if sim then sim:stop() end end)

-- A job whose API key and key passphrase come from the environment, with
-- the encrypted client key.
local function job(jobs)
  local s = the_sim()
  local dir = fs.realpath(t.tmpdir())
  local text = s:job_yaml { project_dir = dir .. "/project", api_key = "${QMIG_CANARY_API_KEY}",
    extra = "steps_path: [" .. FIXTURES .. "/steps]", jobs = jobs or "  - {name: a, steps: [test.spaces, test.leaky]}" }
  text = text:gsub("key: %S+client_key%.pem", "key: " .. s.info.certs.client_key_encrypted
    .. "\n  key_password: ${QMIG_CANARY_KEY_PASS}")
  t.write(dir .. "/job.yaml", text)
  return dir .. "/job.yaml", dir
end

local function env()
  return { QMIG_CANARY_API_KEY = API_KEY, QMIG_CANARY_KEY_PASS = the_sim().info.certs.client_key_password }
end

-- Every form a leak of a secret would take: raw, URL-encoded (either hex
-- case, with or without its unreserved characters encoded), JSON-escaped,
-- and base64 — at each of the three alignments, so that the secret is found
-- inside a longer base64 blob such as the "user:password" of a Basic
-- Authorization header (the characters that also depend on the bytes
-- around it are left out).
local function forms(secret)
  local out = { secret, json.encode(secret):sub(2, -2), json.encode({ secret }):sub(3, -3) }
  for _, fmt in ipairs { "%%%02X", "%%%02x" } do
    out[#out + 1] = (secret:gsub("[^%w%-%._~]", function(c) return string.format(fmt, c:byte()) end))
    out[#out + 1] = (secret:gsub("[^%w]", function(c) return string.format(fmt, c:byte()) end))
  end
  for pad = 0, 2 do
    local b64 = t.base64(("\0"):rep(pad) .. secret)
    local full = (#secret + pad) // 3 * 4                   -- the groups of 3 bytes all known
    out[#out + 1] = b64:sub(pad == 0 and 1 or 5, full)
  end
  return out
end

-- The value of every Authorization header, Bearer or Basic credential in
-- text: each must be redacted ("***").
local function credentials_shown(text)
  local shown = {}
  local patterns = { "[Aa]uthorization[\"']?%s*[:=]%s*[\"']?([^\r\n\"']*)", "[Bb]earer%s+(%S+)", "Basic%s+(%S+)" }
  for _, pat in ipairs(patterns) do
    for v in text:gmatch(pat) do
      local rest = v:gsub("^[%a]+%s+", "")      -- "Bearer x" -> "x"
      if not rest:match("^%*%*%*") then shown[#shown + 1] = v end
    end
  end
  return shown
end

local function clean(what, text, secrets)
  for _, secret in ipairs(secrets or { API_KEY, the_sim().info.certs.client_key_password }) do
    for _, f in ipairs(forms(secret)) do
      t.truthy(not text:find(f, 1, true), what .. " holds a secret (" .. f:sub(1, 6) .. "...)")
    end
  end
  local shown = credentials_shown(text)
  t.eq(shown, {}, what .. " shows a credential")
end

T.test("the secret scan finds every form a leak would take", function()
  local pw = "p@ss w/rd:\"quoted\"-é"
  local basic = t.base64("svc_user:" .. pw)
  for _, leak in ipairs { pw, "p%40ss%20w%2Frd%3A%22quoted%22-%C3%A9", "p%40ss%20w%2frd%3a%22quoted%22-%c3%a9",
    json.encode({ pw }), basic, t.base64("x" .. pw .. "y"), t.base64("xy:" .. pw) } do
    local found = false
    for _, f in ipairs(forms(pw)) do found = found or leak:find(f, 1, true) ~= nil end
    t.truthy(found, "not found: " .. leak)
  end
  t.eq(credentials_shown("Authorization: Basic " .. basic), { "Basic " .. basic, basic })
  t.eq(#credentials_shown('{"authorization": "Bearer abc"}'), 2)
  t.eq(credentials_shown("Authorization: Bearer ***\nBasic ***"), {})
end)

T.test("the encrypted client key works with key_password from the environment", function()
  local file = job("  - {name: a, steps: [test.spaces]}")
  local code, out, err = cli.run({ "check", file }, { env = env() })
  t.eq(code, 0, out .. err)
  t.match(out, "source https://127%.0%.0%.1:%d+: QRS ")
  clean("check output", out .. err)
end)

T.test("no secret on the terminal, in the cache, the logs or the reports of a run with failures", function()
  local file, dir = job()
  local outputs = {}
  local code, out, err = cli.run({ "run", file, "--verbose" }, { env = env() })
  t.eq(code, 1, out .. err)  -- test.leaky puts the key into its errors
  t.match(out, "with key %*%*%*", "the leaked key was redacted")
  outputs[#outputs + 1] = out .. err
  for _, args in ipairs { { "status", file }, { "status", file, "--json" }, { "status", file, "--failed" },
    { "report", file }, { "plan", file }, { "undo", file, "--dry-run" }, { "steps", file } } do
    local _, o, e = cli.run(args, { env = env() })
    outputs[#outputs + 1] = o .. e
  end
  clean("command output", table.concat(outputs, "\n"))
  local files = 0
  local p = io.popen("find " .. cli.quote(dir .. "/project") .. " -type f")
  for path in p:lines() do
    clean(path, t.read(path))
    files = files + 1
  end
  p:close()
  t.truthy(files >= 4, "cache, log, reports were checked: " .. files)
  t.truthy(fs.exists(dir .. "/project/reports/report.html"))
end)

T.test("a wrong key passphrase or API key: a clear error, exit 3, and neither value printed", function()
  local file = job("  - {name: a, steps: [test.spaces]}")
  local wrong_pass = "WRONG-passphrase-c4n4ry"
  local code, out, err = cli.run({ "run", file }, { env = { QMIG_CANARY_API_KEY = API_KEY,
    QMIG_CANARY_KEY_PASS = wrong_pass } })
  t.truthy(code ~= 0, "exit " .. code)
  t.truthy(not err:find("stack traceback", 1, true), err)
  t.match(err, "source https://127%.0%.0%.1:%d+: ")
  t.truthy(not (out .. err):find(wrong_pass, 1, true), "the wrong passphrase was printed: " .. err)
  local wrong_key = "WRONG-apikey-c4n4ry-99"
  code, out, err = cli.run({ "run", file }, { env = { QMIG_CANARY_API_KEY = wrong_key,
    QMIG_CANARY_KEY_PASS = the_sim().info.certs.client_key_password } })
  t.eq(code, 3, out .. err)
  t.match(err, "401")
  t.truthy(not (out .. err):find(wrong_key, 1, true), "the wrong API key was printed: " .. err)
end)

T.test("the running process's command line holds no secret (its environment does, by design)", function()
  local file = job("  - {name: a, steps: [test.spaces]}")
  local dir = t.tmpdir()
  the_sim():reset()
  the_sim():faults { latency_ms = 300 }
  local pid, release = cli.spawn_held({ "run", file }, { env = env() })
  -- sample /proc while the run waits on the slow simulator
  os.execute(string.format("(sleep 0.8; cat /proc/%d/cmdline > %s/cmdline; cat /proc/%d/environ > %s/environ;"
    .. " readlink /proc/%d/exe > %s/exe) 2>/dev/null &", pid, dir, pid, dir, pid, dir))
  local status, _, err = release()
  the_sim():faults {}
  t.eq(status, 0, err)
  t.match(t.read(dir .. "/exe"), "qmig%-lua", "sampled the running qmig-lua, not the shell")
  local cmdline = t.read(dir .. "/cmdline")
  t.match(cmdline, "run%z", "the command line was read")
  clean("/proc/PID/cmdline", cmdline)
  -- the environment is where the job file asked the secrets to come from:
  -- it holds them legitimately (readable only by the same user)
  t.truthy(t.read(dir .. "/environ"):find(API_KEY, 1, true), "environ holds the env var, as expected")
end)

T.test("an NPrinting Windows (NTLM) password reaches no output, log, cache or report, right or wrong", function()
  local np = simlib.start { site = FIXTURES .. "/sites/nprinting.json" }
  local ok, err = pcall(function()
    local password = json.decode(t.read(FIXTURES .. "/sites/nprinting.json")).nprinting.users[1].password
    local dir = fs.realpath(t.tmpdir())
    local file = dir .. "/job.yaml"
    t.write(file, np:job_yaml { project_dir = dir .. "/project", extra = table.concat({
      "steps_path: [" .. FIXTURES .. "/steps]",
      "nprinting:",
      "  url: " .. np.info.nprinting_url,
      "  ntlm: {username: 'CORP\\npadmin', password: '${QMIG_NP_PASSWORD}'}",
      "  ca: " .. np.info.certs.ca,
      "  export: " .. np.info.nprinting_export,
      "plan: {nprinting: {apps: ['NP Sales', 'NP Ops']}}",
    }, "\n"), jobs = "  - {name: np, steps: [fixture22.apps, nprinting.filters, nprinting.reports]}" })
    local outputs = {}
    local code, out, e = cli.run({ "run", file, "--verbose" }, { env = { QMIG_NP_PASSWORD = password } })
    t.truthy(code == 0 or code == 1, out .. e)
    t.match(out, "nprinting%.filters%s+[^\n]*3 created")
    outputs[#outputs + 1] = out .. e
    for _, args in ipairs { { "status", file }, { "report", file }, { "plan", file }, { "undo", file, "--dry-run" } } do
      local _, o, e2 = cli.run(args, { env = { QMIG_NP_PASSWORD = password } })
      outputs[#outputs + 1] = o .. e2
    end
    local wrong = password .. "-WRONG"
    code, out, e = cli.run({ "run", file }, { env = { QMIG_NP_PASSWORD = wrong } })
    t.eq(code, 3, out .. e)
    t.match(out .. e, "NTLM authentication as CORP\\npadmin failed")
    outputs[#outputs + 1] = out .. e
    local secrets = { password, wrong }
    clean("command output", table.concat(outputs, "\n"), secrets)
    local files = 0
    local p = io.popen("find " .. cli.quote(dir .. "/project") .. " -type f")
    for path in p:lines() do
      clean(path, t.read(path), secrets)
      files = files + 1
    end
    p:close()
    t.truthy(files >= 4, "cache, log, reports were checked: " .. files)
  end)
  np:stop()
  if not ok then error(err, 0) end
end)

-- {====== TLS verification

local function start_tls_server()
  local dir = t.tmpdir()
  local certs = fs.dirname(the_sim().info.certs.ca)
  local port, pid = servers.launch("tests/support/badserver.py", "--tls --certs " .. certs, dir)
  return "https://127.0.0.1:" .. port, function() os.execute("kill " .. pid) end
end

T.test("TLS verification is on by default: an untrusted target certificate is refused before any request", function()
  local base, stop = start_tls_server()
  local file, dir = job("  - {name: a, steps: [test.spaces]}")
  local text = t.read(file):gsub("url: http://127%.0%.0%.1:%d+", "url: " .. base .. "/case/ok")
  t.write(file, text)
  local code, out, err = cli.run({ "run", file }, { env = env() })
  t.truthy(code ~= 0, "exit " .. code .. ": " .. out .. err)
  t.match(err, "target " .. base:gsub("%p", "%%%0") .. "/case/ok: ")
  t.match(err:lower(), "certificate")
  t.truthy(not err:find("stack traceback", 1, true), err)
  clean("TLS failure message", out .. err)
  -- nothing was recorded: no run was started in the cache
  local project = require "qmig.store.project"
  if fs.exists(dir .. "/project/qmig.db") then
    local proj = assert(project.open(dir .. "/project", { lock = false }))
    t.eq(#proj.cache:runs(), 0, "no run recorded")
    proj:close()
  end
  -- trusting the sim's CA makes the same server acceptable
  t.write(file, text:gsub("(url: https://127%.0%.0%.1:%d+/case/ok)", "%1\n  ca: " .. the_sim().info.certs.ca))
  code, out, err = cli.run({ "check", file }, { env = env() })
  t.eq(code, 0, out .. err)
  t.match(out, "authenticated as me@example%.com")
  -- insecure: true works too, and says so (logged as a warning)
  t.write(file, text:gsub("(url: https://127%.0%.0%.1:%d+/case/ok)", "%1\n  insecure: true"))
  code, out, err = cli.run({ "check", file }, { env = env() })
  stop()
  t.eq(code, 0, out .. err)
  t.match(err, "WARN%s+TLS verification is off for the target %(insecure: true%)")
end)

T.test("an untrusted QRS server certificate (rogue CA) is refused: exit 3, nothing written", function()
  local file, dir = job("  - {name: a, steps: [test.spaces]}")
  local text = t.read(file):gsub("ca: %S+", "ca: " .. the_sim().info.certs.rogue_ca, 1)
  t.write(file, text)
  the_sim():reset_counters()
  local code, out, err = cli.run({ "run", file }, { env = env() })
  t.eq(code, 3, out .. err)
  t.match(err, "source https://127%.0%.0%.1:%d+: ")
  t.eq(the_sim():counts().total_writes, 0)
  clean("QRS TLS failure", out .. err)
  t.truthy(not fs.exists(dir .. "/project/logs/run-1.jsonl"), "no run log")
end)
-- }======

return T
