-- OAuth machine-to-machine for the target (target.oauth): the token from
-- /oauth/token, shared, renewed before it expires and once after a 401;
-- the demo end to end with it; the token and the client secret never in a
-- file or an output; job-file mistakes refused with exit 2.
local t = require "testing"
local cli = require "cli"
local clock = require "qmig.clients.clock"
local cloud = require "qmig.clients.cloud"
local fs = require "qmig.fs"
local json = require "qmig.json"
local oauth = require "qmig.clients.oauth"
local simlib = require "sim"
local demo_outcome = require "demo_outcome"
local demo_share = require "demo_share"

local T = t.suite("oauth")
local SECRET = "m2m-canary-secret-7f3e"
local sim

-- The demo site with two M2M clients: one whose tokens live long, one
-- whose tokens live 3 s and whose replies carry only expires_at.
local function the_sim()
  if sim then return sim end
  local site = json.decode(t.read("examples/demo/site.json"))
  site.cloud.oauth_clients = {
    { client_id = "qmig-m2m", client_secret = SECRET, user = "admin@acme.com" },
    { client_id = "qmig-short", client_secret = SECRET, user = "admin@acme.com", lifetime_seconds = 3,
      send_expires_in = false },
  }
  sim = simlib.start { site = site }
  return sim
end
T.after_all(function() if sim then sim:stop() end end)

-- The demo job with target.oauth instead of api_key, and its environment.
local function demo_job(client, secret_line)
  local s = the_sim()
  local dir = fs.realpath(t.tmpdir())
  local text = t.read("examples/demo/job.yaml")
  local with_oauth, n = text:gsub("  api_key: %${QMIG_DEMO_API_KEY}\n", "  oauth:\n    client_id: " .. client
    .. "\n    " .. (secret_line or "client_secret: ${QMIG_TEST_M2M_SECRET}") .. "\n")
  t.eq(n, 1, "the demo job names target.api_key once")
  -- the demo names its QlikView share relative to its own folder
  with_oauth = demo_share.absolute(with_oauth)
  t.write(dir .. "/job.yaml", with_oauth)
  t.write(dir .. "/secrets.yaml", "Finance DB: {username: u, password: p1}\n'Sales DB (CORP_jdoe)': {username: s, "
    .. "password: p2}\n")
  fs.chmod(dir .. "/secrets.yaml", 384)
  local env = { QMIG_DEMO_QRS_URL = s.info.qrs_url, QMIG_DEMO_CLOUD_URL = s.info.cloud_url,
    QMIG_DEMO_CERTS = fs.dirname(s.info.certs.ca), QMIG_DEMO_PROJECT = dir .. "/project", QMIG_DEMO_DIR = dir,
    QMIG_TEST_M2M_SECRET = SECRET, QMIG_DEMO_API_KEY = "not-used" }
  return dir .. "/job.yaml", env, dir
end

-- Every file under dir, as {path = content}.
local function files_under(dir, out)
  out = out or {}
  for _, name in ipairs(fs.dir(dir) or {}) do
    local path = dir .. "/" .. name
    local st = fs.stat(path)
    if st and st.type == "directory" then files_under(path, out)
    elseif st then out[path] = t.read(path) end
  end
  return out
end

local function assert_no_secret(texts)
  for where, text in pairs(texts) do
    t.eq(text:find("qsim-at-", 1, true), nil, "an access token in " .. where)
    t.eq(text:find(SECRET, 1, true), nil, "the client secret in " .. where)
  end
end

T.test("lifetime: expires_in, else expires_at against the reply's Date, else 6 h", function()
  t.eq(oauth.lifetime({ expires_in = 3600, expires_at = "2030-01-01T00:00:00Z" }, {}), 3600)
  -- the tenant's clock, not this machine's: an hour after its Date header
  t.eq(oauth.lifetime({ expires_at = "2026-12-03T11:00:00.000Z" }, { date = "Thu, 03 Dec 2026 10:00:00 GMT" }), 3600)
  t.eq(oauth.lifetime({ expires_at = "2026-12-03T12:00:00+01:00" }, { date = "Thu, 03 Dec 2026 10:00:00 GMT" }), 3600)
  t.eq(oauth.lifetime({ expires_at = "2026-12-03T09:00:00Z" }, { date = "Thu, 03 Dec 2026 10:00:00 GMT" }), 0)
  t.eq(oauth.lifetime({}, {}), 6 * 3600)
  t.eq(clock.parse_iso("not a time"), nil)
  t.eq(clock.parse_iso("1970-01-02T00:00:00Z"), 86400)
  t.eq(clock.parse_iso("1970-01-02T01:00:00.5+01:00"), 86400.5)
end)

T.test("one token for every request; a 401 renews it once; wrong credentials fail as authentication", function()
  local s = the_sim()
  local function client(id, secret)
    return cloud.new({ url = s.info.cloud_url, oauth = { client_id = id, client_secret = secret,
      scope = "admin_classic" } }, { rate_limits = false, retries = 0 })
  end
  local c = client("qmig-m2m", SECRET)
  local issued = s:state().cloud.oauth.tokens_issued
  for _ = 1, 5 do t.eq(c:get("users/me").email, "admin@acme.com") end
  t.eq(s:state().cloud.oauth.tokens_issued, issued + 1)
  -- revoked (expired) behind its back: the next request renews and goes through
  s:call("POST", "oauth/expire", {})
  t.eq(c:get("users/me").email, "admin@acme.com")
  t.eq(s:state().cloud.oauth.tokens_issued, issued + 2)
  t.match(c:auth_description(), "^OAuth client qmig%-m2m %(scope admin_classic%), token valid for 3%d%d min$")
  local bad = client("qmig-m2m", "wrong")
  local ok, err = pcall(bad.get, bad, "users/me")
  t.eq(ok, false)
  t.eq(err.status, 401)
  t.truthy(err.auth)
  t.match(tostring(err), "target%.oauth: POST .*/oauth/token answered HTTP 401, the client id or secret is wrong")
end)

T.test("the demo runs end to end with OAuth; tokens renewed as they expire; none in any file or output", function()
  local s = the_sim()
  s:reset()
  local file, env, dir = demo_job("qmig-short")
  local issued = s:state().cloud.oauth.tokens_issued
  local code, out, err = cli.run({ "run", file }, { env = env })
  demo_outcome.ran(code, out, err)   -- validated over the engine with the OAuth token too
  t.match(out, "apps%.import%s+12 created")
  t.match(out, "apps%.schedules%s+%d+ created")
  -- 3 s tokens (expires_at only): renewed during the run, not once per request
  local used = s:state().cloud.oauth.tokens_issued - issued
  t.truthy(used >= 2, "tokens fetched: " .. used)
  t.truthy(used < s:counts().total / 10, "tokens fetched: " .. used .. " for " .. s:counts().total .. " requests")
  s:reset_counters()
  local c2, o2, e2 = cli.run({ "run", file }, { env = env })
  demo_outcome.ran(c2, o2, e2)
  -- nothing changed in the tenant: the only POST is for a token
  local writes = s:counts().writes
  t.eq(s:counts().total_writes, writes["POST /oauth/token"] or 0, json.encode(writes))
  t.truthy((writes["POST /oauth/token"] or 0) >= 1)
  local c3, o3, e3 = cli.run({ "check", file }, { env = env })
  t.eq(c3, 0, o3 .. e3)
  t.match(o3, "authenticated as admin@acme%.com with OAuth client qmig%-short %(scope admin_classic%), token valid for")
  t.match(o3, "ok   the OAuth client acts as admin@acme%.com")
  local texts = files_under(dir .. "/project")
  for k, v in pairs { out = out, err = err, out2 = o2, err2 = e2, out3 = o3, err3 = e3 } do texts[k] = v end
  assert_no_secret(texts)
end)

T.test("the client secret from a 0600 file; job-file mistakes exit 2 before anything is contacted", function()
  local s = the_sim()
  local _, env, dir = demo_job("qmig-m2m")
  t.write(dir .. "/m2m.secret", SECRET .. "\n")
  fs.chmod(dir .. "/m2m.secret", 384)
  local file = demo_job("qmig-m2m", "client_secret_file: " .. dir .. "/m2m.secret")
  local code, out, err = cli.run({ "check", file }, { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "with OAuth client qmig%-m2m")
  assert_no_secret { out = out, err = err }
  s:reset_counters()
  fs.chmod(dir .. "/m2m.secret", 420)
  code, out, err = cli.run({ "check", file }, { env = env })
  t.eq(code, 2, out .. err)
  t.match(err, "target%.oauth%.client_secret_file %- '.*m2m%.secret' is readable by group or others; chmod 600 it")
  local both = demo_job("qmig-m2m", "client_secret: x\n  api_key: y")
  code, out, err = cli.run({ "check", both }, { env = env })
  t.eq(code, 2, out .. err)
  t.match(err, "job%.yaml:%d+: target: give exactly one of api_key or oauth")
  fs.chmod(dir .. "/m2m.secret", 384)
  local two = demo_job("qmig-m2m", "client_secret: x\n    client_secret_file: " .. dir .. "/m2m.secret")
  code, out, err = cli.run({ "check", two }, { env = env })
  t.eq(code, 2, out .. err)
  t.match(err, "target%.oauth: give exactly one of 'client_secret' or 'client_secret_file'")
  t.eq(s:counts().total, 0)
end)

T.test("a client the tenant refuses: exit 3, a message that names target.oauth, no project folder", function()
  local _, env = demo_job("qmig-m2m")
  local file, _, dir = demo_job("qmig-m2m", "client_secret: wrong-secret")
  local code, out, err = cli.run({ "run", file }, { env = env })
  t.eq(code, 3, out .. err)
  t.match(err, "target%.oauth: POST .*/oauth/token answered HTTP 401, the client id or secret is wrong")
  t.eq(fs.exists(dir .. "/project"), false)
end)

return T
