-- Target objects deleted by hand in the tenant after a run: a done record
-- is checked with one read (step.target_path) instead of being trusted, so
-- the next run makes a deleted space again and imports its apps into it,
-- redoes what was done on them, and reports (not recreates) a deleted user;
-- the cost is at most one read per record.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local http = require "qmig.http"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"
local simlib = require "sim"
local demo_outcome = require "demo_outcome"

local T = t.suite("gone")
local started = {}  -- stopped at the end even when a test fails half-way
T.after_all(function() for _, sim in ipairs(started) do sim:stop() end end)

local function demo()
  local sim = simlib.start { site = "examples/demo/site.json" }
  started[#started + 1] = sim
  local dir = fs.realpath(t.tmpdir())
  local env = require("demo_env").new(sim, dir, "Finance DB: {username: u, password: pw}\n")
  return sim, env
end

local function run(env, ...)
  return cli.run({ "run", "examples/demo/job.yaml", ... }, { env = env })
end

-- What a tenant admin does by hand: the Cloud API with the API key.
local function cloud_delete(sim, path)
  local c = http.client { base_url = sim.info.cloud_url,
    headers = { Authorization = "Bearer " .. sim.info.api_key } }
  local resp = assert(c:request { method = "DELETE", path = "/api/v1/" .. path })
  t.truthy(resp.status >= 200 and resp.status < 300, "DELETE " .. path .. ": " .. resp.status .. " " .. resp.body)
end

local function step_line(out, step)
  return out:match("\n  " .. step:gsub("%p", "%%%0") .. " +([^\n]*)") or ("(no line for " .. step .. ")")
end

local function named(list, name)
  for _, x in ipairs(list) do if x.name == name then return x end end
  return nil
end

-- Reads of one object by id (GET /api/v1/<things>/{id}, a scheduling task).
local function reads_by_id(counts)
  local n = 0
  for endpoint, c in pairs(counts.requests) do
    if endpoint:match("^GET /api/v1/[%w-]+/{[%w]+}$") or endpoint:match("^GET /api/scheduling/tasks/{[%w]+}$") then
      n = n + c
    end
  end
  return n
end

T.test("a space and an app deleted in the tenant are made again; the rest is unchanged; then no writes", function()
  local sim, env = demo()
  local code, out, err = run(env)
  demo_outcome.ran(code, out, err)

  -- By hand: the managed space Sales (emptied first: Qlik Cloud deletes
  -- only empty spaces), and an app of another space.
  local st = sim:state().cloud
  local sales = assert(named(st.spaces, "Sales"), "a space Sales")
  local sales_sources = {}
  for _, app in ipairs(st.apps) do
    if app.spaceId == sales.id then
      sales_sources[#sales_sources + 1] = retrieve.read_marker(app.description)
      cloud_delete(sim, "apps/" .. app.id)
    end
  end
  t.eq(#sales_sources, 3, "the Sales apps")
  for _, dc in ipairs(st.data_connections) do
    if dc.space == sales.id and dc.qName ~= "DataFiles" then cloud_delete(sim, "data-connections/" .. dc.qID) end
  end
  cloud_delete(sim, "spaces/" .. sales.id)
  local hr = assert(named(st.apps, "HR Headcount"), "the app HR Headcount")
  cloud_delete(sim, "apps/" .. hr.id)

  -- The plan says what the run will do.
  code, out, err = cli.run({ "plan", "examples/demo/job.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "spaces%.create 'Sales' %([^)]*%): would recreate")
  t.match(out, "apps%.import 'HR Headcount' %([^)]*%): would recreate")
  t.match(step_line(out, "spaces.create"), "^1 to recreate, 4 no change$")

  code, out, err = run(env)
  demo_outcome.ran(code, out, err)
  t.eq(step_line(out, "users.import"), "7 unchanged")
  t.eq(step_line(out, "extensions.import"), "2 unchanged")
  t.eq(step_line(out, "spaces.create"), "1 created, 4 unchanged")
  t.eq(step_line(out, "dataconnections.migrate"), "2 created, 3 unchanged, 2 skipped")
  t.eq(step_line(out, "apps.export"), "12 unchanged")
  t.eq(step_line(out, "apps.import"), "4 created, 8 unchanged")
  t.match(step_line(out, "apps.publish"), "^3 created, 5 unchanged, 4 skipped$")
  t.match(step_line(out, "apps.reload"), "^4 created, 8 unchanged$")
  -- (demo_outcome.ran: nothing failed but the app the demo site makes differ)

  -- In the tenant: a new Sales space holding its three apps, and one app
  -- per source app, HR Headcount back in Everyone.
  st = sim:state().cloud
  local new_sales = assert(named(st.spaces, "Sales"), "Sales made again")
  t.truthy(new_sales.id ~= sales.id, "a new space")
  local count, in_sales = {}, {}
  for _, app in ipairs(st.apps) do
    local src = retrieve.read_marker(app.description)
    if src then count[src] = (count[src] or 0) + 1 end
    if app.spaceId == new_sales.id then in_sales[#in_sales + 1] = src end
  end
  local n = 0
  for _, c in pairs(count) do n = n + 1; t.eq(c, 1, "one app per source app") end
  -- 12 Qlik Sense apps and the 2 QlikView documents with -prj folders
  t.eq(n, 14, "every source app is in the tenant")
  table.sort(sales_sources)
  table.sort(in_sales)
  t.eq(json.encode(in_sales), json.encode(sales_sources), "the Sales apps are in the new Sales space")
  t.eq(named(st.apps, "HR Headcount").spaceId, named(st.spaces, "Everyone").id)

  -- A re-run of the finished job writes nothing; what checking costs: at
  -- most one read per record.
  sim:reset_counters()
  code, out, err = run(env)
  demo_outcome.ran(code, out, err)
  local counts = sim:counts()
  t.eq(counts.total_writes, 0, "the run after makes no write: " .. out)
  local reads = reads_by_id(counts)
  local db = require("qmig.sqlite").open(env.QMIG_DEMO_PROJECT .. "/qmig.db")
  local records = 0
  for row in db:rows([[SELECT count(*) AS n FROM items WHERE target_id IS NOT NULL
      AND status IN ('created', 'updated', 'adopted', 'unchanged') AND kind IN ('user', 'extension', 'theme',
      'space', 'dataconnection', 'app', 'app.published', 'app.schedule')]]) do records = row.n end
  db:close()
  io.stderr:write(string.format("  [gone] re-run of the demo: %d reads by id for %d records (%d requests in all)\n",
    reads, records, counts.total))
  t.truthy(reads > 0 and reads <= records, string.format("%d reads for %d records", reads, records))
  sim:stop()
end)

T.test("a user deleted in the tenant is reported with what to do, not invited back; --force makes it again",
  function()
  local sim, env = demo()
  local code, out, err = run(env, "--job", "identities")
  t.eq(code, 0, out .. err)
  local function epatel()
    for _, u in ipairs(sim:state().cloud.users) do if u.email == "epatel@corp.example" then return u end end
    return nil
  end
  local user = assert(epatel(), "epatel in the tenant")
  cloud_delete(sim, "users/" .. user.id)

  for _ = 1, 2 do  -- reported again on the next run, without a read or a write
    sim:reset_counters()
    code, out, err = run(env, "--job", "identities")
    t.eq(code, 1, out .. err)
    t.eq(step_line(out, "users.import"), "6 unchanged, 1 failed")
    t.match(out, "deleted in the tenant: user 'epatel@corp%.example' %(" .. user.id .. "%) is gone and is not made "
      .. "again on its own; to make it again: qmig%-lua run examples/demo/job%.yaml %-%-step users%.import %-%-force")
    t.eq(sim:counts().total_writes, 0)
  end
  local reported = sim:counts().requests["GET /api/v1/users/{userId}"] or 0
  t.eq(reported, 6, "the reported user is not read again")
  t.eq(epatel(), nil, "not invited back")
  local _, status_out = cli.run({ "status", "examples/demo/job.yaml", "--failed" }, { env = env })
  t.match(status_out, "deleted in the tenant")

  code, out, err = run(env, "--step", "users.import", "--force")
  t.eq(code, 0, out .. err)
  local back = epatel()
  t.truthy(back and back.id ~= user.id, "made again")
  code, out, err = run(env, "--job", "identities")
  t.eq(code, 0, out .. err)
  t.eq(step_line(out, "users.import"), "7 unchanged")
  sim:stop()
end)

-- In the engine itself, with a tenant that answers 404 for one object: a
-- path several steps name is read once per run, a record of a step without
-- target_path is not read, a gone object is made again through run.
T.test("engine: one read per path per run, whichever steps name it; a gone object runs its step again", function()
  local engine = require "qmig.engine.step"
  local errors = require "qmig.clients.errors"
  local cache = assert(require("qmig.store.cache").open(t.tmpdir() .. "/qmig.db"))
  local reads, made = {}, {}
  local target = {
    get = function(_, path)
      reads[#reads + 1] = path
      if path == "things/t2" then error(errors.new { message = "GET " .. path .. ": 404", status = 404 }, 0) end
      return { id = path }
    end,
  }
  local function step(name, object, with_path)
    return { name = name, title = name, order = 1, object = object,
      items = function() return { { id = "1" }, { id = "2" } } end,
      key = function(x) return x.id end, fingerprint = function(x) return x.id end,
      target_path = with_path and function(rec) return "things/" .. rec.target_id end or nil,
      run = function(ctx, x)
        made[#made + 1] = name .. " " .. x.id .. (ctx.previous and " again" or " fresh")
        return { status = "created", target_id = "t" .. x.id .. "b" }
      end }
  end
  for _, kind in ipairs { "a", "b", "c" } do
    for _, id in ipairs { "1", "2" } do
      cache:begin_item(kind, id, { step = "fake." .. kind })
      cache:finish_item(kind, id, { status = "created", target_id = "t" .. id, fingerprint = id })
    end
  end
  local eng = engine.new { job = { options = {}, plan = {} }, project = { cache = cache }, target = target }
  local a = eng:run_step(step("fake.a", "a", true))
  local b = eng:run_step(step("fake.b", "b", true))
  local c = eng:run_step(step("fake.c", "c", false))
  table.sort(reads)
  t.eq(reads, { "things/t1", "things/t2" }, "each path once, for both steps")
  t.eq(a.counts, { unchanged = 1, created = 1 })
  t.eq(b.counts, { unchanged = 1, created = 1 }, "the second step knows t2 is gone without a read")
  t.eq(c.counts, { unchanged = 2 }, "no target_path: trusted as before")
  t.eq(made, { "fake.a 2 fresh", "fake.b 2 fresh" }, "run as if never done")
  local rec = cache:get("a", "2")
  t.eq(rec.target_id, "t2b")
  t.match(rec.reason, "^a t2 was deleted in the tenant; made again$")
  cache:close()
end)

return T
