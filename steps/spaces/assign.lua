-- Add Assignments To Spaces: who may use each space.  From
-- plan.spaces.assignments[stream] when given ({user: 'DIR\userid' or an
-- email | group: name, roles: [...]}), else derived from the QRS security
-- rules on the stream (lua/qmig/domain/rules.lua): read -> consumer,
-- publish -> publisher (managed, data) or producer (shared).  Roles the
-- space type does not allow are dropped and reported.  Users resolve
-- through users.import (cache kind "user"), groups by name in the tenant;
-- the unresolved are reported and picked up by a later run once they
-- exist.  An existing assignment is widened to the union of its roles and
-- ours (PUT), never duplicated; undo deletes what was created and puts
-- the previous roles back.  Cache: kind "space.assignments", key = stream id.
local identity = require "qmig.domain.users"
local retrieve = require "qmig.clients.retrieve"
local rules = require "qmig.domain.rules"
local scope = require "qmig.domain.scope"
local spaces = require "qmig.domain.spaces"

local PUBLISH_ROLE = { managed = "publisher", data = "publisher", shared = "producer" }

-- Adds roles for an assignee to `wanted` (keyed "type:id").
local function add(wanted, kind, id, label, roles)
  local k = kind .. ":" .. id
  local w = wanted[k] or { type = kind, id = id, label = label, roles = {} }
  wanted[k] = w
  for _, r in ipairs(roles) do w.roles[r] = true end
end

local function resolver(ctx, idx)
  local groups, emails = {}, {}
  local r = {}
  function r.user(u)  -- QRS user -> cloud id | nil, why
    local label = identity.dir_user(u)
    if identity.skipped(ctx.plan, u) then return nil, label .. " (service account, not migrated)" end
    local id = ctx.lookup("user", u.id)
    if not id then return nil, label .. " (not in the tenant; see users.import)" end
    return id, label
  end
  function r.ref(ref)  -- 'DIR\userid' or an email
    if ref:find("@", 1, true) and not ref:find("\\", 1, true) then
      if emails[ref] == nil then emails[ref] = retrieve.user(ctx.target, { email = ref }) or false end
      if not emails[ref] then return nil, ref .. " (no such user in the tenant)" end
      return emails[ref].id, ref
    end
    local u = identity.find(idx, ref)
    if not u then return nil, ref .. " (no such user in the source)" end
    return r.user(u)
  end
  function r.group(name)
    if groups[name] == nil then groups[name] = retrieve.group(ctx.target, name) or false end
    if not groups[name] then return nil, "group " .. name .. " (not in the tenant yet)" end
    return groups[name].id, "group " .. name
  end
  return r
end

local function sorted_list(wanted)
  local out = {}
  for _, w in pairs(wanted) do
    local roles = {}
    for role in pairs(w.roles) do roles[#roles + 1] = role end
    table.sort(roles)
    if #roles > 0 then out[#out + 1] = { type = w.type, id = w.id, label = w.label, roles = roles } end
  end
  table.sort(out, function(a, b) return a.type .. a.id < b.type .. b.id end)
  return out
end

local function items(ctx)
  local streams = scope.streams(ctx)
  if #streams == 0 then return {} end
  local idx = identity.index(ctx.source:full("user"))
  local all_rules
  local resolve = resolver(ctx, idx)
  local out = {}
  for _, s in ipairs(streams) do
    local space = spaces.space_of(ctx, s.id)
    local stype = space and space.type or spaces.wanted(ctx.plan, s).type
    local wanted, unresolved, notes = {}, {}, {}
    local function give(kind, id, label, roles)
      if not id then
        if not unresolved[label] then unresolved[label] = true; unresolved[#unresolved + 1] = label end
        return
      end
      local ok = {}
      for _, role in ipairs(roles) do
        if spaces.ROLES[stype] and spaces.ROLES[stype][role] then ok[#ok + 1] = role
        else
          local note = string.format("role %s is not valid in a %s space (%s)", role, stype, label)
          if not notes[note] then notes[note] = true; notes[#notes + 1] = note end
        end
      end
      add(wanted, kind, id, label, ok)
    end
    local planned = scope.ci_get(ctx.plan.spaces and ctx.plan.spaces.assignments, s.name)
    if planned then
      for _, a in ipairs(planned) do
        local kind, id, label = "group"
        if a.group then id, label = resolve.group(a.group) else kind, id, label = "user", resolve.ref(a.user or "") end
        give(kind, id, label, a.roles or { "consumer" })
      end
    else
      all_rules = all_rules or ctx.source:full("systemrule")
      local grants, rule_notes = rules.derive(all_rules, s)
      for _, n in ipairs(rule_notes) do notes[#notes + 1] = n end
      for _, g in ipairs(grants) do
        local roles = {}
        if g.read then roles[#roles + 1] = "consumer" end
        if g.publish then roles[#roles + 1] = PUBLISH_ROLE[stype] or "publisher" end
        if g.who.group then
          local id, label = resolve.group(g.who.group)
          give("group", id, label, roles)
        else
          local users = identity.matching(idx, g.who)
          if #users == 0 then
            give("user", nil, (g.who.user_id or g.who.user_name) .. " (rule '" .. tostring(g.rule) ..
              "': no such user in the source)")
          end
          for _, u in ipairs(users) do
            local id, label = resolve.user(u)
            give("user", id, label, roles)
          end
        end
      end
    end
    local list = {}
    for _, u in ipairs(unresolved) do list[#list + 1] = u end
    table.sort(list)
    local note_list = {}
    for _, n in ipairs(notes) do note_list[#note_list + 1] = n end
    table.sort(note_list)
    out[#out + 1] = { stream = { id = s.id, name = s.name }, space_id = space and space.id, space_type = stype,
      wanted = sorted_list(wanted), unresolved = list, notes = note_list }
  end
  return out
end

return {
  name = "spaces.assign",
  object = "space.assignments",
  produces = { data = { "created", "updated", "assignees" } },
  consumes = { { kind = "space", data = { "name", "type" } }, { kind = "user" } },
  requires = { "spaces.create" },
  items = items,
  key = function(item) return item.stream.id end,
  run = function(ctx, item)
    local remarks = {}
    if #item.unresolved > 0 then remarks[#remarks + 1] = "unresolved: " .. table.concat(item.unresolved, ", ") end
    for _, n in ipairs(item.notes) do remarks[#remarks + 1] = n end
    local reason = #remarks > 0 and table.concat(remarks, "; ") or nil
    if not item.space_id then
      return { status = "skipped", reason = "no space for stream '" .. item.stream.name ..
        "' yet (spaces.create)" .. (#item.wanted > 0 and (": " .. #item.wanted .. " assignment(s) to make") or "") }
    end
    if #item.wanted == 0 then
      return { status = "skipped", reason = reason or "no assignments: none planned and no security rule found" }
    end
    -- the space owner has every role implicitly and is never assigned
    local owner = ctx.target:get("spaces/" .. item.space_id).ownerId
    local existing = spaces.assignments(ctx, item.space_id)
    local created, updated = 0, 0
    for _, w in ipairs(item.wanted) do
      local did = not (w.type == "user" and w.id == owner)
        and spaces.ensure(ctx, item.space_id, existing, w.type, w.id, w.roles)
      if did == "created" then created = created + 1 elseif did == "updated" then updated = updated + 1 end
    end
    local status = created > 0 and "created" or updated > 0 and "updated" or "unchanged"
    return { status = status, target_id = item.space_id, reason = reason,
      data = { created = created, updated = updated, assignees = #item.wanted } }
  end,
}
