-- The engine end to end against qliksim, through the qmig-lua command
-- line: re-runs without writes, crash resume without duplicates, lost
-- replies, step resolution, bad job files, undo, exit statuses.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local simlib = require "sim"

local T = t.suite("engine")
local sim
local FIXTURES = fs.realpath("tests/lua/fixtures")

local function the_sim()
  if not sim then sim = simlib.start() end
  return sim
end

T.after_all(function() if sim then sim:stop() end end)

-- A fresh project and job file running test.spaces.
local function job(opts)
  opts = opts or {}
  local dir = fs.realpath(t.tmpdir())
  local text = the_sim():job_yaml {
    project_dir = dir .. "/project", api_key = opts.api_key, concurrency = opts.concurrency,
    extra = "steps_path: [" .. table.concat(opts.steps_path or { FIXTURES .. "/steps" }, ", ") .. "]",
    jobs = opts.jobs or "  - {name: containers, steps: [test.spaces]}",
  }
  t.write(dir .. "/job.yaml", text)
  return dir .. "/job.yaml", dir
end

local function test_spaces()
  local out = {}
  for _, s in ipairs(the_sim():state().cloud.spaces) do
    if s.name:match("^T_") then out[#out + 1] = s.name end
  end
  table.sort(out)
  return out
end

local ALL = { "T_Everyone", "T_Finance", "T_Operations", "T_Sales" }

local function clean()
  the_sim():reset()
  the_sim():faults {}
end

T.test("a run creates every object once; the re-run makes zero writes", function()
  clean()
  local file = job()
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "test%.spaces%s+4 created")
  t.eq(test_spaces(), ALL)
  local html = out:match("report: (%S+report%.html)")
  t.truthy(html and t.read(html):find('data-outcome="created">4<', 1, true), "the run wrote its report")
  the_sim():reset_counters()
  code, out = cli.run { "run", file }
  t.eq(code, 0)
  t.match(out, "4 unchanged")
  t.eq(the_sim():counts().total_writes, 0)
end)

T.test("plan describes what run would do and writes nothing", function()
  clean()
  local file = job()
  the_sim():reset_counters()
  local code, out, err = cli.run { "plan", file }
  t.eq(code, 0, err)
  t.match(out, "test%.spaces 'Sales' %(%S+%): would create as 'T_Sales' %(POST /api/v1/spaces%)")
  t.match(out, "4 to create")
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(test_spaces(), {})
end)

T.test("an existing object with the natural key is adopted, not duplicated", function()
  clean()
  local file = job()
  the_sim():reset_counters()
  local resp = assert(the_sim().control:request { method = "POST", path = "/api/v1/spaces",
    headers = { Authorization = "Bearer " .. the_sim().info.api_key }, json = { name = "T_Sales", type = "shared" } })
  t.eq(resp.status, 201)
  local code, out = cli.run { "run", file }
  t.eq(code, 0)
  t.match(out, "3 created, 1 adopted")
  t.eq(test_spaces(), ALL)
end)

T.test("a reply lost after the server applied the write never duplicates", function()
  clean()
  local file = job()
  the_sim():faults { rules = { { match = "POST /api/v1/spaces", nth = 1, action = "drop_after_apply", times = 2 } } }
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  t.eq(test_spaces(), ALL)
end)

T.test("SIGKILL right after the server applied the Nth write, then resume: same end state", function()
  for n = 1, 4 do
    clean()
    local file = job { concurrency = 2 }
    local pid, release = cli.spawn_held { "run", file }
    the_sim():faults { kill_after_writes = { pid = pid, n = n, signal = 9 } }
    local status = release()
    t.eq(status, 137, "killed at write " .. n)
    the_sim():faults {}
    local code, out, err = cli.run { "run", file }
    t.eq(code, 0, out .. err)
    t.eq(test_spaces(), ALL, "after kill at write " .. n)
    the_sim():reset_counters()
    code = cli.run { "run", file }
    t.eq(code, 0)
    t.eq(the_sim():counts().total_writes, 0, "third run after kill at write " .. n)
  end
end)

T.test("undo after a run leaves the target as it was before", function()
  clean()
  local file = job()
  local before = the_sim():state().cloud.spaces
  t.eq(cli.run { "run", file }, 0)
  t.eq(#test_spaces(), 4)
  local code, out = cli.run { "undo", file, "--dry-run" }
  t.eq(code, 0)
  t.match(out, "would DELETE spaces/")
  t.eq(#test_spaces(), 4)
  -- on a terminal it asks first (a pty through script(1)); "n" changes nothing
  local function on_tty(answer, args)
    local p = io.popen(string.format("printf '%s\\n' | timeout -k 5 60 script -qec %s /dev/null", answer,
      cli.quote(cli.bin .. " " .. args .. " " .. cli.quote(file))))
    local text = p:read("a")
    p:close()
    return text
  end
  local asked = on_tty("n", "undo")
  t.match(asked, "undo reverses 4 recorded change%(s%):.-test%.space%s+4 to delete.-%? %[y/N%]", asked)
  t.match(asked, "nothing undone", asked)
  t.eq(#test_spaces(), 4, "answered no")
  code, out = cli.run { "undo", file }
  t.eq(code, 0, out)
  t.eq(test_spaces(), {})
  t.eq(#the_sim():state().cloud.spaces, #before)
  -- and the next run recreates them instead of believing the cache
  t.eq(cli.run { "run", file }, 0)
  t.eq(test_spaces(), ALL)
end)

T.test("a rejected API key stops with exit 3 before anything is written", function()
  clean()
  local file = job { api_key = "wrong-key" }
  the_sim():reset_counters()
  local code, _, err = cli.run { "run", file }
  t.eq(code, 3)
  t.match(err, "401")
  t.eq(the_sim():counts().total_writes, 0)
end)

T.test("a second run on a locked project exits 3", function()
  clean()
  local file, dir = job()
  t.eq(cli.run { "run", file }, 0)
  local lock = assert(fs.lock(dir .. "/project/.lock"))
  local code, _, err = cli.run { "run", file }
  lock:unlock()
  t.eq(code, 3)
  t.match(err, "in use by another qmig%-lua run")
end)

T.test("step search order: steps_path, QMIG_STEPS_PATH, package.path (packs), built-in", function()
  clean()
  local file = job { steps_path = { FIXTURES .. "/override", FIXTURES .. "/steps" },
    jobs = "  - {name: a, steps: [test.spaces, pack.hello]}" }
  local env = { LUA_PATH = FIXTURES .. "/pack/?.lua;;" }
  local code, out, err = cli.run({ "run", file }, { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "test%.spaces%s+nothing to do")  -- the first steps_path folder wins
  t.match(out, "pack%.hello%s+2 skipped")
  -- QMIG_STEPS_PATH comes after the job's steps_path
  file = job { jobs = "  - {name: a, steps: [test.spaces]}" }
  code, out = cli.run({ "run", file, "--dry-run" }, { env = { QMIG_STEPS_PATH = FIXTURES .. "/override" } })
  t.eq(code, 0)
  t.match(out, "4 to create")
end)

local BAD = {
  { "unknown key with suggestion", { jobs = "  - {name: a, steps: [test.spaces]}\nstreems: 1" },
    "job.yaml:%d+: unknown key 'streems'" },
  { "unknown step with suggestion", { jobs = "  - {name: a, steps: [spaces.creat]}" },
    "job.yaml:%d+: unknown step 'spaces.creat' %(did you mean 'spaces.create'%?%)" },
  { "not a step name", { jobs = "  - {name: a, steps: [spaces]}" }, "job.yaml:%d+: jobs%[1%]%.steps%[1%]" },
  { "a delete step without --yes", { jobs = "  - {name: a, steps: [spaces.delete]}" },
    "spaces%.delete deletes objects in the target; run it with %-%-yes" },
  { "duplicate job names", { jobs = "  - {name: a, steps: [test.spaces]}\n  - {name: a, steps: [test.spaces]}" },
    "duplicate name 'a'" },
  { "wrong type", { jobs = "  - {name: a, steps: test.spaces}" }, "expected a list" },
  { "broken step module", { steps_path = { FIXTURES .. "/broken" }, jobs = "  - {name: a, steps: [test.syntax]}" },
    "syntax%.lua:3:" },
  { "step module missing fields", { steps_path = { FIXTURES .. "/broken" },
    jobs = "  - {name: a, steps: [test.fields]}" }, "fields%.lua: field 'run' must be a function" },
}

T.test("bad job files: exit 2, a message naming file and line, zero requests", function()
  clean()
  for _, case in ipairs(BAD) do
    local file = job(case[2])
    the_sim():reset_counters()
    local code, _, err = cli.run { "run", file }
    t.eq(code, 2, case[1])
    t.match(err, case[3], case[1])
    t.eq(the_sim():counts().total, 0, case[1] .. ": no request")
  end
end)

T.test("bad job files: unset variables, missing files, bad YAML", function()
  clean()
  local file, dir = job()
  local text = t.read(file)
  local cases = {
    { text:gsub("api_key: %S+", "api_key: ${QMIG_TEST_UNSET_VAR}"), "QMIG_TEST_UNSET_VAR.- is not set" },
    { text:gsub("cert: %S+", "cert: /nonexistent/client.pem"),
      "job.yaml:%d+: source.cert: file '/nonexistent/client.pem' does not exist" },
    { text .. "\n  - {name: b, steps: [test.spaces]\n", "job.yaml:%d+:%d+: " },
    { text:gsub("version: 1", "version: 2"), "version: must be at most 1" },
  }
  for i, case in ipairs(cases) do
    t.write(dir .. "/job.yaml", case[1])
    the_sim():reset_counters()
    local code, _, err = cli.run { "check", dir .. "/job.yaml" }
    t.eq(code, 2, "case " .. i .. ": " .. err)
    t.match(err, case[2], "case " .. i)
    t.eq(the_sim():counts().total, 0)
  end
end)

T.test("check validates and tests both connections", function()
  clean()
  local code, out, err = cli.run { "check", (job()) }
  t.eq(code, 0, err)
  t.match(out, "source https://127%.0%.0%.1:%d+: QRS ")
  t.match(out, "authenticated as admin@acme%.com")
end)

T.test("undo restores changed values and deletes created objects, newest first; --run N", function()
  clean()
  local file = job { jobs = "  - {name: a, steps: [test.spaces]}\n  - {name: b, steps: [test.describe]}" }
  t.eq(cli.run { "run", file, "--job", "a" }, 0)     -- run 1: creates
  t.eq(cli.run { "run", file, "--job", "b" }, 0)     -- run 2: changes descriptions
  local function descriptions()
    local out = {}
    for _, s in ipairs(the_sim():state().cloud.spaces) do
      if s.name:match("^T_") then out[s.name] = s.description end
    end
    return out
  end
  t.eq(descriptions().T_Sales, "from stream Sales")
  local code, out = cli.run { "undo", file, "--run", "2" }
  t.eq(code, 0, out)
  t.eq(descriptions().T_Sales, "")
  t.eq(#test_spaces(), 4, "run 1 is not undone by --run 2")
  code = cli.run { "undo", file }
  t.eq(code, 0)
  t.eq(test_spaces(), {})
end)

T.test("transforms.lua hooks change what steps produce", function()
  clean()
  local file, dir = job { jobs = "  - {name: a, steps: [test.spaces, test.describe]}" }
  t.write(dir .. "/transforms.lua", [[
    return { space = function(stream, space) space.description = "custom " .. stream.name:upper(); return space end }
  ]])
  t.write(file, t.read(file) .. "transforms: transforms.lua\n")
  local code, out, err = cli.run { "run", file }
  t.eq(code, 0, out .. err)
  for _, s in ipairs(the_sim():state().cloud.spaces) do
    if s.name == "T_Sales" then t.eq(s.description, "custom SALES") end
  end
  t.write(dir .. "/transforms.lua", "return { spaec = function() end }")
  local _
  code, _, err = cli.run { "run", file }
  t.eq(code, 2); t.match(err, "unknown hook 'spaec'")
end)

T.test("a changed source object is updated; unchanged ones are left alone; --force redoes", function()
  clean()
  local file, dir = job { jobs = "  - {name: a, steps: [test.fileitems]}" }
  local items = dir .. "/items.json"
  local env = { QMIG_TEST_ITEMS = items }
  t.write(items, '[{"id": "x", "value": 1}, {"id": "y", "value": 2}]')
  local code, out = cli.run({ "run", file }, { env = env })
  t.eq(code, 0); t.match(out, "2 created")
  t.write(items, '[{"id": "x", "value": 1}, {"id": "y", "value": 3}]')
  code, out = cli.run({ "run", file }, { env = env })
  t.eq(code, 0); t.match(out, "1 updated, 1 unchanged")
  code, out = cli.run({ "run", file, "--force" }, { env = env })
  t.eq(code, 0); t.match(out, "2 updated")
end)

T.test("steps run in the global order whatever order the job lists them in", function()
  clean()
  local file = job { jobs = "  - {name: a, steps: [test.describe, test.spaces]}" }
  local code, out = cli.run { "run", file }
  t.eq(code, 0, out)
  t.truthy(out:find("test.spaces", 1, true) < out:find("test.describe", 1, true))
  t.truthy(not out:find("warning", 1, true), "test.spaces runs before test.describe: no warning")
  file = job { jobs = "  - {name: a, steps: [test.describe]}" }
  code, out = cli.run { "run", file }
  t.eq(code, 0)
  t.match(out, "warning: test%.describe reads the results of test%.spaces, which has never run")
end)

T.test("a .lua job file returning the same table is accepted", function()
  clean()
  local yaml_file, dir = job()
  local doc = require("qmig.yaml").decode(t.read(yaml_file))
  local function dump(v)
    if type(v) == "table" then
      local parts = {}
      for k, x in pairs(v) do parts[#parts + 1] = string.format("[%q] = %s", k, dump(x)) end
      if #v > 0 then parts = {}; for _, x in ipairs(v) do parts[#parts + 1] = dump(x) end end
      return "{" .. table.concat(parts, ", ") .. "}"
    end
    return type(v) == "string" and string.format("%q", v) or tostring(v)
  end
  t.write(dir .. "/job.lua", "return " .. dump(doc))
  local code, out, err = cli.run { "run", dir .. "/job.lua" }
  t.eq(code, 0, out .. err)
  t.eq(test_spaces(), ALL)
  t.write(dir .. "/job.lua", "return {version = 1, jobs = 'x'}")
  local _
  code, _, err = cli.run { "run", dir .. "/job.lua" }
  t.eq(code, 2); t.match(err, "job%.lua: ")
end)

T.test("a forbidden (403) API key also stops with exit 3 before any write", function()
  local dir = fs.realpath(t.tmpdir())
  local site = { qrs = { streams = { { name = "S" } } }, cloud = {
    api_keys = { { key = "test-key", user = "admin@acme.com" },
      { key = "no-rights", user = "admin@acme.com", forbidden = true } },
    users = simlib.ADMIN_CLOUD.users } }
  local s = simlib.start { site = site }
  t.write(dir .. "/job.yaml", s:job_yaml { project_dir = dir .. "/p", api_key = "no-rights",
    extra = "steps_path: [" .. FIXTURES .. "/steps]", jobs = "  - {name: a, steps: [test.spaces]}" })
  local code, _, err = cli.run { "run", dir .. "/job.yaml" }
  local counts = s:counts()
  s:stop()
  t.eq(code, 3); t.match(err, "403")
  t.eq(counts.total_writes, 0)
end)

T.test("progress: a live line on a terminal, JSON lines with --json", function()
  clean()
  local file = job()
  local dir = t.tmpdir()
  -- script(1) gives the run a pseudo-terminal
  os.execute(string.format("script -qec %s %s/typescript >/dev/null 2>&1",
    cli.quote(cli.bin .. " plan " .. file), dir))
  local screen = t.read(dir .. "/typescript")
  t.truthy(screen:find("\r\27%[K  test%.spaces%s+%d/4"), "live progress line")
  t.match(screen, "4 to create")
  clean()
  local code, out = cli.run { "run", file, "--json" }
  t.eq(code, 0)
  local kinds = {}
  for line in out:gmatch("[^\n]+") do
    local ev = assert(require("qmig.json").decode(line), "every line is JSON: " .. line)
    kinds[ev.kind] = (kinds[ev.kind] or 0) + 1
  end
  t.eq(kinds.item, 4); t.eq(kinds.step_start, 1); t.eq(kinds.step_done, 1)
  local done = require("qmig.json").decode(out:match('[^\n]*"step_done"[^\n]*'))
  t.truthy(done.rates and done.rates.received_per_s > 0, "step_done carries the step's transfer rates")
end)

T.test("progress shows bytes/s and each rate-limit tier's requests per minute against its limit", function()
  local progress = require "qmig.ui.progress"
  local limiter = require "qmig.rate.limiter"
  local lim = limiter.new { tier1 = 1000, tier2 = 100 }
  local lines = {}
  local out = { write = function(_, ...) lines[#lines + 1] = table.concat { ... } end, flush = function() end }
  local p = progress.new { tty = true, out = out, limiter = lim }
  p:event { kind = "step_start", step = "apps.publish", total = 10 }
  for _ = 1, 5 do lim:acquire("tier2") end
  lim:acquire("tier1")
  local text = p:rates_text()
  t.match(text, "tier1 %d+/1000 per min")
  t.match(text, "tier2 %d+/100 per min")
  t.truthy(text:find("tier1", 1, true) < text:find("tier2", 1, true), "tiers in order: " .. text)
  local r = p:rates()
  t.eq(#r.tiers, 2); t.eq(r.tiers[2].limit, 100); t.truthy(r.tiers[2].per_minute > 0)
  p:event { kind = "item", step = "apps.publish", outcome = { status = "created", key = "a" } }
  p:draw(true)
  t.match(table.concat(lines), "apps%.publish%s+1/10.*tier2 %d+/100 per min")
  t.eq(progress.bytes_per_s(512), "512 B/s")
  t.eq(progress.bytes_per_s(3 * 1024 * 1024), "3.0 MiB/s")
  -- without a limiter (rate_limits: false) and no bytes moved: nothing extra
  p = progress.new { tty = true, out = out }
  p:event { kind = "step_start", step = "x", total = 1 }
  t.eq(p:rates_text(), "")
end)

T.test("sleeping items give their place up, but not under rate limits (no bursts of waiters)", function()
  local engine = require "qmig.engine.step"
  local qmig = require "qmig"
  local function peak_open(target)
    local open, peak = 0, 0
    local items = {}
    for i = 1, 12 do items[i] = { id = i } end
    local step = {
      name = "test.sleepers", object = "thing", items = function() return items end,
      key = function(x) return x.id end,
      run = function()
        open = open + 1
        peak = math.max(peak, open)
        qmig.sleep(0.05)  -- a reload poll's pause, a backoff, a token wait
        open = open - 1
        return { status = "created" }
      end,
    }
    local eng = engine.new { job = { plan = {} }, target = target, concurrency = 2, dry_run = true }
    local summary = eng:run_step(step)
    t.eq(summary.counts.created, 12)
    return peak
  end
  t.eq(peak_open({}), 8, "4 x concurrency items under way while they sleep")
  t.eq(peak_open({ limiter = {} }), 2, "under rate limits, concurrency bounds the items under way")
end)

T.test("--job and --step narrow the run; jobs run in priority order", function()
  clean()
  local file = job { jobs = "  - {name: first, steps: [pack.hello]}\n"
    .. "  - {name: second, priority: 5, steps: [test.spaces]}" }
  local env = { LUA_PATH = FIXTURES .. "/pack/?.lua;;" }
  local code, out = cli.run({ "plan", file }, { env = env })
  t.eq(code, 0)
  t.truthy(out:find("job second", 1, true) < out:find("job first", 1, true), "priority 5 runs first")
  code, out = cli.run({ "run", file, "--job", "first" }, { env = env })
  t.eq(code, 0)
  t.truthy(not out:find("test.spaces", 1, true))
  t.eq(test_spaces(), {})
  code, out = cli.run({ "run", file, "--step", "test.spaces" }, { env = env })
  t.eq(code, 0)
  t.truthy(not out:find("pack.hello", 1, true))
  t.eq(test_spaces(), ALL)
  local _, err
  code, _, err = cli.run({ "run", file, "--job", "nope" }, { env = env })
  t.eq(code, 2); t.match(err, "no job named 'nope'")
end)

T.test("one failing item never stops the others; exit 1; status lists it", function()
  clean()
  local file = job { jobs = "  - {name: a, steps: [test.spaces, test.leaky]}" }
  local code, out = cli.run { "run", file }
  t.eq(code, 1, out)
  t.match(out, "test%.spaces%s+4 created")
  t.match(out, "test%.leaky%s+2 failed")
  local scode, sout = cli.run { "status", file, "--failed" }
  t.eq(scode, 0)
  t.match(sout, "test%.leaky")
  t.truthy(not sout:find("test.spaces", 1, true))
  local jcode, jout = cli.run { "status", file, "--json" }
  t.eq(jcode, 0)
  local rows = require("qmig.json").decode(jout)
  t.eq(#rows, 6)
end)

T.test("secrets never reach the cache, the logs or the terminal", function()
  clean()
  local secret = "qsim-admin-key"
  local file, dir = job { api_key = "${QMIG_TEST_API_KEY}", jobs = "  - {name: a, steps: [test.spaces, test.leaky]}" }
  local code, out, err = cli.run({ "run", file }, { env = { QMIG_TEST_API_KEY = secret } })
  t.eq(code, 1, out .. err)
  t.match(out, "cannot do a with key %*%*%*")
  t.truthy(not (out .. err):find(secret, 1, true), "not on the terminal")
  local files = io.popen("find " .. dir .. "/project -type f")
  local checked = 0
  for path in files:lines() do
    local data = t.read(path)
    t.truthy(not data:find(secret, 1, true), "secret found in " .. path)
    checked = checked + 1
  end
  files:close()
  t.truthy(checked >= 3, "db, logs and more were checked")
end)

T.test("Ctrl-C stops cleanly with exit 130; the next run finishes without duplicates", function()
  clean()
  local file = job { concurrency = 1 }
  the_sim():faults { latency_ms = 400 }
  local pid, release = cli.spawn_held { "run", file }
  os.execute("(sleep 1.2; kill -INT " .. pid .. ") &")
  local status, out, err = release()
  the_sim():faults {}
  t.eq(status, 130, out .. err)
  t.match(err, "interrupted")
  local created = #test_spaces()
  t.truthy(created < 4, "stopped early (" .. created .. " created)")
  local code = cli.run { "run", file }
  t.eq(code, 0)
  t.eq(test_spaces(), ALL)
end)

T.test("Ctrl-C while the connections are being checked: exit 130, nothing made, not a connection failure", function()
  clean()
  local file, dir = job { concurrency = 1 }
  the_sim():faults { latency_ms = 1500 }
  local pid, release = cli.spawn_held { "run", file }
  os.execute("(sleep 0.5; kill -INT " .. pid .. ") &")
  local status, out, err = release()
  the_sim():faults {}
  t.eq(status, 130, out .. err)
  t.match(err, "interrupted")
  t.truthy(not err:find("unreachable", 1, true) and not err:find("interrupted!", 1, true), err)
  t.eq(#test_spaces(), 0)
  t.truthy(not fs.exists(dir .. "/project"), "no project folder made")
end)

T.test("under 5xx, 429 and dropped connections every object is made exactly once", function()
  clean()
  local streams = {}
  for i = 1, 40 do streams[i] = { name = string.format("Soak %02d", i) } end
  local soak = simlib.start { site = { qrs = { streams = streams }, cloud = simlib.ADMIN_CLOUD } }
  local dir = fs.realpath(t.tmpdir())
  local text = soak:job_yaml { project_dir = dir .. "/project", concurrency = 8,
    extra = "steps_path: [" .. FIXTURES .. "/steps]", jobs = "  - {name: a, steps: [test.spaces]}" }
  text = text:gsub("options: {concurrency: 8,", "options: {concurrency: 8, retry_delay: 0.05, retries: 10,")
  t.write(dir .. "/job.yaml", text)
  soak:faults { seed = 7, error_rate = 0.1, rate_429 = 0.05, retry_after = 1, drop_rate = 0.02,
    drop_after_apply_rate = 0.05 }
  local code, out, err = cli.run { "run", dir .. "/job.yaml" }
  local state = soak:state()
  soak:stop()
  t.eq(code, 0, out .. err)
  local names = {}
  for _, s in ipairs(state.cloud.spaces) do
    t.eq(names[s.name], nil, "duplicate space " .. s.name)
    names[s.name] = true
  end
  for i = 1, 40 do t.truthy(names[string.format("T_Soak %02d", i)], "space " .. i) end
end)

return T
