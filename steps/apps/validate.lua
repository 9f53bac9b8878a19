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
local report = require "qmig.domain.validation.report"

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
  object = report.KIND,
  produces = { data = { "row" } },
  consumes = { { kind = "app", data = { "space_id", "bound_for" } }, { kind = "app.published" } },
  requires = { "apps.import" },
  items = function(ctx)
    local items = common.imported(ctx)
    for _, item in ipairs(items) do item.open_id = ctx.app_for(item.id) or item.app_id end
    return items
  end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(item) return item.id end,
  run = function(ctx, item)
    if ctx.is_planned(item.open_id) then
      error(setmetatable({ method = "validate", path = "apps/" .. item.open_id,
        reason = "validated once the run has imported it" }, errors.DryRun), 0)
    end
    local result, err, code = validate(ctx, item)
    if not result then engines.fail("cannot validate", err, code, common.fail) end
    return report.outcome(ctx, item, result)
  end,
  finish = function(ctx, outcomes) return report.finish(ctx, outcomes) end,
}
