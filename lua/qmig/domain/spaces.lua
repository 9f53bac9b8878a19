-- Spaces: stream -> space naming, space roles per type, and the
-- assignment write shared by spaces.assign and spaces.owners.
--
-- Naming (plan.spaces in docs/job-file.md; space types: docs/catalogue.md, spaces.create):
--   * plan.spaces.map[stream] = {name, type}: name and type as given (a
--     final name: no prefix/suffix); a missing name is derived as below,
--     a missing type is managed.
--   * otherwise prefix .. clean(stream name) .. suffix, type managed.
--   * clean(): every run of the characters Qlik Cloud forbids
--     (" * ? < > / | \ :) becomes one "_", runs of white space become
--     one space, other control characters are removed, the ends are
--     trimmed; the stream part is cut (on a UTF-8 character boundary) so
--     the whole name is at most 256 characters.  "Sales/EMEA" ->
--     "Sales_EMEA"; single quotes and other characters are kept.
--   * then the `space` hook of transforms.lua (stream, {name, type,
--     description}); its result must still be a valid name.
--   * two streams ending with the same name: the later one (by stream
--     name, then id) fails with a reason naming the first, unless both
--     come from plan.spaces.map with the same name and type (an explicit
--     merge).
local errors = require "qmig.clients.errors"
local scope = require "qmig.domain.scope"

local M = {}

M.MAX_NAME = 256
local FORBIDDEN = '[%*%?<>/|\\:"]'

M.ROLES = {
  shared = { consumer = true, dataconsumer = true, facilitator = true, producer = true, codeveloper = true },
  managed = { consumer = true, contributor = true, dataconsumer = true, facilitator = true, operator = true,
    publisher = true, basicconsumer = true },
  data = { consumer = true, dataconsumer = true, facilitator = true, operator = true, producer = true,
    publisher = true, datapreview = true },
}

local function ulen(s) return utf8.len(s) or #s end

-- First n characters of s (UTF-8 aware; bytes when s is not UTF-8).
local function ucut(s, n)
  if n <= 0 then return "" end
  if not utf8.len(s) then return s:sub(1, n) end
  local stop = utf8.offset(s, n + 1)
  return stop and s:sub(1, stop - 1) or s
end

function M.clean(name)
  local s = tostring(name):gsub(FORBIDDEN .. "+", "_"):gsub("%s+", " "):gsub("%c", "")
  return (s:gsub("^ ", ""):gsub(" $", ""))
end

-- Why a final name is not acceptable to Qlik Cloud, or nil.
function M.invalid(name)
  if type(name) ~= "string" or name == "" then return "the space name is empty" end
  if ulen(name) > M.MAX_NAME then return "the space name '" .. name .. "' is longer than 256 characters" end
  local bad = name:match(FORBIDDEN)
  if bad then return "the space name '" .. name .. "' contains '" .. bad .. "', which Qlik Cloud forbids" end
  return nil
end

-- Name derived from a stream name with prefix and suffix.
function M.derived_name(plan, stream_name)
  local sp = plan and plan.spaces or {}
  local prefix, suffix = sp.prefix or "", sp.suffix or ""
  local room = M.MAX_NAME - ulen(prefix) - ulen(suffix)
  local core = M.clean(stream_name)
  if core == "" then core = "_" end
  return prefix .. ucut(core, room) .. suffix
end

-- The wanted space of a stream before the transform hook:
-- {name, type, from_map}.
function M.wanted(plan, stream)
  local entry = scope.ci_get(plan and plan.spaces and plan.spaces.map, stream.name)
  if entry then
    return { name = entry.name or M.derived_name(plan, stream.name), type = entry.type or "managed",
      from_map = true }
  end
  return { name = M.derived_name(plan, stream.name), type = "managed", from_map = false }
end

function M.staging_name(plan)
  return plan and plan.spaces and plan.spaces.staging or "Migration staging"
end

-- The space items of spaces.create: one per stream in scope, plus the
-- staging space ("@staging") when a target is managed, plus one skipped
-- item per plan.spaces.map name with no stream.
function M.items(ctx)
  local streams, missing = scope.streams(ctx)
  local items, seen, any_managed = {}, {}, false
  for _, s in ipairs(streams) do
    local w = M.wanted(ctx.plan, s)
    local item = { key = s.id, stream = { id = s.id, name = s.name }, from_map = w.from_map }
    local space = ctx.transform("space", s, { name = w.name, type = w.type })
    if space == nil then
      item.left_out = true
    else
      item.name, item.type, item.description = space.name, space.type or w.type, space.description
      item.problem = M.invalid(item.name)
      if not item.problem and not M.ROLES[item.type] then
        item.problem = "space type '" .. tostring(item.type) .. "' is not shared, managed or data"
      end
      if not item.problem then
        local first = seen[item.name]
        if first and not (first.from_map and item.from_map and first.type == item.type) then
          item.problem = string.format("stream '%s' would become space '%s', the name already taken by stream '%s'" ..
            " (rename one in plan.spaces.map)", s.name, item.name, first.stream.name)
        elseif not first then
          seen[item.name] = item
        end
        any_managed = any_managed or item.type == "managed"
      end
    end
    items[#items + 1] = item
  end
  if any_managed then
    local name = M.staging_name(ctx.plan)
    local item = { key = "@staging", staging = true, name = name, type = "shared", problem = M.invalid(name) }
    if not item.problem and seen[name] then
      item.problem = "the staging space name '" .. name .. "' is also the space of stream '" ..
        seen[name].stream.name .. "'"
    end
    table.insert(items, 1, item)
  end
  for _, name in ipairs(missing) do
    items[#items + 1] = { key = "@missing/" .. name, missing = name }
  end
  return items
end

-- The space a stream became ({id, type}), from the cache, or nil.
function M.space_of(ctx, stream_id)
  local id, rec = ctx.lookup("space", stream_id)
  if not id then return nil end
  return { id = id, type = rec.data and rec.data.type, name = rec.data and rec.data.name }
end

-- Existing assignments of a space by "type:assigneeId".
function M.assignments(ctx, space_id)
  local out = {}
  for a in ctx.target:each("spaces/" .. space_id .. "/assignments") do
    out[tostring(a.type) .. ":" .. tostring(a.assigneeId)] = a
  end
  return out
end

local function union(have, want)
  local set, out, added = {}, {}, false
  for _, r in ipairs(have or {}) do if not set[r] then set[r] = true; out[#out + 1] = r end end
  for _, r in ipairs(want) do if not set[r] then set[r] = true; out[#out + 1] = r; added = true end end
  table.sort(out)
  return out, added
end

-- Gives assignee (type "user"|"group", id) at least `roles` in the space:
-- creates the assignment, or widens an existing one to the union of its
-- roles and these (never a second assignment).  Records undo (which
-- also makes the next run apply the item again).  Returns
-- "created" | "updated" | nil (nothing to do).  existing: the table of
-- M.assignments (kept up to date).
function M.ensure(ctx, space_id, existing, kind, assignee_id, roles)
  local k = kind .. ":" .. assignee_id
  local base = "spaces/" .. space_id .. "/assignments"
  local cur = existing[k]
  if not cur then
    local ok, res = pcall(ctx.target.post, ctx.target, base, { type = kind, assigneeId = assignee_id, roles = roles })
    if ok then
      existing[k] = res
      ctx.undo { method = "DELETE", path = base .. "/" .. res.id }
      return "created"
    end
    -- 409: one assignment per assignee, made meanwhile (or by a lost reply)
    if not (errors.is(res) and res.status == 409) then error(res, 0) end
    -- (the listing may not show it yet: ctx.listed looks again)
    cur = ctx.listed(function()
      for key, a in pairs(M.assignments(ctx, space_id)) do existing[key] = a end
      return existing[k]
    end)
    if not cur then error(res, 0) end
  end
  local new_roles, added = union(cur.roles, roles)
  if not added then return nil end
  ctx.undo { action = "restore", method = "PUT", path = base .. "/" .. cur.id, body = { roles = cur.roles } }
  ctx.target:put(base .. "/" .. cur.id, { roles = new_roles })
  cur.roles = new_roles
  return "updated"
end

return M
