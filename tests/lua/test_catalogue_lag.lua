-- A tenant whose listings lag, as Qlik Cloud's do (the simulator's
-- catalogue_lag_ms): the demo migration killed right after the server
-- applied a write (before the client saw the answer), at writes spread
-- over the whole job, and resumed at once, ends each time as one clean
-- run does: no duplicate app, space, user, connection, extension or
-- task, and no app left with its importing name.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local retrieve = require "qmig.clients.retrieve"
local simlib = require "sim"
local demo_outcome = require "demo_outcome"
local demo_share = require "demo_share"

local T = t.suite("catalogue_lag")
local sim, env, dir

local function setup()
  if sim then return end
  sim = simlib.start { site = "examples/demo/site.json" }
  dir = fs.realpath(t.tmpdir())
  -- (each job of the suite has a project of its own: demo_job)
  env = require("demo_env").new(sim, dir, "Finance DB: {username: u, password: p1}\n'Sales DB (CORP_jdoe)': "
    .. "{username: s, password: p2}\n")
end
T.after_all(function() if sim then sim:stop() end end)

-- The demo job without rate limits (the test is about correctness) and
-- with the catalogue lag it should wait out, in a project of its own.
local function demo_job(lag_s)
  local text = t.read("examples/demo/job.yaml")
  local job, n = text:gsub("options: {concurrency: 8}", string.format(
    "options: {concurrency: 8, rate_limits: false, catalogue_lag: %s}", lag_s))
  t.eq(n, 1, "the demo job's options line")
  -- the demo names its QlikView share relative to its own folder
  job = demo_share.absolute(job)
  local d = fs.realpath(t.tmpdir())
  t.write(d .. "/job.yaml", job)
  local e = {}
  for k, v in pairs(env) do e[k] = v end
  e.QMIG_DEMO_PROJECT = d .. "/project"
  return d .. "/job.yaml", e
end

-- What the migration left in the tenant, as sorted lines; objects that
-- must exist once each are counted.
local function signature()
  local c = sim:state().cloud
  local lines, seen, dupes = {}, {}, {}
  local function add(unique, ...)
    local line = table.concat({ ... }, " | ")
    if unique and seen[line] then dupes[#dupes + 1] = line end
    seen[line] = true
    lines[#lines + 1] = line
  end
  local spaces = {}
  for _, s in ipairs(c.spaces) do spaces[s.id] = s.name; add(true, "space", s.name) end
  for _, u in ipairs(c.users) do add(true, "user", tostring(u.email), tostring(u.subject)) end
  for _, d in ipairs(c.data_connections) do add(true, "conn", d.qName, tostring(spaces[d.space or ""])) end
  for _, e in ipairs(c.extensions) do add(true, "extension", e.name) end
  for _, e in ipairs(c.themes) do add(true, "theme", e.name) end
  local apps = {}
  for _, a in ipairs(c.apps) do
    t.eq(a.name:find("[qmig-lua:importing:", 1, true), nil, "an app left with its importing name: " .. a.name)
    -- (a QlikView app's marker holds an id each project generates: its name stands for it)
    local marker = retrieve.read_marker(a.description)
    if marker and marker:find("^qlikview:") then marker = "qlikview:" .. a.name end
    apps[a.id] = (marker or ("unmarked " .. a.name)) .. " in "
      .. tostring(spaces[a.spaceId or ""])
    add(true, "app", apps[a.id])
  end
  for _, k in ipairs(c.scheduling_tasks) do add(true, "task", k.name, tostring(k.enabled)) end
  -- one reload per app: a reload started by the killed attempt is followed, not repeated
  local reloads = {}
  for _, r in ipairs(c.reloads) do
    add(true, "reload", tostring(apps[r.appId]), tostring(reloads[r.appId] or 1))
    reloads[r.appId] = (reloads[r.appId] or 1) + 1
  end
  table.sort(lines)
  return lines, dupes
end

-- Another project on the tenant made the space a moment ago: the listing
-- does not show it yet, the create answers 409 (names are unique), and the
-- space is the one that exists, adopted, not a failure.
T.test("a space made meanwhile by someone else (a 409 on create, not listed yet) is adopted", function()
  setup()
  local file, e = demo_job(3)
  local cloud = require("qmig.clients.cloud").new({ url = sim.info.cloud_url, api_key = sim.info.api_key },
    { rate_limits = false })
  sim:faults { catalogue_lag_ms = 2000 }
  cloud:post("spaces", { name = "Finance", type = "managed" })
  local code, out, err = cli.run({ "run", file, "--step", "spaces.create" }, { env = e })
  sim:faults {}
  t.eq(code, 0, out .. err)
  t.match(out, "spaces%.create%s+4 created, 1 adopted")
  local n = 0
  for _, sp in ipairs(sim:state().cloud.spaces) do if sp.name == "Finance" then n = n + 1 end end
  t.eq(n, 1, "one Finance space")
end)

T.test("killed right after applied writes, resumed at once, at lags up to 3 s: the clean run's end state", function()
  setup()
  sim:reset()
  local clean_file, clean_env = demo_job(0)
  local code, out, err = cli.run({ "run", clean_file }, { env = clean_env })
  demo_outcome.ran(code, out, err)
  local want = signature()
  local total = sim:counts().applied_writes
  t.truthy(total > 100, "the demo makes " .. total .. " writes")
  -- kill points spread over the whole job (a fixed seed: the same each time)
  local rng, points = 20261203, {}
  for i = 1, 12 do
    rng = (rng * 1103515245 + 12345) % 2147483648
    points[i] = math.floor((i - 1) * total / 12) + 1 + rng % math.max(1, total // 12)
  end
  local lagged, cycles = 0, {}
  for i, n in ipairs(points) do
    local lag_ms = ({ 400, 1500, 3000 })[(i - 1) % 3 + 1]
    sim:reset()
    sim:faults { catalogue_lag_ms = lag_ms }
    local file, e = demo_job(lag_ms / 1000 + 1)
    local pid, release = cli.spawn_held({ "run", file }, { env = e })
    sim:faults { catalogue_lag_ms = lag_ms, kill_after_writes = { pid = pid, n = n, signal = 9 } }
    t.eq(release(), 137, "killed at write " .. n)
    t.eq(sim:counts().injected.kill, 1, "the kill at write " .. n .. " happened")
    sim:faults { catalogue_lag_ms = lag_ms }
    local started = qmig.monotonic()
    local c2, o2, e2 = cli.run({ "run", file }, { env = e })
    demo_outcome.ran(c2, o2, e2, "resume after a kill at write " .. n .. " (lag " .. lag_ms .. " ms)")
    cycles[#cycles + 1] = string.format("write %d, lag %d ms: resume %.1f s", n, lag_ms, qmig.monotonic() - started)
    for _, hits in pairs(sim:counts().lagged_listings or {}) do lagged = lagged + hits end
    local got, dupes = signature()
    t.eq(dupes, {}, "duplicates after a kill at write " .. n)
    t.eq(got, want, "end state after a kill at write " .. n .. " (lag " .. lag_ms .. " ms)")
  end
  t.truthy(lagged > 0, "the listings lagged")
  print("  " .. table.concat(cycles, "\n  "))
end)

return T
