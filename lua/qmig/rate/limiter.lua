-- Client-side rate limiting for Qlik Cloud: one token bucket per tier,
-- shared by every task of the run, and a sliding window over it.  Qlik
-- counts requests per tier (tier 1 ~1000/min, mostly reads; tier 2
-- ~100/min, writes; "special" for reloads) over a 5-minute window
-- (M.WINDOW) and, once one endpoint of a tier gets 429, blocks the whole
-- tier until Retry-After: so a 429 pauses the whole bucket here too.
local qmig = require "qmig"

local M = {}
local Limiter = {}
Limiter.__index = Limiter

M.DEFAULTS = { tier1 = 1000, tier2 = 100, special = 60 }  -- requests per minute

-- Which tier a Cloud request counts against.  The whole reloads API
-- (POST /reloads, and the GET /reloads/{id} polls too) is rate tier
-- "Special" (qlik.dev's rate-limit tiers; docs/job-file.md, tests/qliksim/cloud.py); counting the polls
-- against tier 1 let them overrun the special tier into 429s until items
-- failed (found by bench/, part 2).  `path` may be a full URL (next links).
function M.tier(method, path)
  local p = path:gsub("^https?://[^/]*", ""):gsub("[?#].*$", "")
  if p == "/api/v1/reloads" or p:find("^/api/v1/reloads/") then return "special" end
  if method == "GET" or method == "HEAD" then return "tier1" end
  return "tier2"
end

-- The share of a tier's rate the buckets aim at.  Requests reach the
-- server bunched up by the network and its threads; at exactly its rate a
-- server's bucket has nothing in hand for that, and each 429 then stops
-- the whole tier for a Retry-After of a second or more (bench/, part 2:
-- at 100 %, 13 429s and 0.6-0.7 of the allowed rate; at 95 %, no 429 and
-- 0.84-0.95).
M.MARGIN = 0.95

-- The adaptive part (AIMD, as TCP finds a path's capacity).  The
-- configured rate (x MARGIN) is the ceiling: what the tenant promises.
-- The real budget can be lower (another tool or a second project using
-- the same identity, a tenant with other limits), and the only signal is
-- a 429.  So:
-- DECREASE: a 429 multiplies the tier's rate by 0.7.  Gentler than
-- halving because a 429 already stops the whole tier for Retry-After, and
-- 0.7 of a rate still makes progress when a 429 was a stray; repeated
-- 429s compound (0.7^3 = 0.34) fast enough to find a budget a third as
-- big within seconds.
M.DECREASE = 0.7
-- One 429 event per pause: every request in flight when the tier was
-- blocked comes back 429, and counting each would cut the rate by 0.7^16
-- at concurrency 16 for one overrun.  429s that arrive before the pause
-- they caused has ended are the same event.
-- INCREASE: while no 429 comes, the rate grows by 2 % of the ceiling per
-- second: back from one cut to the ceiling in 15 s, from the floor in
-- 45 s.  Slow enough that, against a budget below the ceiling, the
-- sawtooth meets it about every 15 s rather than every second; fast
-- enough that a stray 429 costs little (the cut's deficit averages
-- 0.15 x rate over 15 s, about 2 s of requests).
M.INCREASE = 0.02
-- FLOOR: the rate never falls below 5 % of the ceiling, so a burst of
-- injected or stray 429s cannot stall a tier for minutes afterwards.
M.FLOOR = 0.05
-- WINDOW: Qlik's window, the span over which a tier's rate is counted.
-- qlik.dev/apis/rest/rate-limiting: tier 1 (1,000 per min) and tier 2
-- (100 per min) are "evaluated over a 5-minute window to support bursts
-- of requests"; qlik.dev/changelog/108-api-ratelimit-reloads: POST
-- /reloads, 50 per min, "metered over a 5-minute window ... up to 250
-- requests within that window".  So a tier takes 5 minutes' worth at once,
-- and then nothing more until the window has room: the bucket holds a
-- window's worth (M.new), and a sliding window of this process's own
-- requests (plus the others' on the identity) keeps any WINDOW seconds
-- within MARGIN x what the window allows.  The window is needed on top of
-- the bucket: a bucket of 5 minutes' worth refilled at the rate lets
-- 5 + 4.75 minutes' worth through in the first 5 minutes, and a server
-- counting over a window answers the excess with 429s.  (With one
-- minute's worth, as first assumed, the demo's 127 tier-2 writes spent
-- most of their run waiting for the refill: 94 % of the run.)
M.WINDOW = 300
-- BUCKET_SPAN: with an explicit burst (opts.burst) the server is taken
-- for a token bucket of that capacity, as qliksim's `burst` (bench/, part
-- 2, where both sides hold 5 tokens); the "near the budget" count then
-- spans a minute, as it did before the window was known, so that those
-- figures stay what they were.
M.BUCKET_SPAN = 60
-- UNDER: a 429 empties the bucket (so that the requests that were waiting
-- do not leave together when the pause ends) only when the tier was near
-- its budget: at least 3/4 of what the window allows at the rate (the
-- AIMD rate before this 429's cut: what the identity is thought to have)
-- sent in the last window, by this process and the others on the
-- identity.  A 429 well under that is a stray (a fault, a server
-- hiccup): emptying the bucket then made every later request wait for the
-- full rate, for the rest of the run (16x slower under 5 % random 429s).
-- Half a minute's worth of the rate in force, as first done (this
-- process's share when others share the identity, held against the
-- identity's count: twice too eager then), still called the demo's reloads "near":
-- 30 requests of the special tier (60/min) in a minute, the bucket emptied
-- on a random 429 and the reloads then sent at a cut rate (bench/, part
-- 6: apps.reload 41 s, 0.4 s without faults).  One process bound by the
-- tier sends a window's worth a window, so it is still near.  (Counted
-- over a minute, as first done, the demo's 127 tier-2 writes in 17 s were
-- "near" (71 a minute); a window allows 475, and 127 are well under it.)
M.UNDER = 0.75
-- STRAY_TOKENS (only with an explicit burst: a token-bucket server): a
-- 429 that comes while this process is alone on the identity (the shared
-- budget says so) and its bucket still holds more than this share of the
-- burst is a stray whatever was sent in the last minute: the bucket
-- mirrors the server's, and the server's could not be empty then unless
-- the budget is smaller than configured.  Then the 429s come again: each
-- cuts the rate, a second before the clean answers keeps its cut, and the
-- bucket, spent at the cut rate, falls under this share,
-- where the count test below decides.  (Emptying it on that second 429,
-- as tried first, called two random 429s among a lightly used tier's few
-- answers an overrun: bench/, part 6, seed 2, tier-2 waits 234 s.)  The
-- count test alone called the demo's writes "near" (127 tier-2 requests
-- in 17 s against a burst of 100 refilled at 95/min: the refill had kept
-- half the bucket) and emptied it on a random 429 (bench/, part 6: 85-113 s
-- of tier-2 waits over the tasks, 22 s without faults).  Against Qlik's
-- window (no explicit burst) the server holds a count, not tokens: the
-- count over the window decides alone (it calls those writes well under),
-- and a bucket that stays full while the window is the bound would call
-- every overrun a stray.
M.STRAY_TOKENS = 0.25
-- STRAY_SPAN: a stray 429 still waiting for its clean answers makes a
-- second one within this many seconds "a second one" (the cut stays); an
-- older one is forgotten (the tier went idle meanwhile).
M.STRAY_SPAN = 60
-- STRAY_CLEAN: a 429 well under the budget (M.UNDER) is cut for as any
-- other, but when the tier's next answers after its pause are clean (this
-- many, no 429 among them) it was a stray and the rate it had comes back
-- at once.  Without this, each random 429 of a lightly used tier cut it,
-- and the cut rate made the next one look "near the budget": the
-- special tier of the demo under 5 % 429s fell to a quarter of its rate
-- (bench/, part 6: 217 s slept over its tasks for 59 requests).  A 429
-- that comes again before the clean answers keeps the cut.
M.STRAY_CLEAN = 3
-- How often the shared budget file (qmig.rate.budget) is read and written: not
-- per request, and often enough that two processes see each other's load
-- within a fraction of one (each sync is a flock and a small file: 0.5 s
-- let two processes changing phase overrun the tier together before
-- they saw each other).  SHARE_SPAN: the span over which the rate
-- published for the others is measured (short: a share must follow a
-- phase that starts or ends).
M.SYNC = 0.2
M.SHARE_SPAN = 2
-- HUNGRY: a process that waited for a token of the tier this recently
-- would send more if it had a larger share (it is bound by the tier).
M.HUNGRY = 1

-- M.new({tier1 = per_minute, ...} [, {burst = n, budget = qmig.rate.budget,
-- clock = fn, sleep = fn, wall = fn}]); a missing tier is unlimited.  The
-- burst defaults to a window's worth (M.WINDOW: Qlik's window allows
-- bursts); an explicit one models a token-bucket server (M.BUCKET_SPAN).
-- With a budget, the processes sharing it share each tier (Limiter:sync).
-- clock/sleep/wall replace qmig.monotonic/qmig.sleep/qmig.time (tests).
function M.new(rates, opts)
  opts = opts or {}
  -- waited: seconds slept, summed over every task; wall_waited: seconds
  -- during which at least one task was waiting (what a run lost to it)
  local self = setmetatable({ buckets = {}, waited = 0, paused = 0, waiters = 0, wall_waited = 0,
    clock = opts.clock or qmig.monotonic, sleep = opts.sleep or qmig.sleep, wall = opts.wall or qmig.time,
    budget = opts.budget, synced = -math.huge }, Limiter)
  local now = self.clock()
  for tier, per_minute in pairs(rates or M.DEFAULTS) do
    local capacity = math.max(1, opts.burst or per_minute * M.WINDOW / 60)
    local ceiling = per_minute / 60 * M.MARGIN
    -- hist: requests per whole second of the clock; order[head..tail]:
    -- those seconds, oldest first; nwin: their sum (all within M.WINDOW)
    self.buckets[tier] = { rate = ceiling, ceiling = ceiling, aimd = ceiling, capacity = capacity,
      tokens = capacity, last = now, paused_until = 0, cut_until = 0, used = 0, waited = 0, cuts = 0,
      hist = {}, order = {}, head = 1, tail = 0, nwin = 0, limit = ceiling * M.WINDOW,
      explicit = opts.burst ~= nil, others = nil, hungry_at = -math.huge }
  end
  -- present on the budget from the start, so that processes started
  -- together see each other before either spends a whole burst
  if self.budget then self:sync(true) end
  return self
end

-- Drops the seconds that have left the window: a second s may hold a
-- request of up to s + 1, so it stays until s + 1 + M.WINDOW.
local function prune(b, now)
  local first = math.floor(now - M.WINDOW)
  while b.head <= b.tail and b.order[b.head] < first do
    local s = b.order[b.head]
    b.nwin = b.nwin - b.hist[s]
    b.hist[s], b.order[b.head] = nil, nil
    b.head = b.head + 1
  end
end

-- Requests of the tier per whole second of the clock, for the window.
local function count(b, now)
  local s = math.floor(now)
  if not b.hist[s] then
    b.tail = b.tail + 1
    b.order[b.tail] = s
  end
  b.hist[s] = (b.hist[s] or 0) + 1
  b.nwin = b.nwin + 1
end

local function sent_since(b, since)
  local n = 0
  for s, k in pairs(b.hist) do
    if s >= math.floor(since) then n = n + k end
  end
  return n
end

-- Seconds until the window has room for one more request of the tier
-- (this process's and the others' on the identity), or nil when it has.
-- Only this process's own oldest second is known to leave: with others
-- the wait is at most a sync (Limiter:acquire) and is measured again.
local function window_wait(b, now)
  prune(b, now)
  if b.nwin + (b.others and b.others.nwin or 0) < b.limit then return nil end
  if b.head > b.tail then return M.SYNC end
  -- at least a millisecond: a wait the clock cannot add would loop
  return math.max(1e-3, b.order[b.head] + 1 + M.WINDOW - now)
end

-- The tier was near its budget (M.UNDER) at the AIMD rate `rate`: what was
-- sent over the server's span, by this process and the others, against
-- what that span allows.
local function near(b, now, rate)
  local o = b.others
  if b.explicit then
    return sent_since(b, now - M.BUCKET_SPAN) + (o and o.n60 or 0) >= M.UNDER * rate * M.BUCKET_SPAN
  end
  prune(b, now)
  return b.nwin + (o and o.nwin or 0) >= M.UNDER * rate * M.WINDOW
end

-- The rate this process may use: the AIMD rate grown by the clean time
-- since the last update, then, when others share the identity, a
-- max-min fair share: what the processes that want less than a share
-- (not waiting for tokens: `hungry` false) actually send is left to
-- them, the rest is split equally among the hungry ones and this one,
-- and never less than an equal share of the whole (so a newcomer gets
-- its place at once).  Subtracting every other process's measured rate
-- instead (what was done first) let two processes bound by one tier
-- overshoot it together: each saw the other's rate of the last 2 s,
-- not the share it was climbing to, and both hit the server's limit
-- (bench/, part 2 with two processes: 20 429s a minute, 0.55-0.82 of
-- the tier).
local function refill(b, now)
  local dt = now - b.last
  -- only time after the pause counts as clean
  local clean = now - math.max(b.last, b.cut_until)
  if clean > 0 then b.aimd = math.min(b.ceiling, b.aimd + M.INCREASE * b.ceiling * clean) end
  local rate = b.aimd
  local o = b.others
  if o and o.procs > 0 then
    local idle = o.idle_rate or o.rate
    rate = math.min(rate, math.max((rate - idle) / ((o.hungry or 0) + 1), rate / (o.procs + 1)))
  end
  b.rate = math.max(rate, M.FLOOR * b.ceiling)
  if dt > 0 then
    -- The burst is the identity's (the tenant's window is one for all):
    -- with others on it, each holds an equal part of it, whatever its
    -- share of the rate, since any of them may spend its tokens at once
    -- (with a part as large as its rate share, two processes not bound
    -- by the tier each kept a whole burst and spent them together: 429s).
    -- A 429's cut does not shrink it: that is M.UNDER's decision.
    local part = o and o.procs > 0 and 1 / (o.procs + 1) or 1
    -- Not bound by the tier while others are: they take what this one
    -- does not send, so a reserve kept here would be spent on top of
    -- their rate (the server's bucket empty): one token, and the first
    -- wait makes this one hungry and its share its own again.
    if o and (o.hungry or 0) > 0 and now - b.hungry_at >= M.HUNGRY then part = 0 end
    b.tokens = math.min(math.max(1, b.capacity * part), b.tokens + dt * b.rate)
    b.last = now
  end
end

-- Reads the others' figures and publishes ours, at most every M.SYNC.
function Limiter:sync(force)
  local now = self.clock()
  if not self.budget or (not force and now - self.synced < M.SYNC) then return end
  self.synced = now
  local wall = self.wall()
  local mine = {}
  for tier, b in pairs(self.buckets) do
    prune(b, now)
    local pause = b.paused_until > now and wall + (b.paused_until - now) or 0
    -- whole seconds are counted: the span runs from the first one's start
    local span = now - math.floor(now - M.SHARE_SPAN)
    -- n60: the last minute (M.BUCKET_SPAN's count, and what an older
    -- qmig-lua on the identity reads); nwin: the window
    mine[tier] = { rate = sent_since(b, now - M.SHARE_SPAN) / span, n60 = sent_since(b, now - M.BUCKET_SPAN),
      nwin = b.nwin, pause_until = pause, hungry = now - b.hungry_at < M.HUNGRY }
  end
  local others = self.budget:sync(mine)
  if not others then return end
  for tier, b in pairs(self.buckets) do
    refill(b, now)
    b.others = others[tier]
    refill(b, now)
    -- Qlik blocks the tier for the identity: another process's 429 is ours
    local until_ = b.others and b.others.pause_until - wall + now or 0
    if until_ > b.paused_until then
      b.paused_until = until_
      b.cut_until = until_
    end
  end
end

-- Waits (yielding inside a task) until the tier has a token, and takes it.
function Limiter:acquire(tier)
  local b = self.buckets[tier]
  if not b then return end
  while true do
    self:sync()
    local now = self.clock()
    local wait
    if b.paused_until > now then
      wait = b.paused_until - now
    else
      refill(b, now)
      local full = window_wait(b, now)
      -- the epsilon: a refill computed in floating point can end a
      -- hair under 1 after sleeping exactly the computed wait
      if not full and b.tokens >= 1 - 1e-9 then
        b.tokens = math.max(0, b.tokens - 1)
        b.used = b.used + 1
        count(b, now)
        return
      end
      wait = full or (1 - b.tokens) / b.rate
      -- newly bound by the tier: the others must know now, not at the
      -- next sync, or they keep the part they had meanwhile
      local newly = now - b.hungry_at >= M.HUNGRY
      b.hungry_at = now
      if newly and self.budget then
        self:sync(true)
        goto again
      end
    end
    -- at most one sync's span: the others' figures may change the wait
    if self.budget then wait = math.min(wait, M.SYNC) end
    self.waited = self.waited + wait
    b.waited = b.waited + wait
    if self.waiters == 0 then self.wait_began = self.clock() end
    self.waiters = self.waiters + 1
    self.sleep(wait)
    self.waiters = self.waiters - 1
    if self.waiters == 0 then self.wall_waited = self.wall_waited + (self.clock() - self.wait_began) end
    if qmig.interrupted() then return end
    ::again::
  end
end

-- After a 429: the whole tier waits Retry-After seconds (Qlik blocks all
-- of it), the rate is cut once per event (M.DECREASE), and the bucket is
-- emptied only when the tier was near its budget (M.STRAY_TOKENS, M.UNDER).
function Limiter:pause(tier, seconds)
  local b = self.buckets[tier]
  if not b then return end
  local now = self.clock()
  refill(b, now)
  local untill = now + (seconds or 1)
  if now >= b.cut_until then
    local before = b.aimd
    b.aimd = math.max(M.FLOOR * b.ceiling, b.aimd * M.DECREASE)
    b.cuts = b.cuts + 1
    local o = b.others
    local alone = not (o and o.procs > 0)
    local second = b.stray and now - b.stray.at < M.STRAY_SPAN
    if alone and b.explicit and b.tokens > M.STRAY_TOKENS * b.capacity then
      -- (a second one before the clean answers: the cut stays)
      b.stray = not second and { aimd = before, clean = 0, at = now } or nil
    elseif near(b, now, before) then
      b.tokens = 0
      b.stray = nil
    elseif second then
      b.stray = nil  -- a second one before the clean answers: not a stray
    else
      b.stray = { aimd = before, clean = 0, at = now }
    end
  end
  b.cut_until = math.max(b.cut_until, untill)
  if untill > b.paused_until then
    b.paused_until = untill
    b.last = math.max(b.last, now)
    self.paused = self.paused + 1
  end
  self:sync(true)
end

-- A request of the tier was answered, and not with a 429: after a 429
-- well under the budget, M.STRAY_CLEAN such answers after its pause give
-- the rate back.
function Limiter:answered(tier)
  local b = self.buckets[tier]
  if not b or not b.stray then return end
  local now = self.clock()
  if now < b.paused_until then return end
  b.stray.clean = b.stray.clean + 1
  if b.stray.clean >= M.STRAY_CLEAN then
    b.aimd = math.max(b.aimd, b.stray.aimd)
    b.strays = (b.strays or 0) + 1
    b.stray = nil
  end
end

-- {tier = {used=, per_minute=, waited=, rate=, cuts=}} for progress and
-- reports: per_minute is the configured rate; rate the one in force now
-- (per minute, after 429s and the others' shares).
function Limiter:stats()
  local out = {}
  for tier, b in pairs(self.buckets) do
    out[tier] = { used = b.used, per_minute = b.ceiling * 60 / M.MARGIN, waited = b.waited,
      rate = b.rate * 60, cuts = b.cuts, strays = b.strays or 0 }
  end
  return out
end

-- The end of a run: leaves the shared budget to the others at once.
function Limiter:close()
  if self.budget then self.budget:leave() end
end

return M
