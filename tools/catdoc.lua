-- Prints the step catalogue (Markdown) from the built-in step modules
-- themselves: order, name, title, object kind and the module's own header
-- comment, so docs/catalogue.md cannot drift from the code.
-- Usage: ./qmig-lua tools/catdoc.lua > docs/catalogue.md
local catalogue = require "qmig.job.catalogue"
local steps = require "qmig.engine.loader"

local function header_comment(path)
  local lines = {}
  for line in io.lines(path) do
    local text = line:match("^%-%-%s?(.*)$")
    if not text then break end
    lines[#lines + 1] = text
  end
  return table.concat(lines, " "):gsub("%s+", " ")
end

print([[
# Step catalogue

Generated from the step modules by `tools/catdoc.lua`; a test checks it is
current.  Inside a job, steps run in this order whatever order they are
listed in; a step that overlaps the ones before it begins for an object (an
app, a document) as soon as they have ended for it, not for every object
(`after = "object"`, docs/steps.md).  A step file of the same name in a job's
`steps_path` replaces the built-in one (`docs/steps.md`).
]])
for _, entry in ipairs(catalogue.list) do
  local mod, path = steps.resolve(entry.name, {})
  assert(mod, path)
  local rel = path:gsub("^.*/steps/", "steps/")
  print(string.format("## %d `%s` — %s\n\nObject kind `%s`; `%s`.%s%s\n\n%s\n", entry.order, entry.name, entry.title,
    mod.object, rel, entry.addition and " A qmig-lua addition: Qlik's tool has no such step." or "",
    mod.after == "object" and " Overlaps the steps before it, object by object." or "",
    header_comment(path)))
end
