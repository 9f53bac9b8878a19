-- The step catalogue (docs/catalogue.md): every step name the engine knows, its
-- place in the global order and Qlik's title for it.  Inside a job the
-- engine runs the chosen steps in this order, whatever order they were
-- written in: deletes first, post-migration last.  An entry marked
-- `addition` is qmig-lua's own: Qlik's tool has no such step.
local M = {}

local entries = {
  { 10, "users.delete", "Delete Users" },
  { 20, "apps.delete", "Delete Applications" },
  { 30, "qvapps.delete", "Delete QlikView Applications" },
  { 40, "dataconnections.delete", "Delete Data Connections" },
  { 50, "nprinting.delete_reports", "Delete NPrinting Reports" },
  { 60, "spaces.delete", "Delete Spaces" },
  { 70, "users.export", "Export Users" },
  { 80, "users.import", "Import Users" },
  { 90, "extensions.export", "Export Extensions" },
  { 100, "extensions.import", "Import Extensions" },
  { 110, "themes.export", "Export Themes" },
  { 120, "themes.import", "Import Themes" },
  { 130, "spaces.create", "Create Spaces" },
  { 140, "spaces.assign", "Add Assignments To Spaces" },
  { 150, "spaces.owners", "Update Space Owners" },
  { 160, "dataconnections.migrate", "Migrate Data Connections" },
  { 170, "apps.export", "Export Applications" },
  { 180, "apps.import", "Import Applications" },
  { 190, "apps.object_owners", "Update App Object Owners" },
  { 200, "apps.scripts", "Update Application Scripts" },
  { 210, "apps.reload", "Reload Applications" },
  { 220, "apps.publish", "Publish Applications" },
  { 230, "apps.shares", "Add Shares To Applications" },
  { 235, "tags.migrate", "Migrate Tags And Custom Properties", addition = true },
  { 240, "nprinting.reports", "Migrate NPrinting Reports" },
  { 250, "nprinting.filters", "Migrate NPrinting Filters" },
  { 260, "apps.schedules", "Add Reload Schedules To Applications" },
  { 270, "apps.validate", "Validate Applications" },
  { 280, "apps.owners", "Update Application Owners" },
  { 290, "qvapps.convert", "Convert QlikView Applications" },
  { 300, "qvapps.import", "Import QlikView Applications" },
  { 310, "qvapps.scripts", "Update QlikView Application Scripts" },
  { 320, "qvapps.reload", "Reload QlikView Applications" },
  { 330, "qvapps.publish", "Publish QlikView Applications" },
  { 340, "qvapps.owners", "Update QlikView Application Owners" },
  { 345, "qvapps.validate", "Validate QlikView Applications", addition = true },
  { 350, "post.reset_descriptions", "Reset App Descriptions" },
  { 360, "post.reset_qv_descriptions", "Reset QlikView App Descriptions" },
}

M.by_name = {}
M.list = {}
for _, e in ipairs(entries) do
  local entry = { order = e[1], name = e[2], title = e[3], addition = e.addition or false }
  M.by_name[entry.name] = entry
  M.list[#M.list + 1] = entry
end

-- Levenshtein distance, for "did you mean" suggestions.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end
M.distance = distance

-- nearest(word, candidates) -> the closest candidate when it is close
-- enough to be a plausible typo, else nil.
function M.nearest(word, candidates)
  if #word > 100 then return nil end  -- not a typo of a short name; and distance() is quadratic
  local limit = math.max(2, #word // 3)
  local best, best_d
  for _, c in ipairs(candidates) do
    if math.abs(#word - #c) <= limit then
      local d = distance(word:lower(), c:lower())
      if not best_d or d < best_d or (d == best_d and c < best) then best, best_d = c, d end
    end
  end
  if best and best_d <= limit then return best end
  return nil
end

function M.names()
  local names = {}
  for _, e in ipairs(M.list) do names[#names + 1] = e.name end
  return names
end

return M
