-- The project folder (job.project.dir of docs/job-file.md): created 0700
-- with a .gitignore, one run at a time (an OS lock on .lock that dies with
-- the process), the cache, the
-- run logs, and safe paths for everything named after source objects.
local cache = require "qmig.store.cache"
local fs = require "qmig.fs"
local json = require "qmig.json"

local M = {}
local Project = {}
Project.__index = Project

local SUBDIRS = { "exports", "exports/apps", "exports/extensions", "exports/themes", "backups",
  "backups/scripts", "logs", "reports" }

local function ensure_dir(path, mode)
  local ok, err = fs.mkdirs(path, mode)
  if not ok then return nil, err end
  return true
end

-- M.open(dir, {lock = true}) -> project | nil, msg, code ("locked" when
-- another run holds the project).
function M.open(dir, opts)
  opts = opts or {}
  local ok, err = ensure_dir(dir, 448)  -- 0700: exported apps carry data
  if not ok then return nil, err, "io" end
  fs.chmod(dir, 448)
  for _, sub in ipairs(SUBDIRS) do
    ok, err = ensure_dir(dir .. "/" .. sub, 448)
    if not ok then return nil, err, "io" end
  end
  if not fs.exists(dir .. "/.gitignore") then
    fs.write_file(dir .. "/.gitignore", "# exported apps, credentials-free but with data\n*\n")
  end
  local self = setmetatable({ dir = dir }, Project)
  if opts.lock ~= false then
    local lock, lerr, code = fs.lock(dir .. "/.lock")
    if not lock then
      return nil, "project " .. dir .. " is in use by another qmig-lua run (" .. tostring(lerr) .. ")", code
    end
    self.lock = lock
  end
  local c, cerr, ccode = cache.open(dir .. "/qmig.db")
  if not c then
    if self.lock then self.lock:unlock() end
    return nil, cerr, ccode
  end
  self.cache = c
  return self
end

function Project:path(...)
  local parts = { self.dir, ... }
  return table.concat(parts, "/")
end

-- Path for a file named after a source object: the name is made safe so a
-- hostile name can never leave the folder.
function Project:object_path(folder, name, ext)
  return self:path(folder, fs.safe_name(tostring(name)) .. (ext or ""))
end

function Project:write_json(name, value)
  return fs.write_file(self:path(name), json.encode(value, { indent = true, sort_keys = true }) .. "\n",
    { mode = 384, atomic = true })
end

function Project:read_json(name)
  local text = fs.read_file(self:path(name))
  if not text then return nil end
  return json.decode(text)
end

function Project:close()
  if self.cache then self.cache:close(); self.cache = nil end
  if self.lock then self.lock:unlock(); self.lock = nil end
end

return M
