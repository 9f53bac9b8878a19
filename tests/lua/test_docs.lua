-- The generated reference pages match the code they describe.
local t = require "testing"
local cli = require "cli"

local T = t.suite("docs")

for _, page in ipairs { { "tools/jobdoc.lua", "docs/job-file.md" }, { "tools/catdoc.lua", "docs/catalogue.md" } } do
  T.test(page[2] .. " is current (regenerate: ./qmig-lua " .. page[1] .. " > " .. page[2] .. ")", function()
    local code, out, err = cli.run { page[1] }
    t.eq(code, 0, err)
    t.truthy(out == t.read(page[2]), page[2] .. " is out of date")
  end)
end

return T
