-- OAuth 2.0 client credentials (machine to machine) for the Qlik Cloud
-- target, the way @qlik/api does it: POST /oauth/token with the client's
-- id and secret, the access token sent as a Bearer header.
--
-- Qlik never issues refresh tokens to M2M clients, so "renewing" means
-- running the grant again.  One token serves every task of the run: a task
-- that finds a fetch under way waits for it (a tenant caps the tokens a
-- client may hold, and /oauth/token is rate tier 2).  The token is renewed
-- before it expires, and once when the tenant answers 401 anyway (revoked,
-- or a clock that disagrees); a second 401 is an authentication failure.
--
-- Lifetime: `expires_in` (seconds) when the reply has it, else
-- `expires_at` measured against the reply's own Date header (the tenant's
-- clock, not this machine's), else Qlik's default of 6 hours.
local clock = require "qmig.clients.clock"
local errors = require "qmig.clients.errors"
local json = require "qmig.json"
local log = require "qmig.ui.log"
local qmig = require "qmig"
local retry = require "qmig.rate.retry"

local M = {}
local Token = {}
Token.__index = Token

M.DEFAULT_LIFETIME = 6 * 3600
M.DEFAULT_SCOPE = "admin_classic"

-- A margin before expiry at which the token is renewed: 10 % of its
-- lifetime, at least 5 minutes, but never more than half of it (a token
-- that lives a minute would otherwise be fetched for every request).
local function margin(lifetime)
  return math.min(math.max(300, lifetime * 0.1), lifetime * 0.5)
end

-- The token's lifetime in seconds from a token reply.
function M.lifetime(doc, headers)
  local n = tonumber(doc.expires_in)
  if n and n > 0 then return n end
  local at = clock.parse_iso(doc.expires_at)
  if at then
    local now = clock.parse_http_date(headers and headers.date) or os.time()
    if at > now then return at - now end
    return 0
  end
  return M.DEFAULT_LIFETIME
end

-- M.new{client = http client of the tenant, client_id =, client_secret =,
-- scope =, limiter =, retries =, url =} -> token source
function M.new(opts)
  return setmetatable({
    client = opts.client, client_id = opts.client_id, client_secret = opts.client_secret,
    scope = opts.scope or M.DEFAULT_SCOPE, limiter = opts.limiter, retries = opts.retries or 5,
    url = opts.url or "", fetched = 0,
  }, Token)
end

local function refused(self, resp)
  local doc = json.decode(resp.body or "")
  local e = type(doc) == "table" and type(doc.errors) == "table" and doc.errors[1] or nil
  local detail = type(e) == "table" and (tostring(e.title or "") .. (e.detail and e.detail ~= json.null
    and (" (" .. tostring(e.detail) .. ")") or "")) or ""
  local why = ({ [400] = "the request was refused (grant type or scope '" .. self.scope .. "' not allowed "
      .. "for this client?)",
    [401] = "the client id or secret is wrong, or the client is not allowed machine-to-machine",
    [403] = "the client is disabled or holds the maximum number of tokens" })[resp.status]
    or "unexpected reply"
  return errors.new {
    -- (never "token:" in a message: redaction would take what follows for one)
    message = string.format("target.oauth: POST %s/oauth/token answered HTTP %d, %s%s", self.url, resp.status, why,
      detail ~= "" and (" (" .. detail .. ")") or ""),
    status = resp.status, auth = resp.status >= 400 and resp.status < 500 and resp.status ~= 429,
    transient = resp.status == 429 or resp.status >= 500,
  }
end

function Token:fetch()
  local resp = retry.call(function()
    if self.limiter then self.limiter:acquire("tier2") end
    local r, msg, code = self.client:request {
      method = "POST", path = "/oauth/token",
      json = { grant_type = "client_credentials", client_id = self.client_id, client_secret = self.client_secret,
        scope = self.scope },
    }
    if not r then error(errors.transport("POST", "POST /oauth/token failed, " .. tostring(msg), code, false), 0) end
    if r.status == 429 and self.limiter then
      self.limiter:pause("tier2", tonumber(r.headers["retry-after"]) or 1)
    end
    if r.status ~= 200 then error(refused(self, r), 0) end
    return r
  end, { retries = self.retries })
  local doc = json.decode(resp.body or "")
  if type(doc) ~= "table" or type(doc.access_token) ~= "string" or doc.access_token == "" then
    error(errors.new { message = "target.oauth: the reply of POST /oauth/token has no access_token", auth = true }, 0)
  end
  if doc.token_type ~= nil and tostring(doc.token_type):lower() ~= "bearer" then
    error(errors.new { message = "target.oauth: the reply of POST /oauth/token is of type '"
      .. tostring(doc.token_type) .. "', not bearer", auth = true }, 0)
  end
  log.add_secret(doc.access_token)
  local lifetime = M.lifetime(doc, resp.headers)
  self.token, self.lifetime = doc.access_token, lifetime
  self.renew_at = qmig.monotonic() + lifetime - margin(lifetime)
  self.granted_scope = type(doc.scope) == "string" and doc.scope or nil
  self.fetched = self.fetched + 1
end

-- The Authorization header value, fetching or renewing the token first
-- when needed; returns the header and the token it carries.
function Token:header()
  while self.fetching do qmig.sleep(0.02) end  -- another task is fetching: share its token
  if not self.token or qmig.monotonic() >= self.renew_at then
    self.fetching = true
    local ok, err = pcall(self.fetch, self)
    self.fetching = false
    if not ok then error(err, 0) end
  end
  return "Bearer " .. self.token, self.token
end

-- After a 401 for a request that carried `token`: the next header() gets
-- a new one (unless another task renewed it already).
function Token:invalidate(token)
  if self.token == token then self.token = nil end
end

-- What `check` shows: never the token itself.
function Token:describe()
  local left = self.renew_at and math.max(0, self.renew_at + margin(self.lifetime) - qmig.monotonic()) or 0
  return string.format("OAuth client %s (scope %s), token valid for %d min", tostring(self.client_id),
    self.granted_scope or self.scope, math.floor(left / 60 + 0.5))
end

return M
