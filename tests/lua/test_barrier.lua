-- The write barrier handed to the API clients (lua/qmig/clients/cloud.lua
-- and qrs.lua `opts.barrier`, lua/qmig/engine/job.lua): an item's marker is
-- on disk before the write it announces leaves.  The barrier itself (what
-- Cache:group sets) is tested in test_cache, the crash safety in test_soak.
local t = require "testing"
local cloud = require "qmig.clients.cloud"
local connect = require "qmig.clients.connect"
local qrs = require "qmig.clients.qrs"

local T = t.suite("barrier")

-- A client whose transport only records what it was asked to send, in order.
local function traced(c, log)
  c.client = { request = function(_, req)
    log[#log + 1] = req.method .. " " .. req.path .. (req.durable and " (covered)" or "")
    return { status = 200, headers = { ["content-type"] = "application/json" }, body = "{}" }
  end }
  return c
end

T.test("the clients call their barrier before each write, not before reads", function()
  local log = {}
  local function barrier() log[#log + 1] = "barrier"; return true end
  local target = traced(cloud.new({ url = "https://tenant.invalid", api_key = "k" },
    { retries = 0, rate_limits = false, barrier = barrier }), log)
  target:raw("GET", "spaces")
  target:raw("POST", "spaces", { json = { name = "x" } })
  target:raw("DELETE", "spaces/1")
  t.eq(log, { "GET /api/v1/spaces", "barrier", "POST /api/v1/spaces (covered)", "barrier",
    "DELETE /api/v1/spaces/1 (covered)" })
  log = {}
  local source = traced(qrs.new({ url = "https://qrs.invalid:4242", user = "INTERNAL\\sa_api" },
    { retries = 0, barrier = barrier }), log)
  source:raw("GET", "about")
  source:raw("POST", "app/1/export/2")
  t.eq(log, { "GET /qrs/about", "barrier", "POST /qrs/app/1/export/2 (covered)" })
end)

T.test("a barrier with nothing to wait for leaves the write uncovered; no barrier, the same", function()
  local log = {}
  local target = traced(cloud.new({ url = "https://tenant.invalid", api_key = "k" },
    { retries = 0, rate_limits = false, barrier = function() return false end }), log)
  target:raw("POST", "spaces", { json = {} })
  local plain = traced(cloud.new({ url = "https://tenant.invalid", api_key = "k" },
    { retries = 0, rate_limits = false }), log)
  plain:raw("POST", "spaces", { json = {} })
  t.eq(log, { "POST /api/v1/spaces", "POST /api/v1/spaces" })
end)

T.test("connect.open hands the engine's barrier to both clients; the engine's is the cache's", function()
  local seen = {}
  local real_qrs, real_cloud = qrs.new, cloud.new
  qrs.new = function(src, opts) seen.source = opts.barrier; return real_qrs(src, opts) end
  cloud.new = function(tgt, opts) seen.target = opts.barrier; return real_cloud(tgt, opts) end
  local function barrier() return true end
  local job = { source = { url = "https://127.0.0.1:9", user = "INTERNAL\\sa_api" },
    target = { url = "https://127.0.0.1:9", api_key = "k" }, options = { retries = 0, rate_limits = false } }
  local ok, err = pcall(connect.open, job, { barrier = barrier })
  qrs.new, cloud.new = real_qrs, real_cloud
  t.truthy(ok, tostring(err))
  t.eq(seen.source, barrier, "the QRS client's")
  t.eq(seen.target, barrier, "the Cloud client's")
  -- engine/job.lua passes qmig.store.durable.wait, and nothing else reaches for it
  local text = t.read("lua/qmig/engine/job.lua")
  t.match(text, "connect%.open%(job, { dry_run = opts%.dry_run, barrier = durable%.wait }%)")
  for _, dir in ipairs { "lua/qmig/clients", "lua/qmig/domain", "steps" } do
    local p = io.popen("grep -rl 'qmig.store.durable' " .. dir .. " 2>/dev/null")
    local found = p:read("a")
    p:close()
    t.eq(found, "", "no module under " .. dir .. " requires the barrier's module")
  end
end)

return T
