-- The data-connection rename table for apps.scripts: for every QSEoW
-- connection, where it lives in Qlik Cloud ({source, space, name,
-- connect}), from what dataconnections.migrate recorded (kind
-- "dataconnection", data {name, space_id [, space_name]}), else from the plan's
-- data_connections.map ({space = <final space name>, name = <optional>}).
-- Connections with no known space are left out: an unqualified reference
-- would resolve against a different space in staging and after publish.
local assets = require "qmig.domain.assets"
local common = require "qmig.domain.apps"
local hash = require "qmig.hash"
local json = require "qmig.json"

local M = {}

function M.build(ctx)
  local names = common.space_names(ctx)
  local plan = ctx.plan or {}
  local map = plan.data_connections and plan.data_connections.map or {}
  local out = {}
  for _, c in ipairs(ctx.source:full("dataconnection")) do
    local rec = common.done(ctx, "dataconnection", c.id)
    local entry
    if rec and type(rec.data) == "table" and rec.data.space_id then
      local space = rec.data.space_name or names[rec.data.space_id]
      if space then
        entry = { source = c.name, space = space, name = rec.data.name or c.name, connect = c.connectionstring }
      end
    end
    -- the same resolution as dataconnections.migrate: exact name, name
    -- without the owner suffix, any case, then globs
    local clean = assets.strip_owner_suffix(c.name, c.owner)
    local m = assets.map_entry(map, { c.name, clean })
    if not entry and type(m) == "table" and m.space then
      -- the name dataconnections.migrate gives it: without the owner suffix
      entry = { source = c.name, space = m.space, name = m.name or clean, connect = c.connectionstring }
    end
    if entry then
      out[#out + 1] = entry
      -- scripts may name a hub connection with or without its owner suffix
      if clean ~= c.name then
        out[#out + 1] = { source = clean, space = entry.space, name = entry.name, connect = entry.connect }
      end
    end
  end
  table.sort(out, function(a, b) return a.source < b.source end)
  return out
end

-- A digest of the table and the rules: part of apps.scripts' fingerprint,
-- so changing either rewrites the scripts again on the next run.
function M.digest(conns, rules)
  local parts = {}
  for _, c in ipairs(conns) do parts[#parts + 1] = { c.source, c.space, c.name, c.connect or "" } end
  return hash.sha256(json.encode({ conns = parts, rules = rules or {} }, { sort_keys = true }))
end

return M
