-- The statuses of a cache item (lua/qmig/store/cache.lua), as sets; one
-- definition for the engine, the report and the steps.
local M = {}

local function set(...)
  local s = {}
  for _, v in ipairs { ... } do s[v] = true end
  return s
end

-- An object the step made, changed, took over or found as wanted: done.
M.DONE = set("created", "updated", "adopted", "unchanged")
-- ...and, in a plan, what an earlier step would have done (qmig.store.overlay:
-- such records exist only in a dry run's memory): a later step may use it.
M.USABLE = set("created", "updated", "adopted", "unchanged", "planned")
-- What a step's run(item, ctx) may return as its outcome.
M.OUTCOME = set("created", "updated", "adopted", "skipped", "unchanged", "deleted")
-- What the cache stores for an item.
M.RECORD = set("in_progress", "created", "updated", "adopted", "skipped", "unchanged", "failed", "deleted")

return M
