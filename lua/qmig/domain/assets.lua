-- Shared helpers of the built-in asset steps (data connections,
-- extensions, themes, tags): QSEoW name clean-up, the
-- credentials file, extension listing from the QRS, dry-run refusals.
local cloud = require "qmig.clients.cloud"
local errors = require "qmig.clients.errors"
local fs = require "qmig.fs"
local glob = require "qmig.job.glob"
local json = require "qmig.json"
local log = require "qmig.ui.log"
local yaml = require "qmig.yaml"

local M = {}


-- QSEoW hub connections carry their owner as a suffix: "Sales DB
-- (corp_jdoe)".  The suffix is removed only when it names the owner of the
-- connection ("(<userDirectory>_<userId>)", case-insensitive), so a name
-- like "Sales (EMEA)" is kept as it is.
function M.strip_owner_suffix(name, owner)
  local base, suffix = name:match("^(.-)%s*%(([^()]+)%)$")
  if not base or base == "" or type(owner) ~= "table" then return name end
  local want = (tostring(owner.userDirectory or "") .. "_" .. tostring(owner.userId or "")):lower()
  if suffix:lower() == want then return base end
  return name
end

-- A path of the QRS listener with every segment percent-encoded.
-- "." and ".." segments are encoded too, so no client or proxy folds them.
function M.encode_path(path)
  return (path:gsub("[^/]+", function(seg)
    if seg == "." or seg == ".." then return (seg:gsub("%.", "%%2E")) end
    return (seg:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
  end))
end

-- Lookup in a map keyed by names: exact key, then case-insensitive, then
-- keys used as globs (most specific = longest first).  names is a list of
-- candidate names (e.g. the full name and the name without owner suffix).
function M.map_entry(map, names)
  if type(map) ~= "table" then return nil end
  for _, n in ipairs(names) do
    if map[n] ~= nil then return map[n], n end
  end
  for _, n in ipairs(names) do
    for k, v in pairs(map) do
      if type(k) == "string" and k:lower() == n:lower() then return v, k end
    end
  end
  local globs = {}
  for k in pairs(map) do
    if type(k) == "string" and k:find("[%*%?]") then globs[#globs + 1] = k end
  end
  table.sort(globs, function(a, b) return #a > #b or (#a == #b and a < b) end)
  for _, g in ipairs(globs) do
    for _, n in ipairs(names) do
      if glob.match(g, n) then return map[g], g end
    end
  end
  return nil
end

-- {====== the credentials file: {connection name: {username, password}}
local loaded = {}

local function interpolate(s, where)
  if type(s) ~= "string" then return s end
  local missing
  local out = s:gsub("%$(%$?){([%w_]*)}", function(escape, name)
    if escape == "$" then return "${" .. name .. "}" end
    local v = os.getenv(name)
    if v == nil then missing = missing or name; return "" end
    return v
  end)
  if missing then
    error(errors.new { message = where .. ": environment variable ${" .. missing .. "} is not set" }, 0)
  end
  return out
end

-- M.credentials(path) -> {name = {username=, password=}} (cached per
-- path); every password is registered with the log so it is redacted
-- wherever it might appear.  Raises a qmig error naming the file (never a
-- value) when the file is malformed.
function M.credentials(path)
  if not path then return {} end
  if loaded[path] then return loaded[path] end
  local st = fs.stat(path)
  if st and (st.mode & 0x3f) ~= 0 then
    error(errors.new { message = path .. ": readable by group or others; chmod 600 it" }, 0)
  end
  local text, err = fs.read_file(path)
  -- (fs.read_file's message starts with the path: src/lfs.c, luaL_fileresult)
  if not text then error(errors.new { message = "cannot read " .. tostring(err) }, 0) end
  local doc, perr = yaml.decode(text, path)
  if doc == nil then error(errors.new { message = tostring(perr) }, 0) end
  if doc == json.null then doc = {} end
  if type(doc) ~= "table" or (next(doc) ~= nil and #doc > 0) then
    error(errors.new { message = path .. ": expected a mapping {connection name: {username, password}}" }, 0)
  end
  local out = {}
  for name, entry in pairs(doc) do
    local where = path .. ": '" .. tostring(name) .. "'"
    if type(entry) ~= "table" then error(errors.new { message = where .. ": expected {username, password}" }, 0) end
    for k in pairs(entry) do
      if k ~= "username" and k ~= "password" then
        error(errors.new { message = where .. ": unknown key '" .. tostring(k) .. "' (username, password)" }, 0)
      end
    end
    local password = interpolate(entry.password, where .. " (password)")
    if password ~= nil and type(password) ~= "string" then password = tostring(password) end
    log.add_secret(password)
    local username = interpolate(entry.username, where .. " (username)")
    out[tostring(name)] = { username = username ~= nil and tostring(username) or nil, password = password }
  end
  loaded[path] = out
  return out
end
-- }======

-- {====== extensions and themes on the QRS
local BUNDLES = { ["qlik-dashboard-bundle"] = true, ["qlik-visualization-bundle"] = true }

-- The .qext reference of an extension: "<name>.qext" first, else the
-- first .qext file.
local function qext_reference(ext)
  local first
  for _, r in ipairs(ext.references or {}) do
    local p = tostring(r.externalPath or r.logicalPath or "")
    if p:lower() == (ext.name .. ".qext"):lower() then return r end
    if not first and p:lower():match("%.qext$") then first = r end
  end
  return first
end

-- Downloads one file of an extension from the QRS listener
-- (/extensions/<name>/<file>, with the Xrfkey like every call).
function M.download(source, logical_path)
  if type(logical_path) ~= "string" or not logical_path:match("^/extensions/") then
    error(errors.new { message = "unexpected extension file path '" .. tostring(logical_path) .. "'" }, 0)
  end
  local resp = source:request("GET", M.encode_path(logical_path))
  return resp.body or ""
end

-- Every extension of the QRS with its parsed .qext, classified:
-- {id, name, modifiedDate, references, qext, theme = bool, bundled = bool,
-- cloud_name}.  Bundled (Qlik's own) extensions are left out.
function M.extensions(ctx, want_themes)
  local out = {}
  for _, ext in ipairs(ctx.source:full("extension")) do
    local ref = qext_reference(ext)
    local qext = {}
    if ref then
      local ok, value = pcall(json.decode, M.download(ctx.source, ref.logicalPath))
      if ok and type(value) == "table" then qext = value end
    end
    local bundle = type(qext.bundle) == "table" and qext.bundle.id or nil
    local bundled = (bundle ~= nil and (BUNDLES[bundle] or tostring(bundle):match("^qlik%-") ~= nil)) or false
    local theme = type(qext.type) == "string" and qext.type:lower() == "theme"
    if not bundled and theme == (want_themes or false) then
      local refs = {}
      for _, r in ipairs(ext.references or {}) do
        refs[#refs + 1] = { logicalPath = r.logicalPath, externalPath = r.externalPath }
      end
      table.sort(refs, function(a, b) return tostring(a.logicalPath) < tostring(b.logicalPath) end)
      local cloud_name = type(qext.name) == "string" and qext.name ~= "" and qext.name or ext.name
      out[#out + 1] = {
        id = ext.id, name = ext.name, modifiedDate = ext.modifiedDate, references = refs,
        qext = qext, theme = theme, cloud_name = cloud_name,
      }
    end
  end
  return out
end
-- }======

-- Refuses a local write in a dry run the way the target client refuses
-- API writes: the engine reports the item as "would <verb>".
function M.dry_run_refusal(verb, what)
  error(setmetatable({ method = verb, path = what }, cloud.DryRun), 0)
end


-- A JSON reply of target:request (multipart uploads).
function M.decode(resp)
  if not resp.body or resp.body == "" then return nil end
  return json.decode(resp.body)
end

return M
