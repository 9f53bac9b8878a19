-- A circuit breaker per side of a migration (the QRS source, the Cloud
-- target).  When a side goes away mid-run (a server killed, a network
-- down, DNS gone), every item would otherwise find out on its own, each
-- with its retries and backoff: dozens of failures one by one, a minute
-- lost, and a cache full of "failed" for objects that are fine.  After
-- `threshold` transport failures in a row (no reply at all: refused,
-- DNS, timeout, dropped, TLS) the breaker opens: every further request on
-- that side fails at once with one error saying the side is unreachable,
-- which the engine turns into "stop the run; the next run resumes" (its
-- items keep their in-progress markers).  Any reply, even an HTTP error,
-- proves the side is there and closes the count.
--
-- Generic on purpose: b:failure(kind) counts whatever the owner calls a
-- failure, and on_open is told once; a rate controller can reuse it.
local errors = require "qmig.clients.errors"

local M = {}
local Breaker = {}
Breaker.__index = Breaker

-- Transport failure codes of qmig.http (errors.transport) that mean "no
-- answer from that side".
M.TRANSPORT = { refused = true, dns = true, timeout = true, dropped = true, tls = true }
M.DEFAULT_THRESHOLD = 5

-- M.new{side=, url=, threshold=, on_open=fn(breaker)} -> breaker
function M.new(opts)
  return setmetatable({ side = opts.side or "server", url = opts.url, threshold = opts.threshold or M.DEFAULT_THRESHOLD,
    on_open = opts.on_open, failures = 0, open = false }, Breaker)
end

function Breaker:success()
  if not self.open then self.failures = 0 end
end

-- Counts one failure with its reason; -> true when this opened it.
function Breaker:failure(reason, code)
  if self.open then return false end
  self.failures = self.failures + 1
  self.reason, self.code = reason, code
  if self.failures >= self.threshold then
    self.open = true
    if self.on_open then self.on_open(self) end
    return true
  end
  return false
end

-- The error every request gets once open: `interrupted`, so the engine
-- leaves the item's in-progress marker for the next run, and `outage`,
-- so the run stops with its own exit status.
function Breaker:error()
  return errors.new {
    message = string.format("%s %s is unreachable: %s (%d requests in a row got no answer)", self.side,
      tostring(self.url), tostring(self.reason), self.failures),
    code = "outage", outage = true, interrupted = true, side = self.side, cause = self.code,
  }
end

-- Puts the breaker in front of an API client's raw(method, path, opts),
-- the one call every request of qmig.clients.qrs and qmig.clients.cloud goes through.
function Breaker:guard(client)
  local raw = client.raw
  local b = self
  client.raw = function(c, ...)
    if b.open then error(b:error(), 0) end
    local ok, res = pcall(raw, c, ...)
    if ok then
      b:success()
      return res
    end
    if errors.is(res) and M.TRANSPORT[res.code] then
      if b:failure(tostring(res), res.code) then error(b:error(), 0) end
    elseif errors.is(res) and res.status then
      b:success()
    end
    error(res, 0)
  end
  client.breaker = self
  return client
end

return M
