-- qmig.store.cache: schema, item lifecycle, runs, events, undo, secrets kept out
-- of the file, and the crash-safety promises (kill -9, the project lock).
local t = require "testing"
local cache = require "qmig.store.cache"
local sqlite = require "qmig.sqlite"
local fs = require "qmig.fs"
local log = require "qmig.ui.log"
local json = require "qmig.json"

local T = t.suite("cache")

local EXE = assert(fs.realpath("/proc/self/exe"))
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function fresh()
  local dir = t.tmpdir()
  local path = dir .. "/qmig.db"
  return assert(cache.open(path)), path, dir
end

-- Runs a Lua script in a child qmig-lua; returns its exit status and output.
local function child(dir, code, ...)
  local script = fs.tmpname(dir, "child")
  t.write(script, code)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = q(tostring(a)) end
  -- exec: the child itself is what popen waits for, so a signal shows
  local p = io.popen("exec " .. q(EXE) .. " " .. q(script) .. " " .. table.concat(args, " ") .. " 2>&1")
  local out = p:read("a")
  local _, how, status = p:close()
  -- the sanitizers' own exit status (make test-asan) fails whatever was expected
  if how == "exit" and status == tonumber(os.getenv("QMIG_SANITIZER_EXIT") or "86") then
    error("child: a sanitizer report:\n" .. out, 2)
  end
  return how, status, out
end

local function dead_pid()
  local p = io.popen("sh -c 'echo $$'")
  local pid = tonumber(p:read("l"))
  p:close()
  return pid
end

T.test("open creates schema v1, 0600, and reopens without migrating again", function()
  local c, path = fresh()
  t.eq(cache.SCHEMA_VERSION, 1)
  t.eq(c.db:first("PRAGMA user_version").user_version, 1)
  t.eq(fs.stat(path).mode, tonumber("600", 8))
  local tables = {}
  for r in c.db:rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") do
    tables[#tables + 1] = r.name
  end
  t.eq(tables, { "events", "items", "meta", "runs", "undo" })
  c:meta_set("kept", "yes")
  c:close()
  c = assert(cache.open(path))
  t.eq(c:meta_get("kept"), "yes")
  t.eq(c.db:first("PRAGMA user_version").user_version, 1)
  t.match(tostring(c), "^qmig.Cache %(")
  c:close()
end)

T.test("a database from a newer qmig-lua is refused with code 'version'", function()
  local c, path = fresh()
  c.db:exec("PRAGMA user_version = 7")
  c:close()
  local none, msg, code = cache.open(path)
  t.eq(none, nil)
  t.eq(msg, path .. ": cache schema version 7 is newer than this qmig-lua (1)")
  t.eq(code, "version")
end)

T.test("open failures pass through as nil, msg, code", function()
  local dir = t.tmpdir()
  local none, msg, code = cache.open(dir .. "/no/such/qmig.db")
  t.eq(none, nil)
  t.match(msg, "No such file")
  t.eq(code, 2)
  t.write(dir .. "/junk.db", ("junk"):rep(1000))
  none, msg, code = cache.open(dir .. "/junk.db")
  t.eq(none, nil)
  t.match(msg, "not a database")
  t.eq(code, "sqlite")
end)

T.test("a failed migration leaves the previous version intact", function()
  local dir = t.tmpdir()
  local path = dir .. "/qmig.db"
  local db = assert(sqlite.open(path))
  db:exec("CREATE TABLE runs (x)")  -- collides with v1's first statement
  db:close()
  local none, msg = cache.open(path)
  t.eq(none, nil)
  t.match(msg, "table runs already exists")
  db = assert(sqlite.open(path))
  t.eq(db:first("PRAGMA user_version").user_version, 0)
  t.eq(db:first("SELECT count(*) n FROM sqlite_master WHERE name = 'items'").n, 0)
  db:close()
end)

T.test("runs: start, finish, list; dead 'running' runs become 'crashed'", function()
  local c = fresh()
  -- a run left 'running' by a process that no longer exists
  c.db:run("INSERT INTO runs (command, started_at, status, pid) VALUES ('run', 'x', 'running', ?)",
           dead_pid())
  -- and one by a live process that is not us
  c.db:run("INSERT INTO runs (command, started_at, status, pid) VALUES ('run', 'x', 'running', 1)")
  local id = c:start_run({ command = "run", job_file = "job.yaml", args = { argv = { "--force" }, n = 2 } })
  local runs = c:runs()
  t.eq(#runs, 3)
  t.eq(runs[1].status, "crashed")
  t.truthy(runs[1].finished_at)
  t.eq(runs[2].status, "running", "a live pid is left alone")
  t.eq(runs[3].id, id)
  t.eq(runs[3].status, "running")
  t.eq(runs[3].pid, qmig.getpid())
  t.eq(runs[3].args, { argv = { "--force" }, n = 2 })
  local id2 = c:start_run({ command = "plan" })
  t.eq(c:runs()[3].status, "running", "our own unfinished run is not crashed")
  c:finish_run(id, "done", { created = 3, failed = 0 })
  c:finish_run(id2, "interrupted")
  runs = c:runs()
  t.eq(runs[3].status, "done")
  t.eq(runs[3].summary, { created = 3, failed = 0 })
  t.eq(runs[4].status, "interrupted")
  t.raises("bad run status", c.finish_run, c, id, "running")
  t.raises("bad run status", c.finish_run, c, id, "great")
  t.raises("needs a command", c.start_run, c, {})
  c:close()
end)

T.test("item lifecycle: begin, finish, get, find_by_target, items", function()
  local c = fresh()
  local run = c:start_run({ command = "run" })
  t.eq(c:get("app", "a1"), nil)
  t.eq(c:begin_item("app", "a1", { step = "apps.import", run_id = run, fingerprint = "f1" }), 1)
  local it = c:get("app", "a1")
  t.eq({ it.status, it.step, it.run_id, it.attempts, it.fingerprint },
       { "in_progress", "apps.import", run, 1, "f1" })
  t.truthy(it.started_at)
  local done = c:finish_item("app", "a1", {
    status = "created", target_id = "t-1", natural_key = "Sales", reason = "new app",
    fingerprint = "f1", data = { name = "Sales", tags = json.array(), desc = json.null },
    created_by_us = true,
  })
  t.eq(done.status, "created")
  it = c:get("app", "a1")
  t.eq({ it.status, it.target_id, it.natural_key, it.reason, it.created_by_us },
       { "created", "t-1", "Sales", "new app", true })
  t.eq(it.data.name, "Sales")
  t.truthy(json.is_array(it.data.tags), "[] stays an array")
  t.eq(it.data.desc, json.null)
  t.eq(json.encode(it.data, { sort_keys = true }), '{"desc":null,"name":"Sales","tags":[]}')
  t.eq(c:find_by_target("app", "t-1").source_id, "a1")
  t.eq(c:find_by_target("app", "t-2"), nil)
  t.eq(c:find_by_target("space", "t-1"), nil)
  -- a second attempt keeps the target and counts
  t.eq(c:begin_item("app", "a1", { step = "apps.import", run_id = run, fingerprint = "f2" }), 2)
  it = c:get("app", "a1")
  t.eq({ it.status, it.target_id, it.fingerprint }, { "in_progress", "t-1", "f1" })
  -- an adopt later neither forgets the target nor that we created it
  c:finish_item("app", "a1", { status = "adopted", created_by_us = false, fingerprint = "f2" })
  it = c:get("app", "a1")
  t.eq({ it.status, it.target_id, it.created_by_us, it.fingerprint, it.reason },
       { "adopted", "t-1", true, "f2", nil })
  c:finish_item("app", "a2", { status = "skipped", reason = "excluded by plan", run_id = run })
  c:finish_item("space", "s1", { status = "adopted", target_id = 42 })
  t.eq(c:get("space", "s1").target_id, "42")
  t.eq(c:get("space", "s1").created_by_us, false)
  local apps = c:items("app")
  t.eq({ #apps, apps[1].source_id, apps[2].source_id }, { 2, "a1", "a2" })
  t.eq(#c:items("app", { status = "skipped" }), 1)
  t.eq(#c:items("user"), 0)
  t.raises("bad item status", c.finish_item, c, "app", "a1", { status = "in_progress" })
  t.raises("bad item status", c.finish_item, c, "app", "a1", {})
  t.raises("kind must be", c.get, c, nil, "x")
  t.raises("source_id must be", c.get, c, "app", {})
  c:close()
end)

T.test("started_at stays at the first of a series of unresolved attempts", function()
  local c = fresh()
  c:begin_item("app", "a1", {})
  c.db:run("UPDATE items SET started_at = '2000-01-01T00:00:00.000Z'")
  c:begin_item("app", "a1", {})  -- the first attempt crashed: still in_progress
  t.eq(c:get("app", "a1").started_at, "2000-01-01T00:00:00.000Z")
  c:fail_item("app", "a1", "timeout")
  c:begin_item("app", "a1", {})
  t.eq(c:get("app", "a1").started_at, "2000-01-01T00:00:00.000Z")
  c:finish_item("app", "a1", { status = "created", target_id = "t" })
  c:begin_item("app", "a1", {})  -- a new series (e.g. --force) starts now
  t.truthy(c:get("app", "a1").started_at > "2001", "a resolved item starts afresh")
  t.eq(c:get("app", "a1").attempts, 4)
  c:close()
end)

T.test("items(nil) lists every kind; step_ran", function()
  local c = fresh()
  t.eq(c:step_ran("spaces.create"), false)
  c:finish_item("space", "s1", { status = "created", step = "spaces.create" })
  c:finish_item("app", "a1", { status = "failed", step = "apps.import" })
  local all = c:items(nil)
  t.eq({ #all, all[1].kind, all[2].kind }, { 2, "app", "space" })
  t.eq(#c:items(nil, { status = "failed" }), 1)
  t.eq(c:step_ran("spaces.create"), true)
  t.eq(c:step_ran("apps.publish"), false)
  c:close()
end)

T.test("fail_item records the error and an event; success clears it", function()
  local c = fresh()
  local run = c:start_run({ command = "run" })
  c:begin_item("user", "u1", { step = "users.import", run_id = run })
  local it = c:fail_item("user", "u1", "http 500: upstream broke", run)
  t.eq({ it.status, it.last_error, it.attempts }, { "failed", "http 500: upstream broke", 1 })
  c:fail_item("user", "u2", { message = "table error", code = 409 })
  t.eq(c:get("user", "u2").last_error, "table error")
  c:fail_item("user", "u3", ("x"):rep(10000))
  t.truthy(#c:get("user", "u3").last_error <= 4003, "long errors are cut")
  c:finish_item("user", "u1", { status = "created", target_id = "cu1" })
  t.eq(c:get("user", "u1").last_error, nil)
  local ev = c:events({ kind = "user", source_id = "u1" })
  t.eq(#ev, 2)
  t.eq({ ev[1].status, ev[1].message, ev[1].run_id, ev[1].step },
       { "failed", "http 500: upstream broke", run, "users.import" })
  t.eq(ev[2].status, "created")
  c:close()
end)

T.test("in_progress lists what a crashed run left", function()
  local c = fresh()
  c:begin_item("app", "a1", { step = "apps.import" })
  c:begin_item("space", "s1", { step = "spaces.create" })
  c:begin_item("app", "a2", { step = "apps.import" })
  c:finish_item("app", "a2", { status = "created", target_id = "t2" })
  local all = c:in_progress()
  t.eq(#all, 2)
  t.eq({ all[1].kind, all[1].source_id, all[2].kind }, { "app", "a1", "space" })
  t.eq(#c:in_progress("space"), 1)
  t.eq(#c:in_progress("user"), 0)
  c:close()
end)

T.test("events: free-form, filtered, oldest first", function()
  local c = fresh()
  local r1 = c:start_run({ command = "run" })
  local r2 = c:start_run({ command = "run" })
  c:event({ run_id = r1, step = "spaces.create", kind = "space", source_id = "s1",
            status = "info", message = "m1", data = { n = 1 } })
  c:event({ run_id = r2, kind = "space", source_id = "s1", message = "m2" })
  c:event({ run_id = r2, kind = "app", source_id = 7, message = "m3" })
  t.eq(#c:events(), 3)
  t.eq(#c:events({ run_id = r2 }), 2)
  t.eq(#c:events({ kind = "space", source_id = "s1" }), 2)
  local e = c:events({ run_id = r2, kind = "app", source_id = 7 })
  t.eq({ #e, e[1].message, e[1].source_id }, { 1, "m3", "7" })
  t.eq(c:events({ run_id = r1 })[1].data, { n = 1 })
  t.truthy(c:events()[1].id < c:events()[2].id)
  c:close()
end)

T.test("undo journal: newest first, per run, mark_undone once", function()
  local c = fresh()
  local r1 = c:start_run({ command = "run" })
  local r2 = c:start_run({ command = "run" })
  local u1 = c:add_undo({ run_id = r1, step = "spaces.create", kind = "space", source_id = "s1",
                          target_id = "t1", action = "delete" })
  local u2 = c:add_undo({ run_id = r1, step = "apps.scripts", kind = "app", source_id = "a1",
                          target_id = "t2", action = "restore", payload = { script = "LOAD 1;" } })
  local u3 = c:add_undo({ run_id = r2, step = "apps.owners", kind = "app", source_id = "a1",
                          action = "irreversible", payload = { note = "owner changed" } })
  local all = c:undo_entries()
  t.eq({ all[1].id, all[2].id, all[3].id }, { u3, u2, u1 })
  local mine = c:undo_entries({ run_id = r1 })
  t.eq(#mine, 2)
  t.eq(mine[1].payload, { script = "LOAD 1;" })
  t.eq(mine[1].action, "restore")
  local undo_run = c:start_run({ command = "undo" })
  t.eq(c:mark_undone(u2, undo_run), true)
  t.eq(c:mark_undone(u2, undo_run), false, "only once")
  t.eq(#c:undo_entries({ run_id = r1 }), 1)
  local row = c.db:first("SELECT undone_at, undone_by_run FROM undo WHERE id = ?", u2)
  t.truthy(row.undone_at)
  t.eq(row.undone_by_run, undo_run)
  t.raises("bad undo action", c.add_undo, c, { action = "explode" })
  c:close()
end)

T.test("meta get/set/delete", function()
  local c = fresh()
  t.eq(c:meta_get("x"), nil)
  c:meta_set("x", "1")
  c:meta_set("x", 2)
  t.eq(c:meta_get("x"), "2")
  c:meta_set("x", nil)
  t.eq(c:meta_get("x"), nil)
  c:close()
end)

T.test("transaction: all or nothing across items and events", function()
  local c = fresh()
  local ok = pcall(c.transaction, c, function()
    c:begin_item("app", "a1", {})
    c:finish_item("app", "a1", { status = "created", target_id = "t" })
    c:event({ message = "inside" })
    error("abort")
  end)
  t.eq(ok, false)
  t.eq(c:get("app", "a1"), nil)
  t.eq(#c:events(), 0)
  t.eq(c:transaction(function(a) return a * 2 end, 21), 42)
  c:close()
end)

T.test("a registered secret never reaches the database file", function()
  local c, path = fresh()
  local secret = "Sup3r-S3cret-Key-0042"
  log.add_secret(secret)
  local run = c:start_run({ command = "run", args = { "--api-key", secret } })
  c:begin_item("conn", "d1", { run_id = run })
  c:fail_item("conn", "d1", "401 for key " .. secret, run)
  c:fail_item("conn", "d2", { message = "Bearer " .. secret })
  c:event({ run_id = run, message = "retrying with " .. secret, data = { header = secret } })
  c:add_undo({ run_id = run, action = "restore", kind = "conn", source_id = "d1",
               payload = { previous = { password = "plain-pw-777", note = "was " .. secret } } })
  c:finish_item("conn", "d1", { status = "created", target_id = "x", reason = "used " .. secret,
                                data = { connectionString = "Server=x;password=plain-pw-777" } })
  c:finish_run(run, "done", { note = secret })
  local function raw()
    local s = t.read(path)
    if fs.exists(path .. "-wal") then s = s .. t.read(path .. "-wal") end
    return s
  end
  local before = raw()
  t.truthy(#before > 0)
  t.truthy(not before:find(secret, 1, true), "secret in the database or its WAL")
  t.truthy(not before:find("plain-pw-777", 1, true), "password in the database or its WAL")
  t.truthy(before:find("401 for key ***", 1, true), "the redacted text is there")
  c:close()
  t.truthy(not raw():find(secret, 1, true), "secret after checkpoint")
end)

T.test("kill -9 inside a transaction: marker kept, half-done work gone, db intact", function()
  local dir = t.tmpdir()
  local path = dir .. "/qmig.db"
  local how, status, out = child(dir, [[
    local cache = require "qmig.store.cache"
    local c = assert(cache.open(...))
    local run = c:start_run({ command = "run" })
    c:finish_item("app", "done-before", { status = "created", target_id = "t0", run_id = run })
    c:begin_item("app", "a1", { step = "apps.import", run_id = run })
    c:transaction(function()
      c:finish_item("app", "a1", { status = "created", target_id = "t1" })
      c:event({ run_id = run, message = "half done" })
      for i = 1, 200 do c:meta_set("k" .. i, ("v"):rep(1000)) end
      os.execute("kill -9 " .. qmig.getpid())
      print("still alive?")
    end)
  ]], path)
  t.eq(how, "signal", "child killed: " .. out)
  t.eq(status, 9)
  t.truthy(not out:find("still alive", 1, true))
  t.eq(fs.stat(path).mode, tonumber("600", 8))
  if fs.exists(path .. "-wal") then
    t.eq(fs.stat(path .. "-wal").mode & tonumber("077", 8), 0)
  end
  local c = assert(cache.open(path))
  t.eq(c.db:first("PRAGMA integrity_check").integrity_check, "ok")
  local it = c:get("app", "a1")
  t.eq({ it.status, it.target_id, it.attempts }, { "in_progress", nil, 1 })
  t.eq(c:get("app", "done-before").status, "created")
  t.eq(#c:in_progress(), 1)
  t.eq(c:meta_get("k1"), nil)
  t.eq(#c:events({ kind = "app", source_id = "a1" }), 0)
  -- the dead run is recognised as crashed by the next run
  c:start_run({ command = "run" })
  t.eq(c:runs()[1].status, "crashed")
  c:close()
end)

T.test("kill -9 between begin_item and finish_item leaves a resumable marker", function()
  local dir = t.tmpdir()
  local path = dir .. "/qmig.db"
  local how, status = child(dir, [[
    local cache = require "qmig.store.cache"
    local c = assert(cache.open(...))
    local run = c:start_run({ command = "run" })
    for i = 1, 5 do
      c:begin_item("space", "s" .. i, { step = "spaces.create", run_id = run })
      if i == 3 then os.execute("kill -9 " .. qmig.getpid()) end
      c:finish_item("space", "s" .. i, { status = "created", target_id = "t" .. i })
    end
  ]], path)
  t.eq({ how, status }, { "signal", 9 })
  local c = assert(cache.open(path))
  t.eq(c.db:first("PRAGMA integrity_check").integrity_check, "ok")
  local st = {}
  for _, it in ipairs(c:items("space")) do st[#st + 1] = it.source_id .. "=" .. it.status end
  t.eq(st, { "s1=created", "s2=created", "s3=in_progress" })
  c:close()
end)

T.test("grouped: each marker is committed before the write it announces is sent", function()
  local durable = require "qmig.store.durable"
  local http = require "qmig.http"
  local sched = require "qmig.engine.sched"
  local servers = require "servers"
  local srv = servers.start()
  local client = http.client { base_url = srv.base }
  local c, path = fresh()
  local run = c:start_run({ command = "run" })
  c:group(true)
  local s = sched.new { concurrency = 4 }
  local seen = {}
  for i = 1, 8 do
    s:spawn(function()
      local id = "a" .. i
      c:begin_item("app", id, { step = "x", run_id = run, fingerprint = "f" })
      -- what qmig.clients.cloud and qmig.clients.qrs do before every write
      local covered = durable.wait()
      local resp = assert(client:request { method = "POST", path = "/peek-item", json = {},
        query = { db = path, kind = "app", id = id }, durable = covered })
      seen[i] = json.decode(resp.body).status
      c:finish_item("app", id, { status = "created", target_id = "t" .. i, fingerprint = "f" })
    end)
  end
  s:run()
  c:group(false)
  srv.stop()
  for i = 1, 8 do t.eq(seen[i], "in_progress", "item " .. i .. " when its write arrived") end
  t.eq(c:get("app", "a8").status, "created")
  -- the group's last commit is durable and visible to others too
  local other = assert(cache.open(path))
  t.eq(other:get("app", "a1").status, "created")
  other:close()
  t.eq(durable.wait(), false, "no barrier outside a group")
  c:close()
end)

T.test("the project lock: a second process is refused until the holder dies", function()
  local dir = t.tmpdir()
  local lockpath = dir .. "/qmig.lock"
  -- a holder in the background that would sleep a minute
  local holder = fs.tmpname(dir, "holder")
  t.write(holder, [[
    local fs = require "qmig.fs"
    local l = assert(fs.lock(...))
    io.open((...) .. ".ready", "w"):close()
    qmig.sleep(60)
    l:unlock()
  ]])
  assert(os.execute(q(EXE) .. " " .. q(holder) .. " " .. q(lockpath) .. " >/dev/null 2>&1 &"))
  local waited = 0
  while not fs.exists(lockpath .. ".ready") and waited < 100 do
    qmig.sleep(0.05)
    waited = waited + 1
  end
  local pid = tonumber(t.read(lockpath):match("%d+"))
  t.truthy(pid and pid ~= qmig.getpid(), "the holder wrote its pid")
  T.after_all(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)

  local l, msg, code = fs.lock(lockpath)
  t.eq(l, nil)
  t.eq(msg, lockpath .. " is locked by another process")
  t.eq(code, "locked")
  -- another process gets the same answer
  local _, _, out = child(dir, [[
    local fs = require "qmig.fs"
    print(select(3, fs.lock(...)))
  ]], lockpath)
  t.eq(out, "locked\n")

  assert(os.execute("kill -9 " .. pid))
  local got
  for _ = 1, 100 do
    got = fs.lock(lockpath)
    if got then break end
    qmig.sleep(0.05)
  end
  t.truthy(got, "the lock is free once its holder is killed")
  t.eq(t.read(lockpath), qmig.getpid() .. "\n")
  got:unlock()
end)

T.test("a child started while holding the lock does not inherit it", function()
  local dir = t.tmpdir()
  local lockpath = dir .. "/qmig.lock"
  local l = assert(fs.lock(lockpath))
  -- the shell's background sleeper outlives the unlock below
  assert(os.execute("sleep 2 >/dev/null 2>&1 &"))
  l:unlock()
  local again = fs.lock(lockpath)
  t.truthy(again, "lock free although a child of ours is still running")
  again:unlock()
end)

return T
