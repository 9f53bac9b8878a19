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

-- The engine (WebSocket) of a client's side has a count of its own: the
-- REST calls between engine calls get replies, which must not close the
-- count of an engine that stopped answering.  When it opens, so does the
-- side's breaker (client.breaker), so the engine (qmig.engine.step's
-- outage) stops the run as for a side gone away (exit 4, the next run
-- resumes).  -> the engine breaker (one per client), or nil without one.
function M.engine(client)
  if not client or not client.breaker then return nil end
  if not client.engine_breaker then
    local side = client.breaker
    client.engine_breaker = M.new { side = side.side .. " engine", url = side.url, threshold = side.threshold,
      on_open = function(b)
        if not side.open then
          side.open, side.failures = true, b.failures
          side.reason, side.code = "its engine: " .. tostring(b.reason), b.code
        end
      end }
  end
  return client.engine_breaker
end

-- Counts an engine call's outcome (nil, msg, code of qmig.clients.qix, or
-- a result) on the engine breaker of a client; a call that failed raises
-- errors.engine(what, ...), or the side's outage error once it is open.
function M.engine_call(client, what, res, msg, code, ...)
  local b = M.engine(client)
  if res ~= nil or (msg == nil and code == nil) then   -- (a result may be nil: no script yet)
    if b then b:success() end
    return res, msg, code, ...
  end
  if b and errors.ENGINE_TRANSPORT[code] then
    b:failure(tostring(msg), code)
    if client.breaker.open then error(client.breaker:error(), 0) end
  elseif b and code == "qix" then
    b:success()   -- an answer, even an error, proves the engine is there
  end
  error(errors.engine(what, msg, code), 0)
end

return M
