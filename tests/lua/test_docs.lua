-- The generated reference pages match the code they describe.
local t = require "testing"
local cli = require "cli"

local T = t.suite("docs")

for _, page in ipairs { { "tools/jobdoc.lua", "docs/job-file.md" }, { "tools/catdoc.lua", "docs/catalogue.md" },
    { "tools/stepdoc.lua", "docs/steps.md" } } do
  T.test(page[2] .. " is current (regenerate: ./qmig-lua " .. page[1] .. " > " .. page[2] .. ")", function()
    local code, out, err = cli.run { page[1] }
    t.eq(code, 0, err)
    t.truthy(out == t.read(page[2]), page[2] .. " is out of date")
  end)
end

T.test("every ctx field a step gets is in the list docs/steps.md is made from, where it says", function()
  local engine = require "qmig.engine.step"
  local context = require "qmig.engine.context"
  local documented = {}
  for _, f in ipairs(context.FIELDS) do documented[f[1]:match("^[%w_]+")] = f[2] end
  local seen = { step = {}, item = {} }
  local function note(where, ctx) for k in pairs(ctx) do seen[where][k] = true end end
  local step = {
    name = "test.fields", object = "thing",
    items = function(ctx) note("step", ctx); return { { id = 1 } } end,
    key = function(x, ctx) note("step", ctx); return x.id end,
    fingerprint = function(x, ctx) note("step", ctx); return tostring(x.id) end,
    depends = function(_, ctx) note("step", ctx); return {} end,
    run = function(ctx) note("item", ctx); return { status = "created" } end,
  }
  local eng = engine.new { job = { plan = {} }, target = {}, dry_run = true }
  t.eq(eng:run_step(step).counts.created, 1)
  local missing, wrong = {}, {}
  for where, keys in pairs(seen) do
    for k in pairs(keys) do
      if not documented[k] then missing[#missing + 1] = "ctx." .. k
      elseif where == "step" and documented[k] ~= "step" then
        wrong[#wrong + 1] = "ctx." .. k .. " is in the step's ctx, documented as " .. documented[k]
      end
    end
  end
  table.sort(missing)
  t.eq(missing, {}, "fields of ctx not in lua/qmig/engine/context.lua FIELDS")
  t.eq(wrong, {})
  t.truthy(seen.step.memo and seen.item.memo and seen.item.fingerprint, "the contract's fields are there")
end)

return T
