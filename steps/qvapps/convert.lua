-- Convert QlikView Applications (QAMT "Convert QlikView Applications"):
-- each QlikView document the plan selects (plan.qlikview: folders, names,
-- exclude) is read through its -prj folder (qmig.domain.qlikview.prj) into a
-- conversion in converted/<qv id>/ (qmig.domain.qlikview.conversion): the load
-- script, the variables, master dimensions (groups, chart dimensions),
-- master measures (chart expressions with their labels), master
-- visualizations for the chart types Qlik Sense has, and what was not
-- carried.  Sheets are not rebuilt, by design.
--
-- <qv id> is generated when the document is first retrieved (QAMT: "a
-- unique internal ID generated during retrieval") and kept in the cache
-- record, so a changed document is converted again into the same folder
-- and its app keeps its marker.  The fingerprint hashes every file of the
-- -prj folder: a re-run converts only documents saved since.  A document
-- without a -prj folder is skipped with the reason; a -prj file that is
-- not well-formed XML, or hostile (qmig.xml refuses entity declarations,
-- deep nesting, huge attributes), fails its document with file:line:col.
-- finish writes reports/qlikview-not-carried.csv over every converted
-- document.
local conversion = require "qmig.domain.qlikview.conversion"
local errors = require "qmig.clients.errors"
local fs = require "qmig.fs"
local prj = require "qmig.domain.qlikview.prj"
local qmig = require "qmig"

local function csv(v)
  v = tostring(v == nil and "" or v)
  if v:find('[",\r\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

return {
  name = "qvapps.convert", object = "qvapp.convert",
  requires = {},
  items = function(ctx)
    local docs = conversion.documents(ctx)
    for _, doc in ipairs(docs) do doc.fp = prj.fingerprint(doc) end
    return docs
  end,
  key = function(doc) return doc.id end,
  fingerprint = function(doc) return doc.fp end,
  run = function(ctx, doc)
    if not doc.prj then
      return { status = "skipped", reason = "no '" .. doc.name .. "-prj' folder beside it: create it, open the "
        .. "document in QlikView Desktop and save, then run again" }
    end
    local prev = ctx.previous and type(ctx.previous.data) == "table" and ctx.previous.data.qv_id
    local qv_id = prev or qmig.uuid()
    local conv = prj.read(doc, qv_id)
    local data = { qv_id = qv_id, name = doc.name, folder = doc.folder, variables = #conv.variables,
      dimensions = #conv.dimensions, measures = #conv.measures, visualizations = #conv.visualizations,
      not_carried = conv.not_carried }
    local rel = "converted/" .. fs.safe_name(qv_id)
    if ctx.dry_run then
      error(setmetatable({ method = "convert", path = rel, target_id = rel, data = data }, errors.DryRun), 0)
    end
    conversion.write(ctx, conv)
    local reason = string.format("%d variable(s), %d dimension(s), %d measure(s), %d visualization(s); "
      .. "%d not carried", #conv.variables, #conv.dimensions, #conv.measures, #conv.visualizations,
      #conv.not_carried)
    return { status = prev and "updated" or "created", target_id = rel, reason = reason, data = data }
  end,
  finish = function(ctx)
    if ctx.dry_run then return end
    local lines = { "document,qv_id,object,type,reason" }
    for _, rec in ipairs(ctx.cache:items("qvapp.convert")) do
      local d = rec.data
      if type(d) == "table" and d.qv_id and rec.status ~= "failed" and rec.status ~= "deleted" then
        for _, n in ipairs(d.not_carried or {}) do
          lines[#lines + 1] = table.concat({ csv(rec.source_id), csv(d.qv_id), csv(n.object), csv(n.type),
            csv(n.reason) }, ",")
        end
      end
    end
    assert(fs.write_file(ctx.project:path("reports", "qlikview-not-carried.csv"),
      table.concat(lines, "\r\n") .. "\r\n", { mode = 384, atomic = true }))
  end,
}
