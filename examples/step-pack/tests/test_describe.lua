-- The example step pack, as a user would use it: installed with LuaRocks
-- into a tree of its own, found by qmig-lua through package.path, run in
-- a job after spaces.create, undone by undo.  Run with the main runner:
--   ./qmig-lua tests/lua/runner.lua examples/step-pack/tests/test_describe.lua
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local simlib = require "sim"

local T = t.suite("step pack")
local sim

T.after_all(function() if sim then sim:stop() end end)

local function install()
  local tree = fs.realpath(t.tmpdir())
  local ok = os.execute("cd examples/step-pack && luarocks --lua-version 5.4 make --tree " .. tree ..
    " qmig-pack-describe-scm-1.rockspec >" .. tree .. "/install.log 2>&1")
  t.truthy(ok, "luarocks make: " .. t.read(tree .. "/install.log"))
  local p = io.popen("luarocks --lua-version 5.4 path --tree " .. tree .. " --lr-path")
  local lua_path = p:read("l")
  p:close()
  return tree, lua_path
end

T.test("installed into a tree, the pack's step is listed, runs after spaces.create and is undone", function()
  local tree, lua_path = install()
  t.truthy(fs.exists(tree .. "/share/lua/5.4/qmig/steps/spaces/describe.lua"))
  local env = { LUA_PATH = lua_path .. ";;" }
  sim = simlib.start { site = { qrs = { streams = { { name = "Finance" }, { name = "Sales" } } },
    cloud = simlib.ADMIN_CLOUD } }
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/job.yaml", sim:job_yaml { project_dir = dir .. "/p", extra = "plan: {spaces: {prefix: P_}}",
    jobs = "  - {name: containers, steps: [spaces.describe, spaces.create]}" })
  local code, out, err = cli.run({ "steps", dir .. "/job.yaml" }, { env = env })
  t.eq(code, 0, err)
  t.match(out, "spaces%.describe%s+Describe Migrated Spaces%s+" .. tree:gsub("%p", "%%%0") ..
    "/share/lua/5.4/qmig/steps/spaces/describe%.lua")
  code, out, err = cli.run({ "run", dir .. "/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "spaces%.create%s+3 created")  -- two streams and the staging space
  t.match(out, "spaces%.describe%s+2 updated")
  local described = {}
  for _, s in ipairs(sim:state().cloud.spaces) do described[s.name] = s.description end
  t.eq(described.P_Finance, "Migrated from the QSEoW stream 'Finance'")
  sim:reset_counters()
  code = cli.run({ "run", dir .. "/job.yaml" }, { env = env })
  t.eq(code, 0)
  t.eq(sim:counts().total_writes, 0)
  code = cli.run({ "undo", dir .. "/job.yaml" }, { env = env })
  t.eq(code, 0)
  for _, s in ipairs(sim:state().cloud.spaces) do t.truthy(s.name ~= "P_Finance", "undone") end
end)

return T
