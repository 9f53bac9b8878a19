-- Names next to ids: what status, undo, the report and the run's item
-- lines show a person.  The cache keeps a natural key and data per
-- record, but only some kinds carry a name (the export steps, imports,
-- spaces); every other record of the same source object shares its
-- source id (an app's scripts, reload, owners... are keyed by the QRS app
-- id), so one index by source id names them all.
local json = require "qmig.json"

local M = {}

-- The name a record carries itself: a string data.name, else its natural
-- key unless that is a marker token ("[qmig-lua:1:<id>]", which means
-- nothing to a person), else data.app or data.task (records about
-- another object).
-- A Qlik Cloud user by name for people (the plan's "owner old -> new"):
-- name, else email, else the id; read once per id and client.
function M.cloud_user(target, id)
  if id == nil then return "(none)" end
  target.user_names = target.user_names or {}
  local known = target.user_names[id]
  if known == nil then
    local ok, u = pcall(target.find, target, "users/" .. tostring(id))
    known = ok and type(u) == "table" and (u.name or u.email) or tostring(id)
    if ok and type(u) == "table" and u.email and u.name then known = u.name .. " <" .. u.email .. ">" end
    target.user_names[id] = known
  end
  return known
end

function M.own(rec)
  local d = type(rec.data) == "table" and rec.data or {}
  if type(d.name) == "string" and d.name ~= "" then return d.name end
  local nk = rec.natural_key
  if type(nk) == "string" and nk ~= "" and nk ~= json.null and not nk:match("^%[qmig%-lua:") then return nk end
  for _, f in ipairs { "app", "task" } do
    if type(d[f]) == "string" and d[f] ~= "" then return d[f] end
  end
  return nil
end

-- Kinds whose name is the source's: preferred, since the target name may
-- have been changed by a transform (then both are shown).
local function is_export(kind) return type(kind) == "string" and kind:match("%.export$") ~= nil end

-- M.index(records) -> names: names.source[source_id] = source name, and
-- names:label(rec) / names:name(rec).
function M.index(records)
  local source, any = {}, {}
  for _, rec in ipairs(records) do
    local n = M.own(rec)
    local id = tostring(rec.source_id)
    if n then
      if is_export(rec.kind) then source[id] = source[id] or n end
      any[id] = any[id] or n
    end
  end
  local self = { source = source, any = any }
  -- "Source name" or "Source name -> target name" when they differ; nil
  -- when no record of that source object has a name.
  function self.name(rec)
    local id = tostring(rec.source_id)
    local own = M.own(rec)
    local src = source[id] or any[id]
    if own and src and own ~= src and not own:find(src, 1, true) then return src .. " -> " .. own end
    return own or src
  end
  -- "'Name' (source id)", or the id alone.
  function self.label(rec)
    local n = self.name(rec)
    return n and string.format("'%s' (%s)", n, tostring(rec.source_id)) or tostring(rec.source_id)
  end
  return self
end

-- A reason with its ids replaced by <id>: what reasons of the same kind
-- share, for grouping them (UUIDs of QRS, 24-hex ids of Qlik Cloud).
function M.generalize(text)
  return (tostring(text):gsub("%x%x%x%x%x%x%x%x%-[%x%-]+", "<id>")
    :gsub("%f[%w]%x%x%x%x%x%x%x%x%x%x%x%x+%f[%W]", "<id>"))
end

-- M.of(cache) -> the index over every record of a project's cache.
function M.of(cache)
  return M.index(cache:items(nil))
end

return M
