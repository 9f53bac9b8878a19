-- Qlik Cloud scheduling tasks (/api/scheduling/tasks, the API that
-- replaced /api/v1/reload-tasks, which answers 410 TASKS-011 to a create
-- since 2026-09-29): what apps.schedules wants a task to be ("desired"),
-- the request bodies that make one, and reading a task the tenant returns
-- back into the same terms, so the two can be compared field by field.
--
-- A desired task is
--   {kind = "time", recurrence = "RRULE:...", timezone =, start =, stop = nil|,
--    enabled =, partial =, name =, description =}
--   {kind = "event", events = {{id = upstream Cloud task id, status = "succeeded"|"failed"}},
--    exclusive = true (any one event starts it) | false (all of them), timeout = minutes|nil,
--    enabled =, partial =, name =, description =}
--
-- Facts and their sources: docs/schedules.md.  Where Qlik's documentation
-- leaves a shape open (the status strings of an event correlation, the
-- wiring of a full-body scheduled task) both plausible forms are read.
local json = require "qmig.json"

local M = {}

M.PATH = "/api/scheduling/tasks"
M.SPEC_VERSION = "1.16.0"
M.FINISHED = "com.qlik.v1.task.run.finished"
M.NAME_MAX = 200  -- bytes; Qlik limits names (CHO-001) without saying where (unverified)

function M.task_path(id) return M.PATH .. "/" .. id end

function M.convenience_path(app_id, what)
  return M.PATH .. "/resources/" .. app_id .. "/actions/reload/" .. what
end

-- Legacy reload-task ids are 24 hex digits (Mongo-style); scheduling
-- tasks have UUIDs.
function M.is_legacy_id(id)
  return type(id) == "string" and #id == 24 and id:match("^%x+$") ~= nil
end

-- A name cut to NAME_MAX bytes without splitting a UTF-8 sequence.
function M.short_name(name)
  if #name <= M.NAME_MAX then return name end
  local cut = M.NAME_MAX
  while cut > 0 and (name:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
  return name:sub(1, cut)
end

local function bare_rule(r)
  return (tostring(r or ""):upper():gsub("^RRULE:", ""):gsub("%s+", ""))
end

local function time19(v)
  if type(v) ~= "string" then return "" end
  return v:sub(1, 19)
end

-- {====== request bodies

-- The body of the on-time-schedule convenience endpoint.
function M.time_body(d)
  return { name = d.name, description = d.description, recurrence = d.recurrence, timezone = d.timezone,
    startDateTime = d.start, endDateTime = d.stop, enabled = d.enabled, partial = d.partial or nil }
end

-- The body of the on-task-event convenience endpoint (one upstream task).
function M.event_body(d)
  return { name = d.name, description = d.description, onTaskId = d.events[1].id,
    onTaskStatus = d.events[1].status, enabled = d.enabled }
end

-- True when the convenience endpoints can make the task: a time schedule,
-- or one upstream task.
function M.convenient(d)
  return d.kind == "time" or (#d.events == 1 and not d.timeout)
end

local function reload_action(app_id, partial)
  return { name = "app.reload", functionRef = { refName = "app.reload",
    arguments = { appId = app_id, partial = partial == true } } }
end

-- The full workflow body of POST/PUT /api/scheduling/tasks for d on app_id.
function M.full_body(d, app_id, space_id)
  local state = { name = "Reload", type = "EVENT", ["end"] = true, exclusive = d.kind == "time" or d.exclusive,
    onEvents = { { eventRefs = json.array(), actions = { reload_action(app_id, d.partial) } } } }
  local body = { name = d.name, description = d.description, specVersion = M.SPEC_VERSION, version = "1.0.0",
    enabled = d.enabled, metadata = { usage = "ANALYTICS", spaceId = space_id }, states = { state } }
  if d.kind == "time" then
    body.start = { stateName = "Reload", schedule = { recurrence = d.recurrence, timezone = d.timezone,
      startDateTime = d.start, endDateTime = d.stop } }
  else
    body.events = {}
    for i, e in ipairs(d.events) do
      local name = "upstream-" .. i
      body.events[i] = { name = name, source = "system-events.task", type = M.FINISHED,
        correlation = { { contextAttributeName = "id", contextAttributeValue = e.id },
          { contextAttributeName = "status", contextAttributeValue = e.status:upper() } } }
      state.onEvents[1].eventRefs[i] = name
    end
    if d.timeout then state.timeouts = { eventTimeout = string.format("PT%dM", d.timeout) } end
  end
  return body
end
-- }======

-- {====== reading a task

local function reload_arguments(task)
  for _, st in ipairs(type(task.states) == "table" and task.states or {}) do
    for _, on in ipairs(type(st.onEvents) == "table" and st.onEvents or {}) do
      for _, a in ipairs(type(on.actions) == "table" and on.actions or {}) do
        local f = type(a) == "table" and a.functionRef
        if type(f) == "table" and f.refName == "app.reload" then return type(f.arguments) == "table" and f.arguments
          or {}, st end
      end
    end
  end
  return {}, type(task.states) == "table" and task.states[1] or {}
end

-- The app a task reloads: resourceId, else its app.reload argument.
function M.app_of(task)
  local args = reload_arguments(task)
  return task.resourceId or args.appId
end

local function minutes(duration)
  local h, m = tostring(duration or ""):match("^PT(%d*)H?(%d*)M?$")
  if not h then return nil end
  if not tostring(duration):find("H") then h, m = "", h end
  return (tonumber(h) or 0) * 60 + (tonumber(m) or 0)
end

-- A task as the tenant returns it -> desired-task terms.
function M.read(task)
  local args, state = reload_arguments(task)
  local out = { enabled = task.enabled == true, partial = args.partial == true, name = task.name,
    description = task.description }
  local schedule = type(task.start) == "table" and task.start.schedule or nil
  if type(schedule) == "string" then schedule = { recurrence = schedule } end
  if type(schedule) == "table" then
    out.kind = "time"
    local rec = schedule.recurrence
    if type(rec) == "table" then rec = rec[1] end
    out.recurrence, out.timezone = rec, schedule.timezone or "UTC"
    out.start = schedule.startDateTime
    out.stop = schedule.endDateTime ~= json.null and schedule.endDateTime or nil
    return out
  end
  out.kind, out.events = "event", {}
  for _, e in ipairs(type(task.events) == "table" and task.events or {}) do
    local id, status
    for _, c in ipairs(type(e.correlation) == "table" and e.correlation or {}) do
      if c.contextAttributeName == "id" then id = c.contextAttributeValue end
      if c.contextAttributeName == "status" then status = c.contextAttributeValue end
    end
    if id then out.events[#out.events + 1] = { id = id, status = tostring(status or "any"):lower() } end
  end
  out.exclusive = state.exclusive ~= false
  local timeouts = type(state.timeouts) == "table" and state.timeouts or {}
  out.timeout = minutes(timeouts.eventTimeout)
  return out
end
-- }======

-- {====== comparing

local function event_set(events)
  local keys = {}
  for _, e in ipairs(events or {}) do keys[#keys + 1] = tostring(e.id) .. "=" .. tostring(e.status) end
  table.sort(keys)
  return table.concat(keys, ",")
end

-- Same schedule: what makes two tasks "the same trigger" (a task with the
-- same schedule made by someone else is not adopted, but is noticed).
function M.same_schedule(have, want)
  if have.kind ~= want.kind then return false end
  if want.kind == "time" then
    return bare_rule(have.recurrence) == bare_rule(want.recurrence) and (have.timezone or "UTC") == want.timezone
      and time19(have.start) == time19(want.start)
  end
  return event_set(have.events) == event_set(want.events)
end

-- The fields of `have` that differ from `want`: {} when it is as wanted.
function M.differences(have, want)
  local out = {}
  if not M.same_schedule(have, want) then out[#out + 1] = "schedule" end
  if want.kind == "time" and time19(have.stop) ~= time19(want.stop) then out[#out + 1] = "endDateTime" end
  if want.kind == "event" and #want.events > 1 and have.exclusive ~= want.exclusive then
    out[#out + 1] = "exclusive"
  end
  if want.kind == "event" and have.timeout ~= want.timeout then out[#out + 1] = "timeout" end
  if have.partial ~= want.partial then out[#out + 1] = "partial" end
  if have.enabled ~= want.enabled then out[#out + 1] = "enabled" end
  if have.name ~= want.name then out[#out + 1] = "name" end
  return out
end

-- A field of differences() as people read it (the plan's old -> new).
function M.shown(task, field)
  if field == "schedule" then
    if task.kind == "time" then
      return string.format("%s %s from %s", tostring(task.recurrence and bare_rule(task.recurrence) or "?"),
        tostring(task.timezone or "UTC"), tostring(time19(task.start) or "?"))
    end
    return "after " .. event_set(task.events)
  end
  local value = ({ endDateTime = task.stop, exclusive = task.exclusive, timeout = task.timeout,
    partial = task.partial, enabled = task.enabled, name = task.name })[field]
  return value == nil and "(none)" or tostring(value)
end

-- The task with the changes of `want`, as a PUT body: everything Qlik
-- manages itself (id, owner, times, run state) left out, the rest kept as
-- the tenant has it, so a PUT does not reset what this tool never set.
function M.updated(task, want, app_id)
  local body = json.decode(json.encode(task))
  for _, k in ipairs { "id", "resourceId", "links", "ownerId", "createdAt", "updatedAt", "lastRun" } do
    body[k] = nil
  end
  local meta = type(body.metadata) == "table" and body.metadata or {}
  body.metadata = { usage = meta.usage or "ANALYTICS", spaceId = meta.spaceId }
  local full = M.full_body(want, app_id, meta.spaceId)
  body.name, body.description, body.enabled = want.name, want.description, want.enabled
  body.specVersion = body.specVersion or full.specVersion
  if want.kind == "time" then
    body.events = nil
    local args = reload_arguments(body)
    if args.appId and type(body.start) == "table" then
      args.partial = want.partial == true
      body.start.schedule = full.start.schedule
    else  -- not the shape this tool knows: its own wiring instead
      body.start, body.states = full.start, full.states
    end
  else
    body.start, body.events, body.states = nil, full.events, full.states
  end
  return body
end

-- A PUT body that puts a task back as it was (undo of an update).
function M.restorable(task)
  local body = json.decode(json.encode(task))
  for _, k in ipairs { "id", "resourceId", "links" } do body[k] = nil end
  local meta = type(body.metadata) == "table" and body.metadata or {}
  body.metadata = { usage = meta.usage or "ANALYTICS", spaceId = meta.spaceId }
  return body
end
-- }======

return M
