-- Steps that overlap, object by object.  A step declaring
-- `after = "object"` does not wait for the whole step before it: its item
-- for an object starts once every earlier step of its group is done for
-- that object, while those steps go on with other objects.  apps.reload
-- reloads one app while apps.import still waits out the catalogue's lag
-- for another, so a step's slowest item no longer holds every object.
--
-- A group is a step that waits for all before it (the default,
-- after = "step": a pack's items() may read a listing of every space)
-- followed by the after = "object" steps that come next in the job.  The
-- objects are the steps' item keys (or object_of(item, ctx)): the source
-- ids every app step keys its items by.  What makes it safe:
--   - an object's steps still run in the global order, one after the other;
--   - a step's items for an object depend only on records of that object
--     made by the steps before it in the group (what after = "object"
--     promises), so a listing taken once those are done lists all of them;
--   - a step's items() is called again as objects get through the steps
--     before it (at most every few times what the call costs), and once
--     more when they are all done, which lists everything as before;
--   - a step's finish() and step_done come after its last item, in order.
-- A plan (dry run) runs step after step: its lines read in step order.
local qmig = require "qmig"

local M = {}

-- The early listings of a group (every step's, together) take at most
-- 1 / (1 + COST_FACTOR) of its time: after one that took c seconds, the
-- next of any step waits COST_FACTOR x c, and at least MIN_GAP.  On a
-- site of 2000 apps a listing costs tens of milliseconds of CPU, and at 4
-- (a fifth of the time) they cost 41 s of CPU in a 210 s run on two cores
-- (bench/, part 1, full site); per step instead of per group, ten steps
-- listing spent most of it.
local MIN_GAP, COST_FACTOR = 0.03, 9

local function overlaps(step)
  return step.after == "object"
end

-- M.groups(steps, dry_run) -> a list of groups, each a list of steps in
-- order: a step that overlaps joins the group of the step before it.
function M.groups(steps, dry_run)
  local out = {}
  for _, step in ipairs(steps) do
    if overlaps(step) and not dry_run and #out > 0 then
      local g = out[#out]
      g[#g + 1] = step
    else
      out[#out + 1] = { step }
    end
  end
  return out
end

local function object_of(step, item, ctx, key)
  if step.object_of then
    local ok, o = pcall(step.object_of, item, ctx)
    return ok and o ~= nil and tostring(o) or nil
  end
  return key
end

function M.install(Engine, engine)
  -- Runs a group of steps (M.groups); on_step(step, summary) as each one
  -- ends, in order.  A group of one step is run_step.
  function Engine:run_group(group, on_step)
    if #group == 1 then return on_step(group[1], self:run_step(group[1])) end
    local s = self:item_scheduler()
    local known = {}  -- every object some listing named
    local next_list = 0  -- when the next early listing may begin (MIN_GAP)
    local states = {}
    for i, step in ipairs(group) do
      local summary, ctx = self:open_step(step)
      -- pending[o]: its items for object o not ended yet (nil: none started)
      states[i] = { index = i, step = step, summary = summary, ctx = ctx, spawned = {}, pending = {},
        absent = {}, open = 0, done_keys = {} }
    end

    -- st is done for object o: its items for o have ended, or it has none
    local function done_for(st, o)
      if st.complete then return true end
      local left = st.pending[o]
      if st.final then return (left or 0) == 0 end
      return st.absent[o] or left == 0
    end
    local function ready(j, o)
      for i = 1, j - 1 do
        if not done_for(states[i], o) then return false end
      end
      return true
    end
    -- What step j does for an object (an item ends, an object found to
    -- have none) can make it ready for step j + 1 only: for the steps
    -- after, j + 1 must act on it first.
    local function dirty_after(j)
      if states[j + 1] then states[j + 1].dirty = true end
    end

    -- step_start: with the step's first item, or its last listing if that comes first
    local function announce(st)
      if st.started then return end
      st.started = true
      self:emit { kind = "step_start", step = st.step.name, total = st.listed or 0 }
    end

    local function start(st, entry, first)
      announce(st)
      st.spawned[entry.key or entry] = true
      st.open = st.open + 1
      if entry.object then st.pending[entry.object] = (st.pending[entry.object] or 0) + 1 end
      local spawn = first and s.spawn or s.spawn_next
      local task = spawn(s, self:item_task(s, st.step, entry.item, st.summary, entry.wait))
      task.state, task.entry = st, entry
    end

    -- The listing's items as {key, item, object, deps, wait}, in the
    -- order depends asks for (engine.dependency_order); wait() holds an
    -- item for the items of its step it depends on.
    local function entries(st, items)
      local order, after = engine.dependency_order(st.step, items, st.ctx)
      for _, entry in ipairs(order) do
        entry.object = entry.key and object_of(st.step, entry.item, st.ctx, entry.key)
        if entry.object then known[entry.object] = true end
        entry.deps = after[entry.key]
        entry.wait = self:waiter(entry.deps, st.done_keys)
      end
      return order
    end
    -- Before the step's last listing an item starts only once the items it
    -- depends on have ended: it never waits holding a place that they
    -- (not started yet) may need.
    local function deps_done(st, entry)
      for _, key in ipairs(entry.deps or {}) do
        if not st.done_keys[key] then return false end
      end
      return true
    end

    -- A listing while steps before are still under way: it starts the
    -- items of the objects those steps are done with, and notes the
    -- objects it has no item for.
    local function list_early(j)
      local st = states[j]
      local waiting = {}
      for o in pairs(known) do
        if not st.pending[o] and not st.absent[o] and ready(j, o) then waiting[o] = true end
      end
      local t0 = qmig.monotonic()
      local items = self:list_items(st.step, st.summary, st.ctx, true)
      local t1 = qmig.monotonic()
      next_list = t1 + math.max(MIN_GAP, COST_FACTOR * (t1 - t0))
      if not items or st.final or self.aborted then return end
      -- an object's items start together or not at all (held: one of
      -- them depends on an item not ended yet), so that "done for the
      -- object" never comes before the last of them
      st.listed = #items
      local listed, held = {}, {}
      local order = entries(st, items)
      for _, entry in ipairs(order) do
        local o = entry.object
        if o then
          listed[o] = true
          if not deps_done(st, entry) then held[o] = true end
        end
      end
      for _, entry in ipairs(order) do
        local o = entry.object
        if o and waiting[o] and not held[o] and not st.spawned[entry.key] then start(st, entry) end
      end
      st.held = next(held) ~= nil
      for o in pairs(waiting) do
        if not listed[o] then st.absent[o] = true end
      end
      dirty_after(j)
    end

    -- The listing once every step before is over: everything not started yet.
    local function list_final(j)
      local st = states[j]
      local items = self:list_items(st.step, st.summary, st.ctx)
      st.final = true
      if not items then
        -- as run_step: the step failed (or the run stopped) before any item
        st.complete, st.summary.reads_before = true, nil
        dirty_after(j)
        return on_step(st.step, st.summary)
      end
      st.listed = #items
      announce(st)
      for _, entry in ipairs(entries(st, items)) do
        if not st.spawned[entry.key or entry] then start(st, entry, j == 1) end
      end
      dirty_after(j)
    end

    local function control(fn, j)
      local task = s:spawn_now(function() fn(j) end)
      task.control = j
      return task
    end
    local function close(j)
      local st = states[j]
      self:close_step(st.step, st.summary, st.ctx)
      st.complete = true
      dirty_after(j)
      on_step(st.step, st.summary)
    end

    local function advance()
      if self.aborted or qmig.interrupted() then return end
      local now = qmig.monotonic()
      local before_done = true
      local early  -- the step to list early: of those waiting, the one listed longest ago
      for j, st in ipairs(states) do
        if st.busy then  -- a listing or the close is under way
          before_done = false
        elseif not st.final then
          if before_done then
            st.busy = true
            control(list_final, j)
          elseif st.dirty and (not early or (st.listed_at or 0) < (early.listed_at or 0)) then
            early = st
          end
          before_done = false
        elseif not st.complete then
          if st.open == 0 and before_done then
            st.busy = true
            control(close, j)
          end
          before_done = false
        end
      end
      if early and now >= next_list then
        early.busy, early.dirty, early.listed_at = true, false, now
        next_list = math.huge  -- one early listing at a time: it sets the next time
        control(list_early, early.index)
      elseif early then
        s:alarm(next_list)
      end
    end

    s.on_done = function(task)
      local st = task.state
      if task.control then
        local cst = states[task.control]
        cst.busy = false
        if not task.ok then
          -- the engine's own failure: counted, and the step is not waited for
          self:task_failed(cst.summary, task)
          next_list = 0
          cst.final = true
          if cst.open == 0 then cst.complete = true end
        end
      elseif st then
        st.open = st.open - 1
        local entry = task.entry
        if entry.key then st.done_keys[entry.key] = true end
        if entry.object then st.pending[entry.object] = st.pending[entry.object] - 1 end
        if not task.ok then self:task_failed(st.summary, task) end
        dirty_after(st.index)
        if st.held then st.dirty = true end
      end
      advance()
    end
    s.on_tick = advance
    advance()
    self:run_scheduler(s)
    -- stopped (an abort, an outage, Ctrl-C): the steps under way end as
    -- run_step's do, without finish(); those never begun are not reported
    for _, st in ipairs(states) do
      if st.started and not st.complete then
        st.complete = true
        on_step(st.step, self:close_step(st.step, st.summary, st.ctx))
      end
    end
  end
end

return M
