-- apps.schedules — Add Reload Schedules To Applications (SPEC §5.1 order
-- 260; QAMT "Add Reload Schedules To Applications"; reference/qlik-apis.md
-- A11, B12, D4).
--
-- One Cloud reload task per QRS schema event (time trigger): a QRS task
-- may have several triggers, each with its own zone and times, and one
-- Cloud task each keeps them exact.  The conversion is qmig.rrule.
-- Cache kind "app.schedule", key = the schema event id, target = the
-- Cloud reload-task id.  The task goes on the app users open:
-- ctx.app_for(qrs app id) — the published copy when there is one, else
-- the imported app.
--
-- Nothing is dropped silently.  These are items too, reported "skipped"
-- with their reason (in the run output on stderr, in `status`, in the
-- cache, and in <project>/reports/schedules.json):
--   * composite (chained) triggers (key = composite event id);
--   * manual-only tasks, without any trigger (key = task id);
--   * triggers of external program and user sync tasks;
--   * triggers qmig.rrule cannot express exactly (with the reason);
--   * triggers of apps not imported (yet), or outside plan.apps;
--   * triggers the `schedule` transform hook leaves out (it returns nil).
-- Settings a Cloud task cannot carry — session timeout other than the
-- default, retries, preload nodes, permanent standard/daylight time — do
-- not stop the schedule from being created; each is a note in the
-- outcome's data.dropped and in its reason.
--
-- A disabled trigger or task gives a Cloud task in state Disabled
-- (POST, then PUT with state: "Disabled").  isPartialReload -> partial.
-- The transform hook: ctx.transform("schedule", qrs_event, body) with body
-- = {appId, timeZone, startDateTime, endDateTime?, recurrence, partial,
-- state}; it may change it or return nil.
--
-- Never a duplicate: the task recorded in the cache is checked first (GET;
-- a task deleted in the tenant meanwhile is created again).  Otherwise,
-- and always after a crash (ctx.resume), the app's tasks
-- (GET /reload-tasks?appId=) are searched for one with the same
-- recurrence, startDateTime and timeZone that no other trigger of this
-- project holds: it is adopted (or, after a crash of this very item,
-- taken as ours: "created", undo recorded).  A task that differs from
-- what the source now says is updated in place (PUT, previous value kept
-- for undo).  A re-run of a finished job makes no write at all (the engine
-- skips items whose fingerprint — the trigger and task definition, not
-- their run history — did not change).  When the app users open changed
-- since (published later), the schedule is created on the new app and the
-- one this project made on the old app is deleted, so the app is never
-- reloaded twice.
local json = require "qmig.json"
local qmig = require "qmig"
local rrule = require "qmig.rrule"

local KIND = "app.schedule"

-- {====== items

local function by_task(list, field)
  local out = {}
  for _, ev in ipairs(list) do
    local ref = type(ev[field]) == "table" and ev[field] or nil
    if ref and ref.id then
      out[ref.id] = out[ref.id] or {}
      table.insert(out[ref.id], ev)
    end
  end
  return out
end

-- The QRS apps plan.apps covers, when the apps helpers are there.
local function apps_in_scope(ctx)
  local ok, scope = pcall(require, "qmig.apps.scope")
  if not ok or type(scope) ~= "table" or type(scope.list) ~= "function" then return nil end
  local set = {}
  for _, app in ipairs(scope.list(ctx)) do set[app.id] = true end
  return set
end

local function sorted(list)
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

-- The fields that define a trigger and its task (not their run history:
-- operational data changes with every reload and must not look like a
-- change of definition).
local EVENT_FIELDS = { "id", "name", "enabled", "eventType", "timeZone", "daylightSavingTime", "startDate",
  "expirationDate", "schemaFilterDescription", "incrementDescription", "incrementOption", "timeConstraint" }
local TASK_FIELDS = { "id", "name", "taskType", "enabled", "isManuallyTriggered", "isPartialReload",
  "taskSessionTimeout", "maxRetries" }

local function pick(obj, fields)
  if type(obj) ~= "table" then return json.null end
  local out = {}
  for _, f in ipairs(fields) do out[f] = obj[f] end
  return out
end

local function definition(item)
  local rules = {}
  for _, r in ipairs(item.event and type(item.event.compositeRules) == "table" and item.event.compositeRules or {}) do
    rules[#rules + 1] = { r.ruleState, type(r.reloadTask) == "table" and r.reloadTask.id or json.null }
  end
  local nodes = {}
  for _, n in ipairs(item.task and type(item.task.preloadNodes) == "table" and item.task.preloadNodes or {}) do
    nodes[#nodes + 1] = type(n) == "table" and (n.id or n.name) or tostring(n)
  end
  return {
    v = 1, kind = item.kind, event = pick(item.event, EVENT_FIELDS), task = pick(item.task, TASK_FIELDS),
    rules = rules, nodes = nodes, app = item.app and item.app.id or json.null,
    target_app = item.target_app or json.null,
  }
end

local function items(ctx)
  local tasks = ctx.source:full("reloadtask")
  local schema = ctx.source:full("schemaevent")
  local composite = ctx.source:full("compositeevent")
  local scope = apps_in_scope(ctx)
  local schema_of, composite_of = by_task(schema, "reloadTask"), by_task(composite, "reloadTask")
  local out = {}
  local function add(kind, id, event, task)
    local app = type(task.app) == "table" and task.app or nil
    out[#out + 1] = { kind = kind, id = id, event = event, task = task, app = app,
      target_app = app and app.id and (ctx.app_for(app.id)) or nil }
  end
  for _, task in ipairs(sorted(tasks)) do
    local app_id = type(task.app) == "table" and task.app.id or nil
    if scope == nil or app_id == nil or scope[app_id] then
      local evs, comps = schema_of[task.id] or {}, composite_of[task.id] or {}
      for _, ev in ipairs(sorted(evs)) do add("schema", ev.id, ev, task) end
      for _, ev in ipairs(sorted(comps)) do add("composite", ev.id, ev, task) end
      if #evs == 0 and #comps == 0 then add("manual", task.id, nil, task) end
    end
  end
  -- Triggers of tasks that are not reload tasks (external program, user
  -- sync: QRS lists them elsewhere): reported, never migrated.
  for _, list in ipairs { schema, composite } do
    for _, ev in ipairs(sorted(list)) do
      if type(ev.reloadTask) ~= "table" then
        local other = type(ev.externalProgramTask) == "table" and ev.externalProgramTask
          or type(ev.userSyncTask) == "table" and ev.userSyncTask or nil
        if other then
          local tt = other.taskType
          if tt == nil then tt = type(ev.externalProgramTask) == "table" and 1 or 2 end
          local task = { id = other.id, name = other.name, taskType = tt }
          add(list == schema and "schema" or "composite", ev.id, ev, task)
        end
      end
    end
  end
  return out
end
-- }======

-- {====== finding what exists

local function norm_time(v)
  if type(v) ~= "string" or v == "" then return "" end
  return v:sub(1, 19)
end

local function same_recurrence(a, b)
  if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
  local function bare(line) return (tostring(line):upper():gsub("^RRULE:", "")) end
  for i = 1, #a do
    if bare(a[i]) ~= bare(b[i]) then return false end
  end
  return true
end

-- Does the Cloud task already say what body says?  (schedule identity:
-- app, recurrence, start, zone; the rest is updated in place)
local function same_schedule(task, body)
  return task.appId == body.appId and same_recurrence(task.recurrence, body.recurrence)
    and norm_time(task.startDateTime) == norm_time(body.startDateTime)
    and (task.timeZone or "") == (body.timeZone or "")
end

local function differences(task, body)
  local out = {}
  if not same_schedule(task, body) then out[#out + 1] = "schedule" end
  if norm_time(task.endDateTime) ~= norm_time(body.endDateTime) then out[#out + 1] = "endDateTime" end
  if (task.partial == true) ~= (body.partial == true) then out[#out + 1] = "partial" end
  if (task.state or "Enabled") ~= body.state then out[#out + 1] = "state" end
  return out
end

local function get_task(ctx, id)
  local ok, task = pcall(ctx.target.get, ctx.target, "reload-tasks/" .. id)
  if ok then return task end
  if type(task) == "table" and task.status == 404 then return nil end
  error(task, 0)
end

-- A task of the app with the same schedule that no other item of this
-- project holds.
local function search(ctx, body)
  for task in ctx.target:each("reload-tasks", { appId = body.appId, limit = 100 }) do
    if same_schedule(task, body) then
      local holder = ctx.cache and ctx.cache:find_by_target(KIND, task.id)
      if not holder or holder.source_id == ctx.item_key then return task end
    end
  end
  return nil
end
-- }======

local function owned_by_me(ctx, task)
  if task.userId == nil or task.userId == "" then return true end
  local me = ctx.target:get("users/me")
  return type(me) == "table" and me.id == task.userId
end

local function skipped(ctx, item, reason, dropped)
  local prev = ctx.previous
  if prev and prev.target_id and prev.status ~= "skipped" and prev.status ~= "deleted" then
    -- made by an earlier run, before the source (or transforms.lua) changed
    reason = reason .. string.format("; the Cloud reload task %s made earlier is left as it is", prev.target_id)
  end
  ctx.log.warn("schedule not migrated", { task = item.task and item.task.name, trigger = item.event and item.event.name,
    reason = reason })
  return { status = "skipped", reason = reason, natural_key = item.task and item.task.name,
    data = { task = item.task and item.task.name, trigger = item.event and item.event.name,
      app = item.app and item.app.name, dropped = dropped and #dropped > 0 and dropped or nil } }
end

local function put_body(body)
  local out = {}
  for k, v in pairs(body) do out[k] = v end
  if out.endDateTime == nil then out.endDateTime = json.null end
  return out
end

local function previous_value(task)
  return { appId = task.appId, timeZone = task.timeZone, startDateTime = task.startDateTime,
    endDateTime = (task.endDateTime ~= nil and task.endDateTime ~= "") and task.endDateTime or json.null,
    recurrence = json.array(task.recurrence or {}), partial = task.partial == true, state = task.state }
end

local function run(ctx, item)
  local task = item.task
  if item.kind == "composite" then
    return skipped(ctx, item, rrule.task_blocker(task) or rrule.composite_reason(item.event, task))
  end
  if item.kind == "manual" then return skipped(ctx, item, rrule.manual_reason(task)) end
  local blocker = rrule.task_blocker(task)
  if blocker then return skipped(ctx, item, blocker) end
  local dropped = rrule.dropped_settings(task)
  if not item.app or not item.app.id then return skipped(ctx, item, "the task has no app", dropped) end
  local app_id = ctx.app_for(item.app.id)
  if not app_id then
    return skipped(ctx, item, string.format("app '%s' (%s) has not been imported into Qlik Cloud (run apps.import "
      .. "first)", tostring(item.app.name), item.app.id), dropped)
  end
  local converted, notes, warnings = rrule.convert(item.event, task)
  if not converted then return skipped(ctx, item, table.concat(notes, "; "), dropped) end
  for _, n in ipairs(notes) do table.insert(dropped, 1, n) end
  converted.appId = app_id
  local body = ctx.transform("schedule", item.event, converted)
  if body == nil then return skipped(ctx, item, "left out by transforms.lua", dropped) end
  body.recurrence = json.array(body.recurrence or {})
  body.state = body.state or "Enabled"
  -- a once-only trigger in the past will not run again (compared in UTC:
  -- off by the zone's offset at most, good enough for a note)
  if #body.recurrence == 1 and body.recurrence[1] == "RRULE:FREQ=DAILY;COUNT=1"
    and norm_time(body.startDateTime) < qmig.isotime():sub(1, 19) then
    warnings[#warnings + 1] = string.format("trigger '%s' runs once at %s, which is past: it will not run again",
      tostring(item.event.name), tostring(body.startDateTime))
  end
  local notes_all = {}
  for _, d in ipairs(dropped) do notes_all[#notes_all + 1] = d end
  for _, w in ipairs(warnings) do notes_all[#notes_all + 1] = w end
  local reason = #notes_all > 0 and ("not carried: " .. table.concat(notes_all, "; ")) or nil
  for _, d in ipairs(dropped) do ctx.log.warn("schedule setting not carried", { task = task.name, note = d }) end
  local data = { task = task.name, trigger = item.event.name, app = item.app.name, app_id = body.appId,
    recurrence = body.recurrence, dropped = #dropped > 0 and json.array(dropped) or nil,
    warnings = #warnings > 0 and json.array(warnings) or nil }
  local function outcome(status, id)
    return { status = status, target_id = id, reason = reason, data = data,
      natural_key = task.name .. " / " .. tostring(item.event.name) }
  end

  -- 1. the task this item made or adopted before
  local prev_id = ctx.previous and ctx.previous.target_id
  local existing, moved_from = nil, nil
  if prev_id then
    local t = get_task(ctx, prev_id)
    if t and t.appId == body.appId then
      existing = t
    elseif t and ctx.previous.created_by_us then
      moved_from = t  -- the app users open changed: ours on the old app goes
    end
  end
  -- 2. the same schedule on the app (a lost cache, a crash after the POST)
  local found_by_search = false
  if not existing then
    existing = search(ctx, body)
    found_by_search = existing ~= nil
  end
  -- after a crash of this item, a match made by the importing identity is
  -- the task the killed attempt created (its undo was never recorded)
  local ours_unrecorded = found_by_search and ctx.resume and owned_by_me(ctx, existing)

  local status, id
  if existing then
    id = existing.id
    local diff = differences(existing, body)
    if #diff > 0 then
      -- (a task our own crashed attempt made is undone by deleting it)
      if not ours_unrecorded then
        ctx.undo { action = "restore", method = "PUT", path = "reload-tasks/" .. id,
          body = previous_value(existing), forget = false }
      end
      ctx.target:put("reload-tasks/" .. id, put_body(body))
    end
    if ours_unrecorded then
      status = "created"
    elseif found_by_search then
      status = "adopted"
    else
      status = #diff > 0 and "updated" or "unchanged"
    end
  else
    local create = {}
    for k, v in pairs(body) do if k ~= "state" then create[k] = v end end
    local made = ctx.target:post("reload-tasks", create)
    id = made.id
    status = "created"
    if body.state ~= "Enabled" and made.state ~= body.state then
      ctx.target:put("reload-tasks/" .. id, put_body(body))
    end
  end
  if status == "created" then ctx.undo { method = "DELETE", path = "reload-tasks/" .. id } end
  if moved_from then
    ctx.target:delete("reload-tasks/" .. moved_from.id)
    ctx.undo { action = "irreversible", target_id = moved_from.id,
      reason = "reload task " .. moved_from.id .. " on the app's earlier copy was deleted when the schedule moved" }
    data.moved_from = moved_from.id
  end
  return outcome(status, id)
end

-- After every item: <project>/reports/schedules.json lists, from the cache
-- (so it covers earlier runs too), every trigger or task not migrated and
-- every setting not carried.
local function finish(ctx, outcomes)
  if ctx.dry_run or not ctx.cache then return end
  local seen = {}
  for _, o in ipairs(outcomes or {}) do if o.key then seen[o.key] = true end end
  local report = { not_migrated = json.array(), settings_not_carried = json.array(), migrated = 0,
    no_longer_at_source = json.array() }
  for _, rec in ipairs(ctx.cache:items(KIND)) do
    local d = type(rec.data) == "table" and rec.data or {}
    if not seen[rec.source_id] then
      -- a trigger deleted at the source (or now outside plan.apps): its
      -- Cloud task, if any, is left as it is and listed
      if rec.target_id and rec.status ~= "deleted" then
        report.no_longer_at_source[#report.no_longer_at_source + 1] = { source_id = rec.source_id,
          target_id = rec.target_id, task = d.task, trigger = d.trigger, app = d.app }
      end
    elseif rec.status == "skipped" or rec.status == "failed" then
      report.not_migrated[#report.not_migrated + 1] = { source_id = rec.source_id, task = d.task, trigger = d.trigger,
        app = d.app, status = rec.status, reason = rec.reason or rec.last_error }
    elseif rec.status ~= "in_progress" and rec.status ~= "deleted" then
      report.migrated = report.migrated + 1
      if d.dropped or d.warnings then
        report.settings_not_carried[#report.settings_not_carried + 1] = { source_id = rec.source_id,
          target_id = rec.target_id, task = d.task, trigger = d.trigger, dropped = d.dropped, warnings = d.warnings }
      end
    end
  end
  ctx.project:write_json("reports/schedules.json", report)
  if #report.no_longer_at_source > 0 then
    ctx.log.warn(string.format("%d Cloud reload task(s) made earlier belong to triggers no longer at the source "
      .. "(or outside plan.apps); left as they are: see %s", #report.no_longer_at_source,
      ctx.project:path("reports", "schedules.json")))
  end
  if #report.not_migrated > 0 or #report.settings_not_carried > 0 then
    ctx.log.warn(string.format("%d trigger(s)/task(s) not migrated, %d schedule(s) with settings not carried: see %s",
      #report.not_migrated, #report.settings_not_carried, ctx.project:path("reports", "schedules.json")))
  end
end

return {
  name = "apps.schedules", title = "Add Reload Schedules To Applications", order = 260,
  object = KIND,
  requires = { "apps.import" },
  items = items,
  key = function(item) return item.id end,
  fingerprint = function(item) return json.encode(definition(item), { sort_keys = true }) end,
  run = run,
  finish = finish,
}
