-- The step contract's produces / consumes (lua/qmig/engine/contract.lua):
-- what each built-in step declares, and the check of an override against
-- the built-in step it replaces, before anything is contacted.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"

local T = t.suite("contract")
local sim  -- for its certificates only: the Cloud URL of these jobs is unreachable

T.after_all(function() if sim then sim:stop() end end)

-- An override of spaces.create as docs/steps.md's example shows one: it
-- makes the spaces and records their names, nothing else (no data.type,
-- no "@staging" space, no produces).
local OVERRIDE = [[
local retrieve = require "qmig.clients.retrieve"
return {
  name = "spaces.create", title = "Create Spaces", order = 130,
  object = "space",
  requires = {},
  items = function(ctx) return ctx.source:full("stream") end,
  key = function(stream) return stream.id end,
  fingerprint = function(stream) return stream.name end,
  run = function(ctx, stream)
    local found = retrieve.space(ctx.target, stream.name)
    if found then return { status = "adopted", target_id = found.id, data = { name = stream.name } } end
    local s = ctx.target:post("spaces", { name = stream.name, type = "shared" })
    ctx.undo { method = "DELETE", path = "spaces/" .. s.id }
    return { status = "created", target_id = s.id, data = { name = stream.name } }
  end,
}
]]

-- A job file of its own (the demo's steps, so the demo's readers of
-- spaces.create's records are there) with steps_path = {dir/pack}, its
-- project in dir, the QRS of the simulator and a Cloud URL nothing answers.
local function job_with_pack(dir, override)
  sim = sim or require("sim").start { site = "examples/demo/site.json" }
  fs.mkdirs(dir .. "/pack/spaces")
  t.write(dir .. "/pack/spaces/create.lua", override)
  local certs = fs.dirname(sim.info.certs.ca)
  t.write(dir .. "/job.yaml", table.concat({
    "version: 1",
    "project: {name: contract, dir: '" .. dir .. "/project'}",
    "source:",
    "  type: qrs",
    "  url: " .. sim.info.qrs_url,
    "  cert: " .. certs .. "/client.pem",
    "  key: " .. certs .. "/client_key.pem",
    "  ca: " .. certs .. "/ca.pem",
    "  user: 'INTERNAL\\sa_api'",
    "target:",
    "  type: cloud",
    "  url: https://127.0.0.1:9",
    "  api_key: ${CONTRACT_API_KEY}",
    "steps_path: [" .. dir .. "/pack]",
    "jobs:",
    "  - {name: containers, steps: [spaces.create, spaces.assign, spaces.owners]}",
    "  - {name: connections, steps: [dataconnections.migrate]}",
    "  - {name: apps, steps: [apps.export, apps.import, apps.publish, apps.shares]}",
    "",
  }, "\n"))
  return dir .. "/job.yaml", { CONTRACT_API_KEY = sim.info.api_key }
end

T.test("an override of spaces.create without data.type is warned about before anything is contacted", function()
  local dir = fs.realpath(t.tmpdir())
  local job, env = job_with_pack(dir, OVERRIDE)
  -- nothing listens on port 9: the run stops at its first contact, after
  -- the warning (a warning given later would not be in stderr at all)
  local code, out, err = cli.run({ "run", job, "--job", "containers" }, { env = env })
  t.truthy(code ~= 0, "the run cannot reach the sites")
  local warn_at = err:find("warning: spaces.create (" .. dir .. "/pack/spaces/create.lua) replaces the built-in step",
    1, true)
  t.truthy(warn_at, "the warning names the step and its file:\n" .. out .. err)
  t.match(err, "does not declare what its \"space\" records carry for the steps after it: ")
  t.match(err, "data%.type %(read by apps%.import, ")
  t.match(err, "the key \"@staging\" %(read by apps%.import")
  t.match(err, "declare produces = {data = {\"name\", \"type\"}, keys = {\"@staging\"}}")
  local contact_at = err:find("unreachable", 1, true) or err:find("127.0.0.1:9", warn_at + 1, true)
  t.truthy(contact_at and contact_at > warn_at, "the warning comes before the first contact:\n" .. err)
  t.truthy(not fs.exists(dir .. "/project"), "nothing was made")
end)

T.test("an override that declares and records what later steps read gets no warning; nor does a wrapper", function()
  local dir = fs.realpath(t.tmpdir())
  local declared = OVERRIDE:gsub('object = "space",',
    'object = "space", produces = { data = { "name", "type" }, keys = { "@staging" } },')
  local job, env = job_with_pack(dir, declared)
  local _, out, err = cli.run({ "run", job, "--job", "containers" }, { env = env })
  t.truthy(not err:find("replaces the built-in step", 1, true), out .. err)
  local wrapper = [[
local builtin = require "qmig.steps.spaces.create"
local wrapped = {}
for k, v in pairs(builtin) do wrapped[k] = v end
return wrapped
]]
  dir = fs.realpath(t.tmpdir())
  job, env = job_with_pack(dir, wrapper)
  _, out, err = cli.run({ "run", job, "--job", "containers" }, { env = env })
  t.truthy(not err:find("replaces the built-in step", 1, true), out .. err)
end)

T.test("qmig-lua check says it too", function()
  local dir = fs.realpath(t.tmpdir())
  local job, env = job_with_pack(dir, OVERRIDE)
  local _, out, err = cli.run({ "check", job }, { env = env })
  t.match(err, "warning: spaces%.create %(.-%) replaces the built%-in step but does not declare")
  t.truthy(not fs.exists(dir .. "/project"), out)
end)

T.test("every built-in step declares produces and consumes; what one reads, another produces", function()
  local catalogue = require "qmig.job.catalogue"
  local loader = require "qmig.engine.loader"
  local by_kind, mods = {}, {}
  for _, e in ipairs(catalogue.list) do
    local mod, path = loader.resolve(e.name, {})
    t.truthy(mod, path)
    mods[#mods + 1] = mod
    -- the QlikView variants are the apps.* steps with the QlikView kinds
    -- (lua/qmig/domain/qlikview/variant.lua): they are not checked here
    if not e.name:match("^qvapps%.") and e.name ~= "post.reset_qv_descriptions" then
      t.truthy(type(mod.produces) == "table", e.name .. " declares produces")
      t.truthy(type(mod.consumes) == "table", e.name .. " declares consumes")
    end
    by_kind[mod.object] = mod
  end
  local wrong = {}
  for _, mod in ipairs(mods) do
    if not mod.name:match("^qvapps%.") and mod.name ~= "post.reset_qv_descriptions" then
      for _, c in ipairs(mod.consumes or {}) do
        local producer = by_kind[c.kind]
        if not producer then
          wrong[#wrong + 1] = mod.name .. " reads kind " .. c.kind .. ", which no step records"
        else
          local have, keys = {}, {}
          for _, f in ipairs(producer.produces and producer.produces.data or {}) do have[f] = true end
          for _, k in ipairs(producer.produces and producer.produces.keys or {}) do keys[k] = true end
          for _, f in ipairs(c.data or {}) do
            if not have[f] then wrong[#wrong + 1] = mod.name .. " reads " .. c.kind .. " data." .. f
              .. ", which " .. producer.name .. " does not declare" end
          end
          for _, k in ipairs(c.keys or {}) do
            if not keys[k] then wrong[#wrong + 1] = mod.name .. " reads key " .. k .. " of " .. c.kind end
          end
        end
      end
    end
  end
  t.eq(wrong, {})
end)

T.test("a malformed produces or consumes is refused with the file", function()
  local dir = fs.realpath(t.tmpdir())
  local bad = OVERRIDE:gsub('object = "space",', 'object = "space", consumes = { { data = { "type" } } },')
  local job, env = job_with_pack(dir, bad)
  local code, out, err = cli.run({ "run", job, "--job", "containers" }, { env = env })
  t.eq(code, 2, out .. err)
  t.match(err, "pack/spaces/create%.lua: field 'consumes%[1%]' must be {kind = <cache kind>, data = {%.%.%.}}")
end)

T.test("the host's internal hooks are not in the libraries steps use", function()
  local qmig, http = require "qmig", require "qmig.http"
  for _, name in ipairs { "mark_task", "trap_interrupt", "before_send" } do
    t.eq(rawget(qmig, name), nil, "qmig." .. name)
    t.eq(pcall(function() return qmig[name] end), false, "qmig." .. name .. " is no sub-library either")
    t.eq(http[name], nil, "qmig.http." .. name)
    t.eq(type(require("qmig.host")[name]), "function", "qmig.host." .. name)
  end
end)

return T
