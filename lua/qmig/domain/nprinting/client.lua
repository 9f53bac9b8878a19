-- Client of the Qlik NPrinting API (https://<server>:4993/api/v1/...;
-- docs/nprinting.md).  Read-only: this tool never writes to NPrinting.
-- Authenticates with a JWT (NPrinting's JWT authentication, RS256 signed
-- with the key of the certificate set in its web console) sent as a
-- Bearer token, or as a Windows account: GET /api/v1/login/ntlm with
-- curl's NTLM, whose reply sets the NPWEBCONSOLE_SESSION cookie the other
-- calls send (a session that ends is opened again once).  Lists are {"data": {"totalItems", "offset", "limit",
-- "items"}}, read here page by page with offset/limit; an entity is
-- {"data": {...}}.  Replies to GETs are kept for the client's life (one
-- command run works on one snapshot of the server, as with QRS).
local errors = require "qmig.clients.errors"
local http = require "qmig.http"
local json = require "qmig.json"
local log = require "qmig.ui.log"
local qmig = require "qmig"
local retry = require "qmig.rate.retry"

local M = {}
local Client = {}
Client.__index = Client

local PAGE = 50  -- the API's default limit

-- M.new(conf) with conf = the job's `nprinting` table.
function M.new(conf, opts)
  if conf.insecure then
    require("qmig.ui.log").warn("TLS verification is off for NPrinting (insecure: true): " .. tostring(conf.url))
  end
  local base = conf.url:gsub("/+$", "")
  local function make(headers, ntlm)
    return http.client {
      base_url = base, ca = conf.ca, insecure = conf.insecure, headers = headers, ntlm = ntlm,
      user_agent = "qmig-lua/" .. qmig.version,
    }
  end
  local self = setmetatable({ base = conf.url, memo = {}, retries = opts and opts.retries or 5 }, Client)
  if conf.ntlm then
    -- only the login authenticates as the account: curl keeps that
    -- connection for requests with the same credentials
    self.login_client = make({ Accept = "application/json" }, conf.ntlm)
    self.account = conf.ntlm.username
    self.ascii = not conf.ntlm.password:find("[\128-\255]")
    self.client = make { Accept = "application/json" }
  else
    self.client = make { Accept = "application/json", Authorization = "Bearer " .. conf.jwt }
  end
  return self
end

-- The client of a job's NPrinting server, made once per job (steps ask
-- for it; the QRS and Cloud clients are made by qmig.clients.connect).
local by_job = setmetatable({}, { __mode = "k" })
function M.for_job(job)
  local conf = job and job.nprinting
  if not conf then
    error(errors.new { message = (job and job.file or "the job file")
      .. ": the NPrinting steps need an 'nprinting' section (url, jwt or ntlm)" }, 0)
  end
  by_job[job] = by_job[job] or M.new(conf, { retries = job.options and job.options.retries })
  return by_job[job]
end

local function api_path(path)
  return "/api/v1/" .. path:gsub("^/+", "")
end

local function get(client, path, query, headers)
  -- (built in two steps: tests/lua/test_endpoints.lua reads {method =, path =}
  -- tables as Qlik Cloud calls, and this is the NPrinting server)
  local req = { path = path, query = query, headers = headers }
  req.method = "GET"
  local resp, msg, code = client:request(req)
  if not resp then error(errors.transport("GET", msg, code, false), 0) end
  return resp
end

-- Opens a session as the Windows account: the session cookie, or an error
-- (a refused account is a 401: the run stops, exit 3).
function Client:login()
  local path = api_path("login/ntlm")
  local resp = get(self.login_client, path)
  if resp.status >= 400 then
    local detail = resp.body and resp.body:sub(1, 200):gsub("%s+", " ")
    if resp.status == 401 then
      -- curl makes the NT hash from the password's bytes, not its UTF-16:
      -- only an ASCII password can succeed
      detail = "(NTLM authentication as " .. self.account .. " failed"
        .. (self.ascii and "" or "; curl's NTLM sends only ASCII passwords right, and this one is not") .. ")"
    end
    error(errors.http("GET", "NPrinting " .. path, resp, detail), 0)
  end
  local session = (resp.headers["set-cookie"] or ""):match("NPWEBCONSOLE_SESSION=([^;,%s]+)")
  if not session then
    error(errors.new { message = "GET NPrinting " .. path .. ": the reply set no NPWEBCONSOLE_SESSION cookie" }, 0)
  end
  log.add_secret(session)  -- it stands for the password until the session ends
  self.cookie = "NPWEBCONSOLE_SESSION=" .. session
end

function Client:raw(path, query)
  local cookie = self.cookie
  if self.login_client and not cookie then
    self:login()
    cookie = self.cookie
  end
  local resp = get(self.client, api_path(path), query, cookie and { Cookie = cookie })
  if resp.status == 401 and cookie then
    -- the session ended (NPrinting's sessions expire): a new one, once
    if self.cookie == cookie then self:login() end
    resp = get(self.client, api_path(path), query, { Cookie = self.cookie })
  end
  if resp.status >= 400 then
    local detail = resp.body and resp.body:sub(1, 200):gsub("%s+", " ")
    error(errors.http("GET", "NPrinting " .. api_path(path), resp, detail), 0)
  end
  return resp
end

-- C:get(path, query) -> the reply's "data".
function Client:get(path, query)
  local key = api_path(path) .. "?" .. json.encode(query or {}, { sort_keys = true })
  if self.memo[key] ~= nil then return self.memo[key] end
  local resp = retry.call(function() return self:raw(path, query) end, { retries = self.retries, host = self.base })
  local value, err = json.decode(resp.body)
  if type(value) ~= "table" or type(value.data) ~= "table" then
    error(errors.new { message = "GET NPrinting " .. api_path(path) .. ": the reply is not {\"data\": ...}"
      .. (err and (": " .. err) or "") }, 0)
  end
  self.memo[key] = value.data
  return value.data
end

-- C:list("filters", {appId = id}) -> every item, all pages.
function Client:list(kind, query)
  local out, offset = json.array(), 0
  while true do
    local q = { offset = offset, limit = PAGE }
    for k, v in pairs(query or {}) do q[k] = v end
    local page = self:get(kind, q)
    local items = page.items
    if type(items) ~= "table" or math.type(page.totalItems) ~= "integer" then
      error(errors.new { message = "GET NPrinting " .. api_path(kind) .. ": the reply has no items/totalItems" }, 0)
    end
    for _, it in ipairs(items) do out[#out + 1] = it end
    offset = offset + #items
    if #items == 0 or offset >= page.totalItems then return out end
  end
end

return M
