-- Structured errors for API failures.  Steps raise them (error(e)); the
-- engine reads the fields to decide: retry later (transient), look the
-- object up before retrying (unknown outcome: the write may have been
-- applied), or stop the whole run (auth).
local M = {}

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end
Error.__name = "qmig.Error"

-- M.new{message=, status=, code=, transient=, unknown=, auth=,
-- retry_after=, method=, url=} -> error object
function M.new(fields)
  fields.message = fields.message or "error"
  return setmetatable(fields, Error)
end

function M.is(v) return getmetatable(v) == Error end

-- A write refused because the run is a dry run; the engine turns it into
-- "would create/update/delete" for the item.
M.DryRun = {}
M.DryRun.__index = M.DryRun
M.DryRun.__tostring = function(e) return "dry run: would " .. e.method .. " " .. e.path end

function M.dry_run(method, path, body)
  return setmetatable({ method = method, path = path, body = body }, M.DryRun)
end

local transient_codes = { timeout = true, refused = true, dropped = true, dns = true, interrupted = false }

-- From a transport failure (nil, msg, code of qmig.http).  A failed write
-- whose request may have reached the server has an unknown outcome.
function M.transport(method, msg, code, is_write)
  local maybe_sent = code == "timeout" or code == "dropped"
  return M.new {
    message = msg, code = code, method = method,
    transient = transient_codes[code] or false,
    unknown = is_write and maybe_sent or false,
    interrupted = code == "interrupted",
  }
end

-- Codes of qmig.clients.qix (the WebSocket's, src/lws.c and src/ws_conn.c)
-- that mean the engine gave no answer: it stopped answering (timeout: "no
-- message in time"), the connection closed or dropped, or it could not be
-- made.  "qix" (the engine answered with an error) is not one of them.
M.ENGINE_TRANSPORT = { timeout = true, closed = true, dropped = true, io = true, refused = true, dns = true,
  connect = true, tls = true }

-- From a failed engine call (nil, msg, code of qmig.clients.qix): `what`
-- says what was being done and on which app.  A transport failure is
-- transient, and its outcome unknown (a call sent may have been applied),
-- so the engine (qmig.engine.step) runs the item again, looking first;
-- an engine error (code "qix") fails the item.
function M.engine(what, msg, code)
  local transport = M.ENGINE_TRANSPORT[code] or false
  return M.new { message = what .. ": " .. tostring(msg), code = code, method = "engine",
    transient = transport, unknown = transport, engine = true }
end

-- From an HTTP reply with an error status.
function M.http(method, url, resp, detail, code)
  local status = resp.status
  local retry_after = tonumber(resp.headers and resp.headers["retry-after"] or nil)
  local is_write = method ~= "GET" and method ~= "HEAD"
  return M.new {
    message = string.format("%s %s: HTTP %d%s", method, url, status, detail and (" " .. detail) or ""),
    status = status, code = code, method = method, url = url,
    retry_after = retry_after,
    auth = status == 401,  -- 403 is per object (e.g. a managed space); the preflight treats it as auth
    transient = status == 429 or status >= 500,
    -- a 5xx on a write may come after the server applied it
    unknown = is_write and status >= 500 or false,
  }
end

return M
