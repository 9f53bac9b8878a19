-- apps.schedules — Add Reload Schedules To Applications (order 260; what
-- Qlik's migration tool calls the same step).  QSEoW reload-task triggers
-- become Qlik Cloud scheduling tasks (/api/scheduling/tasks; the Reload
-- Tasks API it replaced refuses creates with 410 TASKS-011).  How each
-- kind of trigger maps, and what is reported instead: docs/schedules.md.
--
--   * a time trigger (schema event) -> one time-schedule task; the
--     RRULE comes from qmig.domain.schedules;
--   * a chained trigger (composite event) -> one task that starts when the
--     Cloud task(s) made for its upstream QRS task finish: the
--     on-task-event endpoint for one upstream, the full workflow body for
--     several (any of them: an upstream with several triggers; all of
--     them: several rules, with the time constraint as the event timeout).
--     Upstream tasks are made first (step.depends; a chain of any depth);
--     a loop of chains, upstreams that are not reload tasks, and "all of
--     several, one of which has several triggers" are reported.
-- Cache kind "app.schedule", key = the event id, target = the Cloud task
-- id.  The task goes on the app users open (ctx.app_for: the published
-- copy when there is one), enabled as at the source.  Each task carries
-- the description marker [qmig-lua:1:<event id>].
--
-- Never a duplicate: the recorded task is checked first; then the app's
-- tasks are searched for the marker (after a crash, or a lost reply, the
-- task the killed attempt made is found and kept as "created"); then the
-- app's legacy reload tasks, made by an earlier version of this tool
-- (same schedule, same identity), and the tasks Qlik moved them to
-- (metadata.migratedFrom).  A task with the same schedule made by anyone
-- else is never adopted: the trigger is reported.  A task that differs
-- from the source is updated in place (its id stays: chained tasks follow
-- it), the previous definition kept for undo.  A re-run of a finished job
-- makes no write (the engine skips items whose fingerprint did not change;
-- a chained trigger's fingerprint includes its upstreams').  Settings a
-- Cloud task cannot carry (session timeout, retries, preload nodes,
-- permanent standard time) are notes in the outcome, never a reason to
-- drop the schedule.  The transform hook: ctx.transform("schedule",
-- qrs_event, body), body = {appId, timeZone, startDateTime, endDateTime?,
-- recurrence = {line}, partial, state} for time triggers and {appId,
-- after = {{task =, status =}}, partial, state} for chained ones; it may
-- change it or return nil (left out).
local cloudtasks = require "qmig.clients.cloudtasks"
local errors = require "qmig.clients.errors"
local hash = require "qmig.hash"
local json = require "qmig.json"
local qmig = require "qmig"
local retrieve = require "qmig.clients.retrieve"
local rrule = require "qmig.domain.schedules"

local T = cloudtasks
local KIND = "app.schedule"
local KNOWN_AFTER_RUN = "(known after run)"

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
  local ok, scope = pcall(require, "qmig.domain.scope")
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
  for _, r in ipairs(item.rules or {}) do rules[#rules + 1] = { r.state or json.null, r.task_id or json.null } end
  local nodes = {}
  for _, n in ipairs(item.task and type(item.task.preloadNodes) == "table" and item.task.preloadNodes or {}) do
    nodes[#nodes + 1] = type(n) == "table" and (n.id or n.name) or tostring(n)
  end
  return {
    v = 2, kind = item.kind, event = pick(item.event, EVENT_FIELDS), task = pick(item.task, TASK_FIELDS),
    rules = rules, nodes = nodes, app = item.app and item.app.id or json.null,
    target_app = item.target_app or json.null, upstream = item.upstream_fp or json.null,
    cycle = item.cycle or json.null,
  }
end

-- What a composite rule waits for: the upstream task and what kind it is.
local function upstream_of(rule, names)
  for field, what in pairs { reloadTask = "reload", externalProgramTask = "external program",
    userSyncTask = "user sync" } do
    local ref = rule[field]
    if type(ref) == "table" and ref.id then
      local tt = tonumber(ref.taskType)  -- QRS lists some other tasks as reload tasks of another type
      if field == "reloadTask" and tt and tt ~= 0 then what = rrule.TASK_TYPES[tt] or ("type " .. tt) end
      return ref.id, ref.name or names[ref.id] or ref.id, what
    end
  end
  return nil, "?", "unknown"
end

-- Composite items on a loop of chains get .cycle, the loop in words.
local function mark_cycles(list, by_key)
  local colour, stack = {}, {}
  local function visit(it)
    colour[it], stack[#stack + 1] = "grey", it
    for _, r in ipairs(it.rules or {}) do
      for _, k in ipairs(r.after) do
        local up = by_key[k]
        if up and colour[up] == "grey" then
          local names, on = {}, false
          for _, s in ipairs(stack) do
            on = on or s == up
            if on then names[#names + 1] = "'" .. tostring(s.task.name) .. "'" end
          end
          names[#names + 1] = "'" .. tostring(up.task.name) .. "'"
          local text = table.concat(names, " after ")
          on = false
          for _, s in ipairs(stack) do
            on = on or s == up
            if on then s.cycle = s.cycle or text end
          end
        elseif up and not colour[up] then
          visit(up)
        end
      end
    end
    stack[#stack], colour[it] = nil, "black"
  end
  for _, it in ipairs(list) do if not colour[it] then visit(it) end end
end

-- A chained trigger's fingerprint includes its upstreams': when the
-- upstream task is made again (another app, say), the chain follows it.
local function fingerprint_of(item, by_key)
  if item.fp then return item.fp end
  if not item.cycle and item.rules then
    local ups = {}
    for _, r in ipairs(item.rules) do
      for _, k in ipairs(r.after) do ups[#ups + 1] = fingerprint_of(by_key[k], by_key) end
    end
    item.upstream_fp = ups
  end
  item.fp = hash.sha256(json.encode(definition(item), { sort_keys = true }))
  return item.fp
end

-- Chained triggers: what each rule waits for, as the keys of the items
-- (triggers) of its upstream task.
local function link_chains(out, tasks)
  local names, triggers = {}, {}
  for _, task in ipairs(tasks) do names[task.id] = task.name end
  for _, it in ipairs(out) do
    if it.kind ~= "manual" and it.task.id then
      triggers[it.task.id] = triggers[it.task.id] or {}
      table.insert(triggers[it.task.id], it.id)
    end
  end
  for _, it in ipairs(out) do
    if it.kind == "composite" then
      it.rules = {}
      for _, r in ipairs(type(it.event.compositeRules) == "table" and it.event.compositeRules or {}) do
        local id, name, what = upstream_of(r, names)
        it.rules[#it.rules + 1] = { task_id = id, name = name, what = what, state = tonumber(r.ruleState),
          after = what == "reload" and triggers[id] or {} }
      end
    end
  end
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
  link_chains(out, tasks)
  local by_key = {}
  for _, it in ipairs(out) do by_key[it.id] = it end
  mark_cycles(out, by_key)
  for _, it in ipairs(out) do fingerprint_of(it, by_key) end
  return out
end

local function depends(item)
  local keys = {}
  if item.cycle then return keys end
  for _, r in ipairs(item.rules or {}) do
    for _, k in ipairs(r.after) do keys[#keys + 1] = k end
  end
  return keys
end
-- }======

-- {====== finding what exists

-- The legacy reload tasks of an app; none where that API is gone.
local function legacy_tasks(ctx, app_id)
  local ok, list = pcall(ctx.target.all, ctx.target, "reload-tasks", { appId = app_id, limit = 100 })
  if ok then return list end
  if errors.is(list) and (list.status == 404 or list.status == 410) then return {} end
  error(list, 0)
end

local function migrated_to(tasks, legacy_id)
  for _, t in ipairs(tasks) do
    if type(t.metadata) == "table" and t.metadata.migratedFrom == legacy_id then return t end
  end
  return nil
end

-- A legacy task (recurrence is a list there) in desired-task terms.
local function read_legacy(old)
  local rec = type(old.recurrence) == "table" and old.recurrence or {}
  return { kind = "time", recurrence = #rec == 1 and rec[1] or json.encode(rec), timezone = old.timeZone or "UTC",
    start = old.startDateTime, stop = old.endDateTime ~= "" and old.endDateTime or nil,
    enabled = (old.state or "Enabled") == "Enabled", partial = old.partial == true }
end

local function held_by_other(ctx, id)
  local holder = ctx.cache and ctx.cache:find_by_target(KIND, id)
  return holder ~= nil and holder.source_id ~= ctx.item_key and holder.status ~= "deleted"
end

-- The find-or-create of one trigger's task (ctx.ensure).  Found objects
-- are scheduling tasks, or legacy reload tasks (.legacy_task = true);
-- .via says how a candidate was found.  `state.moved` gets the task this
-- project made on the app's earlier copy (the schedule moves with it).
local function lookups(ctx, want, app_id, state)
  local tasks
  local function app_tasks()
    tasks = tasks or ctx.target:all(T.PATH, { resourceId = app_id })
    return tasks
  end
  local prev = ctx.previous
  local function get(id)
    if not T.is_legacy_id(id) then
      local t = ctx.target:find(T.task_path(id))
      if t and T.app_of(t) == app_id then return t end
      if t and prev.created_by_us then state.moved = t end
      return nil
    end
    local old = ctx.target:find("reload-tasks/" .. id)
    if old and old.appId == app_id then
      local now = migrated_to(app_tasks(), id)
      if now then return now end
      if old.migrated ~= true then old.legacy_task = true; return old end
    elseif old and prev.created_by_us then
      old.legacy_task, state.moved = true, old
    end
    return nil
  end
  local function candidates()
    tasks = nil  -- looked at again while the item waits out the catalogue's lag
    local out = {}
    local function add(obj, via) obj.via = via; out[#out + 1] = obj end
    for _, t in ipairs(app_tasks()) do
      if retrieve.read_marker(t.description) == ctx.item_key then add(t, "marker") end
    end
    -- Earlier versions of this tool made legacy tasks, without a marker,
    -- as the importing identity; Qlik may have moved them since.
    if want.kind == "time" then
      for _, old in ipairs(legacy_tasks(ctx, app_id)) do
        if T.same_schedule(read_legacy(old), want) and not held_by_other(ctx, old.id) then
          local now = migrated_to(app_tasks(), old.id)
          if old.userId ~= ctx.target:me().id then add(old, "foreign")
          elseif now then add(now, "legacy")
          elseif old.migrated ~= true then old.legacy_task = true; add(old, "legacy") end
        end
      end
    end
    for _, t in ipairs(app_tasks()) do
      if not retrieve.read_marker(t.description) and T.same_schedule(T.read(t), want) and not held_by_other(ctx, t.id)
        and not t.via then
        local meta = type(t.metadata) == "table" and t.metadata or {}
        local from_legacy = meta.migratedFrom and meta.migratedFrom ~= json.null
        add(t, from_legacy and (meta.ownerId or t.ownerId) == ctx.target:me().id and "legacy" or "foreign")
      end
    end
    return out
  end
  return get, candidates
end
-- }======

-- A legacy task that already says what the source says (legacy tasks
-- have no name to compare).
local function legacy_as_wanted(old, want)
  for _, field in ipairs(T.differences(read_legacy(old), want)) do
    if field ~= "name" then return false end
  end
  return true
end

-- {====== writing

-- Puts a task right: PATCH for the enabled flag alone, else a PUT of the
-- task with the wanted changes.
local function update(ctx, task, want, diff, app_id)
  if #diff == 1 and diff[1] == "enabled" then
    ctx.target:patch(T.task_path(task.id), { { op = "replace", path = "/enabled", value = want.enabled } })
  else
    ctx.target:put(T.task_path(task.id), T.updated(task, want, app_id))
  end
end

local function create(ctx, want, app_id)
  local made
  if want.kind == "time" then
    made = ctx.target:post(T.convenience_path(app_id, "on-time-schedule"), T.time_body(want))
  elseif T.convenient(want) then
    made = ctx.target:post(T.convenience_path(app_id, "on-task-event"), T.event_body(want))
  else
    local app = ctx.target:get("apps/" .. app_id)
    local space = type(app) == "table" and type(app.attributes) == "table" and app.attributes.spaceId or nil
    made = ctx.target:post(T.PATH, T.full_body(want, app_id, space ~= "" and space or nil))
  end
  if type(made) ~= "table" or type(made.id) ~= "string" or made.id == "" then
    error(errors.new { message = "creating the scheduling task: the reply has no task id" }, 0)
  end
  -- what the endpoint did not take (partial, say) is put right at once
  local diff = T.differences(T.read(made), want)
  if #diff > 0 then update(ctx, made, want, diff, app_id) end
  return made.id
end

-- Deletes a legacy task; one Qlik moved to the scheduling service
-- refuses (400 TASKS-001), and the task it became is deleted instead.
local function remove_legacy(target, legacy_id, app_id)
  local ok, err = pcall(target.remove, target, "reload-tasks/" .. legacy_id)
  if ok then return end
  if not (errors.is(err) and err.status == 400) then error(err, 0) end
  for t in target:each(T.PATH, app_id and { resourceId = app_id } or nil) do
    if type(t.metadata) == "table" and t.metadata.migratedFrom == legacy_id then target:remove(T.task_path(t.id)) end
  end
end
-- }======

local function skipped(ctx, item, reason, dropped)
  local prev = ctx.previous
  if prev and prev.target_id and prev.status ~= "skipped" and prev.status ~= "deleted" then
    -- made by an earlier run, before the source (or transforms.lua) changed
    reason = reason .. string.format("; the Cloud task %s made earlier is left as it is", prev.target_id)
  end
  ctx.log.warn("schedule not migrated", { task = item.task and item.task.name, trigger = item.event and item.event.name,
    reason = reason })
  return { status = "skipped", reason = reason, natural_key = item.task and item.task.name,
    data = { task = item.task and item.task.name, trigger = item.event and item.event.name,
      app = item.app and item.app.name, dropped = dropped and #dropped > 0 and dropped or nil } }
end

local function trigger_words(item)
  return string.format("chained trigger '%s' of task '%s'", tostring(item.event.name), tostring(item.task.name))
end

local function minutes_of(tc)
  tc = type(tc) == "table" and tc or {}
  return (tonumber(tc.days) or 0) * 1440 + (tonumber(tc.hours) or 0) * 60 + (tonumber(tc.minutes) or 0)
    + (tonumber(tc.seconds) or 0) // 60
end

-- The Cloud task id a recorded upstream trigger has now (a legacy id is
-- followed to the task Qlik moved it to), or nil and a note.
local function upstream_task(ctx, key)
  local id, rec = ctx.lookup(KIND, key)
  if not id or not T.is_legacy_id(id) then return id end
  local app = rec and type(rec.data) == "table" and rec.data.app_id or nil
  local now = app and migrated_to(ctx.target:all(T.PATH, { resourceId = app }), id)
  if now then return now.id end
  local d = rec and type(rec.data) == "table" and rec.data or {}
  return nil, string.format("'%s / %s' is still the legacy reload task %s: a chain can follow it once Qlik has moved "
    .. "it to the scheduling service (run again with --force then)", tostring(d.task), tostring(d.trigger), id)
end

-- A chained trigger -> desired task, or nil, the reason it is not migrated;
-- adds to warnings what it cannot follow.
local function chained(ctx, item, enabled, partial, warnings)
  local what = trigger_words(item)
  if item.cycle then
    return nil, string.format("%s is part of a loop of task chains (%s): Qlik Cloud tasks cannot start each other "
      .. "in a circle; not migrated", what, item.cycle)
  end
  if #item.rules == 0 then return nil, what .. " has no rule; not migrated" end
  local sets, after = {}, json.array()
  for _, r in ipairs(item.rules) do
    local status = r.state == 2 and "failed" or "succeeded"
    if r.what ~= "reload" then
      return nil, string.format("%s starts when '%s' (%s task) %s: Qlik Cloud tasks can only follow other reload "
        .. "tasks; not migrated", what, r.name, r.what, r.state == 2 and "fails" or "succeeds")
    end
    local ids = {}
    for _, k in ipairs(r.after) do
      local id, note = upstream_task(ctx, k)
      ids[#ids + 1] = id
      warnings[#warnings + 1] = note
    end
    if #ids == 0 and ctx.dry_run and #r.after > 0 then ids[1] = KNOWN_AFTER_RUN end
    if #ids == 0 then
      return nil, string.format("%s starts when '%s' %s, and '%s' has no Qlik Cloud task (none of its triggers is "
        .. "migrated: see them in this report); not migrated", what, r.name, r.state == 2 and "fails" or "succeeds",
        r.name)
    end
    sets[#sets + 1] = { ids = ids, status = status }
    after[#after + 1] = { task = r.name, status = status }
  end
  local want = { kind = "event", events = {}, enabled = enabled, partial = partial }
  if #sets == 1 then
    want.exclusive = true  -- any run of the upstream task, whichever trigger started it
    for _, id in ipairs(sets[1].ids) do want.events[#want.events + 1] = { id = id, status = sets[1].status } end
  else
    want.exclusive = false  -- every rule must hold
    for _, s in ipairs(sets) do
      if #s.ids > 1 then
        return nil, string.format("%s needs all of %d tasks to finish, and one of them has %d triggers in Qlik Cloud: "
          .. "'all of these, any of those' cannot be expressed by one Cloud task; not migrated", what, #sets, #s.ids)
      end
      want.events[#want.events + 1] = { id = s.ids[1], status = s.status }
    end
    local window = minutes_of(item.event.timeConstraint)
    want.timeout = window > 0 and window or nil
  end
  return want, after
end

-- A time trigger -> desired task, or nil, the reason; adds to dropped and
-- warnings what is not carried.
local function timed(ctx, item, app_id, dropped, warnings)
  local converted, notes, more = rrule.convert(item.event, item.task)
  if not converted then return nil, table.concat(notes, "; ") end
  for _, n in ipairs(notes) do table.insert(dropped, 1, n) end
  for _, w in ipairs(more) do warnings[#warnings + 1] = w end
  converted.appId = app_id
  local body = ctx.transform("schedule", item.event, converted)
  if body == nil then return nil, "left out by transforms.lua" end
  local lines = body.recurrence or {}
  if #lines ~= 1 then
    return nil, string.format("trigger '%s' needs %d recurrence rules (%s); a Qlik Cloud task takes one; not migrated",
      tostring(item.event.name), #lines, table.concat(lines, " | "))
  end
  -- a once-only trigger in the past will not run again (compared in UTC:
  -- off by the zone's offset at most, good enough for a note)
  if lines[1] == "RRULE:FREQ=DAILY;COUNT=1" and tostring(body.startDateTime):sub(1, 19) < qmig.isotime():sub(1, 19) then
    warnings[#warnings + 1] = string.format("trigger '%s' runs once at %s, which is past: it will not run again",
      tostring(item.event.name), tostring(body.startDateTime))
  end
  return { kind = "time", recurrence = lines[1], timezone = body.timeZone, start = body.startDateTime,
    stop = body.endDateTime, enabled = (body.state or "Enabled") == "Enabled", partial = body.partial == true,
    app_id = body.appId }
end

local function run(ctx, item)
  local task = item.task
  if item.kind == "manual" then return skipped(ctx, item, rrule.manual_reason(task)) end
  local blocker = rrule.task_blocker(task)
  if blocker then return skipped(ctx, item, blocker) end
  local dropped, warnings = rrule.dropped_settings(task), {}
  if not item.app or not item.app.id then return skipped(ctx, item, "the task has no app", dropped) end
  local app_id = ctx.app_for(item.app.id)
  if not app_id then
    return skipped(ctx, item, string.format("app '%s' (%s) has not been imported into Qlik Cloud (run apps.import "
      .. "first)", tostring(item.app.name), item.app.id), dropped)
  end
  local enabled = item.event.enabled ~= false and task.enabled ~= false
  local want, why
  if item.kind == "composite" then
    local after
    want, after = chained(ctx, item, enabled, task.isPartialReload == true, warnings)
    if not want then return skipped(ctx, item, after, dropped) end
    local body = ctx.transform("schedule", item.event, { appId = app_id, after = after, partial = want.partial,
      state = enabled and "Enabled" or "Disabled" })
    if body == nil then return skipped(ctx, item, "left out by transforms.lua", dropped) end
    want.enabled, want.partial, want.app_id = body.state ~= "Disabled", body.partial == true, body.appId
  else
    want, why = timed(ctx, item, app_id, dropped, warnings)
    if not want then return skipped(ctx, item, why, dropped) end
  end
  app_id = want.app_id or app_id
  want.name = T.short_name(tostring(task.name) .. " / " .. tostring(item.event.name))
  want.description = retrieve.mark(T.short_name(string.format("Reload schedule migrated from QSEoW: task '%s', "
    .. "trigger '%s'", tostring(task.name), tostring(item.event.name))), ctx.item_key)
  for _, d in ipairs(dropped) do ctx.log.warn("schedule setting not carried", { task = task.name, note = d }) end

  local state = {}
  local get, candidates = lookups(ctx, want, app_id, state)
  local r = ctx.ensure {
    get = get, candidates = candidates,
    -- the marker is proof enough: no other item, project or person writes it
    mine = { by = function(t) return t.via == "marker" end },
    adopt = function(t) return t.via ~= "foreign" end,
    create = function() return { id = create(ctx, want, app_id) } end,
    undo = function(id) return { method = "DELETE", path = T.task_path(id) } end,
  }
  if r.refused then
    local f = r.refused
    local owner = type(f.metadata) == "table" and f.metadata.ownerId or f.userId or f.ownerId
    owner = owner and ("user " .. tostring(owner)) or "someone else"
    return skipped(ctx, item, string.format("the app already has the task '%s' (%s) with this schedule, made by "
      .. "%s and not by this project: it is not adopted (delete it in Qlik Cloud to have this trigger migrated, or "
      .. "keep it)", tostring(f.name or f.id), tostring(f.id), owner), dropped)
  end
  local status, id = r.status, r.id
  local t = r.object
  if r.how == "created" then
    t = nil  -- made just now, as wanted
  end
  if t and t.legacy_task then
    if not legacy_as_wanted(t, want) then
      -- the legacy API cannot change it any more: a scheduling task replaces it
      remove_legacy(ctx.target, t.id, app_id)
      ctx.undo { action = "irreversible", target_id = t.id, reason = "legacy reload task " .. t.id
        .. " was replaced by a scheduling task; the Reload Tasks API can no longer make it again" }
      id, status = create(ctx, want, app_id), "created"
      ctx.undo { method = "DELETE", path = T.task_path(id) }
    end
    -- else still on the legacy service and as the source says: left there
    -- (Qlik moves it; undo and later runs follow it through migratedFrom)
  elseif t then
    local have = T.read(t)
    local diff = T.differences(have, want)
    for _, field in ipairs(diff) do ctx.change(field, T.shown(have, field), T.shown(want, field)) end
    if #diff > 0 then
      -- (a task our own crashed attempt made is undone by deleting it)
      if r.how ~= "recovered" then
        ctx.undo { action = "restore", method = "PUT", path = T.task_path(id), body = T.restorable(t), forget = false }
      end
      update(ctx, t, want, diff, app_id)
      if r.how == "recorded" then status = "updated" end
    end
  end
  local data = { task = task.name, trigger = item.event.name, app = item.app.name, app_id = app_id,
    recurrence = want.recurrence, after = want.events and json.array(want.events) or nil,
    dropped = #dropped > 0 and json.array(dropped) or nil, warnings = #warnings > 0 and json.array(warnings) or nil }
  if state.moved then
    local old = state.moved
    if old.legacy_task then
      remove_legacy(ctx.target, old.id, old.appId)
    else
      ctx.target:remove(T.task_path(old.id))
    end
    ctx.undo { action = "irreversible", target_id = old.id,
      reason = "task " .. old.id .. " on the app's earlier copy was deleted when the schedule moved" }
    data.moved_from = old.id
  end
  local notes_all = {}
  for _, d in ipairs(dropped) do notes_all[#notes_all + 1] = d end
  for _, w in ipairs(warnings) do notes_all[#notes_all + 1] = w end
  return { status = status, target_id = id, data = data,
    reason = #notes_all > 0 and ("not carried: " .. table.concat(notes_all, "; ")) or nil,
    natural_key = tostring(task.name) .. " / " .. tostring(item.event.name) }
end

-- Undo of entries that name a legacy reload task: one Qlik moved to the
-- scheduling service refuses DELETE and PUT (400 TASKS-001); the task it
-- became is deleted, or put back, instead.  -> true when handled here,
-- "irreversible", why when it cannot be done, false to leave it to undo.
local function undo(target, entry, record)
  local path = tostring(entry.path or "")
  if entry.method == "PUT" and path:sub(1, #T.PATH + 1) == T.PATH .. "/" then
    -- a chained task put back as it was: the tasks it followed then may be
    -- gone since (deleted by hand, or when their schedule moved)
    local ok, err = pcall(target.request, target, "PUT", path, { json = entry.body })
    if ok then return true end
    if errors.is(err) and err.status == 400 and err.code == "CHO-016" then
      return "irreversible", "its earlier definition follows a task that no longer exists"
    end
    error(err, 0)
  end
  local legacy = path:match("^reload%-tasks/(%x+)$")
  if not legacy or not T.is_legacy_id(legacy) then return false end
  local app = record and type(record.data) == "table" and record.data.app_id or nil
  if (entry.method or "DELETE") == "DELETE" then
    remove_legacy(target, legacy, app)
    return true
  end
  local ok, err = pcall(target.request, target, entry.method, entry.path, { json = entry.body })
  if ok then return true end
  if not (errors.is(err) and err.status == 400) then error(err, 0) end
  for t in target:each(T.PATH, app and { resourceId = app } or nil) do
    if type(t.metadata) == "table" and t.metadata.migratedFrom == legacy then
      local want = read_legacy(entry.body or {})
      want.name, want.description = t.name, t.description
      target:put(T.task_path(t.id), T.updated(t, want, T.app_of(t)))
    end
  end
  return true
end

-- After every item: <project>/reports/schedules.json lists, from the cache
-- (so it covers earlier runs too), every trigger or task not migrated and
-- every setting not carried.
local function finish(ctx, outcomes)
  if ctx.dry_run or not ctx.cache then return end
  local seen = {}
  for _, o in ipairs(outcomes or {}) do if o.key then seen[o.key] = true end end
  local report = { not_migrated = json.array(), settings_not_carried = json.array(), migrated = 0,
    chained = json.array(), no_longer_at_source = json.array() }
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
      if d.after then
        report.chained[#report.chained + 1] = { source_id = rec.source_id, target_id = rec.target_id, task = d.task,
          trigger = d.trigger, app = d.app, after = d.after }
      end
      if d.dropped or d.warnings then
        report.settings_not_carried[#report.settings_not_carried + 1] = { source_id = rec.source_id,
          target_id = rec.target_id, task = d.task, trigger = d.trigger, dropped = d.dropped, warnings = d.warnings }
      end
    end
  end
  ctx.project:write_json("reports/schedules.json", report)
  if #report.no_longer_at_source > 0 then
    ctx.log.warn(string.format("%d Cloud task(s) made earlier belong to triggers no longer at the source "
      .. "(or outside plan.apps); left as they are: see %s", #report.no_longer_at_source,
      ctx.project:path("reports", "schedules.json")))
  end
  if #report.not_migrated > 0 or #report.settings_not_carried > 0 then
    ctx.log.warn(string.format("%d trigger(s)/task(s) not migrated, %d schedule(s) with settings not carried: see %s",
      #report.not_migrated, #report.settings_not_carried, ctx.project:path("reports", "schedules.json")))
  end
end

return {
  name = "apps.schedules",
  object = KIND,
  produces = { data = { "task", "trigger", "app", "app_id" } },
  consumes = { { kind = "app" }, { kind = "app.published" } },
  requires = { "apps.import" },
  items = items,
  key = function(item) return item.id end,
  -- an app's triggers start once the steps before are done for the app
  -- (a chained one also waits for the trigger it follows: depends), and
  -- its later steps (apps.validate, apps.owners) wait for them
  after = "object",
  object_of = function(item) return item.app and item.app.id end,
  fingerprint = function(item) return hash.sha256(json.encode(definition(item), { sort_keys = true })) end,
  -- a task deleted in the tenant (or with its app) is made again
  target_path = function(rec)
    if T.is_legacy_id(rec.target_id) then return "reload-tasks/" .. rec.target_id end
    return T.task_path(rec.target_id)
  end,
  depends = depends,
  run = run,
  undo = undo,
  finish = finish,
}
