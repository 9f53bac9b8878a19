-- Token buckets per Qlik Cloud tier: the rate holds, a 429 pauses the
-- whole tier, tiers are independent.  Only lower bounds on time are
-- asserted: a busy machine can only make things slower.
local t = require "testing"
local limiter = require "qmig.limiter"

local T = t.suite("limiter")

T.test("requests map to Qlik's tiers", function()
  t.eq(limiter.tier("GET", "/api/v1/spaces"), "tier1")
  t.eq(limiter.tier("POST", "/api/v1/spaces"), "tier2")
  t.eq(limiter.tier("DELETE", "/api/v1/apps/x"), "tier2")
  t.eq(limiter.tier("POST", "/api/v1/reloads"), "special")
  -- the whole reloads API is "Special", polls included (qlik-apis.md B13)
  t.eq(limiter.tier("GET", "/api/v1/reloads/abc"), "special")
  t.eq(limiter.tier("GET", "/api/v1/reloads?appId=x"), "special")
  t.eq(limiter.tier("GET", "http://h:1/api/v1/reloads?next=y"), "special")
  t.eq(limiter.tier("GET", "/api/v1/reload-tasks"), "tier1")
  t.eq(limiter.tier("POST", "/api/v1/reload-tasks"), "tier2")
end)

T.test("a tier never goes faster than its rate after the burst", function()
  local l = limiter.new({ tier2 = 600 }, { burst = 1 })  -- 10 per second
  local started = qmig.monotonic()
  for _ = 1, 11 do l:acquire("tier2") end
  t.truthy(qmig.monotonic() - started >= 0.95, "11 requests at 10/s take at least a second")
  t.eq(l:stats().tier2.used, 11)
end)

T.test("a 429 pauses the whole tier for Retry-After; other tiers go on", function()
  local l = limiter.new({ tier1 = 6000, tier2 = 6000 })
  l:pause("tier2", 0.5)
  local started = qmig.monotonic()
  l:acquire("tier1")
  t.truthy(qmig.monotonic() - started < 0.5, "tier1 is not paused")
  l:acquire("tier2")
  t.truthy(qmig.monotonic() - started >= 0.45, "tier2 waited for Retry-After")
end)

T.test("waiting yields inside scheduler tasks", function()
  local sched = require "qmig.sched"
  local l = limiter.new({ tier2 = 600 }, { burst = 1 })
  local s = sched.new { concurrency = 4 }
  local other_ran_at
  local started = qmig.monotonic()
  s:spawn(function() for _ = 1, 5 do l:acquire("tier2") end end)
  s:spawn(function() other_ran_at = qmig.monotonic() - started end)
  s:run()
  t.truthy(other_ran_at < 0.3, "the other task ran while the first waited for tokens")
end)

T.test("time lost to waiting is wall clock, not summed over tasks; a mostly waiting run gets a hint", function()
  local sched = require "qmig.sched"
  local progress = require "qmig.progress"
  local l = limiter.new({ tier2 = 600 }, { burst = 1 })  -- a token every 0.105 s
  local s = sched.new { concurrency = 4 }
  local started = qmig.monotonic()
  for _ = 1, 4 do s:spawn(function() for _ = 1, 3 do l:acquire("tier2") end end) end
  s:run()
  local elapsed = qmig.monotonic() - started
  t.truthy(l.wall_waited <= elapsed + 0.01, string.format("wall %.2f within %.2f", l.wall_waited, elapsed))
  t.truthy(l.waited > l.wall_waited, "the sum over tasks counts overlapping waits again")
  t.truthy(l.wall_waited > elapsed * 0.8, "this run mostly waited")
  t.truthy(l:stats().tier2.waited > 0)
  -- the hint names the share, the tier and what to change; none for a run that hardly waited
  l.wall_waited = 40
  local hint = progress.rate_hint(l, 60)
  t.match(hint, "^hint: 67%% of this run %(40 of 60 s%) went to waiting for Qlik Cloud's rate limits, mostly tier2 at "
    .. "600 per min; if the tenant allows more, raise options%.rate_limits")
  l.wall_waited = 10
  t.eq(progress.rate_hint(l, 60), nil)
  t.eq(progress.rate_hint(nil, 60), nil)
end)

T.test("the ETA counts with the rate limits, not only with the burst seen so far", function()
  local progress = require "qmig.progress"
  -- 100 items done in 10 s, each took 2 tier2 requests; tier2 allows 60 per minute: 0.5 item/s from now on
  local fake = { stats = function() return { tier2 = { used = 200, per_minute = 60 } } end }
  local p = progress.new { tty = false, limiter = fake }
  local step = { done = 100, total = 200, started = qmig.monotonic() - 10, mark = { tiers = { tier2 = { used = 0 } } } }
  t.eq(p:allowed_rate(step), 0.5)
  t.eq((progress.eta(step, p:allowed_rate(step))), "ETA 200s")
  t.eq((progress.eta(step, nil)), "ETA 10s", "without limits: the rate seen")
  t.eq(progress.new({ tty = false }):allowed_rate(step), nil)
end)

return T
