-- qmig.domain.validation.report: what a validation step makes of a comparison
-- (apps.validate, qvapps.validate): the item's outcome and its row, and
-- at the end of the step the run's spreadsheet (qmig.domain.validation.workbook),
-- reports/validation.csv and reports/validation.json (which report.json
-- and report.html show: qmig.domain.validation.section).
--
-- Both steps write the same two reports: each keeps the rows of the other
-- (row.origin "qlikview" for a QlikView document's, none for a Qlik Sense
-- app's) and replaces its own, so a project that runs both has every row.
local common = require "qmig.domain.apps"
local compare = require "qmig.domain.validation.compare"
local fs = require "qmig.fs"
local json = require "qmig.json"
local workbook = require "qmig.domain.validation.workbook"

local M = {}

M.KIND = "app.validation"   -- the cache kind (a QlikView variant maps it: qmig.domain.qlikview.variant)
M.COLUMNS = { "source_id", "name", "target_id", "outcome", "tables", "rows", "target_rows", "fields", "charts",
  "cells", "differences", "details" }

-- key -> row, for this run of the step: in ctx.memo, not in the module,
-- as items() is called more than once when the step overlaps the ones
-- before it (qmig.engine.overlap), and apps.validate and qvapps.validate
-- may be under way at once
local function rows(ctx)
  ctx.memo.validation_rows = ctx.memo.validation_rows or {}
  return ctx.memo.validation_rows
end

local function csv_field(v)
  v = tostring(v == nil and "" or v)
  if v:find('[",\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

-- report.outcome(ctx, item, result [, origin]) -> the step's outcome for
-- a comparison (compare.app's shape; result.details, when given, is the
-- row's text): equal -> unchanged; no data -> skipped; a difference FAILS
-- the item.  A plan reports it skipped with what it found.
function M.outcome(ctx, item, result, origin)
  local c = result.counts
  local row = { source_id = item.id, name = item.name, target_id = item.open_id, outcome = result.outcome,
    tables = c.tables, rows = c.rows, target_rows = c.target_rows, fields = c.fields, charts = c.charts,
    cells = c.cells, differences = result.found or 0, first_differences = result.differences, origin = origin }
  if result.details then
    row.details = result.details
  elseif result.no_data == "both" then
    row.details = "no data in either app (0 rows at the source and in Qlik Cloud): nothing to compare"
  elseif result.outcome == "equal" then
    row.details = string.format("equal: %d table(s), %d row(s), %d field(s), %d chart(s), %d cell(s)",
      c.tables, c.rows, c.fields, c.charts, c.cells)
  else
    row.details = compare.summary(result)
  end
  rows(ctx)[item.id] = row
  if ctx.dry_run then
    -- plan: the apps may not be where this run will put them yet
    return { status = "skipped", target_id = item.open_id,
      reason = "would validate; now " .. result.outcome .. ": " .. row.details }
  end
  if result.outcome == "differs" then common.fail("validation differs: " .. row.details) end
  return { status = result.no_data and "skipped" or "unchanged", target_id = item.open_id,
    reason = row.details, data = { row = row } }
end

-- The rows of reports/validation.json of another origin than this one.
local function others(ctx, origin)
  local text = fs.read_file(ctx.project:path("reports", "validation.json"))
  local v = text and json.decode(text)
  local out = {}
  for _, row in ipairs(type(v) == "table" and type(v.apps) == "table" and v.apps or {}) do
    if type(row) == "table" and row.origin ~= origin then out[#out + 1] = row end
  end
  return out
end

-- report.finish(ctx, outcomes [, origin]): the step's reports; rows of
-- items validated in earlier runs come from the cache.
function M.finish(ctx, outcomes, origin)
  if ctx.dry_run then return end
  local list = {}
  for _, o in ipairs(outcomes) do
    local row = o.key and rows(ctx)[o.key]
    if not row and o.key then
      local rec = ctx.cache:get(M.KIND, o.key)
      row = rec and type(rec.data) == "table" and rec.data.row or nil
    end
    if row then list[#list + 1] = row end
  end
  table.sort(list, function(a, b) return tostring(a.source_id) < tostring(b.source_id) end)
  local all = others(ctx, origin)
  for _, row in ipairs(list) do all[#all + 1] = row end
  -- the spreadsheet has what validation.json has: the project's validation as of this run
  local xlsx
  if ctx.run_id then
    xlsx = "validations/" .. fs.safe_name(ctx.job_name or "job") .. "/" .. ctx.run_id .. ".xlsx"
    assert(workbook.write(ctx.project:path(xlsx), all))
  end
  assert(fs.write_file(ctx.project:path("reports", "validation.json"), json.encode({ format = 1,
    run_id = ctx.run_id, job = ctx.job_name, workbook = xlsx, apps = json.array(all) }, { sort_keys = true }),
    { mode = 384, atomic = true }))
  local lines = { table.concat(M.COLUMNS, ",") }
  for _, row in ipairs(all) do
    local fields = {}
    for i, c in ipairs(M.COLUMNS) do fields[i] = csv_field(row[c]) end
    lines[#lines + 1] = table.concat(fields, ",")
  end
  assert(fs.write_file(ctx.project:path("reports", "validation.csv"), table.concat(lines, "\r\n") .. "\r\n",
    { mode = 384, atomic = true }))
end

return M
