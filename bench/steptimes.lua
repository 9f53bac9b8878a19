-- bench/steptimes.lua: `qmig-lua bench/steptimes.lua run JOB [options]` is
-- `qmig-lua run JOB [options]`, plus one line per step at the end, on
-- stdout:  steptime {"step":..., "items_s":..., "run_s":..., ...}
-- items_s is the time the step's items() took (its listing requests, made
-- one after another), run_s the time its items took on the scheduler.
-- With BENCH_SIM_URL (the simulator's Cloud URL) each line also has the
-- requests the simulator counted in both phases, per endpoint for the run
-- phase (bench.py sorts them into rate-limit tiers), and always this
-- process's own requests per tier in the run phase (`tiers`) with the
-- wall-clock times the phase began and ended (`run_at`, `end_at`: several
-- processes on one simulator are lined up by them).  A last line
-- `limits {"seen429": {tier: n}, "stats": ...}` gives the 429s this
-- process was answered.  BENCH_BURST: below.
local engine = require "qmig.engine.step"
local http = require "qmig.http"
local json = require "qmig.json"
local qmig = require "qmig"

local Engine = getmetatable(engine.new {}).__index

-- BENCH_BURST: the client-side token buckets' capacity (qmig.rate.limiter's
-- default is Qlik's window's worth: five minutes of the rate), set to the
-- simulator's burst so that a run of seconds measures the rate, not the
-- burst.  Only this wrapper changes it; the product keeps its default.
-- The limiter is also wrapped to know this process's own requests per
-- tier (the simulator's counts mix every process on it) and the 429s it
-- was answered (every 429 of the target goes through Limiter:pause).
local burst = tonumber(os.getenv("BENCH_BURST") or "")
local limiter = require "qmig.rate.limiter"
local the_limiter
local seen429 = {}
do
  local new = limiter.new
  limiter.new = function(rates, opts)
    opts = opts or {}
    if burst then opts.burst = opts.burst or burst end
    local l = new(rates, opts)
    the_limiter = l
    local pause = l.pause
    l.pause = function(self, tier, seconds)
      seen429[tier] = (seen429[tier] or 0) + 1
      return pause(self, tier, seconds)
    end
    return l
  end
end

-- Where the run slept: seconds summed over every task, per the place
-- that called qmig.sleep (the engine's module and line), on a last line
-- `sleeps {"file:line": seconds}` (bench.py, part 6, prints the largest).
-- The same per step, on each steptime line (`sleeps`), while a step runs.
local sleeps = {}
local step_sleeps
do
  local sleep = qmig.sleep
  qmig.sleep = function(s)
    local info = debug.getinfo(2, "Sl")
    local where = info and (info.short_src:gsub("^.*/lua/", "") .. ":" .. tostring(info.currentline)) or "?"
    sleeps[where] = (sleeps[where] or 0) + (tonumber(s) or 0)
    if step_sleeps then step_sleeps[where] = (step_sleeps[where] or 0) + (tonumber(s) or 0) end
    return sleep(s)
  end
end

local function used(what)
  local out = {}
  for tier, st in pairs(the_limiter and the_limiter:stats() or {}) do out[tier] = st[what or "used"] end
  return out
end
local control = os.getenv("BENCH_SIM_URL") and http.client { base_url = os.getenv("BENCH_SIM_URL") }

local function counts()
  if not control then return { total = 0, requests = {} } end
  local resp = control:request { path = "/_sim/counts" }
  if not resp or resp.status ~= 200 then return { total = 0, requests = {} } end
  return json.decode(resp.body)
end

local function diff(a, b)
  local out = {}
  for k, n in pairs(b.requests) do
    local d = n - (a.requests[k] or 0)
    if d > 0 then out[k] = d end
  end
  return out
end

-- Per tier, what grew from the figures `before` to `after` (used()), only
-- where it did.
local function grown(before, after)
  local out = {}
  for tier, v in pairs(after) do
    if v - (before[tier] or 0) > 0 then out[tier] = v - (before[tier] or 0) end
  end
  return out
end

local rows = {}
local run_step = Engine.run_step
function Engine.run_step(self, step)
  local row = { step = step.name, sleeps = {} }
  rows[#rows + 1] = row
  step_sleeps = row.sleeps
  local w0 = used("waited")
  local c0 = counts()
  local t0 = qmig.monotonic()
  local t1, c1 = t0, c0
  local u1
  local wrapped = setmetatable({}, { __index = step })
  wrapped.items = function(...)
    local r = table.pack(step.items(...))
    t1, c1 = qmig.monotonic(), counts()
    row.run_at, u1 = qmig.time(), used()
    return table.unpack(r, 1, r.n)
  end
  local summary = run_step(self, wrapped)
  local t2, c2 = qmig.monotonic(), counts()
  row.end_at = qmig.time()
  row.run_at = row.run_at or row.end_at
  -- this process's own requests per tier during the items' run
  local u2 = used()
  row.tiers = grown(u1 or u2, u2)
  -- seconds waited for each tier's tokens during the step (over tasks)
  row.waited = grown(w0, used("waited"))
  step_sleeps = nil
  row.items_s, row.run_s = t1 - t0, t2 - t1
  row.items_requests, row.run_requests = c1.total - c0.total, c2.total - c1.total
  row.endpoints = diff(c1, c2)
  row.items_endpoints = diff(c0, c1)
  row.n = #summary.outcomes
  return summary
end

-- Steps that overlap (qmig.engine.overlap) share their time and their
-- requests: they get one line, named "first..last (n steps)", timed from
-- the group's start to its last step's end; items_s is every listing of
-- its steps summed (they run beside the items, not before them).
local run_group = Engine.run_group
function Engine.run_group(self, group, on_step)
  if #group == 1 then return run_group(self, group, on_step) end
  local row = { step = string.format("%s..%s (%d steps)", group[1].name, group[#group].name, #group),
    sleeps = {}, items_s = 0 }
  rows[#rows + 1] = row
  step_sleeps = row.sleeps
  local w0, c0, u0, t0 = used("waited"), counts(), used(), qmig.monotonic()
  row.run_at = qmig.time()
  local wrapped = {}
  for i, step in ipairs(group) do
    wrapped[i] = setmetatable({
      items = function(...)
        local l0 = qmig.monotonic()
        local r = table.pack(step.items(...))
        row.items_s = row.items_s + (qmig.monotonic() - l0)
        return table.unpack(r, 1, r.n)
      end }, { __index = step })
  end
  local n = 0
  run_group(self, wrapped, function(step, summary)
    n = n + #summary.outcomes
    return on_step(step, summary)
  end)
  local c1 = counts()
  row.end_at = qmig.time()
  row.tiers, row.waited = grown(u0, used()), grown(w0, used("waited"))
  step_sleeps = nil
  row.run_s = qmig.monotonic() - t0
  row.items_requests, row.run_requests = 0, c1.total - c0.total
  row.endpoints = diff(c0, c1)
  row.n = n
end

local code = require("qmig.ui.cli").main(...)
for _, r in ipairs(rows) do
  if next(r.endpoints or {}) == nil then r.endpoints = nil end
  if next(r.items_endpoints or {}) == nil then r.items_endpoints = nil end
  if next(r.tiers or {}) == nil then r.tiers = nil end
  if next(r.sleeps or {}) == nil then r.sleeps = nil end
  if next(r.waited or {}) == nil then r.waited = nil end
  io.stdout:write("steptime ", json.encode(r, { sort_keys = true }), "\n")
end
io.stdout:write("limits ", json.encode({ seen429 = seen429, stats = the_limiter and the_limiter:stats() or {} },
  { sort_keys = true }), "\n")
io.stdout:write("sleeps ", json.encode(sleeps, { sort_keys = true }), "\n")
io.stdout:flush()
os.exit(code)
