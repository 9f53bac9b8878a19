-- Loading a job file (docs/job-file.md): YAML or a .lua file returning the same
-- table.  Everything is checked before anything is contacted; the errors
-- name the file and line.  Secrets found on the way are registered with
-- the log so they are redacted everywhere.
local S = require "qmig.job.schema"
local catalogue = require "qmig.job.catalogue"
local fs = require "qmig.fs"
local json = require "qmig.json"
local log = require "qmig.ui.log"
local packopts = require "qmig.job.packopts"
local yaml = require "qmig.yaml"

local M = {}

local function step_name(name)
  -- a 10 MB name would keep the "did you mean" search busy for minutes
  if #name > 100 then return false, string.format("a step name of %d characters is not a step name", #name) end
  if name:match("^[%w_]+%.[%w_]+$") then return true end
  local hint = catalogue.nearest(name, catalogue.names())
  return false, string.format("'%s' is not a step name (category.action)%s", name,
    hint and (" (did you mean '" .. hint .. "'?)") or "")
end

local function is_string(v) return type(v) == "string" end
local function is_table(v) return type(v) == "table" end

local strings = S.list(S.string())

-- Lua reports a malformed pattern only when matching reaches the bad
-- part, so pcall(string.find, "", p) passes "CONNECT %[(" and every app
-- script would fail later, in apps.scripts.  This walks the pattern
-- syntax once; returns the number of captures, or nil, why.
local function pattern_syntax(p)
  local i, n, depth, captures = 1, #p, 0, 0
  local function class_end(j)  -- j at "[": index of the closing "]"
    j = j + 1
    if p:sub(j, j) == "^" then j = j + 1 end
    repeat  -- the first character may be "]"
      if j > n then return nil end
      if p:sub(j, j) == "%" then
        if j == n then return nil end
        j = j + 1
      end
      j = j + 1
    until p:sub(j, j) == "]"
    return j
  end
  while i <= n do
    local c = p:sub(i, i)
    if c == "%" then
      local d = p:sub(i + 1, i + 1)
      if d == "" then return nil, "pattern ends with '%'" end
      if d == "b" then
        if i + 3 > n then return nil, "missing arguments to '%b'" end
        i = i + 4
      elseif d == "f" then
        if p:sub(i + 2, i + 2) ~= "[" then return nil, "missing '[' after '%f' in pattern" end
        local e = class_end(i + 2)
        if not e then return nil, "malformed pattern (missing ']')" end
        i = e + 1
      elseif d:match("%d") then
        local k = tonumber(d)
        if k == 0 or k > captures then return nil, "invalid capture index %" .. d end
        i = i + 2
      else
        i = i + 2
      end
    elseif c == "[" then
      local e = class_end(i)
      if not e then return nil, "malformed pattern (missing ']')" end
      i = e + 1
    elseif c == "(" then
      depth, captures = depth + 1, captures + 1
      if captures > 32 then return nil, "too many captures" end
      i = i + 1
    elseif c == ")" then
      if depth == 0 then return nil, "invalid pattern capture (a ')' without '(')" end
      depth, i = depth - 1, i + 1
    else
      i = i + 1
    end
  end
  if depth > 0 then return nil, "unfinished capture (a '(' without ')')" end
  return captures
end
M.pattern_syntax = pattern_syntax

-- A gsub replacement may name %0..%9 up to the number of captures.
local function replacement_syntax(r, captures)
  local i = 1
  while true do
    local at = r:find("%", i, true)
    if not at then return true end
    local d = r:sub(at + 1, at + 1)
    if d:match("%d") then
      if tonumber(d) > math.max(captures, 1) then return nil, "the replacement names capture %" .. d
        .. " but the pattern has " .. captures end
    elseif d ~= "%" then
      return nil, "invalid use of '%' in the replacement (write '%%' for a percent sign)"
    end
    i = at + 2
  end
end

-- URLs are checked here, not by the first request: "ftp://x" or a
-- missing scheme is a configuration error (exit 2), not a failed run.
local function http_url(url)
  if url:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/%s?#]+") and not url:find("%s") then return true end
  return false, "must be an http:// or https:// URL, got '" .. url:sub(1, 100) .. "'"
end

local function engine_url(url)
  local scheme = url:match("^(%a+)://[^/%s?#]+")
  if scheme and not url:find("%s") and ({ http = true, https = true, ws = true, wss = true })[scheme:lower()] then
    return true
  end
  return false, "must be a wss://, ws:// or https:// URL, got '" .. url:sub(1, 100) .. "'"
end

-- The QRS user: sent as X-Qlik-User: UserDirectory=DIR; UserId=ID, so
-- a value without DIR\ used to raise inside qrs.new (a traceback).
local function qrs_user(user)
  if user:match("^[^\\;=]+\\[^;=]+$") and not user:find("[%c]") then return true end
  return false, "must look like DIRECTORY\\userid (e.g. 'INTERNAL\\sa_api'), got '" .. user:sub(1, 100) .. "'"
end

-- The account NTLM authenticates: curl splits DOMAIN\user at the backslash
-- (the form of an NPrinting user's domain account).
local function windows_account(user)
  if user:match("^[^\\/@%c]+\\[^\\/@%c]+$") then return true end
  return false, "must look like DOMAIN\\user (e.g. 'CORP\\svc_nprinting'), got '" .. user:sub(1, 100) .. "'"
end

M.schema = S.record {
  version = S.integer { required = true, min = 1, max = 1 },
  project = S.oneof({
    S.string { accepts = is_string, nonempty = true },
    S.record({ name = S.string { required = true, nonempty = true }, dir = S.string() }, { accepts = is_table }),
  }, { describe = "a project name or {name, dir}", required = true }),
  source = S.record({
    type = S.enum({ "qrs" }, { required = true }),
    url = S.string { required = true, nonempty = true, validate = http_url },
    cert = S.path { exists = true },
    key = S.path { exists = true },
    ca = S.path { exists = true },
    insecure = S.boolean { default = false },
    user = S.string { default = "INTERNAL\\sa_api", validate = qrs_user },
    key_password = S.string { secret = true },
    header = S.string(),          -- header authentication through a virtual proxy
    jwt = S.string { secret = true },
    -- the engine (apps.validate): default the QRS host on port 4747 when the
    -- QRS is on 4242, else the QRS URL's origin (qmig.domain.validation.engines)
    engine_url = S.string { nonempty = true, validate = engine_url },
    -- QlikView documents: a folder (a mounted share) of .qvw files, each
    -- read through its -prj folder (docs/qlikview.md)
    qlikview = S.record {
      folder = S.path { required = true, exists = true, folder = true },
      -- the charts' exports from QlikView (qvapps.validate): <document path
      -- without .qvw>/<chart object id>.csv or .qvo
      exports = S.path { exists = true, folder = true },
    },
  }, { required = true }),
  target = S.record({
    type = S.enum({ "cloud" }, { required = true }),
    url = S.string { required = true, nonempty = true, validate = http_url },
    api_key = S.string { secret = true, nonempty = true },
    -- OAuth machine-to-machine instead of api_key (qmig.clients.oauth)
    oauth = S.record({
      client_id = S.string { required = true, nonempty = true },
      client_secret = S.string { secret = true, nonempty = true },
      client_secret_file = S.path { exists = true, private = true },  -- a 0600 file holding the secret
      scope = S.string { default = "admin_classic", nonempty = true },
    }, { validate = function(o)
      if (o.client_secret == nil) == (o.client_secret_file == nil) then
        return false, "give exactly one of 'client_secret' or 'client_secret_file'"
      end
      return true
    end }),
    ca = S.path { exists = true },
    insecure = S.boolean { default = false },
    engine_url = S.string { nonempty = true, validate = engine_url },  -- default: url as wss://
  }, { required = true }),
  -- a Qlik NPrinting server next to the site (the nprinting.* steps; docs/nprinting.md)
  nprinting = S.record({
    url = S.string { required = true, nonempty = true, validate = http_url },  -- https://<server>:4993
    jwt = S.string { secret = true, nonempty = true },  -- NPrinting JWT authentication
    -- Windows authentication: the Windows account of an NPrinting user (its domain account)
    ntlm = S.record {
      username = S.string { required = true, validate = windows_account },
      password = S.string { secret = true, required = true, nonempty = true },
    },
    ca = S.path { exists = true },
    insecure = S.boolean { default = false },
    -- the folder of report templates exported from NPrinting's web console (<report id>.<ext>)
    export = S.path(),
  }, { validate = function(np)
    if (np.jwt == nil) == (np.ntlm == nil) then return false, "give exactly one of 'jwt' or 'ntlm'" end
    return true
  end }),
  plan = S.record({
    -- which NPrinting apps and reports: names (globs), report tags
    nprinting = S.record { apps = strings, reports = strings, tags = strings },
    apps = S.record {
      streams = strings, personal = S.boolean { default = false }, names = strings, tags = strings,
      exclude = S.record { names = strings, tags = strings },
      export_scope = S.enum({ "all", "published", "approved" }, { default = "all" }),
      with_data = S.boolean { default = false },
      publish = S.boolean { default = true },
      large_app_mb = S.integer { min = 0, default = 512 },  -- larger QVFs go through temp-contents
      shares = S.map(S.list(S.record {
        user = S.string(), group = S.string(), roles = strings,
      })),
    },
    spaces = S.record {
      prefix = S.string { default = "" }, suffix = S.string { default = "" },
      map = S.map(S.record { name = S.string(), type = S.enum { "shared", "managed", "data" } }),
      staging = S.string { default = "Migration staging" },
      assignments = S.map(S.list(S.record { user = S.string(), group = S.string(), roles = strings })),
      owners = S.map(S.string()),
    },
    users = S.record {
      domains = S.map(S.string()), map = S.map(S.string()),
      skip_directories = S.list(S.string(), { default = json.array { "INTERNAL" } }),
      create_missing = S.boolean { default = false },
      scope = S.enum({ "content", "all" }, { default = "content" }),  -- which QRS users (identity/users.lua)
    },
    data_connections = S.record {
      names = strings,
      map = S.map(S.record { space = S.string(), name = S.string() }),
      credentials = S.path { exists = true, private = true },
    },
    -- which QlikView documents, and where they go (docs/qlikview.md)
    qlikview = S.record {
      folders = strings, names = strings, exclude = S.record { names = strings },
      spaces = S.map(S.string()),   -- folder -> target space name (default: the staging space)
      owners = S.map(S.string()),   -- document (folder/name.qvw or name) -> owner (email or subject)
      publish = S.map(S.string()),  -- folder -> managed space name the converted app is published to
    },
    scripts = S.record {
      replace = S.list(S.record({ find = S.string(), pattern = S.string(), replace = S.string { required = true } }, {
        validate = function(r)
          if (r.find == nil) == (r.pattern == nil) then return false, "give exactly one of 'find' or 'pattern'" end
          if r.pattern then
            local ok, err = pcall(string.find, "", r.pattern)
            if not ok then return false, "bad Lua pattern: " .. tostring(err):gsub("^.-: ", "") end
            local captures, why = pattern_syntax(r.pattern)
            if not captures then return false, "bad Lua pattern: " .. why end
            if r.replace then
              ok, why = replacement_syntax(r.replace, captures)
              if not ok then return false, "bad replacement: " .. why end
            end
          end
          return true
        end,
      })),
    },
  }, { default = {} }),
  transforms = S.path { exists = true },
  steps_path = S.list(S.path()),
  options = S.record({
    concurrency = S.integer { min = 1, max = 256, default = 8 },
    -- connections per host (the QRS or the tenant) at most; more requests
    -- to one host wait for a free connection.  Unset: only concurrency bounds them.
    max_per_host = S.integer { min = 1, max = 256 },
    -- engine sessions (apps.validate) open to one host at most
    engine_sessions = S.integer { min = 1, max = 64, default = 4 },
    -- requests per minute per Qlik Cloud rate tier; false turns limiting off
    rate_limits = S.oneof({
      S.boolean { accepts = function(v) return v == false end },
      S.record({ tier1 = S.number { min = 1 }, tier2 = S.number { min = 1 }, special = S.number { min = 1 } },
        { accepts = function(v) return type(v) == "table" end }),
    }, { describe = "false or {tier1, tier2, special} (requests per minute)" }),
    -- seconds the tenant's listings may take to show a new object: an item
    -- whose earlier attempt may have made one looks that long before it
    -- makes it again (qmig.engine.ensure)
    catalogue_lag = S.number { min = 0, max = 3600, default = 20 },
    retries = S.integer { min = 0, max = 20, default = 5 },
    retry_delay = S.number { min = 0, default = 0.5 },  -- seconds before the first retry; doubles after
  }, { default = {} }),
  jobs = S.list(S.record {
    name = S.string { required = true, nonempty = true },
    steps = S.list(S.string { validate = step_name }, { required = true }),
    priority = S.integer(),
  }, { required = true, unique_by = "name" }),
}

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data, rerr = f:read("a")  -- a folder opens, then fails to read
  f:close()
  if not data then return nil, path .. ": cannot read: " .. tostring(rerr) end
  return data
end

local function decode(path)
  if path:match("%.lua$") then
    local chunk, err = loadfile(path, "t", {})
    if not chunk then return nil, err end
    local ok, value = pcall(chunk)
    if not ok then return nil, path .. ": " .. tostring(value) end
    if type(value) ~= "table" then return nil, path .. ": a .lua job file must return a table" end
    return value
  end
  local text, err = read_file(path)
  if not text then return nil, err end
  return yaml.decode(text, path)
end

-- Line of jobs[i].steps[j] in the file, for step resolution errors.
local function step_line(doc, positions, i, j)
  if not positions or type(doc.jobs) ~= "table" or type(doc.jobs[i]) ~= "table" then return nil end
  local list = doc.jobs[i].steps
  return yaml.position(positions, list, j) or yaml.position(positions, doc.jobs[i], "steps")
end

-- Resolves every step of every job; adds "file:line: why" errors.
local function resolve_steps(job, doc, positions, resolve, errors)
  job.modules = {}
  for i, j in ipairs(job.jobs) do
    for k, name in ipairs(j.steps) do
      if job.modules[name] == nil then
        local mod, where = resolve(name, job.steps_path)
        if mod then
          job.modules[name] = { module = mod, path = where }
        else
          local line = step_line(doc, positions, i, k)
          local at = job.file .. (line and (":" .. line) or "")
          errors[#errors + 1] = { line = line or 0, message = at .. ": " .. where }
          job.modules[name] = false
        end
      end
    end
  end
end

-- job.load(path [, {env = fn, resolve = fn(name, steps_path)}]) -> job |
-- nil, message (all problems, one per line), "config".  job has .file,
-- .dir, the normalised fields and, with resolve, .modules[name] =
-- {module=, path=}.
function M.load(path, opts)
  opts = opts or {}
  local doc, positions_or_err = decode(path)
  if doc == nil then return nil, tostring(positions_or_err), "config" end
  local positions = type(positions_or_err) == "table" and positions_or_err or nil
  local dir = fs.dirname(fs.realpath(path) or path)
  local secrets = {}
  -- plan sections of step packs wait for the steps declaring them (qmig.job.packopts)
  local sections = packopts.split(M.schema.fields.plan.fields, doc)
  local ctx = { file = path, positions = positions, base_dir = dir, env = opts.env or os.getenv, fs = fs,
    on_secret = function(s) secrets[#secrets + 1] = s end, doc = doc, fields = M.schema.fields.plan.fields }
  local job, errors = S.check(M.schema, doc, ctx)
  ctx.errors = errors
  local resolve = opts.resolve or (next(sections) and require("qmig.engine.loader").resolve)
  if #errors == 0 and resolve then
    job.file = path
    resolve_steps(job, doc, positions, resolve, errors)
    if #errors == 0 then packopts.check(ctx, job, sections) end
  elseif #errors > 0 then
    packopts.early(ctx, sections)
  end
  for _, s in ipairs(secrets) do log.add_secret(s) end
  if #errors == 0 then
    local oauth = job.target.oauth
    if (job.target.api_key == nil) == (oauth == nil) then
      local line = positions and yaml.position(positions, doc, "target")
      errors[1] = { message = path .. (line and (":" .. line) or "") .. ": target: give exactly one of api_key "
        .. "or oauth {client_id, client_secret}" }
    elseif oauth and oauth.client_secret_file then
      local text = read_file(oauth.client_secret_file)
      oauth.client_secret = text and text:gsub("^%s+", ""):gsub("%s+$", "") or nil
      if not oauth.client_secret or oauth.client_secret == "" then
        errors[1] = { message = path .. ": target.oauth.client_secret_file - '" .. oauth.client_secret_file
          .. "' is empty or unreadable" }
      else
        log.add_secret(oauth.client_secret)
      end
    end
  end
  if #errors > 0 then
    local lines = {}
    for _, e in ipairs(errors) do lines[#lines + 1] = e.message end
    return nil, table.concat(lines, "\n"), "config"
  end
  job.file, job.dir = path, dir
  if type(job.project) == "string" then job.project = { name = job.project } end
  job.project.dir = job.project.dir and (job.project.dir:sub(1, 1) == "/" and job.project.dir
    or dir .. "/" .. job.project.dir) or (dir .. "/" .. job.project.name)
  return job
end

return M
