-- `make install PREFIX=...` gives a working qmig-lua that finds its Lua
-- engine and built-in steps under PREFIX/share/qmig-lua, and the man page.
local t = require "testing"
local fs = require "qmig.fs"
local demo_share = require "demo_share"

local T = t.suite("install")

T.test("an installed qmig-lua finds its engine, steps and man page", function()
  local prefix = fs.realpath(t.tmpdir())
  local ok = os.execute("make -s install PREFIX=" .. prefix .. " >/dev/null 2>&1")
  t.truthy(ok, "make install")
  local probe = "print(qmig.home); print(package.searchpath(\"qmig.engine.step\", package.path))"
  local p = io.popen(prefix .. "/bin/qmig-lua -e '" .. probe .. "'")
  local out = p:read("a")
  p:close()
  t.eq(out, prefix .. "/share/qmig-lua\n" .. prefix .. "/share/qmig-lua/lua/qmig/engine/step.lua\n")
  t.truthy(fs.exists(prefix .. "/share/man/man1/qmig-lua.1"))
  p = io.popen("cd / && " .. prefix .. "/bin/qmig-lua help")
  t.match(p:read("a"), "usage: qmig%-lua COMMAND")
  p:close()
  -- a built-in step is a module a pack can require, installed or not
  for _, bin in ipairs { prefix .. "/bin/qmig-lua", "./qmig-lua" } do
    p = io.popen("cd / && " .. fs.realpath(bin) .. " -e 'local s = require \"qmig.steps.spaces.create\"; "
      .. "print(s.name, type(s.run))' 2>&1")
    t.eq(p:read("a"), "spaces.create\tfunction\n", bin)
    p:close()
  end
end)

-- A pack wraps a built-in step: its spaces.create (found first, in the
-- job's steps_path) requires the built-in and adds to what it does.
T.test("a step that wraps the built-in spaces.create runs the demo's spaces", function()
  local cli = require "cli"
  local simlib = require "sim"
  local sim = simlib.start { site = "examples/demo/site.json" }
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/secrets.yaml", "Finance DB: {username: u, password: pw}\n")
  fs.chmod(dir .. "/secrets.yaml", 384)
  fs.mkdir(dir .. "/pack")
  fs.mkdir(dir .. "/pack/spaces")
  t.write(dir .. "/pack/spaces/create.lua", [[
local builtin = require "qmig.steps.spaces.create"
local wrapped = {}
for k, v in pairs(builtin) do wrapped[k] = v end
function wrapped.run(ctx, item)
  local r = builtin.run(ctx, item)
  r.reason = "wrapped by the pack" .. (r.reason and ("; " .. r.reason) or "")
  return r
end
return wrapped
]])
  t.write(dir .. "/job.yaml", demo_share.absolute((t.read("examples/demo/job.yaml"):gsub("\nplan:\n",
    "\nsteps_path: [" .. dir .. "/pack]\nplan:\n", 1))))
  local env = { QMIG_DEMO_QRS_URL = sim.info.qrs_url, QMIG_DEMO_CLOUD_URL = sim.info.cloud_url,
    QMIG_DEMO_API_KEY = sim.info.api_key, QMIG_DEMO_CERTS = fs.dirname(sim.info.certs.ca),
    QMIG_DEMO_PROJECT = dir .. "/project", QMIG_DEMO_DIR = dir }
  local code, out, err = cli.run({ "steps", dir .. "/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "spaces%.create[^\n]*" .. (dir .. "/pack/spaces/create.lua"):gsub("%p", "%%%0"))
  code, out, err = cli.run({ "run", dir .. "/job.yaml", "--job", "containers", "--verbose" }, { env = env })
  sim:stop()
  t.eq(code, 0, out .. err)
  t.match(out, "spaces%.create%s+5 created")
  t.match(out, "spaces%.create 'Finance' %([%x-]+%): created %(wrapped by the pack%)")
end)

return T
