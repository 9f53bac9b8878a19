-- qmig.engine.sched: runs Lua coroutines ("tasks") concurrently.
--
-- A task that makes an HTTP request or calls qmig.sleep yields to this
-- scheduler (the C side sees the task was marked with qmig.host.mark_task); the
-- scheduler drives every transfer at once through http.poll() and resumes
-- each task when its transfer or timer is done.  At most `concurrency`
-- tasks run at a time (making requests or computing); the rest wait in
-- order.  A task that sleeps (a reload poll's pause, a retry's backoff, a
-- rate-limit wait) gives its place up while it sleeps, so the API is kept
-- as busy as allowed instead of idling behind sleepers; it takes a place
-- again, before any task not yet started, when it wakes.  `max_open`
-- (default 4 x concurrency) bounds the tasks started and not ended, so
-- sleepers cannot pile up without limit (e.g. reloads waiting in Qlik).
local qmig = require "qmig"
local host = require "qmig.host"
local http = require "qmig.http"

local M = {}
local Scheduler = {}
Scheduler.__index = Scheduler

-- sched.new{concurrency = 8, max_open = 4 * concurrency} -> scheduler
function M.new(opts)
  opts = opts or {}
  local concurrency = opts.concurrency or 8
  assert(math.type(concurrency) == "integer" and concurrency >= 1, "concurrency must be a positive integer")
  local max_open = opts.max_open or 4 * concurrency
  assert(math.type(max_open) == "integer" and max_open >= concurrency, "max_open must be an integer >= concurrency")
  return setmetatable({
    concurrency = concurrency,
    max_open = max_open,
    queued = {},      -- tasks not started yet, in spawn order
    urgent = {},      -- the same, from spawn_next: started first
    woken = {},       -- sleepers whose time has come, waiting for a place
    ready = {},       -- running tasks to resume, with the values to pass
    waiting = {},     -- request object -> task
    timers = {},      -- {at = monotonic time, task = task}: sleepers, placeless
    running = 0,      -- tasks holding a place (at most concurrency)
    open = 0,         -- tasks started and not ended (at most max_open)
    peak_running = 0,
    next_id = 0,
  }, Scheduler)
end

-- A task for fn(...), marked for the C side, not filed anywhere yet.
local function new_task(self, fn, ...)
  self.next_id = self.next_id + 1
  local args = table.pack(...)
  local task = { id = self.next_id, status = "queued" }
  task.co = coroutine.create(function()
    return xpcall(fn, debug.traceback, table.unpack(args, 1, args.n))
  end)
  host.mark_task(task.co)
  return task
end

-- sched:spawn(fn, ...) -> task; fn runs inside a coroutine later, in run().
-- task.ok / task.result / task.error are set when it ends.
function Scheduler:spawn(fn, ...)
  local task = new_task(self, fn, ...)
  self.queued[#self.queued + 1] = task
  return task
end

-- sched:spawn_next(fn, ...): the same, started before every task spawned
-- with spawn (qmig.engine.overlap: an object's next step before another
-- object's first, so objects get through every step and the pipeline flows).
function Scheduler:spawn_next(fn, ...)
  local task = new_task(self, fn, ...)
  self.urgent[#self.urgent + 1] = task
  return task
end

-- sched:spawn_now(fn, ...): started at once, even with every place
-- taken (the engine's own bookkeeping, e.g. a step's listing: what it
-- costs the API is small, and every item behind it waits for it).
function Scheduler:spawn_now(fn, ...)
  local task = new_task(self, fn, ...)
  task.status = "running"
  self.running = self.running + 1
  self.open = self.open + 1
  self.ready[#self.ready + 1] = { task = task }
  return task
end

local function finish(self, task, ok, success, result)
  self.running = self.running - 1
  self.open = self.open - 1
  if ok and success then
    task.status, task.ok, task.result = "done", true, result
  else
    task.status, task.ok = "failed", false
    task.error = ok and result or success  -- error inside fn, or the coroutine itself broke
  end
  if self.on_done then self.on_done(task) end
end

-- Resumes one task and files it under what it now waits for.
function Scheduler:step(task, ...)
  local ok, a, b = coroutine.resume(task.co, ...)
  if coroutine.status(task.co) == "dead" then
    finish(self, task, ok, a, b)
  elseif http.is_request(a) or http.is_job(a) then  -- a transfer, or file work on the I/O worker
    self.waiting[a] = task
  elseif a == "qmig.sleep" then
    self.running = self.running - 1  -- its place goes to another task meanwhile
    local timers = self.timers
    timers[#timers + 1] = { at = qmig.monotonic() + b, task = task }
    table.sort(timers, function(x, y) return x.at < y.at end)
  else
    self.ready[#self.ready + 1] = { task = task }  -- a plain coroutine.yield: run again soon
  end
end

-- Tasks not started yet.
function Scheduler:pending() return #self.queued + #self.urgent end

-- Gives free places to woken sleepers first (work already under way ends
-- sooner), then to tasks not started yet.
function Scheduler:start_queued()
  while self.running < self.concurrency and #self.woken > 0 do
    self.running = self.running + 1
    self.ready[#self.ready + 1] = { task = table.remove(self.woken, 1) }
  end
  while self.running < self.concurrency and self.open < self.max_open and self:pending() > 0
      and not self.draining do
    local task = table.remove(#self.urgent > 0 and self.urgent or self.queued, 1)
    task.status = "running"
    self.running = self.running + 1
    self.open = self.open + 1
    self.ready[#self.ready + 1] = { task = task }
  end
  if self.running > self.peak_running then self.peak_running = self.running end
end

-- Stops starting new tasks (queued ones are dropped with status
-- "cancelled"); transfers in flight are aborted, so their tasks resume at
-- once with a failure (code "interrupted"), and sleepers wake up.  Used
-- for Ctrl-C.
function Scheduler:drain()
  self.draining = true
  for _, list in ipairs { self.queued, self.urgent } do
    for _, task in ipairs(list) do task.status = "cancelled" end
  end
  self.queued, self.urgent = {}, {}
  -- an fsync cannot be cut short: its task resumes when it ends
  for req in pairs(self.waiting) do
    if http.is_request(req) then http.abort(req) end
  end
  for _, timer in ipairs(self.timers) do timer.at = 0 end
end

function Scheduler:wake_timers()
  local now = qmig.monotonic()
  while self.timers[1] and self.timers[1].at <= now do
    local t = table.remove(self.timers, 1)
    self.woken[#self.woken + 1] = t.task
  end
end

-- sched:alarm(at): the next turn comes by monotonic time `at` at the
-- latest (for on_tick's work that waits on time rather than on a task).
function Scheduler:alarm(at)
  if not self.alarm_at or at < self.alarm_at then self.alarm_at = at end
end

function Scheduler:idle_timeout()
  local at = self.timers[1] and self.timers[1].at
  if self.alarm_at then
    at = math.min(at or self.alarm_at, self.alarm_at)
    self.alarm_at = nil
  end
  if at then return math.max(0, math.min(1, at - qmig.monotonic())) end
  return 1
end

-- Runs until every spawned task has ended.  on_tick(), when set, is
-- called on every turn (at least once a second): it may spawn tasks.
function Scheduler:run()
  while true do
    if qmig.interrupted() and not self.draining then self:drain() end
    if self.on_tick and not self.draining then self.on_tick() end
    self:start_queued()
    self:wake_timers()
    if #self.ready > 0 then
      local batch = self.ready
      self.ready = {}
      for _, entry in ipairs(batch) do self:step(entry.task) end
    elseif self.open == 0 and (self:pending() == 0 or self.draining) then
      return
    elseif #self.woken == 0 or self.running >= self.concurrency then
      -- (a woken sleeper with a free place is handed it on the next turn)
      for _, req in ipairs(http.poll(self:idle_timeout())) do
        local task = self.waiting[req]
        self.waiting[req] = nil
        if task then self.ready[#self.ready + 1] = { task = task } end
      end
      self:wake_timers()
    end
  end
end

-- sched.run(fn, ...) -> results of fn, run as a single task (so its
-- requests go through the multi interface like any other).
function M.run(fn, ...)
  local s = M.new { concurrency = 1 }
  local task = s:spawn(fn, ...)
  s:run()
  if not task.ok then error(task.error, 0) end
  return task.result
end

return M
