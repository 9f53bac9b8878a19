-- The engine: runs steps item by item.  It owns what steps must not have
-- to think about: the cache look-up before run (an item done before is
-- not touched again unless its source changed or --force), in-progress
-- markers written before any write so a killed run resumes without
-- duplicates, retries, per-item isolation, concurrency, dry run, undo
-- records and outcome bookkeeping.
local ensure = require "qmig.engine.ensure"
local errors = require "qmig.clients.errors"
local hash = require "qmig.hash"
local json = require "qmig.json"
local log = require "qmig.ui.log"
local overlay = require "qmig.store.overlay"
local qmig = require "qmig"
local retry = require "qmig.rate.retry"
local steps = require "qmig.engine.loader"

local M = {}
local Engine = {}
Engine.__index = Engine

-- Outcomes that mean "done; leave it alone on the next run".
local DONE = require("qmig.store.status").DONE
M.DONE = DONE


-- A step's error as its message: the file:line is in it; the traceback
-- goes to the debug log, not into reasons, the report or the terminal.
local function step_error(e)
  if type(e) == "table" then return e end
  log.debug("step error", { traceback = debug.traceback(tostring(e), 2) })
  return tostring(e)
end
M.step_error = step_error



-- M.new{job=, project=, source=, target=, transforms=, run_id=, dry_run=,
-- force=, concurrency=, retries=, reporter=fn(event)}
function M.new(opts)
  local self = setmetatable(opts, Engine)
  self.cache = opts.project and opts.project.cache
  -- a plan records what it would do in memory only (qmig.store.overlay), so
  -- each step plans against what the steps before it would have made
  if self.cache and opts.dry_run then
    self.cache = overlay.new(self.cache)
    if opts.target then opts.target.overlay = self.cache end
  end
  self.concurrency = opts.concurrency or 8
  self.unknown_retries = opts.unknown_retries or 3
  return self
end

-- The fingerprint of an item: step.fingerprint(item, ctx), else a hash of
-- the item.  ctx is the step's (ctx.memo holds what items() worked out).
function M.fingerprint(step, item, ctx)
  if step.fingerprint then return tostring(step.fingerprint(item, ctx)) end
  return hash.sha256(json.encode(item, { sort_keys = true }))
end

local function outcome_error(step, res)
  return string.format("step %s returned %s; expected {status = created|updated|adopted|skipped|unchanged, ...}",
    step.name, type(res) == "table" and ("status " .. tostring(res.status)) or type(res))
end

function Engine:emit(event)
  if self.reporter then self.reporter(event) end
end

-- What a step sees: lua/qmig/engine/context.lua; a plan's record of an
-- item: lua/qmig/engine/plan.lua; a recorded object deleted in the
-- tenant: lua/qmig/engine/gone.lua.  Each adds methods to Engine.
require("qmig.engine.context").install(Engine)
require("qmig.engine.plan").install(Engine, M)
local reported_gone = require("qmig.engine.gone").install(Engine, M).reported


-- Runs one item; returns its outcome table {status=, reason=, ...}.
function Engine:run_item(step, item)
  local kind, cache = step.object, self.cache
  local step_ctx = self:step_context(step)
  local ok_key, key = pcall(step.key, item, step_ctx)
  if not ok_key or key == nil then
    return { status = "failed",
      reason = ok_key and "step key() returned nil" or ("step key() failed: " .. tostring(key)) }
  end
  key = tostring(key)
  local fingerprint = M.fingerprint(step, item, step_ctx)
  local rec = cache and cache:get(kind, key)
  local gone  -- {target_id =, path =}: the recorded object was deleted in the tenant
  if rec and reported_gone(rec) then
    if not self.force then return { status = "failed", key = key, target_id = rec.target_id, reason = rec.reason } end
    gone, rec = { target_id = rec.target_id }, nil  -- forced: made again, as if never done
  elseif rec and DONE[rec.status] and rec.fingerprint == fingerprint and not self.force then
    local ok, path = pcall(self.gone_path, self, step, rec)
    if not ok then
      local err = path
      if errors.is(err) and err.auth then self.aborted = err end
      if errors.is(err) and err.interrupted then
        return { status = "interrupted", key = key, reason = "interrupted" }
      end
      -- the record stays as it is: the next run looks again
      return { status = "failed", key = key, target_id = rec.target_id, auth = errors.is(err) and err.auth or nil,
        reason = "could not check that " .. kind .. " " .. tostring(rec.target_id) .. " is still in the tenant: "
          .. log.redact(tostring(err)) }
    end
    if not path then return { status = "unchanged", key = key, target_id = rec.target_id, cached = true } end
    local what = string.format("%s %s (GET %s: not found)", kind, tostring(rec.target_id), path)
    if cache then self:forget_dependants(step, key, "what it was done on was " .. M.GONE .. ": " .. what) end
    if step.if_gone == "report" then
      local name = rec.natural_key and ("'" .. rec.natural_key .. "' ") or ""
      local reason = string.format("%s: %s %s(%s) is gone and is not made again on its own; to make it again: "
        .. "qmig-lua run %s --step %s --force (or leave it out of the job)", M.GONE, kind, name,
        tostring(rec.target_id), self.job and self.job.file or "JOB", step.name)
      if cache then cache:finish_item(kind, key, { status = "failed", reason = reason }) end
      return { status = "failed", key = key, target_id = rec.target_id, reason = reason }
    end
    -- not done any more: the step runs as if it never had (no previous
    -- record, so nothing reads the gone id again), and ctx.lookup of it
    -- finds nothing meanwhile
    if cache then cache:finish_item(kind, key, { status = "deleted", reason = M.GONE .. ": " .. what }) end
    gone, rec = { target_id = rec.target_id, path = path }, nil
  end
  local undo_entries = {}
  local ctx = self:context(step, {
    item_key = key, previous = rec,
    -- true when a previous attempt may have left half-finished work
    resume = rec ~= nil and (rec.status == "in_progress" or rec.status == "failed"),
    started_at = rec and rec.started_at,
    undo = function(entry) undo_entries[#undo_entries + 1] = entry end,
    changes = {},
    catalogue_lag = self.job.options and self.job.options.catalogue_lag,
    -- what the step's creates made, for the items in doubt (qmig.engine.ensure)
    witnesses = self:witnesses(step),
    gone = gone,
    -- what the engine computed for this item, so run need not again
    fingerprint = fingerprint,
  })
  -- What an update changes, old -> new, for the plan and the item's line:
  -- ctx.change("owner", "CORP\\jdoe", "CORP\\asmith"), called before the write.
  function ctx.change(field, old, new)
    ctx.changes[#ctx.changes + 1] = { field = tostring(field), old = old, new = new }
  end
  -- find-or-create for this item (qmig.engine.ensure)
  function ctx.ensure(spec) return ensure.run(ctx, spec) end
  function ctx.listed(fn) return ensure.listed(ctx, fn) end
  if cache then
    cache:begin_item(kind, key, { step = step.name, run_id = self.run_id, fingerprint = fingerprint })
    ctx.started_at = ctx.started_at or qmig.isotime()
  end
  local unknown_left = self.unknown_retries
  while true do
    ctx.changes = {}  -- an attempt's own (an attempt in doubt runs again)
    local ok, res = xpcall(step.run, step_error, ctx, item)
    if ok then
      if type(res) ~= "table" or not steps.statuses[res.status] then
        res = { status = "failed", reason = outcome_error(step, res) }
      end
      res.key = key
      if res.changes == nil and ctx.changes[1] then res.changes = ctx.changes end
      if gone and res.reason == nil and res.status ~= "failed" then
        res.reason = string.format("%s %s was %s%s", kind, tostring(gone.target_id), M.GONE,
          res.status == "created" and "; made again" or "")
      end
      if not cache then return res end
      if res.status == "failed" then
        cache:fail_item(kind, key, res.reason, self.run_id)
      else
        cache:finish_item(kind, key, {
          -- a name for people (status, undo, the report) when the step gave none
          status = res.status, target_id = res.target_id, natural_key = res.natural_key or M.item_name(item, res),
          reason = res.reason,
          fingerprint = fingerprint, data = res.data, created_by_us = res.status == "created",
        })
        for _, entry in ipairs(undo_entries) do
          cache:add_undo {
            run_id = self.run_id, step = step.name, kind = kind, source_id = key,
            target_id = entry.target_id or res.target_id, action = entry.action or "delete", payload = entry,
          }
        end
      end
      return res
    end
    local err = res
    if getmetatable(err) == errors.DryRun then return self:planned(step, item, ctx, key, err, fingerprint) end
    if errors.is(err) and err.auth then
      self.aborted = err
      return { status = "failed", key = key, reason = tostring(err), auth = true }
    end
    if errors.is(err) and err.interrupted then
      -- The in-progress marker stays: the next run resumes this item.
      return { status = "interrupted", key = key, reason = "interrupted" }
    end
    if errors.is(err) and err.unknown and unknown_left > 0 and not qmig.interrupted() then
      -- The write may have been applied: the step looks before it acts
      -- again (ctx.resume), so this never duplicates.
      unknown_left = unknown_left - 1
      ctx.resume = true
      -- (an attempt of an earlier run in doubt has none: every write of
      -- this run began after it)
      ctx.doubt_at = qmig.monotonic()
      self:emit { kind = "retry", step = step.name, key = key, reason = tostring(err) }
      qmig.sleep(retry.delay(self.unknown_retries - unknown_left, err))
    else
      local reason = log.redact(tostring(err))
      if cache then cache:fail_item(kind, key, reason, self.run_id) end
      return { status = "failed", key = key, reason = reason }
    end
  end
end

-- A name for an item's outcome lines when the outcome has none: what
-- the step recorded, else the item's own name (or that of the object it
-- is about: item.app, item.stream...).
local function item_name(item, outcome)
  local own = require("qmig.store.names").own(outcome)
  if own then return own end
  if type(item) ~= "table" then return nil end
  if type(item.name) == "string" and item.name ~= "" then return item.name end
  for _, f in ipairs { "app", "stream", "user", "task", "space" } do
    local v = item[f]
    if type(v) == "table" and type(v.name) == "string" and v.name ~= "" then return v.name end
  end
  return nil
end
M.item_name = item_name

-- Running a step's items on the scheduler, alone (run_step) or overlapped
-- with the steps before it, object by object (run_group).
require("qmig.engine.steprun").install(Engine, M)
require("qmig.engine.overlap").install(Engine, M)

return M
