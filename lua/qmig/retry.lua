-- Retry policy for transient API failures: exponential backoff with
-- jitter, and Retry-After honoured when the server gives one.
local qmig = require "qmig"

local M = {}

M.base_delay = 0.5
M.max_delay = 30

-- delay(attempt, err) -> seconds to wait before attempt+1.
function M.delay(attempt, err)
  if err and err.retry_after then return math.min(math.max(err.retry_after, 0), 300) end
  local d = math.min(M.max_delay, M.base_delay * 2 ^ (attempt - 1))
  return d * (0.5 + math.random() * 0.5)
end

-- M.call(fn, {retries=, on_retry=fn(err, attempt, delay)}) -> results of fn.
-- Retries fn while it raises a transient error that is not an unknown-
-- outcome write (those go back to the caller, which must look first).
function M.call(fn, opts)
  local retries = opts and opts.retries or 5
  local attempt = 0
  while true do
    attempt = attempt + 1
    local results = table.pack(pcall(fn))
    if results[1] then return table.unpack(results, 2, results.n) end
    local err = results[2]
    local retryable = type(err) == "table" and err.transient and not err.unknown and not err.auth
    if not retryable or attempt > retries or qmig.interrupted() then error(err, 0) end
    local d = M.delay(attempt, err)
    if opts and opts.on_retry then opts.on_retry(err, attempt, d) end
    qmig.sleep(d)
  end
end

return M
