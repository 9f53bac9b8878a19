-- Both API clients, proven to work before anything is written, and why
-- the first request to a side failed, said for a person.  A run refused
-- at the door leaves nothing behind: this runs before the project folder
-- is made.
local breaker = require "qmig.rate.breaker"
local cloud = require "qmig.clients.cloud"
local errors = require "qmig.clients.errors"
local qrs = require "qmig.clients.qrs"

local M = {}

-- the process exit statuses a refused connection maps to (see qmig.ui.cli)
M.EXIT = { failed = 1, config = 2, auth = 3, outage = 4 }

-- An encrypted key without its password cannot be used (and OpenSSL
-- would ask for it on the terminal): said before any connection.
function M.key_problem(job)
  local src = job.source
  if not src.key or src.key_password then return nil end
  local text = require("qmig.fs").read_file(src.key)
  if text and (text:find("-----BEGIN ENCRYPTED PRIVATE KEY-----", 1, true)
      or text:find("Proc-Type: 4,ENCRYPTED", 1, true)) then
    return string.format("%s: source.key is encrypted: set source.key_password (key file %s)", job.file, src.key)
  end
  return nil
end

-- What curl and OpenSSL say when the server ends the TLS session during
-- or right after the handshake.  With TLS 1.3 a refused client
-- certificate reaches the client only at its first read or write, so the
-- words vary with timing and library version: "alert unknown ca",
-- "Broken pipe", "Connection reset", "SSL_write() error ... bad write
-- retry", "unexpected eof".
local HANDSHAKE_WORDS = { "alert", "Broken pipe", "Connection reset", "not connected", "SSL_write", "SSL_read",
  "SSL routines", "unexpected eof", "SSL_ERROR_SYSCALL" }

local function broke_off_tls(text)
  -- the server's own certificate not trusted is another problem (below)
  if text:find("certificate problem", 1, true) then return false end
  for _, w in ipairs(HANDSHAKE_WORDS) do
    if text:find(w, 1, true) then return true end
  end
  return false
end

-- Why the first request to a side failed -> message, exit status.  A
-- certificate problem is an identity problem (3), like a rejected key,
-- and is named as such: curl's words for a handshake the server broke off
-- do not say that the client certificate was refused.  No answer at all
-- (refused, DNS, timeout) is an outage (4).
function M.problem(side, conf, err)
  local what = side .. " " .. conf.url .. ": "
  local text = tostring(err)
  local code = errors.is(err) and (err.cause or err.code)
  if errors.is(err) and (err.status == 401 or err.status == 403) then return what .. text, M.EXIT.auth end
  if conf.cert and (code == "dropped" or code == "tls") and broke_off_tls(text) then
    local why = text:find("unknown ca", 1, true) and "it does not trust the certificate's issuer"
      or text:find("certificate required", 1, true) and "it requires a client certificate"
      or "it did not accept the client certificate"
    return string.format("%sthe server broke off the TLS handshake: %s (%s.cert %s); use the certificate "
      .. "exported from this site's QMC with its key (%s)", what, why, side, conf.cert, text), M.EXIT.auth
  end
  if code == "tls" then
    local why = text:find("certificate problem", 1, true) and ("the server's certificate is not trusted: set "
      .. side .. ".ca to the CA that signed it") or "TLS failed"
    return string.format("%s%s (%s)", what, why, text), M.EXIT.auth
  end
  if breaker.TRANSPORT[code] or (errors.is(err) and err.outage) then
    return what .. "unreachable: " .. text, M.EXIT.outage
  end
  return what .. text, M.EXIT.failed
end

-- M.open(job, {dry_run, barrier}) -> source, target | nil, message, exit
-- status.  barrier: what the clients call before each write (qmig.clients.cloud's new).
function M.open(job, opts)
  local bad_key = M.key_problem(job)
  if bad_key then return nil, bad_key, M.EXIT.config end
  local source = qrs.new(job.source, { retries = job.options.retries, dry_run = opts.dry_run,
    barrier = opts.barrier })
  local rates = job.options.rate_limits
  if type(rates) == "table" then
    local defaults = require("qmig.rate.limiter").DEFAULTS
    for tier, n in pairs(defaults) do rates[tier] = rates[tier] or n end
  end
  local target = cloud.new(job.target, { retries = job.options.retries, dry_run = opts.dry_run, rate_limits = rates,
    barrier = opts.barrier })
  breaker.new({ side = "source", url = job.source.url }):guard(source)
  breaker.new({ side = "target", url = job.target.url }):guard(target)
  local ok, err = pcall(function() return target:me() end)
  if not ok then return nil, M.problem("target", job.target, err) end
  ok, err = pcall(function() return source:about() end)
  if not ok then return nil, M.problem("source", job.source, err) end
  return source, target
end

return M
