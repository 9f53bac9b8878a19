-- A step pack's own options under plan.<category> (lua/qmig/job/packopts.lua,
-- docs/steps.md "A pack's own options"): checked when the job file is
-- loaded like the built-in keys, and handed to the step as ctx.options.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"

local T = t.suite("packopts")
local sim

T.after_all(function() if sim then sim:stop() end end)

-- The line of the job file holding text.
local function line_of(file, text)
  local n = 0
  for l in t.read(file):gmatch("[^\n]*\n?") do
    n = n + 1
    if l:find(text, 1, true) then return n end
  end
end

-- acme.note: writes its options to the file plan.acme.out names, from items
-- (so nothing of the step but its options is needed to see them).
local STEP = [[
local S = require "qmig.job.schema"
return {
  name = "acme.note", title = "Note the options", order = 9000, object = "acme.note",
  options = S.record {
    out = S.path { required = true },
    greeting = S.string { default = "hello" },
    times = S.integer { min = 1, default = 2 },
  },
  items = function(ctx)
    local f = assert(io.open(ctx.options.out, "w"))
    f:write(string.rep(ctx.options.greeting, ctx.options.times, " "), "\n")
    f:close()
    return {}
  end,
  key = function(item) return item.id end,
  run = function() return { status = "skipped" } end,
}
]]

-- The same step declaring no options.
local BARE = STEP:gsub("  options = S%.record {.-\n  },\n", "")

local function setup(step, plan)
  sim = sim or require("sim").start { site = "examples/demo/site.json" }
  local dir = fs.realpath(t.tmpdir())
  fs.mkdirs(dir .. "/pack/acme")
  t.write(dir .. "/pack/acme/note.lua", step)
  local job = dir .. "/job.yaml"
  t.write(job, sim:job_yaml {
    project_dir = dir .. "/project",
    extra = "steps_path: [" .. dir .. "/pack]\nplan:\n  spaces: {prefix: ''}\n" .. plan,
    jobs = "  - {name: pack, steps: [acme.note]}",
  })
  sim:reset_counters()
  return dir, job
end

T.test("a pack's options reach its step, validated (defaults filled in)", function()
  local dir, job = setup(STEP, "  acme:\n    out: note.txt\n    greeting: hi\n")
  local code, out, err = cli.run { "run", job }
  t.eq(code, 0, out .. err)
  t.eq(t.read(dir .. "/note.txt"), "hi hi\n", "out relative to the job file, greeting given, times its default")
end)

T.test("a typo in a pack's option is exit 2 with file:line and did-you-mean, nothing contacted", function()
  local dir, job = setup(STEP, "  acme:\n    out: note.txt\n    greting: hi\n")
  local code, out, err = cli.run { "run", job }
  t.eq(code, 2, out .. err)
  local line = line_of(job, "greting")
  t.match(err, job:gsub("%p", "%%%0") .. ":" .. line
    .. ": unknown key 'plan%.acme%.greting' %(did you mean 'greeting'%?%)")
  t.eq(sim:counts().total, 0, "no request")
  t.truthy(not fs.exists(dir .. "/project"), "no project folder")
  t.truthy(not fs.exists(dir .. "/note.txt"), "the step did not run")
end)

T.test("a wrong type in a pack's option is exit 2 with file:line, nothing contacted", function()
  local dir, job = setup(STEP, "  acme:\n    out: note.txt\n    times: many\n")
  local code, out, err = cli.run { "plan", job }
  t.eq(code, 2, out .. err)
  local line = line_of(job, "times: many")
  t.match(err, job:gsub("%p", "%%%0") .. ":" .. line .. ": plan%.acme%.times: expected an integer, got string")
  t.eq(sim:counts().total, 0, "no request")
  t.truthy(not fs.exists(dir .. "/project"), "no project folder")
end)

T.test("a missing required pack option is exit 2", function()
  local _, job = setup(STEP, "")
  local code, out, err = cli.run { "run", job }
  t.eq(code, 2, out .. err)
  t.match(err, "plan%.acme: missing required key 'out'")
  t.eq(sim:counts().total, 0, "no request")
end)

T.test("plan.<pack> for a step declaring no options is a clear error", function()
  local _, job = setup(BARE, "  acme:\n    out: note.txt\n")
  t.truthy(not BARE:find("options = ", 1, true), "the bare step declares no options")
  local code, out, err = cli.run { "run", job }
  t.eq(code, 2, out .. err)
  t.match(err, "unknown key 'plan%.acme'; its steps acme%.note %(.-/pack/acme/note%.lua%) declare no options")
  t.eq(sim:counts().total, 0, "no request")
end)

T.test("an unknown plan section no step declares stays the error it was", function()
  local _, job = setup(STEP, "  acme: {out: note.txt}\n  spacse: {prefix: x}\n")
  local code, out, err = cli.run { "run", job }
  t.eq(code, 2, out .. err)
  t.match(err, "unknown key 'plan%.spacse' %(did you mean 'spaces'%?%)")
  -- and with another error in the file too (the steps are not resolved then)
  t.write(job, t.read(job):gsub("concurrency: %d+", "concurrency: 0"))
  code, out, err = cli.run { "run", job }
  t.eq(code, 2, out .. err)
  t.match(err, "unknown key 'plan%.spacse'")
  t.match(err, "options%.concurrency: must be at least 1")
  t.eq(sim:counts().total, 0, "no request")
end)

T.test("a step whose options are not a schema is refused with its file", function()
  local _, job = setup(STEP:gsub("options = S%.record {", "options = {"), "  acme: {out: note.txt}\n")
  local code, out, err = cli.run { "run", job }
  t.eq(code, 2, out .. err)
  t.match(err, "note%.lua: field 'options' must be a record schema")
end)

return T
