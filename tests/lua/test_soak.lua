-- The demo migration under injected faults, and killed at seeded random
-- moments: every object still migrated exactly once, and the end state
-- the same as an uninterrupted run's.  The same for the demo's NPrinting
-- job (examples/demo/nprinting.yaml, after the demo job in its project).  Both are slow (minutes): they run
-- when QMIG_SOAK=1 (make soak, which CI runs), not in the everyday suite.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"
local simlib = require "sim"
local demo_outcome = require "demo_outcome"
local demo_share = require "demo_share"

local T = t.suite("soak")

-- A sim with the demo site and the environment of the demo job.
local function demo(faults)
  local sim = simlib.start { site = "examples/demo/site.json", faults = faults }
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/secrets.yaml", "Finance DB: {username: qlik_reader, password: soak-Pa55word}\n")
  fs.chmod(dir .. "/secrets.yaml", 384)
  -- the demo job, with fast retries so injected faults cost little time
  -- (its QlikView share is named relative to examples/demo)
  local job = demo_share.absolute((t.read("examples/demo/job.yaml"):gsub("options: {concurrency: 8}",
    "options: {concurrency: 8, retries: 10, retry_delay: 0.05, catalogue_lag: 4}")))
  t.write(dir .. "/job.yaml", job)
  local env = { QMIG_DEMO_QRS_URL = sim.info.qrs_url, QMIG_DEMO_CLOUD_URL = sim.info.cloud_url,
    QMIG_DEMO_API_KEY = sim.info.api_key, QMIG_DEMO_CERTS = fs.dirname(sim.info.certs.ca),
    QMIG_DEMO_PROJECT = dir .. "/project", QMIG_DEMO_DIR = dir, QMIG_DEMO_NP_URL = sim.info.nprinting_url,
    QMIG_DEMO_NP_JWT = sim.info.nprinting_jwt, QMIG_DEMO_NP_EXPORT = sim.info.nprinting_export }
  return sim, dir .. "/job.yaml", env
end

-- The demo's NPrinting job next to that job file, with the same fast retries.
local function nprinting_job(file)
  local np = file:gsub("job%.yaml$", "nprinting.yaml")
  t.write(np, t.read("examples/demo/nprinting.yaml")
    .. "options: {concurrency: 8, retries: 10, retry_delay: 0.05, catalogue_lag: 4}\n")
  return np
end

-- What a migration leaves in the tenant, as comparable text: names of
-- spaces, users, connections, extensions, apps (by source marker, with
-- their space and owner), objects' owners, reload tasks.
local function signature(state)
  local c = state.cloud
  local spaces, users = {}, {}
  for _, s in ipairs(c.spaces) do spaces[s.id] = s.name end
  for _, u in ipairs(c.users) do users[u.id] = u.email or u.subject end
  local lines = {}
  local function add(...) lines[#lines + 1] = table.concat({ ... }, " | ") end
  for _, s in ipairs(c.spaces) do add("space", s.name, s.type, tostring(users[s.ownerId])) end
  for _, u in ipairs(c.users) do add("user", tostring(u.email), tostring(u.subject), u.status) end
  for _, d in ipairs(c.data_connections) do add("conn", d.qName, tostring(spaces[d.space or d.spaceId or ""])) end
  for _, e in ipairs(c.extensions) do add("extension", e.name) end
  for _, e in ipairs(c.themes) do add("theme", e.name) end
  local app_space = {}
  for _, a in ipairs(c.apps) do
    local src = retrieve.read_marker(a.description) or ("unmarked " .. a.name)
    -- a QlikView document's marker is a uuid its project drew (qvapps.convert): by name instead
    if src:match("^qlikview:") then src = "qlikview " .. a.name end
    app_space[a.id] = src
    add("app", src, tostring(spaces[a.spaceId or ""]), tostring(users[a.ownerId]), a.script)
    for _, o in ipairs(a.objects or {}) do add("object", src, o.name, tostring(users[o.ownerId])) end
  end
  -- scheduling tasks (the chains by the names of the tasks they follow)
  local task_names = {}
  for _, k in ipairs(c.scheduling_tasks) do task_names[k.id] = k.name end
  for _, k in ipairs(c.scheduling_tasks) do
    local follows = {}
    for _, ev in ipairs(k.events or {}) do
      for _, cor in ipairs(ev.correlation or {}) do
        if cor.contextAttributeName == "id" then
          follows[#follows + 1] = tostring(task_names[cor.contextAttributeValue])
        end
      end
    end
    table.sort(follows)
    add("schedule", tostring(app_space[k.resourceId]), k.name,
      k.start and json.encode(k.start.schedule, { sort_keys = true }) or ("after " .. table.concat(follows, ",")),
      tostring(k.enabled))
  end
  for _, r in ipairs(c.reload_tasks) do add("legacy reload task", tostring(app_space[r.appId]), r.id) end
  table.sort(lines)
  return lines
end

local function once_each(state)
  local seen = {}
  for _, line in ipairs(signature(state)) do
    if line:match("^app ") or line:match("^space ") or line:match("^conn ") or line:match("^schedule ") then
      t.eq(seen[line], nil, "duplicate: " .. line)
      seen[line] = true
    end
  end
end

T.test("the demo job under 10 % 5xx, 5 % 429, 2 % dropped and slow replies: the clean run's outcome, everything once",
  function()
  if os.getenv("QMIG_SOAK") ~= "1" then return "skip" end
  local sim, file, env = demo { seed = 3, error_rate = 0.1, rate_429 = 0.05, retry_after = 1, drop_rate = 0.02,
    drop_after_apply_rate = 0.02, slow_rate = 0.02, slow_ms = 300 }
  local code, out, err = cli.run({ "run", file }, { env = env })
  local counts = sim:counts()
  local faulted = sim:state()
  sim:stop()
  demo_outcome.ran(code, out, err)
  -- every kind of fault was injected, not only configured
  for _, kind in ipairs { "error", "429", "drop", "drop_after_apply", "slow" } do
    t.truthy((counts.injected[kind] or 0) > 0, "no " .. kind .. " fault injected: " .. json.encode(counts.injected))
  end
  once_each(faulted)
  -- the same as a run without faults
  local clean_sim, clean_file, clean_env = demo()
  demo_outcome.ran(cli.run({ "run", clean_file }, { env = clean_env }))
  local clean = clean_sim:state()
  clean_sim:stop()
  t.eq(signature(faulted), signature(clean))
  print(string.format("     %d requests, %d with an injected status", counts.total,
    (counts.by_status["503"] or 0) + (counts.by_status["429"] or 0)))
end)

-- A seeded series of kill points among the writes of a clean run.
local function kill_points(total_writes, n, seed)
  math.randomseed(seed)
  local points, seen = {}, {}
  while #points < n do
    local w = math.random(1, total_writes)
    if not seen[w] then seen[w] = true; points[#points + 1] = w end
  end
  table.sort(points)
  return points
end

-- The kills run against listings that lag as Qlik Cloud's do (the
-- simulator's catalogue_lag_ms), at several lags; the job waits 4 s.
local LAGS_MS = { 0, 500, 1500, 3000 }

T.test("SIGKILL at 20 seeded random writes under catalogue lags to 3 s, then resume: the clean run's end state",
  function()
  if os.getenv("QMIG_SOAK") ~= "1" then return "skip" end
  local sim, file, env = demo()
  demo_outcome.ran(cli.run({ "run", file }, { env = env }))
  local clean = signature(sim:state())
  local total = sim:counts().applied_writes  -- kill_after_writes counts applied writes
  sim:stop()
  local survived, resumed, lagged = 0, {}, 0
  for i, n in ipairs(kill_points(total, 20, 20261125)) do
    local lag = LAGS_MS[(i - 1) % #LAGS_MS + 1]
    local s, f, e = demo()
    local pid, release = cli.spawn_held({ "run", f }, { env = e })
    s:faults { catalogue_lag_ms = lag, kill_after_writes = { pid = pid, n = n, signal = 9 } }
    local status = release()
    s:faults { catalogue_lag_ms = lag }
    t.eq(status, 137, "killed after write " .. n)
    t.eq(s:counts().injected.kill, 1, "the kill came from the simulator, after write " .. n)
    local started = qmig.monotonic()
    local code, out, err = cli.run({ "run", f }, { env = e })
    demo_outcome.ran(code, out, err, "resume after write " .. n .. " (lag " .. lag .. " ms)")
    resumed[lag] = (resumed[lag] or 0) + qmig.monotonic() - started
    for _, hits in pairs(s:counts().lagged_listings or {}) do lagged = lagged + hits end
    t.eq(signature(s:state()), clean, "after a kill at write " .. n .. " (lag " .. lag .. " ms)")
    s:stop()
    survived = survived + 1
  end
  t.truthy(lagged > 0, "the listings lagged")
  local figures = {}
  for _, lag in ipairs(LAGS_MS) do
    figures[#figures + 1] = string.format("lag %d ms: %.1f s", lag, resumed[lag] / (20 / #LAGS_MS))
  end
  print(string.format("     %d kills survived (of %d applied writes in a clean run); mean resume %s; %d listings "
    .. "lagged", survived, total, table.concat(figures, ", "), lagged))
end)

T.test("SIGINT at 5 seeded writes, then resume: exit 130, then the clean run's end state", function()
  if os.getenv("QMIG_SOAK") ~= "1" then return "skip" end
  local sim, file, env = demo()
  demo_outcome.ran(cli.run({ "run", file }, { env = env }))
  local clean = signature(sim:state())
  local total = sim:counts().applied_writes
  sim:stop()
  -- SIGINT sent by the simulator after a seeded write (then that reply is
  -- lost): the interrupt always lands mid-run, and the run must stop with 130
  for i, n in ipairs(kill_points(total, 5, 20261203)) do
    local s, f, e = demo()
    local pid, release = cli.spawn_held({ "run", f }, { env = e })
    s:faults { kill_after_writes = { pid = pid, n = n, signal = 2 } }
    local status, out0, err0 = release()
    s:faults {}
    t.eq(s:counts().injected.kill, 1, "SIGINT sent after write " .. n)
    t.eq(status, 130, "SIGINT after write " .. n .. ": " .. out0 .. err0)
    local code, out, err = cli.run({ "run", f }, { env = e })
    demo_outcome.ran(code, out, err)
    t.eq(signature(s:state()), clean, "after SIGINT " .. i)
    s:stop()
  end
  print(string.format("     5 interrupts survived (of %d applied writes in a clean run)", total))
end)

-- What the NPrinting job leaves in the tenant, as comparable text: report
-- templates (by app), sharing tasks (their templates, schedule, recipients,
-- selections) and report filters (by app), by name.
local function reporting(state)
  local c = state.cloud
  local apps, users, templates = {}, {}, {}
  for _, a in ipairs(c.apps) do apps[a.id] = a.name end
  for _, u in ipairs(c.users) do users[u.id] = u.email or u.subject end
  for _, tp in ipairs(c.report_templates) do templates[tp.id] = tp.name end
  local lines = {}
  local function add(...) lines[#lines + 1] = table.concat({ ... }, " | ") end
  for _, tp in ipairs(c.report_templates) do add("template", tostring(apps[tp.sourceAppId]), tp.name, tp.type) end
  for _, k in ipairs(c.sharing_tasks) do
    local on, to = {}, {}
    for _, tp in ipairs(k.templates) do on[#on + 1] = tostring(templates[tp.templateId]) end
    for _, r in ipairs(k.recipients.userIds) do to[#to + 1] = tostring(users[r.value]) end
    table.sort(on)
    table.sort(to)
    add("sharing task", tostring(apps[k.appId]), k.name, table.concat(on, ","), k.scheduleOptions.timezone,
      table.concat(k.scheduleOptions.recurrence, ";"), table.concat(to, ","),
      json.encode(k.state.selections or {}, { sort_keys = true }))
  end
  for _, f in ipairs(c.report_filters) do
    add("report filter", tostring(apps[f.appId]), f.name, json.encode(f.filterV1_0, { sort_keys = true }))
  end
  table.sort(lines)
  return lines
end

T.test("the NPrinting job SIGKILLed at 5 seeded writes, then resumed: the clean run's end state, each object once; "
  .. "undo of those runs removes them", function()
  if os.getenv("QMIG_SOAK") ~= "1" then return "skip" end
  local sim, file, env = demo()
  demo_outcome.ran(cli.run({ "run", file }, { env = env }))
  sim:reset_counters()
  local code, out, err = cli.run({ "run", nprinting_job(file) }, { env = env })
  t.eq(code, 0, out .. err)
  local clean = reporting(sim:state())
  local total = sim:counts().applied_writes  -- the NPrinting job's alone
  sim:stop()
  local kinds = {}
  for _, line in ipairs(clean) do kinds[line:match("^[^|]+")] = true end
  t.eq(kinds, { ["template "] = true, ["sharing task "] = true, ["report filter "] = true }, table.concat(clean, "\n"))
  for _, n in ipairs(kill_points(total, 5, 20261204)) do
    local s, f, e = demo()
    demo_outcome.ran(cli.run({ "run", f }, { env = e }))   -- run 1
    local np = nprinting_job(f)
    local pid, release = cli.spawn_held({ "run", np }, { env = e })   -- run 2, killed
    s:faults { kill_after_writes = { pid = pid, n = n, signal = 9 } }
    local status = release()
    s:faults {}
    t.eq(status, 137, "killed after NPrinting write " .. n)
    t.eq(s:counts().injected.kill, 1, "the kill came from the simulator, after NPrinting write " .. n)
    code, out, err = cli.run({ "run", np }, { env = e })   -- run 3
    t.eq(code, 0, "resume after NPrinting write " .. n .. ": " .. out .. err)
    local after = s:state()
    local seen = {}
    for _, line in ipairs(reporting(after)) do
      local key = line:match("^([^|]+|[^|]+|[^|]+)")
      t.eq(seen[key], nil, "duplicate after a kill at NPrinting write " .. n .. ": " .. key)
      seen[key] = true
    end
    t.eq(reporting(after), clean, "after a kill at NPrinting write " .. n)
    -- undo of the two NPrinting runs, newest first: what they made goes, the demo job's apps stay
    for _, run in ipairs { "3", "2" } do
      code, out, err = cli.run({ "undo", np, "--run", run, "--yes" }, { env = e })
      t.eq(code, 0, "undo --run " .. run .. " after a kill at NPrinting write " .. n .. ": " .. out .. err)
    end
    local undone = s:state().cloud
    t.eq({ #undone.report_templates, #undone.sharing_tasks, #undone.report_filters }, { 0, 0, 0 },
      "undo after a kill at NPrinting write " .. n)
    t.eq(#undone.apps, #after.cloud.apps)
    s:stop()
  end
  print(string.format("     5 kills of the NPrinting job survived (of %d applied writes in a clean run)", total))
end)

-- Kills that do not land right after a handled request: in the middle of
-- a QVF download, during a lookup, and inside the engine's own cache
-- commit (the QMIG_TEST_KILL_AT_COMMIT hook in qmig.store.cache).
T.test("SIGKILL mid-download of a QVF, during a lookup and inside a cache commit, then resume", function()
  if os.getenv("QMIG_SOAK") ~= "1" then return "skip" end
  local sim, file, env = demo()
  demo_outcome.ran(cli.run({ "run", file }, { env = env }))
  local clean = signature(sim:state())
  sim:stop()
  local points = {}
  for _, nth in ipairs { 1, 5, 11 } do
    points[#points + 1] = { what = "mid-download of QVF #" .. nth,
      rule = { match = "~^GET /(qrs/)?tempcontent/", nth = nth, action = "kill_mid_reply" } }
  end
  points[#points + 1] = { what = "during the first QRS app lookup",
    rule = { match = "GET /qrs/app/full", nth = 1, action = "kill" } }
  points[#points + 1] = { what = "during a Cloud space lookup",
    rule = { match = "GET /api/v1/spaces", nth = 3, action = "kill" } }
  for _, n in ipairs { 1, 4, 12 } do points[#points + 1] = { what = "inside cache commit " .. n, commit = n } end
  for _, p in ipairs(points) do
    local s, f, e = demo()
    local held_env = {}
    for k, v in pairs(e) do held_env[k] = v end
    if p.commit then held_env.QMIG_TEST_KILL_AT_COMMIT = tostring(p.commit) end
    local pid, release = cli.spawn_held({ "run", f }, { env = held_env })
    if p.rule then
      p.rule.pid = pid
      s:faults { rules = { p.rule } }
    end
    local status, out0, err0 = release()
    s:faults {}
    t.eq(status, 137, p.what .. ": " .. out0 .. err0)
    if p.rule then t.eq(s:counts().injected[p.rule.action], 1, p.what .. ": injected") end
    local code, out, err = cli.run({ "run", f }, { env = e })
    demo_outcome.ran(code, out, err, "resume after a kill " .. p.what)
    t.eq(signature(s:state()), clean, "after a kill " .. p.what)
    s:stop()
  end
  print(string.format("     %d kills inside transfers, lookups and commits survived", #points))
end)

return T
