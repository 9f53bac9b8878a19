-- Validate QlikView Applications (a qmig-lua addition: Qlik's tool has no
-- such step): the charts of each imported QlikView document against the
-- document's own, by their values.  The source side is what a user can
-- take out of QlikView: each chart's export ("Export..." on its object
-- menu), put in source.qlikview.exports as <document path without
-- .qvw>/<chart object id>.csv or .qvo (qmig.domain.qlikview.exports;
-- docs/qlikview.md).  Per document, on the app users open (its published
-- copy once qvapps.publish made one), one engine session on Qlik Cloud:
-- every master visualization qvapps.import wrote, with its master
-- dimensions and measures as the app holds them, against its chart's
-- export (qmig.domain.qlikview.charts).
-- Outcome, as apps.validate's (qmig.domain.validation.report): equal -> unchanged;
-- a chart with no export is "not validated: no export", and a document
-- without any -> skipped; a difference, or an export that cannot be read
-- (file:line: why), FAILS the document with the chart and the first
-- differing cells.  The rows join apps.validate's in the run's spreadsheet,
-- reports/validation.csv and reports/validation.json.
local charts = require "qmig.domain.qlikview.charts"
local common = require "qmig.domain.apps"
local conversion = require "qmig.domain.qlikview.conversion"
local engines = require "qmig.domain.validation.engines"
local errors = require "qmig.clients.errors"
local exports = require "qmig.domain.qlikview.exports"
local report = require "qmig.domain.validation.report"
local variant = require "qmig.domain.qlikview.variant"

local ORIGIN = "qlikview"

local function validate(ctx, item, conv)
  local folder = ctx.job.source.qlikview.exports
  local per_host = ctx.job.options and ctx.job.options.engine_sessions
  local session, doc, code = engines.open(ctx, "target", item.open_id, per_host)
  if not session then return nil, "Qlik Cloud engine: " .. tostring(doc), code end
  local ok, result, err = pcall(charts.compare, doc, conv, folder)
  engines.close(session)
  if not ok then error(result, 0) end
  if not result then return nil, err end
  return result
end

return variant.of(require "qmig.steps.apps.validate", {
  name = "qvapps.validate", object = "qvapp.validation",
  requires = { "qvapps.import" },
  items = function(ctx)
    local qv = variant.ctx(ctx)
    local items = common.imported(qv)
    for _, item in ipairs(items) do
      item.open_id = qv.app_for(item.id) or item.app_id
      local rec = ctx.cache:get("qvapp", item.id)
      item.qv_id = rec and type(rec.data) == "table" and rec.data.qv_id or nil
      -- (in the item, so its fingerprint: a chart exported again is validated again)
      item.exports = exports.fingerprint(ctx.job.source.qlikview and ctx.job.source.qlikview.exports, item.id)
    end
    return items
  end,
  run = function(ctx, item)
    if ctx.is_planned(item.open_id) then
      error(setmetatable({ method = "validate", path = "apps/" .. item.open_id,
        reason = "validated once the run has imported it" }, errors.DryRun), 0)
    end
    local conv, why = conversion.load(ctx, item.qv_id or "")
    if not conv then common.fail("cannot validate: " .. tostring(why)) end
    local result, err, code = validate(ctx, item, conv)
    if not result then engines.fail("cannot validate", err, code, common.fail) end
    return report.outcome(variant.ctx(ctx), item, result, ORIGIN)
  end,
  finish = function(ctx, outcomes) return report.finish(variant.ctx(ctx), outcomes, ORIGIN) end,
})
