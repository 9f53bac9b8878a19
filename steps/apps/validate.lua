-- apps.validate — Validate Applications (SPEC §5.1 order 270, §5 note;
-- QAMT "Validate Applications").
--
-- REST only (Debian's libcurl has no WebSocket, so no engine sessions:
-- comparing chart hypercubes as Qlik's tool does is a later phase).  Per
-- imported app, on the app users open (ctx.app_for):
--   present     the app exists, in the planned place: the managed space
--               it is bound for once published (the staging space when
--               plan.apps.publish is false), else the import space, or a
--               personal space for a personal app;
--   reload      the newest reload (GET /reloads?appId=) SUCCEEDED; with no
--               reload, data present counts (an app imported with data);
--               a FAILED newest reload or no data at all differs;
--   data_model  GET /apps/{id}/data/metadata: tables, fields, row counts;
--               compared with the source data model where the source
--               exposes it — the metadata header of the exported QVF
--               (exports/apps/<source-app-id>.qvf, as written by
--               apps.export; QRS itself has no data-model API) —
--               otherwise only "tables with rows present";
--   objects     object counts by type: the sheets, stories and bookmarks
--               apps.export recorded (appObjects.json / kind app.export)
--               against the QRS app now (objects added or removed since
--               the export), and no object that apps.object_owners found
--               missing in the Cloud app.  Listing a Cloud app's objects
--               needs the engine; that comparison waits for it.
-- Outcome: an app whose checks pass is "unchanged" (nothing was written);
-- an app that differs FAILS its item with "validation differs: ..." — a
-- difference is something the user must see, and a failed item makes the
-- run exit 1 and is validated again on the next run.
-- finish writes reports/validation.csv, one row per app (source id, name,
-- target id, space, each check, result, details); rows of apps validated
-- in earlier runs come from the cache.  A dry run (plan) reports each
-- app as skipped with what the checks find now, fails nothing and writes
-- no report: the apps may not yet be where the run would put them.
local common = require "qmig.apps2.common"
local errors = require "qmig.errors"
local fs = require "qmig.fs"
local json = require "qmig.json"
local qrs = require "qmig.qrs"

local KIND = "app.validation"
local COLUMNS = { "source_id", "name", "target_id", "space_id", "present", "reload", "data_model", "objects",
  "result", "details" }

local rows = {}   -- key -> row, for this process's run

-- The data model in the exported QVF's header (qliksim format), or nil.
local function source_model(ctx, id)
  local path = ctx.project:object_path("exports/apps", id, ".qvf")
  local f = io.open(path, "rb")
  if not f then return nil end
  local magic = f:read(9)
  local line = magic == "QSIMQVF1\n" and f:read("l") or nil
  f:close()
  local meta = line and json.decode(line)
  if type(meta) ~= "table" or type(meta.data_model) ~= "table" then return nil end
  return meta.data_model
end

local function check_present(item, app)
  if not app then return false, "app " .. item.open_id .. " not found" end
  local want
  if item.bound_for and item.publish then want = item.bound_for else want = item.space_id end
  local have = app.spaceId
  if have == "" then have = nil end
  if want ~= have then
    return false, string.format("in space %s, planned %s", tostring(have or "personal"), tostring(want or "personal"))
  end
  return true, have and ("space " .. have) or "personal space"
end

local function newest_reload(ctx, app_id)
  local reply = ctx.target:get("reloads", { appId = app_id, limit = 1, sort = "-creationTime" })
  return reply and type(reply.data) == "table" and reply.data[1] or nil
end

local function check_reload(ctx, item, metadata)
  local r = newest_reload(ctx, item.open_id)
  if not r and item.open_id ~= item.app_id then r = newest_reload(ctx, item.app_id) end
  local rows_total = 0
  for _, t in ipairs(metadata and metadata.tables or {}) do rows_total = rows_total + (tonumber(t.no_of_rows) or 0) end
  if r then
    if r.status == "SUCCEEDED" then return true, "reload " .. r.id .. " succeeded" end
    if r.status == "FAILED" then
      return false, "last reload failed: " .. tostring(r.errorMessage or r.errorCode or "?")
    end
    if rows_total > 0 then return true, "data present; reload " .. tostring(r.status) end
    return false, "reload " .. tostring(r.status) .. ", no data yet"
  end
  if rows_total > 0 then return true, "data present (never reloaded in Cloud)" end
  return false, "no data and never reloaded (run apps.reload)"
end

local function check_model(source, metadata)
  local tables = metadata and metadata.tables or {}
  local have, fields = {}, {}
  for _, t in ipairs(tables) do
    if not t.is_system then have[t.name] = tonumber(t.no_of_rows) or 0 end
  end
  for _, f in ipairs(metadata and metadata.fields or {}) do
    if not f.is_system then fields[f.name] = true end
  end
  if not source then
    local n, total = 0, 0
    for _, rowsn in pairs(have) do n, total = n + 1, total + rowsn end
    if n == 0 then return false, "no tables" end
    return true, string.format("%d table(s), %d row(s); source model not available", n, total)
  end
  local diffs, n = {}, 0
  for _, t in ipairs(source.tables or {}) do
    n = n + 1
    local got = have[t.name]
    if got == nil then
      diffs[#diffs + 1] = "table " .. t.name .. " missing"
    else
      if t.no_of_rows and got ~= tonumber(t.no_of_rows) then
        diffs[#diffs + 1] = string.format("table %s: %d rows, source %d", t.name, got, t.no_of_rows)
      end
      for _, f in ipairs(t.fields or {}) do
        local fname = type(f) == "table" and f.name or f
        if not fields[fname] then diffs[#diffs + 1] = "field " .. tostring(fname) .. " missing" end
      end
      have[t.name] = nil
    end
  end
  for name in pairs(have) do diffs[#diffs + 1] = "extra table " .. name end
  table.sort(diffs)
  if #diffs > 0 then return false, common.list(diffs, 5) end
  return true, string.format("%d table(s) as in the source", n)
end

local TYPES = { sheet = true, story = true, bookmark = true }

local function count_by_type(list, pred)
  local c = {}
  for _, o in ipairs(list or {}) do
    if TYPES[o.objectType] and (not pred or pred(o)) then c[o.objectType] = (c[o.objectType] or 0) + 1 end
  end
  return c
end

local function check_objects(ctx, item)
  local list = common.export_objects(ctx, item.id)
  if type(list) ~= "table" then return true, "no object list (apps.export not run)" end
  local exported = count_by_type(list, function(o) return o.exported ~= false end)
  local recorded = count_by_type(list)
  local now = {}
  for _, o in ipairs(ctx.source:full("app/object", qrs.eq("app.id", item.id))) do
    if TYPES[o.objectType] then now[o.objectType] = (now[o.objectType] or 0) + 1 end
  end
  local parts, diffs = {}, {}
  for _, ty in ipairs { "sheet", "story", "bookmark" } do
    local e, r, s = exported[ty] or 0, recorded[ty] or 0, now[ty] or 0
    parts[#parts + 1] = string.format("%s %d", ty, e)
    if s ~= r then diffs[#diffs + 1] = string.format("%s: %d at the source now, %d when exported", ty, s, r) end
  end
  local owners = ctx.cache:get("app.object_owners", item.id)
  local missing = owners and type(owners.data) == "table" and tonumber(owners.data.missing) or 0
  if missing > 0 then diffs[#diffs + 1] = missing .. " object(s) missing in the Cloud app" end
  if #diffs > 0 then return false, table.concat(diffs, "; ") end
  return true, table.concat(parts, ", ")
end

local function csv_field(v)
  v = tostring(v == nil and "" or v)
  if v:find('[",\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

return {
  name = "apps.validate", title = "Validate Applications", order = 270,
  object = KIND,
  requires = { "apps.import" },
  items = function(ctx)
    rows = {}
    local publish = not (ctx.plan and ctx.plan.apps and ctx.plan.apps.publish == false)
    local items = common.imported(ctx)
    for _, item in ipairs(items) do
      item.open_id = ctx.app_for(item.id) or item.app_id
      item.publish = publish
    end
    return items
  end,
  key = function(item) return item.id end,
  run = function(ctx, item)
    if ctx.is_planned(item.open_id) then
      error(setmetatable({ method = "validate", path = "apps/" .. item.open_id,
        reason = "validated once the run has imported it" }, errors.DryRun), 0)
    end
    local app = common.app(ctx, item.open_id)
    local row = { source_id = item.id, name = item.name, target_id = item.open_id,
      space_id = app and app.spaceId or "" }
    local checks, diffs = {}, {}
    local function put(name, ok, detail)
      row[name] = ok and "ok" or "differs"
      checks[#checks + 1] = name .. ": " .. detail
      if not ok then diffs[#diffs + 1] = name .. ": " .. detail end
    end
    put("present", check_present(item, app))
    if app then
      local metadata = ctx.target:get("apps/" .. item.open_id .. "/data/metadata")
      put("reload", check_reload(ctx, item, metadata))
      put("data_model", check_model(source_model(ctx, item.id), metadata))
    else
      row.reload, row.data_model = "", ""
    end
    put("objects", check_objects(ctx, item))
    row.result = #diffs == 0 and "ok" or "differs"
    row.details = table.concat(#diffs > 0 and diffs or checks, "; ")
    rows[item.id] = row
    if ctx.dry_run then
      -- plan: the apps may not be where this run will put them yet
      return { status = "skipped", target_id = item.open_id,
        reason = "would validate; now " .. row.result .. ": " .. row.details }
    end
    if #diffs > 0 then common.fail("validation differs: " .. row.details) end
    return { status = "unchanged", target_id = item.open_id, reason = row.details, data = { row = row } }
  end,
  finish = function(ctx, outcomes)
    if ctx.dry_run then return end
    local list = {}
    for _, o in ipairs(outcomes) do
      local row = o.key and rows[o.key]
      if not row and o.key then
        local rec = ctx.cache:get(KIND, o.key)
        row = rec and type(rec.data) == "table" and rec.data.row or nil
      end
      if row then list[#list + 1] = row end
    end
    table.sort(list, function(a, b) return tostring(a.source_id) < tostring(b.source_id) end)
    local lines = { table.concat(COLUMNS, ",") }
    for _, row in ipairs(list) do
      local fields = {}
      for i, c in ipairs(COLUMNS) do fields[i] = csv_field(row[c]) end
      lines[#lines + 1] = table.concat(fields, ",")
    end
    assert(fs.write_file(ctx.project:path("reports", "validation.csv"), table.concat(lines, "\r\n") .. "\r\n",
      { mode = 384, atomic = true }))
  end,
}
