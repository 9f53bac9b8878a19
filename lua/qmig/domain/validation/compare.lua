-- qmig.domain.validation.compare: an app at the source against its migrated copy,
-- by their data, as Qlik's own validation does: both have data; tables
-- with their row counts; fields with their cardinality; every chart on
-- the public sheets by its hypercube (dimension values as text, measure
-- values as numbers within a tolerance); objects on one side only;
-- master items and variables by count.
--
--   local result = compare.app(source_doc, target_doc [, opts])
--   -- {outcome = "equal" | "differs" | "no data", no_data = nil | "source" | "target" | "both",
--   --  counts = {tables, rows, fields, charts, cells}, differences = {{check, object, where,
--   --  source, target}, ...}} | nil, msg, code (an engine call failed)
--
-- Differences are listed in the order they are found, at most
-- opts.max_differences (20) per app and opts.max_cells (5) cells per chart:
-- the first ones, what a reader needs to see what went wrong.
local json = require "qmig.json"
local read = require "qmig.domain.validation.read"

local M = {}

M.RELATIVE = 1e-6   -- |a - b| <= ABSOLUTE + RELATIVE * max(|a|, |b|): reload rounding, not data
M.ABSOLUTE = 1e-9

function M.same_number(a, b)
  if a == b then return true end
  return math.abs(a - b) <= M.ABSOLUTE + M.RELATIVE * math.max(math.abs(a), math.abs(b))
end

local function num(cell)
  local v = type(cell) == "table" and cell.qNum or nil
  if type(v) == "number" and v == v then return v end
  return nil
end

local function text(cell)
  if type(cell) ~= "table" then return nil end
  return cell.qText ~= nil and tostring(cell.qText) or nil
end

-- Cells of one chart's rows: compare.cells(chart_a, chart_b, max) ->
-- differences {{where, source, target}} (the first max), cells compared,
-- differences in all.  Dimension
-- columns compare as text, measures as numbers when both are numbers.
function M.cells(a, b, max)
  max = max or 5
  local out, compared, differing = {}, 0, 0
  local titles = {}
  for _, d in ipairs(a.dims or {}) do titles[#titles + 1] = d end
  for _, m in ipairs(a.measures or {}) do titles[#titles + 1] = m end
  local ndims = #(a.dims or {})
  local ra, rb = a.rows or {}, b.rows or {}
  if #ra ~= #rb then
    out[#out + 1] = { where = "rows", source = #ra, target = #rb }
  end
  for r = 1, math.min(#ra, #rb) do
    local row_a, row_b = ra[r], rb[r]
    local label = text(row_a[1]) or ""
    for c = 1, math.max(#row_a, #row_b) do
      compared = compared + 1
      local ca, cb = row_a[c], row_b[c]
      local same
      local na, nb = num(ca), num(cb)
      if c > ndims and na and nb then
        same = M.same_number(na, nb)
      else
        same = text(ca) == text(cb)
      end
      if not same then
        differing = differing + 1
        if #out < max then
          out[#out + 1] = { where = string.format("row %d (%s), %s", r, label, titles[c] or ("column " .. c)),
            source = text(ca) or "(none)", target = text(cb) or "(none)" }
        end
      end
    end
  end
  return out, compared, differing + (#ra ~= #rb and 1 or 0)
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- Named counts on both sides: compare.counts(check, a, b, what) -> differences
function M.named(check, a, b, what)
  local out = {}
  for _, name in ipairs(sorted_keys(a)) do
    if b[name] == nil then
      out[#out + 1] = { check = check, object = name, where = "only in the source", source = a[name], target = "" }
    elseif a[name] ~= b[name] then
      out[#out + 1] = { check = check, object = name, where = what, source = a[name], target = b[name] }
    end
  end
  for _, name in ipairs(sorted_keys(b)) do
    if a[name] == nil then
      out[#out + 1] = { check = check, object = name, where = "only in Qlik Cloud", source = "", target = b[name] }
    end
  end
  return out
end

-- Objects on one side only: by id, with their type.
function M.objects(a, b)
  local out = {}
  for _, id in ipairs(sorted_keys(a)) do
    if b[id] == nil then
      out[#out + 1] = { check = "object", object = a[id] .. " " .. id, where = "only in the source",
        source = a[id], target = "" }
    end
  end
  for _, id in ipairs(sorted_keys(b)) do
    if a[id] == nil then
      out[#out + 1] = { check = "object", object = b[id] .. " " .. id, where = "only in Qlik Cloud",
        source = "", target = b[id] }
    end
  end
  return out
end

local function chart_name(c, sheet)
  return string.format("%s '%s' (%s) on sheet '%s'", tostring(c.type or "object"), tostring(c.title),
    tostring(c.id), tostring(sheet))
end

local function both(fn, a, b, ...)
  local ra, err, code = fn(a, ...)
  if not ra then return nil, "source: " .. tostring(err), code end
  local rb, berr, bcode = fn(b, ...)
  if not rb then return nil, "Qlik Cloud: " .. tostring(berr), bcode end
  return ra, rb
end

function M.app(src, tgt, opts)
  opts = opts or {}
  local max = opts.max_differences or 20
  local result = { differences = json.array(), counts = { tables = 0, rows = 0, fields = 0, charts = 0, cells = 0 } }
  local diffs = result.differences
  result.found = 0   -- differences in all (the list keeps the first max)
  local function add(list, n)
    for _, d in ipairs(list) do
      if #diffs < max then diffs[#diffs + 1] = d end
    end
    result.found = result.found + (n or #list)
  end

  local ma, mb = both(read.model, src, tgt)
  if not ma then return nil, mb end
  result.counts.tables, result.counts.rows, result.counts.fields = #ma.table_names, ma.rows, #ma.field_names
  result.counts.target_rows = mb.rows
  if ma.rows == 0 or mb.rows == 0 then
    result.no_data = (ma.rows == 0 and mb.rows == 0) and "both" or (ma.rows == 0 and "source" or "target")
    result.outcome = "no data"
    if result.no_data ~= "both" then
      add { { check = "data", object = "app", where = "rows in all tables", source = ma.rows, target = mb.rows } }
      result.outcome = "differs"
    end
    return result
  end
  add(M.named("table", ma.tables, mb.tables, "rows"))
  add(M.named("field", ma.fields, mb.fields, "cardinality"))

  local ia, ib = both(read.infos, src, tgt)
  if not ia then return nil, ib end
  add(M.objects(ia, ib))

  local ca, cb = both(read.counts, src, tgt)
  if not ca then return nil, cb end
  for _, kind in ipairs { "dimensions", "measures", "masterobjects", "variables" } do
    if ca[kind] ~= cb[kind] then
      add { { check = kind == "variables" and "variables" or "master items", object = kind, where = "count",
        source = ca[kind], target = cb[kind] } }
    end
  end

  local charts, cerr, ccode = read.charts(src)
  if not charts then return nil, "source: " .. tostring(cerr), ccode end
  for _, ref in ipairs(charts) do
    local a, aerr, acode = read.chart(src, ref.id)
    if not a then return nil, "source: " .. tostring(aerr), acode end
    local b, berr, bcode = read.chart(tgt, ref.id)
    if not b and bcode ~= "not_found" then return nil, "Qlik Cloud: " .. tostring(berr), bcode end
    result.counts.charts = result.counts.charts + 1
    local name = chart_name(a, ref.sheet)
    if not b then
      -- GetAllInfos reported it already when the app does not have it
      if ib[ref.id] then add { { check = "chart", object = name, where = "not found", source = "", target = "" } } end
    elseif a.error or b.error then
      if a.error ~= b.error then
        add { { check = "chart", object = name, where = "calculation error", source = tostring(a.error or ""),
          target = tostring(b.error or "") } }
      end
    elseif a.rows then
      local cells, n, differing = M.cells(a, b, opts.max_cells)
      result.counts.cells = result.counts.cells + n
      for _, d in ipairs(cells) do d.check, d.object = "chart", name end
      add(cells, differing)
    end
  end
  result.outcome = result.found > 0 and "differs" or "equal"
  return result
end

-- A one-line summary of the first differences, for the item's reason.
function M.summary(result, n)
  n = n or 3
  local parts, last = {}, nil
  for i = 1, math.min(n, #result.differences) do
    local d = result.differences[i]
    local head = d.check .. " " .. d.object
    -- the object once, then its cells
    parts[#parts + 1] = string.format("%s%s: source %s, Qlik Cloud %s", head ~= last and (head .. ": ") or "",
      d.where, tostring(d.source), tostring(d.target))
    last = head
  end
  local more = (result.found or #result.differences) - #parts
  if more > 0 then parts[#parts + 1] = string.format("and %d more", more) end
  return table.concat(parts, "; ")
end

return M
