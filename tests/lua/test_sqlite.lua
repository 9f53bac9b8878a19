-- qmig.sqlite: the generic binding under the cache.
local t = require "testing"
local sqlite = require "qmig.sqlite"
local fs = require "qmig.fs"
local json = require "qmig.json"

local T = t.suite("sqlite")

local function fresh(name, opts)
  local path = t.tmpdir() .. "/" .. (name or "t.db")
  return assert(sqlite.open(path, opts)), path
end

T.test("open creates the file 0600 in WAL mode, -wal and -shm private too", function()
  local db, path = fresh()
  t.eq(fs.stat(path).mode, tonumber("600", 8))
  t.eq(db:first("PRAGMA journal_mode").journal_mode, "wal")
  t.eq(db:first("PRAGMA foreign_keys").foreign_keys, 1)
  t.eq(db:first("PRAGMA synchronous").synchronous, 2)  -- FULL: markers survive a power loss
  db:exec("CREATE TABLE x(a)")
  db:run("INSERT INTO x VALUES (1)")
  for _, suffix in ipairs({ "-wal", "-shm" }) do
    local st = assert(fs.stat(path .. suffix), suffix .. " exists while open")
    t.eq(st.mode & tonumber("077", 8), 0, suffix .. " not readable by group/others")
  end
  t.eq(db:path(), path)
  t.match(tostring(db), "^qmig.Sqlite %(")
  db:close()
end)

T.test("open failures return nil, msg, code", function()
  local dir = t.tmpdir()
  local db, msg, code = sqlite.open(dir .. "/missing/x.db")
  t.eq(db, nil)
  t.match(msg, "missing/x.db: No such file")
  t.eq(code, 2)
  t.write(dir .. "/text.db", ("not a database at all\n"):rep(200))
  db, msg, code = sqlite.open(dir .. "/text.db")
  t.eq(db, nil)
  t.match(msg, "text.db: file is not a database")
  t.eq(code, "sqlite")
  db, msg, code = sqlite.open(dir .. "/absent.db", { readonly = true })
  t.eq(db, nil)
  t.match(msg, "absent.db: No such file")
  t.eq(code, 2)
  t.eq(fs.exists(dir .. "/absent.db"), false, "readonly open never creates")
end)

T.test("an existing file keeps its content and is opened, not truncated", function()
  local db, path = fresh()
  db:exec("CREATE TABLE x(a); INSERT INTO x VALUES (42);")
  db:close()
  db = assert(sqlite.open(path))
  t.eq(db:first("SELECT a FROM x").a, 42)
  db:close()
end)

T.test("types round-trip: integer, float, text with NULs, boolean, nil, json.null", function()
  local db = fresh()
  db:exec("CREATE TABLE v(i, f, s, b, n, j)")
  local big = math.maxinteger
  db:run("INSERT INTO v VALUES (?, ?, ?, ?, ?, ?)", big, 2.5, "a\0b\xff", true, nil, json.null)
  local r = db:first("SELECT i, typeof(i) ti, f, typeof(f) tf, s, typeof(s) ts, b, n, j, " ..
                     "typeof(n) tn, typeof(j) tj FROM v")
  t.eq(r, { i = big, ti = "integer", f = 2.5, tf = "real", s = "a\0b\xff", ts = "text",
            b = 1, tn = "null", tj = "null" })
  t.eq(math.type(r.i), "integer")
  db:run("DELETE FROM v")
  db:run("INSERT INTO v (i, b) VALUES (?, ?)", 3.0, false)
  r = db:first("SELECT i, typeof(i) ti, b FROM v")
  t.eq(r.ti, "real", "a float stays a float")
  t.eq(r.b, 0)
  db:close()
end)

T.test("named parameters come from one table; missing names bind NULL", function()
  local db = fresh()
  db:exec("CREATE TABLE p(a, b, c)")
  db:run("INSERT INTO p VALUES (:a, @b, $c)", { a = 1, b = "two" })
  t.eq(db:first("SELECT a, b, c FROM p"), { a = 1, b = "two" })
  t.raises("^sqlite: positional parameter", db.run, db, "SELECT ?", {})
  db:close()
end)

T.test("binding mistakes raise and leave the connection usable", function()
  local db = fresh()
  t.raises("^sqlite: 2 values given for 1 parameters", db.first, db, "SELECT ?", 1, 2)
  t.raises("^sqlite: 1 values given for 2 parameters", db.first, db, "SELECT ?, ?", 1)
  t.eq(db:first("SELECT ? AS a, ? AS b", 1, nil), { a = 1 }, "an explicit nil is a value")
  t.raises("cannot bind a table value to parameter 2", db.first, db, "SELECT ?, ?", 1, {})
  t.raises("cannot bind a function value", db.first, db, "SELECT ?", print)
  t.eq(db:first("SELECT ? AS x", 7).x, 7, "the same statement works after the failure")
  db:close()
end)

T.test("first, all, rows, run results", function()
  local db = fresh()
  db:exec("CREATE TABLE r(id INTEGER PRIMARY KEY, name TEXT)")
  for i = 1, 5 do
    local changes, rowid = db:run("INSERT INTO r (name) VALUES (?)", "n" .. i)
    t.eq(changes, 1)
    t.eq(rowid, i)
  end
  t.eq(db:first("SELECT name FROM r WHERE id = ?", 99), nil)
  t.eq(#db:all("SELECT * FROM r WHERE id > ?", 2), 3)
  t.eq(db:all("SELECT * FROM r WHERE id > 100"), {})
  local names = {}
  for row in db:rows("SELECT name FROM r ORDER BY id DESC") do names[#names + 1] = row.name end
  t.eq(names, { "n5", "n4", "n3", "n2", "n1" })
  t.eq(db:run("UPDATE r SET name = 'x' WHERE id <= 2"), 2)
  t.eq(db:changes(), 2)
  db:close()
end)

T.test("a loop left by break gives its statement back; the same SQL nests", function()
  local db = fresh()
  db:exec("CREATE TABLE r(a); INSERT INTO r VALUES (1), (2), (3);")
  local sql = "SELECT a FROM r ORDER BY a"
  for row in db:rows(sql) do
    if row.a == 1 then break end
  end
  local pairs_seen = 0
  for a in db:rows(sql) do
    for b in db:rows(sql) do  -- same text while the outer holds the cached statement
      if a.a == b.a then pairs_seen = pairs_seen + 1 end
    end
  end
  t.eq(pairs_seen, 3)
  -- a write is possible once the readers are gone (a leaked reader would
  -- keep the statement open; the checkpoint below would then be partial)
  db:run("INSERT INTO r VALUES (4)")
  local ck = db:first("PRAGMA wal_checkpoint(TRUNCATE)")
  t.eq(ck.busy, 0)
  db:close()
end)

T.test("an error inside a rows loop closes the statement", function()
  local db = fresh()
  db:exec("CREATE TABLE r(a); INSERT INTO r VALUES (1), (2);")
  t.raises("stop", function()
    for _ in db:rows("SELECT a FROM r") do error("stop") end
  end)
  t.eq(db:first("PRAGMA wal_checkpoint(TRUNCATE)").busy, 0)
  db:close()
end)

T.test("many distinct statements stay within the bounded cache", function()
  local db = fresh()
  for i = 1, 300 do
    t.eq(db:first("SELECT " .. i .. " AS v").v, i)
  end
  -- statements evicted and prepared again still answer correctly
  t.eq(db:first("SELECT 1 AS v").v, 1)
  db:close()
end)

T.test("SQL errors raise 'sqlite: <msg> (in: <80 chars of sql>)'", function()
  local db = fresh()
  local err = t.raises("^sqlite: near \"SELEKT\": syntax error %(in: SELEKT", db.run, db, "SELEKT 1")
  t.eq(err:find("\n"), nil)
  local long = "SELECT * FROM nowhere WHERE " .. ("x = 1 AND "):rep(30) .. "1"
  err = t.raises("^sqlite: no such table: nowhere", db.all, db, long)
  t.match(err, "%(in: " .. long:sub(1, 80):gsub("%p", "%%%0") .. "%.%.%.%)$")
  db:exec("CREATE TABLE u(a UNIQUE)")
  db:run("INSERT INTO u VALUES (1)")
  t.raises("^sqlite: UNIQUE constraint failed", db.run, db, "INSERT INTO u VALUES (?)", 1)
  t.raises("^sqlite: more than one statement", db.run, db, "SELECT 1; SELECT 2")
  t.raises("^sqlite: ", db.exec, db, "CREATE TABLE u(a)")
  db:close()
end)

T.test("busy after the timeout raises 'sqlite busy:'", function()
  local db1, path = fresh()
  db1:exec("CREATE TABLE b(a)")
  local db2 = assert(sqlite.open(path, { busy_timeout = 50 }))
  db1:begin()
  db1:run("INSERT INTO b VALUES (1)")
  local started = qmig.monotonic()
  t.raises("^sqlite busy: database is locked", db2.run, db2, "INSERT INTO b VALUES (2)")
  t.truthy(qmig.monotonic() - started >= 0.04, "waited for the timeout")
  t.raises("^sqlite busy:", db2.transaction, db2, function() end)
  db1:commit()
  db2:run("INSERT INTO b VALUES (2)")
  t.eq(db1:first("SELECT count(*) n FROM b").n, 2)
  db1:close()
  db2:close()
end)

T.test("disk full raises 'sqlite io:'", function()
  local db = fresh()
  db:exec("CREATE TABLE f(a)")
  local pages = db:first("PRAGMA page_count").page_count
  db:exec("PRAGMA max_page_count = " .. (pages + 2))
  t.raises("^sqlite io: database or disk is full", function()
    for _ = 1, 100 do db:run("INSERT INTO f VALUES (?)", ("x"):rep(4000)) end
  end)
  db:close()
end)

T.test("a readonly connection refuses writes", function()
  local db, path = fresh()
  db:exec("CREATE TABLE x(a)")
  db:close()
  local ro = assert(sqlite.open(path, { readonly = true }))
  t.eq(ro:first("SELECT count(*) n FROM x").n, 0)
  t.raises("^sqlite io: attempt to write a readonly database", ro.run, ro, "INSERT INTO x VALUES (1)")
  ro:close()
end)

T.test("transaction commits on return and returns fn's results", function()
  local db = fresh()
  db:exec("CREATE TABLE x(a)")
  local a, b = db:transaction(function(n)
    db:run("INSERT INTO x VALUES (?)", n)
    return "done", n + 1
  end, 10)
  t.eq({ a, b }, { "done", 11 })
  t.eq(db:first("SELECT a FROM x").a, 10)
  db:close()
end)

T.test("transaction rolls back and re-raises the very error object", function()
  local db = fresh()
  db:exec("CREATE TABLE x(a)")
  local obj = { code = "E1" }
  local ok, err = pcall(db.transaction, db, function()
    db:run("INSERT INTO x VALUES (1)")
    error(obj)
  end)
  t.eq(ok, false)
  t.truthy(rawequal(err, obj), "same error object")
  t.eq(db:first("SELECT count(*) n FROM x").n, 0)
  t.eq(db:first("SELECT 1 AS one").one, 1, "no transaction left open")
  db:begin()
  db:rollback()
  db:close()
end)

T.test("nested transactions use savepoints", function()
  local db = fresh()
  db:exec("CREATE TABLE x(a)")
  db:transaction(function()
    db:run("INSERT INTO x VALUES (1)")
    local ok = pcall(db.transaction, db, function()
      db:run("INSERT INTO x VALUES (2)")
      error("inner fails")
    end)
    t.eq(ok, false)
    db:transaction(function() db:run("INSERT INTO x VALUES (3)") end)
  end)
  local vals = {}
  for r in db:rows("SELECT a FROM x ORDER BY a") do vals[#vals + 1] = r.a end
  t.eq(vals, { 1, 3 })
  -- inside a manual begin, transaction() is a savepoint too
  db:begin()
  db:transaction(function() db:run("INSERT INTO x VALUES (4)") end)
  db:rollback()
  t.eq(db:first("SELECT count(*) n FROM x").n, 2)
  db:close()
end)

T.test("begin modes, commit, rollback", function()
  local db = fresh()
  db:exec("CREATE TABLE x(a)")
  for _, mode in ipairs({ "deferred", "immediate", "exclusive" }) do
    db:begin(mode)
    db:run("INSERT INTO x VALUES (?)", mode)
    db:commit()
  end
  db:begin()
  db:run("DELETE FROM x")
  db:rollback()
  t.eq(db:first("SELECT count(*) n FROM x").n, 3)
  t.raises("invalid option", db.begin, db, "sometimes")
  t.raises("^sqlite: cannot commit", db.commit, db)
  db:close()
end)

T.test("close is idempotent; a closed db raises on use; <close> closes", function()
  local db = fresh()
  t.eq(db:close(), true)
  t.eq(db:close(), true)
  t.eq(tostring(db), "qmig.Sqlite (closed)")
  t.raises("closed database", db.first, db, "SELECT 1")
  local held
  do
    local d <close> = fresh()
    held = d
  end
  t.eq(tostring(held), "qmig.Sqlite (closed)")
end)

T.test("closing with a loop still open finalizes its statement", function()
  local db = fresh()
  db:exec("CREATE TABLE r(a); INSERT INTO r VALUES (1), (2);")
  local iter, state, ctl = db:rows("SELECT a FROM r")
  t.eq(iter(state, ctl).a, 1)
  db:close()
  t.raises("^sqlite: attempt to use a closed database", iter, state, ctl)
end)

T.test("the API offers no way to format values into SQL", function()
  local db = fresh()
  local mt = getmetatable(db).__index
  for name in pairs(mt) do
    t.truthy(not name:find("format") and not name:find("quote") and not name:find("escape"), name)
  end
  -- an injection attempt through a parameter stays data
  db:exec("CREATE TABLE n(name)")
  db:run("INSERT INTO n VALUES (?)", "x'); DROP TABLE n; --")
  t.eq(db:first("SELECT name FROM n").name, "x'); DROP TABLE n; --")
  db:close()
end)

return T
