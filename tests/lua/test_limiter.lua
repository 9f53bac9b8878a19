-- Token buckets per Qlik Cloud tier: the rate holds, a 429 pauses the
-- whole tier, tiers are independent.  Only lower bounds on time are
-- asserted: a busy machine can only make things slower.
local t = require "testing"
local fs = require "qmig.fs"
local limiter = require "qmig.rate.limiter"

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
  local sched = require "qmig.engine.sched"
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
  local sched = require "qmig.engine.sched"
  local progress = require "qmig.ui.progress"
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
  local progress = require "qmig.ui.progress"
  -- 100 items done in 10 s, each took 2 tier2 requests; tier2 allows 60 per minute: 0.5 item/s from now on
  local fake = { stats = function() return { tier2 = { used = 200, per_minute = 60 } } end }
  local p = progress.new { tty = false, limiter = fake }
  local step = { done = 100, total = 200, started = qmig.monotonic() - 10, mark = { tiers = { tier2 = { used = 0 } } } }
  t.eq(p:allowed_rate(step), 0.5)
  t.eq((progress.eta(step, p:allowed_rate(step))), "ETA 200s")
  t.eq((progress.eta(step, nil)), "ETA 10s", "without limits: the rate seen")
  t.eq(progress.new({ tty = false }):allowed_rate(step), nil)
end)

-- A fake clock: sleeping advances it, so the AIMD arithmetic is exact.
local function fake(rates, opts)
  local now = { t = 1000, wall = 5000 }
  opts = opts or {}
  opts.clock = function() return now.t end
  opts.wall = function() return now.wall + now.t end
  opts.sleep = function(s) now.t = now.t + s end
  return limiter.new(rates, opts), now
end

T.test("AIMD: a 429 cuts the rate once per pause; clean time raises it back, never above the ceiling", function()
  local l, now = fake({ tier2 = 600 }, { burst = 1 })
  local ceiling = 600 * limiter.MARGIN
  t.eq(l:stats().tier2.rate, ceiling)
  l:acquire("tier2")
  -- 16 requests in flight come back 429 for one overrun: one cut
  for _ = 1, 16 do l:pause("tier2", 1) end
  t.eq(l.buckets.tier2.cuts, 1)
  now.t = now.t + 1
  l:acquire("tier2")
  t.truthy(math.abs(l:stats().tier2.rate - ceiling * limiter.DECREASE) < 1e-6, "cut by DECREASE")
  -- another 429 after the pause is a new event
  l:pause("tier2", 1)
  t.eq(l.buckets.tier2.cuts, 2)
  -- clean seconds raise it additively: INCREASE x ceiling per second
  now.t = now.t + 1 + 5
  l:acquire("tier2")
  local want = ceiling * (limiter.DECREASE ^ 2 + 5 * limiter.INCREASE)
  t.truthy(math.abs(l:stats().tier2.rate - want) < 1e-6, string.format("%.2f ~ %.2f", l:stats().tier2.rate, want))
  now.t = now.t + 3600
  l:acquire("tier2")
  t.eq(l:stats().tier2.rate, ceiling, "never above the configured rate")
  -- the floor: a storm of 429s does not stall the tier
  for _ = 1, 50 do l:pause("tier2", 1); now.t = now.t + 1.01 end
  t.truthy(l:stats().tier2.rate >= ceiling * limiter.FLOOR - 1e-9)
end)

T.test("by default a tier takes a window's worth at once: 400 tier-2 requests without waiting", function()
  local l, now = fake({ tier2 = 100 })  -- Qlik's 5-minute window: 500 tokens
  for _ = 1, 400 do l:acquire("tier2") end
  t.eq(now.t, 1000, "no wait")
  t.eq(l.waited, 0)
end)

T.test("the window: no more than MARGIN x a window's worth in any 300 s; the next waits until the oldest leave it",
  function()
  local l, now = fake({ tier2 = 100 })
  local allowed = 100 * 5 * limiter.MARGIN  -- 475 of the server's 500
  -- 300 now, 175 a hundred seconds later: the window is full
  for _ = 1, 300 do l:acquire("tier2") end
  now.t = now.t + 100
  for _ = 1, allowed - 300 do l:acquire("tier2") end
  t.eq(now.t, 1100, "a window's worth without waiting")
  -- the bucket has refilled 158 meanwhile; the window has no room until
  -- the first 300 (second 1000) have left it, at 1000 + 1 + 300
  l:acquire("tier2")
  t.truthy(math.abs(now.t - 1301) < 1e-6, string.format("waited for the oldest: at %.3f", now.t))
  -- it slides: the first 300's room, no more, until second 1100 leaves
  for _ = 1, 299 do l:acquire("tier2") end
  t.truthy(math.abs(now.t - 1301) < 1e-6, "the room they left at once")
  l:acquire("tier2")
  t.truthy(math.abs(now.t - 1401) < 1e-6, string.format("then the next oldest: at %.3f", now.t))
end)

T.test("a stray 429 well under the budget keeps the bucket; one near the budget empties it", function()
  local l, now = fake({ tier2 = 100 })
  for _ = 1, 10 do l:acquire("tier2") end
  l:pause("tier2", 1)
  local started = now.t
  for _ = 1, 40 do l:acquire("tier2") end
  t.truthy(now.t - started < 1.01, string.format("40 more requests right after the pause (%.1f s)", now.t - started))
  -- near the budget (3/4 of the window's 475): the next requests wait for the (cut) rate
  local l2, now2 = fake({ tier2 = 100 })
  for _ = 1, 400 do l2:acquire("tier2") end
  l2:pause("tier2", 1)
  local t0 = now2.t
  for _ = 1, 5 do l2:acquire("tier2") end
  t.truthy(now2.t - t0 > 2, "bucket emptied: the rate holds")
end)

T.test("a 429 after 100 tier-2 requests in the first seconds of an idle window is not near the budget", function()
  -- a minute's worth, which a one-minute count called near: the window
  -- allows 475, and the bucket is kept
  local l, now = fake({ tier2 = 100 })
  for _ = 1, 100 do l:acquire("tier2") end
  now.t = now.t + 3
  l:pause("tier2", 1)
  local started = now.t
  for _ = 1, 300 do l:acquire("tier2") end
  t.truthy(now.t - started < 1.01, string.format("300 more right after the pause (%.1f s)", now.t - started))
end)

T.test("over half a window's budget sent, then a 429: still well under, the bucket is kept", function()
  local l, now = fake({ special = 60 })  -- 285 of 300 in a window
  for _ = 1, 160 do l:acquire("special") end
  l:pause("special", 1)
  local started = now.t
  for _ = 1, 10 do l:acquire("special") end
  t.truthy(now.t - started < 1.01, string.format("10 more right after the pause (%.1f s)", now.t - started))
end)

T.test("alone, a full window is an overrun however full the bucket: the count decides, not the tokens", function()
  local l, now = fake({ tier2 = 100 })
  for _ = 1, 400 do l:acquire("tier2") end
  now.t = now.t + 200  -- the bucket refills (to 416 tokens); the 400 are still in the window
  l:pause("tier2", 1)
  t.eq(l.buckets.tier2.tokens, 0, "emptied")
end)

T.test("with an explicit burst (a token-bucket server), alone, a 429 while the bucket holds over a quarter of it is "
  .. "a stray, however much was sent; a second one before the clean answers keeps its cut", function()
  local l, now = fake({ tier2 = 100 }, { burst = 100 })  -- 100 tokens, 95 a minute
  -- a minute's worth sent, then 40 s in which the refill put 63 back, 20 more
  for _ = 1, 100 do l:acquire("tier2") end
  now.t = now.t + 40
  for _ = 1, 20 do l:acquire("tier2") end
  l:pause("tier2", 1)
  local started = now.t
  for _ = 1, 10 do l:acquire("tier2") end
  t.truthy(now.t - started < 1.01, string.format("10 more right after the pause (%.1f s)", now.t - started))
  -- the second before 3 clean answers: the cut stays, clean answers after
  -- it do not undo it, and the bucket (still over a quarter) is kept
  now.t = now.t + 1
  l:answered("tier2")
  l:pause("tier2", 1)
  started = now.t
  for _ = 1, 5 do l:acquire("tier2") end
  t.truthy(now.t - started < 1.01, string.format("5 more right after the second pause (%.1f s)", now.t - started))
  for _ = 1, 10 do l:answered("tier2") end
  l:acquire("tier2")
  t.truthy(l.buckets.tier2.aimd < 100 * limiter.MARGIN / 60 * 0.6, "cut twice, kept")
  -- a low bucket (under a quarter) with as much sent: near, emptied at once
  local l2, now2 = fake({ tier2 = 100 }, { burst = 100 })
  for _ = 1, 90 do l2:acquire("tier2") end
  l2:pause("tier2", 1)
  local t0 = now2.t
  for _ = 1, 5 do l2:acquire("tier2") end
  t.truthy(now2.t - t0 > 2, "near the budget: the rate holds")
end)

T.test("with another process on the identity, a full bucket is no proof of a stray: the count decides", function()
  local budget = require "qmig.rate.budget"
  local dir = os.tmpname(); os.remove(dir)
  local target = { url = "https://t.example/", api_key = "k" }
  local l1, now1 = fake({ tier2 = 100 }, { budget = budget.open(target, { dir = dir }) })
  local l2, now2 = fake({ tier2 = 100 }, { budget = budget.open(target, { dir = dir }) })
  -- both send: 220 of l1 and 160 of l2 within the window (over 3/4 of
  -- its 475; neither's own count is)
  for _ = 1, 160 do l2:acquire("tier2") end
  now1.t = now2.t
  for _ = 1, 160 do l1:acquire("tier2") end
  now1.t = now1.t + 35
  now2.t = now1.t
  l2:sync(true)
  for _ = 1, 60 do l1:acquire("tier2") end
  l1:sync(true)
  t.truthy(l1.buckets.tier2.others and l1.buckets.tier2.others.procs == 1, "l1 sees l2")
  l1:pause("tier2", 1)
  t.eq(l1.buckets.tier2.tokens, 0, "emptied")
end)

T.test("a 429 well under the budget, then clean answers: a stray, the rate comes back; near the budget it stays cut",
  function()
  local l, now = fake({ tier2 = 600 })
  local ceiling = 600 * limiter.MARGIN / 60
  for _ = 1, 10 do l:acquire("tier2") end
  l:pause("tier2", 1)
  t.truthy(math.abs(l.buckets.tier2.aimd - ceiling * limiter.DECREASE) < 1e-6, "cut at first")
  -- answers that come during the pause say nothing
  for _ = 1, limiter.STRAY_CLEAN do l:answered("tier2") end
  now.t = now.t + 1
  for _ = 1, limiter.STRAY_CLEAN - 1 do l:answered("tier2") end
  l:acquire("tier2")
  t.truthy(l.buckets.tier2.aimd < ceiling * 0.8, "not back before the clean answers")
  l:answered("tier2")
  l:acquire("tier2")
  t.eq(l.buckets.tier2.aimd, ceiling, "back at once")
  t.eq(l:stats().tier2.strays, 1)
  -- a second 429 before the clean answers: the cut stays
  l:pause("tier2", 1)
  now.t = now.t + 1
  l:answered("tier2")
  l:pause("tier2", 1)
  now.t = now.t + 1
  for _ = 1, 10 do l:answered("tier2") end
  l:acquire("tier2")
  t.truthy(l.buckets.tier2.aimd < ceiling * limiter.DECREASE, "cut twice, kept")
  -- near the budget: clean answers after the pause do not undo the cut
  local l2, now2 = fake({ tier2 = 100 })
  for _ = 1, 400 do l2:acquire("tier2") end
  l2:pause("tier2", 1)
  now2.t = now2.t + 1
  for _ = 1, 10 do l2:answered("tier2") end
  l2:acquire("tier2")
  t.truthy(l2.buckets.tier2.aimd < 100 * limiter.MARGIN / 60 * 0.8, "an overrun keeps its cut")
end)

T.test("two limiters on one budget file share the tier and each other's 429 pause", function()
  local budget = require "qmig.rate.budget"
  local dir = os.tmpname(); os.remove(dir)
  local target = { url = "https://t.example/", api_key = "secret-key" }
  local l1, now1 = fake({ tier2 = 600 }, { burst = 1, budget = budget.open(target, { dir = dir }) })
  local l2, now2 = fake({ tier2 = 600 }, { burst = 1, budget = budget.open(target, { dir = dir }) })
  local ceiling = 600 * limiter.MARGIN / 60
  -- l1 alone sends at the ceiling for 3 s
  while now1.t < 1003 do l1:acquire("tier2") end
  now2.t = now1.t
  l2:acquire("tier2")
  now2.t = now2.t + 0.6
  l2:acquire("tier2")
  t.truthy(l2.buckets.tier2.rate <= ceiling / 2 + 1e-6, "the newcomer takes at most an equal share")
  -- l1 sees l2's load at its next sync and gives way
  for _ = 1, 20 do l2:acquire("tier2") end
  now1.t = now2.t
  l1:sync(true); l1:acquire("tier2")
  t.truthy(l1.buckets.tier2.rate < ceiling * 0.9, string.format("l1 gave way: %.2f/s", l1.buckets.tier2.rate))
  -- a 429 seen by one pauses the other
  l1:pause("tier2", 2)
  l2:sync(true)
  t.truthy(l2.buckets.tier2.paused_until > now2.t + 1, "the other process pauses too")
  -- the file holds hashes and counts, never the key
  local text = fs.read_file(dir .. "/" .. budget.key(target) .. ".json")
  t.truthy(text and not text:find("secret%-key"), "no secret in the shared file")
end)

T.test("the window counts the others on the identity: what they sent leaves less room for this one", function()
  local budget = require "qmig.rate.budget"
  local dir = os.tmpname(); os.remove(dir)
  local target = { url = "https://t.example/", api_key = "k" }
  local l1, now1 = fake({ tier2 = 100 }, { budget = budget.open(target, { dir = dir }) })
  local l2, now2 = fake({ tier2 = 100 }, { budget = budget.open(target, { dir = dir }) })
  for _ = 1, 240 do l2:acquire("tier2") end
  l2:sync(true)
  now1.t = now2.t + 0.5
  l1:sync(true)
  -- l1's part of the bucket is 250: the window (475 - 240), not the tokens, stops it
  for _ = 1, 235 do l1:acquire("tier2") end
  t.eq(now1.t, now2.t + 0.5, "the window's room without waiting")
  l1:acquire("tier2")
  t.truthy(now1.t >= now2.t + 300, string.format("waited for the window: %.1f s", now1.t - now2.t))
end)

T.test("the shared file's folder: QMIG_CACHE_DIR, XDG_CACHE_HOME, ~/.cache; keys differ per identity", function()
  local budget = require "qmig.rate.budget"
  local env = function(v) return ({ QMIG_CACHE_DIR = "/c", XDG_CACHE_HOME = "/x", HOME = "/h" })[v] end
  t.eq(budget.dir(env), "/c/limits")
  t.eq(budget.dir(function(v) return ({ XDG_CACHE_HOME = "/x", HOME = "/h" })[v] end), "/x/qmig-lua/limits")
  t.eq(budget.dir(function(v) return ({ HOME = "/h" })[v] end), "/h/.cache/qmig-lua/limits")
  local a = budget.key { url = "https://t/", api_key = "k1" }
  t.eq(a, budget.key { url = "https://t", api_key = "k1" })
  t.truthy(a ~= budget.key { url = "https://t", api_key = "k2" })
  t.truthy(a ~= budget.key { url = "https://t", oauth = { client_id = "k1" } })
end)

return T
