-- qmig.store.cache — the project's SQLite store: which target object
-- each source object became, the run history, per-item events and the undo
-- journal.  It is what lets a re-run, a later job or a run resumed after
-- kill -9 find its own work again instead of duplicating it.
--
-- Crash safety comes from the order of commits, not from this file alone:
-- begin_item commits an in_progress marker before the engine writes to the
-- target, finish_item commits the outcome (and its event) in one
-- transaction after.  A crash between the two leaves the marker, which
-- in_progress() hands to the step to resolve by retrieval.
--
-- Every value reaches SQL as a bound parameter.  Every free-text or JSON
-- value written (last_error, reason, message, data, payload, args,
-- summary) goes through log.redact first, so no registered secret can end
-- up in the file.
--
-- The schema and its migrations: lua/qmig/store/migrations.lua.

local qmig = require "qmig"
local sqlite = require "qmig.sqlite"
local durable = require "qmig.store.durable"
local fs = require "qmig.fs"
local host = require "qmig.host"
local migrations = require "qmig.store.migrations"

local M = {}

local RUN_STATUS = { running = true, done = true, failed = true, interrupted = true, crashed = true }
local ITEM_STATUS = require("qmig.store.status").RECORD

M.SCHEMA_VERSION = migrations.VERSION

local values = require "qmig.store.values"
local encode, decode, text, error_text = values.encode, values.decode, values.text, values.error_text
local check_key, item_out, items_out, bool = values.check_key, values.item_out, values.items_out, values.bool

-- WHERE clause for the filter fields present; the SQL text varies only by
-- which fixed conditions are in it, the values stay parameters.
local function where(filter, names)
  local conds = {}
  for _, name in ipairs(names) do
    if filter[name] ~= nil then conds[#conds + 1] = name .. " = :" .. name end
  end
  return #conds > 0 and " WHERE " .. table.concat(conds, " AND ") or ""
end

local Cache = {}
Cache.__index = Cache

-- {====== runs

--- c:start_run{command=, job_file=, args=} -> run id.  Earlier runs still
-- marked running whose process is gone are marked crashed first.  A pid
-- equal to ours that this cache did not start is a recycled pid (common in
-- containers), so that run is gone too.
function Cache:start_run(opts)
  opts = opts or {}
  if type(opts.command) ~= "string" then error("cache: start_run needs a command", 2) end
  local now, me = qmig.isotime(), qmig.getpid()
  return self.db:transaction(function()
    for _, r in ipairs(self.db:all("SELECT id, pid FROM runs WHERE status = 'running'")) do
      local gone = r.pid == nil or not fs.process_alive(r.pid) or r.pid == me
      if gone and not self.started[r.id] then
        self.db:run("UPDATE runs SET status = 'crashed', finished_at = ? WHERE id = ?", now, r.id)
      end
    end
    local _, id = self.db:run(
      "INSERT INTO runs (command, job_file, started_at, status, pid, args) " ..
      "VALUES (:command, :job_file, :now, 'running', :pid, :args)",
      { command = opts.command, job_file = opts.job_file, now = now, pid = me,
        args = encode(opts.args) })
    self.started[id] = true
    return id
  end)
end

--- c:finish_run(id, status, summary)
function Cache:finish_run(id, status, summary)
  if not RUN_STATUS[status] or status == "running" then
    error("cache: bad run status '" .. tostring(status) .. "'", 2)
  end
  self.db:run("UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
              status, qmig.isotime(), encode(summary), id)
  self.started[id] = nil
end

--- c:runs() -> every run, oldest first, args and summary decoded.
function Cache:runs()
  local rows = self.db:all("SELECT * FROM runs ORDER BY id")
  for _, r in ipairs(rows) do
    r.args, r.summary = decode(r.args), decode(r.summary)
  end
  return rows
end
-- }======

-- {====== items

--- c:get(kind, source_id) -> item (data decoded) or nil
function Cache:get(kind, source_id)
  kind, source_id = check_key(kind, source_id)
  return item_out(self.db:first("SELECT * FROM items WHERE kind = ? AND source_id = ?",
                                kind, source_id))
end

--- c:find_by_target(kind, target_id) -> item or nil
function Cache:find_by_target(kind, target_id)
  return item_out(self.db:first(
    "SELECT * FROM items WHERE kind = ? AND target_id = ? ORDER BY source_id LIMIT 1",
    kind, tostring(target_id)))
end

--- c:items(kind [, {status=}]) -> items of a kind (every kind when nil),
-- by kind and source_id
function Cache:items(kind, filter)
  local params = { kind = kind, status = filter and filter.status }
  return items_out(self.db:all("SELECT * FROM items" .. where(params, { "kind", "status" }) ..
                               " ORDER BY kind, source_id", params))
end

--- c:step_ran(step) -> true once any item was recorded by that step
function Cache:step_ran(step)
  return self.db:first("SELECT 1 AS yes FROM items WHERE step = ? LIMIT 1", step) ~= nil
end

--- c:in_progress([kind]) -> items a crashed run left in progress
function Cache:in_progress(kind)
  if kind then
    return items_out(self.db:all(
      "SELECT * FROM items WHERE status = 'in_progress' AND kind = ? ORDER BY source_id", kind))
  end
  return items_out(self.db:all(
    "SELECT * FROM items WHERE status = 'in_progress' ORDER BY kind, source_id"))
end

--- c:begin_item(kind, source_id, {step=, run_id=, fingerprint=}) -> attempts.
-- Its own transaction: the marker is on disk before the engine writes to
-- the target.  The item keeps its target_id (an update in flight) and its
-- fingerprint (that of the last finished migration).  While earlier
-- attempts are unresolved (in_progress, failed) started_at stays the
-- first attempt's: half-finished work is recognised as "created after the
-- attempt began", and a retry that crashed too must not move that point
-- past the object the first attempt left behind.
function Cache:begin_item(kind, source_id, opts)
  kind, source_id = check_key(kind, source_id)
  opts = opts or {}
  local now = qmig.isotime()
  self.unflushed = self.grouped  -- a marker the next write must not overtake (Cache:group)
  return self.db:transaction(function()
    self.db:run([[
      INSERT INTO items (kind, source_id, status, step, run_id, attempts, fingerprint,
                         started_at, updated_at)
      VALUES (:kind, :source_id, 'in_progress', :step, :run_id, 1, :fingerprint, :now, :now)
      ON CONFLICT (kind, source_id) DO UPDATE SET
        status = 'in_progress', step = excluded.step, run_id = excluded.run_id,
        attempts = items.attempts + 1,
        fingerprint = COALESCE(items.fingerprint, excluded.fingerprint),
        started_at = CASE WHEN items.status IN ('in_progress', 'failed')
                          THEN COALESCE(items.started_at, excluded.started_at)
                          ELSE excluded.started_at END,
        updated_at = excluded.updated_at]],
      { kind = kind, source_id = source_id, step = opts.step, run_id = opts.run_id,
        fingerprint = opts.fingerprint, now = now })
    return self.db:first("SELECT attempts FROM items WHERE kind = ? AND source_id = ?",
                         kind, source_id).attempts
  end)
end

local function add_event(db, e)
  local _, id = db:run(
    "INSERT INTO events (run_id, at, step, kind, source_id, status, message, data) " ..
    "VALUES (:run_id, :at, :step, :kind, :source_id, :status, :message, :data)",
    { run_id = e.run_id, at = qmig.isotime(), step = e.step, kind = e.kind,
      source_id = e.source_id ~= nil and tostring(e.source_id) or nil, status = e.status,
      message = text(e.message), data = encode(e.data) })
  return id
end

--- c:finish_item(kind, source_id, {status=, target_id=, natural_key=,
-- reason=, fingerprint=, data=, created_by_us=, run_id=, step=}) -> item.
-- The outcome and its event commit together.  Values not given keep what
-- the item had (a skip does not forget the target); created_by_us, once
-- true, stays true, since it is what lets delete steps and undo touch it.
function Cache:finish_item(kind, source_id, o)
  kind, source_id = check_key(kind, source_id)
  o = o or {}
  if not ITEM_STATUS[o.status] or o.status == "in_progress" then
    error("cache: bad item status '" .. tostring(o.status) .. "'", 2)
  end
  local now = qmig.isotime()
  return self.db:transaction(function()
    self.db:run([[
      INSERT INTO items (kind, source_id, target_id, natural_key, status, step, run_id,
                         attempts, reason, fingerprint, data, created_by_us, started_at,
                         updated_at)
      VALUES (:kind, :source_id, :target_id, :natural_key, :status, :step, :run_id, 0,
              :reason, :fingerprint, :data, COALESCE(:created_by_us, 0), :now, :now)
      ON CONFLICT (kind, source_id) DO UPDATE SET
        status = excluded.status,
        target_id = COALESCE(excluded.target_id, items.target_id),
        natural_key = COALESCE(excluded.natural_key, items.natural_key),
        step = COALESCE(excluded.step, items.step),
        run_id = COALESCE(excluded.run_id, items.run_id),
        reason = excluded.reason,
        fingerprint = COALESCE(excluded.fingerprint, items.fingerprint),
        data = COALESCE(excluded.data, items.data),
        created_by_us = MAX(items.created_by_us, excluded.created_by_us),
        last_error = CASE WHEN excluded.status = 'failed' THEN items.last_error END,
        updated_at = excluded.updated_at]],
      { kind = kind, source_id = source_id,
        target_id = o.target_id ~= nil and tostring(o.target_id) or nil,
        natural_key = o.natural_key, status = o.status, step = o.step, run_id = o.run_id,
        reason = text(o.reason), fingerprint = o.fingerprint, data = encode(o.data),
        created_by_us = bool(o.created_by_us), now = now })
    local item = self:get(kind, source_id)
    add_event(self.db, { run_id = item.run_id, step = item.step, kind = kind,
                         source_id = source_id, status = o.status, message = o.reason })
    return item
  end)
end

--- c:drop_item(kind, source_id): forgets a record that stands for no
-- object (the engine's record of a step whose items() failed).
function Cache:drop_item(kind, source_id)
  kind, source_id = check_key(kind, source_id)
  self.db:run("DELETE FROM items WHERE kind = ? AND source_id = ?", kind, source_id)
end

--- c:fail_item(kind, source_id, err, run_id): status failed, the (redacted)
-- error kept as last_error and as an event.
function Cache:fail_item(kind, source_id, err, run_id)
  kind, source_id = check_key(kind, source_id)
  local msg, now = error_text(err), qmig.isotime()
  return self.db:transaction(function()
    self.db:run([[
      INSERT INTO items (kind, source_id, status, run_id, attempts, last_error, started_at,
                         updated_at)
      VALUES (:kind, :source_id, 'failed', :run_id, 1, :msg, :now, :now)
      ON CONFLICT (kind, source_id) DO UPDATE SET
        status = 'failed', run_id = COALESCE(excluded.run_id, items.run_id),
        last_error = excluded.last_error, updated_at = excluded.updated_at]],
      { kind = kind, source_id = source_id, run_id = run_id, msg = msg, now = now })
    local item = self:get(kind, source_id)
    add_event(self.db, { run_id = item.run_id, step = item.step, kind = kind,
                         source_id = source_id, status = "failed", message = msg })
    return item
  end)
end
-- }======

-- {====== events

--- c:event{run_id=, step=, kind=, source_id=, status=, message=, data=} -> id
function Cache:event(fields)
  return add_event(self.db, fields or {})
end

--- c:events({run_id=, kind=, source_id=}) -> events, oldest first
function Cache:events(filter)
  filter = filter or {}
  local params = { run_id = filter.run_id, kind = filter.kind,
                   source_id = filter.source_id ~= nil and tostring(filter.source_id) or nil }
  local rows = self.db:all("SELECT * FROM events" ..
                           where(params, { "run_id", "kind", "source_id" }) ..
                           " ORDER BY id", params)
  for _, r in ipairs(rows) do r.data = decode(r.data) end
  return rows
end
-- }======

-- the undo journal: lua/qmig/store/journal.lua
local journal = require "qmig.store.journal"
Cache.add_undo, Cache.undo_entries, Cache.mark_undone = journal.add_undo, journal.undo_entries, journal.mark_undone


-- {====== meta, transactions, closing

function Cache:meta_get(key)
  local row = self.db:first("SELECT value FROM meta WHERE key = ?", key)
  return row and row.value
end

--- c:meta_set(key, value): a nil value removes the key.
function Cache:meta_set(key, value)
  if value == nil then
    self.db:run("DELETE FROM meta WHERE key = ?", key)
  else
    self.db:run("INSERT INTO meta (key, value) VALUES (?, ?) " ..
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, tostring(value))
  end
end

--- c:group(true | false): group commit, for the engine while a step's items
-- run concurrently.  Every commit is an fsync, which made on the event
-- loop's thread stalls every transfer in flight, and each item made two
-- (begin_item, finish_item).  Grouped, the cache's writes share one open
-- transaction (their own transactions become savepoints in it), committed
-- only when needed: before a write request is sent, if an in-progress
-- marker was written since the last commit, so a marker is still durable
-- before the write it announces; and at group(false).  Inside the group
-- commits are made with synchronous=NORMAL (no fsync) and made durable by
-- an fsync of the WAL on the I/O worker (fs.sync), which the task about
-- to write waits for (qmig.store.durable: the clients' barrier) while the other tasks go on; one fsync
-- covers every marker committed before it.  A write made without that
-- barrier still gets a blocking commit + fsync (qmig.host.before_send).  A
-- crash loses at most outcomes not committed yet; their markers are, so
-- the next run resumes those items exactly as after a crash between a
-- write and its recorded outcome.
function Cache:group(on)
  if on and not self.grouped then
    self.db:exec("PRAGMA synchronous=NORMAL")
    self.db:begin("immediate")
    self.grouped, self.unflushed = true, false
    self.commits, self.durable_upto = 0, 0
    host.before_send(function() self:flush(true) end)
    -- the same barrier: inside a task its fsync runs on the I/O worker
    durable.set(function() self:flush(true) end)
  elseif not on and self.grouped then
    host.before_send(nil)
    durable.set(nil)
    self.grouped, self.unflushed = false, false
    self.db:commit()
    self.db:exec("PRAGMA synchronous=FULL")
    self:sync_wal()
  end
end

function Cache:sync_wal()
  local ok, msg, code = fs.sync(self.path .. "-wal")
  -- no WAL file: nothing was ever written to sync
  if not ok and code ~= 2 then error("cache: cannot make the cache durable: " .. tostring(msg), 0) end
end

--- c:flush([sync]): commits the group's transaction if a marker awaits
-- it; with sync, also makes every commit durable before returning (the
-- write barrier, see group): one fsync covers every commit before it, so
-- none is made when an earlier one already did.
-- Test hook (tests/lua/test_soak.lua): QMIG_TEST_KILL_AT_COMMIT=n SIGKILLs
-- the process just before the group's nth commit, a crash in the middle of
-- the engine's own commit.
local KILL_AT_COMMIT = tonumber(os.getenv("QMIG_TEST_KILL_AT_COMMIT") or "")

function Cache:flush(sync)
  if self.grouped and self.unflushed then
    if KILL_AT_COMMIT and self.commits + 1 == KILL_AT_COMMIT then os.execute("kill -9 " .. qmig.getpid()) end
    self.db:commit()
    self.unflushed = false
    self.commits = self.commits + 1
    self.db:begin("immediate")
  end
  if sync and self.grouped and self.durable_upto < self.commits then
    local upto = self.commits
    self:sync_wal()
    self.durable_upto = math.max(self.durable_upto, upto)
  end
end

--- c:transaction(fn, ...) -> fn's results; see db:transaction.
function Cache:transaction(fn, ...)
  return self.db:transaction(fn, ...)
end

function Cache:close()
  self:group(false)
  self.db:close()
end

Cache.__close = Cache.close
Cache.__tostring = function(self) return "qmig.Cache (" .. self.path .. ")" end
-- }======

--- cache.open(path) -> cache | nil, msg, code
function M.open(path)
  local db, msg, code = sqlite.open(path)
  if not db then return nil, msg, code end
  local ok, res, mmsg, mcode = pcall(migrations.apply, db, path)
  if not ok or not res then
    db:close()
    if not ok then
      local err = tostring(res)
      local class = err:match("^sqlite (%a+):") or "sqlite"
      return nil, path .. ": " .. err, class
    end
    return nil, mmsg, mcode
  end
  return setmetatable({ db = db, path = path, started = {} }, Cache)
end

return M
