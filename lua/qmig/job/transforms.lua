-- The hooks of a job file's `transforms` file (docs/job-file.md): one
-- table for the loader (M.load, which refuses unknown names), for
-- ctx.transform (M.call) and for docs/steps.md.  A hook gets the source
-- object and what the step would send; it returns the value to use (which
-- argument that is: `value`), or nil to leave the item out.
local errors = require "qmig.clients.errors"

local M = {}

-- name -> {args = the hook's arguments, value = which one it returns
-- changed, step = the step that calls it}
M.HOOKS = {
  space = { args = { "qrs_stream", "space {name, type}" }, value = 2, step = "spaces.create" },
  user = { args = { "qrs_user", "identity {subject, email, name, status}" }, value = 2, step = "users.import" },
  app = { args = { "qrs_app", "placement {name, space_id, description}" }, value = 2, step = "apps.import" },
  script = { args = { "script_text", "app {id, name, target_id, stream, owner}" }, value = 1, step = "apps.scripts" },
  data_connection = { args = { "body (the Cloud data connection)" }, value = 1, step = "dataconnections.migrate" },
  schedule = { args = { "qrs_event", "body (the Cloud scheduling task)" }, value = 2, step = "apps.schedules" },
}

-- The hook names, sorted.
function M.names()
  local out = {}
  for name in pairs(M.HOOKS) do out[#out + 1] = name end
  table.sort(out)
  return out
end

-- Which argument of hook `name` is the value it may change; nil: no such hook.
function M.value_arg(name)
  local h = M.HOOKS[name]
  return h and h.value
end

-- M.load(path) -> hooks | nil, "path: why".  No path: no hooks.
function M.load(path)
  if not path then return {} end
  local chunk, err = loadfile(path, "t")
  if not chunk then return nil, err end
  local ok, hooks = pcall(chunk)
  if not ok then return nil, path .. ": " .. tostring(hooks) end
  if type(hooks) ~= "table" then return nil, path .. ": must return a table of functions" end
  for k, v in pairs(hooks) do
    if not M.HOOKS[k] then return nil, path .. ": unknown hook '" .. tostring(k) .. "'" end
    if type(v) ~= "function" then return nil, path .. ": hook '" .. k .. "' must be a function" end
  end
  return hooks
end

-- M.call(hooks, name, ...) -> the value the hook produced (nil: leave the
-- item out); without a hook, the value passed in.  A hook that raises is
-- the item's failure, with the hook named.
function M.call(hooks, name, ...)
  local value_arg = M.value_arg(name)
  assert(value_arg, "unknown transform hook '" .. tostring(name) .. "'")
  local hook = hooks and hooks[name]
  if not hook then return (select(value_arg, ...)) end
  local ok, result = pcall(hook, ...)
  if not ok then
    error(errors.new { message = "transforms.lua: hook '" .. name .. "' failed: " .. tostring(result) }, 0)
  end
  return result
end

return M
