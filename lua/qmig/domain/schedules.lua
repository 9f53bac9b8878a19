-- QRS reload tasks and their triggers -> Qlik Cloud scheduling tasks
-- (docs/schedules.md): which tasks can be carried, which settings are
-- dropped (and reported), composite (chained) triggers, and convert(),
-- which builds on the RRULE lines of lua/qmig/domain/rrule.lua.  Every
-- field of qmig.domain.rrule is also a field of this module.  Pure Lua.
local rrule = require "qmig.domain.rrule"

local M = {}
for k, v in pairs(rrule) do M[k] = v end

local function task_type(task)
  return tonumber(task and task.taskType) or 0
end

-- Why a task's triggers cannot become Cloud schedules at all, or nil.
function M.task_blocker(task)
  local tt = task_type(task)
  if tt ~= 0 then
    return string.format("%s task '%s': Qlik Cloud reload tasks only reload apps; not migrated",
      M.TASK_TYPES[tt] or ("type " .. tt), tostring(task.name))
  end
  return nil
end

-- Task settings that a Cloud reload task cannot carry (dropped, reported).
function M.dropped_settings(task)
  local out = {}
  if type(task) ~= "table" then return out end
  local timeout = tonumber(task.taskSessionTimeout)
  if timeout and timeout ~= M.DEFAULT_SESSION_TIMEOUT then
    out[#out + 1] = string.format("task session timeout of %d min (QSEoW default %d) is not carried: "
      .. "Qlik Cloud applies its own reload time limit", timeout, M.DEFAULT_SESSION_TIMEOUT)
  end
  local retries = tonumber(task.maxRetries)
  if retries and retries > 0 then
    out[#out + 1] = string.format("%d retr%s after a failed reload %s not carried: Cloud reload tasks do not retry",
      retries, retries == 1 and "y" or "ies", retries == 1 and "is" or "are")
  end
  if type(task.preloadNodes) == "table" and #task.preloadNodes > 0 then
    out[#out + 1] = string.format("preload on %d node(s) is not carried: Qlik Cloud has no nodes", #task.preloadNodes)
  end
  return out
end

-- A composite (chained) trigger -> the reason it cannot be carried.
-- `names` maps upstream task ids to names when the caller knows them.
function M.composite_reason(event, task, names)
  local rules = {}
  for _, r in ipairs(type(event.compositeRules) == "table" and event.compositeRules or {}) do
    local up = type(r.reloadTask) == "table" and r.reloadTask
      or type(r.externalProgramTask) == "table" and r.externalProgramTask
      or type(r.userSyncTask) == "table" and r.userSyncTask or {}
    local name = up.name or (names and names[up.id]) or up.id or "?"
    local state = ({ [1] = "succeeds", [2] = "fails" })[tonumber(r.ruleState)] or "finishes"
    rules[#rules + 1] = string.format("'%s' %s", tostring(name), state)
  end
  local tc = type(event.timeConstraint) == "table" and event.timeConstraint or {}
  local minutes = (tonumber(tc.days) or 0) * 1440 + (tonumber(tc.hours) or 0) * 60 + (tonumber(tc.minutes) or 0)
  return string.format("chained trigger '%s' of task '%s' (starts when %s%s) cannot be expressed by Qlik Cloud "
    .. "reload tasks: rebuild it with Qlik Automate or an event-triggered /api/scheduling/tasks task",
    tostring(event.name), tostring(task and task.name or "?"), #rules > 0 and table.concat(rules, " and ") or "?",
    #rules > 1 and string.format(" within %d min", minutes) or "")
end

-- convert(schema_event, task) -> body, dropped, warnings | nil, reasons
-- body = {timeZone, startDateTime, endDateTime?, recurrence = {...},
-- partial, state = "Enabled" | "Disabled"}; the caller adds appId.
-- dropped: settings not carried (reported); warnings: other notes.
function M.convert(event, task)
  if type(event) ~= "table" then return nil, { "no trigger" } end
  if tonumber(event.eventType) == 1 or event.compositeRules then
    return nil, { M.composite_reason(event, task) }
  end
  local blocker = task and M.task_blocker(task)
  if blocker then return nil, { blocker } end
  local reasons, dropped, warnings = {}, {}, {}
  local function fail(why)
    reasons[#reasons + 1] = string.format("trigger '%s': %s", tostring(event.name), why)
    return nil, reasons
  end

  local tz = event.timeZone
  if type(tz) ~= "string" or tz == "" then return fail("no timeZone") end
  if not tz:match("^[%w_+-]+$") and not tz:match("^[%w_+-]+/[%w_+-/]+$") then
    return fail("timeZone '" .. tz .. "' is not an IANA time zone name")
  end
  local start, why = M.parse_datetime(event.startDate)
  if not start then return fail("startDate: " .. why) end
  if start.y < 1970 then return fail("startDate " .. start.text .. " is before 1970") end
  local body = { timeZone = tz, startDateTime = start.text }
  if not M.is_never(event.expirationDate) then
    local stop
    stop, why = M.parse_datetime(event.expirationDate)
    if not stop then return fail("expirationDate: " .. why) end
    if stop.text <= start.text then
      return fail("it expires (" .. stop.text .. ") before it starts (" .. start.text .. ")")
    end
    body.endDateTime = stop.text
  end

  local dst = tonumber(event.daylightSavingTime) or 0
  if dst == 1 or dst == 2 then
    dropped[#dropped + 1] = string.format("trigger '%s' uses %s in %s; Qlik Cloud always follows the zone's "
      .. "daylight-saving changes, so part of the year it runs one hour %s than in QSEoW",
      tostring(event.name), dst == 1 and "permanent standard time" or "permanent daylight saving time", tz,
      dst == 1 and "earlier (in UTC terms)" or "later (in UTC terms)")
  elseif dst ~= 0 then
    return fail("unknown daylightSavingTime " .. tostring(event.daylightSavingTime))
  end

  local option = tonumber(event.incrementOption)
  if option == nil or option < 0 or option > 5 then
    return fail("unknown incrementOption " .. tostring(event.incrementOption))
  end
  local inc
  inc, why = M.parse_increment(event.incrementDescription)
  if not inc then return fail(why) end

  local filters = event.schemaFilterDescription
  if type(filters) == "string" then filters = { filters } end
  if type(filters) ~= "table" or #filters == 0 then filters = { "* * - * * * * *" } end
  local lines, seen = {}, {}
  for _, text in ipairs(filters) do
    local f
    f, why = M.parse_filter(text)
    if not f then return fail(why) end
    local line
    line, why = M.rule(option, inc, f, start)
    if not line then return fail(why) end
    if not seen[line] then seen[line] = true; lines[#lines + 1] = line end
  end
  body.recurrence = lines
  local minutely = lines[1]:match("FREQ=MINUTELY;INTERVAL=(%d+)")
  if minutely and tonumber(minutely) < 60 then
    warnings[#warnings + 1] = string.format("trigger '%s' repeats every %s min; Qlik Cloud may enforce a minimum "
      .. "interval between scheduled reloads (unverified)", tostring(event.name), minutely)
  end
  body.partial = task ~= nil and task.isPartialReload == true
  local enabled = event.enabled ~= false and (task == nil or task.enabled ~= false)
  body.state = enabled and "Enabled" or "Disabled"
  return body, dropped, warnings
end

-- Everything about a task (and its events: schema and composite) that
-- cannot be carried to Qlik Cloud, as a list of reasons.
function M.not_migratable(task, events)
  local out = {}
  local blocker = M.task_blocker(task)
  if blocker then out[#out + 1] = blocker end
  local schema = 0
  for _, ev in ipairs(events or {}) do
    if tonumber(ev.eventType) == 1 or ev.compositeRules then
      out[#out + 1] = M.composite_reason(ev, task)
    else
      schema = schema + 1
      if not blocker then
        local body, a = M.convert(ev, task)
        for _, r in ipairs(a or {}) do out[#out + 1] = r end
        if not body and not a then out[#out + 1] = "trigger '" .. tostring(ev.name) .. "' cannot be converted" end
      end
    end
  end
  if schema == 0 and #(events or {}) == 0 then
    out[#out + 1] = M.manual_reason(task)
  end
  if not blocker then
    for _, d in ipairs(M.dropped_settings(task)) do out[#out + 1] = d end
  end
  return out
end

function M.manual_reason(task)
  return string.format("task '%s' has no trigger (manual only): no Cloud schedule; reload the app on demand in "
    .. "Qlik Cloud", tostring(task and task.name))
end

return M
