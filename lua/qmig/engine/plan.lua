-- A plan (a dry run) records what each item's first write would make, so
-- the steps after it plan against it.  A method of the engine
-- (lua/qmig/engine/step.lua); step is that module (its item_name).
local overlay = require "qmig.store.overlay"

local M = {}

local VERB = { POST = "create", PUT = "update", PATCH = "update", DELETE = "delete" }

function M.install(Engine, step_module)
  -- A dry run's item that reached its first write: recorded in the overlay
  -- as what the write would make, with a placeholder target id when it
  -- would create, so later steps plan against it.  step.planned(item, ctx,
  -- write) -> {data=, object=, target_id=} may give the data later steps
  -- read from the record (a space's type), the object as the tenant would
  -- return it when read (default: the create's body) and the target id when
  -- it is known (an app published by moving it keeps its id); write =
  -- {method=, path=, body=}.  A step that refuses its own write (a local
  -- export) may instead put data and target_id into the refusal.
  function Engine:planned(step, item, ctx, key, err, fingerprint)
    local body = type(err.body) == "table" and err.body or {}
    local name = body.name or body.qName or body.email or body.subject
    local action = VERB[err.method] or err.method
    local rec = self.cache and self.cache:get(step.object, key)
    local target_id = err.target_id or (rec and rec.target_id)
    if not target_id or ctx.gone or (rec and rec.status == "deleted") or overlay.is_placeholder(target_id) then
      target_id = action == "create" and overlay.placeholder(step.object, key) or target_id
    end
    local data = type(err.data) == "table" and err.data or nil
    local made = err.body
    if not data and type(step.planned) == "function" then
      local ok, p = pcall(step.planned, item, ctx, { method = err.method, path = err.path, body = err.body })
      if ok and type(p) == "table" then
        data = type(p.data) == "table" and p.data or nil
        made = type(p.object) == "table" and p.object or made
        if p.target_id ~= nil then target_id = tostring(p.target_id) end
      end
    end
    local outcome = { status = "planned", key = key, action = action, target_id = target_id,
      reason = err.reason or (err.method .. " " .. err.path), write = { method = err.method, path = err.path },
      target_name = type(name) == "string" and name or nil, changes = ctx.changes[1] and ctx.changes or nil }
    if ctx.gone and action == "create" then outcome.action = "recreate" end
    -- where it would go, by name: the space of its body or of its data
    local space_id = body.spaceId or (data and data.space_id)
    local space = space_id and self.cache and self.cache:find_by_target("space", space_id)
    if space then
      outcome.space_name = type(space.data) == "table" and space.data.name or space.natural_key
    end
    if self.cache then
      if action == "create" then
        -- what its creator makes is its creator's, as in the tenant
        if type(made) == "table" and made.ownerId == nil and self.target and self.target.me then
          local owned = { ownerId = self.target:me().id }
          for k, v in pairs(made) do owned[k] = v end
          made = owned
        end
        self.cache:remember_create(target_id, made)
      end
      self.cache:finish_item(step.object, key, { status = "planned", planned = true, action = action,
        target_id = target_id, natural_key = outcome.target_name or step_module.item_name(item, outcome), data = data,
        fingerprint = fingerprint, step = step.name })
    end
    return outcome
  end
end

return M
