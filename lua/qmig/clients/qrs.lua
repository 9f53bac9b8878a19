-- Client of the QSEoW Repository Service (QRS) API.  Read-only by design:
-- the source is never written to (exports aside).  Every call carries a
-- fresh Xrfkey as query parameter and header, and X-Qlik-User.
local errors = require "qmig.clients.errors"
local http = require "qmig.http"
local json = require "qmig.json"
local qmig = require "qmig"
local retry = require "qmig.rate.retry"

local M = {}
local Qrs = {}
Qrs.__index = Qrs

-- "DIR\user" -> "UserDirectory=DIR; UserId=user"
function M.user_header(user)
  local dir, id = user:match("^([^\\]+)\\(.+)$")
  if not dir then error("source.user must look like DIRECTORY\\userid, got '" .. user .. "'", 0) end
  return string.format("UserDirectory=%s; UserId=%s", dir, id)
end

-- A QRS filter string literal: single quotes, a quote doubled.
function M.quote(value)
  return "'" .. tostring(value):gsub("'", "''") .. "'"
end

local GUID = "^" .. ("%x"):rep(8) .. "%-" .. ("%x"):rep(4) .. "%-" .. ("%x"):rep(4) .. "%-" .. ("%x"):rep(4)
  .. "%-" .. ("%x"):rep(12) .. "$"

-- M.eq("stream.name", "O'Brien") -> "stream.name eq 'O''Brien'".  GUIDs and
-- booleans go unquoted, as QRS expects.
function M.eq(property, value)
  assert(property:match("^[%w_.]+$"), "bad QRS property name")
  if type(value) == "boolean" then return property .. " eq " .. tostring(value) end
  if type(value) == "string" and value:match(GUID) then
    return property .. " eq " .. value
  end
  return property .. " eq " .. M.quote(value)
end

function M.any(clauses) return "(" .. table.concat(clauses, " or ") .. ")" end
function M.all(clauses) return "(" .. table.concat(clauses, " and ") .. ")" end

-- M.new(source) with source = the job's source table.
function M.new(source, opts)
  if source.insecure then  -- turning verification off must never go unnoticed in the log
    require("qmig.ui.log").warn("TLS verification is off for the source (insecure: true): " .. tostring(source.url))
  end
  -- Certificate auth on port 4242 names the acting user in X-Qlik-User;
  -- through a virtual proxy the proxy authenticates: a JWT, or a header
  -- (its name configured on the proxy) carrying DIR\user (A3).
  local headers = { Accept = "application/json" }
  if source.jwt then
    headers.Authorization = "Bearer " .. source.jwt
  elseif source.header then
    headers[source.header] = source.user
  else
    headers["X-Qlik-User"] = M.user_header(source.user)
  end
  local client = http.client {
    base_url = source.url, cert = source.cert, key = source.key, key_password = source.key_password,
    ca = source.ca, insecure = source.insecure, headers = headers,
    user_agent = "qmig-lua/" .. qmig.version,
  }
  -- opts.barrier: the engine's write barrier, as for qmig.clients.cloud
  return setmetatable({ client = client, retries = opts and opts.retries or 5, dry_run = opts and opts.dry_run,
    memo = {}, memo_bytes = 0, base = source.url, barrier = opts and opts.barrier }, Qrs)
end

local function api_path(path)
  return path:match("^/") and path or ("/qrs/" .. path)
end

-- Replies to GETs are kept for the client's life (one command run): the
-- source does not change because of us, and several steps of a run list
-- the same objects (users, streams, apps, rules...); each listing is a
-- request made before any item of its step can start.  A run works on
-- one snapshot of the source this way.  Bounded, in case a site is huge.
local MEMO_MAX_BYTES = 64 * 1024 * 1024

local function memo_key(path, query)
  local keys = {}
  for k in pairs(query or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = { api_path(path) }
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(query[k]) end
  return table.concat(parts, "\0")
end

-- One request, no retry.  Returns the response or raises a qmig error.
function Qrs:raw(method, path, opts)
  opts = opts or {}
  -- the only QRS writes are export requests; a dry run makes none
  if method ~= "GET" and self.dry_run then error(errors.dry_run(method, api_path(path)), 0) end
  local key = qmig.random_string(16)
  local query = {}
  for k, v in pairs(opts.query or {}) do query[k] = v end
  query.xrfkey = key
  -- the engine's barrier (see qmig.clients.cloud's new): the marker first
  local covered = method ~= "GET" and self.barrier ~= nil and self.barrier()
  local resp, msg, code = self.client:request {
    method = method, path = api_path(path), query = query, json = opts.json, sink = opts.sink,
    headers = { ["X-Qlik-Xrfkey"] = key }, timeout = opts.timeout, durable = covered,
  }
  if not resp then error(errors.transport(method, msg, code, method ~= "GET"), 0) end
  if resp.status >= 400 then
    local detail = resp.body and resp.body:sub(1, 200):gsub("%s+", " ")
    error(errors.http(method, api_path(path), resp, detail), 0)
  end
  if resp.status >= 300 then  -- QRS never redirects; a proxy's login page does
    local location = resp.headers and resp.headers.location
    error(errors.new { message = string.format("%s %s: HTTP %d redirect to %s (not followed: check source.url)",
      method, api_path(path), resp.status, tostring(location or "?"):sub(1, 200)), status = resp.status }, 0)
  end
  return resp
end

function Qrs:request(method, path, opts)
  local key = method == "GET" and not (opts and opts.sink) and self.memo and memo_key(path, opts and opts.query)
  local kept = key and self.memo[key]
  if kept then return { status = kept.status, headers = kept.headers, body = kept.body, memo = true } end
  local resp = retry.call(function() return self:raw(method, path, opts) end,
    { retries = self.retries, host = self.base })
  if key and resp.body and self.memo_bytes + #resp.body <= MEMO_MAX_BYTES then
    self.memo[key] = { status = resp.status, headers = resp.headers, body = resp.body }
    self.memo_bytes = self.memo_bytes + #resp.body
  end
  return resp
end

local function decode(resp, what)
  local value, err = json.decode(resp.body)
  if value == nil then error(errors.new { message = what .. ": the QRS reply is not JSON: " .. err }, 0) end
  return value
end

-- Q:get("app/full", {filter = ...}) -> decoded JSON.
function Qrs:get(path, query)
  return decode(self:request("GET", path, { query = query }), "GET " .. api_path(path))
end

-- Q:full("app", filter) -> list of full objects.
function Qrs:full(entity, filter)
  local list = self:get(entity .. "/full", filter and { filter = filter } or nil)
  -- an object (or null) is not a list: it used to pass as zero items
  if type(list) ~= "table" or (not json.is_array(list) and next(list) ~= nil) then
    error(errors.new { message = "GET /qrs/" .. entity .. "/full: expected a list" }, 0)
  end
  return list
end

function Qrs:count(entity, filter)
  local reply = self:get(entity .. "/count", filter and { filter = filter } or nil)
  if type(reply) ~= "table" or math.type(reply.value) ~= "integer" then
    error(errors.new { message = "GET /qrs/" .. entity .. "/count: expected {\"value\": n}" }, 0)
  end
  return reply.value
end

function Qrs:about() return self:get("about") end

-- Exports an app to dest with the two-call export; the file is streamed.
-- One export: the POST for a new token, then the single download.
function Qrs:export_once(app_id, query, dest)
  local token = qmig.uuid()
  local reply = decode(self:raw("POST", "app/" .. app_id .. "/export/" .. token, { query = query }), "app export")
  if type(reply) ~= "table" or type(reply.downloadPath) ~= "string" then
    error(errors.new { message = "app export of " .. app_id .. ": reply has no downloadPath" }, 0)
  end
  local path = reply.downloadPath
  path = path:match("^/") and path or ("/" .. path)
  local ok, resp = pcall(self.raw, self, "GET", path, { sink = dest, timeout = 0 })
  if not ok then
    -- served already: curl re-sends a GET whose reused connection died before
    -- any reply byte, and the QRS had served the download on it
    if errors.is(resp) and resp.status == 404 then resp.served = true end
    error(resp, 0)
  end
  return resp.sink, resp.bytes
end

-- Exports an app to dest with the two-call export; the file is streamed.
-- A download is served once only, so a transient failure of either call,
-- or a download found served already, repeats the whole pair with a new token; an export changes nothing on
-- the source, so even a POST whose reply was lost is safe to repeat.
function Qrs:export_app(app_id, opts, dest)
  local query = { skipData = not opts.with_data }
  if opts.scope then query.exportScope = opts.scope end
  local attempt = 0
  while true do
    attempt = attempt + 1
    local ok, sink, bytes = pcall(self.export_once, self, app_id, query, dest)
    if ok then return sink, bytes end
    local err = sink
    if not (errors.is(err) and (err.transient or err.served)) or attempt > self.retries or qmig.interrupted() then
      error(err, 0)
    end
    qmig.sleep(retry.delay(attempt, err))
  end
end

return M
