-- Recorded targets deleted in the tenant.  Methods of the engine
-- (lua/qmig/engine/step.lua); step_module gets GONE, the reason's prefix.
local errors = require "qmig.clients.errors"
local qmig = require "qmig"

local M = {}

function M.install(Engine, step_module)
  --
  -- A done record is trusted without running its step, so an object
  -- deleted by hand in the tenant would never be looked at again.  A step
  -- that creates target objects declares the read that shows its record's
  -- object is still there (step.target_path(rec) -> path | nil, for records
  -- with a target id), and the engine makes that read for each record it
  -- would leave alone: one GET per record, and a path read once per run
  -- whichever steps ask (an app imported and then published by moving it is
  -- one app).
  step_module.GONE = "deleted in the tenant"
    local GONE = step_module.GONE

  -- A record reported (step.if_gone = "report") as deleted in the tenant:
  -- it stays reported, without a read, until --force makes it again.
  function M.reported(rec)
    return rec.status == "failed" and rec.last_error == nil and type(rec.reason) == "string"
      and rec.reason:sub(1, #GONE + 1) == GONE .. ":"
  end

  -- Is path in the tenant?  Memoised per run; concurrent items asking for
  -- the same path wait for the first one's read.
  function Engine:present(path)
    local reads = self.reads or {}
    self.reads = reads
    while reads[path] == "reading" do qmig.sleep(0.01) end
    if reads[path] ~= nil then return reads[path] end
    reads[path] = "reading"
    local ok, err = pcall(self.target.get, self.target, path)
    if not ok and not (errors.is(err) and (err.status == 404 or err.status == 410)) then
      reads[path] = nil
      error(err, 0)
    end
    reads[path] = ok
    self.target_reads = (self.target_reads or 0) + 1
    return ok
  end

  -- The declared path of a done record when its object is gone, or nil.
  function Engine:gone_path(step, rec)
    if type(step.target_path) ~= "function" or not rec.target_id or not self.target or not self.target.get then
      return nil
    end
    local path = step.target_path(rec)
    if type(path) ~= "string" or self:present(path) then return nil end
    return path
  end

  -- What was done on a gone object is gone with it (a space's assignments,
  -- an app's reload, scripts, owners): the records of the steps that
  -- require this one, for the same source object (qmig.engine.undo's rule), are
  -- marked deleted so those steps redo them on what replaces it.
  function Engine:forget_dependants(step, key, why)
    local undo = require "qmig.engine.undo"
    self.closure = self.closure or undo.requirements(self.job and self.job.steps_path)
    for _, dep in ipairs(undo.dependants(self.cache, self.closure, step.name, step.object, key)) do
      if not M.reported(dep) then
        self.cache:finish_item(dep.kind, dep.source_id, { status = "deleted", reason = why })
      end
    end
  end
  return M
end

return M
