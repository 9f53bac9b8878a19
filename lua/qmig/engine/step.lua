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
local sched = require "qmig.engine.sched"
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

-- The order in which a step's items start, for steps whose items wait
-- for others of the same step (step.depends(item) -> keys of items that
-- must end first, e.g. a chained schedule after the task it follows):
-- every item after the items it waits for, otherwise as items() listed
-- them.  Spawning in this order means an item only ever waits for items
-- already started, so waiting cannot starve them of a place.  Keys not
-- among the items are ignored; a dependency that closes a cycle is
-- dropped (the step reports cycles itself: the engine only must not hang).
-- -> {{key=, item=}}, {key = {keys to wait for}}, done = {}
function M.dependency_order(step, items, ctx)
  local entries, by_key = {}, {}
  for _, item in ipairs(items) do
    local ok, key = pcall(step.key, item, ctx)
    local entry = { key = ok and key ~= nil and tostring(key) or nil, item = item }
    entries[#entries + 1] = entry
    if entry.key then by_key[entry.key] = by_key[entry.key] or entry end
  end
  if not step.depends then return entries, {}, {} end
  local order, after, state = {}, {}, {}
  local function visit(entry)
    if state[entry] == "done" then return end
    state[entry] = "visiting"
    local ok, deps = pcall(step.depends, entry.item, ctx)
    local waits = {}
    for _, dep in ipairs(ok and type(deps) == "table" and deps or {}) do
      local other = by_key[tostring(dep)]
      if other and other ~= entry and state[other] ~= "visiting" then
        visit(other)
        waits[#waits + 1] = other.key
      end
    end
    if entry.key and #waits > 0 then after[entry.key] = waits end
    state[entry] = "done"
    order[#order + 1] = entry
  end
  for _, entry in ipairs(entries) do visit(entry) end
  return order, after, {}
end

-- Where a step's items() is defined, "file:line", for messages about it.
local function items_where(step)
  local info = type(step.items) == "function" and debug.getinfo(step.items, "S")
  return info and (info.short_src .. ":" .. info.linedefined) or tostring(step.name)
end

-- The cache record standing for a step whose items() failed: status and
-- the report read the cache, so the reason must be there too; a later
-- run whose items() works drops it.
local ITEMS_KEY = "@items"
M.ITEMS_KEY = ITEMS_KEY

-- items() failing fails the whole step: the reason goes to every output
-- (the console and --json through step_failed, the run log, the cache).
function Engine:items_failed(step, summary, reason)
  reason = log.redact(reason)
  summary.error = reason
  summary.counts.failed = 1
  log.info("step failed", { step = step.name, reason = reason })
  if self.cache and not self.dry_run then
    self.cache:begin_item(step.object, ITEMS_KEY, { step = step.name, run_id = self.run_id })
    self.cache:fail_item(step.object, ITEMS_KEY, reason, self.run_id)
  end
  self:emit { kind = "step_failed", step = step.name, reason = reason }
  return summary
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

-- The breaker of a side found unreachable, if any (qmig.rate.breaker).
function Engine:outage()
  for _, client in ipairs { self.source or false, self.target or false } do
    local b = client and client.breaker
    if b and b.open then return b end
  end
  return nil
end

-- Runs every item of one step concurrently; returns the summary
-- {counts = {status = n}, items = {outcomes}}.
function Engine:run_step(step)
  local summary = { step = step.name, counts = {}, outcomes = {} }
  local reads_before = self.target_reads or 0
  -- a new ctx.memo for each run of the step
  if self.step_ctxs then self.step_ctxs[step.name] = nil end
  if self.step_memos then self.step_memos[step.name] = nil end
  local ctx = self:step_context(step)
  local ok, items = xpcall(step.items, step_error, ctx)
  if not ok then
    local err = items
    if errors.is(err) and err.auth then self.aborted = err end
    if errors.is(err) and err.outage then
      -- not the step's fault: the run stops and the next one lists again
      self.aborted = err
      summary.counts.interrupted = 1
      self:emit { kind = "step_failed", step = step.name, reason = log.redact(tostring(err)) }
      return summary
    end
    local where, text = items_where(step), tostring(err)
    -- a Lua error names its own file:line; an API error does not
    return self:items_failed(step, summary, text:find(where:match("^(.-):%d+$"), 1, true) and text
      or (where .. ": " .. step.name .. ": items() failed: " .. text))
  end
  if type(items) ~= "table" then
    return self:items_failed(step, summary, items_where(step) .. ": " .. step.name
      .. ": items() must return a list, got " .. type(items))
  end
  if self.cache and self.cache:get(step.object, ITEMS_KEY) then
    self.cache:drop_item(step.object, ITEMS_KEY)
  end
  self:emit { kind = "step_start", step = step.name, total = #items }
  -- Sleepers give their place up (qmig.engine.sched), and up to 4 x concurrency
  -- items may be under way.  Not under rate limits: there the tenant's
  -- rate bounds the run, and dozens of items waiting for tokens only
  -- bunch requests into bursts its buckets answer with 429s (bench/,
  -- part 2: 16 429s and 0.83 of the allowed rate, against 4 and 0.91-0.95).
  local order, after, done = M.dependency_order(step, items, ctx)
  local limited = self.target and self.target.limiter
  local s = sched.new { concurrency = self.concurrency, max_open = limited and self.concurrency or nil }
  s.on_done = function(task)
    if task.key then done[task.key] = true end
    if not task.ok then  -- an engine or cache failure outside the step's own code
      summary.counts.failed = (summary.counts.failed or 0) + 1
      summary.outcomes[#summary.outcomes + 1] = { status = "failed", reason = log.redact(tostring(task.error)) }
    end
  end
  local function wait_for(deps)
    for _, key in ipairs(deps) do
      while not done[key] and not self.aborted and not qmig.interrupted() do qmig.sleep(0.02) end
    end
  end
  for _, entry in ipairs(order) do
    local item = entry.item
    local task = s:spawn(function()
      if self.aborted then return end
      if after[entry.key] then wait_for(after[entry.key]) end
      local outcome = self:run_item(step, item)
      if outcome.name == nil then outcome.name = item_name(item, outcome) end
      summary.counts[outcome.status] = (summary.counts[outcome.status] or 0) + 1
      summary.outcomes[#summary.outcomes + 1] = outcome
      self:emit { kind = "item", step = step.name, object = step.object, outcome = outcome }
      if outcome.status == "failed" and self.aborted then s:drain() end
      local down = self:outage()
      if down then
        -- a side is unreachable (qmig.rate.breaker): the items not started yet
        -- are left for the next run instead of failing one by one
        self.aborted = self.aborted or down:error()
        s:drain()
      end
    end)
    task.key = entry.key
  end
  -- One commit per batch of items instead of two fsyncs per item (Cache:group).
  local grouped = self.cache and not self.dry_run
  if grouped then self.cache:group(true) end
  s:run()
  if grouped then self.cache:group(false) end
  if step.finish and not self.aborted then
    -- After every item: for outputs that cover all of them (e.g. appObjects.json).
    local fok, ferr = xpcall(step.finish, step_error, ctx, summary.outcomes)
    if not fok then
      summary.counts.failed = (summary.counts.failed or 0) + 1
      summary.error = log.redact(tostring(ferr))
      self:emit { kind = "step_failed", step = step.name, reason = summary.error }
    end
  end
  if (self.target_reads or 0) > reads_before then
    -- what checking done records costs (target_path), in the run log
    log.info("recorded objects looked at in the tenant", { step = step.name,
      reads = self.target_reads - reads_before })
  end
  self:emit { kind = "step_done", step = step.name, counts = summary.counts }
  return summary
end

return M
