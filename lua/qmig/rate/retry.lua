-- Retry policy for transient API failures: exponential backoff with
-- jitter, and Retry-After honoured when the server gives one.
local qmig = require "qmig"

local M = {}

M.base_delay = 0.5
M.max_delay = 30

-- Per host (the QRS, the tenant): failures in a row over every request
-- to it, whichever task made them.  A host that fails everything (5xx,
-- timeouts, no answer: overloaded or restarting) is backed off by all
-- tasks together, each retry waiting as long as the streak says, and a
-- new request to it waits too; one failure among answers (a stray 503)
-- costs only that request's own short, jittered wait.  The jitter keeps
-- the tasks that failed together from coming back together.
M.hosts = {}
-- GATE: failures in a row from which the host is backed off as a whole
-- (every retry waits as long as the streak says, and new requests wait
-- too).  Below it a failure costs only its own request's wait: random
-- faults make short streaks across tasks by chance (at 12 % 503s and
-- drops over 8 tasks, two in a row about 8 times in the demo job, three
-- about once), and at 2 each of those held every task of the run for
-- 0.5-1 s (bench/, part 6); a host that fails everything reaches 3 in
-- one round of the tasks.
M.GATE = 3

local function host_state(host)
  local h = host and M.hosts[host]
  if host and not h then
    h = { streak = 0, until_ = 0 }
    M.hosts[host] = h
  end
  return h
end

-- delay(attempt, err [, host]) -> seconds to wait before attempt+1.
function M.delay(attempt, err, host)
  if err and err.retry_after then return math.min(math.max(err.retry_after, 0), 300) end
  local h = host and M.hosts[host]
  local level = attempt
  if h and h.streak >= M.GATE then level = math.max(attempt, h.streak) end
  local d = math.min(M.max_delay, M.base_delay * 2 ^ (level - 1))
  return d * (0.5 + math.random() * 0.5)
end

-- A request to host is about to go: waits while the host is backed off.
function M.gate(host)
  local h = host and M.hosts[host]
  while h and h.until_ > qmig.monotonic() and not qmig.interrupted() do
    qmig.sleep(h.until_ - qmig.monotonic())
  end
end

-- The outcome of one request to host: ok (any answer that is not a
-- transient failure) or failed (5xx, timeout, no answer).
function M.answered(host, ok)
  local h = host_state(host)
  if not h then return end
  if ok then
    h.streak, h.until_ = 0, 0
  else
    h.streak = h.streak + 1
  end
end

-- M.call(fn, {retries=, host=, on_retry=fn(err, attempt, delay)}) -> results of fn.
-- Retries fn while it raises a transient error that is not an unknown-
-- outcome write (those go back to the caller, which must look first).
-- With host, the backoff is shared per host (above); a 429 is the rate
-- limiter's business (qmig.rate.limiter), not the host's health.
function M.call(fn, opts)
  local retries = opts and opts.retries or 5
  local host = opts and opts.host
  local attempt = 0
  while true do
    attempt = attempt + 1
    M.gate(host)
    local results = table.pack(pcall(fn))
    if results[1] then
      M.answered(host, true)
      return table.unpack(results, 2, results.n)
    end
    local err = results[2]
    local transient = type(err) == "table" and err.transient
    if type(err) == "table" and err.status ~= 429 and not err.outage then M.answered(host, not transient) end
    local retryable = transient and not err.unknown and not err.auth
    if not retryable or attempt > retries or qmig.interrupted() then error(err, 0) end
    local d = M.delay(attempt, err, host)
    local h = host and M.hosts[host]
    if h and h.streak >= M.GATE and not err.retry_after then
      h.until_ = math.max(h.until_, qmig.monotonic() + d)
    end
    if opts and opts.on_retry then opts.on_retry(err, attempt, d) end
    qmig.sleep(d)
  end
end

return M
