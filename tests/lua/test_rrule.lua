-- qmig.domain.schedules: QRS schema events -> Qlik Cloud reload-task schedules,
-- table driven (docs/schedules.md).  Every RRULE the
-- cases produce is also checked by the simulator's validator
-- (python3 tests/qliksim/cloud.py), the one /reload-tasks applies.
local t = require "testing"
local rrule = require "qmig.domain.schedules"

local T = t.suite("rrule")
local LAST = rrule.LAST  -- "¤"

-- A schema event with QMC-like defaults: daily at 06:00 Europe/Paris,
-- 2024-01-11 (a Thursday), never expiring.
local function ev(o)
  local e = {
    id = "ev", name = o.name or "Trigger", enabled = o.enabled ~= false, eventType = 0,
    timeZone = o.tz or "Europe/Paris", daylightSavingTime = o.dst or 0,
    startDate = o.start or "2024-01-11T06:00:00.000",
    expirationDate = o.expires or "9999-01-01T00:00:00.000",
    incrementOption = o.option or 2, incrementDescription = o.inc or "0 0 1 0",
    schemaFilterDescription = o.filters or { o.filter or "* * - * * * * *" },
  }
  for k, v in pairs(o.raw or {}) do e[k] = v end
  return e
end

local function task(o)
  local tk = { id = "task", name = "Reload Sales", taskType = 0, enabled = true, isManuallyTriggered = false,
    isPartialReload = false, taskSessionTimeout = 1440, maxRetries = 0, preloadNodes = {} }
  for k, v in pairs(o or {}) do tk[k] = v end
  return tk
end

local D = "BYHOUR=6;BYMINUTE=0;BYSECOND=0"

-- {name, event fields, expected}: expected.rule (one line) or .rules,
-- .start (default 2024-01-11T06:00:00), .end_ (nil = no endDateTime),
-- .state, .partial, .tz, .dropped (count), .warnings (count); or .fail =
-- pattern of the refusal.
local CASES = {
  -- once
  { "once (incrementOption 0)", { option = 0, inc = "0 0 0 0" }, { rule = "RRULE:FREQ=DAILY;COUNT=1" } },
  { "once written by Qlik-Cli (option 1, 0 0 0 0)", { option = 1, inc = "0 0 0 0" },
    { rule = "RRULE:FREQ=DAILY;COUNT=1" } },
  { "once ignores a leftover weekday filter", { option = 0, inc = "0 0 0 0", filter = "* * - 1 * * * *" },
    { rule = "RRULE:FREQ=DAILY;COUNT=1" } },
  -- minutes
  { "every 15 minutes", { option = 1, inc = "15 0 0 0" }, { rule = "RRULE:FREQ=MINUTELY;INTERVAL=15", warnings = 1 } },
  { "every 90 minutes as N 0 0 0", { option = 1, inc = "90 0 0 0" }, { rule = "RRULE:FREQ=MINUTELY;INTERVAL=90" } },
  { "every 120 minutes is every 2 hours", { option = 1, inc = "120 0 0 0" },
    { rule = "RRULE:FREQ=HOURLY;INTERVAL=2;BYMINUTE=0" } },
  { "every 15 minutes at :00 and :30 only", { option = 1, inc = "15 0 0 0", filter = "0,30 * - * * * * *" },
    { rule = "RRULE:FREQ=MINUTELY;INTERVAL=15;BYMINUTE=0,30", warnings = 1 } },
  -- hourly, every "M H" form
  { "hourly 0 1 0 0", { option = 1, inc = "0 1 0 0" }, { rule = "RRULE:FREQ=HOURLY;INTERVAL=1;BYMINUTE=0" } },
  { "every 4 hours from 06:15", { option = 1, inc = "0 4 0 0", start = "2024-01-11T06:15:00.000" },
    { rule = "RRULE:FREQ=HOURLY;INTERVAL=4;BYMINUTE=15", start = "2024-01-11T06:15:00" } },
  { "every 12 hours", { option = 1, inc = "0 12 0 0" }, { rule = "RRULE:FREQ=HOURLY;INTERVAL=12;BYMINUTE=0" } },
  { "hourly 30 1 0 0 = every 1h30", { option = 1, inc = "30 1 0 0" }, { rule = "RRULE:FREQ=MINUTELY;INTERVAL=90" } },
  { "hourly 45 2 0 0 = every 2h45", { option = 1, inc = "45 2 0 0" }, { rule = "RRULE:FREQ=MINUTELY;INTERVAL=165" } },
  { "hourly 30 0 0 0 = every 30 min", { option = 1, inc = "30 0 0 0" },
    { rule = "RRULE:FREQ=MINUTELY;INTERVAL=30", warnings = 1 } },
  { "hourly 0 12 1 0 = every 36 hours", { option = 1, inc = "0 12 1 0" },
    { rule = "RRULE:FREQ=HOURLY;INTERVAL=36;BYMINUTE=0" } },
  { "hourly on weekdays only", { option = 1, inc = "0 1 0 0", filter = "* * - 1,2,3,4,5 * * * *" },
    { rule = "RRULE:FREQ=HOURLY;INTERVAL=1;BYDAY=MO,TU,WE,TH,FR;BYMINUTE=0" } },
  { "hourly between 8 and 12", { option = 1, inc = "0 1 0 0", filter = "* 8,9,10,11,12 - * * * * *" },
    { rule = "RRULE:FREQ=HOURLY;INTERVAL=1;BYHOUR=8,9,10,11,12;BYMINUTE=0" } },
  { "hourly in June only", { option = 1, inc = "0 1 0 0", filter = "* * - * * * 6 *" },
    { rule = "RRULE:FREQ=HOURLY;INTERVAL=1;BYMONTH=6;BYMINUTE=0" } },
  -- daily
  { "daily", {}, { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D } },
  { "every 3 days", { inc = "0 0 3 0" }, { rule = "RRULE:FREQ=DAILY;INTERVAL=3;" .. D } },
  { "daily keeps the start's seconds", { start = "2017-01-11T12:05:46.000" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=12;BYMINUTE=5;BYSECOND=46", start = "2017-01-11T12:05:46" } },
  { "daily on weekdays", { filter = "* * - 1,2,3,4,5 * * * *" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;BYDAY=MO,TU,WE,TH,FR;" .. D } },
  { "every 2 days in summer months", { inc = "0 0 2 0", filter = "* * - * * * 6,7,8 *" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=2;BYMONTH=6,7,8;" .. D } },
  { "daily, start hour kept by an hour filter", { filter = "0 6 - * * * * *" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D } },
  -- weekly
  { "weekly Monday and Wednesday", { option = 3, filter = "* * - 1,3 1 * * *" },
    { rule = "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,WE;" .. D } },
  { "every 2 weeks Monday and Wednesday", { option = 3, filter = "* * - 1,3 2 * * *" },
    { rule = "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;" .. D } },
  { "weekly Friday, week interval *", { option = 3, filter = "* * - 5 * * * *" },
    { rule = "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=FR;" .. D } },
  { "weekly days listed out of order", { option = 3, filter = "* * - 5,1,3 1 * * *" },
    { rule = "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,WE,FR;" .. D } },
  { "weekly Sunday and Saturday every 3 weeks, Qlik-Cli option 1", { option = 1, filter = "* * - 0,6 3 * * *" },
    { rule = "RRULE:FREQ=WEEKLY;INTERVAL=3;BYDAY=SU,SA;" .. D } },
  { "weekly as a step of 2 whole weeks", { option = 3, inc = "0 0 0 2" },
    { rule = "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TH;" .. D } },
  { "weekly without any weekday is refused", { option = 3, filter = "* * - * * * * *" },
    { fail = "without weekdays" } },
  -- monthly
  { "monthly on the 1st and 15th", { option = 4, filter = "* * - * * 1,15 * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=1,15;" .. D } },
  { "monthly on the last day", { option = 4, filter = "* * - * * " .. LAST .. " * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=-1;" .. D } },
  { "monthly on the last day and the 15th", { option = 4, filter = "* * - * * " .. LAST .. ",15 * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=15,-1;" .. D } },
  { "monthly on the 31st (months without one are skipped, as in QSEoW)",
    { option = 4, start = "2024-01-31T06:00:00.000", filter = "* * - * * 31 * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=31;" .. D, start = "2024-01-31T06:00:00" } },
  { "monthly on the second Friday", { option = 4, filter = "* * 2 5 * * * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYDAY=2FR;" .. D } },
  { "monthly on the last Friday", { option = 4, filter = "* * " .. LAST .. " 5 * * * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYDAY=-1FR;" .. D } },
  { "monthly on the first and third Monday", { option = 4, filter = "* * 1,3 1 * * * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYDAY=1MO,3MO;" .. D } },
  { "monthly on every Monday", { option = 4, filter = "* * - 1 * * * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYDAY=MO;" .. D } },
  { "monthly on the 1st in January and July", { option = 4, filter = "* * - * * 1 1,7 *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTH=1,7;BYMONTHDAY=1;" .. D } },
  { "every 3rd month on the 1st", { option = 4, filter = "* * - * * 1 * 3" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=1;" .. D } },
  { "every 6th month on the last weekday Sunday", { option = 4, filter = "* * " .. LAST .. " 0 * * * 6" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=6;BYDAY=-1SU;" .. D } },
  { "monthly, Qlik-Cli option 1 with a day list", { option = 1, filter = "* * - * * 5,20 * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=5,20;" .. D } },
  { "monthly without day of month or weekday is refused", { option = 4 }, { fail = "without day of month" } },
  -- 4 and 5 field increments
  { "5-field daily 0 0 1 0 0", { inc = "0 0 1 0 0" }, { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D } },
  { "5-field hourly 30 1 0 0 0", { option = 1, inc = "30 1 0 0 0" },
    { rule = "RRULE:FREQ=MINUTELY;INTERVAL=90" } },
  { "5-field weekly", { option = 3, inc = "0 0 1 0 0", filter = "* * - 2 1 * * *" },
    { rule = "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=TU;" .. D } },
  { "5th field other than 0 is refused (meaning unverified)", { inc = "0 0 0 0 1" }, { fail = "fifth field" } },
  { "3-field increment is refused", { inc = "0 1 0" }, { fail = "4 or 5 fields" } },
  -- time zones: the start stays local wall-clock in the zone
  { "America/New_York, start on the spring-forward day",
    { tz = "America/New_York", start = "2024-03-10T02:30:00.000" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=30;BYSECOND=0", start = "2024-03-10T02:30:00",
      tz = "America/New_York" } },
  { "Europe/Paris, start in the repeated hour of the fall-back day",
    { tz = "Europe/Paris", start = "2024-10-27T02:30:00.000" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=30;BYSECOND=0", start = "2024-10-27T02:30:00" } },
  { "Australia/Sydney weekly, start on the DST end day",
    { tz = "Australia/Sydney", option = 3, start = "2024-04-07T02:30:00.000", filter = "* * - 0 1 * * *" },
    { rule = "RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=SU;BYHOUR=2;BYMINUTE=30;BYSECOND=0",
      start = "2024-04-07T02:30:00", tz = "Australia/Sydney" } },
  { "a start written with Z (Qlik-Cli) is the same wall-clock time", { start = "2024-01-11T06:00:00.000Z" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D } },
  { "a start with an offset is still read as wall-clock", { start = "2024-01-11T06:00:00+01:00" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D } },
  { "a Windows time-zone name is refused", { tz = "W. Europe Standard Time" }, { fail = "not an IANA" } },
  -- leap day and dates
  { "leap day start, monthly on the 29th",
    { option = 4, start = "2024-02-29T06:00:00.000", filter = "* * - * * 29 * *" },
    { rule = "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=29;" .. D, start = "2024-02-29T06:00:00" } },
  { "leap day start, daily late evening", { start = "2024-02-29T23:30:00.000" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;BYHOUR=23;BYMINUTE=30;BYSECOND=0", start = "2024-02-29T23:30:00" } },
  { "Feb 29 of a common year is refused", { start = "2023-02-29T06:00:00.000" }, { fail = "not a real date" } },
  -- expiration
  { "expiration 9999-01-01 (never) is omitted", { expires = "9999-01-01T00:00:00.000" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D } },
  { "expiration 9999-12-30T23:59:59.999Z (never) is omitted", { expires = "9999-12-30T23:59:59.999Z" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D } },
  { "a real expiration becomes endDateTime", { expires = "2024-12-31T23:59:59.000" },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D, end_ = "2024-12-31T23:59:59" } },
  { "an expiration before the start is refused", { expires = "2024-01-01T00:00:00.000" },
    { fail = "expires .* before it starts" } },
  -- state, partial, daylight saving
  { "disabled trigger -> Disabled", { enabled = false },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D, state = "Disabled" } },
  { "disabled task -> Disabled", { task = { enabled = false } },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D, state = "Disabled" } },
  { "partial reload task -> partial", { task = { isPartialReload = true } },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D, partial = true } },
  { "permanent standard time is reported as dropped", { dst = 1 },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D, dropped = 1 } },
  { "permanent daylight saving time is reported as dropped", { dst = 2 },
    { rule = "RRULE:FREQ=DAILY;INTERVAL=1;" .. D, dropped = 1 } },
  -- several filters are a union: one line each
  { "two filter strings -> two lines", { option = 4, filters = { "* * - * * 1 * *", "* * " .. LAST .. " 5 * * * *" } },
    { rules = { "RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=1;" .. D,
      "RRULE:FREQ=MONTHLY;INTERVAL=1;BYDAY=-1FR;" .. D } } },
  -- what cannot be carried
  { "a filter excluding the start hour never fires", { filter = "* 7 - * * * * *" }, { fail = "never fires" } },
  { "an hourly filter excluding the start minute never fires",
    { option = 1, inc = "0 1 0 0", filter = "30 * - * * * * *" },
    { fail = "never fires" } },
  { "a week interval on an hourly step is refused", { option = 1, inc = "0 1 0 0", filter = "* * - 1 2 * * *" },
    { fail = "week/month interval" } },
  { "week interval with month days is refused", { option = 3, filter = "* * - 1 2 15 * *" }, { fail = "both" } },
  { "a 7-field filter is refused", { filter = "* * - * * * *" }, { fail = "8 fields" } },
  { "an out-of-range weekday is refused", { option = 3, filter = "* * - 7 1 * * *" }, { fail = "weekday '7'" } },
  { "an unknown incrementOption is refused", { option = 9 }, { fail = "incrementOption" } },
  { "an unknown daylightSavingTime is refused", { dst = 5 }, { fail = "daylightSavingTime" } },
  { "a composite event is refused", { raw = { eventType = 1, compositeRules = {} } }, { fail = "chained trigger" } },
  { "an external program task is refused", { task = { taskType = 1, name = "Run bat" } },
    { fail = "external program task 'Run bat'" } },
  { "a user sync task is refused", { task = { taskType = 2, name = "Sync AD" } },
    { fail = "user sync task 'Sync AD'" } },
}

local produced = {}  -- every RRULE line, for the validator

for _, case in ipairs(CASES) do
  local name, o, want = case[1], case[2], case[3]
  T.test(name, function()
    local body, a, b = rrule.convert(ev(o), task(o.task))
    if want.fail then
      t.eq(body, nil, "expected a refusal")
      t.truthy(type(a) == "table" and #a > 0, "reasons expected")
      t.match(table.concat(a, "\n"), want.fail)
      return
    end
    t.truthy(body, "refused: " .. t.show(a))
    local expected = {
      timeZone = want.tz or o.tz or "Europe/Paris",
      startDateTime = want.start or "2024-01-11T06:00:00",
      endDateTime = want.end_,
      recurrence = want.rules or { want.rule },
      partial = want.partial or false,
      state = want.state or "Enabled",
    }
    t.eq(body, expected)
    t.eq(#a, want.dropped or 0, "dropped: " .. t.show(a))
    t.eq(#b, want.warnings or 0, "warnings: " .. t.show(b))
    for _, line in ipairs(body.recurrence) do produced[#produced + 1] = line end
  end)
end

T.test("at least 40 trigger cases", function()
  t.truthy(#CASES >= 40, #CASES .. " cases")
end)

T.test("every produced RRULE is accepted by the simulator's /reload-tasks validator", function()
  t.truthy(#produced >= 40, "only " .. #produced .. " rules produced (run the whole suite)")
  local dir = t.tmpdir()
  local p = assert(io.popen("python3 tests/qliksim/cloud.py > " .. dir .. "/out 2>&1", "w"))
  p:write(table.concat(produced, "\n"), "\n")
  local ok = p:close()
  local out = t.read(dir .. "/out")
  t.truthy(ok, "validator refused some rules:\n" .. out)
  local n = 0
  for line in out:gmatch("[^\n]+") do
    t.match(line, "^ok\t", "validator")
    n = n + 1
  end
  t.eq(n, #produced)
end)

T.test("the validator would catch a bad rule (the check is not vacuous)", function()
  local dir = t.tmpdir()
  local p = assert(io.popen("python3 tests/qliksim/cloud.py > " .. dir .. "/out 2>&1", "w"))
  p:write("RRULE:FREQ=WEEKLY;BYDAY=2FR\n")
  t.eq(p:close(), nil)
  t.match(t.read(dir .. "/out"), "^invalid")
end)

T.test("dropped task settings: session timeout, retries, preload nodes", function()
  t.eq(rrule.dropped_settings(task()), {})
  local d = rrule.dropped_settings(task { taskSessionTimeout = 60, maxRetries = 2, preloadNodes = { { id = "n1" } } })
  t.eq(#d, 3)
  t.match(d[1], "session timeout of 60 min")
  t.match(d[2], "2 retries")
  t.match(d[3], "preload on 1 node")
end)

T.test("not_migratable lists every reason for a task", function()
  local comp = { id = "c1", name = "After Extract", eventType = 1,
    timeConstraint = { days = 0, hours = 0, minutes = 360, seconds = 0 },
    compositeRules = { { ruleState = 1, reloadTask = { id = "up", name = "Extract" } } } }
  local reasons = rrule.not_migratable(task { maxRetries = 1 }, { ev { dst = 1 }, comp })
  t.eq(#reasons, 3, t.show(reasons))
  t.match(reasons[1], "permanent standard time")
  t.match(reasons[2], "chained trigger 'After Extract' of task 'Reload Sales' %(starts when 'Extract' succeeds%)")
  t.match(reasons[3], "1 retry after a failed reload is not carried")
  -- a task without any trigger is manual only
  reasons = rrule.not_migratable(task(), {})
  t.eq(#reasons, 1)
  t.match(reasons[1], "no trigger %(manual only%)")
  -- an external program task: one reason, its settings do not matter
  reasons = rrule.not_migratable(task { taskType = 1, maxRetries = 3 }, { ev {} })
  t.eq(#reasons, 1)
  t.match(reasons[1], "^external program task")
  -- a clean task: nothing
  t.eq(rrule.not_migratable(task(), { ev {} }), {})
end)

T.test("a chained trigger on two upstream tasks names both and the time window", function()
  local comp = { name = "Both", eventType = 1, timeConstraint = { days = 0, hours = 1, minutes = 30 },
    compositeRules = { { ruleState = 1, reloadTask = { id = "a", name = "A" } },
      { ruleState = 2, reloadTask = { id = "b" } } } }
  t.match(rrule.composite_reason(comp, task(), { b = "B" }), "'A' succeeds and 'B' fails within 90 min")
end)

T.test("parse_datetime: weekday, fractions, bad input", function()
  t.eq(rrule.parse_datetime("2024-01-11T06:00:00.000").wday, 4)  -- Thursday
  t.eq(rrule.parse_datetime("2024-02-29 23:30").text, "2024-02-29T23:30:00")
  t.eq(rrule.parse_datetime("1970-01-01T00:00:00Z").wday, 4)
  t.eq(rrule.parse_datetime("2000-02-29T00:00:00").wday, 2)   -- a Tuesday; 2000 is a leap year
  t.eq(rrule.parse_datetime("1900-02-29T00:00:00"), nil)      -- 1900 is not
  t.eq(rrule.parse_datetime("2024-01-11T06:00:00junk"), nil)
  t.eq(rrule.parse_datetime("2024-13-01T06:00:00"), nil)
  t.truthy(rrule.is_never("9999-01-01T00:00:00.000"))
  t.truthy(rrule.is_never(nil))
  t.eq(rrule.is_never("2030-01-01T00:00:00.000"), false)
end)

return T
