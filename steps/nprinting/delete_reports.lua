-- nprinting.delete_reports — Delete NPrinting Reports (order 50; Qlik's
-- migration tool has a step of that name): deletes the report templates
-- and sharing tasks nprinting.reports made.  That means two sets:
--   * what its cache records (kind "nprinting.report") name;
--   * every template and sharing task in the tenant that carries the
--     marker of one of those records' keys. This covers what a killed
--     attempt made before it could record it.
-- Objects without such a marker and not in the cache are never touched.
-- A record whose objects are deleted is marked deleted, so a later
-- nprinting.reports makes them again.  Sharing tasks go before the
-- template they send (step.depends).  A delete cannot be undone: it is
-- recorded as irreversible.  Like the other delete steps it runs only with
-- --yes (qmig.ui.cli).
local retrieve = require "qmig.clients.retrieve"

local KIND = "nprinting.report"

local function live(rec)
  return rec.target_id and rec.status ~= "deleted" and rec.status ~= "failed"
end

-- Every sharing task of the tenant (the listing is {sharingTasks, links},
-- paged by the `page` cursor; a TenantAdmin may omit appid).
local function all_tasks(ctx)
  local out, cursor, pages = {}, nil, 0
  repeat
    local page = ctx.target:get("sharing-tasks", { limit = 100, page = cursor })
    if type(page) ~= "table" then break end
    for _, t in ipairs(page.sharingTasks or {}) do out[#out + 1] = t end
    local nxt = type(page.links) == "table" and type(page.links.next) == "table" and page.links.next.href
    cursor = type(nxt) == "string" and nxt:match("[?&]page=([^&#]+)") or nil
    if cursor then cursor = cursor:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end) end
    pages = pages + 1
  until not cursor or pages > 1000
  return out
end

local function items(ctx)
  local by_key, known = {}, {}
  local function add(key, kind, id)
    local x = by_key[key]
    if not x then
      x = { id = key, targets = {}, seen = {}, kind = key:match("^report:") and "template" or "task",
        report = key:match("^report:(.+)$") or key:match("^task:[^:]+:([^:]+):") }
      by_key[key] = x
    end
    if not x.seen[id] then
      x.seen[id] = true
      x.targets[#x.targets + 1] = { kind = kind, id = id }
    end
  end
  for _, rec in ipairs(ctx.cache:items(KIND)) do
    known[rec.source_id] = rec
    if live(rec) then add(rec.source_id, rec.source_id:match("^report:") and "template" or "task", rec.target_id) end
  end
  if next(known) then
    for tpl in ctx.target:each("report-templates") do
      local key = retrieve.read_marker(tpl.description)
      if key and known[key] then add(key, "template", tpl.id) end
    end
    for _, t in ipairs(all_tasks(ctx)) do
      local key = retrieve.read_marker(t.description)
      if key and known[key] then add(key, "task", t.id) end
    end
  end
  local out = {}
  for _, x in pairs(by_key) do
    table.sort(x.targets, function(a, b) return a.id < b.id end)
    x.name = known[x.id] and type(known[x.id].data) == "table" and known[x.id].data.name or x.id
    out[#out + 1] = x
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

local function depends(x, all)
  if x.kind ~= "template" then return {} end
  local keys = {}
  for _, other in ipairs(all or {}) do
    if other.kind == "task" and other.report == x.report then keys[#keys + 1] = other.id end
  end
  return keys
end

return {
  name = "nprinting.delete_reports",
  object = "nprinting.report.delete",
  produces = { data = { "deleted", "name" } },
  consumes = { { kind = "nprinting.report", data = { "name" } } },
  requires = {},
  items = function(ctx)
    local list = items(ctx)
    for _, x in ipairs(list) do x.after = depends(x, list) end
    return list
  end,
  key = function(x) return x.id end,
  fingerprint = function(x)
    local ids = {}
    for _, t in ipairs(x.targets) do ids[#ids + 1] = t.kind .. ":" .. t.id end
    return table.concat(ids, ",")
  end,
  depends = function(x) return x.after or {} end,
  run = function(ctx, x)
    local deleted = {}
    for _, t in ipairs(x.targets) do
      if t.kind == "task" then ctx.target:remove("sharing-tasks/" .. t.id)
      else ctx.target:remove("report-templates/" .. t.id) end
      deleted[#deleted + 1] = t.id
      ctx.undo { action = "irreversible", target_id = t.id, reason = t.kind .. " " .. t.id .. " was deleted" }
    end
    local rec = ctx.cache:get(KIND, x.id)
    if rec and rec.status ~= "deleted" then ctx.forget(KIND, x.id) end
    return { status = "deleted", target_id = table.concat(deleted, ","),
      reason = "deleted " .. #deleted .. " " .. (x.kind == "task" and "sharing task(s)" or "report template(s)"),
      data = { deleted = deleted, name = x.name } }
  end,
}
