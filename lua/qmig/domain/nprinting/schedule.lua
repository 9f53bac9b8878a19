-- An NPrinting publish task's trigger -> the scheduleOptions of a Qlik
-- Cloud sharing task: {recurrence = {RRULE}, timezone, startDateTime
-- (local, no offset), endDateTime?}, plus notes on what changed.  The
-- trigger's shape is the simulator's (docs/nprinting.md: not documented
-- in the NPrinting API reference): {type = once|minutely|hourly|daily|
-- weekly|monthly|yearly, every, time = "HH:MM", days = {"MO",...},
-- dayOfMonth, month, timezone, startDate = "YYYY-MM-DD", endDate}.
-- The timezone is kept; the Cloud refuses a start more than a year back,
-- so such a start moves to today (same time of day), which is said.
local M = {}

local DAYS = { MO = true, TU = true, WE = true, TH = true, FR = true, SA = true, SU = true }

local function int(v, lo, hi)
  local n = math.tointeger(tonumber(v))
  if n and n >= lo and n <= hi then return n end
  return nil
end

-- M.convert(trigger, today "YYYY-MM-DD") -> options, notes | nil, reason
function M.convert(tr, today)
  if type(tr) ~= "table" then return nil, "the trigger is not readable" end
  local typ = tostring(tr.type or ""):lower()
  local every = int(tr.every or 1, 1, 1000)
  if not every then return nil, "trigger interval '" .. tostring(tr.every) .. "'" end
  local h, m = tostring(tr.time or "00:00"):match("^(%d%d?):(%d%d)$")
  h, m = int(h, 0, 23), int(m, 0, 59)
  if not h or not m then return nil, "trigger time '" .. tostring(tr.time) .. "'" end
  local at = string.format("BYHOUR=%d;BYMINUTE=%d", h, m)
  local rule
  if typ == "once" then
    rule = "RRULE:FREQ=DAILY;COUNT=1"
  elseif typ == "minutely" or typ == "hourly" then
    if typ == "minutely" and every < 15 then
      return nil, "runs every " .. every .. " minute(s): Qlik Cloud reports run at most every 15 minutes"
    end
    rule = string.format("RRULE:FREQ=%s;INTERVAL=%d", typ:upper(), every)
    if typ == "hourly" then rule = rule .. ";BYMINUTE=" .. m end
  elseif typ == "daily" then
    rule = string.format("RRULE:FREQ=DAILY;INTERVAL=%d;%s", every, at)
  elseif typ == "weekly" then
    local days = {}
    for _, d in ipairs(type(tr.days) == "table" and tr.days or {}) do
      local up = tostring(d):upper():sub(1, 2)
      if not DAYS[up] then return nil, "trigger weekday '" .. tostring(d) .. "'" end
      days[#days + 1] = up
    end
    if #days == 0 then return nil, "a weekly trigger without weekdays" end
    rule = string.format("RRULE:FREQ=WEEKLY;INTERVAL=%d;BYDAY=%s;%s", every, table.concat(days, ","), at)
  elseif typ == "monthly" or typ == "yearly" then
    local day = int(tr.dayOfMonth or 1, 1, 31)
    if not day then return nil, "trigger day of month '" .. tostring(tr.dayOfMonth) .. "'" end
    rule = string.format("RRULE:FREQ=%s;INTERVAL=%d;BYMONTHDAY=%d;%s", typ:upper(), every, day, at)
    if typ == "yearly" then
      local month = int(tr.month or 1, 1, 12)
      if not month then return nil, "trigger month '" .. tostring(tr.month) .. "'" end
      rule = rule .. ";BYMONTH=" .. month
    end
  else
    return nil, "trigger type '" .. tostring(tr.type) .. "'"
  end
  local notes = {}
  local start = tostring(tr.startDate or today)
  if not start:match("^%d%d%d%d%-%d%d%-%d%d$") then return nil, "trigger start date '" .. start .. "'" end
  local y, mo, d = today:match("^(%d+)%-(%d+)%-(%d+)$")
  local year_ago = string.format("%04d-%s-%s", tonumber(y) - 1, mo, d)
  if start < year_ago then
    notes[#notes + 1] = "its start " .. start .. " is more than a year back (Qlik Cloud refuses it): starts "
      .. today .. (every > 1 and ", which may shift an every-" .. every .. " rhythm" or "")
    start = today
  end
  local moved = #notes > 0
  local out = { recurrence = { rule }, timezone = tr.timezone or "UTC",
    startDateTime = string.format("%sT%02d:%02d:00", start, h, m), moved = moved or nil }
  if tr.endDate and tr.endDate ~= "" then
    if not tostring(tr.endDate):match("^%d%d%d%d%-%d%d%-%d%d$") then
      return nil, "trigger end date '" .. tostring(tr.endDate) .. "'"
    end
    out.endDateTime = tr.endDate .. "T23:59:59"
  end
  return out, notes
end

return M
