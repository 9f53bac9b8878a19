-- plan on a fresh project sees the whole migration: each step plans
-- against what the steps before it would make (qmig.store.overlay), object by
-- object, and the counts are those of the run that follows; nothing
-- reaches the tenant or the cache file.  After the run, plan shows no
-- change.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"
local demo_outcome = require "demo_outcome"
local demo_share = require "demo_share"

local T = t.suite("plan")

local function demo()
  local sim = simlib.start { site = "examples/demo/site.json" }
  local dir = fs.realpath(t.tmpdir())
  local env = require("demo_env").new(sim, dir, "Finance DB: {username: u, password: pw}\n")
  return sim, env, dir
end

-- The step summary lines: {step = {word = n}} ("4 to create" -> create = 4,
-- "2 skipped" -> skipped = 2, "3 no change" -> ["no change"] = 3).
local function step_counts(out)
  local steps = {}
  for name, rest in out:gmatch("\n  ([%w_]+%.[%w_.]+)%s+([^\n]+)") do
    local c = {}
    for n, word in rest:gmatch("(%d+) ([%a ]-)%f[,%z]") do
      c[(word:gsub("^to ", ""))] = tonumber(n)
    end
    steps[name] = c
  end
  return steps
end

local function sum(c, words)
  local n = 0
  for _, w in ipairs(words) do n = n + (c[w] or 0) end
  return n
end

local function dir_of(sim) return fs.dirname(sim.info.certs.ca) end

-- PUT /qrs/{kind}/{id} of the entity the filter finds, with changes: what
-- the QMC does when a person edits it
local function qrs_edit(q, kind, filter, changes)
  local entity = assert(q:full(kind, filter)[1], kind .. " " .. filter)
  for k, v in pairs(changes) do entity[k] = v end
  q:request("PUT", kind .. "/" .. entity.id, { json = entity })
end

local PLAN_CHANGES = { "create", "update", "adopt", "export", "delete", "validate", "convert" }
local RUN_CHANGES = { "created", "updated", "adopted", "deleted" }

T.test("the time the rate limits allow: a window's allowance at once, each further one a window later", function()
  local plan = require "qmig.ui.plan"
  local function writes(n)
    local all = {}
    for i = 1, n do all[i] = { status = "planned", write = { method = "POST", path = "/api/v1/spaces" } } end
    return all
  end
  -- tier 2 at 100 a minute: 500 in Qlik's 5-minute window
  t.match(plan.totals(writes(400), { tier2 = 100 })[2], "at least 400 writes to the target; at the tenant's rate "
    .. "limits that is at least 0 s")
  t.match(plan.totals(writes(600), { tier2 = 100 })[2], "that is at least 300 s")
  t.match(plan.totals(writes(1001), { tier2 = 100 })[2], "that is at least 600 s")
end)

T.test("plan on a fresh project: every step, every object, the counts of the run that follows", function()
  local sim, env, dir = demo()
  local code, out, err = cli.run({ "plan", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.eq(sim:counts().total_writes, 0, "a plan writes nothing to the tenant")
  -- nothing skipped for want of an earlier step's result
  t.truthy(not (out:find("first%)") or out:find("run [%w_.]+ first")), out)
  t.truthy(not (out:find("nothing to do", 1, true) and out:find("apps%.object_owners%s+nothing to do")), out)
  -- objects by name, with what a plan cannot know yet said as such
  t.match(out, "apps%.import 'Sales Overview' %([%x-]+%): would create in space 'Migration staging' "
    .. "%(POST /api/v1/apps/import%)")
  t.match(out, "apps%.reload 'Sales Overview' %([%x-]+%): would create")
  t.match(out, "apps%.publish 'Sales Overview' %([%x-]+%): would create")
  t.match(out, "apps%.schedules '[^']+' %([%x-]+%): would create")
  t.match(out, "spaces%.owners 'Sales' %([%x-]+%): would update")
  t.match(out, "users%.export%s+7 to export")
  t.match(out, "\nplan: %d+ to create, [^\n]+\nat least %d+ writes to the target; at the tenant's rate limits")
  t.truthy(not (out:find("known after run: ", 1, true)), "placeholders are shown as (known after run)")
  -- the cache file holds no item, no export was written
  -- the same plan as one JSON record per object, and saved for run --plan
  local saved = dir .. "/plan.jsonl"
  local jcode, jout = cli.run({ "plan", "examples/demo/job.yaml", "--json", "--out", saved }, { env = env })
  t.eq(jcode, 0, jout)
  local n_records = 0
  for line in jout:gmatch("[^\n]+") do
    local rec = assert(json.decode(line), "every line is a JSON record: " .. line)
    t.truthy(rec.step and rec.kind and rec.key and rec.action, line)
    n_records = n_records + 1
  end
  t.eq(t.read(saved), jout, "--out saves what --json prints")
  t.eq(fs.stat(saved).mode & 511, 384, "the saved plan is 0600")
  local one = json.decode(jout:match('[^\n]*"step":"apps%.import"[^\n]*"Sales Overview"[^\n]*')
    or jout:match('[^\n]*"name":"Sales Overview"[^\n]*"step":"apps%.import"[^\n]*'))
  t.eq(one.action, "create")
  t.eq(one.target.space, "Migration staging")
  t.eq(one.target.id, nil, "a placeholder id is not written")
  local cache = assert(require("qmig.store.cache").open(dir .. "/project/qmig.db"))
  t.eq(#cache:items(), 0)
  cache:close()
  local files = io.popen("find " .. cli.quote(dir .. "/project/exports") .. " -type f 2>/dev/null"):read("a")
  t.eq(files, "", "a plan exports nothing")
  t.truthy(not (fs.exists(dir .. "/project/users.json")), "a plan exports nothing")
  local planned = step_counts(out)

  local run_out
  code, run_out, err = cli.run({ "run", "examples/demo/job.yaml", "--plan", saved }, { env = env })
  demo_outcome.ran(code, run_out, err)
  local ran = step_counts(run_out)
  local compared = 0
  for step, c in pairs(ran) do
    local p = planned[step]
    t.truthy(p, "the plan has a line for " .. step)
    local changes = sum(p, PLAN_CHANGES)
    if step == "apps.validate" or step == "qvapps.validate" then
      -- a plan cannot read the data of apps not imported yet: it says it
      -- will validate every one; the run finds which differ or have none
      t.eq(changes, (c.unchanged or 0) + (c.skipped or 0) + (c.failed or 0), step)
    else
      t.eq(p.skipped or 0, c.skipped or 0, step .. ": skipped")
      t.eq(p.failed or 0, c.failed or 0, step .. ": failed")
      if step == "apps.scripts" then
        -- a plan cannot read the scripts of apps not imported yet: it
        -- says it will look at every one
        t.eq(changes + (p["no change"] or 0), sum(c, RUN_CHANGES) + (c.unchanged or 0), step)
      else
        t.eq(changes, sum(c, RUN_CHANGES), step .. ": changes")
        t.eq(p["no change"] or 0, c.unchanged or 0, step .. ": no change")
      end
    end
    compared = compared + 1
  end
  t.truthy(compared >= 20, "every step of the demo compared: " .. compared)

  -- after the run: no change anywhere, no write
  sim:reset_counters()
  code, out, err = cli.run({ "plan", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  for step, c in pairs(step_counts(out)) do
    t.eq(sum(c, PLAN_CHANGES), 0, step .. " has nothing to change after the run")
  end
  t.match(out, "at least 0 writes to the target")
  t.eq(sim:counts().total_writes, 0)
  code, out = cli.run({ "run", "examples/demo/job.yaml", "--plan", saved }, { env = env })
  t.eq(code, 0, out)
  t.match(out, "is carried out already")
  t.eq(sim:counts().total_writes, 0)

  -- changes at the source, as made in the QMC: an app renamed, a trigger's
  -- interval changed; exactly those objects show an update, old -> new
  local q = require("qmig.clients.qrs").new { url = sim.info.qrs_url, cert = dir_of(sim) .. "/client.pem",
    key = dir_of(sim) .. "/client_key.pem", ca = sim.info.certs.ca, user = "INTERNAL\\sa_api" }
  qrs_edit(q, "app", "name eq 'Logistics'", { name = "Logistics EMEA" })
  qrs_edit(q, "schemaevent", "name eq 'Weekly Monday'", { name = "Weekly Tuesday",
    schemaFilterDescription = { "* * - 2 * * * *" } })
  sim:reset_counters()
  code, out, err = cli.run({ "plan", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.eq(sim:counts().total_writes, 0)
  t.match(out, "apps%.import 'Logistics EMEA' %([%x-]+%): would update name 'Logistics' %-> 'Logistics EMEA'")
  t.match(out, "apps%.schedules '[^'\n]+' %([%x-]+%): would update [^\n]*schedule '[^'\n]*BYDAY=MO[^'\n]*' %-> "
    .. "'[^'\n]*BYDAY=TU[^'\n]*' name '[^'\n]*Weekly Monday' %-> '[^'\n]*Weekly Tuesday'")
  local updates = {}
  for line in out:gmatch("[^\n]+") do
    if line:find(": would update", 1, true) then updates[#updates + 1] = line end
  end
  t.eq(#updates, 2, out)
  code, out, err = cli.run({ "run", "examples/demo/job.yaml" }, { env = env })
  demo_outcome.ran(code, out, err)
  t.match(out, "apps%.import%s+1 updated, 11 unchanged")
  code, out = cli.run({ "plan", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out)
  t.match(out, "at least 0 writes to the target", out)

  -- a change: a space renamed and another given an owner in the job file;
  -- exactly those two objects show an update, old -> new
  local changed = dir .. "/job.yaml"
  t.write(changed, demo_share.absolute((t.read("examples/demo/job.yaml")
    :gsub("Everyone: {name: Everyone, type: shared}", "Everyone: {name: All Staff, type: shared}")
    :gsub("    staging: Migration staging\n",
      "    staging: Migration staging\n    owners: {Sales: asmith@corp.example}\n"))))
  code, out, err = cli.run({ "plan", changed }, { env = env })
  t.eq(code, 0, out .. err)
  updates = {}
  for line in out:gmatch("[^\n]+") do
    if line:find(": would ", 1, true) then updates[#updates + 1] = line end
  end
  t.eq(#updates, 2, out)
  t.match(out, "spaces%.create 'All Staff' %([%x-]+%): would update name 'Everyone' %-> 'All Staff'")
  t.match(out, "spaces%.owners 'Sales' %([%x-]+%): would update owner 'John Doe <jdoe@corp%.example>' %-> "
    .. "'asmith@corp%.example'")
  -- the old saved plan no longer holds: refused, nothing written
  sim:reset_counters()
  code, out, err = cli.run({ "run", changed, "--plan", saved }, { env = env })
  t.eq(code, 2, out .. err)
  t.match(err, "no longer holds: the source or the target changed since it was made")
  t.match(err, "\n  spaces%.create 'Everyone' %([%x-]+%): planned to create, now update name 'Everyone' %-> "
    .. "'All Staff'")
  t.match(err, "\n  spaces%.owners 'Sales' %([%x-]+%): planned to update owner '[^'\n]+' %-> 'CORP\\jdoe', now "
    .. "update owner 'John Doe <jdoe@corp%.example>' %-> 'asmith@corp%.example'")
  t.eq(sim:counts().total_writes, 0)
  -- a new plan of the change runs
  local saved2 = dir .. "/plan2.jsonl"
  t.eq((cli.run({ "plan", changed, "--out", saved2 }, { env = env })), 0)
  code, out, err = cli.run({ "run", changed, "--plan", saved2 }, { env = env })
  demo_outcome.ran(code, out, err)
  t.match(out, "spaces%.create%s+1 updated, 4 unchanged")
  t.match(out, "spaces%.owners%s+1 updated")
  -- a plan file that is not one: exit 2 with its name and line
  t.write(dir .. "/bad.jsonl", '{"step": "x"}\n')
  code, out, err = cli.run({ "run", changed, "--plan", dir .. "/bad.jsonl" }, { env = env })
  t.eq(code, 2, out)
  t.match(err, "bad%.jsonl:1: not a plan record")
  sim:stop()
end)

return T
