-- `make install PREFIX=...` gives a working qmig-lua that finds its Lua
-- engine and built-in steps under PREFIX/share/qmig-lua, and the man page.
local t = require "testing"
local fs = require "qmig.fs"

local T = t.suite("install")

T.test("an installed qmig-lua finds its engine, steps and man page", function()
  local prefix = fs.realpath(t.tmpdir())
  local ok = os.execute("make -s install PREFIX=" .. prefix .. " >/dev/null 2>&1")
  t.truthy(ok, "make install")
  local probe = "print(qmig.home); print(package.searchpath(\"qmig.engine\", package.path))"
  local p = io.popen(prefix .. "/bin/qmig-lua -e '" .. probe .. "'")
  local out = p:read("a")
  p:close()
  t.eq(out, prefix .. "/share/qmig-lua\n" .. prefix .. "/share/qmig-lua/lua/qmig/engine.lua\n")
  t.truthy(fs.exists(prefix .. "/share/man/man1/qmig-lua.1"))
  p = io.popen("cd / && " .. prefix .. "/bin/qmig-lua help")
  t.match(p:read("a"), "usage: qmig%-lua COMMAND")
  p:close()
end)

return T
