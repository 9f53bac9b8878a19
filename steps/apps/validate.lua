-- apps.validate — Validate Applications (QAMT
-- "Validate Applications"): each imported app against its source, by the
-- data both engines hold, as Qlik's own tool does.
--
-- Per imported app, on the app users open (ctx.app_for): one engine
-- session on the source (QSEoW, the client certificate and X-Qlik-User)
-- and one on the target (Qlik Cloud, the API key or OAuth token), reused
-- for every check and closed at the end; at most options.engine_sessions
-- (4) per host whatever the concurrency (qmig.domain.validation.engines).  The
-- checks are qmig.domain.validation.compare's: both have data, tables and rows,
-- fields and cardinality, every chart of the public sheets by its
-- hypercube, objects on one side only, master items and variables.
-- Outcome: equal -> unchanged; no data in either app -> skipped, saying
-- so; a difference (or data on one side only) FAILS the item with the
-- first differences (the chart, the first differing cells): the user must
-- see it, the run exits 1, and the app is validated again next run.
-- finish writes validations/<job>/<run>.xlsx (a Summary sheet, one row per
-- app, and a Differences sheet), reports/validation.csv and
-- reports/validation.json (which report.json and report.html show:
-- qmig.domain.validation.section); rows of apps validated in earlier runs come
-- from the cache (a failed app is validated again every run).  A plan
-- validates the apps already imported (the engine is only read) and
-- reports each as skipped with what it finds; it writes no report.
local common = require "qmig.domain.apps"
local compare = require "qmig.domain.validation.compare"
local engines = require "qmig.domain.validation.engines"
local errors = require "qmig.clients.errors"
local fs = require "qmig.fs"
local json = require "qmig.json"
local workbook = require "qmig.domain.validation.workbook"

local KIND = "app.validation"
local COLUMNS = { "source_id", "name", "target_id", "outcome", "tables", "rows", "target_rows", "fields", "charts",
  "cells", "differences", "details" }

local rows = {}   -- key -> row, for this process's run

local function csv_field(v)
  v = tostring(v == nil and "" or v)
  if v:find('[",\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

-- Both apps open, compared, both sessions closed whatever happens.
local function validate(ctx, item)
  local per_host = ctx.job and ctx.job.options and ctx.job.options.engine_sessions
  local src, sdoc, scode = engines.open(ctx, "source", item.id, per_host)
  if not src then return nil, "source engine: " .. tostring(sdoc), scode end
  local tgt, tdoc, tcode = engines.open(ctx, "target", item.open_id, per_host)
  if not tgt then
    engines.close(src)
    return nil, "Qlik Cloud engine: " .. tostring(tdoc), tcode
  end
  local ok, result, err = pcall(compare.app, sdoc, tdoc)
  engines.close(src)
  engines.close(tgt)
  if not ok then error(result, 0) end
  if not result then return nil, err end
  return result
end

return {
  name = "apps.validate",
  object = KIND,
  produces = { data = { "row" } },
  consumes = { { kind = "app", data = { "space_id", "bound_for" } }, { kind = "app.published" } },
  requires = { "apps.import" },
  items = function(ctx)
    rows = {}
    local items = common.imported(ctx)
    for _, item in ipairs(items) do item.open_id = ctx.app_for(item.id) or item.app_id end
    return items
  end,
  key = function(item) return item.id end,
  run = function(ctx, item)
    if ctx.is_planned(item.open_id) then
      error(setmetatable({ method = "validate", path = "apps/" .. item.open_id,
        reason = "validated once the run has imported it" }, errors.DryRun), 0)
    end
    local result, err = validate(ctx, item)
    if not result then common.fail("cannot validate: " .. tostring(err)) end
    local c = result.counts
    local row = { source_id = item.id, name = item.name, target_id = item.open_id, outcome = result.outcome,
      tables = c.tables, rows = c.rows, target_rows = c.target_rows, fields = c.fields, charts = c.charts,
      cells = c.cells, differences = result.found or 0, first_differences = result.differences }
    if result.no_data == "both" then
      row.details = "no data in either app (0 rows at the source and in Qlik Cloud): nothing to compare"
    elseif result.outcome == "equal" then
      row.details = string.format("equal: %d table(s), %d row(s), %d field(s), %d chart(s), %d cell(s)",
        c.tables, c.rows, c.fields, c.charts, c.cells)
    else
      row.details = compare.summary(result)
    end
    rows[item.id] = row
    if ctx.dry_run then
      -- plan: the apps may not be where this run will put them yet
      return { status = "skipped", target_id = item.open_id,
        reason = "would validate; now " .. result.outcome .. ": " .. row.details }
    end
    if result.outcome == "differs" then common.fail("validation differs: " .. row.details) end
    return { status = result.no_data and "skipped" or "unchanged", target_id = item.open_id,
      reason = row.details, data = { row = row } }
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
    local xlsx
    if ctx.run_id then
      xlsx = "validations/" .. fs.safe_name(ctx.job_name or "job") .. "/" .. ctx.run_id .. ".xlsx"
      assert(workbook.write(ctx.project:path(xlsx), list))
    end
    -- what report.json and report.html show (qmig.domain.validation.section)
    assert(fs.write_file(ctx.project:path("reports", "validation.json"), json.encode({ format = 1,
      run_id = ctx.run_id, job = ctx.job_name, workbook = xlsx, apps = json.array(list) }, { sort_keys = true }),
      { mode = 384, atomic = true }))
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
