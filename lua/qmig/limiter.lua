-- Client-side rate limiting for Qlik Cloud: one token bucket per tier,
-- shared by every task of the run.  Qlik counts requests per tier (tier 1
-- ~1000/min, mostly reads; tier 2 ~100/min, writes; "special" for
-- reloads) and, once one endpoint of a tier gets 429, blocks the whole
-- tier until Retry-After: so a 429 pauses the whole bucket here too.
local qmig = require "qmig"

local M = {}
local Limiter = {}
Limiter.__index = Limiter

M.DEFAULTS = { tier1 = 1000, tier2 = 100, special = 60 }  -- requests per minute

-- Which tier a Cloud request counts against.  The whole reloads API
-- (POST /reloads, and the GET /reloads/{id} polls too) is rate tier
-- "Special" (reference/qlik-apis.md B13), as in qliksim; counting the polls
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

-- M.new({tier1 = per_minute, ...} [, {burst = n}]); a missing tier is
-- unlimited.  The burst defaults to a minute's worth: Qlik's window
-- allows bursts.
function M.new(rates, opts)
  -- waited: seconds slept, summed over every task; wall_waited: seconds
  -- during which at least one task was waiting (what a run lost to it)
  local self = setmetatable({ buckets = {}, waited = 0, paused = 0, waiters = 0, wall_waited = 0 }, Limiter)
  for tier, per_minute in pairs(rates or M.DEFAULTS) do
    local capacity = math.max(1, opts and opts.burst or per_minute)
    self.buckets[tier] = { rate = per_minute / 60 * M.MARGIN, capacity = capacity, tokens = capacity,
      last = qmig.monotonic(), paused_until = 0, used = 0, waited = 0 }
  end
  return self
end

local function refill(b, now)
  b.tokens = math.min(b.capacity, b.tokens + (now - b.last) * b.rate)
  b.last = now
end

-- Waits (yielding inside a task) until the tier has a token, and takes it.
function Limiter:acquire(tier)
  local b = self.buckets[tier]
  if not b then return end
  while true do
    local now = qmig.monotonic()
    local wait
    if b.paused_until > now then
      wait = b.paused_until - now
    else
      refill(b, now)
      if b.tokens >= 1 then
        b.tokens = b.tokens - 1
        b.used = b.used + 1
        return
      end
      wait = (1 - b.tokens) / b.rate
    end
    self.waited = self.waited + wait
    b.waited = b.waited + wait
    if self.waiters == 0 then self.wait_began = qmig.monotonic() end
    self.waiters = self.waiters + 1
    qmig.sleep(wait)
    self.waiters = self.waiters - 1
    if self.waiters == 0 then self.wall_waited = self.wall_waited + (qmig.monotonic() - self.wait_began) end
    if qmig.interrupted() then return end
  end
end

-- After a 429: the whole tier waits Retry-After seconds, and its bucket
-- starts empty so the requests that were waiting do not stampede.
function Limiter:pause(tier, seconds)
  local b = self.buckets[tier]
  if not b then return end
  local untill = qmig.monotonic() + (seconds or 1)
  if untill > b.paused_until then
    b.paused_until = untill
    b.tokens = 0
    b.last = untill
    self.paused = self.paused + 1
  end
end

-- {tier = {used=, per_minute=, waited=}} for progress and reports.
function Limiter:stats()
  local out = {}
  for tier, b in pairs(self.buckets) do
    out[tier] = { used = b.used, per_minute = b.rate * 60 / M.MARGIN, waited = b.waited }
  end
  return out
end

return M
