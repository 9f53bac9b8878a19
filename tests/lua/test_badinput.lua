-- Bad input, table driven: broken job files, step
-- modules and transforms.lua files.  A configuration error exits 2 with
-- a message naming the file (and line where there is one), no traceback,
-- ZERO requests to the simulator and no project folder created.  A step
-- that misbehaves at run time fails its items (exit 1) and the other
-- steps go on.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"

local T = t.suite("badinput")
local FIXTURES = fs.realpath("tests/lua/fixtures")
local BAD = FIXTURES .. "/bad"
local sim

local function the_sim()
  if not sim then sim = simlib.start() end
  return sim
end

T.after_all(function() if sim then sim:stop() end end)

-- A fresh folder with a valid job.yaml (test.spaces) pointing at the sim.
local function base_job(opts)
  opts = opts or {}
  local dir = fs.realpath(t.tmpdir())
  local text = the_sim():job_yaml {
    project_dir = dir .. "/project", api_key = opts.api_key,
    extra = "steps_path: [" .. FIXTURES .. "/steps, " .. BAD .. "/steps]" .. (opts.extra or ""),
    jobs = opts.jobs or "  - {name: a, steps: [test.spaces]}",
  }
  t.write(dir .. "/job.yaml", text)
  return dir .. "/job.yaml", dir, text
end

local function sub(text, find, replace)
  local i, j = text:find(find, 1, true)
  assert(i, "fixture text has no '" .. find .. "'")
  return text:sub(1, i - 1) .. replace .. text:sub(j + 1)
end

local function copy(from, to) t.write(to, t.read(from)) end

-- Each case: name, make = fn(text, dir, file) -> new text of job.yaml
-- (or a path to run instead), args (default {"run", FILE}), env,
-- err = pattern the message must match, where = pattern naming the file
-- (default "job%.yaml:%d+: ": file and line).
local CONFIG = {
  -- {====== the job file's content
  { "unknown top-level key, with a suggestion", function(x) return x .. "streems: [a]\n" end,
    err = "unknown key 'streems'" },
  { "unknown key inside source", function(x)
      return sub(x, "  user: 'INTERNAL", "  verify: true\n  user: 'INTERNAL") end,
    err = "unknown key 'source%.verify'" },
  { "misspelt section, with a suggestion", function(x) return x .. "optoins: {concurrency: 2}\n" end,
    err = "unknown key 'optoins' %(did you mean 'options'%?%)" },
  { "wrong type: concurrency as text", function(x) return sub(x, "options: {concurrency: 4,",
    "options: {concurrency: eight,") end, err = "options%.concurrency: expected an integer, got string" },
  { "out of range: concurrency 0", function(x) return sub(x, "options: {concurrency: 4,",
    "options: {concurrency: 0,") end, err = "options%.concurrency: must be at least 1" },
  { "enum typo, with a suggestion", function(x) return x .. "plan: {apps: {export_scope: aproved}}\n" end,
    err = "'aproved' is not one of all, published, approved %(did you mean 'approved'%?%)" },
  { "wrong type: a list where a mapping goes", function(x) return x .. "plan: [apps]\n" end,
    err = "plan: expected a mapping, got list" },
  { "missing required key: jobs", function(x) return x:gsub("jobs:\n.*$", "") end,
    err = "job: missing required key 'jobs'", where = "job%.yaml:1: " },
  { "missing version", function(x) return sub(x, "version: 1\n", "") end,
    err = "missing required key 'version'", where = "job%.yaml:1: " },
  { "unsupported version", function(x) return sub(x, "version: 1", "version: 2") end,
    err = "version: must be at most 1" },
  { "unknown step, with a suggestion", function(x) return sub(x, "[test.spaces]", "[spaces.creat]") end,
    err = "unknown step 'spaces%.creat' %(did you mean 'spaces%.create'%?%)" },
  { "not a step name", function(x) return sub(x, "[test.spaces]", "[spaces]") end,
    err = "jobs%[1%]%.steps%[1%]: 'spaces' is not a step name" },
  { "duplicate job names", function(x) return x .. "  - {name: a, steps: [test.spaces]}\n" end,
    err = "duplicate name 'a'" },
  { "steps not a list", function(x) return sub(x, "[test.spaces]", "test.spaces") end,
    err = "jobs%[1%]%.steps: expected a list, got string" },
  { "empty job name", function(x) return sub(x, "{name: a,", "{name: '',") end,
    err = "jobs%[1%]%.name: must not be empty" },
  { "missing certificate file", function(x) return (x:gsub("cert: %S+", "cert: certs/none.pem")) end,
    err = "source%.cert: file 'certs/none%.pem' does not exist" },
  { "missing transforms file", function(x) return x .. "transforms: transforms.lua\n" end,
    err = "transforms: file 'transforms%.lua' does not exist" },
  { "missing credentials file", function(x) return x .. "plan: {data_connections: {credentials: secrets.yaml}}\n" end,
    err = "credentials: file 'secrets%.yaml' does not exist" },
  { "credentials file readable by others", function(x, dir)
      t.write(dir .. "/secrets.yaml", "db: {username: u, password: p}\n")
      os.execute("chmod 644 " .. dir .. "/secrets.yaml")
      return x .. "plan: {data_connections: {credentials: secrets.yaml}}\n"
    end, err = "'secrets%.yaml' is readable by group or others; chmod 600 it" },
  { "unset variable in the API key", function(x) return (x:gsub("api_key: %S+", "api_key: ${QMIG_BAD_UNSET}")) end,
    err = "target%.api_key %- environment variable %${QMIG_BAD_UNSET} is not set" },
  { "unset variable in a URL", function(x) return (x:gsub("url: (http://%S+)", "url: ${QMIG_BAD_HOST}")) end,
    err = "target%.url: environment variable %${QMIG_BAD_HOST} is not set" },
  { "bad Lua pattern in scripts.replace", function(x)
      return x .. "plan: {scripts: {replace: [{pattern: 'CONNECT %[(', replace: x}]}}\n" end,
    err = "bad Lua pattern" },
  { "a pattern that only fails when it matches", function(x)
      return x .. "plan: {scripts: {replace: [{pattern: 'x(', replace: y}]}}\n" end,
    err = "bad Lua pattern: unfinished capture" },
  { "a replacement naming a capture the pattern lacks", function(x)
      return x .. "plan: {scripts: {replace: [{pattern: '(a)b', replace: '%2'}]}}\n" end,
    err = "bad replacement: the replacement names capture %%2 but the pattern has 1" },
  { "find and pattern both given", function(x)
      return x .. "plan: {scripts: {replace: [{find: a, pattern: b, replace: x}]}}\n" end,
    err = "give exactly one of 'find' or 'pattern'" },
  { "project as a list", function(x) return (x:gsub("project: {[^}]*}", "project: [a, b]")) end,
    err = "project: expected a mapping, got list" },
  { "target without credentials", function(x) return (x:gsub("  api_key: %S+\n", "")) end,
    err = "target: give exactly one of api_key or oauth {client_id, client_secret}", where = "job%.yaml:%d+: " },
  { "target with both credentials", function(x)
      return (x:gsub("  api_key: (%S+)\n", "  api_key: %1\n  oauth: {client_id: c, client_secret: s}\n")) end,
    err = "target: give exactly one of api_key or oauth", where = "job%.yaml:%d+: " },
  { "target.oauth without a secret", function(x)
      return (x:gsub("  api_key: %S+\n", "  oauth: {client_id: c}\n")) end,
    err = "target.oauth: give exactly one of 'client_secret' or 'client_secret_file'" },
  { "target.oauth with an unknown key", function(x)
      return (x:gsub("  api_key: %S+\n", "  oauth: {client_id: c, client_secret: s, secret: x}\n")) end,
    err = "unknown key 'target%.oauth%.secret'" },
  { "API key of the wrong type: the message is not redacted away", function(x)
      return (x:gsub("api_key: %S+", "api_key: [1, 2]")) end,
    err = "target%.api_key %- expected a string, got list" },
  { "source user without a directory", function(x) return sub(x, "'INTERNAL\\sa_api'", "sa_api") end,
    err = "source%.user: must look like DIRECTORY\\userid" },
  { "source user with a header injection", function(x) return sub(x, "'INTERNAL\\sa_api'",
    "\"INTERNAL\\\\sa\\r\\nX-Evil: 1\"") end, err = "source%.user: must look like" },
  { "target URL with another scheme", function(x) return (x:gsub("url: http://", "url: ftp://")) end,
    err = "target%.url: must be an http:// or https:// URL, got 'ftp://" },
  { "source URL without a scheme", function(x) return (x:gsub("url: https://", "url: ")) end,
    err = "source%.url: must be an http:// or https:// URL" },
  { "YAML syntax error: unclosed flow list", function(x) return x .. "  - {name: b, steps: [test.spaces\n" end,
    where = "job%.yaml:%d+:%d+: " },
  { "a 10 MB line (a step name): quick, and a short message", function(x)
      return sub(x, "[test.spaces]", "[spaces." .. ("x"):rep(10 * 1024 * 1024) .. "]") end,
    err = "a step name of %d+ characters is not a step name", short = true },
  { "a 10 MB line (an unknown key): quick, and a short message", function(x)
      return x .. ("k"):rep(10 * 1024 * 1024) .. ": 1\n" end, err = "could not find expected ':'",
    where = "job%.yaml:%d+:%d+: ", short = true },  -- libyaml caps simple keys at 1024 characters
  { "a 10 MB quoted key", function(x)
      return x .. "? " .. ("k"):rep(10 * 1024 * 1024) .. "\n: 1\n" end, err = "unknown key 'kkkk.-%(%d+ bytes%)",
    short = true },
  { "a 10 MB line (an enum value)", function(x)
      return x .. "plan: {apps: {export_scope: " .. ("a"):rep(10 * 1024 * 1024) .. "}}\n" end,
    err = "export_scope: 'aaaa.-%(%d+ bytes%)", short = true },
  -- }======
  -- {====== junk job files (tests/lua/fixtures/bad/jobs)
  { "binary junk", "jobs/binary.yaml", err = "control characters are not allowed", where = "binary%.yaml:1:1: " },
  { "an empty file", "jobs/empty.yaml", err = "the job file is empty", where = "empty%.yaml:1: " },
  { "only a comment", "jobs/comment.yaml", err = "the job file is empty", where = "comment%.yaml:1: " },
  { "a list, not a mapping", "jobs/list.yaml", err = "the job file: expected a mapping, got list",
    where = "list%.yaml:1: " },
  { "a bare string", "jobs/scalar.yaml", err = "expected a mapping, got string", where = "scalar%.yaml:1: " },
  { "a YAML bomb (billion laughs)", "jobs/bomb.yaml", err = "more than 1000000 values",
    where = "bomb%.yaml:%d+:%d+: " },
  { "an alias inside its own anchor", "jobs/selfalias.yaml", err = "refers to a node that contains it",
    where = "selfalias%.yaml:2:%d+: " },
  { "non-UTF-8 (Latin-1) text", "jobs/latin1.yaml", err = "invalid trailing UTF%-8 octet",
    where = "latin1%.yaml:2:%d+: " },
  { "a tab in the indentation", "jobs/tabs.yaml", err = "cannot start any token %(a tab; YAML indents with spaces",
    where = "tabs%.yaml:3:1: " },
  { "a duplicate key", "jobs/dupkey.yaml", err = "duplicate key 'version' %(first at line 1%)",
    where = "dupkey%.yaml:3:1: " },
  { "a language-specific tag", "jobs/tag.yaml", err = "unsupported tag '!python/object:os%.system'",
    where = "tag%.yaml:2:%d+: " },
  { "two documents", "jobs/twodocs.yaml", err = "a second document starts here", where = "twodocs%.yaml:2:1: " },
  { ".lua job file with a syntax error", "jobs/syntax.lua", err = "'}' expected", where = "syntax%.lua:3: " },
  { ".lua job file that raises", "jobs/raises.lua", where = "raises%.lua:2: " },
  { ".lua job file returning a string", "jobs/string.lua", err = "must return a table", where = "string%.lua: " },
  { ".lua job file is data: no os, no io", "jobs/escape.lua", err = "global 'os'", where = "escape%.lua:2: " },
  -- found by tests/fuzz/fuzz_job: a scripts.replace entry without `replace`
  -- made the pattern validator index nil (a traceback, exit 1)
  { "fuzz crash: a replace rule without replace", "jobs/fuzz-replace.yaml",
    err = "plan%.scripts%.replace%[2%]: missing required key 'replace'", where = "fuzz%-replace%.yaml:20: " },
  { "a job file that does not exist", function(_, dir) return { path = dir .. "/nope.yaml" } end,
    err = "No such file or directory", where = "nope%.yaml: " },
  { "a folder given as the job file", function(_, dir) return { path = dir } end, err = "cannot read",
    where = "%d+: " },
  -- }======
  -- {====== the command line
  { "--job naming no job", args = { "run", "FILE", "--job", "nope" }, err = "no job named 'nope'", where = "" },
  { "--step not in the job", args = { "run", "FILE", "--step", "test.describe" },
    err = "step 'test%.describe' is not in the selected jobs", where = "" },
  { "--step with a typo", args = { "run", "FILE", "--step", "test.spacse" },
    err = "step 'test%.spacse' is not in the selected jobs; did you mean 'test%.spaces'%?", where = "" },
  { "--step with a typo of a catalogue step not in the job", args = { "run", "FILE", "--step", "apps.improt" },
    err = "step 'apps%.improt' is not in the selected jobs; did you mean 'apps%.import'%?", where = "" },
  { "an unknown option", args = { "run", "FILE", "--forse" }, err = "unknown option '%-%-forse'", where = "" },
  { "--concurrency 0", args = { "run", "FILE", "--concurrency", "0" }, err = "needs a positive integer", where = "" },
  { "--concurrency without a value", args = { "run", "FILE", "--concurrency" }, err = "needs a value", where = "" },
  { "a second job file", args = { "run", "FILE", "FILE" }, err = "unexpected argument", where = "" },
  { "check with a broken file", function(x) return x .. "streems: 1\n" end, args = { "check", "FILE" },
    err = "unknown key 'streems'" },
  { "plan with a broken file", function(x) return x .. "streems: 1\n" end, args = { "plan", "FILE" },
    err = "unknown key 'streems'" },
  -- }======
  -- {====== step modules (tests/lua/fixtures/bad/steps/bad)
  { "step module with a syntax error", jobs = "[bad.syntax]", err = "'}' expected", where = "syntax%.lua:4: " },
  { "step module that raises while loading", jobs = "[bad.raises]", err = "qmig%.no_such_module_here",
    where = "raises%.lua:2: " },
  { "step module returning a string", jobs = "[bad.notable]", err = "the module must return a table, got string",
    where = "notable%.lua: " },
  { "step module returning nothing", jobs = "[bad.empty]", err = "must return a table, got nil",
    where = "empty%.lua: " },
  { "step module with another step's name", jobs = "[bad.wrongname]",
    err = "field 'name' is 'bad%.othername' but the file provides step 'bad%.wrongname'", where = "wrongname%.lua: " },
  { "step module with a field of the wrong type", jobs = "[bad.fieldtype]",
    err = "field 'order' must be a number, got string", where = "fieldtype%.lua: " },
  { "step module with requires as text", jobs = "[bad.requires]", err = "field 'requires' must be a table",
    where = "requires%.lua: " },
  -- }======
  -- {====== transforms.lua (tests/lua/fixtures/bad/transforms)
  { "transforms.lua with a syntax error", transforms = "syntax.lua", err = "unexpected symbol",
    where = "syntax%.lua:3: " },
  { "transforms.lua with an unknown hook", transforms = "unknown.lua", err = "unknown hook 'spaec'",
    where = "unknown%.lua: " },
  { "transforms.lua with a hook that is not a function", transforms = "notfunc.lua",
    err = "hook 'space' must be a function", where = "notfunc%.lua: " },
  { "transforms.lua returning a number", transforms = "notable.lua", err = "must return a table of functions",
    where = "notable%.lua: " },
  { "transforms.lua that raises while loading", transforms = "raises.lua", err = "transforms cannot load",
    where = "raises%.lua:2: " },
  -- }======
}
T.CONFIG = CONFIG

-- Builds the job file of a case; returns the path to give the command.
local function prepare(case)
  local file, dir, text = base_job(case.jobs and { jobs = "  - {name: a, steps: " .. case.jobs .. "}" } or nil)
  local make = case[2]
  if case.transforms then
    copy(BAD .. "/transforms/" .. case.transforms, dir .. "/" .. case.transforms)
    t.write(file, text .. "transforms: " .. case.transforms .. "\n")
  elseif type(make) == "string" then
    local name = make:match("[^/]+$")
    copy(BAD .. "/" .. make, dir .. "/" .. name)
    file = dir .. "/" .. name
  elseif type(make) == "function" then
    local out = make(text, dir, file)
    if type(out) == "table" then file = out.path else t.write(file, out) end
  end
  return file, dir
end

T.test("bad job files, step modules, transforms and arguments: exit 2, file:line, zero requests", function()
  local count = 0
  for _, case in ipairs(CONFIG) do
    local name = case[1]
    local file, dir = prepare(case)
    local args = {}
    for i, a in ipairs(case.args or { "run", "FILE" }) do args[i] = a == "FILE" and file or a end
    the_sim():reset_counters()
    local started = qmig.monotonic()
    local code, out, err = cli.run(args, { env = case.env })
    local took = qmig.monotonic() - started
    t.eq(code, 2, name .. ": exit status (" .. out .. err:sub(1, 500) .. ")")
    t.truthy(not err:find("stack traceback", 1, true), name .. ": a traceback in " .. err:sub(1, 2000))
    t.match(err, "^qmig%-lua: ", name)
    local where = case.where or "job%.yaml:%d+: "
    if where ~= "" then t.match(err, where, name .. ": the message names the file") end
    if case.err then t.match(err, case.err, name) end
    if case.short then
      t.truthy(#err < 2000, name .. ": a " .. #err .. "-byte message")
      t.truthy(took < 20, name .. ": took " .. took .. " s")
    end
    t.eq(the_sim():counts().total, 0, name .. ": no request reaches either side")
    t.truthy(not fs.exists(dir .. "/project"), name .. ": no project folder is created")
    count = count + 1
  end
  t.truthy(count >= 60, "cases tried: " .. count)
  t.truthy(not fs.exists("/tmp/qmig-badinput-pwned"), "a .lua job file cannot run commands")
end)

T.test("fuzz regressions: JSON numbers out of range and around -2^63 (tests/fuzz/fuzz_json)", function()
  -- 2e308 read as inf, which json.encode refuses: a GET -> PUT would fail late
  for _, text in ipairs { "2e308", "[1, 2e308]", "-1e999", "1" .. ("0"):rep(400) } do
    local v, err, code = json.decode(text)
    t.eq(v, nil, text)
    t.match(err, "^invalid JSON: number out of range at character %d+ %(line 1, column %d+%)$", text)
    t.eq(code, "json")
  end
  t.match(select(2, json.decode("[1, 2e308]")), "at character 5 ")
  -- -9223372036854775809 rounds to the float -2^63; its encoding read back
  -- as the integer -2^63: decode now gives the integer the first time too
  local v = json.decode("[-9223372036854775809, 9223372036854775807, 12345678901234567890]")
  t.eq(math.type(v[1]), "integer")
  t.eq(v[1], math.mininteger)
  t.eq(v[2], math.maxinteger)
  t.eq(math.type(v[3]), "float")
  local back = json.decode(json.encode(v))
  for i = 1, 3 do t.eq(math.type(back[i]), math.type(v[i]), "item " .. i); t.eq(back[i], v[i]) end
end)

T.test("lone UTF-16 surrogates in a reply read as U+FFFD instead of failing the whole reply", function()
  local v = json.decode('[{"name": "bad \\udc80 name"}, {"name": "ok"}, "\\ud83d\\ude00", "\\\\ud800", {"\\ud800": 1}]')
  t.truthy(v, "decoded")
  t.eq(v[1].name, "bad \239\191\189 name")
  t.eq(v[2].name, "ok")
  t.eq(v[3], "\240\159\152\128", "a valid pair is kept")
  t.eq(v[4], "\\ud800", "an escaped backslash is not an escape")
  t.eq(v[5]["\239\191\189"], 1, "keys too")
  t.match(select(2, json.decode('["\\ud800", x]')), "at character 12 ", "error offsets do not move")
end)

-- {====== misbehaving steps at run time: items fail, the rest goes on

local function spaces_made()
  local n = 0
  for _, s in ipairs(the_sim():state().cloud.spaces) do if s.name:match("^T_") then n = n + 1 end end
  return n
end

local RUNTIME = {
  { "a step that raises on every item", "bad.failall", listed = true, counts = "bad%.failall%s+3 failed",
    lines = { "bad%.failall a: failed %(.-cannot migrate a", "bad%.failall c: failed" } },
  { "a step returning garbage (string, unknown status, nil, number, no status, table error)", "bad.garbage",
    listed = true,
    counts = "bad%.garbage%s+7 failed",
    lines = { "bad%.garbage s: failed %(step bad%.garbage returned string; expected {status = ",
      "bad%.garbage u: failed %(step bad%.garbage returned status done",
      "bad%.garbage n: failed %(step bad%.garbage returned nil",
      "bad%.garbage i: failed %(step bad%.garbage returned number",
      "bad%.garbage t: failed %(step bad%.garbage returned status nil" } },
  { "a step whose items() raises", "bad.itemsraise", counts = "bad%.itemsraise%s+1 failed",
    lines = { "bad%.itemsraise: .-the source listing exploded" } },
  { "a step whose items() returns a string", "bad.itemsgarbage", counts = "bad%.itemsgarbage%s+1 failed" },
  { "a step whose key() raises or returns nil", "bad.keyraise", counts = "bad%.keyraise%s+1 skipped, 2 failed",
    lines = { "bad%.keyraise nil: failed %(step key%(%) failed: .-keyraise%.lua:5: no key%)" } },
}

T.test("misbehaving steps fail their items with a clear reason, exit 1; the other steps go on", function()
  for _, case in ipairs(RUNTIME) do
    the_sim():reset()
    local file = base_job { jobs = "  - {name: a, steps: [" .. case[2] .. ", test.spaces]}" }
    local code, out, err = cli.run { "run", file, "--verbose" }
    t.eq(code, 1, case[1] .. ": " .. out .. err)
    t.match(out, case.counts, case[1])
    t.match(out, "test%.spaces%s+4 created", case[1] .. ": the next step still ran")
    t.eq(spaces_made(), 4, case[1])
    for _, l in ipairs(case.lines or {}) do t.match(out, l, case[1]) end
    t.truthy(not err:find("stack traceback", 1, true), case[1] .. ": traceback on stderr")
    -- status and report still work on what it left
    local scode, sout = cli.run { "status", file, "--failed" }
    t.eq(scode, 0, case[1])
    if case.listed then t.match(sout, case[2]:gsub("%.", "%%."), case[1] .. ": status lists them") end
    t.eq((cli.run { "report", file }), 0, case[1] .. ": report")
  end
end)

-- Under a pseudo-terminal (script(1)), as a person runs it: OpenSSL asks
-- for the pass phrase of an encrypted key on the terminal when nobody gave
-- one, and the run would hang there.  stdin is /dev/null behind the pty:
-- a prompt would read EOF, but it would show.
T.test("an encrypted client key without key_password: exit 2 with the fix, never a prompt", function()
  local c = the_sim().info.certs
  local _, dir, text = base_job()
  local enc = sub(text, c.client_key, c.client_key_encrypted)
  t.write(dir .. "/job.yaml", enc)
  for _, command in ipairs { "check", "run", "plan" } do
    local cmd = string.format("cd %s && timeout -k 5 30 script -qec %s /dev/null </dev/null",
      cli.quote(fs.realpath(".")),
      cli.quote(cli.bin .. " " .. command .. " " .. cli.quote(dir .. "/job.yaml") .. "; echo \"exit=$?\""))
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    t.truthy(not out:find("pass phrase", 1, true), command .. ": prompted: " .. out)
    t.match(out, "source%.key is encrypted: set source%.key_password", command .. ": " .. out)
    t.match(out, "exit=2", command .. ": " .. out)
  end
  -- the HTTP client itself never prompts either (a script using qmig.http)
  local code_ = string.format("local r, e = require('qmig.http').client{base_url = %q, cert = %q, key = %q, ca = %q}"
    .. ":request{method = 'GET', path = '/qrs/about'}; print('error=' .. tostring(e))",
    the_sim().info.qrs_url, c.client_cert, c.client_key_encrypted, c.ca)
  local p = io.popen(string.format("timeout -k 5 30 script -qec %s /dev/null </dev/null",
    cli.quote(cli.bin .. " -e " .. cli.quote(code_))))
  local out_ = p:read("a")
  p:close()
  t.truthy(not out_:find("pass phrase", 1, true), "qmig.http prompted: " .. out_)
  t.match(out_, "error=.*key", out_)
  -- with the password it works
  t.write(dir .. "/job.yaml", sub(enc, "  user:", "  key_password: " .. c.client_key_password .. "\n  user:"))
  local code, out, err = cli.run { "check", dir .. "/job.yaml" }
  t.eq(code, 0, out .. err)
  t.truthy(not (out .. err):find(c.client_key_password, 1, true), "the password is never shown")
end)

T.test("a step whose items() fails says why, with its file and line, on every output", function()
  for _, case in ipairs {
    { "bad.itemsgarbage", "itemsgarbage%.lua:4: bad%.itemsgarbage: items%(%) must return a list, got string" },
    { "bad.itemsraise", "itemsraise%.lua:4: the source listing exploded" },
  } do
    the_sim():reset()
    local step, why = case[1], case[2]
    local file, dir = base_job { jobs = "  - {name: a, steps: [" .. step .. ", test.spaces]}" }
    local shown = {}
    for _, args in ipairs { { "run", file }, { "run", file, "--verbose" }, { "run", file, "--json" } } do
      local code, out, err = cli.run(args)
      t.eq(code, 1, step .. ": " .. out .. err)
      shown[args[3] or "console"] = out
      t.match(out, why, step .. " " .. (args[3] or "console"))
    end
    t.match(shown["--json"], '"kind":"step_failed"[^\n]*"reason":"[^"]*' .. why, step .. ": --json event")
    local _, sout = cli.run { "status", file }
    t.match(sout, step:gsub("%.", "%%.") .. "%s+1 failed", step .. ": status summary")
    _, sout = cli.run { "status", file, "--failed" }
    t.match(sout, why, step .. ": status --failed")
    local log = t.read(dir .. "/project/logs/run-3.jsonl")
    t.match(log, '"msg":"step failed"[^\n]*' .. why, step .. ": the run log")
    t.eq((cli.run { "report", file }), 0)
    local report = json.decode(t.read(dir .. "/project/reports/report.json"))
    local found
    for _, f in ipairs(report.attention) do if f.step == step and f.reason:match(why) then found = true end end
    t.truthy(found, step .. ": report.json")
    t.match(t.read(dir .. "/project/reports/report.html"), why, step .. ": report.html")
  end
end)

T.test("a transforms hook that raises fails each item it touches, exit 1, with the hook named", function()
  the_sim():reset()
  local file, dir, text = base_job { jobs = "  - {name: a, steps: [test.spaces, test.describe]}" }
  copy(BAD .. "/transforms/hookfails.lua", dir .. "/transforms.lua")
  t.write(file, text .. "transforms: transforms.lua\n")
  local code, out = cli.run { "run", file, "--verbose" }
  t.eq(code, 1, out)
  t.match(out, "test%.spaces%s+4 created")
  t.match(out, "test%.describe%s+4 failed")
  t.match(out, "transforms%.lua: hook 'space' failed: .-no space for ")
  t.eq(spaces_made(), 4)
end)
-- {====== a file that cannot be read names its path once
-- (r21: "X: X: Is a directory"; fs.read_file's message already starts with the path)
T.test("a file that cannot be read is named once: secrets, chart export, plan file", function()
  local dir = fs.realpath(t.tmpdir())
  local bad = dir .. "/secrets.yaml"
  assert(fs.mkdirs(bad, 448))
  local function once(msg)
    local _, n = tostring(msg):gsub(bad:gsub("%p", "%%%0"), "")
    t.eq(n, 1, tostring(msg))
    t.match(tostring(msg), "Is a directory")
  end
  local ok, err = pcall(require("qmig.domain.assets").credentials, bad)
  t.eq(ok, false)
  once(err)
  local _, xerr = require("qmig.domain.qlikview.exports").read(bad)
  once(xerr)
  local _, perr = require("qmig.ui.plan").read(bad)
  once(perr)
end)
-- }======

return T
