-- The chart exports qvapps.validate compares converted charts with: the
-- files QlikView writes when a user exports a chart ("Export..." on the
-- object menu; docs/qlikview.md, "Validating converted charts"), put in
-- the job's source.qlikview.exports folder as
--   <exports>/<document path without .qvw>/<chart object id>.csv  (Comma Delimited)
--   <exports>/<document path without .qvw>/<chart object id>.qvo  (QlikView's default: Tab Delimited)
-- A file is a header row (the dimension labels, then the expression
-- labels) and one row per chart row, with the values as displayed; a field
-- with the delimiter, a quote or a line break is quoted, a quote doubled
-- (RFC 4180).  That layout is inferred (docs/qlikview.md).
--
--   exports.find(folder, doc_id, object_id) -> path | nil
--   exports.fingerprint(folder, doc_id) -> a hash of the document's exports
--   exports.read(path) -> {header = {...}, rows = {{...}, ...}, lines = {n, ...}}
--                         | nil, "path:line: why"
local fs = require "qmig.fs"
local prj = require "qmig.domain.qlikview.prj"

local M = {}

M.MAX_BYTES = 64 * 1024 * 1024   -- a chart's export; more is not a chart a user exported

local EXTENSIONS = { { "csv", "," }, { "qvo", "\t" } }

function M.find(folder, doc_id, object_id)
  if not folder then return nil end
  local base = folder .. "/" .. doc_id:gsub("%.[Qq][Vv][Ww]$", "") .. "/" .. object_id
  for _, e in ipairs(EXTENSIONS) do
    local st = fs.stat(base .. "." .. e[1])
    if st and st.type == "file" then return base .. "." .. e[1] end
  end
  return nil
end

-- The export files of a document whose name is no object id in `known`
-- (a set): a file named after a chart's title, or a mistyped id, would
-- otherwise be passed over without a word while its chart shows as "no
-- export".
function M.unmatched(folder, doc_id, known)
  if not folder then return {} end
  local out = {}
  for _, n in ipairs(fs.dir(folder .. "/" .. doc_id:gsub("%.[Qq][Vv][Ww]$", "")) or {}) do
    local stem, ext = n:match("^(.*)%.(%w+)$")
    ext = ext and ext:lower()
    if (ext == "csv" or ext == "qvo") and not known[stem] then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

-- A document validated again once one of its charts is exported again.
function M.fingerprint(folder, doc_id)
  if not folder then return "no exports" end
  local dir = folder .. "/" .. doc_id:gsub("%.[Qq][Vv][Ww]$", "")
  -- only regular files are opened, as find() only returns those
  return prj.folder_digest(dir, fs.dir(dir) or {}, M.MAX_BYTES)
end

local function delimiter_of(path)
  for _, e in ipairs(EXTENSIONS) do
    if path:sub(-#e[1] - 1):lower() == "." .. e[1] then return e[2] end
  end
  return ","
end

-- Records of a delimited text: {fields, line} each, or nil, line, why.
local function records(text, delim)
  local out, i, n, line = {}, 1, #text, 1
  while i <= n do
    local fields, start = {}, line
    while true do
      local field
      if text:sub(i, i) == '"' then
        local parts, j = {}, i + 1
        while true do
          local q = text:find('"', j, true)
          if not q then return nil, start, "a quoted field is not closed" end
          parts[#parts + 1] = text:sub(j, q - 1)
          if text:sub(q + 1, q + 1) == '"' then
            parts[#parts + 1] = '"'
            j = q + 2
          else
            j = q + 1
            break
          end
        end
        field = table.concat(parts)
        for _ in field:gmatch("\n") do line = line + 1 end
        i = j
        local c = text:sub(i, i)
        if c ~= delim and c ~= "\r" and c ~= "\n" and c ~= "" then
          return nil, line, "text after a quoted field's closing quote"
        end
      else
        local stop = i
        while stop <= n do
          local c = text:sub(stop, stop)
          if c == delim or c == "\r" or c == "\n" then break end
          if c == '"' then return nil, line, "a quote inside a field that does not start with one" end
          stop = stop + 1
        end
        field = text:sub(i, stop - 1)
        i = stop
      end
      fields[#fields + 1] = field
      local c = text:sub(i, i)
      if c == delim then
        i = i + 1
      else
        if c == "\r" and text:sub(i + 1, i + 1) == "\n" then i = i + 2 elseif c ~= "" then i = i + 1 end
        line = line + 1
        break
      end
    end
    out[#out + 1] = { fields = fields, line = start }
  end
  return out
end

function M.read(path)
  local st = fs.stat(path)
  if st and st.size and st.size > M.MAX_BYTES then
    return nil, string.format("%s:1: %d bytes, more than a chart export (%d) holds", path, st.size, M.MAX_BYTES)
  end
  local text, err = fs.read_file(path)
  -- (fs.read_file's message starts with the path: src/lfs.c, luaL_fileresult)
  if not text then return nil, tostring(err) end
  text = text:gsub("^\239\187\191", "")   -- a UTF-8 byte-order mark
  local valid, bad = utf8.len(text)
  if not valid then
    local _, nl = text:sub(1, bad):gsub("\n", "")
    return nil, string.format("%s:%d: not UTF-8 text (byte %d)", path, nl + 1, bad)
  end
  local recs, line, why = records(text, delimiter_of(path))
  if not recs then return nil, string.format("%s:%d: %s", path, line, why) end
  -- blank lines (a trailing one, say) are no rows
  local kept = {}
  for _, r in ipairs(recs) do
    if not (#r.fields == 1 and r.fields[1] == "") then kept[#kept + 1] = r end
  end
  if #kept == 0 then return nil, path .. ":1: empty: no header row" end
  local header = kept[1].fields
  local out = { header = header, rows = {}, lines = {} }
  for k = 2, #kept do
    local r = kept[k]
    if #r.fields ~= #header then
      return nil, string.format("%s:%d: %d field(s), the header row has %d", path, r.line, #r.fields, #header)
    end
    out.rows[#out.rows + 1] = r.fields
    out.lines[#out.lines + 1] = r.line
  end
  return out
end

return M
