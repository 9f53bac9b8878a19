-- qmig.store.durable: the barrier a write request passes before it is sent.
--
-- The engine's crash safety needs an item's in-progress marker on disk
-- before the write it announces reaches the server.  While a step runs,
-- the cache sets the barrier (Cache:group): it commits pending markers and
-- makes them durable with an fsync run on the I/O worker, so the task
-- waits while every other task's transfers go on.  The engine hands wait
-- to the API clients as their `barrier` (lua/qmig/engine/job.lua ->
-- qmig.clients.connect.open -> cloud.new / qrs.new), which call it before
-- each write and tell qmig.http the write is covered (`durable = true`);
-- a write made another way still gets the blocking safety net of
-- qmig.host.before_send.  Private to the engine and the cache: no step or
-- client requires this module.
local M = {}

local barrier

-- set(fn | nil): fn() returns once every marker committed so far is durable.
function M.set(fn)
  barrier = fn
end

-- True when a barrier is set (the write can then say it is covered).
function M.wait()
  if barrier then
    barrier()
    return true
  end
  return false
end

return M
