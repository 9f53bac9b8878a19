-- The layout of lua/qmig (README.md, "Layout") and tools/rename-modules.sh,
-- which moves code written against the earlier module names to it.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"

local T = t.suite("layout")
local MAP = "tools/module-moves.txt"

local function moves()
  local out = {}
  for line in io.lines(MAP) do
    if not line:match("^%s*#") and line:match("%S") then
      local old, new = line:match("^(%S+)%s+(%S+)%s*$")
      assert(old, MAP .. ": not an 'old new' pair: " .. line)
      out[#out + 1] = { old = old, new = new, folder = old:sub(-2) == ".*" }
    end
  end
  return out
end

local function path_of(module) return "lua/" .. module:gsub("%.", "/") end

local function is_dir(path)
  local st = fs.stat(path)
  return st ~= nil and st.type == "directory"
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and 0 or code, out
end

T.test("every new module of the map is a file, no old one is", function()
  for _, m in ipairs(moves()) do
    if m.folder then
      t.truthy(is_dir(path_of(m.new:sub(1, -3))), m.new)
      t.truthy(not is_dir(path_of(m.old:sub(1, -3))), m.old .. " is still a folder")
    else
      t.truthy(fs.exists(path_of(m.new) .. ".lua"), m.new)
      t.truthy(not fs.exists(path_of(m.old) .. ".lua"), m.old .. " is still a file")
    end
  end
end)

T.test("no Lua file of the tree requires a module by its old name", function()
  local old = {}
  for _, m in ipairs(moves()) do old[#old + 1] = m end
  local code, files = sh("git ls-files '*.lua'")
  t.eq(code, 0, files)
  local stale = {}
  for file in files:gmatch("[^\n]+") do
    -- this file's fixtures are written in the old names on purpose
    if fs.exists(file) and file ~= "tests/lua/test_layout.lua" then
      local text = t.read(file)
      for name in text:gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do
        for _, m in ipairs(old) do
          local hit = m.folder and name:sub(1, #m.old - 1) == m.old:sub(1, -2) or name == m.old
          if hit then stale[#stale + 1] = file .. ": " .. name end
        end
      end
    end
  end
  t.eq(stale, {})
end)

T.test("tools/rename-modules.sh rewrites requires, strings, paths; --prose the text; twice is once", function()
  local dir = t.tmpdir()
  local code_file = dir .. "/step.lua"
  t.write(code_file, table.concat({
    'local cloud = require "qmig.cloud"',
    "local log = require('qmig.log')",
    'local v = require("qmig.qlikview.some_new_file")',
    'package.loaded["qmig.engine"] = nil',
    'local s = require "qmig.steps.spaces.create"',
    'local f = "lua/qmig/identity/users.lua"',
    "-- qmig.cache keeps it (see lua/qmig/apps2/script.lua)",
    [[local probe = "print(package.searchpath(\"qmig.engine\", package.path))"]],
    "",
  }, "\n"))
  local code, out = sh("tools/rename-modules.sh " .. cli.quote(code_file))
  t.eq(code, 0, out)
  local want = table.concat({
    'local cloud = require "qmig.clients.cloud"',
    "local log = require('qmig.ui.log')",
    'local v = require("qmig.domain.qlikview.some_new_file")',
    'package.loaded["qmig.engine.step"] = nil',
    'local s = require "qmig.steps.spaces.create"',
    'local f = "lua/qmig/domain/users.lua"',
    "-- qmig.cache keeps it (see lua/qmig/domain/scripts.lua)",
    [[local probe = "print(package.searchpath(\"qmig.engine.step\", package.path))"]],
    "",
  }, "\n")
  t.eq(t.read(code_file), want)
  code, out = sh("tools/rename-modules.sh " .. cli.quote(code_file))
  t.eq(code, 0, out)
  t.eq(t.read(code_file), want, "a second run changes nothing")

  local doc = dir .. "/doc.md"
  t.write(doc, "`qmig.steps` loads qmig.steps.<category>.<action>; qmig.job, not qmig-job or qmig.jobs.\n")
  code, out = sh("tools/rename-modules.sh --prose " .. cli.quote(doc))
  t.eq(code, 0, out)
  t.eq(t.read(doc),
    "`qmig.engine.loader` loads qmig.steps.<category>.<action>; qmig.job.file, not qmig-job or qmig.jobs.\n")

  code, out = sh("tools/rename-modules.sh " .. cli.quote(dir .. "/missing.lua"))
  t.eq(code, 2, out)
  t.match(out, "missing%.lua: not a file")
end)

T.test("tools/rename-modules.sh --move puts an added file of an old folder where the folder went", function()
  local dir = t.tmpdir()
  local map = fs.realpath(MAP)
  local tool = fs.realpath("tools/rename-modules.sh")
  local code, out = sh("cd " .. cli.quote(dir) .. " && git init -q . && mkdir -p lua/qmig/validation"
    .. " && printf 'local c = require \"qmig.validation.compare\"\\nreturn {}\\n' > lua/qmig/validation/charts.lua"
    .. " && git add . && QMIG_MODULE_MOVES=" .. cli.quote(map) .. " " .. cli.quote(tool)
    .. " --move lua/qmig/validation/charts.lua")
  t.eq(code, 0, out)
  t.match(out, "moved lua/qmig/validation/charts.lua %-> lua/qmig/domain/validation/charts.lua")
  t.eq(t.read(dir .. "/lua/qmig/domain/validation/charts.lua"),
    'local c = require "qmig.domain.validation.compare"\nreturn {}\n')
end)

return T
