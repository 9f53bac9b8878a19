-- Client of the Qlik Cloud REST API (/api/v1, /api/scheduling): a bearer
-- API key or an OAuth M2M token (qmig.clients.oauth), cursor paging
-- (links.next.href; `page=` for data connections), Qlik's error
-- shape, retries of transient failures.  Writes can be refused in dry-run
-- mode: the engine turns the refusal into "would create/update/delete".
local budget = require "qmig.rate.budget"
local clock = require "qmig.clients.clock"
local errors = require "qmig.clients.errors"
local http = require "qmig.http"
local json = require "qmig.json"
local limiter = require "qmig.rate.limiter"
local oauth = require "qmig.clients.oauth"
local overlay = require "qmig.store.overlay"
local qmig = require "qmig"
local retry = require "qmig.rate.retry"

local M = {}
local Cloud = {}
Cloud.__index = Cloud

function M.new(target, opts)
  opts = opts or {}
  if target.insecure then  -- turning verification off must never go unnoticed in the log
    require("qmig.ui.log").warn("TLS verification is off for the target (insecure: true): " .. tostring(target.url))
  end
  local base = target.url:gsub("/+$", "")
  local headers = { Accept = "application/json" }
  if not target.oauth then headers.Authorization = "Bearer " .. (target.api_key or "") end
  local client = http.client {
    base_url = base, ca = target.ca, insecure = target.insecure, headers = headers,
    user_agent = "qmig-lua/" .. qmig.version,
  }
  local self = setmetatable({
    client = client, base = base, retries = opts.retries or 5,
    dry_run = opts.dry_run or false, writes = 0, on_write = opts.on_write,
    -- opts.barrier: called before each write; returns true once every
    -- in-progress marker committed so far is on disk (the engine's, from
    -- lua/qmig/engine/job.lua: an item's marker is durable before the write
    -- it announces leaves; lua/qmig/store/cache.lua Cache:group).  Without
    -- one, qmig.http's blocking safety net still holds the write back.
    barrier = opts.barrier,
    limiter = opts.rate_limits ~= false and limiter.new(opts.rate_limits,
      { budget = opts.shared_budget ~= false and budget.open(target) or nil }) or nil,
  }, Cloud)
  if target.oauth then
    self.oauth = oauth.new { client = client, client_id = target.oauth.client_id,
      client_secret = target.oauth.client_secret, scope = target.oauth.scope, limiter = self.limiter,
      retries = self.retries, url = base }
  end
  return self
end

-- How this client authenticates, for `check` (never the key or token).
function Cloud:auth_description()
  if self.oauth then return self.oauth:describe() end
  return "API key"
end

local function api_path(path)
  if path:match("^https?://") or path:match("^/api/") then return path end
  return "/api/v1/" .. path:gsub("^/", "")
end

-- Qlik's error body -> "CODE: title (detail)".
local function describe(body)
  local doc = body and json.decode(body)
  local e = type(doc) == "table" and type(doc.errors) == "table" and doc.errors[1]
  if type(e) == "table" then
    local text = tostring(e.title or "")
    if e.detail and e.detail ~= json.null then text = text .. " (" .. tostring(e.detail) .. ")" end
    return text, e.code ~= json.null and e.code or nil
  end
  return body and body:sub(1, 200):gsub("%s+", " ") or nil
end

M.DryRun = errors.DryRun  -- kept here too: steps raise it for writes made another way

-- Where a dry run's placeholder id (qmig.store.overlay) is in a request:
-- "object" (the path ends with it: the object itself, and the id), "path"
-- (something under it), "query" (a listing about it) or nil.
local function placeholder_in(path, query)
  local base, q = tostring(path):match("^([^?]*)(.*)$")
  local at = base:find(overlay.PREFIX, 1, true)
  if at then
    local id = base:sub(at)
    -- (a key may hold "/", a QlikView document's path: only ")/" starts what is under it)
    return overlay.is_placeholder(id) and id:sub(-1) == ")" and not id:find(")/", 1, true) and "object" or "path", id
  end
  if q:find(overlay.PREFIX, 1, true) then return "query" end
  for _, v in pairs(query or {}) do
    if tostring(v):find(overlay.PREFIX, 1, true) then return "query" end
  end
  return nil
end

local EMPTY_LIST = '{"data":[],"links":{}}'

-- One request, no retry: the response, or a raised qmig error.
function Cloud:raw(method, path, opts)
  opts = opts or {}
  local is_write = method ~= "GET" and method ~= "HEAD"
  if is_write and self.dry_run then
    error(errors.dry_run(method, api_path(path), opts.json), 0)
  end
  -- An object a plan would create does not exist yet, so the tenant is
  -- not asked: the object itself reads as the plan would create it (the
  -- body of its create, with its placeholder id), what is under it or a
  -- listing about it as empty.
  local planned, planned_id = nil, nil
  if self.dry_run then planned, planned_id = placeholder_in(path, opts.query) end
  if planned == "object" then
    local made = self.overlay and self.overlay:planned_object(planned_id)
    if not made then
      error(errors.new { message = method .. " " .. api_path(path) .. ": HTTP 404 (created by this plan)",
        status = 404, method = method, planned = true }, 0)
    end
    return { status = 200, headers = {}, body = json.encode(made) }
  elseif planned then
    return { status = 200, headers = {}, body = EMPTY_LIST }
  end
  -- The barrier first: it may wait for an fsync that several tasks share,
  -- and requests that took their tokens before it would then leave
  -- together, a burst the server's bucket answers with 429s.
  local covered = is_write and self.barrier ~= nil and self.barrier()
  local tier = limiter.tier(method, api_path(path))
  if self.limiter then self.limiter:acquire(tier) end
  local headers, token = opts.headers, nil
  if self.oauth then
    headers = {}
    for k, v in pairs(opts.headers or {}) do headers[k] = v end
    headers.Authorization, token = self.oauth:header()
  end
  local resp, msg, code = self.client:request {
    method = method, path = api_path(path), query = opts.query, json = opts.json, body = opts.body,
    source = opts.source, sink = opts.sink, multipart = opts.multipart, headers = headers,
    timeout = opts.timeout, durable = covered,
  }
  if resp and resp.status == 401 and token and not opts.renewed then
    -- a token revoked or expired early: one new token, one more try (a 401
    -- is an answer, so even a write was not applied)
    self.oauth:invalidate(token)
    local again = {}
    for k, v in pairs(opts) do again[k] = v end
    again.renewed = true
    return self:raw(method, path, again)
  end
  local date = resp and resp.headers and clock.parse_http_date(resp.headers.date)
  if date then self.clock_offset = date - qmig.time() end
  if is_write then
    self.writes = self.writes + 1
    if self.on_write then self.on_write(method, path) end
  end
  if not resp then error(errors.transport(method, msg, code, is_write), 0) end
  if resp.status == 429 and self.limiter then
    self.limiter:pause(tier, tonumber(resp.headers["retry-after"]) or 1)
  elseif self.limiter then
    self.limiter:answered(tier)
  end
  if resp.status >= 400 then
    local detail, qcode = describe(resp.body)
    error(errors.http(method, api_path(path), resp, detail, qcode), 0)
  end
  if resp.status >= 300 then
    -- Redirects are not followed (the API key must not travel to another
    -- host); the API never redirects, so the URL in the job is wrong.
    local location = resp.headers and resp.headers.location
    error(errors.new { message = string.format("%s %s: HTTP %d redirect to %s (not followed: check target.url)",
      method, api_path(path), resp.status, tostring(location or "?"):sub(1, 200)), status = resp.status,
      method = method }, 0)
  end
  return resp
end

-- With retries of transient failures (never of unknown-outcome writes).
function Cloud:request(method, path, opts)
  return retry.call(function() return self:raw(method, path, opts) end, { retries = self.retries, host = self.base })
end

local function decode(resp, what)
  if resp.body == nil or resp.body == "" then return nil end
  local value, err = json.decode(resp.body)
  if value == nil then
    error(errors.new { message = what .. ": the reply is not JSON (" .. err .. ")", status = resp.status }, 0)
  end
  return value
end

function Cloud:get(path, query)
  return decode(self:request("GET", path, { query = query }), "GET " .. api_path(path)), nil
end

function Cloud:post(path, body, opts)
  opts = opts or {}
  opts.json = body
  local resp = self:request("POST", path, opts)
  return decode(resp, "POST " .. api_path(path)), resp
end

function Cloud:put(path, body)
  local resp = self:request("PUT", path, { json = body })
  return decode(resp, "PUT " .. api_path(path)), resp
end

function Cloud:patch(path, ops)
  local resp = self:request("PATCH", path, { json = ops })
  return decode(resp, "PATCH " .. api_path(path)), resp
end

function Cloud:delete(path)
  local resp = self:request("DELETE", path)
  return decode(resp, "DELETE " .. api_path(path)), resp
end

-- C:find(path) -> the object, or nil when there is none (404/410); other
-- failures raise.  For "is the object I recorded still there?".
function Cloud:find(path, query)
  local ok, v = pcall(self.get, self, path, query)
  if ok then return v end
  if errors.is(v) and (v.status == 404 or v.status == 410) then return nil end
  error(v, 0)
end

-- The identity this client acts as (GET users/me), read once.
function Cloud:me()
  if not self.me_user then
    local me = self:get("users/me")
    if type(me) ~= "table" or type(me.id) ~= "string" then
      error(errors.new { message = "GET /api/v1/users/me: the reply has no id" }, 0)
    end
    self.me_user = me
  end
  return self.me_user
end

-- A time the tenant wrote, as seconds on this machine's clock (the
-- difference between the two clocks is measured from each reply's Date
-- header, to the second).
function Cloud:local_time(iso)
  local t = clock.parse_iso(iso)
  return t and t - (self.clock_offset or 0) or nil
end

-- C:remove(path) -> true when deleted now, false when it was already gone
-- (404/410): for delete steps and undo, where gone is the goal.  Other
-- failures raise.
function Cloud:remove(path)
  local ok, err = pcall(self.delete, self, path)
  if ok then return true end
  if errors.is(err) and (err.status == 404 or err.status == 410) then return false end
  error(err, 0)
end

-- for item in C:each("spaces", {filter = ...}) do ... end — every item of
-- every page, following links.next.href (absolute) until it is absent.
-- Pages one listing may have before each() gives up (a server handing
-- out a new next link forever would otherwise never end).
M.max_pages = 100000

-- True when url lies under base: same scheme, host and port, and base's
-- path.  A plain prefix test let "https://t.example.com.evil.com/..." and
-- "http://host:4431/..." (base port 443) through, with the API key.
local function under(base, url)
  if url == base then return true end
  local c = url:sub(#base + 1, #base + 1)
  return url:sub(1, #base) == base and (c == "/" or c == "?")
end

function Cloud:each(path, query)
  local function fail(why)
    error(errors.new { message = "GET " .. api_path(path) .. ": " .. why }, 0)
  end
  local page = self:get(path, query)
  if page == nil then fail("reply has no data list (empty body)") end  -- used to read as no items
  local i, pages, seen = 0, 1, {}
  return function()
    while page do
      local data = type(page) == "table" and page.data or nil
      -- {"data": {...}} is not a list: it used to read as an empty page
      if type(data) ~= "table" or (not json.is_array(data) and next(data) ~= nil) then
        fail("reply has no data list")
      end
      i = i + 1
      if data[i] ~= nil then return data[i] end
      local links = page.links
      local nxt = type(links) == "table" and type(links.next) == "table" and links.next.href or nil
      if type(nxt) ~= "string" or nxt == "" then page = nil; return nil end
      if not nxt:match("^[Hh][Tt][Tt][Pp][Ss]?://") then nxt = self.base .. nxt end
      if not under(self.base, nxt) then fail("next page points to another host: " .. nxt:sub(1, 200)) end
      -- a next link back to a page already read would loop forever
      if seen[nxt] then fail("next page link loops back to a page already read: " .. nxt:sub(1, 200)) end
      seen[nxt] = true
      pages = pages + 1
      if pages > M.max_pages then fail("more than " .. M.max_pages .. " pages; giving up") end
      page, i = self:get(nxt), 0
    end
  end
end

-- All items of a listing as one array.
function Cloud:all(path, query)
  local out = json.array()
  for item in self:each(path, query) do out[#out + 1] = item end
  return out
end

-- A SCIM filter string literal: double quotes, backslash escapes.
function M.scim(value)
  return '"' .. tostring(value):gsub('[\\"]', "\\%0") .. '"'
end

return M
