-- apps.schedules end to end through the qmig-lua binary against qliksim
-- (fixture site tests/lua/fixtures/sites/schedules.json): QRS reload tasks
-- and triggers -> Cloud reload tasks on the app users open, every case that
-- cannot be carried visible, re-runs without writes, crash resume without
-- duplicates, plan without writes, transforms, undo.  The apps come from
-- the stand-in steps tests/lua/fixtures/steps/fixture7 (import into the
-- personal space; apps of stream Finance also get a "published" copy;
-- app "Legacy" is never imported).
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"

local T = t.suite("steps_schedules")
local FIXTURES = fs.realpath("tests/lua/fixtures")
local sim

local function the_sim()
  if not sim then sim = simlib.start { site = FIXTURES .. "/sites/schedules.json" } end
  return sim
end
local legacy_sim
T.after_all(function()
  if sim then sim:stop() end
  if legacy_sim then legacy_sim:stop() end
end)

local STEPS = "[fixture7.apps, fixture7.publish, apps.schedules]"

local function job(opts)
  opts = opts or {}
  local dir = fs.realpath(t.tmpdir())
  local extra = "steps_path: [" .. FIXTURES .. "/steps]"
  if opts.transforms then
    t.write(dir .. "/transforms.lua", opts.transforms)
    extra = extra .. "\ntransforms: transforms.lua"
  end
  t.write(dir .. "/job.yaml", (opts.sim or the_sim()):job_yaml {
    project_dir = dir .. "/project", concurrency = opts.concurrency or 4, extra = extra,
    jobs = "  - {name: apps, steps: " .. STEPS .. "}",
  })
  return dir .. "/job.yaml", dir
end

local function clean()
  the_sim():reset()
  the_sim():faults {}
end

-- Cloud app ids by name.
local function apps()
  local out = {}
  for _, a in ipairs(the_sim():state().cloud.apps) do out[a.name] = a.id end
  return out
end

-- The Cloud scheduling tasks as comparable rows, sorted: time schedules as
-- "app zone start end rule partial state", chained ones as "app after
-- upstream=STATUS,... any|all timeout partial state".
local function tasks()
  local names = {}
  for name, id in pairs(apps()) do names[id] = name end
  local list = the_sim():state().cloud.scheduling_tasks
  local task_names = {}
  for _, k in ipairs(list) do task_names[k.id] = k.name end
  local rows = {}
  for _, k in ipairs(list) do
    local reload = k.states[1].onEvents[1].actions[1].functionRef.arguments
    local state = k.enabled and "Enabled" or "Disabled"
    if k.start then
      local sc = k.start.schedule
      rows[#rows + 1] = table.concat({ names[k.resourceId] or k.resourceId, sc.timezone, sc.startDateTime,
        sc.endDateTime or "", sc.recurrence, tostring(reload.partial), state }, " ")
    else
      local ups = {}
      for _, ev in ipairs(k.events) do
        local id, status
        for _, c in ipairs(ev.correlation) do
          if c.contextAttributeName == "id" then id = c.contextAttributeValue end
          if c.contextAttributeName == "status" then status = c.contextAttributeValue end
        end
        ups[#ups + 1] = tostring(task_names[id] or id) .. "=" .. tostring(status)
      end
      table.sort(ups)
      local st = k.states[1]
      rows[#rows + 1] = table.concat({ names[k.resourceId] or k.resourceId, "after", table.concat(ups, ","),
        st.exclusive == false and "all" or "any", st.timeouts and st.timeouts.eventTimeout or "-",
        tostring(reload.partial), state }, " ")
    end
  end
  table.sort(rows)
  return rows
end

local EXPECTED = {
  "Ops UTC 2024-02-29T05:45:00  RRULE:FREQ=MONTHLY;INTERVAL=1;BYDAY=2FR;BYHOUR=5;BYMINUTE=45;BYSECOND=0 false Enabled",
  "Ops Europe/Paris 2024-01-11T04:00:00  RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=4;BYMINUTE=0;BYSECOND=0 false Disabled",
  "Ops UTC 2024-06-01T09:00:00  RRULE:FREQ=DAILY;COUNT=1 false Enabled",
  "Ops Europe/Paris 2024-01-11T07:00:00  RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=7;BYMINUTE=0;BYSECOND=0 false Disabled",
  "Sales (published) America/New_York 2024-03-10T02:30:00  "
    .. "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;BYHOUR=2;BYMINUTE=30;BYSECOND=0 false Enabled",
  "Sales (published) Australia/Sydney 2024-01-31T22:00:00 2027-12-31T23:59:00 "
    .. "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=-1;BYHOUR=22;BYMINUTE=0;BYSECOND=0 false Enabled",
  "Sales (published) Europe/Paris 2024-01-11T06:00:00  "
    .. "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=0;BYSECOND=0 false Enabled",
  "Sales (published) Europe/Paris 2024-01-11T06:00:00  RRULE:FREQ=MINUTELY;INTERVAL=90 true Enabled",
  -- the chains: any run of Reload Ops (three triggers, so three Cloud tasks) ...
  "Ops after Reload Ops / Old trigger=SUCCEEDED,Reload Ops / One-off=SUCCEEDED,"
    .. "Reload Ops / Second Friday=SUCCEEDED any - false Enabled",
  -- ... the second level of that chain ...
  "Sales (published) after Reload Ops chained / After Reload Ops=SUCCEEDED any - false Enabled",
  -- ... and two rules that must both hold within the 30 min time constraint
  "Ops after Reload Ops chained / After Reload Ops=FAILED,Reload Sales partial / Every 90 min=SUCCEEDED all PT30M "
    .. "false Enabled",
}
table.sort(EXPECTED)
local CREATED, SKIPPED = 11, 7

-- Reasons every run must show for what is not migrated.
local NOT_MIGRATED = {
  "task 'Reload Ops manual' has no trigger %(manual only%)",
  "external program task 'Run batch'",
  "app 'Legacy' %([%x-]+%) has not been imported",
  "trigger 'Never fires': the trigger never fires",
  "chained trigger 'After Loop B' of task 'Loop A' is part of a loop of task chains %('Loop [AB]' after 'Loop [AB]' "
    .. "after 'Loop [AB]'%)",
  "chained trigger 'After Loop A' of task 'Loop B' is part of a loop",
  "chained trigger 'When batch ran' of task 'After batch' starts when 'Run batch' %(external program task%) "
    .. "succeeds: Qlik Cloud tasks can only follow other reload tasks",
}

-- A request to the simulated tenant as the test's own admin.
local function tenant(method, path, body)
  local r = the_sim().control:request { method = method, path = path, json = body,
    headers = { Authorization = "Bearer " .. the_sim().info.api_key } }
  return r.status, r.body ~= "" and json.decode(r.body) or nil
end

local function task_named(name)
  for _, k in ipairs(the_sim():state().cloud.scheduling_tasks) do if k.name == name then return k end end
  return nil
end

local function status_json(file)
  local code, out = cli.run { "status", file, "--json" }
  t.eq(code, 0)
  local rows = {}
  for _, r in ipairs(json.decode(out)) do
    if r.kind == "app.schedule" then rows[#rows + 1] = r end
  end
  return rows
end

T.test("a run creates one Cloud task per trigger, on the app users open", function()
  clean()
  local file, dir = job()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, string.format("apps%%.schedules%%s+%d created, %d skipped", CREATED, SKIPPED))
  t.eq(tasks(), EXPECTED)
  -- the Sales schedules went to the published copy, never to the imported app
  local st = the_sim():state().cloud
  local a = apps()
  for _, k in ipairs(st.scheduling_tasks) do t.truthy(k.resourceId ~= a.Sales) end
  -- today's tenant: the removed Reload Tasks API was never called
  t.eq(#st.reload_tasks, 0)
  local counts = the_sim():counts()
  t.truthy(next(counts.requests) ~= nil)
  for endpoint in pairs(counts.writes) do t.eq(endpoint:find("reload-tasks", 1, true), nil, endpoint) end
  -- what is not migrated is visible in the run output ...
  for _, pattern in ipairs(NOT_MIGRATED) do t.match(err, pattern, "stderr") end
  t.match(err, SKIPPED .. " trigger%(s%)/task%(s%) not migrated, 5 schedule%(s%) with settings not carried")
  -- ... in status ...
  local rows = status_json(file)
  t.eq(#rows, CREATED + SKIPPED)
  local skipped, reasons = 0, {}
  for _, r in ipairs(rows) do
    if r.status == "skipped" then skipped = skipped + 1 end
    reasons[#reasons + 1] = tostring(r.reason)
  end
  t.eq(skipped, SKIPPED)
  local all = table.concat(reasons, "\n")
  for _, pattern in ipairs(NOT_MIGRATED) do t.match(all, pattern, "status") end
  -- dropped settings: session timeout + retries on Reload Sales, permanent standard time
  t.match(all, "task session timeout of 60 min")
  t.match(all, "2 retries after a failed reload are not carried")
  t.match(all, "permanent standard time in Europe/Paris")
  local _, text = cli.run { "status", file, "--objects" }
  t.match(text, "app%.schedule%s+skipped%s+.-chained trigger 'After Loop")
  -- ... and in the report file
  local report = json.decode(t.read(dir .. "/project/reports/schedules.json"))
  t.eq(#report.not_migrated, SKIPPED)
  t.eq(report.migrated, CREATED)
  t.eq(#report.chained, 3)
  -- 3 on Reload Sales' triggers, 1 on the 90-min one, and the one-off trigger already past
  t.eq(#report.settings_not_carried, 5)
  local notes = {}
  for _, e in ipairs(report.settings_not_carried) do
    for _, n in ipairs(e.dropped or {}) do notes[#notes + 1] = n end
    for _, n in ipairs(e.warnings or {}) do notes[#notes + 1] = n end
  end
  t.eq(#notes, 8, t.show(notes))
  t.match(table.concat(notes, "\n"), "trigger 'One%-off' runs once at 2024%-06%-01T09:00:00, which is past")
  t.eq(#report.no_longer_at_source, 0)
end)

T.test("a chain of any depth runs in the QSEoW order: the simulator fires the tasks it triggers", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file }, 0)
  local function fire(name, status)
    local order = {}
    for _, r in ipairs(the_sim():call("POST", "scheduling/fire", { taskId = task_named(name).id, status = status })) do
      order[#order + 1] = r.name .. (r.triggeredBy ~= "manual" and "" or " (fired)")
    end
    return order
  end
  -- any of Reload Ops' triggers starts the chain; its second level follows the first
  local chain = { "Reload Ops chained / After Reload Ops", "Reload Sales after chained / After Ops chained" }
  for _, trigger in ipairs { "Reload Ops / Second Friday", "Reload Ops / One-off" } do
    t.eq(fire(trigger, "succeeded"), { trigger .. " (fired)", chain[1], chain[2] })
  end
  -- a failed reload starts only what waits for a failure
  t.eq(fire("Reload Ops / Second Friday", "failed"), { "Reload Ops / Second Friday (fired)" })
  t.eq(fire("Reload Sales / Daily 6am", "succeeded"), { "Reload Sales / Daily 6am (fired)" })
end)

T.test("the re-run makes zero writes and reports the same", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file }, 0)
  the_sim():reset_counters()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, string.format("apps%%.schedules%%s+%d unchanged, %d skipped", CREATED, SKIPPED))
  t.eq(the_sim():counts().total_writes, 0)
  for _, pattern in ipairs(NOT_MIGRATED) do t.match(err, pattern) end
  t.eq(tasks(), EXPECTED)
end)

T.test("plan describes the schedules and writes nothing", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file, "--step", "fixture7.apps", "--step", "fixture7.publish" }, 0)
  the_sim():reset_counters()
  local code, out, err = cli.run { "plan", file }
  t.eq(code, 0, out .. err)
  t.match(out, "apps%.schedules .-: would create[^\n]* %(POST /api/scheduling/tasks/resources/[%x-]+/actions/reload/"
    .. "on%-time%-schedule%)")
  t.match(out, "apps%.schedules%s+[^\n]*" .. CREATED .. " to create")
  t.match(out, "apps%.schedules%s+[^\n]*" .. SKIPPED .. " skipped")
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(tasks(), {})
end)

T.test("SIGKILL right after a scheduling-task write, then resume: no duplicate, same end state", function()
  -- creates go in dependency order at concurrency 1: #9 to #11 are the chains
  local kills = {
    { match = "POST /api/scheduling/tasks", nth = 1 },
    { match = "POST /api/scheduling/tasks", nth = 5 },
    { match = "POST /api/scheduling/tasks", nth = 9 },
    { match = "POST /api/scheduling/tasks", nth = 10 },
    { match = "POST /api/scheduling/tasks", nth = 11 },
  }
  for _, k in ipairs(kills) do
    clean()
    local file = job { concurrency = 1 }
    t.eq(cli.run { "run", file, "--step", "fixture7.apps", "--step", "fixture7.publish" }, 0)
    local pid, release = cli.spawn_held { "run", file }
    the_sim():faults { rules = { { match = k.match, nth = k.nth, action = "kill", pid = pid, signal = 9 } } }
    local status = release()
    t.eq(status, 137, k.match .. " #" .. k.nth)
    t.eq(the_sim():counts().injected.kill, 1)
    the_sim():faults {}
    local code, out, err = cli.run { "run", file }
    t.eq(code, 0, out .. err)
    t.eq(tasks(), EXPECTED, "after a kill at " .. k.match .. " #" .. k.nth)
    the_sim():reset_counters()
    local c3, o3, e3 = cli.run { "run", file, "--verbose" }
    t.eq(c3, 0, o3 .. e3)
    t.eq(the_sim():counts().total_writes, 0, "third run after a kill at " .. k.match .. " #" .. k.nth .. ": "
      .. json.encode(the_sim():counts().writes) .. "\n" .. o3 .. e3 .. "\nsecond run:\n" .. out .. err)
    -- the task made by the killed attempt is ours: undo removes it too
    local cu, ou, eu = cli.run { "undo", file }
    t.eq(cu, 0, ou .. eu)
    t.eq(tasks(), {}, "undo after a kill at " .. k.match .. " #" .. k.nth)
  end
end)

T.test("a reply lost after the server made the task never duplicates", function()
  clean()
  local file = job()
  the_sim():faults { rules = {
    { match = "POST /api/scheduling/tasks", nth = 2, action = "drop_after_apply", times = 2 },
    { match = "POST /api/scheduling/tasks", nth = 10, action = "drop_after_apply" } } }
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.eq(the_sim():counts().injected.drop_after_apply, 3)
  t.eq(tasks(), EXPECTED)
end)

T.test("a lost project folder: the tasks in the tenant are adopted, not duplicated", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file }, 0)
  local file2 = job()  -- a fresh project, same tenant
  the_sim():reset_counters()
  local code, out, err = cli.run { "run", file2 }
  t.eq(code, 0, out .. err)
  t.match(out, string.format("apps%%.schedules%%s+%d adopted, %d skipped", CREATED, SKIPPED))
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(tasks(), EXPECTED)
end)

T.test("--force puts back a task changed or deleted in the tenant, and the chain follows it", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file }, 0)
  local changed, deleted = task_named("Reload Sales / Daily 6am"), task_named("Reload Ops / Second Friday")
  local body = json.decode(json.encode(changed))
  body.id, body.resourceId, body.runs, body.enabled = nil, nil, nil, false
  body.start.schedule.recurrence = "RRULE:FREQ=DAILY;INTERVAL=7"
  local status, reply = tenant("PUT", "/api/scheduling/tasks/" .. changed.id, body)
  t.eq(status, 200, json.encode(reply))
  t.eq(tenant("DELETE", "/api/scheduling/tasks/" .. deleted.id), 204)
  local code, out, err = cli.run { "run", file, "--force", "--step", "apps.schedules" }
  t.eq(code, 0, out .. err)
  -- the chain after Reload Ops is updated to follow the Second Friday task made again
  t.match(out, string.format("1 created, 2 updated, %d unchanged, %d skipped", CREATED - 3, SKIPPED))
  t.eq(tasks(), EXPECTED)
  -- undo of the update restores what the tenant had before it
  t.eq(cli.run { "undo", file, "--run", "2" }, 0)
  local now = task_named("Reload Sales / Daily 6am")
  t.eq(now.id, changed.id)
  t.eq(now.enabled, false)
  t.eq(now.start.schedule.recurrence, "RRULE:FREQ=DAILY;INTERVAL=7")
end)

T.test("the schedule transform hook may change a task or leave it out", function()
  clean()
  local file = job { transforms = [[
return {
  schedule = function(event, task)
    if event.name == "Month end" then return nil end
    if event.name == "Daily 6am" then task.partial = true end
    if event.name == "After Ops chained" then task.state = "Disabled" end
    return task
  end,
}
]] }
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, string.format("apps%%.schedules%%s+%d created, %d skipped", CREATED - 1, SKIPPED + 1))
  t.match(err, "left out by transforms%.lua")
  local rows = table.concat(tasks(), "\n")
  t.eq(#tasks(), CREATED - 1)
  t.match(rows, "Europe/Paris 2024%-01%-11T06:00:00  RRULE:FREQ=DAILY;[^ ]+ true Enabled")
  t.match(rows, "after Reload Ops chained / After Reload Ops=SUCCEEDED any %- false Disabled")
  t.eq(rows:find("Australia/Sydney", 1, true), nil)
end)

T.test("an app published after its schedules were made: they move to the published copy", function()
  clean()
  local file = job()
  local code, out, err = cli.run { "run", file, "--step", "fixture7.apps", "--step", "apps.schedules" }
  t.eq(code, 0, out .. err)
  local a = apps()
  local function on_imported()
    local n = 0
    for _, k in ipairs(the_sim():state().cloud.scheduling_tasks) do
      if k.resourceId == a.Sales then n = n + 1 end
    end
    return n
  end
  t.eq(on_imported(), 5)  -- four time triggers and the second level of the chain
  code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  -- the chain on Reload Sales partial's task moves with it (its fingerprint follows its upstreams')
  t.match(out, string.format("apps%%.schedules%%s+5 created, 1 updated, %d unchanged, %d skipped", CREATED - 6,
    SKIPPED))
  t.eq(on_imported(), 0)
  t.eq(tasks(), EXPECTED)  -- nothing left on the imported Sales app
  the_sim():reset_counters()
  t.eq(cli.run { "run", file }, 0)
  t.eq(the_sim():counts().total_writes, 0)
  -- undo: the moved tasks go; the deleted ones are listed as irreversible
  code, out = cli.run { "undo", file, "--run", "2" }
  t.eq(code, 0, out)
  t.match(out, "cannot undo app%.schedule .*deleted when the schedule moved")
end)

-- Real QRS lists external program and user sync tasks apart from reload
-- tasks: their triggers have reloadTask = null (the simulator cannot serve
-- that shape, so items() and run() are called with a stand-in ctx).
T.test("triggers of external program and user sync tasks (QRS shape) are reported", function()
  local step = dofile("steps/apps/schedules.lua")
  local app = { id = "a1", name = "Sales", published = true, stream = { id = "s1", name = "Finance" } }
  local lists = {
    app = { app },
    reloadtask = { { id = "t1", name = "Reload Sales", taskType = 0, enabled = true, app = app,
      taskSessionTimeout = 1440, maxRetries = 0, preloadNodes = {} } },
    schemaevent = {
      { id = "e1", name = "Daily", enabled = true, eventType = 0, timeZone = "UTC", daylightSavingTime = 0,
        startDate = "2024-01-11T06:00:00.000", expirationDate = "9999-01-01T00:00:00.000", incrementOption = 2,
        incrementDescription = "0 0 1 0", schemaFilterDescription = { "* * - * * * * *" },
        reloadTask = { id = "t1", name = "Reload Sales" } },
      { id = "e2", name = "Batch", eventType = 0, reloadTask = json.null,
        externalProgramTask = { id = "x1", name = "Run batch" } },
      { id = "e3", name = "Sync", eventType = 0, reloadTask = json.null,
        userSyncTask = { id = "u1", name = "Sync AD" } },
    },
    compositeevent = {},
  }
  local warned = {}
  local ctx = {
    plan = { apps = {} },
    source = { full = function(_, entity) return lists[entity] end },
    app_for = function(id) return id == "a1" and "cloud-a1" or nil end,
    log = { warn = function(msg, f) warned[#warned + 1] = msg .. " " .. tostring(f and f.reason) end },
  }
  local items = step.items(ctx)
  t.eq(#items, 3)
  local by = {}
  for _, it in ipairs(items) do by[step.key(it)] = it end
  t.eq(by.e1.target_app, "cloud-a1")
  local r2 = step.run(ctx, by.e2)
  t.eq(r2.status, "skipped")
  t.match(r2.reason, "^external program task 'Run batch'")
  local r3 = step.run(ctx, by.e3)
  t.eq(r3.status, "skipped")
  t.match(r3.reason, "^user sync task 'Sync AD'")
  t.match(table.concat(warned, "\n"), "external program task 'Run batch'")
  -- the fingerprint ignores run history (operational data)
  local fp = step.fingerprint(by.e1)
  by.e1.event.operational = { timesTriggered = 99 }
  by.e1.task.operational = { lastExecutionResult = { status = 8 } }
  t.eq(step.fingerprint(by.e1), fp)
  by.e1.event.incrementDescription = "0 0 2 0"
  t.truthy(step.fingerprint(by.e1) ~= fp)
end)

-- With the real application pipeline (apps.export, apps.import,
-- apps.publish): Finance is a managed space, so Sales is published there
-- and its schedules go on the published app.  A missing step fails here
-- rather than skipping, so renaming one cannot switch this test off.
T.test("with the real apps.import and apps.publish", function()
  for _, f in ipairs { "export", "import", "publish" } do
    t.truthy(fs.exists("steps/apps/" .. f .. ".lua"), "steps/apps/" .. f .. ".lua is missing (renamed?)")
  end
  clean()
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/job.yaml", the_sim():job_yaml {
    project_dir = dir .. "/project", extra = "steps_path: [" .. FIXTURES .. "/steps]\n"
      .. "plan:\n  spaces:\n    map: {Finance: {name: Finance, type: managed}}\n    staging: Staging",
    jobs = "  - {name: apps, steps: [fixture.spaces, apps.export, apps.import, apps.publish, apps.schedules]}" })
  local file = dir .. "/job.yaml"
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  -- Legacy is imported by the real step
  t.match(out, string.format("apps%%.schedules%%s+%d created, %d skipped", CREATED + 1, SKIPPED - 1))
  local st = the_sim():state().cloud
  local managed, sales
  for _, sp in ipairs(st.spaces) do if sp.name == "Finance" then managed = sp.id end end
  for _, a in ipairs(st.apps) do if a.name == "Sales" and a.spaceId == managed then sales = a.id end end
  t.truthy(sales, "Sales published in the managed space")
  local on_sales = 0
  for _, k in ipairs(st.scheduling_tasks) do if k.resourceId == sales then on_sales = on_sales + 1 end end
  t.eq(on_sales, 5)
  the_sim():reset_counters()
  t.eq(cli.run { "run", file }, 0)
  t.eq(the_sim():counts().total_writes, 0)
end)

T.test("undo removes every task the run created", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file }, 0)
  t.eq(#tasks(), CREATED)
  local code, out = cli.run { "undo", file }
  t.eq(code, 0, out)
  t.eq(tasks(), {})
end)


-- {====== tenants with legacy reload tasks
-- A tenant where an earlier version of this tool (or someone) made
-- reload tasks through the Reload Tasks API: Sales and Ops exist already
-- (the fixture steps adopt them by name), bob is another user.
local SECOND_FRIDAY = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYDAY=2FR;BYHOUR=5;BYMINUTE=45;BYSECOND=0"
local function the_legacy_sim()
  if legacy_sim then legacy_sim:reset(); return legacy_sim end
  local site = json.decode(t.read(FIXTURES .. "/sites/schedules.json"))
  site.cloud.users[2] = { subject = "auth0|bob", email = "bob@acme.com", name = "Bob", status = "active" }
  site.cloud.apps = { { name = "Sales", owner = "admin@acme.com" }, { name = "Ops", owner = "admin@acme.com" } }
  site.cloud.reload_tasks = {
    -- made as the importing identity and moved by Qlik to the scheduling service
    { id = "aaaaaaaaaaaaaaaaaaaaaaa1", app = "Ops", owner = "admin@acme.com", migrated = true, name = "Reload Ops",
      timeZone = "UTC", startDateTime = "2024-02-29T05:45:00", recurrence = { SECOND_FRIDAY } },
    -- made as the importing identity, still on the legacy service
    { id = "aaaaaaaaaaaaaaaaaaaaaaa2", app = "Ops", owner = "admin@acme.com", migrated = false, timeZone = "UTC",
      startDateTime = "2024-06-01T09:00:00", recurrence = { "RRULE:FREQ=DAILY;COUNT=1" } },
    -- the same schedule as trigger 'Old trigger', made by bob: not this project's
    { id = "bbbbbbbbbbbbbbbbbbbbbbb3", app = "Ops", owner = "bob@acme.com", migrated = true, timeZone = "Europe/Paris",
      startDateTime = "2024-01-11T04:00:00",
      recurrence = { "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=4;BYMINUTE=0;BYSECOND=0" } },
  }
  legacy_sim = simlib.start { site = site }
  return legacy_sim
end

local function legacy_job(s)
  local file, dir = job { sim = s, concurrency = 1 }
  return file, dir
end

local function ops_tasks(s)
  local ops, out = nil, {}
  for _, a in ipairs(s:state().cloud.apps) do if a.name == "Ops" then ops = a.id end end
  for _, k in ipairs(s:state().cloud.scheduling_tasks) do
    if k.resourceId == ops then out[#out + 1] = k end
  end
  return out
end

T.test("legacy reload tasks of this identity are recognised, not duplicated; someone else's are not adopted", function()
  local s = the_legacy_sim()
  local file = legacy_job(s)
  local before = #ops_tasks(s)
  t.eq(before, 2)  -- the two that Qlik moved
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, string.format("apps%%.schedules%%s+%d created, 2 adopted, %d skipped", CREATED - 3, SKIPPED + 1))
  t.match(err, "the app already has the task '[^']*' %(%S+%) with this schedule, made by user %x+ and not by this "
    .. "project: it is not adopted")
  -- the chain follows the moved task, and says it cannot follow the one still on the legacy service
  local reasons = {}
  for _, r in ipairs(status_json(file)) do reasons[#reasons + 1] = tostring(r.reason) end
  t.match(table.concat(reasons, "\n"),
    "'Reload Ops / One%-off' is still the legacy reload task aaaaaaaaaaaaaaaaaaaaaaa2")
  local st = s:state().cloud
  local legacy = {}
  for _, k in ipairs(st.reload_tasks) do legacy[k.id] = k end
  t.truthy(legacy.aaaaaaaaaaaaaaaaaaaaaaa2, "the legacy task as the source says is left where it is")
  -- no second Second Friday or One-off task, bob's task untouched
  local seen = {}
  for _, k in ipairs(ops_tasks(s)) do
    local key = k.start and (k.start.schedule.recurrence .. " " .. k.start.schedule.startDateTime) or k.name
    t.eq(seen[key], nil, "duplicate " .. key)
    seen[key] = true
    if k.metadata.migratedFrom == "bbbbbbbbbbbbbbbbbbbbbbb3" then t.eq(k.name, "Reload Ops") end
  end
  t.truthy(seen[SECOND_FRIDAY .. " 2024-02-29T05:45:00"])
  t.eq(seen["RRULE:FREQ=DAILY;COUNT=1 2024-06-01T09:00:00"], nil)
  s:reset_counters()
  t.eq(cli.run { "run", file }, 0)
  t.eq(s:counts().total_writes, 0)
  -- undo removes what this project created, never the adopted tasks
  t.eq(cli.run { "undo", file }, 0)
  t.eq(#ops_tasks(s), 2)
  t.truthy(#s:state().cloud.reload_tasks == 3)
end)

T.test("a project made by an earlier version (legacy task ids in its cache) follows Qlik's move; undo too", function()
  local s = the_legacy_sim()
  local file, dir = legacy_job(s)
  t.eq(cli.run { "run", file, "--step", "fixture7.apps", "--step", "fixture7.publish" }, 0)
  -- what the earlier version recorded: the two legacy tasks as created by run 2, with their undo
  local ids = {}
  for _, ev in ipairs(s:state().qrs.entities.schemaevent) do ids[ev.name] = ev.id end
  local proj = assert(require("qmig.store.project").open(dir .. "/project"))
  local run = proj.cache:start_run { command = "run", job_file = file }
  local earlier = { ["Second Friday"] = "aaaaaaaaaaaaaaaaaaaaaaa1", ["One-off"] = "aaaaaaaaaaaaaaaaaaaaaaa2" }
  for trigger, legacy in pairs(earlier) do
    proj.cache:begin_item("app.schedule", ids[trigger], { step = "apps.schedules", run_id = run, fingerprint = "v1" })
    proj.cache:finish_item("app.schedule", ids[trigger], { status = "created", target_id = legacy, created_by_us = true,
      fingerprint = "v1", data = { task = "Reload Ops", trigger = trigger, app_id = apps().Ops } })
    proj.cache:add_undo { run_id = run, step = "apps.schedules", kind = "app.schedule", source_id = ids[trigger],
      target_id = legacy, action = "delete", payload = { method = "DELETE", path = "reload-tasks/" .. legacy } }
  end
  proj.cache:finish_run(run, "done", {})
  proj:close()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  -- Second Friday: the task Qlik moved it to, renamed and marked; One-off: as it is
  t.match(out, string.format("apps%%.schedules%%s+%d created, 1 updated, 1 unchanged, %d skipped", CREATED - 3,
    SKIPPED + 1))
  local moved
  for _, k in ipairs(ops_tasks(s)) do if k.metadata.migratedFrom == "aaaaaaaaaaaaaaaaaaaaaaa1" then moved = k end end
  t.eq(moved.name, "Reload Ops / Second Friday")
  -- undo of the earlier version's run: the moved task refuses DELETE (TASKS-001); the task it became goes
  local cu, ou, eu = cli.run { "undo", file, "--run", tostring(run) }
  t.eq(cu, 0, ou .. eu)
  for _, k in ipairs(ops_tasks(s)) do t.truthy(k.metadata.migratedFrom ~= "aaaaaaaaaaaaaaaaaaaaaaa1", "still there") end
  for _, k in ipairs(s:state().cloud.reload_tasks) do t.truthy(k.id ~= "aaaaaaaaaaaaaaaaaaaaaaa2", "legacy left") end
end)

T.test("today's tenant refuses the removed API: POST /api/v1/reload-tasks answers 410 TASKS-011", function()
  local r = the_sim().control:request { method = "POST", path = "/api/v1/reload-tasks",
    headers = { Authorization = "Bearer " .. the_sim().info.api_key }, json = { appId = "x" } }
  t.eq(r.status, 410)
  t.eq(json.decode(r.body).errors[1].code, "TASKS-011")
end)
-- }======

return T
