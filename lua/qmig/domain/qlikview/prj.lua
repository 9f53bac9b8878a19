-- QlikView documents on a share, read through their -prj folders (the XML
-- project files QlikView Desktop writes beside Name.qvw into Name-prj/;
-- docs/qlikview.md says what is read from where and which facts are
-- documented and which inferred).  The .qvw itself is binary and never
-- opened.  Every XML file goes through qmig.xml (libexpat): a hostile file
-- (entity declarations, deep nesting, huge attributes) fails its document
-- with "file:line:col: why", never the run.
local fs = require "qmig.fs"
local glob = require "qmig.job.glob"
local hash = require "qmig.hash"
local xml = require "qmig.xml"

local M = {}

-- Largest file read (a -prj file is a few KiB to a few MiB).
M.MAX_FILE = 16 * 1024 * 1024
local MAX_DEPTH = 32   -- folders below the share's root that are searched

-- {====== the share: documents and their -prj folders

-- list(root) -> { {id = "Finance/Sales.qvw", name = "Sales", folder =
-- "Finance", path = abs .qvw, prj = abs Sales-prj or nil}, ... } sorted by id.
function M.list(root)
  local out = {}
  local function walk(dir, rel, depth)
    local names, err = fs.dir(dir)
    if not names then error("qlikview folder " .. dir .. ": " .. tostring(err), 0) end
    local set = {}
    for _, n in ipairs(names) do set[n] = true end
    for _, n in ipairs(names) do
      local full = dir .. "/" .. n
      local st = fs.stat(full)
      local relname = rel == "" and n or (rel .. "/" .. n)
      if st and st.type == "directory" and not n:match("%-prj$") and depth < MAX_DEPTH then
        walk(full, relname, depth + 1)
      elseif st and st.type == "file" and n:lower():match("%.qvw$") then
        local base = n:sub(1, -5)
        local prj = set[base .. "-prj"] and (dir .. "/" .. base .. "-prj") or nil
        local pst = prj and fs.stat(prj)
        out[#out + 1] = { id = relname, name = base, folder = rel, path = full,
          prj = pst and pst.type == "directory" and prj or nil }
      end
    end
  end
  walk(root, "", 0)
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

-- The plan's filters (plan.qlikview): folders (a document in a listed
-- folder or below it), names (globs on the document name), exclude.names.
function M.select(docs, p)
  p = p or {}
  local out = {}
  local function in_folder(doc)
    if not p.folders or #p.folders == 0 then return true end
    for _, f in ipairs(p.folders) do
      f = f:gsub("^/+", ""):gsub("/+$", "")
      if f == "" or doc.folder == f or doc.folder:sub(1, #f + 1) == f .. "/" then return true end
    end
    return false
  end
  local function any(globs, name)
    for _, g in ipairs(globs or {}) do if glob.match(g, name) then return true end end
    return false
  end
  for _, doc in ipairs(docs) do
    local named = not p.names or #p.names == 0 or any(p.names, doc.name)
    local excluded = p.exclude and any(p.exclude.names, doc.name)
    if in_folder(doc) and named and not excluded then out[#out + 1] = doc end
  end
  return out
end

-- folder_digest(dir, names, max_bytes) -> sha256 over the names, sizes and
-- hashes of the files `names` of dir (fs.dir's sorted list).  Only regular
-- files within max_bytes are opened: a FIFO, a device or a symlink to one
-- would block the run or never end; the digest still changes when one
-- appears.  Shared by the -prj folder and the chart exports
-- (qmig.domain.qlikview.exports).
function M.folder_digest(dir, names, max_bytes)
  local parts = {}
  for _, n in ipairs(names) do
    local st = fs.stat(dir .. "/" .. n)
    if st and st.type == "file" and st.size <= max_bytes then
      local hex, size = hash.sha256_file(dir .. "/" .. n)
      if hex then parts[#parts + 1] = n .. ":" .. size .. ":" .. hex end
    elseif st then
      parts[#parts + 1] = n .. ":" .. st.type .. ":" .. st.size
    end
  end
  return hash.sha256(table.concat(parts, "\n"))
end

-- fingerprint(doc) -> the digest of every file of the -prj folder: any
-- change QlikView Desktop saves changes it.
function M.fingerprint(doc)
  if not doc.prj then return "no-prj" end
  return M.folder_digest(doc.prj, assert(fs.dir(doc.prj)), M.MAX_FILE)
end
-- }======

-- {====== reading the XML

local function read(prj, name, optional)
  local path = prj .. "/" .. name
  local st = fs.stat(path)
  if not st then
    if optional then return nil end
    error(path .. ": missing (the -prj folder is incomplete: save the document in QlikView Desktop)", 0)
  end
  -- The share is written by many people: a symlink could carry the
  -- migration host's own files into a Cloud app, a FIFO would block.
  if st.type == "link" then error(path .. ": a symbolic link, not a file: refused", 0) end
  if st.type ~= "file" then error(path .. ": not a regular file: refused", 0) end
  if st.size > M.MAX_FILE then
    error(string.format("%s:1:1: %d bytes, larger than the limit of %d", path, st.size, M.MAX_FILE), 0)
  end
  local text, err = fs.read_file(path)
  -- (fs.read_file's message starts with the path: src/lfs.c, luaL_fileresult)
  if not text then error(tostring(err), 0) end
  return text, path
end

local function parse(prj, name, optional)
  local text, path = read(prj, name, optional)
  if not text then return nil end
  local root, err = xml.decode(text, path, { max_bytes = M.MAX_FILE })
  if not root then error(err, 0) end
  return root
end

-- Elements named `name` anywhere below el, in document order.
local function each(el, name, out)
  out = out or {}
  for _, c in ipairs(el) do
    if type(c) == "table" then
      if c.name == name then out[#out + 1] = c end
      each(c, name, out)
    end
  end
  return out
end

local function child(el, name)
  if not el then return nil end
  for _, c in ipairs(el) do
    if type(c) == "table" and c.name == name then return c end
  end
  return nil
end

-- Text of an element; QlikView wraps some values in <v>.
local function text(el)
  if not el then return "" end
  local v = child(el, "v")
  if v then el = v end
  local parts = {}
  for _, c in ipairs(el) do if type(c) == "string" then parts[#parts + 1] = c end end
  return (table.concat(parts):gsub("^%s+", ""):gsub("%s+$", ""))
end

local function path_text(el, ...)
  for _, name in ipairs { ... } do el = child(el, name) end
  return text(el)
end
-- }======

-- {====== what the converter makes of it

-- QlikView object id prefixes (help.qlik.com, "QlikView Project Files")
local OBJECT_KINDS = {
  LB = "list box", SB = "statistics box", MB = "multi box", TB = "table box", CH = "chart",
  IB = "input box", CS = "current selections box", BU = "button", TX = "text object",
  LA = "line/arrow object", SL = "slider/calendar object", SO = "search object",
  BM = "bookmark object", CT = "container", RP = "report",
}

-- QlikView chart types (GraphMode) with a Qlik Sense equivalent.
local CHART_TYPES = {
  BAR = "barchart", LINE = "linechart", PIE = "piechart",
  STRAIGHTTABLE = "table", PIVOTTABLE = "pivot-table", GAUGE = "kpi",
}

local function graph_mode(root)
  local modes = each(root, "GraphMode")
  local m = (modes[1] and text(modes[1]) or ""):upper():gsub("^GRAPH_MODE_", ""):gsub("[^A-Z]", "")
  return m
end

local function short(s) return hash.sha256(s):sub(1, 16) end

local function chart(root, object_id)
  local mode = graph_mode(root)
  local dims, measures = {}, {}
  for _, dd in ipairs(each(root, "ChartDimensionDataDef")) do
    local pd = child(dd, "PseudoDef")
    local field = path_text(pd, "Name")
    if field ~= "" then
      local title = path_text(dd, "Title")
      dims[#dims + 1] = { field = field, title = title ~= "" and title or field,
        group = path_text(pd, "Type") == "IS_GROUP" }
    end
  end
  for _, md in ipairs(each(root, "MainExpressionData")) do
    local data = child(md, "Data")
    local def = path_text(data, "ExpressionData", "Definition")
    if def ~= "" then
      local label = path_text(data, "ExpressionVisual", "Label")
      measures[#measures + 1] = { expression = (def:gsub("^=%s*", "")), label = label }
    end
  end
  local frame = child(child(root, "GraphLayout"), "Frame")
  local title = path_text(frame, "Name")
  return { id = object_id, mode = mode, type = CHART_TYPES[mode], title = title ~= "" and title or object_id,
    dimensions = dims, measures = measures }
end

-- read(doc, qv_id) -> conversion (docs/qlikview.md, "The conversion").
-- Raises "file:line:col: why" for a file that is not well-formed or
-- refused; a document without a -prj folder raises too.
function M.read(doc, qv_id)
  if not doc.prj then
    error(doc.path .. ": no " .. doc.name .. "-prj folder beside it (create it, open the document in "
      .. "QlikView Desktop and save)", 0)
  end
  local prj = doc.prj
  local project = parse(prj, "QlikViewProject.xml")
  local docprops = parse(prj, "DocProperties.xml", true)
  local allprops = parse(prj, "AllProperties.xml", true)
  local internals = parse(prj, "DocInternals.xml", true)
  local script = read(prj, "LoadScript.txt")
  script = script:gsub("^\239\187\191", "")   -- a UTF-8 BOM
  local module = read(prj, "Module.txt", true) or ""

  local conv = { id = qv_id, doc = doc.id, name = doc.name, folder = doc.folder, script = script,
    variables = {}, dimensions = {}, measures = {}, visualizations = {}, not_carried = {}, sheets = 0 }
  local function skip(what, kind, reason)
    conv.not_carried[#conv.not_carried + 1] = { object = what, type = kind, reason = reason }
  end

  -- variables (DocProperties.xml or AllProperties.xml; see docs)
  local seen_var = {}
  for _, root in ipairs { docprops, allprops } do
    for _, v in ipairs(each(root, "VariableProperties")) do
      local name = path_text(v, "Name")
      if name ~= "" and not seen_var[name] and not name:match("^Script") then
        seen_var[name] = true
        conv.variables[#conv.variables + 1] = { name = name, definition = path_text(v, "RawValue"),
          comment = path_text(v, "Comment") }
      end
    end
  end

  -- master dimensions: groups first, then the charts' field dimensions
  local dim_by_key = {}
  local function add_dim(fields, title, grouping, from)
    local key = grouping .. "\0" .. table.concat(fields, "\0") .. "\0" .. title
    if dim_by_key[key] then return dim_by_key[key] end
    local d = { id = "qv" .. short(qv_id .. "\0dim\0" .. key), title = title, fields = fields,
      grouping = grouping, from = from }
    conv.dimensions[#conv.dimensions + 1] = d
    dim_by_key[key] = d
    return d
  end
  local groups = {}
  for _, root in ipairs { docprops, allprops } do
    for _, g in ipairs(each(root, "GroupProperties")) do
      local name = path_text(g, "Name")
      local fields = {}
      for _, f in ipairs(each(g, "FieldDefinition")) do
        local fname = path_text(f, "Name")
        if fname ~= "" then fields[#fields + 1] = fname end
      end
      if name ~= "" and #fields > 0 and not groups[name] then
        local cyclic = path_text(g, "IsCyclic"):lower() == "true"
        groups[name] = add_dim(fields, name, cyclic and "C" or "H", "group " .. name)
      end
    end
  end

  -- objects, by the sheets of QlikViewProject.xml
  local objects = {}
  for _, sheet in ipairs(each(project, "PrjSheetProperties")) do
    conv.sheets = conv.sheets + 1
    for _, fp in ipairs(each(sheet, "PrjFrameParentDef")) do
      local oid = path_text(fp, "ObjectId"):match("([^\\/]+)$")
      if oid and not objects[oid] then
        objects[oid] = true
        objects[#objects + 1] = oid
      end
    end
  end
  if conv.sheets > 0 then
    skip(conv.sheets .. " sheet(s)", "sheet", "sheets are not rebuilt, by design: the master items are")
  end
  local measure_by_key = {}
  for _, oid in ipairs(objects) do
    local prefix = oid:match("^(%u%u)")
    local kind = OBJECT_KINDS[prefix] or "object"
    if prefix ~= "CH" then
      skip(oid, kind, "no Qlik Sense master item for a QlikView " .. kind)
    else
      local root = parse(prj, oid .. ".xml", true)
      if not root then
        skip(oid, kind, oid .. ".xml is missing from the -prj folder")
      else
        local c = chart(root, oid)
        local vis_dims, vis_measures = {}, {}
        for _, d in ipairs(c.dimensions) do
          local dim = d.group and groups[d.field] or add_dim({ d.field }, d.title, "N", "chart " .. oid)
          vis_dims[#vis_dims + 1] = dim.id
        end
        for i, m in ipairs(c.measures) do
          local label = m.label ~= "" and m.label or (c.title .. " " .. i)
          local key = m.expression .. "\0" .. label
          local meas = measure_by_key[key]
          if not meas then
            -- the id is the place it was first met (chart, expression), not the
            -- expression: the document saved with a changed expression changes
            -- the same master measure (qmig.domain.qlikview.engine)
            meas = { id = "qv" .. short(qv_id .. "\0measure\0" .. oid .. "\0" .. i), title = label,
              expression = m.expression, from = "chart " .. oid }
            conv.measures[#conv.measures + 1] = meas
            measure_by_key[key] = meas
          end
          vis_measures[#vis_measures + 1] = meas.id
        end
        if not c.type then
          skip(oid, "chart (" .. (c.mode ~= "" and c.mode:lower() or "unknown type") .. ")",
            "no Qlik Sense chart type for it: its dimensions and measures are carried as master items")
        elseif c.type == "kpi" and (#vis_measures ~= 1 or #vis_dims > 0) then
          skip(oid, "gauge", "a gauge becomes a KPI only with one expression and no dimension")
        else
          conv.visualizations[#conv.visualizations + 1] = { id = "qv" .. short(qv_id .. "\0vis\0" .. oid),
            type = c.type, title = c.title, dimensions = vis_dims, measures = vis_measures, from = oid }
        end
      end
    end
  end

  -- what has no Qlik Sense counterpart at all
  local code = module:gsub("'[^\n]*", ""):gsub("%s+", "")
  if code ~= "" then skip("Module.txt", "macros", "Qlik Sense has no macros (VBScript/JScript module)") end
  local triggers = {}
  for _, root in ipairs { docprops, allprops } do
    local function walk(el)
      for _, c in ipairs(el) do
        if type(c) == "table" then
          if c.name:match("^On%u") and #c > 0 then triggers[#triggers + 1] = c.name end
          walk(c)
        end
      end
    end
    if root then walk(root) end
  end
  if #triggers > 0 then
    table.sort(triggers)
    skip("triggers", "triggers", "Qlik Sense has no document, field or variable triggers: " ..
      table.concat(triggers, ", "))
  end
  if internals and #each(internals, "DocumentBookmark") + #each(internals, "BookmarkProperties") > 0 then
    skip("bookmarks", "bookmarks", "document bookmarks are not converted")
  end
  if script:lower():find("section%s+access") then
    skip("Section Access", "section access", "the script keeps its Section Access; check the reduction "
      .. "fields and the users (DOMAIN\\user becomes the Cloud subject or email) before reloading")
  end
  return conv
end
-- }======

return M
