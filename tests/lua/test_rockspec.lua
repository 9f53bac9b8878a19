-- rockspec/qmig-lua-scm-1.rockspec: LuaRocks cannot list files by pattern,
-- so this checks that every file under lua/ and steps/ is one of its
-- modules (and nothing else is), then installs it with `luarocks make`
-- into a temporary tree and uses the engine and the built-in steps from
-- that tree alone: plain lua5.4 loads a pure-Lua module, and qmig-lua with
-- a QMIG_HOME that holds nothing runs a migration with them.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local simlib = require "sim"

local T = t.suite("rockspec")
local ROCKSPEC = "rockspec/qmig-lua-scm-1.rockspec"
local sim

T.after_all(function() if sim then sim:stop() end end)

local function lines(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- The modules the rockspec must list: module name -> file.
local function expected_modules()
  local want = {}
  for _, f in ipairs(lines("find lua steps -type f | LC_ALL=C sort")) do
    local m = f:match("^lua/(.*)%.lua$")
    if m then
      want[m:gsub("/", ".")] = f
    else
      m = f:match("^steps/(.*)%.lua$")
      -- anything else (a README, a data file) would not be installed either
      want[m and ("qmig.steps." .. m:gsub("/", ".")) or ("(not a .lua module) " .. f)] = f
    end
  end
  return want
end

local function load_rockspec()
  local env = {}
  local chunk = assert(loadfile(ROCKSPEC, "t", env))
  chunk()
  return env
end

T.test("every file under lua/ and steps/ is a module of the rockspec, and only those", function()
  local spec = load_rockspec()
  t.eq(spec.package, "qmig-lua")
  t.eq(spec.build.type, "builtin")
  local have = spec.build.modules
  local want = expected_modules()
  local missing, stale, wrong = {}, {}, {}
  for m, f in pairs(want) do
    if have[m] == nil then missing[#missing + 1] = string.format('["%s"] = "%s",', m, f)
    elseif have[m] ~= f then wrong[#wrong + 1] = m .. " is " .. have[m] .. ", not " .. f end
  end
  for m, f in pairs(have) do
    if want[m] == nil then stale[#stale + 1] = m .. " = " .. tostring(f) end
  end
  table.sort(missing); table.sort(stale); table.sort(wrong)
  t.truthy(#missing == 0, "add to build.modules in " .. ROCKSPEC .. ":\n" .. table.concat(missing, "\n"))
  t.truthy(#stale == 0, "modules of " .. ROCKSPEC .. " with no file:\n" .. table.concat(stale, "\n"))
  t.truthy(#wrong == 0, "modules pointing at another file:\n" .. table.concat(wrong, "\n"))
  t.truthy(next(want) ~= nil, "found the files")
end)

T.test("installed with luarocks make into a tree, the engine and the built-in steps run from it", function()
  local tree = fs.realpath(t.tmpdir())
  local ok = os.execute("luarocks --lua-version 5.4 make --tree " .. tree .. " " .. ROCKSPEC ..
    " >" .. tree .. "/install.log 2>&1")
  t.truthy(ok, "luarocks make: " .. t.read(tree .. "/install.log"))
  local lr_path = lines("luarocks --lua-version 5.4 path --tree " .. tree .. " --lr-path")[1]
  local share = tree .. "/share/lua/5.4/"
  t.truthy(fs.exists(share .. "qmig/engine/step.lua"))
  t.truthy(fs.exists(share .. "qmig/steps/spaces/create.lua"))

  -- plain Lua, no qmig host: a pure-Lua module loads from the tree
  local probe = 'local c = require "qmig.job.catalogue"; ' ..
    'print(package.searchpath("qmig.job.catalogue", package.path)); print(c.by_name["spaces.create"].order)'
  local out = lines("LUA_PATH=" .. cli.quote(lr_path) .. " lua5.4 -e " .. cli.quote(probe))
  t.eq(out, { share .. "qmig/job/catalogue.lua", "130" })

  -- qmig-lua whose home holds no engine: everything comes from the tree
  local env = { QMIG_HOME = fs.realpath(t.tmpdir()), LUA_PATH = lr_path .. ";;" }
  local code, text, err = cli.run({ "-e", 'print(package.searchpath("qmig.engine.step", package.path))' },
    { env = env })
  t.eq(code, 0, err)
  t.eq(text, share .. "qmig/engine/step.lua\n")
  code, text, err = cli.run({ "steps" }, { env = env })
  t.eq(code, 0, err)
  local listed = 0
  for name, where in text:gmatch("%s*%d+%s+([%w_]+%.[%w_]+)%s+[^\n]-(%S+)\n") do
    if where ~= "yet)" then
      listed = listed + 1
      local cat, action = name:match("^(.-)%.(.*)$")
      t.eq(where, share .. "qmig/steps/" .. cat .. "/" .. action .. ".lua", name)
    end
  end
  t.truthy(listed >= 20, "built-in steps listed: " .. listed .. "\n" .. text)

  sim = simlib.start { site = { qrs = { streams = { { name = "Finance" }, { name = "Sales" } } },
    cloud = simlib.ADMIN_CLOUD } }
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/job.yaml", sim:job_yaml { project_dir = dir .. "/p",
    jobs = "  - {name: containers, steps: [spaces.create]}" })
  code, text, err = cli.run({ "run", dir .. "/job.yaml" }, { env = env })
  t.eq(code, 0, text .. err)
  t.match(text, "spaces%.create%s+%d+ created")
  local names = {}
  for _, s in ipairs(sim:state().cloud.spaces) do names[s.name] = true end
  t.truthy(names.Finance and names.Sales, "spaces created")
end)

return T
