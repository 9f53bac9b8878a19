-- nprinting.reports — Migrate NPrinting Reports (order 240; Qlik's
-- migration tool has a step of that name).  Two kinds of item, one cache
-- kind "nprinting.report":
--   * "report:<id>": the report's template file, from the folder the web
--     console's export was put in (job nprinting.export; the NPrinting
--     API serves no template: docs/nprinting.md), uploaded streamed to
--     /temp-contents and made a report template on the Cloud app its
--     connection's QSEoW app became (ctx.app_for): POST /report-templates
--     {name, temporaryContentId, sourceAppId, sourceAppAction: replace};
--   * "task:<task id>:<report id>:<n>": trigger n of a publish task that
--     sends the report -> a template-sharing sharing task on that
--     template, with the task's recipients mapped (through the users
--     mapping: plan.users, users.import's records, else the NPrinting
--     user's e-mail) and the schedule converted (qmig.domain.nprinting.schedule:
--     RRULE, the trigger's timezone kept).  It starts after its report's
--     item (step.depends).
-- What Cloud cannot carry is said per report: template types without a
-- Cloud template (Qlik entity reports), levels and pages (listed: check
-- the template in the add-in), recipients that map to nobody, triggers
-- that cannot be converted, filters (the task's and report's filters
-- become the sharing task's selections; a filter over another QSEoW app
-- is dropped).  <project>/reports/nprinting.json lists every report with
-- what was migrated and why not.  Each object carries the marker
-- [qmig-lua:1:<key>] in its description: a resumed run finds what its
-- killed attempt made; objects of the same name not made by this project
-- are never taken over.  Undo deletes what was created.
local hash = require "qmig.hash"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"
local schedule = require "qmig.domain.nprinting.schedule"
local scope = require "qmig.domain.nprinting.scope"
local users = require "qmig.domain.users"
local qrs = require "qmig.clients.qrs"

local KIND = "nprinting.report"
local EXT = { excel = "xlsx", word = "docx", powerpoint = "pptx", html = "html", pixelperfect = "repx",
  qlikentity = "zip" }
-- the type a sharing task names for a report template of each kind
local SHARING_TYPE = { excel = "excel", word = "word", powerpoint = "powerpoint", html = "html",
  pixelperfect = "pixel-perfect" }

-- {====== items

local function read_template(dir, report)
  local ext = EXT[tostring(report.type):lower()]
  if not dir or not ext then return nil end
  local file = dir .. "/" .. report.id .. "." .. ext
  local f = io.open(file, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local doc = json.decode(text)
  return file, type(doc) == "table" and doc or {}, hash.sha256(text)
end

-- filter id -> {fields by QSEoW app id}
local function filter_fields(np, conns, ids)
  local out = {}
  for _, id in ipairs(ids or {}) do
    local f = np:get("filters/" .. id)
    for _, field in ipairs(f.fields or {}) do
      local c = conns[field.connectionId]
      out[#out + 1] = { filter = f.name, qs_app = c and c.qs_app, field = field }
    end
  end
  return out
end

local function items(ctx)
  local np = scope.client(ctx)
  local dir = ctx.job.nprinting and ctx.job.nprinting.export
  local out = {}
  for _, app in ipairs(scope.apps(ctx)) do
    local conns = scope.connections(ctx, app)
    local by_name = {}
    for _, c in pairs(conns) do by_name[c.connection.name] = c end
    local reports = {}
    for _, listed in ipairs(np:list("reports", { appId = app.id })) do
      local r = np:get("reports/" .. listed.id)
      if r.appId == app.id and scope.report_in_scope(ctx, r) then
        local file, doc, sha = read_template(dir, r)
        local conn = doc and (by_name[doc.connection] or nil)
        if not conn then  -- one Qlik Sense connection: the template reads it
          local only, n = nil, 0
          for _, c in pairs(conns) do if c.qs_app then only, n = c, n + 1 end end
          if n == 1 then conn = only end
        end
        local it = { kind = "template", id = "report:" .. r.id, name = r.title, report = r, app = app,
          file = file, doc = doc or {}, sha = sha, qs_app = conn and conn.qs_app, target_app = conn and conn.target,
          filters = filter_fields(np, conns, r.filters) }
        reports[r.id] = it
        out[#out + 1] = it
      end
    end
    for _, listed in ipairs(np:list("tasks", { appId = app.id })) do
      local task = np:get("tasks/" .. listed.id)
      local sends = {}
      for _, rid in ipairs(task.reports or {}) do if reports[rid] then sends[#sends + 1] = reports[rid] end end
      for _, rep in ipairs(sends) do
        local triggers = task.triggers or {}
        for n = 1, math.max(#triggers, 1) do
          local name = task.name
          if #sends > 1 then name = name .. " (" .. rep.name .. ")" end
          if #triggers > 1 then name = name .. " #" .. n end
          out[#out + 1] = { kind = "task", id = "task:" .. task.id .. ":" .. rep.report.id .. ":" .. n, name = name,
            task = task, report = rep, trigger = triggers[n], app = app,
            filters = filter_fields(np, conns, task.filters) }
        end
      end
    end
  end
  return out
end

local function definition(item)
  if item.kind == "template" then
    return { v = 1, kind = "template", title = item.name, type = item.report.type, enabled = item.report.enabled,
      sha = item.sha or json.null, target = item.target_app or json.null, description = item.report.description,
      filters = item.report.filters or json.array() }
  end
  return { v = 1, kind = "task", name = item.name, task = { enabled = item.task.enabled,
    recipients = item.task.recipients, filters = item.task.filters, description = item.task.description },
    trigger = item.trigger or json.null, report = definition(item.report) }
end

local function fingerprint(item)
  return hash.sha256(json.encode(definition(item), { sort_keys = true }))
end
-- }======

-- {====== templates

local function upload(ctx, file, name)
  local tmp = ctx.target:request("POST", "temp-contents", {
    query = { filename = name }, source = file, headers = { ["Content-Type"] = "application/octet-stream" },
  })
  local location = tmp.headers and (tmp.headers.location or tmp.headers.Location)
  local id = type(location) == "string" and location:match("([^/?]+)/*$")
  if not id then error("POST temp-contents: no Location in the reply", 0) end
  return id
end

local function run_template(ctx, item)
  local r = item.report
  local data = { name = r.title, app_id = item.target_app, title = r.title, np_app = item.app.name, type = r.type }
  local notes = {}
  local levels, pages = item.doc.levels or {}, item.doc.pages or {}
  if #levels > 0 then
    notes[#notes + 1] = "NPrinting levels (" .. table.concat(levels, ", ") .. ") are NPrinting's: check them in "
      .. "the Qlik add-in"
  end
  if #pages > 0 then
    notes[#notes + 1] = "NPrinting pages (" .. table.concat(pages, ", ") .. ") are NPrinting's: check them in "
      .. "the Qlik add-in"
  end
  for _, f in ipairs(item.filters) do
    if f.qs_app ~= item.qs_app then
      notes[#notes + 1] = "report filter '" .. f.filter .. "' reads another app (field " .. f.field.name
        .. "): not carried"
    end
  end
  data.notes = notes
  if r.enabled == false then return { status = "skipped", reason = "the NPrinting report is disabled", data = data } end
  if not SHARING_TYPE[tostring(r.type):lower()] then
    return { status = "skipped", reason = "a " .. tostring(r.type) .. " report: Qlik Cloud reporting has no "
      .. "template of that kind", data = data }
  end
  if not item.file then
    return { status = "skipped", reason = "its template " .. r.id .. "." .. EXT[r.type:lower()] .. " is not in the "
      .. "export folder (nprinting.export: export the report from NPrinting's web console)", data = data }
  end
  if not item.qs_app then
    return { status = "skipped", reason = "its template reads no Qlik Sense connection of app '" .. item.app.name
      .. "'", data = data }
  end
  local app_id = item.target_app
  if not app_id then
    return { status = "skipped", reason = "QSEoW app " .. item.qs_app .. " is not migrated: run apps.import first",
      data = data }
  end
  local marker = retrieve.mark(r.description or "", ctx.item_key)
  local res = ctx.ensure {
    get = function(id) return ctx.target:find("report-templates/" .. id) end,
    candidates = function()
      local out = {}
      for tpl in ctx.target:each("report-templates", { sourceAppId = app_id }) do
        if retrieve.read_marker(tpl.description) == ctx.item_key then out[#out + 1] = tpl end
      end
      return out
    end,
    mine = { by = function() return true end, created = function(tpl) return tpl.createdAt end },
    create = function()
      local tid = upload(ctx, item.file, r.title .. "." .. EXT[r.type:lower()])
      return ctx.target:post("report-templates", { name = r.title, description = marker, temporaryContentId = tid,
        sourceAppId = app_id, sourceAppAction = "replace" })
    end,
    undo = function(id) return { method = "DELETE", path = "report-templates/" .. id, target_id = id } end,
  }
  local reason = #notes > 0 and table.concat(notes, "; ") or nil
  data.sha = item.sha
  if not res.id then return { status = "skipped", reason = res.reason, data = data } end
  -- one made earlier: a new file, title or description at the source replaces them in place
  -- (the id stays: the sharing tasks name it)
  local prev = ctx.previous and type(ctx.previous.data) == "table" and ctx.previous.data or {}
  local have = res.object or {}
  if res.status ~= "created" and (prev.sha ~= item.sha or have.name ~= r.title or have.description ~= marker) then
    ctx.change("template", "the NPrinting report as it was", "as it is now")
    ctx.undo { action = "irreversible", target_id = res.id,
      reason = "report template " .. res.id .. " got a new file; its earlier file is not kept" }
    local tid = upload(ctx, item.file, r.title .. "." .. EXT[r.type:lower()])
    ctx.target:put("report-templates/" .. res.id, { name = r.title, description = marker, temporaryContentId = tid,
      sourceAppAction = "replace" })
    return { status = "updated", target_id = res.id, reason = reason, data = data }
  end
  return { status = res.status, target_id = res.id, reason = reason, data = data }
end
-- }======

-- {====== sharing tasks

-- NPrinting user id -> Cloud user id | nil, label.  Through the users
-- mapping of the plan (its domain account as a QRS DIR\user), the user
-- users.import made for that QRS user, else the NPrinting user's e-mail.
local function recipient(ctx, np, id, memo)
  if memo[id] ~= nil then return memo[id].id, memo[id].label end
  local u = np:get("users/" .. id)
  local label = u.email ~= "" and u.email or u.domainAccount or id
  local emails = {}
  local dir, uid = tostring(u.domainAccount or ""):match("^([^\\]+)\\(.+)$")
  local found
  if dir then
    for _, q in ipairs(ctx.source:full("user", qrs.all { qrs.eq("userDirectory", dir), qrs.eq("userId", uid) })) do
      found = found or ctx.lookup("user", q.id)
      local m = users.mapping(ctx.plan, q)
      if m.email then emails[#emails + 1] = m.email end
    end
    if not found and #emails == 0 then
      local m = users.mapping(ctx.plan, { userDirectory = dir, userId = uid })
      if m.email then emails[#emails + 1] = m.email end
    end
  end
  if u.email and u.email ~= "" then emails[#emails + 1] = u.email end
  for _, e in ipairs(emails) do
    if found then break end
    local cu = retrieve.user(ctx.target, { email = e })
    found = cu and cu.id or nil
  end
  memo[id] = { id = found or false, label = label }
  return found, label
end

-- The sharing tasks of an app: their listing is {sharingTasks, links}
-- (not {data}), paged by the `page` cursor its next link carries.
local function app_tasks(ctx, app_id)
  local out, cursor, pages = {}, nil, 0
  repeat
    local page = ctx.target:get("sharing-tasks", { appid = app_id, limit = 100, page = cursor })
    if type(page) ~= "table" then break end
    for _, t in ipairs(page.sharingTasks or {}) do out[#out + 1] = t end
    local nxt = type(page.links) == "table" and type(page.links.next) == "table" and page.links.next.href
    cursor = type(nxt) == "string" and nxt:match("[?&]page=([^&#]+)") or nil
    if cursor then cursor = cursor:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end) end
    pages = pages + 1
  until not cursor or pages > 1000
  return out
end

local function selections(item)
  local out, dropped = json.array(), {}
  for _, list in ipairs { item.report.filters, item.filters } do
    for _, f in ipairs(list) do
      if f.qs_app == item.report.qs_app then
        local values, numeric = json.array(), true
        for _, v in ipairs(f.field.values or {}) do
          values[#values + 1] = tostring(v.value)
          numeric = numeric and tostring(v.type):lower() == "number"
        end
        out[#out + 1] = { name = f.field.name, values = values, isNumeric = numeric and #values > 0,
          stateName = "$" }
      else
        dropped[#dropped + 1] = f.filter
      end
    end
  end
  return out, dropped
end

-- The PATCH operations that put a task right, and those that put it back.
-- A start the conversion moved to today (the Cloud refuses one more than a
-- year back) is not a change: today moves every day.
local function changed_paths(have, body, moved)
  local function norm(v) return json.encode(v == nil and json.null or v, { sort_keys = true }) end
  local function ids(r)
    local out = {}
    for _, u in ipairs(type(r) == "table" and r.userIds or {}) do out[#out + 1] = u.value end
    table.sort(out)
    return out
  end
  local function schedule_of(so, skip_start)
    so = type(so) == "table" and so or {}
    return { recurrence = so.recurrence, timezone = so.timezone, endDateTime = so.endDateTime ~= "" and so.endDateTime
      or nil, startDateTime = not skip_start and so.startDateTime or nil }
  end
  local function tpl(list)
    local out = {}
    for _, x in ipairs(type(list) == "table" and list or {}) do out[#out + 1] = { x.type, x.templateId } end
    return out
  end
  local ops, old = {}, {}
  local function diff(path, a, b, new_value, old_value)
    if norm(a) ~= norm(b) then
      ops[#ops + 1] = { op = "replace", path = path, value = new_value }
      old[#old + 1] = { op = "replace", path = path, value = old_value }
    end
  end
  diff("/name", have.name, body.name, body.name, have.name)
  diff("/description", have.description, body.description, body.description, have.description)
  diff("/enabled", have.enabled ~= false, body.enabled, body.enabled, have.enabled ~= false)
  diff("/scheduleOptions", schedule_of(have.scheduleOptions, moved), schedule_of(body.scheduleOptions, moved),
    body.scheduleOptions, schedule_of(have.scheduleOptions))
  local had = {}
  for _, v in ipairs(ids(have.recipients)) do had[#had + 1] = { value = v } end
  diff("/recipients", ids(have.recipients), ids(body.recipients), body.recipients, { userIds = had })
  diff("/templates", tpl(have.templates), tpl(body.templates), body.templates, have.templates)
  return ops, old
end

local function run_task(ctx, item, memo)
  local rep, task = item.report, item.task
  local data = { name = item.name, report = rep.name, task = task.name, app_id = rep.target_app }
  local template_id = ctx.lookup(KIND, rep.id)
  if not template_id then
    return { status = "skipped", reason = "its report '" .. rep.name .. "' has no Cloud template (see that report)",
      data = data }
  end
  if not item.trigger then
    return { status = "skipped", reason = "the publish task has no trigger (run on demand in NPrinting): no "
      .. "schedule to carry", data = data }
  end
  local options, notes = schedule.convert(item.trigger, os.date("!%Y-%m-%d"))
  if not options then
    return { status = "skipped", reason = "its trigger cannot be converted: " .. notes, data = data }
  end
  local moved = options.moved
  options.moved = nil
  notes = { table.unpack(notes) }
  local ids, nobody = json.array(), {}
  local np = scope.client(ctx)
  for _, uid in ipairs(task.recipients or {}) do
    local cid, label = recipient(ctx, np, uid, memo)
    if cid then ids[#ids + 1] = { value = cid } else nobody[#nobody + 1] = label end
  end
  if #nobody > 0 then notes[#notes + 1] = "recipient(s) with no Cloud user: " .. table.concat(nobody, ", ") end
  if #ids == 0 then
    return { status = "skipped", reason = "no recipient maps to a Cloud user"
      .. (#nobody > 0 and (" (" .. table.concat(nobody, ", ") .. ")") or ""), data = data }
  end
  local sel, dropped = selections(item)
  if #dropped > 0 then notes[#notes + 1] = "filter(s) over another app not carried: " .. table.concat(dropped, ", ") end
  local body = {
    name = item.name, description = retrieve.mark(task.description or "", ctx.item_key), type = "template-sharing",
    enabled = task.enabled ~= false and item.trigger.enabled ~= false,
    templates = { { type = SHARING_TYPE[rep.report.type:lower()], templateId = template_id, fileName = rep.name } },
    state = { selections = sel }, scheduleOptions = options, recipients = { userIds = ids },
    transportChannels = { "email" },
  }
  local app_id = rep.target_app
  local res = ctx.ensure {
    get = function(id) return ctx.target:find("sharing-tasks/" .. id) end,
    candidates = function()
      local out = {}
      for _, t in ipairs(app_tasks(ctx, app_id)) do
        if retrieve.read_marker(t.description) == ctx.item_key then out[#out + 1] = t end
      end
      return out
    end,
    mine = { by = function() return true end, created = function(t) return t.dateCreated end },
    create = function() return ctx.target:post("sharing-tasks", body) end,
    undo = function(id) return { method = "DELETE", path = "sharing-tasks/" .. id, target_id = id } end,
  }
  data.recipients, data.schedule = #ids, options.recurrence[1]
  data.notes = notes
  if not res.id then return { status = "skipped", reason = res.reason, data = data } end
  local reason = #notes > 0 and table.concat(notes, "; ") or nil
  if res.status ~= "created" then
    local have = res.object or ctx.target:get("sharing-tasks/" .. res.id)
    local ops, old = changed_paths(have, body, moved)
    if #ops > 0 then
      ctx.change("task", "the NPrinting task as it was", "as it is now")
      ctx.undo { action = "restore", method = "PATCH", path = "sharing-tasks/" .. res.id, target_id = res.id,
        forget = false, body = old }
      ctx.target:patch("sharing-tasks/" .. res.id, ops)
      return { status = "updated", target_id = res.id, reason = reason, data = data }
    end
  end
  return { status = res.status, target_id = res.id, reason = reason, data = data }
end
-- }======

-- After every item: <project>/reports/nprinting.json, per report what was
-- migrated (its template, its sharing tasks) and what was not, and why.
local function finish(ctx, outcomes)
  if ctx.dry_run or not ctx.cache then return end
  local by_report, order = {}, {}
  for _, o in ipairs(outcomes or {}) do
    local rec = ctx.cache:get(KIND, o.key)
    local d = rec and type(rec.data) == "table" and rec.data or {}
    local rid = o.key:match("^report:(.+)$") or o.key:match("^task:[^:]+:([^:]+):")
    if rid then
      local r = by_report[rid]
      if not r then
        r = { report_id = rid, tasks = json.array(), notes = json.array() }
        by_report[rid] = r
        order[#order + 1] = rid
      end
      local entry = { status = rec and rec.status or o.status, target_id = rec and rec.target_id or json.null,
        reason = rec and (rec.reason or rec.last_error) or o.reason or json.null }
      if o.key:match("^report:") then
        r.title, r.app, r.type, r.template = d.title or o.name, d.np_app, d.type, entry
        for _, n in ipairs(d.notes or {}) do r.notes[#r.notes + 1] = n end
      else
        entry.task, entry.schedule, entry.recipients = d.task, d.schedule, d.recipients
        r.tasks[#r.tasks + 1] = entry
      end
    end
  end
  local list = json.array()
  for _, rid in ipairs(order) do list[#list + 1] = by_report[rid] end
  ctx.project:write_json("reports/nprinting.json", { reports = list })
end

return {
  name = "nprinting.reports",
  object = KIND,
  produces = { data = { "name", "app_id" } },
  consumes = { { kind = "app" }, { kind = "app.published" }, { kind = "user" } },
  requires = { "apps.import" },
  items = items,
  key = function(item) return item.id end,
  fingerprint = fingerprint,
  depends = function(item) return item.kind == "task" and { item.report.id } or {} end,
  run = function(ctx, item)
    ctx.np_memo = ctx.np_memo or {}
    if item.kind == "template" then return run_template(ctx, item) end
    return run_task(ctx, item, ctx.np_memo)
  end,
  finish = finish,
  -- a template or task deleted in the tenant is made again
  target_path = function(rec)
    if rec.source_id:match("^report:") then return "report-templates/" .. rec.target_id end
    return "sharing-tasks/" .. rec.target_id
  end,
  planned = function(item) return { data = { app_id = item.target_app or (item.report and item.report.target_app),
    title = item.name } } end,
}
