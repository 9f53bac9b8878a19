-- Retrieval: finding in the target what a step may already have made, so
-- it is adopted instead of duplicated (docs/steps.md, rule 1).  Natural keys: users by
-- email then subject, spaces by name, data connections by name + space,
-- extensions and themes by name, apps by the description marker.
local cloud = require "qmig.clients.cloud"

local M = {}

local function first(target, path, query, accept)
  for obj in target:each(path, query) do
    if accept(obj) then return obj end
  end
  return nil
end

-- Space names are unique in a tenant; Qlik compares them as written.
function M.space(target, name)
  return first(target, "spaces", { filter = "name eq " .. cloud.scim(name) }, function(s) return s.name == name end)
end

-- Users by email (case-insensitive), then by subject.
function M.user(target, who)
  if who.email and who.email ~= "" then
    local email = who.email:lower()
    local u = first(target, "users", { filter = "email eq " .. cloud.scim(who.email) },
      function(x) return type(x.email) == "string" and x.email:lower() == email end)
    if u then return u end
  end
  if who.subject and who.subject ~= "" then
    return first(target, "users", { filter = "subject eq " .. cloud.scim(who.subject) },
      function(x) return x.subject == who.subject end)
  end
  return nil
end

function M.group(target, name)
  return first(target, "groups", { filter = "name eq " .. cloud.scim(name) }, function(g) return g.name == name end)
end

-- A connection's identity is (name, space): the same name may exist in
-- other spaces.
function M.data_connection(target, name, space_id)
  return first(target, "data-connections", { spaceId = space_id, filter = "qName eq " .. cloud.scim(name) },
    function(c) return c.qName == name and (c.space or "") == (space_id or "") end)
end

-- Extensions and themes: one list, no paging; names are unique per tenant.
local function by_name(target, path, name)
  local reply = target:get(path)
  for _, x in ipairs(reply and reply.data or {}) do
    if x.name == name then return x end
  end
  return nil
end
function M.extension(target, name) return by_name(target, "extensions", name) end
function M.theme(target, name) return by_name(target, "themes", name) end

-- {====== the app description marker
-- Import writes "<original description>\n\n[qmig-lua:1:<source app id>]" into
-- the app's description; later steps, later runs and a run resumed after
-- a crash find the app by it; post.reset_descriptions strips it.  The
-- version number lets a later format coexist with apps marked by this one.
local MARKER_VERSION = 1
local MARKER_PATTERN = "\n?\n?%[qmig%-lua:(%d+):([^%]]+)%]$"

function M.marker_token(source_id)
  return string.format("[qmig-lua:%d:%s]", MARKER_VERSION, source_id)
end

function M.mark(description, source_id)
  local original = M.strip(description or "")
  if original == "" then return M.marker_token(source_id) end
  return original .. "\n\n" .. M.marker_token(source_id)
end

-- -> source id, original description; or nil when unmarked.
function M.read_marker(description)
  if type(description) ~= "string" then return nil end
  local version, id = description:match(MARKER_PATTERN)
  if not version then return nil end
  return id, (description:gsub(MARKER_PATTERN, "")), tonumber(version)
end

function M.strip(description)
  if type(description) ~= "string" then return "" end
  return (description:gsub(MARKER_PATTERN, ""))
end

-- Apps (items) carrying the marker of source_id, narrowed by query
-- ({spaceId = id | "personal", ownerId = ...}).  Returns a list: a
-- published copy carries the same marker as the app it came from.
function M.apps_by_marker(target, source_id, query)
  local q = { resourceType = "app", query = M.marker_token(source_id) }
  for k, v in pairs(query or {}) do q[k] = v end
  local found = {}
  for item in target:each("items", q) do
    if M.read_marker(item.description) == source_id then found[#found + 1] = item end
  end
  return found
end

-- Half-finished import: an app of that (importing) name in the space,
-- still without its marker, owned by the importing identity — the import
-- succeeded but the marker write never happened.  Whether the item's own
-- attempt made it is for qmig.engine.ensure to say.
function M.unmarked_app(target, name, space_query, owner_id)
  local q = { resourceType = "app", name = name }
  for k, v in pairs(space_query or {}) do q[k] = v end
  for item in target:each("items", q) do
    if item.name == name and not M.read_marker(item.description) and item.ownerId == owner_id then
      return item
    end
  end
  return nil
end
-- }======

return M
