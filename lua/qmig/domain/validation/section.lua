-- qmig.domain.validation.section: the validation of the apps in report.json and
-- report.html, from reports/validation.json (written by apps.validate's
-- finish: one row per app, the same rows as the run's spreadsheet).
local fs = require "qmig.fs"
local json = require "qmig.json"

local M = {}

local OUTCOMES = { "equal", "differs", "no data" }

-- section.data(project) -> {workbook, run_id, totals = {equal =, differs =,
-- ["no data"] =}, apps = [...]} | nil (apps.validate never ran)
function M.data(project)
  local text = fs.read_file(project:path("reports", "validation.json"))
  local v = text and json.decode(text)
  if type(v) ~= "table" or type(v.apps) ~= "table" then return nil end
  local totals = {}
  for _, o in ipairs(OUTCOMES) do totals[o] = 0 end
  for _, a in ipairs(v.apps) do
    totals[a.outcome] = (totals[a.outcome] or 0) + 1
  end
  return { workbook = v.workbook, run_id = v.run_id, job = v.job, totals = totals, apps = json.array(v.apps) }
end

local CLASS = { equal = "created", differs = "failed", ["no data"] = "skipped" }

-- section.html(data, esc) -> the section's HTML ("" without data)
function M.html(v, esc)
  if not v then return "" end
  local out = {}
  local function w(...) for _, s in ipairs { ... } do out[#out + 1] = tostring(s) end end
  w("<h2 id=\"validation\">Validation by data (", v.totals.equal, " equal, ", v.totals.differs, " differ, ",
    v.totals["no data"], " without data)</h2>")
  if v.workbook then w("<p>Spreadsheet: <code>", esc(v.workbook), "</code>.</p>") end
  w("<table class=\"objects validation\"><tr><th>app</th><th>outcome</th><th>tables</th><th>rows</th>",
    "<th>fields</th><th>charts</th><th>cells</th><th>differences</th><th>first differences</th></tr>")
  for _, a in ipairs(v.apps) do
    w("<tr><td><b>", esc(a.name), "</b> <code>", esc(a.source_id), "</code></td><td class=\"",
      CLASS[a.outcome] or "failed", "\">", esc(a.outcome), "</td>")
    for _, k in ipairs { "tables", "rows", "fields", "charts", "cells", "differences" } do
      w("<td>", esc(a[k] or ""), "</td>")
    end
    w("<td>")
    local diffs = a.first_differences or {}
    if #diffs > 0 then
      w("<ul>")
      for _, d in ipairs(diffs) do
        w("<li>", esc(d.check), " ", esc(d.object), ": ", esc(d.where), ": source <b>", esc(d.source),
          "</b>, Qlik Cloud <b>", esc(d.target), "</b></li>")
      end
      w("</ul>")
    else
      w(esc(a.details or ""))
    end
    w("</td></tr>")
  end
  w("</table>")
  return table.concat(out)
end

return M
