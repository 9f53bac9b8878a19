-- apps.scripts — Update Application Scripts (QAMT
-- "Update Application Scripts").
--
-- For each imported app (the `app` record, i.e. the app apps.reload
-- reloads and apps.publish publishes):
--   1. read the current script (GET /apps/{id}/scripts/current);
--   2. rewrite the ORIGINAL script — the backup when there is one for this
--      app, else the current text — with lua/qmig/domain/scripts.lua:
--      data-connection renames (space-qualified, `LIB CONNECT TO
--      'Space:Conn'`; ODBC/OLEDB/CUSTOM CONNECT of a mapped connection
--      becomes LIB CONNECT), then plan.scripts.replace, then the `script`
--      transform hook.  Rewriting the original (not the current text) makes
--      the result independent of how often the step runs, even for replace
--      rules that are not idempotent;
--   3. only when the result differs from the current script: back the
--      current script up to backups/scripts/<source-app-id>.qvs (with a
--      .json beside it naming the Cloud app, so a re-imported app gets a
--      fresh backup) and POST it as a new script version.
-- Undo: a restore entry POSTs the previous text back as a new version.
-- A resumed run that finds the rewritten text already current (the POST
-- was applied, its reply lost) records the outcome without writing again.
-- Dry run: no backup file is written; the POST is reported as "would create".
local common = require "qmig.domain.apps"
local conns = require "qmig.domain.connections"
local errors = require "qmig.clients.errors"
local fs = require "qmig.fs"
local hash = require "qmig.hash"
local json = require "qmig.json"
local qmig = require "qmig"
local script = require "qmig.domain.scripts"

local function rules(ctx)
  return ctx.plan and ctx.plan.scripts and ctx.plan.scripts.replace or {}
end

-- The rename table, built once per run of the step (ctx.memo: items() is
-- called more than once when the step overlaps the ones before it).
local function table_for(ctx)
  if not ctx.memo.renames then
    local list = conns.build(ctx)
    ctx.memo.renames = { index = script.index(list), digest = conns.digest(list, rules(ctx)) }
  end
  return ctx.memo.renames
end

local function backup_paths(ctx, id)
  return ctx.project:object_path("backups/scripts", id, ".qvs"),
    ctx.project:object_path("backups/scripts", id, ".json")
end

-- The original script of this Cloud app, from its backup; nil when none.
local function read_backup(ctx, id, app_id)
  local qvs, meta = backup_paths(ctx, id)
  local m = fs.exists(meta) and json.decode(fs.read_file(meta) or "")
  if type(m) ~= "table" or m.app_id ~= app_id or not fs.exists(qvs) then return nil end
  return fs.read_file(qvs)
end

local function write_backup(ctx, item, text)
  local qvs, meta = backup_paths(ctx, item.id)
  assert(fs.write_file(qvs, text, { mode = 384, atomic = true }))
  assert(fs.write_file(meta, json.encode({ source_id = item.id, app_id = item.app_id, name = item.name,
    sha256 = hash.sha256(text), taken_at = qmig.isotime() }, { sort_keys = true }) .. "\n",
    { mode = 384, atomic = true }))
end

-- The undo entry restores the script from a file of its own: the cache
-- redacts credential-shaped text, and a script may hold "PWD=..." that
-- must come back exactly.
local function restore_entry(ctx, item, text)
  local file = ctx.project:object_path("backups/scripts", item.id .. ".before-run-" .. tostring(ctx.run_id), ".qvs")
  if not ctx.dry_run then assert(fs.write_file(file, text, { mode = 384, atomic = true })) end
  return { action = "restore", method = "POST", path = "apps/" .. item.app_id .. "/scripts",
    body = { versionMessage = "qmig-lua undo: script before apps.scripts" }, body_files = { script = file } }
end

return {
  name = "apps.scripts",
  object = "app.script",
  produces = { data = { "app_id", "connections", "replacements" } },
  consumes = {
    { kind = "app", data = { "space_id", "bound_for" } },
    { kind = "dataconnection", data = { "name", "space_id", "space_name" } },
  },
  requires = { "apps.import" },
  items = function(ctx)
    local items = common.imported(ctx)
    if #items > 0 then
      local t = table_for(ctx)
      for _, item in ipairs(items) do item.rules = t.digest end
    end
    return items
  end,
  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(item) return item.id end,
  fingerprint = function(item)
    return table.concat({ item.app_id, item.import_fp or "", item.rules or "" }, "|")
  end,
  run = function(ctx, item)
    if ctx.is_planned(item.app_id) then
      -- the script is read from the app once imported: a plan can only say
      -- that it will be looked at and rewritten where it needs to be
      error(setmetatable({ method = "POST", path = "/api/v1/apps/" .. item.app_id .. "/scripts",
        reason = "the script is read and rewritten after the import" }, errors.DryRun), 0)
    end
    local t = table_for(ctx)
    local reply = ctx.target:get("apps/" .. item.app_id .. "/scripts/current")
    local current = type(reply) == "table" and reply.script or ""
    local original = read_backup(ctx, item.id, item.app_id) or current
    local wanted, counts = script.rewrite(original, t.index, rules(ctx))
    wanted = ctx.transform("script", wanted, { id = item.id, name = item.name, target_id = item.app_id,
      stream = item.stream, owner = item.owner })
    if wanted == nil then
      return { status = "skipped", target_id = item.app_id, reason = "left out by the transforms.lua script hook" }
    end
    local data = { app_id = item.app_id, connections = counts.connections, replacements = counts.replacements,
      sha256 = hash.sha256(wanted),
      backup = original ~= wanted and ("backups/scripts/" .. fs.safe_name(item.id) .. ".qvs") or nil }
    if wanted == current then
      local prev = ctx.previous
      local recorded = prev and common.DONE[prev.status] and type(prev.data) == "table"
        and prev.data.app_id == item.app_id
      if original ~= current and not recorded then
        -- an earlier attempt wrote it and never recorded the outcome
        ctx.undo(restore_entry(ctx, item, original))
        return { status = "updated", target_id = item.app_id, data = data,
          reason = "already rewritten by an earlier attempt" }
      end
      return { status = "unchanged", target_id = item.app_id, data = data }
    end
    if not ctx.dry_run and not read_backup(ctx, item.id, item.app_id) then write_backup(ctx, item, current) end
    ctx.target:post("apps/" .. item.app_id .. "/scripts", {
      script = wanted,
      versionMessage = string.format("qmig-lua apps.scripts: %d connection reference(s), %d replacement(s)",
        counts.connections, counts.replacements),
    })
    ctx.undo(restore_entry(ctx, item, current))
    return { status = "updated", target_id = item.app_id, data = data }
  end,
}
