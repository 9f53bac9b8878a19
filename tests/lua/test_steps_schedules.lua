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
T.after_all(function() if sim then sim:stop() end end)

local STEPS = "[fixture7.apps, fixture7.publish, apps.schedules]"

local function job(opts)
  opts = opts or {}
  local dir = fs.realpath(t.tmpdir())
  local extra = "steps_path: [" .. FIXTURES .. "/steps]"
  if opts.transforms then
    t.write(dir .. "/transforms.lua", opts.transforms)
    extra = extra .. "\ntransforms: transforms.lua"
  end
  t.write(dir .. "/job.yaml", the_sim():job_yaml {
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

-- The Cloud reload tasks as comparable rows, sorted.
local function tasks()
  local names = {}
  for name, id in pairs(apps()) do names[id] = name end
  local rows = {}
  for _, k in ipairs(the_sim():state().cloud.reload_tasks) do
    rows[#rows + 1] = table.concat({ names[k.appId] or k.appId, k.timeZone, k.startDateTime, k.endDateTime,
      table.concat(k.recurrence, "|"), tostring(k.partial), k.state }, " ")
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
}
table.sort(EXPECTED)

-- Reasons every run must show for what is not migrated.
local NOT_MIGRATED = {
  "chained trigger 'After Reload Ops' of task 'Reload Ops chained' %(starts when 'Reload Ops' succeeds%)",
  "task 'Reload Ops manual' has no trigger %(manual only%)",
  "external program task 'Run batch'",
  "app 'Legacy' %([%x-]+%) has not been imported",
  "trigger 'Never fires': the trigger never fires",
}

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
  t.match(out, "apps%.schedules%s+8 created, 5 skipped")
  t.eq(tasks(), EXPECTED)
  -- the Sales schedules went to the published copy, never to the imported app
  local a = apps()
  for _, k in ipairs(the_sim():state().cloud.reload_tasks) do t.truthy(k.appId ~= a.Sales) end
  -- what is not migrated is visible in the run output ...
  for _, pattern in ipairs(NOT_MIGRATED) do t.match(err, pattern, "stderr") end
  t.match(err, "5 trigger%(s%)/task%(s%) not migrated, 5 schedule%(s%) with settings not carried")
  -- ... in status ...
  local rows = status_json(file)
  t.eq(#rows, 13)
  local skipped, reasons = 0, {}
  for _, r in ipairs(rows) do
    if r.status == "skipped" then skipped = skipped + 1 end
    reasons[#reasons + 1] = tostring(r.reason)
  end
  t.eq(skipped, 5)
  local all = table.concat(reasons, "\n")
  for _, pattern in ipairs(NOT_MIGRATED) do t.match(all, pattern, "status") end
  -- dropped settings: session timeout + retries on Reload Sales, permanent standard time
  t.match(all, "task session timeout of 60 min")
  t.match(all, "2 retries after a failed reload are not carried")
  t.match(all, "permanent standard time in Europe/Paris")
  local _, text = cli.run { "status", file }
  t.match(text, "app%.schedule%s+%S+%s+skipped%s+chained trigger")
  -- ... and in the report file
  local report = json.decode(t.read(dir .. "/project/reports/schedules.json"))
  t.eq(#report.not_migrated, 5)
  t.eq(report.migrated, 8)
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

T.test("the re-run makes zero writes and reports the same", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file }, 0)
  the_sim():reset_counters()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "apps%.schedules%s+8 unchanged, 5 skipped")
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
  t.match(out, "apps%.schedules %S+: would create %(POST /api/v1/reload%-tasks%)")
  t.match(out, "apps%.schedules%s+[^\n]*8 planned")
  t.match(out, "apps%.schedules%s+[^\n]*5 skipped")
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(tasks(), {})
end)

T.test("SIGKILL right after a reload-task write, then resume: no duplicate, same end state", function()
  local kills = {
    { match = "POST /api/v1/reload-tasks", nth = 1 },
    { match = "POST /api/v1/reload-tasks", nth = 4 },
    { match = "POST /api/v1/reload-tasks", nth = 7 },
    { match = "PUT /api/v1/reload-tasks", nth = 1 },   -- between the POST and the state PUT of a disabled one
  }
  for _, k in ipairs(kills) do
    clean()
    local file = job { concurrency = 1 }
    t.eq(cli.run { "run", file, "--step", "fixture7.apps", "--step", "fixture7.publish" }, 0)
    local pid, release = cli.spawn_held { "run", file }
    the_sim():faults { rules = { { match = k.match, nth = k.nth, action = "kill", pid = pid, signal = 9 } } }
    local status = release()
    t.eq(status, 137, k.match .. " #" .. k.nth)
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
    { match = "POST /api/v1/reload-tasks", nth = 2, action = "drop_after_apply", times = 2 } } }
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
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
  t.match(out, "apps%.schedules%s+8 adopted, 5 skipped")
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(tasks(), EXPECTED)
end)

T.test("--force puts back a task changed or deleted in the tenant", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file }, 0)
  local list = the_sim():state().cloud.reload_tasks
  local ctl = the_sim().control
  local auth = { Authorization = "Bearer " .. the_sim().info.api_key }
  local changed, deleted
  for _, k in ipairs(list) do
    if k.state == "Enabled" and not changed then changed = k
    elseif k.state == "Enabled" and not deleted then deleted = k end
  end
  local r = ctl:request { method = "PUT", path = "/api/v1/reload-tasks/" .. changed.id, headers = auth,
    json = { state = "Disabled", recurrence = { "RRULE:FREQ=DAILY;INTERVAL=7" } } }
  t.eq(r.status, 200, r.body)
  r = ctl:request { method = "DELETE", path = "/api/v1/reload-tasks/" .. deleted.id, headers = auth }
  t.eq(r.status, 204)
  local code, out, err = cli.run { "run", file, "--force", "--step", "apps.schedules" }
  t.eq(code, 0, out .. err)
  t.match(out, "1 created, 1 updated, 6 unchanged, 5 skipped")
  t.eq(tasks(), EXPECTED)
  -- undo of the update restores what the tenant had before it
  t.eq(cli.run { "undo", file, "--run", "2" }, 0)
  local found = false
  for _, k in ipairs(the_sim():state().cloud.reload_tasks) do
    if k.id == changed.id then
      found = true
      t.eq(k.state, "Disabled")
      t.eq(k.recurrence, { "RRULE:FREQ=DAILY;INTERVAL=7" })
    end
  end
  t.truthy(found)
end)

T.test("the schedule transform hook may change a task or leave it out", function()
  clean()
  local file = job { transforms = [[
return {
  schedule = function(event, task)
    if event.name == "Month end" then return nil end
    if event.name == "Daily 6am" then task.partial = true end
    return task
  end,
}
]] }
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "apps%.schedules%s+7 created, 6 skipped")
  t.match(err, "left out by transforms%.lua")
  local rows = tasks()
  t.eq(#rows, 7)
  t.match(table.concat(rows, "\n"), "Europe/Paris 2024%-01%-11T06:00:00  RRULE:FREQ=DAILY;[^ ]+ true Enabled")
  t.eq(table.concat(rows, "\n"):find("Australia/Sydney", 1, true), nil)
end)

T.test("an app published after its schedules were made: they move to the published copy", function()
  clean()
  local file = job()
  local code, out, err = cli.run { "run", file, "--step", "fixture7.apps", "--step", "apps.schedules" }
  t.eq(code, 0, out .. err)
  local a = apps()
  local on_imported = 0
  for _, k in ipairs(the_sim():state().cloud.reload_tasks) do
    if k.appId == a.Sales then on_imported = on_imported + 1 end
  end
  t.eq(on_imported, 4)
  code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "apps%.schedules%s+4 created, 4 unchanged, 5 skipped")
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
-- apps.publish) when the tree has it: Finance is a managed space, so Sales
-- is published there and its schedules go on the published app.
T.test("with the real apps.import and apps.publish", function()
  for _, f in ipairs { "export", "import", "publish" } do
    if not fs.exists("steps/apps/" .. f .. ".lua") then return "skip" end
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
  t.match(out, "apps%.schedules%s+9 created, 4 skipped")  -- Legacy is imported by the real step
  local st = the_sim():state().cloud
  local managed, sales
  for _, sp in ipairs(st.spaces) do if sp.name == "Finance" then managed = sp.id end end
  for _, a in ipairs(st.apps) do if a.name == "Sales" and a.spaceId == managed then sales = a.id end end
  t.truthy(sales, "Sales published in the managed space")
  local on_sales = 0
  for _, k in ipairs(st.reload_tasks) do if k.appId == sales then on_sales = on_sales + 1 end end
  t.eq(on_sales, 4)
  the_sim():reset_counters()
  t.eq(cli.run { "run", file }, 0)
  t.eq(the_sim():counts().total_writes, 0)
end)

T.test("undo removes every task the run created", function()
  clean()
  local file = job()
  t.eq(cli.run { "run", file }, 0)
  t.eq(#tasks(), 8)
  local code, out = cli.run { "undo", file }
  t.eq(code, 0, out)
  t.eq(tasks(), {})
end)

return T
