-- qmig.domain.validation.engines: engine sessions (qmig.clients.qix) on the source and
-- the target, with a bound on the sessions open per engine host.
--
-- The engine is heavier than REST (a session opens the app and keeps it in
-- memory), so whatever the step's concurrency, at most `per_host` sessions
-- are open to one host; a task that wants one more waits for one to close.
--
-- Where the engine is:
--   QSEoW    source.engine_url, else the QRS URL's host on port 4747 when
--            the QRS is on 4242 (certificates: the engine port), else the
--            QRS URL's origin (a virtual proxy forwards /app/ to the engine);
--            the same client certificate and X-Qlik-User as the QRS.
--   Cloud    target.engine_url, else the tenant URL as wss://;
--            Authorization: Bearer <API key or OAuth access token>.
local qmig = require "qmig"
local breaker = require "qmig.rate.breaker"
local errors = require "qmig.clients.errors"
local qix = require "qmig.clients.qix"
local qrs = require "qmig.clients.qrs"

local M = {}

M.PER_HOST = 4

local open_count = {}  -- host -> sessions open now (this process)

local function ws_url(url)
  return (url:gsub("^https://", "wss://"):gsub("^http://", "ws://"):gsub("/+$", ""))
end

function M.source_url(source)
  if source.engine_url then return ws_url(source.engine_url) end
  local scheme, host, port = source.url:match("^(https?)://([^/:]+):?(%d*)")
  if port == "4242" then return "wss://" .. host .. ":4747" end
  return ws_url(scheme .. "://" .. host .. (port ~= "" and (":" .. port) or ""))
end

function M.target_url(target)
  return ws_url(target.engine_url or target.url)
end

local function host_of(url) return url:match("^wss?://([^/]+)") or url end

-- An engine that gave no answer counts on its side's engine breaker
-- (qmig.rate.breaker.engine): many in a row stop the run (exit 4) instead of
-- failing app after app; -> nil, msg, code, or raises the outage error.
local function no_answer(ctx, side, msg, code)
  local client = side == "source" and ctx.source or ctx.target
  local b = errors.ENGINE_TRANSPORT[code] and breaker.engine(client)
  if b then
    b:failure(tostring(msg), code)
    if client.breaker.open then error(client.breaker:error(), 0) end
  end
  return nil, msg, code
end

-- engines.open(ctx, side ("source" | "target"), app_id [, per_host]) ->
-- session, doc | nil, msg, code.  Close with engines.close(session).
function M.open(ctx, side, app_id, per_host)
  local job = ctx.job or {}
  local opts
  if side == "source" then
    local s = job.source
    local headers = {}
    if s.jwt then headers.Authorization = "Bearer " .. s.jwt
    elseif s.header then headers[s.header] = s.user
    else headers["X-Qlik-User"] = qrs.user_header(s.user) end
    opts = { url = M.source_url(s), cert = s.cert, key = s.key, key_password = s.key_password, ca = s.ca,
      insecure = s.insecure, headers = headers }
  else
    local tg = job.target
    local auth
    if ctx.target.oauth then
      auth = ctx.target.oauth:header()
    else
      auth = "Bearer " .. tostring(tg.api_key or "")
    end
    opts = { url = M.target_url(tg), ca = tg.ca, insecure = tg.insecure, headers = { Authorization = auth } }
  end
  opts.app_id = app_id
  local host = host_of(opts.url)
  local limit = per_host or M.PER_HOST
  while (open_count[host] or 0) >= limit do qmig.sleep(0.01) end
  open_count[host] = (open_count[host] or 0) + 1
  local session, err, code = qix.open(opts)
  if not session then
    open_count[host] = open_count[host] - 1
    return no_answer(ctx, side, err, code)
  end
  session.validation_host = host
  local doc, derr, dcode = session:open_doc(app_id)
  if not doc then
    M.close(session)
    return no_answer(ctx, side, derr, dcode)
  end
  -- (OpenDoc answered: the engine is there; a session opened alone is not an answer)
  local b = breaker.engine(side == "source" and ctx.source or ctx.target)
  if b then b:success() end
  return session, doc
end

-- Fails a validation that could not get its engine: a transport code is
-- errors.engine's (transient, retried by qmig.engine.step), else fail(msg).
function M.fail(what, msg, code, fail)
  if errors.ENGINE_TRANSPORT[code] then error(errors.engine(what, msg, code), 0) end
  fail(what .. ": " .. tostring(msg))
end

function M.close(session)
  if not session or session.validation_closed then return end
  session.validation_closed = true
  session:close()
  local host = session.validation_host
  open_count[host] = math.max(0, (open_count[host] or 1) - 1)
end

-- Sessions open now to a host (for tests and the bench).
function M.open_now(host) return open_count[host] or 0 end

return M
