-- Starts qliksim for a test suite and talks to its control endpoint.
local t = require "testing"
local http = require "qmig.http"
local json = require "qmig.json"

local M = {}
local Sim = {}

-- The smallest Cloud half a test site needs: one admin and its API key.
M.ADMIN_CLOUD = {
  api_keys = { { key = "test-key", user = "admin@acme.com" } },
  users = { { subject = "auth0|admin", email = "admin@acme.com", name = "Admin", status = "active" } },
}
Sim.__index = Sim

-- M.start{site = path or table, faults = table} -> sim
function M.start(opts)
  opts = opts or {}
  local dir = t.tmpdir()
  local site = opts.site or "examples/demo/site.json"
  if type(site) == "table" then
    t.write(dir .. "/site.json", json.encode(site))
    site = dir .. "/site.json"
  end
  -- absolute, because job files name the certificates
  local certs = require("qmig.fs").realpath(os.getenv("QMIG_TEST_TMP") or "tests/tmp") .. "/sim-certs"
  local info_file = dir .. "/info.json"
  local cmd = string.format(
    "python3 tests/qliksim/qliksim.py --site %s --certs %s --info-file %s >%s/log 2>&1 & echo $! >%s/pid",
    site, certs, info_file, dir, dir)
  assert(os.execute(cmd))
  local deadline, f = qmig.monotonic() + 60
  repeat
    qmig.sleep(0.05)
    f = io.open(info_file)
  until f or qmig.monotonic() > deadline
  assert(f, "qliksim did not start: " .. t.read(dir .. "/log"))
  local info = json.decode(f:read("a"))
  f:close()
  local self = setmetatable({ info = info, dir = dir, pid = t.read(dir .. "/pid"):match("%d+") }, Sim)
  self.control = http.client { base_url = info.cloud_url }
  if opts.faults then self:faults(opts.faults) end
  return self
end

function Sim:call(method, path, body)
  local resp = assert(self.control:request { method = method, path = "/_sim/" .. path, json = body })
  assert(resp.status == 200, "qliksim control " .. path .. ": " .. resp.status .. " " .. resp.body)
  return json.decode(resp.body)
end

function Sim:state() return self:call("GET", "state") end
function Sim:counts() return self:call("GET", "counts") end
function Sim:reset_counters() return self:call("POST", "reset-counters", {}) end
function Sim:faults(f) return self:call("POST", "faults", f) end
function Sim:reset() return self:call("POST", "reset", {}) end
function Sim:stop() os.execute("kill " .. self.pid .. " 2>/dev/null") end

-- The catalogue lag test jobs wait out (options.catalogue_lag): the
-- simulator lists new objects at once unless its catalogue_lag_ms fault
-- says otherwise, so a short one keeps the waiting path in every test
-- without the product's default of 20 s per item in doubt.
M.CATALOGUE_LAG = 0.3

-- A job file (YAML text) pointing at this simulator.
function Sim:job_yaml(o)
  local c = self.info.certs
  return string.format([[
version: 1
project: {name: %s, dir: %s}
source:
  type: qrs
  url: %s
  cert: %s
  key: %s
  ca: %s
  user: 'INTERNAL\sa_api'
target:
  type: cloud
  url: %s
  api_key: %s
%s
options: {concurrency: %d, catalogue_lag: %s}
jobs:
%s
]], o.project or "proj", o.project_dir, self.info.qrs_url, c.client_cert, c.client_key, c.ca, self.info.cloud_url,
    o.api_key or self.info.api_key, o.extra or "", o.concurrency or 4, o.catalogue_lag or M.CATALOGUE_LAG, o.jobs)
end

return M
