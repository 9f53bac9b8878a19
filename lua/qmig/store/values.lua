-- Values in and out of the project's cache (lua/qmig/store/cache.lua): JSON
-- columns, free text (redacted, capped), keys, booleans.
local log = require "qmig.ui.log"

local M = {}

local MAX_TEXT = 4000  -- an error message longer than this is noise

local json_mod
local function json()
  if not json_mod then json_mod = require "qmig.json" end
  return json_mod
end

-- Everything stored is redacted: secrets never reach the cache.  What must
-- come back byte for byte (a script to restore) is kept in a file of the
-- project instead (see apps.scripts' undo entries).
function M.encode(v)
  if v == nil then return nil end
  return json().encode(log.redact(v), { sort_keys = true })
end

function M.decode(s)
  if s == nil then return nil end
  local v, err = json().decode(s)
  if v == nil and err then error("cache: stored JSON is unreadable: " .. err, 3) end
  return v
end

function M.text(s)
  if s == nil then return nil end
  s = log.redact(tostring(s))
  if #s > MAX_TEXT then s = s:sub(1, MAX_TEXT) .. "..." end
  return s
end

-- An error value as one line of text (error objects may be tables).
function M.error_text(err)
  if type(err) == "table" then
    if type(err.message) == "string" then return M.text(err.message) end
    local ok, s = pcall(M.encode, err)
    return M.text(ok and s or tostring(err))
  end
  return M.text(err)
end

function M.check_key(kind, source_id)
  if type(kind) ~= "string" or kind == "" then error("cache: kind must be a non-empty string", 3) end
  local t = type(source_id)
  if t ~= "string" and t ~= "number" then error("cache: source_id must be a string", 3) end
  return kind, tostring(source_id)
end

function M.item_out(row)
  if row == nil then return nil end
  row.data = M.decode(row.data)
  row.created_by_us = row.created_by_us == 1
  return row
end

function M.items_out(rows)
  for i, row in ipairs(rows) do rows[i] = M.item_out(row) end
  return rows
end

function M.bool(v)
  if v == nil then return nil end
  return v and 1 or 0
end

return M
