-- The demo migration under injected faults, and killed at seeded random
-- moments: every object still migrated exactly once, and the end state
-- the same as an uninterrupted run's.  Both are slow (minutes): they run
-- when QMIG_SOAK=1 (make soak, which CI runs), not in the everyday suite.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local retrieve = require "qmig.retrieve"
local simlib = require "sim"

local T = t.suite("soak")

-- A sim with the demo site and the environment of the demo job.
local function demo(faults)
  local sim = simlib.start { site = "examples/demo/site.json", faults = faults }
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/secrets.yaml", "Finance DB: {username: qlik_reader, password: soak-Pa55word}\n")
  fs.chmod(dir .. "/secrets.yaml", 384)
  -- the demo job, with fast retries so injected faults cost little time
  local job = t.read("examples/demo/job.yaml"):gsub("options: {concurrency: 8}",
    "options: {concurrency: 8, retries: 10, retry_delay: 0.05}")
  t.write(dir .. "/job.yaml", job)
  local env = { QMIG_DEMO_QRS_URL = sim.info.qrs_url, QMIG_DEMO_CLOUD_URL = sim.info.cloud_url,
    QMIG_DEMO_API_KEY = sim.info.api_key, QMIG_DEMO_CERTS = fs.dirname(sim.info.certs.ca),
    QMIG_DEMO_PROJECT = dir .. "/project", QMIG_DEMO_DIR = dir }
  return sim, dir .. "/job.yaml", env
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
    app_space[a.id] = src
    add("app", src, tostring(spaces[a.spaceId or ""]), tostring(users[a.ownerId]), a.script)
    for _, o in ipairs(a.objects or {}) do add("object", src, o.name, tostring(users[o.ownerId])) end
  end
  for _, r in ipairs(c.reload_tasks) do
    add("schedule", tostring(app_space[r.appId]), tostring(r.timeZone), json.encode(r.recurrence), tostring(r.state))
  end
  table.sort(lines)
  return lines
end

local function once_each(state)
  local seen = {}
  for _, line in ipairs(signature(state)) do
    if line:match("^app ") or line:match("^space ") or line:match("^conn ") then
      t.eq(seen[line], nil, "duplicate: " .. line)
      seen[line] = true
    end
  end
end

T.test("the demo job under 10 % 5xx, 5 % 429, 2 % dropped and slow replies: exit 0, everything once", function()
  if os.getenv("QMIG_SOAK") ~= "1" then return "skip" end
  local sim, file, env = demo { seed = 3, error_rate = 0.1, rate_429 = 0.05, retry_after = 1, drop_rate = 0.02,
    drop_after_apply_rate = 0.02, slow_rate = 0.02, slow_ms = 300 }
  local code, out, err = cli.run({ "run", file }, { env = env })
  local counts = sim:counts()
  local faulted = sim:state()
  sim:stop()
  t.eq(code, 0, out .. err)
  once_each(faulted)
  -- the same as a run without faults
  local clean_sim, clean_file, clean_env = demo()
  t.eq(cli.run({ "run", clean_file }, { env = clean_env }), 0)
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

T.test("SIGKILL at 20 seeded random writes (and SIGINT at 5), then resume: the clean run's end state", function()
  if os.getenv("QMIG_SOAK") ~= "1" then return "skip" end
  local sim, file, env = demo()
  t.eq(cli.run({ "run", file }, { env = env }), 0)
  local clean = signature(sim:state())
  local total = sim:counts().total_writes
  sim:stop()
  local survived = 0
  for _, n in ipairs(kill_points(total, 20, 20261125)) do
    local s, f, e = demo()
    local pid, release = cli.spawn_held({ "run", f }, { env = e })
    s:faults { kill_after_writes = { pid = pid, n = n, signal = 9 } }
    local status = release()
    s:faults {}
    t.eq(status, 137, "killed after write " .. n)
    local code, out, err = cli.run({ "run", f }, { env = e })
    t.eq(code, 0, "resume after write " .. n .. ": " .. out .. err)
    t.eq(signature(s:state()), clean, "after a kill at write " .. n)
    s:stop()
    survived = survived + 1
  end
  for i = 1, 5 do
    local s, f, e = demo { latency_ms = 30 }
    local pid, release = cli.spawn_held({ "run", f }, { env = e })
    os.execute(string.format("(sleep %.1f; kill -INT %d) &", 0.5 + i * 0.7, pid))
    local status = release()
    s:faults {}
    t.truthy(status == 130 or status == 0, "SIGINT: exit " .. tostring(status))
    local code, out, err = cli.run({ "run", f }, { env = e })
    t.eq(code, 0, out .. err)
    t.eq(signature(s:state()), clean, "after SIGINT " .. i)
    s:stop()
  end
  print(string.format("     %d kills and 5 interrupts survived (of %d writes in a clean run)", survived, total))
end)

return T
