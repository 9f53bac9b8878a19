-- The export and import steps of extensions and themes, one
-- implementation for both (themes are extensions whose .qext says
-- "type": "theme").  See docs/assets.md.
local common = require "qmig.domain.assets"
local errors = require "qmig.clients.errors"
local fs = require "qmig.fs"
local hash = require "qmig.hash"
local json = require "qmig.json"
local retrieve = require "qmig.clients.retrieve"
local zip = require "qmig.domain.zip"

local M = {}

local KINDS = {
  extension = { folder = "exports/extensions", api = "extensions", themes = false, plural = "extensions",
    find = retrieve.extension },
  theme = { folder = "exports/themes", api = "themes", themes = true, plural = "themes", find = retrieve.theme },
}

local DONE = require("qmig.store.status").DONE

-- The exported zip of an item, if export recorded one and it is still
-- there: -> absolute path, record
local function exported(ctx, kind, id)
  local rec = ctx.cache and ctx.cache:get(kind .. ".export", id)
  if not rec or not DONE[rec.status] or type(rec.data) ~= "table" or not rec.data.file then return nil, rec end
  local path = ctx.project:path(rec.data.file)
  if not fs.exists(path) then return nil, rec end
  return path, rec
end

function M.export(kind, meta)
  local k = KINDS[kind]
  return {
    name = meta.name, object = kind .. ".export",
    produces = { data = { "file", "sha256", "size", "name", "cloud_name", "modified", "files" } },
    consumes = {},
    items = function(ctx) return common.extensions(ctx, k.themes) end,
    key = function(x) return x.id end,
    run = function(ctx, x)
      local rel = ctx.project:object_path(k.folder, x.name, ".zip"):sub(#ctx.project.dir + 2)
      local path = ctx.project:path(rel)
      local prev = ctx.previous and ctx.previous.data
      -- an unchanged extension keeps the zip exported before
      if type(prev) == "table" and prev.modified == x.modifiedDate and prev.file == rel and fs.exists(path)
        and hash.sha256_file(path) == prev.sha256 then
        return { status = "unchanged", target_id = rel, data = prev }
      end
      local files = {}
      for _, r in ipairs(x.references) do
        local name = r.externalPath or tostring(r.logicalPath):match("^/extensions/[^/]+/(.+)$")
        local clean, why = zip.entry_name(name)
        if not clean then error(errors.new { message = kind .. " '" .. x.name .. "': " .. why }, 0) end
        files[#files + 1] = { name = clean, path = r.logicalPath }
      end
      table.sort(files, function(a, b) return a.name < b.name end)
      if ctx.dry_run then common.dry_run_refusal("export", rel) end
      for _, f in ipairs(files) do f.data = common.download(ctx.source, f.path) end
      local bytes, why = zip.build(files)
      if not bytes then error(errors.new { message = kind .. " '" .. x.name .. "': " .. why }, 0) end
      local ok, err = fs.write_file(path, bytes, { mode = 384, atomic = true })
      if not ok then error(errors.new { message = "cannot write " .. rel .. ": " .. tostring(err) }, 0) end
      local data = { file = rel, sha256 = hash.sha256(bytes), size = #bytes, name = x.name,
        cloud_name = x.cloud_name, modified = x.modifiedDate, files = #files }
      local same = type(prev) == "table" and prev.sha256 == data.sha256
      return { status = same and "unchanged" or (prev and "updated" or "created"), target_id = rel, data = data }
    end,
  }
end

local function upload(ctx, k, method, path, zip_path, x)
  local resp = ctx.target:request(method, path, { multipart = {
    { name = "file", path = zip_path, filename = fs.basename(zip_path), content_type = "application/x-zip-compressed" },
    { name = "data", data = json.encode { name = x.cloud_name }, content_type = "application/json" },
  } })
  local obj = common.decode(resp)
  if type(obj) ~= "table" or not obj.id then
    error(errors.new { message = method .. " " .. k.api .. ": the reply has no id" }, 0)
  end
  return obj
end

function M.import(kind, meta)
  local k = KINDS[kind]
  return {
    name = meta.name, object = kind,
    produces = { data = { "name", "sha256" } },
    consumes = { { kind = kind .. ".export", data = { "file", "sha256" } } },
    requires = { meta.export },
    items = function(ctx) return common.extensions(ctx, k.themes) end,
    key = function(x) return x.id end,
    target_path = function(rec) return k.api .. "/" .. rec.target_id end,
    run = function(ctx, x)
      local zip_path, rec = exported(ctx, kind, x.id)
      local sha = rec and rec.data and rec.data.sha256
      local data = { name = x.cloud_name, sha256 = sha }
      local prev = ctx.previous
      local r = ctx.ensure {
        -- ours from an earlier run (one adopted is found again by name)
        get = function(id)
          if not prev.created_by_us then return nil end
          return ctx.target:find(k.api .. "/" .. id)
        end,
        find = function() return k.find(ctx.target, x.cloud_name) end,
        unique = true,  -- a name is (a 409, below)
        mine = { by = function(e) return e.userId == ctx.target:me().id end,
          created = function(e) return e.createdAt end },
        create = zip_path and function()
          local ok, obj = pcall(upload, ctx, k, "POST", k.api, zip_path, x)
          if ok then return obj end
          if errors.is(obj) and obj.status == 409 then
            local existing = ctx.listed(function() return k.find(ctx.target, x.cloud_name) end)
            if existing then return existing, "exists" end
          end
          error(obj, 0)
        end or nil,
        undo = function(id) return { method = "DELETE", path = k.api .. "/" .. id } end,
      }
      if not r.object then
        if ctx.dry_run then common.dry_run_refusal("POST", "/api/v1/" .. k.api) end
        return { status = "skipped", reason = "not exported yet: run " .. meta.export }
      end
      if r.how == "recorded" and zip_path and prev.data and prev.data.sha256 ~= sha then
        -- the source changed: its zip replaces ours
        ctx.undo { action = "irreversible", reason = kind .. " '" .. x.cloud_name .. "' replaced by a new export" }
        upload(ctx, k, "PATCH", k.api .. "/" .. r.id, zip_path, x)
        return { status = "updated", target_id = r.id, natural_key = x.cloud_name, data = data }
      end
      return { status = r.status, target_id = r.id, natural_key = x.cloud_name, data = data }
    end,
  }
end

return M
