-- The undo journal of the project's cache (table undo of
-- lua/qmig/store/migrations.lua): what each run created or changed, for
-- `qmig-lua undo` (lua/qmig/engine/undo.lua).  Methods of the cache object.
local qmig = require "qmig"
local values = require "qmig.store.values"

local M = {}

local UNDO_ACTION = { delete = true, restore = true, irreversible = true }

--- c:add_undo{run_id=, step=, kind=, source_id=, target_id=, action=,
-- payload=} -> id
function M.add_undo(self, u)
  if type(u) ~= "table" or not UNDO_ACTION[u.action] then
    error("cache: bad undo action '" .. tostring(u and u.action) .. "'", 2)
  end
  local _, id = self.db:run(
    "INSERT INTO undo (run_id, at, step, kind, source_id, target_id, action, payload) " ..
    "VALUES (:run_id, :at, :step, :kind, :source_id, :target_id, :action, :payload)",
    { run_id = u.run_id, at = qmig.isotime(), step = u.step, kind = u.kind,
      source_id = u.source_id ~= nil and tostring(u.source_id) or nil,
      target_id = u.target_id ~= nil and tostring(u.target_id) or nil,
      action = u.action, payload = values.encode(u.payload) })
  return id
end

--- c:undo_entries({run_id=}) -> entries not yet undone, newest first
function M.undo_entries(self, filter)
  local run_id = filter and filter.run_id
  local sql = "SELECT * FROM undo WHERE undone_at IS NULL" ..
              (run_id and " AND run_id = :run_id" or "") .. " ORDER BY id DESC"
  local rows = self.db:all(sql, { run_id = run_id })
  for _, r in ipairs(rows) do r.payload = values.decode(r.payload) end
  return rows
end

--- c:mark_undone(id, run_id) -> true when the entry was still pending
function M.mark_undone(self, id, run_id)
  local n = self.db:run(
    "UPDATE undo SET undone_at = ?, undone_by_run = ? WHERE id = ? AND undone_at IS NULL",
    qmig.isotime(), run_id, id)
  return n == 1
end

return M
