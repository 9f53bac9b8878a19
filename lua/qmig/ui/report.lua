-- The migration report: report.json (data) and report.html (one
-- self-contained page: inline CSS and SVG, no script, no external asset)
-- built from the project's cache.  Every text from the source or the
-- target is escaped: names are hostile input.
--
-- Read top down by a person: what failed first, then what was skipped
-- grouped by reason (one line per reason, the objects behind a
-- <details>), then one row per app across the app steps, so a manager sees
-- which apps are done; per step counts and every object after that.
-- report.json keeps everything.
local json = require "qmig.json"
local names = require "qmig.store.names"
local qmig = require "qmig"
local validation = require "qmig.domain.validation.section"

local M = {}

local OUTCOMES = { "created", "updated", "adopted", "unchanged", "skipped", "failed", "in_progress", "deleted" }
local COLORS = {
  created = "#2e7d32", updated = "#1565c0", adopted = "#6a1b9a", unchanged = "#90a4ae",
  skipped = "#f9a825", failed = "#c62828", in_progress = "#ef6c00", deleted = "#455a64",
}

-- The app steps in pipeline order: the column, the cache kind.  An app's
-- records share its QRS id, but for apps.schedules (keyed by trigger),
-- whose records name the target app (data.app_id).
M.PIPELINE = {
  { "export", "app.export" }, { "import", "app" }, { "scripts", "app.script" }, { "reload", "app.reload" },
  { "publish", "app.published" }, { "schedules", "app.schedule" }, { "owners", "app.owner" },
  { "validate", "app.validation" },
}
local OK = require("qmig.store.status").DONE
local WORST = { failed = 1, in_progress = 2, deleted = 3, skipped = 4 }

-- One row per source app: its outcome in each app step, and whether it is done.
local function pipeline(records, index)
  local kinds, apps, order, by_target = {}, {}, {}, {}
  for _, stage in ipairs(M.PIPELINE) do kinds[stage[2]] = stage[1] end
  local function app(id)
    if not apps[id] then
      apps[id] = { source_id = id, stages = {} }
      order[#order + 1] = id
    end
    return apps[id]
  end
  for _, rec in ipairs(records) do
    if (rec.kind == "app" or rec.kind == "app.published") and rec.target_id then
      by_target[rec.target_id] = rec.source_id
    end
    if rec.kind == "app.export" or rec.kind == "app" then app(rec.source_id) end
  end
  for _, rec in ipairs(records) do
    local stage = kinds[rec.kind]
    local id = rec.source_id
    if rec.kind == "app.schedule" then
      id = type(rec.data) == "table" and by_target[rec.data.app_id] or nil
    end
    if stage and id and apps[id] then
      local row = apps[id]
      local cell = row.stages[stage] or { counts = {} }
      row.stages[stage] = cell
      cell.counts[rec.status] = (cell.counts[rec.status] or 0) + 1
      -- the cell shows the worst outcome of the stage's records
      if not cell.status or (WORST[rec.status] or 9) < (WORST[cell.status] or 9) then
        cell.status, cell.reason = rec.status, rec.last_error or rec.reason
      end
    end
  end
  local rows = json.array()
  for _, id in ipairs(order) do
    local row = apps[id]
    row.name = index.name({ kind = "app.export", source_id = id }) or id
    local done = true
    for _, stage in ipairs(M.PIPELINE) do
      local cell = row.stages[stage[1]]
      if cell and not OK[cell.status] and cell.status ~= "skipped" then done = false end
    end
    local import, validate = row.stages.import, row.stages.validate
    -- a validation skipped (no data on either side: nothing to compare) leaves the app done
    row.done = done and import ~= nil and OK[import.status] ~= nil
      and (validate == nil or OK[validate.status] ~= nil or validate.status == "skipped")
    rows[#rows + 1] = row
  end
  table.sort(rows, function(a, b) return a.name < b.name end)
  return rows
end

-- M.data(cache, {project=, job_file=}) -> the report as a table.
function M.data(cache, about)
  local steps, order, totals, attention = {}, {}, {}, {}
  local records = cache:items(nil)
  local index = names.index(records)
  local failures, skip_groups, skip_order = json.array(), {}, {}
  for _, item in ipairs(records) do
    local name = item.step or item.kind
    local s = steps[name]
    if not s then
      s = { step = name, counts = {}, items = json.array() }
      steps[name] = s
      order[#order + 1] = name
    end
    s.counts[item.status] = (s.counts[item.status] or 0) + 1
    totals[item.status] = (totals[item.status] or 0) + 1
    local row = { kind = item.kind, source_id = item.source_id, target_id = item.target_id,
      name = index.name(item), status = item.status, reason = item.last_error or item.reason }
    s.items[#s.items + 1] = row
    if item.status == "skipped" or item.status == "failed" or item.status == "in_progress" then
      local a = { step = name, kind = item.kind, source_id = item.source_id, name = row.name,
        status = item.status, reason = row.reason }
      attention[#attention + 1] = a
      if item.status == "skipped" then
        -- grouped by what the reason says, not by the ids in it
        local key = name .. "\0" .. names.generalize(row.reason or "no reason given")
        local g = skip_groups[key]
        if not g then
          g = { step = name, reason = names.generalize(row.reason or "no reason given"), count = 0,
            items = json.array() }
          skip_groups[key] = g
          skip_order[#skip_order + 1] = g
        end
        g.count = g.count + 1
        g.items[#g.items + 1] = a
      else
        failures[#failures + 1] = a
      end
    end
  end
  table.sort(skip_order, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.step .. a.reason < b.step .. b.reason
  end)
  table.sort(failures, function(a, b) return a.step .. tostring(a.name) < b.step .. tostring(b.name) end)
  table.sort(order)
  local step_list = json.array()
  for _, name in ipairs(order) do step_list[#step_list + 1] = steps[name] end
  local runs = json.array()
  for _, r in ipairs(cache:runs()) do
    runs[#runs + 1] = { id = r.id, command = r.command, status = r.status, started_at = r.started_at,
      finished_at = r.finished_at, summary = r.summary }
  end
  return {
    format = 1, generated_at = qmig.isotime(), project = about.project, job_file = about.job_file,
    totals = totals, steps = step_list, attention = json.array(attention), runs = runs,
    failures = failures, skipped = json.array(skip_order), apps = pipeline(records, index),
  }
end

local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }
local function esc(v)
  if v == nil or v == json.null then return "" end
  -- control characters would make the page unreadable; show them as U+FFFD
  return (tostring(v):gsub("[&<>\"']", ESCAPES):gsub("[%z\1-\8\11\12\14-\31\127]", "\239\191\189"))
end
M.escape = esc

local function chart(totals)
  local total = 0
  for _, o in ipairs(OUTCOMES) do total = total + (totals[o] or 0) end
  if total == 0 then return "<p>No object has been migrated yet.</p>" end
  local parts, x, width = {}, 0, 600
  for _, o in ipairs(OUTCOMES) do
    local n = totals[o] or 0
    if n > 0 then
      local w = n / total * width
      parts[#parts + 1] = string.format(
        '<rect x="%.1f" y="0" width="%.1f" height="28" fill="%s"><title>%s: %d</title></rect>', x, w, COLORS[o], o, n)
      x = x + w
    end
  end
  local legend = {}
  for _, o in ipairs(OUTCOMES) do
    if (totals[o] or 0) > 0 then
      legend[#legend + 1] = string.format(
        '<span class="key"><i style="background:%s"></i>%s <b data-outcome="%s">%d</b></span>',
        COLORS[o], o, o, totals[o])
    end
  end
  return string.format(
    '<svg class="chart" viewBox="0 0 %d 28" width="%d" height="28" role="img" aria-label="outcomes">%s</svg><p>%s</p>',
    width, width, table.concat(parts), table.concat(legend, " "))
end

local CSS = [[
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;width:100%}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.key{margin-right:1em}.key i{display:inline-block;width:.8em;height:.8em;margin-right:.3em}
.failed{color:#c62828}.skipped{color:#8d6e00}code{font-size:.9em}
.created,.updated,.adopted,.unchanged{color:#2e7d32}details.skip{margin:.3em 0}
details.skip table{margin-left:1.5em;width:auto}
.pipeline td{white-space:nowrap}
]]

function M.html(data)
  local out = {}
  local function w(...) for _, s in ipairs { ... } do out[#out + 1] = s end end
  w("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>qmig-lua report: ", esc(data.project),
    "</title><style>", CSS, "</style></head><body>")
  w("<h1>Migration report: ", esc(data.project), "</h1>")
  w("<p>Job file <code>", esc(data.job_file), "</code>, generated ", esc(data.generated_at), ".</p>")
  w("<h2>Outcomes</h2>", chart(data.totals))
  local function object(a)
    local n = a.name ~= nil and a.name ~= json.null and a.name or nil
    return (n and ("<b>" .. esc(n) .. "</b> ") or "") .. "<code>" .. esc(a.source_id) .. "</code>"
  end
  w("<h2 id=\"failed\">Failed and unfinished (", tostring(#data.failures), ")</h2>")
  if #data.failures > 0 then
    w("<table class=\"objects\"><tr><th>step</th><th>object</th><th>outcome</th><th>why</th></tr>")
    for _, a in ipairs(data.failures) do
      w("<tr><td>", esc(a.step), "</td><td>", object(a), "</td><td class=\"", esc(a.status), "\">", esc(a.status),
        "</td><td>", esc(a.reason), "</td></tr>")
    end
    w("</table>")
  else
    w("<p>Nothing failed.</p>")
  end
  local skipped = 0
  for _, g in ipairs(data.skipped) do skipped = skipped + g.count end
  w("<h2 id=\"skipped\">Skipped, by reason (", tostring(skipped), ")</h2>")
  for _, g in ipairs(data.skipped) do
    w("<details class=\"skip\"><summary><b class=\"count\">", tostring(g.count), "</b> ", esc(g.step), ": ",
      esc(g.reason), "</summary><table class=\"objects\"><tr><th>object</th><th>why</th></tr>")
    for _, a in ipairs(g.items) do w("<tr><td>", object(a), "</td><td>", esc(a.reason), "</td></tr>") end
    w("</table></details>")
  end
  if #data.apps > 0 then
    local done = 0
    for _, a in ipairs(data.apps) do if a.done then done = done + 1 end end
    w("<h2 id=\"apps\">Apps across the pipeline (", tostring(done), " of ", tostring(#data.apps), " done)</h2>")
    w("<table class=\"objects pipeline\"><tr><th>app</th>")
    for _, stage in ipairs(M.PIPELINE) do w("<th>", stage[1], "</th>") end
    w("<th>done</th></tr>")
    for _, a in ipairs(data.apps) do
      w("<tr><td>", object(a), "</td>")
      for _, stage in ipairs(M.PIPELINE) do
        local cell = a.stages[stage[1]]
        if cell then
          local n = 0
          for _, c in pairs(cell.counts) do n = n + c end
          w("<td class=\"", esc(cell.status), "\" title=\"", esc(cell.reason), "\">", esc(cell.status),
            n > 1 and (" (" .. n .. ")") or "", "</td>")
        else
          w("<td></td>")
        end
      end
      w("<td class=\"", a.done and "created" or "failed", "\">", a.done and "yes" or "no", "</td></tr>")
    end
    w("</table>")
  end
  w(validation.html(data.validation, esc))
  w("<h2>Per step</h2><table><tr><th>step</th>")
  for _, o in ipairs(OUTCOMES) do w("<th>", o, "</th>") end
  w("</tr>")
  for _, s in ipairs(data.steps) do
    w("<tr><td>", esc(s.step), "</td>")
    for _, o in ipairs(OUTCOMES) do w("<td>", s.counts[o] and tostring(s.counts[o]) or "", "</td>") end
    w("</tr>")
  end
  w("</table>")
  w("<h2>Runs</h2><table><tr><th>run</th><th>command</th><th>status</th><th>started</th><th>finished</th></tr>")
  for _, r in ipairs(data.runs) do
    w("<tr><td>", tostring(r.id), "</td><td>", esc(r.command), "</td><td>", esc(r.status), "</td><td>",
      esc(r.started_at), "</td><td>", esc(r.finished_at), "</td></tr>")
  end
  w("</table>")
  w("<h2>Objects</h2>")
  for _, s in ipairs(data.steps) do
    w("<h3>", esc(s.step), "</h3><table class=\"objects\"><tr><th>source id</th><th>name</th><th>outcome</th>",
      "<th>target id</th><th>note</th></tr>")
    for _, i in ipairs(s.items) do
      w("<tr><td><code>", esc(i.source_id), "</code></td><td>", esc(i.name), "</td><td class=\"", esc(i.status), "\">",
        esc(i.status), "</td><td><code>", esc(i.target_id), "</code></td><td>", esc(i.reason), "</td></tr>")
    end
    w("</table>")
  end
  w("</body></html>\n")
  return table.concat(out)
end

-- Writes reports/report.json and reports/report.html; returns the html path.
function M.write(project, about)
  local data = M.data(project.cache, about)
  data.validation = validation.data(project)
  local fs = require "qmig.fs"
  assert(fs.write_file(project:path("reports", "report.json"), json.encode(data, { indent = true, sort_keys = true }),
    { mode = 384, atomic = true }))
  local html = project:path("reports", "report.html")
  assert(fs.write_file(html, M.html(data), { mode = 384, atomic = true }))
  return html
end

return M
