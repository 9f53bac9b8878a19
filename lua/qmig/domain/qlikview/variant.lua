-- The QlikView steps after qvapps.import are the Qlik Sense app steps
-- (apps.scripts, apps.reload, apps.publish, apps.owners, apps.delete,
-- post.reset_descriptions) run on the apps qvapps.import made: the same
-- `run`, never a second copy of it.  What differs is where their items come
-- from and which cache kinds they read and write, so a variant wraps the
-- Qlik Sense step and hands its functions a context in which
--   - the cache kinds of the app pipeline are the QlikView ones (KINDS:
--     "app" is "qvapp", "app.published" is "qvapp.published", ...), for
--     ctx.cache, ctx.lookup, ctx.forget and ctx.app_for;
--   - ctx.source:full("app") lists the converted documents shaped like the
--     QRS apps the Qlik Sense steps expect ({id = document path, name,
--     owner, stream = the folder when it is published}); every other
--     source call goes to the QRS as before (data connections, users).
local conversion = require "qmig.domain.qlikview.conversion"

local M = {}

M.KINDS = { app = "qvapp", ["app.published"] = "qvapp.published", ["app.reload"] = "qvapp.reload",
  ["app.description"] = "qvapp.description", ["app.script"] = "qvapp.script", ["app.owner"] = "qvapp.owner",
  ["app.delete"] = "qvapp.delete", ["app.validation"] = "qvapp.validation" }

local function kind(k) return M.KINDS[k] or k end

-- A proxy of obj whose methods get their first argument through map.
local function methods(obj, map, overrides)
  return setmetatable({}, { __index = function(_, k)
    if overrides and overrides[k] then return overrides[k] end
    local v = obj[k]
    if type(v) ~= "function" then return v end
    return function(_, first, ...) return v(obj, map(first), ...) end
  end })
end

-- The converted documents as the Qlik Sense steps see source apps: those
-- the share still has and the plan selects (conversion.current), as for
-- qvapps.import, so reload, scripts, publish, owners and validate leave a
-- gone document's app alone (qvapps.delete lists its own items).
function M.documents(ctx)
  local out = {}
  for _, d in ipairs(conversion.current(ctx)) do
    local rec = ctx.cache:get("qvapp", d.id)
    local data = rec and type(rec.data) == "table" and rec.data or {}
    out[#out + 1] = { id = d.id, name = d.name, qv_id = d.qv_id, folder = d.folder,
      owner = { userDirectory = "QlikView" },
      stream = data.bound_for and { id = "qlikview:" .. d.folder, name = d.folder } or nil }
  end
  return out
end

function M.ctx(ctx)
  local function lookup(k, id) return ctx.lookup(kind(k), id) end
  local source = methods(ctx.source, function(x) return x end, {
    full = function(_, entity, ...)
      if entity == "app" then return M.documents(ctx) end
      return ctx.source:full(entity, ...)
    end,
  })
  return setmetatable({
    cache = methods(ctx.cache, kind),
    source = source,
    lookup = lookup,
    forget = function(k, id, reason) return ctx.forget(kind(k), id, reason) end,
    app_for = function(id)
      local pub = lookup("app.published", id)
      if pub then return pub, "qvapp.published" end
      return (lookup("app", id)), "qvapp"
    end,
  }, { __index = ctx })
end

-- of(base, fields) -> a step: base's table with fields over it, and every
-- function of base given the QlikView context.
function M.of(base, fields)
  local step = {}
  for k, v in pairs(base) do step[k] = v end
  for _, fn in ipairs { "items", "run", "finish" } do
    if type(base[fn]) == "function" then
      step[fn] = function(ctx, ...) return base[fn](M.ctx(ctx), ...) end
    end
  end
  if type(base.planned) == "function" then
    step.planned = function(item, ctx, write) return base.planned(item, M.ctx(ctx), write) end
  end
  for k, v in pairs(fields) do step[k] = v end
  return step
end

return M
