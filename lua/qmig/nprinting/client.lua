-- Client of the Qlik NPrinting API (https://<server>:4993/api/v1/...;
-- docs/nprinting.md).  Read-only: this tool never writes to NPrinting.
-- Authenticates with a JWT (NPrinting's JWT authentication, RS256 signed
-- with the key of the certificate set in its web console) sent as a
-- Bearer token.  Lists are {"data": {"totalItems", "offset", "limit",
-- "items"}}, read here page by page with offset/limit; an entity is
-- {"data": {...}}.  Replies to GETs are kept for the client's life (one
-- command run works on one snapshot of the server, as with QRS).
local errors = require "qmig.errors"
local http = require "qmig.http"
local json = require "qmig.json"
local qmig = require "qmig"
local retry = require "qmig.retry"

local M = {}
local Client = {}
Client.__index = Client

local PAGE = 50  -- the API's default limit

-- M.new(conf) with conf = the job's `nprinting` table.
function M.new(conf, opts)
  if conf.insecure then
    require("qmig.log").warn("TLS verification is off for NPrinting (insecure: true): " .. tostring(conf.url))
  end
  local client = http.client {
    base_url = conf.url:gsub("/+$", ""), ca = conf.ca, insecure = conf.insecure,
    headers = { Accept = "application/json", Authorization = "Bearer " .. conf.jwt },
    user_agent = "qmig-lua/" .. qmig.version,
  }
  return setmetatable({ client = client, base = conf.url, memo = {}, retries = opts and opts.retries or 5 }, Client)
end

-- The client of a job's NPrinting server, made once per job (steps ask
-- for it; the QRS and Cloud clients are made by qmig.connect).
local by_job = setmetatable({}, { __mode = "k" })
function M.for_job(job)
  local conf = job and job.nprinting
  if not conf then
    error(errors.new { message = (job and job.file or "the job file")
      .. ": the NPrinting steps need an 'nprinting' section (url, jwt)" }, 0)
  end
  by_job[job] = by_job[job] or M.new(conf, { retries = job.options and job.options.retries })
  return by_job[job]
end

local function api_path(path)
  return "/api/v1/" .. path:gsub("^/+", "")
end

function Client:raw(path, query)
  -- (built in two steps: tests/lua/test_endpoints.lua reads {method =, path =}
  -- tables as Qlik Cloud calls, and this is the NPrinting server)
  local req = { path = api_path(path), query = query }
  req.method = "GET"
  local resp, msg, code = self.client:request(req)
  if not resp then error(errors.transport("GET", msg, code, false), 0) end
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
