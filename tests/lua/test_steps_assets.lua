-- The built-in asset steps end to end through the qmig-lua binary against
-- qliksim (fixture site tests/lua/fixtures/sites/assets.json): data
-- connections (every type, credentials, adoption, delete), extensions and
-- themes (zip export, import, adoption) and tags (public collections).
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"

local T = t.suite("steps_assets")
local FIXTURES = fs.realpath("tests/lua/fixtures")
local sim

local function the_sim()
  if not sim then sim = simlib.start { site = FIXTURES .. "/sites/assets.json" } end
  return sim
end

local hostile_sim
T.after_all(function()
  if sim then sim:stop() end
  if hostile_sim then hostile_sim:stop() end
end)

local PASSWORDS = { "Fin-Secret-PW-9921", "literal-Sales-PW-42", "obrien-pw-77", "never-used-PW-31" }
local ENV = { QMIG_TEST_FIN_PW = PASSWORDS[1] }

local SECRETS = [[
Finance DB: {username: fin_user, password: '${QMIG_TEST_FIN_PW}'}
'Sales DB (corp_asmith)': {username: sales, password: literal-Sales-PW-42}
"O'Brien's DB": {password: obrien-pw-77}
Unmapped: {username: u, password: never-used-PW-31}
]]

local PLAN = [[
plan:
  data_connections:
    names: ['*']
    credentials: secrets.yaml
    map:
      'Finance DB': {space: Finance}
      'ERP OLEDB': {space: Finance}
      'ERP Package': {space: Finance}
      'Shared Files': {space: Finance}
      'Local Files': {space: Finance}
      'Rates Web': {space: Sales}
      'CRM REST': {space: Sales, name: CRM}
      'Sales DB': {space: Sales}
      'Sales (EMEA)': {space: Sales}
      "O'Brien's DB": {space: Finance}
      'Existing Conn': {space: Finance}
      'Orphan': {space: Nowhere}
      'Salesforce': {space: Sales}
      'Mystery': {space: Sales}
      'Left Out': {space: Sales}
transforms: transforms.lua
]]

local TRANSFORMS = [[
return {
  data_connection = function(c)
    if c.qName == "Left Out" then return nil end
    if c.qType == "QvSalesforceConnector.exe" then c.datasourceID = "salesforce" end
    return c
  end,
}
]]

local JOBS = [[
  - {name: assets, steps: [dataconnections.migrate, extensions.export, extensions.import, themes.export,
                           themes.import, test.apps, tags.migrate]}
  - {name: cleanup, steps: [dataconnections.delete]}
]]

-- A fresh project and job file; opts.secrets_mode (default 0600), opts.jobs.
local function job(opts)
  opts = opts or {}
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/secrets.yaml", opts.secrets or SECRETS)
  assert(fs.chmod(dir .. "/secrets.yaml", opts.secrets_mode or 384))
  t.write(dir .. "/transforms.lua", TRANSFORMS)
  local text = the_sim():job_yaml {
    project_dir = dir .. "/project", concurrency = opts.concurrency,
    extra = "steps_path: [" .. FIXTURES .. "/assets_steps]\n" .. PLAN,
    jobs = opts.jobs or JOBS,
  }
  t.write(dir .. "/job.yaml", text)
  return dir .. "/job.yaml", dir
end

local function run(args, env)
  return cli.run(args, { env = env or ENV })
end

local function clean()
  the_sim():reset()
  the_sim():faults {}
end

local function state() return the_sim():state().cloud end

local function space_names()
  local out = {}
  for _, s in ipairs(state().spaces) do out[s.id] = s.name end
  return out
end

-- "Space:Name" of every non built-in Cloud connection -> the record.
local function connections()
  local spaces, out = space_names(), {}
  for _, c in ipairs(state().data_connections) do
    if not c.builtin then
      local key = (spaces[c.space] or "personal") .. ":" .. c.qName
      t.eq(out[key], nil, "duplicate connection " .. key)
      out[key] = c
    end
  end
  return out
end

-- What the simulator received as the connection's password (never returned
-- by its API; qliksim keeps it for tests under test_only_received_secrets).
local function received_password(c)
  return t.truthy(c, "no such connection").test_only_received_secrets.qPassword
end

local function keys(map)
  local out = {}
  for k in pairs(map) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function names(list, field)
  local out = {}
  for _, x in ipairs(list) do out[#out + 1] = x[field or "name"] end
  table.sort(out)
  return out
end

-- Every file under dir, recursively.
local function files_under(dir, out)
  out = out or {}
  for _, name in ipairs(fs.dir(dir)) do
    if name ~= "." and name ~= ".." then
      local p = dir .. "/" .. name
      local st = fs.stat(p)
      if st and st.type == "directory" then files_under(p, out) else out[#out + 1] = p end
    end
  end
  return out
end

local function assert_no_password(texts, dir)
  local files = files_under(dir)
  t.truthy(#files >= 3, "project files: " .. #files)  -- qmig.db, a log, .gitignore at least
  for _, pw in ipairs(PASSWORDS) do
    for what, s in pairs(texts) do
      t.eq(s:find(pw, 1, true), nil, "password found in " .. what)
    end
    for _, p in ipairs(files) do
      t.eq(t.read(p):find(pw, 1, true), nil, "password found in " .. p)
    end
  end
end

-- status --json rows of one kind, by source name where the test knows it.
local function status_rows(file, kind)
  local code, out = run { "status", file, "--json" }
  t.eq(code, 0)
  local rows = {}
  for _, r in ipairs(json.decode(out)) do
    if r.kind == kind then rows[#rows + 1] = r end
  end
  return rows
end

local function qrs_ids(entity)
  local out = {}
  for _, e in ipairs(the_sim():state().qrs.entities[entity]) do out[e.name] = e.id end
  return out
end

T.test("data connections: every type created, skipped or adopted; re-run makes zero writes", function()
  clean()
  local file, dir = job { jobs = "  - {name: c, steps: [dataconnections.migrate]}\n" }
  local code, out, err = run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "dataconnections%.migrate%s+7 created, 1 adopted, 8 skipped")
  local conns = connections()
  t.eq(keys(conns), { "Finance:Existing Conn", "Finance:Finance DB", "Finance:O'Brien's DB", "Sales:CRM",
    "Sales:Rates Web", "Sales:Sales (EMEA)", "Sales:Sales DB", "Sales:Salesforce" })
  local fin = conns["Finance:Finance DB"]
  t.eq(fin.qType, "QvOdbcConnectorPackage.exe"); t.eq(fin.datasourceID, "DG_odbc")
  t.eq(fin.qConnectStatement, "ODBC CONNECT TO [FinanceDSN]"); t.eq(fin.has_password, true)
  t.eq(fin.qUsername, "fin_user")
  t.eq(conns["Sales:Sales DB"].has_password, true)
  t.eq(conns["Sales:Sales DB"].qUsername, "sales")
  t.eq(conns["Finance:O'Brien's DB"].has_password, true)
  t.eq(conns["Finance:O'Brien's DB"].qUsername, "obrien")
  t.eq(conns["Sales:Sales (EMEA)"].has_password, false)
  -- the passwords sent are those of the credentials file, ${VAR} expanded
  t.eq(received_password(fin), PASSWORDS[1], "Finance DB: ${QMIG_TEST_FIN_PW} expanded")
  t.eq(received_password(conns["Sales:Sales DB"]), "literal-Sales-PW-42")
  t.eq(received_password(conns["Finance:O'Brien's DB"]), "obrien-pw-77")
  t.eq(received_password(conns["Sales:Sales (EMEA)"]), nil, "no credentials: no password sent")
  t.eq(conns["Finance:Existing Conn"].test_only_received_secrets, {}, "an adopted connection is not written")
  t.eq(conns["Sales:CRM"].qType, "QvRestConnector.exe"); t.eq(conns["Sales:CRM"].datasourceID, "rest")
  t.eq(conns["Sales:Rates Web"].qType, "internet"); t.eq(conns["Sales:Rates Web"].datasourceID, "web")
  t.eq(conns["Sales:Salesforce"].datasourceID, "salesforce", "set by the transform hook")
  -- the skipped ones, with their reasons
  local ids, reasons = qrs_ids("dataconnection"), {}
  for _, r in ipairs(status_rows(file, "dataconnection")) do reasons[r.source_id] = r end
  local function reason(name) return reasons[ids[name]].reason end
  t.match(reason("ERP OLEDB"), "OLE DB is not supported in Qlik Cloud")
  t.match(reason("ERP Package"), "OLE DB is not supported")
  t.match(reason("Shared Files"), "folder connections need Qlik Data Gateway; use scripts%.replace")
  t.match(reason("Local Files"), "folder connections need Qlik Data Gateway")
  t.match(reason("Orphan"), "target space 'Nowhere' does not exist")
  t.match(reason("Mystery"), "connector type 'QvMysteryConnector%.exe' has no Qlik Cloud mapping")
  t.match(reason("Left Out"), "left out by the data_connection transform")
  t.match(reason("Unmapped"), "no target space")
  t.eq(reasons[ids["Existing Conn"]].status, "adopted")
  t.eq(reasons[ids["Sales DB (corp_asmith)"]].data.name, "Sales DB")
  t.eq(reasons[ids["Finance DB"]].data.space_name, "Finance")
  -- passwords: in no project file (cache, logs), no output
  assert_no_password({ stdout = out, stderr = err }, dir .. "/project")
  -- the re-run makes no writes
  the_sim():reset_counters()
  code, out, err = run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "8 unchanged, 8 skipped")
  t.eq(the_sim():counts().total_writes, 0)
  assert_no_password({ stdout = out, stderr = err }, dir .. "/project")
end)

T.test("the password file: group/world-readable is refused with exit 2; an unset ${VAR} fails the step", function()
  clean()
  local file = job { secrets_mode = 420, jobs = "  - {name: c, steps: [dataconnections.migrate]}\n" }
  the_sim():reset_counters()
  local code, out, err = run { "run", file }
  t.eq(code, 2, out .. err)
  t.match(err, "secrets%.yaml' is readable by group or others; chmod 600 it")
  t.eq(the_sim():counts().total, 0, "nothing contacted")
  file = job { jobs = "  - {name: c, steps: [dataconnections.migrate]}\n" }
  code, out, err = run({ "run", file }, {})
  t.eq(code, 1, out .. err)
  t.match(out .. err, "environment variable %${QMIG_TEST_FIN_PW} is not set")
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(keys(connections()), { "Finance:Existing Conn" })
end)

T.test("plan lists what each step would do and writes nothing", function()
  clean()
  local file, dir = job()
  the_sim():reset_counters()
  local code, out, err = run { "plan", file }
  t.eq(code, 0, out .. err)
  t.match(out, "dataconnections%.migrate .-: would create[^\n]* %(POST /api/v1/data%-connections[^)]*%)")
  t.match(out, "dataconnections%.migrate%s+7 to create, 1 to adopt, 8 skipped")
  t.match(out, "extensions%.export .-: would export %(export exports/extensions/")
  t.match(out, "extensions%.export%s+3 to export")
  t.match(out, "extensions%.import%s+2 to create, 1 to adopt")
  t.match(out, "themes%.export%s+1 to export")
  t.match(out, "themes%.import .-: would create[^\n]* %(POST /api/v1/themes[^)]*%)")
  t.match(out, "tags%.migrate%s+2 to create, 1 skipped")
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(#files_under(dir .. "/project/exports/extensions"), 0)
  t.eq(#files_under(dir .. "/project/exports/themes"), 0)
  assert_no_password({ stdout = out, stderr = err }, dir .. "/project")
end)

T.test("a password added to the credentials file later is set on the connection we created", function()
  clean()
  local file, dir = job { jobs = "  - {name: c, steps: [dataconnections.migrate]}\n" }
  t.eq(run { "run", file }, 0)
  t.eq(connections()["Sales:Sales (EMEA)"].has_password, false)
  t.eq(connections()["Finance:Existing Conn"].has_password, false)
  t.write(dir .. "/secrets.yaml", SECRETS .. "'Sales (EMEA)': {username: emea, password: '${QMIG_TEST_EMEA_PW}'}\n"
    .. "Existing Conn: {username: x, password: never-used-PW-31}\n")
  local env = { QMIG_TEST_FIN_PW = PASSWORDS[1], QMIG_TEST_EMEA_PW = "emea-Rotated-PW-55" }
  PASSWORDS[#PASSWORDS + 1] = env.QMIG_TEST_EMEA_PW
  the_sim():reset_counters()
  local code, out, err = run({ "run", file }, env)
  t.eq(code, 0, out .. err)
  t.match(out, "1 updated, 1 adopted, 6 unchanged")
  t.eq(the_sim():counts().total_writes, 1)
  t.eq(connections()["Sales:Sales (EMEA)"].has_password, true)
  t.eq(received_password(connections()["Sales:Sales (EMEA)"]), "emea-Rotated-PW-55", "${QMIG_TEST_EMEA_PW} expanded")
  t.eq(connections()["Sales:Sales (EMEA)"].qUsername, "emea")
  t.eq(connections()["Finance:Existing Conn"].has_password, false, "an adopted connection is never changed")
  t.eq(connections()["Finance:Existing Conn"].test_only_received_secrets, {}, "an adopted connection is never changed")
  assert_no_password({ stdout = out, stderr = err }, dir .. "/project")
  the_sim():reset_counters()
  code, out, err = run({ "run", file }, env)
  t.eq(code, 0, out .. err)
  t.eq(the_sim():counts().total_writes, 0)
end)

local EXT_JOB = "  - {name: e, steps: [extensions.export, extensions.import, themes.export, themes.import]}\n"

-- {name = text} of a zip, read by Python's zipfile (which also checks
-- every CRC).
local function unzip(path)
  local dir = t.tmpdir()
  local script = "import zipfile,sys,json\nz=zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\n"
    .. "print(json.dumps({n: z.read(n).decode() for n in z.namelist()}))\n"
  t.write(dir .. "/unzip.py", script)
  local p = io.popen("python3 " .. dir .. "/unzip.py " .. cli.quote(path) .. " 2>&1")
  local out = p:read("a")
  t.truthy(p:close(), "python3 zipfile: " .. out)
  return json.decode(out)
end

local function site_extension(name)
  local site = json.decode(t.read(FIXTURES .. "/sites/assets.json"))
  for _, e in ipairs(site.qrs.extensions) do if e.name == name then return e.files end end
end

T.test("extensions and themes: exported to valid zips, imported, an existing one adopted; re-runs write nothing",
  function()
  clean()
  local file, dir = job { jobs = EXT_JOB }
  local code, out, err = run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "extensions%.export%s+3 created")
  t.match(out, "extensions%.import%s+2 created, 1 adopted")
  t.match(out, "themes%.export%s+1 created")
  t.match(out, "themes%.import%s+1 created")
  local cloud = state()
  t.eq(names(cloud.extensions), { "Corp KPI tile", "Existing Ext", "Sankey Chart" })
  t.eq(names(cloud.themes), { "Corp Theme" })
  -- the zips: valid, holding exactly the files the QRS serves; the bundled one not exported
  local exports = {}
  for _, r in ipairs(status_rows(file, "extension.export")) do exports[r.data.name] = r end
  for _, r in ipairs(status_rows(file, "theme.export")) do exports[r.data.name] = r end
  t.eq(keys(exports), { "Sankey Chart", "corp-kpi-tile", "corp-theme", "existing-ext" })
  for name, r in pairs(exports) do
    t.eq(unzip(dir .. "/project/" .. r.data.file), site_extension(name), name)
  end
  t.match(exports["corp-theme"].data.file, "^exports/themes/")
  t.match(exports["Sankey Chart"].data.file, "^exports/extensions/")
  -- what Cloud holds is the zip we exported
  local by_name = {}
  for _, e in ipairs(cloud.extensions) do by_name[e.name] = e end
  t.eq(by_name["Corp KPI tile"].checksum,
    require("qmig.hash").sha256_file(dir .. "/project/" .. exports["corp-kpi-tile"].data.file))
  local imported = {}
  for _, r in ipairs(status_rows(file, "extension")) do imported[r.natural_key] = r end
  t.eq(imported["Existing Ext"].status, "adopted")
  t.eq(imported["Existing Ext"].target_id, by_name["Existing Ext"].id)
  t.eq(imported["Corp KPI tile"].target_id, by_name["Corp KPI tile"].id)
  -- re-run, then --force: the zips are reused, nothing is written
  local before = {}
  for name, r in pairs(exports) do before[name] = t.read(dir .. "/project/" .. r.data.file) end
  for _, args in ipairs { { "run", file }, { "run", file, "--force" } } do
    the_sim():reset_counters()
    code, out, err = run(args)
    t.eq(code, 0, out .. err)
    t.match(out, "extensions%.export%s+3 unchanged")
    -- with --force the adopted one is looked up again (a read) and stays adopted
    t.match(out, args[3] and "extensions%.import%s+1 adopted, 2 unchanged" or "extensions%.import%s+3 unchanged")
    t.eq(the_sim():counts().total_writes, 0, table.concat(args, " "))
    for name, r in pairs(exports) do t.eq(t.read(dir .. "/project/" .. r.data.file), before[name]) end
  end
end)

T.test("tags and custom properties become public collections holding the app items; re-run writes nothing",
  function()
  clean()
  local file = job { jobs = "  - {name: t, steps: [test.apps, tags.migrate]}\n" }
  -- a public collection that already exists is adopted
  local resp = assert(the_sim().control:request { method = "POST", path = "/api/v1/collections",
    headers = { Authorization = "Bearer " .. the_sim().info.api_key }, json = { name = "Certified", type = "public" } })
  t.eq(resp.status, 201)
  local code, out, err = run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "tags%.migrate%s+2 updated, 1 skipped")
  local cloud = state()
  t.eq(names(cloud.collections), { "Certified", "Finance", "Region:APAC", "Region:EMEA" })
  local coll_of = {}
  for _, c in ipairs(cloud.collections) do
    t.eq(c.type, "public")
    for _, item in ipairs(c.items) do
      coll_of[item] = coll_of[item] or {}
      table.insert(coll_of[item], c.name)
    end
  end
  local tags = {}
  for _, it in ipairs(cloud.items) do
    local list = coll_of[it.id] or {}
    table.sort(list)
    tags[it.name] = list
  end
  t.eq(tags, { Budget = { "Certified", "Finance", "Region:APAC", "Region:EMEA" }, Pipeline = { "Certified" },
    Untagged = {} })
  local ids = qrs_ids("app")
  for _, r in ipairs(status_rows(file, "app.tags")) do
    if r.source_id == ids["Later Forecast"] then
      t.eq(r.status, "skipped"); t.match(r.reason, "app not imported yet")
    end
  end
  the_sim():reset_counters()
  code, out, err = run { "run", file }
  t.eq(code, 0, out .. err)
  t.match(out, "tags%.migrate%s+2 unchanged, 1 skipped")
  t.eq(the_sim():counts().total_writes, 0)
end)

T.test("replies lost after the server applied a create never duplicate anything", function()
  clean()
  local file = job()
  the_sim():faults { rules = {
    { match = "POST /api/v1/data-connections", nth = 2, action = "drop_after_apply" },
    { match = "POST /api/v1/extensions", nth = 1, action = "drop_after_apply" },
    { match = "POST /api/v1/themes", nth = 1, action = "drop_after_apply" },
    { match = "~^POST /api/v1/collections$", nth = 1, action = "drop_after_apply" },
    { match = "~^POST /api/v1/collections/[^/]+/items", nth = 1, action = "drop_after_apply" },
  } }
  local code, out, err = run { "run", file, "--job", "assets" }
  t.eq(code, 0, out .. err)
  t.eq(#keys(connections()), 8)
  local cloud = state()
  t.eq(names(cloud.extensions), { "Corp KPI tile", "Existing Ext", "Sankey Chart" })
  t.eq(names(cloud.themes), { "Corp Theme" })
  t.eq(names(cloud.collections), { "Certified", "Finance", "Region:APAC", "Region:EMEA" })
  local n = 0
  for _, c in ipairs(cloud.collections) do n = n + #c.items end
  t.eq(n, 5)
  -- the connection whose reply was lost counts as created by us
  local created = 0
  for _, r in ipairs(status_rows(file, "dataconnection")) do
    if r.status == "created" then created = created + 1; t.eq(r.created_by_us, true) end
  end
  t.eq(created, 7)
  the_sim():faults {}
  the_sim():reset_counters()
  code, out, err = run { "run", file, "--job", "assets" }
  t.eq(code, 0, out .. err)
  t.eq(the_sim():counts().total_writes, 0)
end)

T.test("dataconnections.delete removes only what the project created; migrate then recreates it", function()
  clean()
  local file = job()
  t.eq(run { "run", file, "--job", "assets" }, 0)
  t.eq(#keys(connections()), 8)
  local code, out, err = run { "run", file, "--job", "cleanup", "--yes" }
  t.eq(code, 0, out .. err)
  t.match(out, "dataconnections%.delete%s+7 deleted")
  t.eq(keys(connections()), { "Finance:Existing Conn" })
  the_sim():reset_counters()
  code, out = run { "run", file, "--job", "cleanup", "--yes" }
  t.eq(code, 0)
  t.match(out, "dataconnections%.delete%s+nothing to do")
  t.eq(the_sim():counts().total_writes, 0)
  code, out, err = run { "run", file, "--job", "assets" }
  t.eq(code, 0, out .. err)
  t.match(out, "dataconnections%.migrate%s+7 created, 1 unchanged")
  t.eq(#keys(connections()), 8)
end)

T.test("undo removes the connections, extensions, themes and collections the run created", function()
  clean()
  local file = job()
  local before = state()
  t.eq(run { "run", file, "--job", "assets" }, 0)
  local code, out, err = run { "undo", file }
  t.eq(code, 0, out .. err)
  local after = state()
  t.eq(keys(connections()), { "Finance:Existing Conn" })
  t.eq(names(after.extensions), names(before.extensions))
  t.eq(names(after.themes), names(before.themes))
  t.eq(#after.collections, 0)
  t.eq(#after.apps, 0)
end)

T.test("zip writer: stored entries Python reads, CRC-32, unsafe entry names refused", function()
  local zip = require "qmig.domain.zip"
  t.eq(zip.crc32("123456789"), 0xCBF43926)
  t.eq(zip.crc32(""), 0)
  for _, bad in ipairs { "../x.js", "a/../../x", "/etc/passwd", "C:\\x.js", "c:/x", "a//b", "a/", "", "./a" } do
    t.eq(zip.entry_name(bad), nil, bad)
  end
  t.eq(zip.entry_name("lib\\util.js"), "lib/util.js")
  t.eq(zip.build { { name = "a", data = "1" }, { name = "a", data = "2" } }, nil)
  local bytes = assert(zip.build { { name = "x.qext", data = "{}" },
    { name = "dir/é ü.js", data = string.rep("z", 70000) }, { name = "empty.txt", data = "" } })
  local dir = t.tmpdir()
  t.write(dir .. "/t.zip", bytes)
  t.eq(unzip(dir .. "/t.zip"), { ["x.qext"] = "{}", ["dir/é ü.js"] = string.rep("z", 70000), ["empty.txt"] = "" })
  t.eq(zip.read(bytes)["x.qext"], "{}")
  t.eq(zip.build { { name = "x.qext", data = "{}" } }, zip.build { { name = "x.qext", data = "{}" } }, "deterministic")
end)

T.test("hostile names: quotes and backslashes in connection names, unsafe extension names and file paths", function()
  if not hostile_sim then hostile_sim = simlib.start { site = FIXTURES .. "/sites/assets-hostile.json" } end
  local dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/job.yaml", hostile_sim:job_yaml {
    project_dir = dir .. "/project",
    extra = "plan:\n  data_connections:\n    names: ['q*', 'PLAIN*']\n    map: {'*': {space: Finance}}\n",
    jobs = "  - {name: a, steps: [dataconnections.migrate, extensions.export, extensions.import]}\n",
  })
  local code, out, err = run { "run", dir .. "/job.yaml" }
  t.eq(code, 1, out .. err)
  t.match(out, "dataconnections%.migrate%s+2 created, 2 skipped")
  local skipped = 0
  for _, r in ipairs(status_rows(dir .. "/job.yaml", "dataconnection")) do
    if r.status == "skipped" then
      skipped = skipped + 1
      t.match(r.reason,
        "'Quarry DB %(corp_a%)', 'Quarry DB %(corp_b%)' would all become 'Quarry DB' in space 'Finance'")
    end
  end
  t.eq(skipped, 2)
  t.match(out, "extensions%.export%s+2 created, 1 failed")
  t.match(out, "file path with '%.%.' in '%.%./%.%./escaped%.js'")
  t.match(out, "extensions%.import%s+1 created, 1 skipped, 1 failed")
  local cloud = hostile_sim:state().cloud
  t.eq(names(cloud.data_connections, "qName"), { "DataFiles", "Plain ODBC", "Q\"uote\\Back 'x' (y)" })
  t.eq(names(cloud.extensions), { "Evil ext" })
  -- every exported zip is a plain file right inside exports/extensions
  local zips = fs.dir(dir .. "/project/exports/extensions")
  t.eq(#zips, 2)
  for _, name in ipairs(zips) do
    t.eq(name:find("/", 1, true), nil)
    t.match(name, "%.zip$")
    t.truthy(not name:match("^%.%."), name)
  end
  t.eq(fs.exists(dir .. "/escaped.js") or fs.exists(dir .. "/project/escaped.js"), false)
  hostile_sim:reset_counters()
  code, out, err = run { "run", dir .. "/job.yaml" }
  t.eq(code, 1, out .. err)
  t.match(out, "dataconnections%.migrate%s+2 unchanged, 2 skipped")
  -- only the failed import is tried again (and refused again: its .qext is not JSON)
  local counts = hostile_sim:counts()
  t.eq(counts.applied_writes, 0)
  t.eq(counts.writes, { ["POST /api/v1/extensions"] = 1 })
  t.eq(counts.by_status["400"], 1)
end)

return T
