-- QRS schema events -> RFC 5545 RRULE lines (docs/schedules.md); the
-- task-level rules are in lua/qmig/domain/schedules.lua, which re-exports
-- everything here.  Pure Lua: no I/O.
--
-- The QRS model, which this module follows to the letter: a schema event
-- fires at startDate + k * increment (k = 0, 1, ...) while not past its
-- expirationDate, but only at the instants its schemaFilterDescription
-- allows.  incrementDescription is "minutes hours days weeks" (a fifth
-- field, seen on newer releases, is accepted when 0; its meaning is
-- unverified, so any other value is refused).  schemaFilterDescription[i]
-- is "minute hour weekdayPrefix weekday weekInterval monthDay month
-- monthInterval" ("*" = any, "-" = no prefix, lists comma separated,
-- weekday 0 = Sunday, "¤" = last).  Several filter strings are a union:
-- each becomes its own RRULE line.
--
-- Cloud start/end are local wall-clock times in the IANA zone (no offset),
-- so a 06:00 Europe/Paris schedule stays at 06:00 across DST changes, as
-- in QSEoW.  Whatever cannot be expressed exactly is refused with a reason
-- (convert returns nil, reasons) or, for settings that are merely dropped
-- (permanent standard/daylight time, session timeout, retries, preload
-- nodes), listed so the caller reports it: nothing is dropped silently.
local clock = require "qmig.clients.clock"

local M = {}

M.DAYS = { [0] = "SU", "MO", "TU", "WE", "TH", "FR", "SA" }
M.INCREMENT_OPTIONS = { [0] = "once", "hourly", "daily", "weekly", "monthly", "custom" }
M.TASK_TYPES = { [0] = "reload", "external program", "user sync", "distribute" }
M.DEFAULT_SESSION_TIMEOUT = 1440
M.LAST = "\194\164"  -- "¤" (U+00A4) in UTF-8: the last day / the last weekday

local ALL_WEEKDAYS = { 0, 1, 2, 3, 4, 5, 6 }

-- {====== dates

local function is_leap(y) return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) end
local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- Days since 1970-01-01 (proleptic Gregorian), for the weekday.
local days_from_civil = clock.days_from_civil

-- "2024-01-11T06:00:00.000" (also with Z or an offset, which QRS
-- clients such as Qlik-Cli send although the value is a wall-clock time in
-- the event's timeZone, or with a space instead of T) ->
-- {y, mo, d, h, mi, s, text = "2024-01-11T06:00:00", wday = 0..6} or nil, why.
function M.parse_datetime(value)
  if type(value) ~= "string" then return nil, "not a date-time: " .. tostring(value) end
  local y, mo, d, h, mi, rest = value:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d)(.*)$")
  if not y then return nil, "not a date-time: '" .. value .. "'" end
  local s = rest:match("^:(%d%d)") or "00"
  rest = rest:gsub("^:%d%d", "")
  local tail = rest:gsub("^%.%d+", "")
  if not (tail == "" or tail == "Z" or tail:match("^[+-]%d%d:?%d%d$")) then
    return nil, "not a date-time: '" .. value .. "'"
  end
  local t = { y = tonumber(y), mo = tonumber(mo), d = tonumber(d), h = tonumber(h), mi = tonumber(mi), s = tonumber(s) }
  if t.mo < 1 or t.mo > 12 or t.h > 23 or t.mi > 59 or t.s > 59 then
    return nil, "not a real date-time: '" .. value .. "'"
  end
  local mdays = (t.mo == 2 and is_leap(t.y)) and 29 or MONTH_DAYS[t.mo]
  if t.d < 1 or t.d > mdays then return nil, "not a real date: '" .. value .. "'" end
  t.text = string.format("%04d-%02d-%02dT%02d:%02d:%02d", t.y, t.mo, t.d, t.h, t.mi, t.s)
  t.wday = (days_from_civil(t.y, t.mo, t.d) + 4) % 7  -- 1970-01-01 was a Thursday
  return t
end

-- An expiration that means "never": year 9999 (9999-01-01T00:00:00.000 or
-- 9999-12-30T23:59:59.999Z), or absent.
function M.is_never(value)
  return value == nil or value == "" or (type(value) == "string" and value:match("^9999%-") ~= nil)
end
-- }======

-- {====== parsing the QRS fields

-- "m h d w" or "m h d w x" -> {m, h, d, w, x} or nil, why
function M.parse_increment(text)
  if type(text) ~= "string" then return nil, "incrementDescription is missing" end
  local f = {}
  for word in text:gmatch("%S+") do
    local n = word:match("^%d+$") and tonumber(word)
    if not n then return nil, "incrementDescription '" .. text .. "': '" .. word .. "' is not a whole number" end
    f[#f + 1] = n
  end
  if #f ~= 4 and #f ~= 5 then
    return nil, "incrementDescription '" .. text .. "' must have 4 or 5 fields (minutes hours days weeks)"
  end
  return { m = f[1], h = f[2], d = f[3], w = f[4], x = f[5] or 0, fields = #f }
end

local FILTER_FIELDS = {
  { "minute", 0, 59 }, { "hour", 0, 23 }, { "prefix", 1, 5, last = true, none = "-" },
  { "weekday", 0, 6 }, { "week_interval", 1, 53, single = true }, { "monthday", 1, 31, last = true },
  { "month", 1, 12 }, { "month_interval", 1, 12, single = true },
}

-- One field: nil for "*" (any) or the prefix "-"; else a sorted list of
-- numbers (-1 = "¤", last) or nil, nil, why.
local function parse_field(spec, word)
  if word == "*" or (spec.none and word == spec.none) then return nil end
  local list, seen = {}, {}
  for item in (word .. ","):gmatch("([^,]*),") do
    local n
    if spec.last and item == M.LAST then
      n = -1
    else
      n = item:match("^%d+$") and tonumber(item)
      if not n or n < spec[2] or n > spec[3] then
        return nil, nil, string.format("%s '%s' is not %s..%s%s", spec[1], item, spec[2], spec[3],
          spec.last and " or ¤" or "")
      end
    end
    if not seen[n] then seen[n] = true; list[#list + 1] = n end
  end
  if spec.single and #list > 1 then return nil, nil, spec[1] .. " '" .. word .. "' must be one number" end
  table.sort(list, function(a, b)
    if (a < 0) ~= (b < 0) then return b < 0 end  -- "last" after the numbers
    return a < b
  end)
  return list
end

-- "* * - 1,3 2 * * *" -> {minute=, hour=, prefix=, weekday=, week_interval=,
-- monthday=, month=, month_interval=} (nil = unrestricted) or nil, why
function M.parse_filter(text)
  if type(text) ~= "string" then return nil, "schemaFilterDescription entry is not a string" end
  local words = {}
  for w in text:gmatch("%S+") do words[#words + 1] = w end
  if #words ~= 8 then
    return nil, "schemaFilterDescription '" .. text .. "' must have 8 fields, has " .. #words
  end
  local f = {}
  for i, spec in ipairs(FILTER_FIELDS) do
    local list, _, err = parse_field(spec, words[i])
    if err then return nil, "schemaFilterDescription '" .. text .. "': " .. err end
    f[spec[1]] = list
  end
  -- an interval of 1 restricts nothing
  if f.week_interval and f.week_interval[1] == 1 then f.week_interval = nil end
  if f.month_interval and f.month_interval[1] == 1 then f.month_interval = nil end
  return f
end
-- }======

-- {====== building rules

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function join(list, fmt)
  local out = {}
  for i, v in ipairs(list) do out[i] = fmt and fmt(v) or tostring(v) end
  return table.concat(out, ",")
end

local function weekdays(list)
  return join(list, function(n) return M.DAYS[n] end)
end

-- BYDAY for nth weekdays: prefixes x weekdays ("2" + "5" -> 2FR; ¤ -> -1FR).
local function nth_weekdays(prefixes, days)
  local out = {}
  for _, p in ipairs(prefixes) do
    for _, d in ipairs(days or ALL_WEEKDAYS) do out[#out + 1] = tostring(p) .. M.DAYS[d] end
  end
  return table.concat(out, ",")
end

-- One filter string -> one RRULE line, or nil, why.  `inc` is the parsed
-- increment, `option` the incrementOption, `start` the parsed startDate.
function M.rule(option, inc, f, start)
  if inc.x ~= 0 then
    return nil, "incrementDescription has a fifth field " .. inc.x .. " whose meaning is unverified"
  end
  local step = inc.m + 60 * inc.h + 1440 * inc.d + 10080 * inc.w
  -- Once; Qlik-Cli and Informatiqal write once as option 1 with "0 0 0 0".
  if option == 0 or step == 0 then return "RRULE:FREQ=DAILY;COUNT=1" end

  local parts = {}
  local interval, freq
  local wi = f.week_interval and f.week_interval[1]
  local mi = f.month_interval and f.month_interval[1]
  local day_or_more = step % 1440 == 0
  local function never(what)
    return nil, string.format("the trigger never fires: its start %s is excluded by its filter's %s", start.text, what)
  end
  if f.prefix and not f.weekday and option ~= 4 then
    return nil, "a weekday prefix (nth weekday) without weekdays outside a monthly trigger"
  end

  if day_or_more then
    -- the time of day is the start's; a filter on minutes or hours can only
    -- keep it or exclude it entirely
    if f.minute and not contains(f.minute, start.mi) then return never("minutes") end
    if f.hour and not contains(f.hour, start.h) then return never("hours") end
    local days = step // 1440
    local pure_weeks = inc.m == 0 and inc.h == 0 and inc.d == 0 and inc.w > 0
    local monthly = f.prefix or f.monthday or mi or option == 4
    if wi and monthly then
      return nil, "the filter restricts both the week interval and the month days/interval"
    end
    if days == 1 and monthly then
      freq, interval = "MONTHLY", mi or 1
      if not f.monthday and not f.weekday then
        return nil, "a monthly trigger without day of month or weekday"
      end
      if f.monthday then parts[#parts + 1] = "BYMONTHDAY=" .. join(f.monthday) end
      if f.prefix then
        parts[#parts + 1] = "BYDAY=" .. nth_weekdays(f.prefix, f.weekday)
      elseif f.weekday then
        parts[#parts + 1] = "BYDAY=" .. weekdays(f.weekday)
      end
    elseif days == 1 and (option == 3 or wi or (option ~= 2 and f.weekday)) then
      freq, interval = "WEEKLY", wi or 1
      if not f.weekday then return nil, "a weekly trigger without weekdays" end
      parts[#parts + 1] = "BYDAY=" .. weekdays(f.weekday)
    elseif pure_weeks then
      if monthly then return nil, "a step of whole weeks with a month-day or month-interval filter" end
      if wi and inc.w > 1 then return nil, "a step of " .. inc.w .. " weeks with a week interval of " .. wi end
      if f.weekday and not contains(f.weekday, start.wday) then return never("weekdays") end
      freq, interval = "WEEKLY", inc.w * (wi or 1)
      parts[#parts + 1] = "BYDAY=" .. M.DAYS[start.wday]
    else
      if wi or mi or f.prefix then
        return nil, "a step of " .. days .. " days with a week/month interval or nth-weekday filter"
      end
      freq, interval = "DAILY", days
      if f.monthday then parts[#parts + 1] = "BYMONTHDAY=" .. join(f.monthday) end
      if f.weekday then parts[#parts + 1] = "BYDAY=" .. weekdays(f.weekday) end
    end
    if f.month then table.insert(parts, 1, "BYMONTH=" .. join(f.month)) end
    parts[#parts + 1] = "BYHOUR=" .. start.h
    parts[#parts + 1] = "BYMINUTE=" .. start.mi
    parts[#parts + 1] = "BYSECOND=" .. start.s
  else
    if wi or mi or f.prefix then
      return nil, "a step of " .. step .. " minutes with a week/month interval or nth-weekday filter"
    end
    if step % 60 == 0 then
      freq, interval = "HOURLY", step // 60
    else
      freq, interval = "MINUTELY", step
    end
    if f.month then parts[#parts + 1] = "BYMONTH=" .. join(f.month) end
    if f.monthday then parts[#parts + 1] = "BYMONTHDAY=" .. join(f.monthday) end
    if f.weekday then parts[#parts + 1] = "BYDAY=" .. weekdays(f.weekday) end
    if f.hour then parts[#parts + 1] = "BYHOUR=" .. join(f.hour) end
    if freq == "HOURLY" then
      -- whole hours from the start: the minute is always the start's
      if f.minute and not contains(f.minute, start.mi) then return never("minutes") end
      parts[#parts + 1] = "BYMINUTE=" .. start.mi
    elseif f.minute then
      parts[#parts + 1] = "BYMINUTE=" .. join(f.minute)
    end
  end
  table.insert(parts, 1, "INTERVAL=" .. interval)
  return "RRULE:FREQ=" .. freq .. ";" .. table.concat(parts, ";")
end
-- }======

return M
