-- Hostile source data: stream, app and user names
-- with quotes, "..", "/", "\", control characters, NUL, 10 KB names,
-- markup, SQL and QRS-filter injection attempts, bidi overrides and a
-- lone UTF-16 surrogate.  The names never escape the project folder as
-- paths, QRS filters built by qmig.clients.qrs select exactly the object named,
-- the cache (parameterised SQL) gives every byte back, the report escapes
-- them, and a Cloud run creating spaces named after them neither crashes
-- nor prints a traceback.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local project = require "qmig.store.project"
local simlib = require "sim"

local T = t.suite("hostile")
local FIXTURES = fs.realpath("tests/lua/fixtures")
local LONE = "@LONE_SURROGATE@"  -- replaced by a \udc80 escape in the site file

local NAMES = {
  "O'Brien's \"quoted\" ''stream''",
  "../../../../../../tmp/qmig-hostile-escape",
  "..",
  ".",
  "a/b\\c",
  "\\\\server\\share\\x",
  "/etc/passwd",
  "ctl\1\7\27[31mred\n\r\tend\127",
  "nul\0byte",
  ("L"):rep(10240),
  "<script>alert('x')</script> & <b>bold</b>",
  "'; DROP TABLE items; --",
  "x' or name ne 'y",
  "name eq 'a' or 1 eq 1",
  "%2e%2e%2f%00 %s %d",
  "\195\156n\195\175c\195\184d\195\169 \230\149\176\230\141\174 \240\159\154\128",
  "  spaced  ",
  "\226\128\174gnp.exe",
  "\194\133next\194\160line\239\187\191",
  "lone " .. LONE .. " surrogate",
  "0b5a2f4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
  "true",
  "Q4 token: abc123",                -- credential-shaped names are data, not secrets
  "password=hunter2 report",
}
local CREDENTIAL_SHAPED = { ["Q4 token: abc123"] = true, ["password=hunter2 report"] = true }

local function site_json()
  local streams, apps, users = {}, {}, {}
  for i, n in ipairs(NAMES) do
    streams[i] = { name = n }
    apps[i] = { name = n, stream = "Plain", owner = "CORP\\plain" }
    users[i] = { userDirectory = "CORP", userId = n, name = n }
    if n:find(LONE, 1, true) then  -- qliksim derives ids from UTF-8 names: give them
      streams[i].id = "11111111-2222-4333-8444-555555555551"
      apps[i].id = "11111111-2222-4333-8444-555555555552"
      users[i].id = "11111111-2222-4333-8444-555555555553"
    end
  end
  streams[#streams + 1] = { name = "Plain" }
  users[#users + 1] = { userDirectory = "CORP", userId = "plain", name = "Plain" }
  local text = json.encode { qrs = { streams = streams, apps = apps, users = users }, cloud = simlib.ADMIN_CLOUD }
  return (text:gsub(LONE, "\\udc80"))
end

-- The name as qmig-lua sees it after decoding the QRS reply.
local function as_read(n) return (n:gsub(LONE, "\239\191\189")) end

local sim, dir, file, marker

local function setup()
  if sim then return end
  dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/site.json", site_json())
  sim = simlib.start { site = dir .. "/site.json" }
  t.write(dir .. "/job.yaml", sim:job_yaml { project_dir = dir .. "/project",
    extra = "steps_path: [" .. FIXTURES .. "/hostile, " .. FIXTURES .. "/steps]",
    jobs = "  - {name: a, steps: [test.hostile]}\n  - {name: b, steps: [test.spaces]}" })
  file = dir .. "/job.yaml"
  marker = dir .. "/before"
  t.write(marker, "")
  qmig.sleep(1.1)  -- find -newer has a one-second granularity on some filesystems
end

T.after_all(function() if sim then sim:stop() end end)

T.test("the engine reads, filters, stores and writes files for every hostile name", function()
  setup()
  local code, out, err = cli.run { "run", file, "--job", "a" }
  t.eq(code, 0, out .. err)
  local n = #NAMES
  -- streams + apps + users: the NAMES, plus "Plain" (stream and user) and
  -- the sim's built-in INTERNAL users
  t.match(out, "test%.hostile%s+%d+ created")
  local created = tonumber(out:match("test%.hostile%s+(%d+) created"))
  t.truthy(created >= 3 * n + 2, "every object was handled: " .. created)
  t.truthy(not err:find("stack traceback", 1, true), err)
end)

T.test("QRS filters built by qmig.clients.qrs select exactly the object named", function()
  setup()
  local proj = assert(project.open(dir .. "/project", { lock = false }))
  local rows = proj.cache:items("test.hostile")
  proj:close()
  local by_name = {}
  for _, r in ipairs(rows) do
    local kind = r.source_id:match("^(%a+):")
    by_name[kind .. ":" .. tostring(r.natural_key)] = r
  end
  for _, name in ipairs(NAMES) do
    local seen = as_read(name)
    for _, kind in ipairs { "stream", "app", "user" } do
      local r = by_name[kind .. ":" .. seen]
      t.truthy(r, kind .. " " .. ("%q"):format(seen:sub(1, 60)) .. " is in the cache under its exact name")
      local found = r.data.found
      if name:find(LONE, 1, true) then
        -- read back as U+FFFD, the name no longer equals the source's: the
        -- filter finds nothing rather than something else
        t.eq(#found, 0, kind .. " with a lone surrogate")
      else
        t.eq(#found, 1, kind .. " " .. ("%q"):format(seen:sub(1, 60)) .. ": objects the filter selected")
        t.eq(found[1], r.source_id:match(":(.*)$"), kind .. " " .. ("%q"):format(seen:sub(1, 60)))
      end
    end
  end
end)

T.test("the cache gives every byte of every name back (parameterised SQL)", function()
  setup()
  local proj = assert(project.open(dir .. "/project", { lock = false }))
  local rows = proj.cache:items("test.hostile")
  local tables = proj.cache.db and proj.cache.db:first("SELECT count(*) AS n FROM items") or nil
  proj:close()
  local names = {}
  for _, r in ipairs(rows) do
    names[r.natural_key] = true
    if not CREDENTIAL_SHAPED[r.natural_key] then  -- see the next test
      t.eq(r.data.name, r.natural_key, "data and natural key agree for " .. ("%q"):format(r.natural_key:sub(1, 60)))
    end
  end
  for _, name in ipairs(NAMES) do t.truthy(names[as_read(name)], ("%q"):format(name:sub(1, 60))) end
  t.truthy(names["'; DROP TABLE items; --"], "the items table is still there")
  if tables then t.truthy(tables.n >= #rows) end
end)

-- Credential-SHAPED text in a source name ("password=hunter2 report") is
-- redacted in the cache like any text there: secrets never reach it.  The
-- name itself reaches the target intact (the cache only keeps a copy).
T.test("credential-shaped source names are redacted in the cache copy only", function()
  setup()
  local proj = assert(project.open(dir .. "/project", { lock = false }))
  local rows = proj.cache:items("test.hostile")
  proj:close()
  local seen = 0
  for _, r in ipairs(rows) do
    if CREDENTIAL_SHAPED[r.natural_key] then
      seen = seen + 1
      t.truthy(not r.data.name:find("hunter2", 1, true) and not r.data.name:find("abc123", 1, true), r.data.name)
    end
  end
  t.truthy(seen > 0, "the credential-shaped names were migrated")
end)

T.test("no path leaves the project folder; every file has a safe name", function()
  setup()
  local proj_dir = dir .. "/project"
  -- every file written since the run started, anywhere under the test
  -- folder root, is inside the project or one of the harness's own files
  local root = fs.realpath(os.getenv("QMIG_TEST_TMP") or "tests/tmp")
  local harness = { out = true, err = true, pid = true, status = true, log = true, ["info.json"] = true }
  -- the test's own folder (job file, site, project): other suites may be
  -- writing elsewhere under tests/tmp meanwhile
  local p = io.popen("find " .. cli.quote(dir) .. " -type f -newer " .. cli.quote(marker) .. " 2>/dev/null")
  local outside = {}
  for path in p:lines() do
    local inside = path:sub(1, #proj_dir + 1) == proj_dir .. "/"
    if not inside and not harness[path:match("[^/]+$")] then outside[#outside + 1] = path end
  end
  p:close()
  t.eq(outside, {}, "files written outside the project folder")
  p = io.popen("find /tmp " .. cli.quote(root) .. " " .. cli.quote(fs.realpath(".")) ..
    " -xdev -name 'qmig-hostile-escape*' 2>/dev/null")
  t.eq(p:read("a"), "", "a '../' name escaped")
  p:close()
  t.truthy(not fs.exists("/tmp/qmig-hostile-escape"), "a '../' name escaped")
  local files = 0
  p = io.popen("find " .. cli.quote(proj_dir .. "/exports/hostile") .. " -type f")
  for path in p:lines() do
    files = files + 1
    local base = path:match("[^/]+$")
    t.truthy(not base:find("[%c/\\]") and base ~= "." and base ~= ".." and #base <= 255, "unsafe file name " .. base)
    t.truthy(fs.is_within(proj_dir, path), path)
  end
  p:close()
  t.truthy(files >= 3 * #NAMES, "one file per object: " .. files)
end)

T.test("the report escapes every name: no markup, no control characters", function()
  setup()
  local code, out, err = cli.run { "report", file }
  t.eq(code, 0, out .. err)
  local html = t.read(dir .. "/project/reports/report.html")
  t.truthy(not html:find("<script>alert", 1, true), "raw <script> in the report")
  t.truthy(not html:find("<b>bold", 1, true), "raw <b> in the report")
  t.truthy(html:find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;", 1, true),
    "the name is shown, escaped")
  t.truthy(html:find("O&#39;Brien&#39;s &quot;quoted&quot;", 1, true), "quotes are escaped")
  t.truthy(not html:find("[%z\1-\8\11\12\14-\31\127]"), "a control character in the report")
  t.truthy(not html:find("<script", 1, true), "the report has no script at all")
  local data = json.decode(t.read(dir .. "/project/reports/report.json"))
  t.truthy(data, "report.json is valid JSON")
  local found = 0
  for _, s in ipairs(data.steps) do
    for _, i in ipairs(s.items) do
      if i.name == "nul\0byte" or i.name == as_read(NAMES[8]) then found = found + 1 end
    end
  end
  t.eq(found, 6, "report.json keeps NUL and control characters intact (escaped as JSON)")
end)

T.test("creating Cloud spaces named after hostile streams: clear outcomes, no traceback", function()
  setup()
  local code, out, err = cli.run { "run", file, "--job", "b", "--verbose" }
  t.truthy(code == 0 or code == 1, "exit " .. code .. ": " .. out .. err)
  t.truthy(not (out .. err):find("stack traceback", 1, true), out .. err)
  local created = tonumber(out:match("test%.spaces%s+(%d+) created") or "0")
  t.truthy(created >= #NAMES - 3, "spaces created: " .. created .. "\n" .. out)
  for line in out:gmatch("[^\n]+") do
    if line:find(": failed", 1, true) then t.match(line, "failed %(.+%)", "a failure names its reason") end
  end
  local failed_first = tonumber(out:match("test%.spaces%s+[^\n]-(%d+) failed") or "0")
  t.eq(created + failed_first, #NAMES + 1, "every stream created or failed:\n" .. out)
  -- a re-run creates nothing new: only the failed ones are tried again
  local spaces_before = #sim:state().cloud.spaces
  sim:reset_counters()
  code = cli.run { "run", file, "--job", "b" }
  t.eq(code, failed_first == 0 and 0 or 1)
  local counts = sim:counts()
  t.eq(counts.applied["POST /api/v1/spaces"], nil, "a re-run creates no space")
  t.eq(#sim:state().cloud.spaces, spaces_before)
  t.eq(counts.writes["POST /api/v1/spaces"], failed_first > 0 and failed_first or nil,
    "the failed ones, and only they, are tried again")
end)

return T
