-- qmig.domain.validation.workbook: the validation spreadsheet of one run,
-- validations/<job>/<run>.xlsx in the project folder (qmig.xlsx):
-- "Summary", one row per app, and "Differences", one row per difference
-- found (the first ones of each app, as the step keeps them).
--
--   workbook.write(path, apps) -> true | nil, msg, code
--   apps: the rows apps.validate records (qmig.domain.validation.rows), sorted.
local fs = require "qmig.fs"
local xlsx = require "qmig.xlsx"

local M = {}

M.SUMMARY = { { "source_id", "Source app id", 38 }, { "name", "App", 30 }, { "target_id", "Qlik Cloud app id", 38 },
  { "outcome", "Outcome", 10 }, { "tables", "Tables", 8 }, { "rows", "Rows (source)", 14 },
  { "target_rows", "Rows (Qlik Cloud)", 16 }, { "fields", "Fields", 8 }, { "charts", "Charts", 8 },
  { "cells", "Cells compared", 14 }, { "differences", "Differences", 12 }, { "details", "First differences", 80 } }
M.DIFFERENCES = { { "source_id", "Source app id", 38 }, { "name", "App", 30 }, { "check", "Check", 12 },
  { "object", "Object", 50 }, { "where", "Where", 40 }, { "source", "Source", 20 }, { "target", "Qlik Cloud", 20 } }

local MAX_TEXT = 32767  -- characters in one Excel cell

-- Text as Excel takes it: valid UTF-8 (a byte that is not becomes "?"),
-- no zero byte, not longer than a cell holds.
local function cell_text(v)
  local s = tostring(v)
  if not utf8.len(s) then
    local out, i = {}, 1
    while i <= #s do
      local ok, nxt = pcall(utf8.offset, s, 2, i)
      local ch = ok and nxt and s:sub(i, nxt - 1) or nil
      if ch and utf8.len(ch) then out[#out + 1] = ch; i = nxt else out[#out + 1] = "?"; i = i + 1 end
    end
    s = table.concat(out)
  end
  s = s:gsub("%z", "")
  if utf8.len(s) > MAX_TEXT then s = s:sub(1, utf8.offset(s, MAX_TEXT + 1) - 1) end
  return s
end

local function sheet(wb, name, columns, rows)
  local s = wb:add_sheet(name)
  for c, col in ipairs(columns) do
    wb:write(s, 0, c - 1, col[2], "bold")
    wb:set_column(s, c - 1, c - 1, col[3])
  end
  for r, row in ipairs(rows) do
    for c, col in ipairs(columns) do
      local v = row[col[1]]
      if type(v) == "number" then wb:write(s, r, c - 1, v)
      elseif v ~= nil and v ~= "" then wb:write(s, r, c - 1, cell_text(v)) end
    end
  end
end

function M.write(path, apps)
  local ok, err, code = fs.mkdirs(fs.dirname(path), 448)
  if not ok then return nil, err, code end
  local tmp = path .. ".tmp"
  local wb, oerr, ocode = xlsx.open(tmp)
  if not wb then return nil, oerr, ocode end
  local diffs = {}
  for _, a in ipairs(apps) do
    for _, d in ipairs(a.first_differences or {}) do
      diffs[#diffs + 1] = { source_id = a.source_id, name = a.name, check = d.check, object = d.object,
        where = d.where, source = d.source, target = d.target }
    end
  end
  sheet(wb, "Summary", M.SUMMARY, apps)
  sheet(wb, "Differences", M.DIFFERENCES, diffs)
  local closed, cerr, ccode = wb:close()
  if not closed then
    os.remove(tmp)
    return nil, path .. ": " .. tostring(cerr), ccode
  end
  fs.chmod(tmp, 384)
  return fs.rename(tmp, path)
end

return M
