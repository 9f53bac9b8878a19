-- Running one step's items on the scheduler (qmig.engine.sched): its
-- listing (items()), the order its items start in, each item's task and
-- the step's end (finish(), step_done).  Engine:run_step runs a step on
-- its own; qmig.engine.overlap runs several of a job's steps at once from
-- the same pieces.
local errors = require "qmig.clients.errors"
local log = require "qmig.ui.log"
local qmig = require "qmig"
local sched = require "qmig.engine.sched"

local M = {}

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
M.ITEMS_KEY = "@items"

function M.install(Engine, engine)
  local step_error, item_name = engine.step_error, engine.item_name
  engine.dependency_order = M.dependency_order
  engine.ITEMS_KEY = M.ITEMS_KEY

  -- items() failing fails the whole step: the reason goes to every output
  -- (the console and --json through step_failed, the run log, the cache).
  function Engine:items_failed(step, summary, reason)
    reason = log.redact(reason)
    summary.error = reason
    summary.counts.failed = 1
    log.info("step failed", { step = step.name, reason = reason })
    if self.cache and not self.dry_run then
      self.cache:begin_item(step.object, M.ITEMS_KEY, { step = step.name, run_id = self.run_id })
      self.cache:fail_item(step.object, M.ITEMS_KEY, reason, self.run_id)
    end
    self:emit { kind = "step_failed", step = step.name, reason = reason }
    return summary
  end

  -- The breaker of a side found unreachable, if any (qmig.rate.breaker).
  function Engine:outage()
    for _, client in ipairs { self.source or false, self.target or false } do
      local b = client and client.breaker
      if b and b.open then return b end
    end
    return nil
  end

  -- A new summary and ctx for a run of the step (a new ctx.memo each run).
  function Engine:open_step(step)
    if self.step_ctxs then self.step_ctxs[step.name] = nil end
    if self.step_memos then self.step_memos[step.name] = nil end
    return { step = step.name, counts = {}, outcomes = {}, reads_before = self.target_reads or 0 },
      self:step_context(step)
  end

  -- The step's items, or nil when items() failed (summary says why).
  -- quiet: a failure is only returned, as nil, err (overlap's early
  -- listings: the step lists again once the steps before it are done).
  function Engine:list_items(step, summary, ctx, quiet)
    local ok, items = xpcall(step.items, step_error, ctx)
    if not ok then
      local err = items
      if quiet and not (errors.is(err) and (err.auth or err.outage or err.interrupted)) then return nil, err end
      if errors.is(err) and err.auth then self.aborted = err end
      if errors.is(err) and err.outage then
        -- not the step's fault: the run stops and the next one lists again
        self.aborted = err
        summary.counts.interrupted = 1
        self:emit { kind = "step_failed", step = step.name, reason = log.redact(tostring(err)) }
        return nil
      end
      local where, text = items_where(step), tostring(err)
      -- a Lua error names its own file:line; an API error does not
      self:items_failed(step, summary, text:find(where:match("^(.-):%d+$"), 1, true) and text
        or (where .. ": " .. step.name .. ": items() failed: " .. text))
      return nil
    end
    if type(items) ~= "table" then
      if quiet then return nil, "not a list" end
      self:items_failed(step, summary, items_where(step) .. ": " .. step.name
        .. ": items() must return a list, got " .. type(items))
      return nil
    end
    if self.cache and not quiet and self.cache:get(step.object, M.ITEMS_KEY) then
      self.cache:drop_item(step.object, M.ITEMS_KEY)
    end
    return items
  end

  -- The body of one item's task on scheduler s: its outcome goes into the
  -- summary and out as an "item" event; an abort or an outage stops s.
  -- wait(): called first, for what the item must wait for.
  function Engine:item_task(s, step, item, summary, wait)
    return function()
      if self.aborted then return end
      if wait then wait() end
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
    end
  end

  -- wait() for an item that depends on others of its step (deps: their
  -- keys, done: key -> true once ended), or nil when it depends on none.
  -- The item sleeps, giving its place up, until they end or the run stops.
  function Engine:waiter(deps, done)
    if not deps then return nil end
    return function()
      for _, key in ipairs(deps) do
        while not done[key] and not self.aborted and not qmig.interrupted() do qmig.sleep(0.02) end
      end
    end
  end

  -- A task that ended in an engine or cache failure, outside the step's
  -- own code (run_item catches the step's), counted as a failed item.
  function Engine.task_failed(_, summary, task)
    summary.counts.failed = (summary.counts.failed or 0) + 1
    summary.outcomes[#summary.outcomes + 1] = { status = "failed", reason = log.redact(tostring(task.error)) }
  end

  -- After the step's last item: finish() (outputs that cover every item,
  -- e.g. appObjects.json), the run log's read count, step_done.
  function Engine:close_step(step, summary, ctx)
    if step.finish and not self.aborted then
      local fok, ferr = xpcall(step.finish, step_error, ctx, summary.outcomes)
      if not fok then
        summary.counts.failed = (summary.counts.failed or 0) + 1
        summary.error = log.redact(tostring(ferr))
        self:emit { kind = "step_failed", step = step.name, reason = summary.error }
      end
    end
    local reads_before = summary.reads_before
    summary.reads_before = nil
    if (self.target_reads or 0) > reads_before then
      -- what checking done records costs (target_path), in the run log
      log.info("recorded objects looked at in the tenant", { step = step.name,
        reads = self.target_reads - reads_before })
    end
    self:emit { kind = "step_done", step = step.name, counts = summary.counts }
    return summary
  end

  -- A scheduler for a step's items.  Sleepers give their place up
  -- (qmig.engine.sched), and up to 4 x concurrency items may be under
  -- way.  Not under rate limits: there the tenant's rate bounds the run,
  -- and dozens of items waiting for tokens only bunch requests into
  -- bursts its buckets answer with 429s (bench/, part 2: 16 429s and 0.83
  -- of the allowed rate, against 4 and 0.91-0.95).
  function Engine:item_scheduler()
    local limited = self.target and self.target.limiter
    return sched.new { concurrency = self.concurrency, max_open = limited and self.concurrency or nil }
  end

  -- Runs s to its end, one cache commit per batch of items instead of
  -- two fsyncs per item (Cache:group).
  function Engine:run_scheduler(s)
    local grouped = self.cache and not self.dry_run
    if grouped then self.cache:group(true) end
    s:run()
    if grouped then self.cache:group(false) end
  end

  -- Runs every item of one step concurrently; returns the summary
  -- {counts = {status = n}, outcomes = {outcomes}}.
  function Engine:run_step(step)
    local summary, ctx = self:open_step(step)
    local items = self:list_items(step, summary, ctx)
    if not items then
      summary.reads_before = nil
      return summary
    end
    self:emit { kind = "step_start", step = step.name, total = #items }
    local order, after, done = M.dependency_order(step, items, ctx)
    local s = self:item_scheduler()
    s.on_done = function(task)
      if task.key then done[task.key] = true end
      if not task.ok then self:task_failed(summary, task) end
    end
    for _, entry in ipairs(order) do
      local task = s:spawn(self:item_task(s, step, entry.item, summary, self:waiter(after[entry.key], done)))
      task.key = entry.key
    end
    self:run_scheduler(s)
    return self:close_step(step, summary, ctx)
  end
end

return M
