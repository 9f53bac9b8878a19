-- qmig.fs: project-folder helpers, hostile names, the project lock.
local t = require "testing"
local fs = require "qmig.fs"
local hash = require "qmig.hash"

local T = t.suite("fs")

local function oct(s) return tonumber(s, 8) end

-- The binary running these tests, for child processes.
local EXE = assert(fs.realpath("/proc/self/exe"))

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

T.test("mkdir, mkdirs, exists, stat, remove", function()
  local dir = t.tmpdir()
  t.eq(fs.mkdir(dir .. "/a", oct("700")), true)
  t.eq(fs.stat(dir .. "/a").mode, oct("700"))
  t.eq(fs.stat(dir .. "/a").type, "directory")
  local ok, msg, code = fs.mkdir(dir .. "/a")
  t.eq(ok, nil)
  t.match(msg, "/a: File exists$")
  t.eq(code, 17)
  t.eq(fs.mkdirs(dir .. "/b/c/d"), true)
  t.eq(fs.mkdirs(dir .. "/b/c/d/"), true, "existing folders are fine")
  t.eq(fs.exists(dir .. "/b/c/d"), true)
  t.eq(fs.exists(dir .. "/nope"), false)
  t.write(dir .. "/file", "12345")
  ok, msg, code = fs.mkdirs(dir .. "/file/sub")
  t.eq(ok, nil)
  t.match(msg, "/file: Not a directory$")
  t.eq(code, 20)
  local st = fs.stat(dir .. "/file")
  t.eq(st.type, "file")
  t.eq(st.size, 5)
  t.truthy(math.abs(st.mtime - os.time()) < 60, "mtime is in seconds")
  ok, msg, code = fs.stat(dir .. "/nope")
  t.eq(ok, nil)
  t.match(msg, "nope: No such file or directory")
  t.eq(code, 2)
  t.eq(fs.remove(dir .. "/file"), true)
  t.eq(fs.exists(dir .. "/file"), false)
  t.eq(select(3, fs.remove(dir .. "/file")), 2)
  t.eq(fs.remove(dir .. "/b/c/d"), true, "empty folders are removed too")
end)

T.test("stat reports links as links; exists counts a dangling link", function()
  local dir = t.tmpdir()
  assert(os.execute("ln -s /nonexistent/target " .. sh_quote(dir .. "/dangling")))
  t.eq(fs.stat(dir .. "/dangling").type, "link")
  t.eq(fs.exists(dir .. "/dangling"), true)
end)

T.test("dir lists sorted names without . and ..", function()
  local dir = t.tmpdir()
  for _, n in ipairs({ "b", "a", "C", ".hidden", "a b" }) do t.write(dir .. "/" .. n, "") end
  t.eq(fs.dir(dir), { ".hidden", "C", "a", "a b", "b" })
  fs.mkdir(dir .. "/empty")
  t.eq(fs.dir(dir .. "/empty"), {})
  local ok, msg, code = fs.dir(dir .. "/none")
  t.eq(ok, nil)
  t.match(msg, "none: No such file or directory")
  t.eq(code, 2)
end)

T.test("rename, chmod, realpath", function()
  local dir = t.tmpdir()
  t.write(dir .. "/x", "data")
  t.eq(fs.rename(dir .. "/x", dir .. "/y"), true)
  t.eq(t.read(dir .. "/y"), "data")
  t.eq(select(3, fs.rename(dir .. "/x", dir .. "/z")), 2)
  t.eq(fs.chmod(dir .. "/y", oct("640")), true)
  t.eq(fs.stat(dir .. "/y").mode, oct("640"))
  local real = fs.realpath(dir .. "/./y")
  t.match(real, "^/")
  t.match(real, "/y$")
  t.eq(select(3, fs.realpath(dir .. "/missing")), 2)
end)

T.test("read_file and write_file round-trip binary data", function()
  local dir = t.tmpdir()
  local data = {}
  for i = 0, 255 do data[#data + 1] = string.char(i) end
  data = table.concat(data):rep(1000)  -- 256 KB, several buffer sizes
  t.eq(fs.write_file(dir .. "/bin", data), true)
  t.eq(fs.read_file(dir .. "/bin"), data)
  t.eq(fs.read_file(dir .. "/bin"):len(), 256000)
  t.write(dir .. "/empty", "")
  t.eq(fs.read_file(dir .. "/empty"), "")
  local ok, msg, code = fs.read_file(dir .. "/missing")
  t.eq(ok, nil)
  t.match(msg, "missing: No such file or directory")
  t.eq(code, 2)
end)

T.test("atomic write: mode applied, content replaced, no temp file left", function()
  local dir = t.tmpdir()
  local path = dir .. "/secret.json"
  t.eq(fs.write_file(path, "old", { mode = oct("600") }), true)
  t.eq(fs.stat(path).mode, oct("600"))
  t.eq(fs.write_file(path, "new", { mode = oct("600") }), true)
  t.eq(t.read(path), "new")
  t.eq(fs.dir(dir), { "secret.json" })
  -- a failed rename (the target is a folder) removes the temp file
  fs.mkdir(dir .. "/folder")
  local ok, msg, code = fs.write_file(dir .. "/folder", "x")
  t.eq(ok, nil)
  t.match(msg, "folder: Is a directory")
  t.eq(code, 21)
  t.eq(fs.dir(dir), { "folder", "secret.json" })
  -- a missing folder fails cleanly
  ok, msg, code = fs.write_file(dir .. "/no/such/file", "x")
  t.eq(ok, nil)
  t.eq(code, 2)
  t.match(msg, "^" .. dir:gsub("%p", "%%%0") .. "/no/")
end)

T.test("inside a scheduler task an atomic write runs on the I/O worker, same results", function()
  local http = require "qmig.http"
  local qmig = require "qmig.host"
  local sched = require "qmig.engine.sched"
  local dir = t.tmpdir()
  -- by hand: the task yields an I/O job, http.poll hands it back when done
  local co = coroutine.create(function() return fs.write_file(dir .. "/a.json", "data", { mode = oct("600") }) end)
  qmig.mark_task(co)
  local _, job = coroutine.resume(co)
  t.truthy(http.is_job(job), "the write yielded a job: " .. tostring(job))
  t.eq(http.is_request(job), false)
  local back
  for _ = 1, 100 do
    back = http.poll(0.1)[1]
    if back then break end
  end
  t.eq(back, job)
  t.eq({ coroutine.resume(co) }, { true, true })
  t.eq(t.read(dir .. "/a.json"), "data")
  t.eq(fs.stat(dir .. "/a.json").mode, oct("600"))
  -- many at once through the scheduler, failures included, in order per file
  local s = sched.new { concurrency = 8 }
  local results = {}
  for i = 1, 40 do
    s:spawn(function()
      local path = i % 10 == 0 and (dir .. "/missing/" .. i) or (dir .. "/f" .. (i % 5))
      results[i] = { fs.write_file(path, "v" .. i) }
    end)
  end
  s:run()
  for i = 1, 40 do
    if i % 10 == 0 then
      t.eq(results[i][1], nil); t.eq(results[i][3], 2); t.match(results[i][2], "/missing/")
    else
      t.eq(results[i], { true })
    end
  end
  -- each file holds the last write made to it (one worker, one queue)
  for k = 0, 4 do t.eq(t.read(dir .. "/f" .. k), "v" .. (k == 0 and 35 or 35 + k)) end
  t.eq(#fs.dir(dir), 6, "no temp file left: " .. table.concat(fs.dir(dir), " "))
end)

T.test("atomic write survives kill -9 of the writer: old or new, never torn", function()
  local dir = t.tmpdir()
  local path, count = dir .. "/state", dir .. "/count"
  local a, b = ("a"):rep(1 << 20), ("b"):rep(1 << 20)
  t.eq(fs.write_file(path, a), true)
  local script = dir .. "/writer.lua"
  -- the writer alternates two contents for ever, noting each write done
  t.write(script, [[
    local fs = require "qmig.fs"
    local path, count = ...
    local bodies = { ("b"):rep(1 << 20), ("a"):rep(1 << 20) }
    local i = 0
    while true do
      i = i + 1
      assert(fs.write_file(path, bodies[(i - 1) % 2 + 1]))
      local f = assert(io.open(count, "a")); f:write("."); f:close()
    end
  ]])
  -- killed at an arbitrary point of some write, once it has written
  assert(os.execute(sh_quote(EXE) .. " " .. sh_quote(script) .. " " .. sh_quote(path) .. " " .. sh_quote(count) ..
    " & pid=$!; n=0; while [ ! -s " .. sh_quote(count) .. " ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done;"
    .. " sleep 0.2; kill -9 $pid; wait $pid; echo $? > " .. sh_quote(dir .. "/status")))
  t.eq(t.read(dir .. "/status"), "137\n", "the writer was killed, not finished or failed")
  local done = #t.read(count)
  t.truthy(done >= 1, "the writer wrote before it was killed: " .. done .. " write(s)")
  local got = t.read(path)
  t.truthy(got == a or got == b, "content is whole")
  for _, name in ipairs(fs.dir(dir)) do
    if name:find("%.tmp%-") then fs.remove(dir .. "/" .. name) end  -- a killed writer may leave one
  end
end)

T.test("non-atomic and append writes; default mode follows the umask", function()
  local dir = t.tmpdir()
  local path = dir .. "/log"
  t.eq(fs.write_file(path, "a\n", { mode = oct("600"), append = true }), true)
  t.eq(fs.write_file(path, "b\n", { append = true }), true)
  t.eq(t.read(path), "a\nb\n")
  t.eq(fs.stat(path).mode, oct("600"), "append keeps an existing file's mode")
  t.eq(fs.write_file(path, "c", { atomic = false }), true)
  t.eq(t.read(path), "c")
  fs.write_file(dir .. "/plain", "x")
  t.eq(fs.stat(dir .. "/plain").mode & oct("022"), 0, "not group/world writable")
end)

T.test("join, dirname, basename", function()
  t.eq(fs.join("a", "b", "c"), "a/b/c")
  t.eq(fs.join("a/", "/b"), "a/b")
  t.eq(fs.join("/root", "/etc/passwd"), "/root/etc/passwd", "an absolute part never restarts")
  t.eq(fs.join("", "a", "", "b"), "a/b")
  t.eq(fs.join("/", "x"), "/x")
  t.eq(fs.join("a"), "a")
  local cases = {
    { "a/b", "a", "b" }, { "a", ".", "a" }, { "/a", "/", "a" }, { "a/b/", "a", "b" },
    { "/", "/", "/" }, { "a//b", "a", "b" }, { "", ".", "" }, { "/a/b/c.qvf", "/a/b", "c.qvf" },
  }
  for _, c in ipairs(cases) do
    t.eq(fs.dirname(c[1]), c[2], "dirname " .. c[1])
    t.eq(fs.basename(c[1]), c[3], "basename " .. c[1])
  end
end)

T.test("is_within resolves .. and symlinks of the existing prefix", function()
  local root = t.tmpdir() .. "/project"
  fs.mkdirs(root .. "/exports/apps")
  local outside = t.tmpdir()
  assert(os.execute("ln -s " .. sh_quote(outside) .. " " .. sh_quote(root .. "/exports/out")))
  assert(os.execute("ln -s apps " .. sh_quote(root .. "/exports/inlink")))
  assert(os.execute("ln -s /nonexistent " .. sh_quote(root .. "/dangling")))
  local yes = {
    root, root .. "/exports/apps/x.qvf", root .. "/exports/../exports/apps",
    root .. "/new/deeper/file", root .. "/exports/inlink/x", root .. "/./a/../b",
  }
  local no = {
    root .. "/..", root .. "/../project-evil", root .. "/exports/../../x",
    root .. "/exports/out/x", root .. "/exports/out", root .. "/dangling",
    root .. "/dangling/x", "/etc/passwd", root .. "/new/../../x",
  }
  for _, p in ipairs(yes) do t.eq(fs.is_within(root, p), true, p) end
  for _, p in ipairs(no) do t.eq(fs.is_within(root, p), false, p) end
  local ok, _, code = fs.is_within(root .. "/missing-root", root)
  t.eq(ok, nil)
  t.eq(code, 2)
end)

T.test("safe_name keeps readable names as they are", function()
  for _, s in ipairs({ "Sales Dashboard (v2)", "Ünïcødé 日本語 Приложение", "a-b_c.d",
                       "report 2024.qvf" }) do
    t.eq(fs.safe_name(s), s)
  end
end)

T.test("safe_name cleans hostile names and marks them with a hash", function()
  local hostile = {
    "../..", "..", ".", "", "a/b", "a\\b", "a\0b", "tab\there", "\27[31mred", ".hidden",
    "-rf", "bad\xff\xfeutf8", "\xc0\xafoverlong", "con", "LPT1.txt", "trailing.", "trailing ",
    "a:b*c?d\"e<f>g|h", "rtl\u{202E}gpj.exe", "zero\u{200B}width", "slash\u{2215}alike",
    "full\u{FF0F}width", "emoji😀", "x-deadbeef",
  }
  local seen = {}
  for _, s in ipairs(hostile) do
    local n = fs.safe_name(s)
    t.truthy(n ~= "" and n ~= "." and n ~= ".." and n:sub(1, 1) ~= ".", "bad result for " .. s)
    t.truthy(not n:find("[/\\%z%c:*?\"<>|]"), "unsafe char kept from " .. s)
    t.eq(n:sub(-9), "-" .. hash.sha256(s):sub(1, 8), "hash suffix for " .. s)
    t.eq(utf8.len(n) ~= nil, true, "valid UTF-8 for " .. s)
    t.eq(seen[n], nil, "collision for " .. s)
    seen[n] = true
  end
  t.eq(fs.safe_name("../../etc/passwd"), "___.._etc_passwd-" .. hash.sha256("../../etc/passwd"):sub(1, 8))
  t.eq(fs.safe_name("a/b"), "a_b-" .. hash.sha256("a/b"):sub(1, 8))
end)

T.test("safe_name: names that clean alike stay distinct", function()
  local a, b, c = fs.safe_name("a/b"), fs.safe_name("a\\b"), fs.safe_name("a_b")
  t.eq(c, "a_b")
  t.truthy(a ~= b and a ~= c and b ~= c)
  -- a crafted name equal to another's cleaned form gets its own suffix
  t.truthy(fs.safe_name(a) ~= a)
end)

T.test("safe_name truncates long names on a character boundary", function()
  local long = ("x"):rep(10 * 1024)
  local n = fs.safe_name(long)
  t.eq(#n, 120)
  t.eq(n, ("x"):rep(111) .. "-" .. hash.sha256(long):sub(1, 8))
  local wide = ("é"):rep(200)
  n = fs.safe_name(wide, 40)
  t.truthy(#n <= 40)
  t.truthy(utf8.len(n), "no cut character")
  t.eq(n:sub(-9), "-" .. hash.sha256(wide):sub(1, 8))
  t.eq(#fs.safe_name(("y"):rep(120)), 120, "exactly maxlen is kept")
  t.eq(fs.safe_name(("y"):rep(120)), ("y"):rep(120))
  t.raises("maxlen", fs.safe_name, "x", 3)
end)

T.test("tmpname creates a private empty file", function()
  local dir = t.tmpdir()
  local a = fs.tmpname(dir, "part")
  local b = fs.tmpname(dir, "part")
  t.truthy(a ~= b)
  t.match(a, "/part%-")
  t.eq(fs.stat(a).size, 0)
  t.eq(fs.stat(a).mode, oct("600"))
  t.eq(select(3, fs.tmpname(dir .. "/none")), 2)
  t.raises("prefix", fs.tmpname, dir, "a/b")
end)

T.test("lock: one holder; pid recorded; unlock, gc and <close> release it", function()
  local dir = t.tmpdir()
  local path = dir .. "/qmig.lock"
  local l1 = assert(fs.lock(path))
  t.eq(fs.stat(path).mode, oct("600"))
  t.eq(t.read(path), qmig.getpid() .. "\n")
  t.match(tostring(l1), "held")
  local l2, msg, code = fs.lock(path)
  t.eq(l2, nil)
  t.eq(msg, path .. " is locked by another process")
  t.eq(code, "locked")
  t.eq(l1:unlock(), true)
  t.eq(l1:unlock(), true)
  t.match(tostring(l1), "released")
  do
    local l3 <close> = assert(fs.lock(path))
    t.eq(fs.lock(path), nil)
    t.match(tostring(l3), "held")
  end
  do
    local l4 = assert(fs.lock(path))  -- dropped without unlock: gc releases it
    t.match(tostring(l4), "held")
  end
  collectgarbage()
  collectgarbage()
  assert(fs.lock(path)):unlock()
  local ok, _, ecode = fs.lock(dir .. "/no/such/lock")
  t.eq(ok, nil)
  t.eq(ecode, 2)
end)

T.test("a path with a NUL byte is refused, not cut short", function()
  local dir = t.tmpdir()
  for _, f in ipairs({ fs.write_file, fs.read_file, fs.stat, fs.exists, fs.mkdirs, fs.lock,
                       fs.remove, fs.dir }) do
    t.raises("path contains a NUL byte", f, dir .. "/a\0/../../x", "data")
  end
  t.raises("path contains a NUL byte", fs.is_within, dir, dir .. "/a\0b")
  t.raises("path contains a NUL byte", qmig.hash.sha256_file, dir .. "/a\0b")
  t.raises("path contains a NUL byte", qmig.sqlite.open, dir .. "/a\0b")
  t.eq(fs.dir(dir), {}, "nothing was created")
end)

T.test("process_alive", function()
  t.eq(fs.process_alive(qmig.getpid()), true)
  local p = io.popen("sh -c 'echo $$'")
  local dead = tonumber(p:read("l"))
  p:close()
  t.eq(fs.process_alive(dead), false)
end)

return T
