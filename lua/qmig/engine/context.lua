-- What a step sees: the ctx of run(item, ctx) and the other functions of a
-- step (docs/steps.md lists its fields).  Methods of the engine
-- (lua/qmig/engine/step.lua).
local log = require "qmig.ui.log"
local overlay = require "qmig.store.overlay"
local transforms = require "qmig.job.transforms"

local M = {}

-- Every field of a step's ctx, for docs/steps.md (tools/stepdoc.lua; a test
-- runs a step and fails on a field this list lacks).  `where`: "step" = also
-- in the ctx of items/key/fingerprint/depends, "item" = in run's only,
-- "engine" = the engine's own bookkeeping, not for steps.
M.FIELDS = {
  { "source", "step", "QRS client: `get(path, query)`, `full(entity, filter)`, `count`, `about`, "
    .. "`export_app(id, opts, dest)`; filters with `qrs.eq/any/all/quote`" },
  { "target", "step", "Cloud client: `get`, `post`, `put`, `patch`, `delete`, `find(path)` (get; none -> nil), "
    .. "`remove(path)` (delete; already gone -> false), `each(path, query)` (all pages), `all`, `me()` (the "
    .. "identity it acts as, read once), `local_time(iso)` (a tenant time on this machine's clock), "
    .. "`request(method, path, opts)` (files: `source=`, `sink=`, `multipart=`)" },
  { "plan", "step", "the job file's `plan` (validated)" },
  { "options", "step", "the job file's `plan.<category>` section as the step's `options` schema validated it "
    .. "(\"A pack's own options\" above); nil for a step that declares none" },
  { "job", "step", "the validated job file" },
  { "cache", "step", "the project's cache (lua/qmig/store/cache.lua); in a plan, its in-memory overlay" },
  { "project", "step", "the project folder: `path(...)`, `object_path(folder, name, ext)`, `write_json`, `read_json`" },
  { "transforms", "step", "the job's transforms hooks (call them through `ctx.transform`)" },
  { "dry_run", "step", "true in a plan (`plan`, `run --dry-run`): the target refuses writes" },
  { "force", "step", "the run was started with `--force` (e.g. export again even if the file looks current)" },
  { "run_id", "step", "the run's number in the cache (nil in a plan)" },
  { "step", "step", "the step's name" },
  { "job_name", "step", "the name of the job of the file being run" },
  { "log", "step", "a logger (`info`, `warn`, `debug`, `error`) whose records carry the step's name" },
  { "memo", "step", "the step's own table for one run of it: what `items` worked out for `key`, `fingerprint` "
    .. "and `run` to read" },
  { "is_planned(id)", "step", "true for the placeholder id of an object this plan would create (never in a run)" },
  { "lookup(kind, source_id)", "step", "target id an earlier step recorded (and the cache record)" },
  { "created(kind)", "step", "cache records of `kind` whose objects this project created and still has: what a "
    .. "delete step may remove" },
  { "forget(kind, source_id, reason)", "step", "marks another step's record deleted (a delete step), so a later "
    .. "run redoes that object; the only way a step changes a record not its own" },
  { "app_for(source_app_id)", "step", "the app users open: the published copy (`app.published`) when there is "
    .. "one, else the imported app (`app`)" },
  { "transform(hook, ...)", "step", "applies a transforms hook (the table of hooks below); nil = leave the item out" },
  { "item_key", "item", "the item's key (what `key` returned)" },
  { "fingerprint", "item", "the item's fingerprint, as the engine computed it" },
  { "previous", "item", "this item's cache record from an earlier run, or nil" },
  { "resume", "item", "a previous attempt may have left half-finished work: look for it" },
  { "started_at", "item", "ISO time the first attempt of this item began" },
  { "undo(entry)", "item", "records how to reverse what `run` did" },
  { "change(field, old, new)", "item", "what an update changes, called before its write: the plan prints "
    .. "`field 'old' -> 'new'` and `plan --json` has it under `changes`" },
  { "ensure(spec)", "item", "find-or-create (rule 1 below)" },
  { "listed(fn)", "item", "a look that waits out the catalogue's lag (rule 1)" },
  { "changes", "engine", "what `ctx.change` collected" },
  { "catalogue_lag", "engine", "the job's `options.catalogue_lag`, for `ctx.ensure`" },
  { "witnesses", "engine", "what the step's creates made, for the items in doubt (lua/qmig/engine/ensure.lua)" },
  { "gone", "engine", "the recorded object was deleted in the tenant (lua/qmig/engine/gone.lua)" },
  { "doubt_at", "engine", "when an attempt in doubt began (lua/qmig/engine/ensure.lua)" },
}

function M.install(Engine)
  -- The witnesses of a step's items (qmig.engine.ensure), one list per step and run.
  function Engine:witnesses(step)
    self.step_witnesses = self.step_witnesses or {}
    local ws = self.step_witnesses[step.name]
    if not ws then
      ws = {}
      self.step_witnesses[step.name] = ws
    end
    return ws
  end

  -- The ctx of a step's items(), key(), fingerprint() and depends(), one
  -- per run of the step; ctx.memo is shared with its items' contexts.
  function Engine:memo(step)
    self.step_memos = self.step_memos or {}
    local m = self.step_memos[step.name]
    if not m then
      m = {}
      self.step_memos[step.name] = m
    end
    return m
  end

  function Engine:step_context(step)
    self.step_ctxs = self.step_ctxs or {}
    local ctx = self.step_ctxs[step.name]
    if not ctx then
      ctx = self:context(step)
      self.step_ctxs[step.name] = ctx
    end
    return ctx
  end

  function Engine:context(step, extra)
    local engine = self
    local ctx = {
      source = self.source, target = self.target, plan = self.job.plan, job = self.job,
      cache = self.cache, project = self.project, transforms = self.transforms or {},
      dry_run = self.dry_run or false, force = self.force or false, run_id = self.run_id, step = step.name,
      job_name = self.job_name,
      log = log.with { step = step.name },
      -- a step's own table for one run of it: what items() worked out
      -- (plan options, a listing) for key, fingerprint and run to read
      memo = self:memo(step),
      -- a pack's own options (lua/qmig/job/packopts.lua put them in job.plan)
      options = step.options ~= nil and (self.job.plan or {})[step.name:match("^([%w_]+)%.")] or nil,
    }
    -- True for the target id of an object this plan would create (it has
    -- a placeholder id: qmig.store.overlay); never in a run.
    function ctx.is_planned(id) return engine.dry_run and overlay.is_placeholder(id) or false end
    -- Target id recorded by an earlier step for a source object.
    function ctx.lookup(kind, source_id)
      local rec = engine.cache and engine.cache:get(kind, tostring(source_id))
      if rec and rec.target_id and rec.status ~= "deleted" and rec.status ~= "failed" then return rec.target_id, rec end
      return nil, rec
    end
    -- The cache records of `kind` whose target objects this project created
    -- and has not deleted: what a delete step may remove (never adopted ones).
    function ctx.created(kind)
      local out = {}
      for _, rec in ipairs(engine.cache and engine.cache:items(kind) or {}) do
        if rec.created_by_us and rec.target_id and rec.status ~= "deleted" and rec.status ~= "failed" then
          out[#out + 1] = rec
        end
      end
      return out
    end
    -- Marks another step's record of a source object as deleted (a delete
    -- step undoing what create steps recorded), so a later run redoes it;
    -- reason (optional) says why, in the record.  The only way a step changes
    -- a record that is not its own.
    function ctx.forget(kind, source_id, reason)
      if engine.dry_run or not engine.cache then return end
      local rec = engine.cache:get(kind, tostring(source_id))
      if rec then
        engine.cache:finish_item(kind, tostring(source_id),
          { status = "deleted", reason = reason, run_id = engine.run_id })
      end
    end
    -- The app users open for a source app (qmig.domain.apps.app_for, which
    -- knows the apps steps' cache kinds; the engine does not).
    function ctx.app_for(source_id) return require("qmig.domain.apps").app_for(ctx, source_id) end
    -- ctx.transform(name, ...): the job's transforms hook `name` (the
    -- arguments and the value it returns: qmig.job.transforms.HOOKS).
    function ctx.transform(name, ...) return transforms.call(ctx.transforms, name, ...) end
    for k, v in pairs(extra or {}) do ctx[k] = v end
    return ctx
  end
end

return M
