-- Steps that overlap object by object (qmig.engine.overlap), with fake
-- steps whose items sleep: an object's steps run in order, another
-- object's later steps do not wait for the slowest item of a step, a step
-- that has no item for an object does not hold it, a step that waits for
-- the whole step before it still does.
local t = require "testing"
local qmig = require "qmig"

local T = t.suite("overlap")
local started_sims = {}
T.after_all(function() for _, sim in ipairs(started_sims) do sim:stop() end end)

local engine = require "qmig.engine.step"
local overlap = require "qmig.engine.overlap"

local function new_engine(opts)
  local cache = assert(require("qmig.store.cache").open(t.tmpdir() .. "/qmig.db"))
  opts = opts or {}
  local events = {}
  -- (a target with a limiter: at most `concurrency` items under way, as
  -- against Qlik Cloud, where an item waiting for another holds a place)
  local eng = engine.new { job = { options = {}, plan = {} }, project = { cache = cache },
    target = opts.limited and { limiter = true } or nil, concurrency = opts.concurrency or 4,
    dry_run = opts.dry_run, reporter = function(e) events[#events + 1] = e end }
  return eng, cache, events
end

-- A fake step of kind `name`: items are the ids `ids` lists (a function
-- of ctx, or a list), each sleeping slow[id] (else 0.01 s), recording
-- when it began and ended in `trace`.
local function step(name, trace, opts)
  opts = opts or {}
  return {
    name = "fake." .. name, title = name, order = 1, object = name, after = opts.after,
    object_of = opts.object_of, depends = opts.depends,
    items = function(ctx)
      local ids = type(opts.ids) == "function" and opts.ids(ctx) or opts.ids or { "1", "2", "3", "4" }
      local out = {}
      for _, id in ipairs(ids) do out[#out + 1] = { id = id, app = opts.app and opts.app[id] } end
      return out
    end,
    key = function(x) return x.id end,
    run = function(_, x)
      trace[#trace + 1] = { name, x.id, "begin", qmig.monotonic() }
      qmig.sleep((opts.slow or {})[x.id] or 0.01)
      trace[#trace + 1] = { name, x.id, "end", qmig.monotonic() }
      return { status = "created", target_id = name .. x.id }
    end,
  }
end

-- When step `name`'s item `id` began or ended, from the trace.
local function at(trace, name, id, what)
  for _, e in ipairs(trace) do
    if e[1] == name and e[2] == id and e[3] == what then return e[4] end
  end
  return nil
end

local function run_groups(eng, steps)
  local ended = {}
  for _, g in ipairs(overlap.groups(steps, eng.dry_run)) do
    eng:run_group(g, function(st, summary) ended[#ended + 1] = { st.name, summary } end)
  end
  return ended
end

-- The ids of `kind` done in the cache: what a real later step lists (the
-- records of the step before it, as qmig.domain.apps.imported does).
local function recorded(kind)
  return function(ctx)
    local ids = {}
    for _, rec in ipairs(ctx.cache:items(kind)) do
      if rec.status == "created" then ids[#ids + 1] = rec.source_id end
    end
    table.sort(ids)
    return ids
  end
end

T.test("overlap: an object's steps run in order; the others' later steps do not wait for the slowest item", function()
  local eng, cache = new_engine()
  local trace = {}
  local steps = {
    step("a", trace, { slow = { ["4"] = 0.6 } }),
    step("b", trace, { after = "object", ids = recorded("a") }),
    step("c", trace, { after = "object", ids = recorded("b") }),
  }
  t.eq(#overlap.groups(steps), 1, "one group")
  local ended = run_groups(eng, steps)
  t.eq({ ended[1][1], ended[2][1], ended[3][1] }, { "fake.a", "fake.b", "fake.c" }, "steps end in order")
  for _, e in ipairs(ended) do t.eq(e[2].counts, { created = 4 }, e[1]) end
  for _, id in ipairs { "1", "2", "3", "4" } do
    t.truthy(at(trace, "b", id, "begin") >= at(trace, "a", id, "end"), "b " .. id .. " after a " .. id)
    t.truthy(at(trace, "c", id, "begin") >= at(trace, "b", id, "end"), "c " .. id .. " after b " .. id)
  end
  -- (with the steps one after the other, c 1 would begin after a 4 ends)
  t.truthy(at(trace, "c", "1", "end") < at(trace, "a", "4", "end"),
    "c 1 ended before the slow a 4 did: the later steps overlapped it")
  cache:close()
end)

T.test("overlap: a step with no item for an object does not hold that object's later steps", function()
  local eng, cache = new_engine()
  local trace = {}
  local steps = {
    step("a", trace),
    step("b", trace, { after = "object", ids = { "1", "2", "4" }, slow = { ["2"] = 0.6 } }),
    step("c", trace, { after = "object", ids = recorded("a") }),
  }
  run_groups(eng, steps)
  t.truthy(at(trace, "b", "3", "begin") == nil, "b has no item 3")
  t.truthy(at(trace, "c", "3", "end") < at(trace, "b", "2", "end"), "c 3 did not wait for b to end")
  t.truthy(at(trace, "c", "2", "begin") >= at(trace, "b", "2", "end"), "c 2 waited for b 2")
  cache:close()
end)

T.test("overlap: a step that waits for the whole step before it starts a group; a plan runs step by step", function()
  local trace = {}
  local steps = {
    step("a", trace),
    step("b", trace, { after = "object" }),
    step("c", trace, { slow = { ["1"] = 0.3 } }),  -- after = "step", the default
    step("d", trace, { after = "object" }),
  }
  local groups = overlap.groups(steps)
  t.eq(#groups, 2)
  t.eq({ groups[1][1].name, groups[1][2].name, groups[2][1].name, groups[2][2].name },
    { "fake.a", "fake.b", "fake.c", "fake.d" })
  t.eq(#overlap.groups(steps, true), 4, "dry run: no overlap")
  local eng, cache = new_engine()
  run_groups(eng, steps)
  local b_last = 0
  for _, id in ipairs { "1", "2", "3", "4" } do b_last = math.max(b_last, at(trace, "b", id, "end")) end
  for _, id in ipairs { "1", "2", "3", "4" } do
    t.truthy(at(trace, "c", id, "begin") >= b_last, "c " .. id .. " after every b")
  end
  t.truthy(at(trace, "d", "2", "end") < at(trace, "c", "1", "end"), "d overlaps c")
  cache:close()
end)

T.test("overlap: object_of: a later step waits for every item of its object", function()
  local eng, cache = new_engine()
  local trace = {}
  local steps = {
    -- two triggers on app X (one slow), one on app Y
    step("s", trace, { ids = { "e1", "e2", "e3" }, app = { e1 = "X", e2 = "X", e3 = "Y" },
      object_of = function(x) return x.app end, slow = { e2 = 0.5 } }),
    step("v", trace, { after = "object", ids = { "X", "Y" } }),
  }
  run_groups(eng, steps)
  t.truthy(at(trace, "v", "X", "begin") >= at(trace, "s", "e2", "end"), "v X after both of X's items")
  t.truthy(at(trace, "v", "Y", "end") < at(trace, "s", "e2", "end"), "v Y did not wait for X's slow item")
  cache:close()
end)

T.test("overlap: depends across objects: a chained item waits for the one it follows, on another object", function()
  for _, concurrency in ipairs { 1, 4 } do
    local eng, cache = new_engine { concurrency = concurrency, limited = true }
    local trace = {}
    local chained = step("s", trace, { after = "object", ids = { "e1", "e2", "e3" },
      app = { e1 = "X", e2 = "Y", e3 = "Y" }, object_of = function(x) return x.app end,
      depends = function(x) return x.id == "e2" and { "e1" } or {} end })
    -- a deadlock (an item waiting for one that cannot start) ends as a
    -- failure after 10 s instead of hanging the suite
    local sleep, deadline = qmig.sleep, qmig.monotonic() + 10
    qmig.sleep = function(s)
      if qmig.monotonic() > deadline then error("deadlock: still waiting after 10 s", 0) end
      return sleep(s)
    end
    local ok, ended = pcall(run_groups, eng, {
      step("a", trace, { ids = { "Y", "X" }, slow = { X = 0.4 } }),  -- (Y first: its triggers are listed early)
      chained,
      step("v", trace, { after = "object", ids = { "X", "Y" } }),
    })
    qmig.sleep = sleep
    t.truthy(ok, tostring(ended))
    for _, e in ipairs(ended) do t.eq(e[2].counts.failed, nil, e[1] .. " at concurrency " .. concurrency) end
    t.eq(#ended, 3)
    t.truthy(at(trace, "s", "e2", "begin") >= at(trace, "s", "e1", "end"), "e2 after e1")
    t.truthy(at(trace, "v", "Y", "begin") >= math.max(at(trace, "s", "e2", "end"), at(trace, "s", "e3", "end")),
      "v Y after both of Y's triggers")
    t.truthy(at(trace, "v", "X", "begin") >= at(trace, "s", "e1", "end"), "v X after X's trigger")
    cache:close()
  end
end)

T.test("overlap: a later step whose items() fails fails as alone; the steps after it still run", function()
  local eng, cache, events = new_engine()
  local trace = {}
  local broken = step("b", trace, { after = "object" })
  broken.items = function() error("no listing today", 0) end
  local ended = run_groups(eng, { step("a", trace), broken, step("c", trace, { after = "object" }) })
  t.eq(#ended, 3)
  t.match(ended[2][2].error, "items%(%) failed: no listing today")
  t.eq(ended[3][2].counts, { created = 4 })
  local failed = 0
  for _, e in ipairs(events) do if e.kind == "step_failed" and e.step == "fake.b" then failed = failed + 1 end end
  t.eq(failed, 1, "one step_failed event for b")
  cache:close()
end)

T.test("overlap: an abort stops the group; the steps begun end with their counts, the rest are not reported", function()
  local errors = require "qmig.clients.errors"
  local eng, cache = new_engine { concurrency = 1 }
  local trace = {}
  local a = step("a", trace)
  local run = a.run
  a.run = function(ctx, x)
    if x.id == "2" then error(errors.new { message = "401 Unauthorized", status = 401, auth = true }, 0) end
    return run(ctx, x)
  end
  local ended = run_groups(eng, { a, step("b", trace, { after = "object", ids = recorded("a") }),
    step("c", trace, { after = "object", ids = recorded("b") }) })
  t.truthy(eng.aborted, "aborted")
  t.eq(ended[1][1], "fake.a")
  t.eq(ended[1][2].counts.failed, 1)
  t.truthy(at(trace, "a", "3", "begin") == nil, "nothing of a started after the 401")
  for _, e in ipairs(ended) do
    t.truthy(e[2].counts.created == nil or e[2].counts.created <= 1, e[1] .. ": at most the one item before it")
  end
  cache:close()
end)

-- apps.validate's items() is called more than once when it overlaps the
-- steps before it.  Each call used to empty the rows its items had made
-- (a module-level table), and a differing app's item fails, so its record
-- holds no row: the report then left the difference out (found by the
-- whole suite: report.json's "differs" 0 instead of 1).
T.test("overlap: apps.validate: a row made before items() is called again is still in the report", function()
  local json = require "qmig.json"
  local project = assert(require("qmig.store.project").open(t.tmpdir() .. "/p"))
  local validate = require "qmig.steps.apps.validate"
  local report = require "qmig.domain.validation.report"
  local ctx = { memo = {}, cache = project.cache, project = project, run_id = "1", job_name = "apps" }
  local result = { outcome = "differs", found = 1, differences = {
      { check = "chart", object = "bar c1", where = "row 1", source = 1, target = 2 } },
    counts = { tables = 1, rows = 2, target_rows = 2, fields = 1, charts = 1, cells = 2 } }
  local ok, err = pcall(report.outcome, ctx, { id = "a1", name = "Accounts", open_id = "t1" }, result)
  t.truthy(not ok and tostring(err):find("validation differs", 1, true), tostring(err))
  t.eq(#validate.items(ctx), 0, "the step listed again (no app imported in this cache)")
  report.finish(ctx, { { key = "a1", status = "failed" } })
  local v = json.decode(t.read(project:path("reports", "validation.json")))
  t.eq(#v.apps, 1, "the differing app's row")
  t.eq(v.apps[1].outcome, "differs")
  project.cache:close()
  project.lock:unlock()
end)

-- The demo against the simulator, its listings lagging 2.5 s: the reply
-- of the last app import is lost after the import was made, so that item
-- is in doubt with no later import to witness the catalogue, and waits
-- the lag out.  The other apps' later steps go on meanwhile: some of
-- their reloads end before that import does.  (Step after step, every
-- reload began after the last import had ended.)
T.test("overlap: the demo: while an import in doubt waits out the catalogue's lag, other apps reload", function()
  local cli = require "cli"
  local fs = require "qmig.fs"
  local json = require "qmig.json"
  local demo_share = require "demo_share"
  local sim = require("sim").start { site = "examples/demo/site.json" }
  started_sims[#started_sims + 1] = sim
  local dir = fs.realpath(t.tmpdir())
  local text, n = t.read("examples/demo/job.yaml"):gsub("options: {concurrency: 8}",
    "options: {concurrency: 8, rate_limits: false, catalogue_lag: 3}")
  t.eq(n, 1, "the demo job's options line")
  t.write(dir .. "/job.yaml", demo_share.absolute(text))
  local env = require("demo_env").new(sim, dir, "Finance DB: {username: u, password: p1}\n'Sales DB (CORP_jdoe)': "
    .. "{username: s, password: p2}\n")
  -- (the demo's plan takes every app of its site)
  local imports = #json.decode(t.read("examples/demo/site.json")).qrs.apps
  sim:faults { catalogue_lag_ms = 2500,
    rules = { { match = "POST /api/v1/apps/import", nth = imports, action = "drop_after_apply" } } }
  local code, out, err = cli.run({ "run", dir .. "/job.yaml", "--job", "apps", "--job", "identities",
    "--job", "containers", "--job", "connections" }, { env = env })
  t.truthy(code == 0 or code == 1, out .. err)
  local doubted, reloads = nil, {}
  for line in io.lines(dir .. "/project/logs/run-1.jsonl") do
    local r = json.decode(line)
    if r.msg == "item" and r.step == "apps.import" and tostring(r.reason):find("recovered", 1, true) then
      doubted = r
    end
    if r.msg == "item" and r.step == "apps.reload" then reloads[#reloads + 1] = r end
  end
  t.truthy(doubted, "the last import was in doubt and recovered: " .. out)
  local before = 0
  for _, r in ipairs(reloads) do if r.key ~= doubted.key and r.ts < doubted.ts then before = before + 1 end end
  t.truthy(before > 0, "reloads of other apps ended while the import in doubt waited (" .. #reloads .. " reloads)")
  local marker, copies = require("qmig.clients.retrieve").marker_token(doubted.key), 0
  for _, a in ipairs(sim:state().cloud.apps) do
    if tostring(a.description):find(marker, 1, true) then copies = copies + 1 end
  end
  t.eq(copies, 1, "one app for the source app in doubt")
end)

return T
