-- The identity steps end to end (users.export/import/delete,
-- spaces.create/assign/owners/delete) through the qmig-lua command line
-- against qliksim seeded with tests/lua/fixtures/sites/identity.json.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"

local T = t.suite("steps.identity")
local SITE = "tests/lua/fixtures/sites/identity.json"
local sim

local function the_sim()
  if not sim then sim = simlib.start { site = SITE } end
  return sim
end
T.after_all(function() if sim then sim:stop() end end)

local function clean()
  the_sim():reset()
  the_sim():faults {}
end

local JOBS = [[
  - {name: identities, steps: [users.export, users.import]}
  - {name: containers, steps: [spaces.create, spaces.assign, spaces.owners]}
  - {name: cleanup, steps: [spaces.delete, users.delete]}]]

-- A fresh project and job file.  o.streams (YAML list text), o.users
-- (extra plan.users lines), o.transforms (Lua source).
local function job(o)
  o = o or {}
  local dir = fs.realpath(t.tmpdir())
  local users = o.users or ""
  local extra = string.format([[
plan:
  apps: {streams: %s}
  spaces:
    prefix: 'DEV_'
    map: {Existing: {name: Existing Space, type: shared}, Sandbox: {type: shared}}
    assignments:
      Existing: [{user: 'CORP\jdoe', roles: [producer, publisher]}, {group: Sales, roles: [consumer]}]
    owners: {Sandbox: 'PARTNER\ext2'}
  users:
    domains: {CORP: corp.com}
    map: {'CORP\dlee': david.lee@corp.com}
%s]], o.streams or [=[[Finance, 'Sales/EMEA', "O'Brien*", everyone]]=], users)
  if o.transforms then
    t.write(dir .. "/transforms.lua", o.transforms)
    extra = extra .. "\ntransforms: transforms.lua"
  end
  t.write(dir .. "/job.yaml", the_sim():job_yaml { project_dir = dir .. "/project", extra = extra, jobs = JOBS })
  return dir .. "/job.yaml", dir .. "/project"
end

local function run(file, ...)
  local code, out, err = cli.run { "run", file, "--verbose", ... }
  return code, out, err
end

local function must_run(file, ...)
  local code, out, err = run(file, ...)
  t.eq(code, 0, out .. err)
  return out
end

-- Runs again and proves it made no write request.
local function rerun_writes_nothing(file, ...)
  the_sim():reset_counters()
  local out = must_run(file, ...)
  t.eq(the_sim():counts().total_writes, 0, "writes on re-run:\n" .. out)
  return out
end

-- {====== views of the simulated tenant and the cache

local function cloud() return the_sim():state().cloud end

local function labels(c)
  local who = {}
  for _, u in ipairs(c.users) do who[u.id] = u.email or u.subject end
  for _, g in ipairs(c.groups) do who[g.id] = "group " .. g.name end
  return who
end

-- name -> {type=, owner=}
local function spaces()
  local c = cloud()
  local who, out = labels(c), {}
  for _, s in ipairs(c.spaces) do
    t.truthy(out[s.name] == nil, "two spaces named " .. s.name)
    out[s.name] = { type = s.type, owner = who[s.ownerId], id = s.id }
  end
  return out
end

-- space name -> {assignee label -> sorted roles}; fails on a duplicate.
local function assignments()
  local c = cloud()
  local who, names, out = labels(c), {}, {}
  for _, s in ipairs(c.spaces) do names[s.id] = s.name end
  for _, a in ipairs(c.assignments) do
    local space = names[a.spaceId]
    out[space] = out[space] or {}
    local label = who[a.assigneeId]
    t.truthy(out[space][label] == nil, "two assignments of " .. tostring(label) .. " in " .. space)
    local roles = {}
    for i, r in ipairs(a.roles) do roles[i] = r end
    table.sort(roles)
    out[space][label] = roles
  end
  return out
end

local function users_by_email()
  local out = {}
  for _, u in ipairs(cloud().users) do out[u.email or u.subject] = u end
  return out
end

local function qrs_ids(kind, field)
  local out = {}
  for _, e in ipairs(the_sim():state().qrs.entities[kind]) do out[e[field]] = e.id end
  return out
end

-- kind -> source_id -> cache row
local function cache(file)
  local code, out = cli.run { "status", file, "--json" }
  t.eq(code, 0)
  local rows = {}
  for _, r in ipairs(json.decode(out)) do
    rows[r.kind] = rows[r.kind] or {}
    rows[r.kind][r.source_id] = r
  end
  return rows
end

local function post(path, body)
  local resp = assert(the_sim().control:request { method = "POST", path = "/api/v1/" .. path,
    headers = { Authorization = "Bearer " .. the_sim().info.api_key }, json = body })
  t.eq(resp.status, 201, resp.body)
  return json.decode(resp.body)
end
-- }======

local ORIGINAL_USERS = { "ASmith@Corp.com", "PARTNER\\ext1", "admin@acme.com", "david.lee@corp.com", "jdoe@corp.com" }

local function keys(tbl)
  local out = {}
  for k in pairs(tbl) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- {====== the rules, without a simulator

T.test("rules: security-rule conditions are translated exactly or reported", function()
  local rules = require "qmig.domain.rules"
  local stream = { id = "6a1c0000-0000-0000-0000-000000000001", name = "Sales" }
  local function rule(text, filter, actions, extra)
    local r = { name = "r", category = "Security", type = "Custom", rule = text, actions = actions or 2,
      resourceFilter = filter or ("Stream_" .. stream.id), disabled = false, ruleContext = 0 }
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end
  local function who(list)
    local grants, notes = rules.derive(list, stream)
    local out = {}
    for _, g in ipairs(grants) do
      local w = g.who
      out[#out + 1] = (w.group and ("group " .. w.group) or w.user_id and ((w.directory or "*") .. "\\" .. w.user_id)
        or ("name " .. w.user_name)) .. (g.read and " read" or "") .. (g.publish and " publish" or "")
    end
    return out, notes
  end
  t.eq(who { rule('((user.group = "A" or user.group="B"))') }, { "group A read", "group B read" })
  t.eq(who { rule("user.userId = 'jo' and user.userDirectory = 'CORP'", nil, 34) }, { "CORP\\jo read publish" })
  t.eq(who { rule('user.name like "Jo Doe"', nil, 5) }, { "name Jo Doe publish" })           -- create+update
  t.eq(who { rule('resource.name = "Sales" and user.group = "S"', "App_*, Stream_*") }, { "group S read" })
  t.eq(who { rule('resource.name = "Other" and user.group = "S"', "Stream_*") }, {})
  t.eq(who { rule('user.group = "S"', "Stream_ffffffff-0000-0000-0000-000000000000") }, {})
  t.eq(who { rule('user.group = "S"', nil, 2, { type = "Default" }) }, {})
  t.eq(who { rule('user.group = "S"', nil, 2, { disabled = true }) }, {})
  t.eq(who { rule('user.group = "S"', nil, 2, { ruleContext = 2 }) }, {})
  local grants, notes = who { rule('user.group like "Sales*"'), rule('user.group != "X"'),
    rule('user.roles = "RootAdmin"'), rule('user.group = "A" and user.userId = "b"'), rule("user.group = "),
    rule('user.group = "A"', nil, 8) }
  t.eq(grants, {})
  t.eq(#notes, 6)
  t.match(notes[1], 'not translated: user%.group like "Sales%*"')
  t.match(notes[3], "condition on user%.roles")
  t.match(notes[6], "grant neither read nor publish")
end)

T.test("space names: forbidden characters, white space, prefix, suffix, 256 characters", function()
  local sp = require "qmig.domain.spaces"
  local plan = { spaces = { prefix = "DEV_", suffix = " (QS)" } }
  t.eq(sp.derived_name(plan, 'A/B: "C" * D?'), "DEV_A_B_ _C_ _ D_ (QS)")
  t.eq(sp.derived_name(plan, "  O'Brien's \t Reports\n "), "DEV_O'Brien's Reports (QS)")
  t.eq(sp.derived_name({}, "Sales//EMEA"), "Sales_EMEA")
  t.eq(sp.derived_name({}, "///"), "_")
  t.eq(sp.derived_name({}, "A\tB\0C"), "A BC")
  local long = sp.derived_name(plan, string.rep("é", 300))
  t.eq(utf8.len(long), 256)
  t.truthy(long:sub(1, 4) == "DEV_" and long:sub(-5) == " (QS)")
  t.eq(sp.invalid(long), nil)
  t.match(sp.invalid("a|b"), "contains '|'")
  t.match(sp.invalid(string.rep("x", 257)), "longer than 256")
  t.eq(sp.wanted({ spaces = { map = { sandbox = { type = "shared" } } } }, { name = "SandBox" }),
    { name = "SandBox", type = "shared", from_map = true })
end)
-- }======

T.test("users.export: email from attribute (any case), domain rule, explicit map; skipped directories and " ..
  "users outside the plan left out; no target write", function()
  clean()
  local file, project = job()
  local out = must_run(file, "--step", "users.export")
  t.match(out, "users%.export%s+8 created")
  t.eq(the_sim():counts().total_writes, 0)
  local m = json.decode(t.read(project .. "/userMappings.json"))
  t.eq(keys(m), { "CORP\\asmith", "CORP\\bwong", "CORP\\cmartin", "CORP\\dlee", "CORP\\epatel", "CORP\\jdoe",
    "PARTNER\\ext1", "PARTNER\\ext2" })
  local ids = qrs_ids("user", "userId")
  t.eq(m["CORP\\jdoe"], { email = "jdoe@corp.com", subject = "CORP\\jdoe", name = "John Doe", source_id = ids.jdoe })
  t.eq(m["CORP\\asmith"].email, "asmith@corp.com")     -- attributeType "Email"
  t.eq(m["CORP\\cmartin"].email, "cmartin@corp.com")   -- attributeType "mail"
  t.eq(m["CORP\\bwong"].email, "bwong@corp.com")       -- no attribute: plan.users.domains
  t.eq(m["CORP\\dlee"].email, "david.lee@corp.com")    -- plan.users.map wins over the attribute
  t.eq(m["PARTNER\\ext1"].email, nil)                  -- no rule gives one: subject only
  t.eq(m["PARTNER\\ext1"].subject, "PARTNER\\ext1")
  local listing = json.decode(t.read(project .. "/users.json"))
  t.eq(#listing, 8)
  local sources = {}
  for _, u in ipairs(listing) do sources[u.userDirectory .. "\\" .. u.userId] = u.email_source end
  t.eq(sources, { ["CORP\\asmith"] = "attribute", ["CORP\\bwong"] = "domain", ["CORP\\cmartin"] = "attribute",
    ["CORP\\dlee"] = "map", ["CORP\\epatel"] = "attribute", ["CORP\\jdoe"] = "attribute" })
  out = rerun_writes_nothing(file, "--step", "users.export")
  t.match(out, "users%.export%s+8 unchanged")
end)

T.test("users.export: scope all takes every user outside skip_directories", function()
  clean()
  local file, project = job { users = "    scope: all\n    skip_directories: [INTERNAL, partner]\n" }
  local out = must_run(file, "--step", "users.export")
  t.match(out, "users%.export%s+7 created")
  t.eq(keys(json.decode(t.read(project .. "/userMappings.json"))), { "CORP\\asmith", "CORP\\bwong", "CORP\\cmartin",
    "CORP\\dlee", "CORP\\epatel", "CORP\\jdoe", "CORP\\nobody" })
end)

T.test("users.export: owners of personal apps are in scope with plan.apps.personal", function()
  clean()
  local file, project = job { streams = "['Sales*'], personal: true" }
  must_run(file, "--step", "users.export")
  -- Sales/EMEA's owner, the map streams' owners, the plan's users, the personal app's owner; not Finance's
  t.eq(keys(json.decode(t.read(project .. "/userMappings.json"))), { "CORP\\asmith", "CORP\\dlee", "CORP\\jdoe",
    "CORP\\nobody", "PARTNER\\ext1", "PARTNER\\ext2" })
end)

T.test("users.import without create_missing adopts users by email or subject and creates none", function()
  clean()
  local file = job()
  local out = must_run(file, "--job", "identities")
  t.match(out, "users%.import%s+4 adopted, 4 skipped")
  t.match(out, "CORP\\bwong is not in the tenant %(looked for email bwong@corp%.com, subject CORP\\bwong")
  t.match(out, "PARTNER\\ext1 found by subject PARTNER\\ext1")
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(keys(users_by_email()), ORIGINAL_USERS)
  local rows, ids, cloud_users = cache(file).user, qrs_ids("user", "userId"), users_by_email()
  t.eq(rows[ids.jdoe].status, "adopted")
  t.eq(rows[ids.jdoe].target_id, cloud_users["jdoe@corp.com"].id)
  t.eq(rows[ids.asmith].target_id, cloud_users["ASmith@Corp.com"].id)   -- emails compare ignoring case
  t.eq(rows[ids.dlee].target_id, cloud_users["david.lee@corp.com"].id)
  t.eq(rows[ids.ext1].target_id, cloud_users["PARTNER\\ext1"].id)
  t.eq(rows[ids.bwong].status, "skipped")
  t.eq(rows[ids.jdoe].created_by_us, false)
  out = rerun_writes_nothing(file, "--job", "identities")
  t.match(out, "users%.import%s+4 unchanged, 4 skipped")
end)

T.test("create_missing creates invited users once; users.delete removes only those", function()
  clean()
  local file = job { users = "    create_missing: true\n" }
  local out = must_run(file, "--job", "identities")
  t.match(out, "users%.import%s+4 created, 4 adopted")
  local u = users_by_email()
  t.eq(#keys(u), 9)
  t.eq(u["bwong@corp.com"].subject, "CORP\\bwong")
  t.eq(u["bwong@corp.com"].status, "invited")
  t.eq(u["cmartin@corp.com"].name, "Claire Martin")
  t.eq(u["PARTNER\\ext2"].email, nil)
  rerun_writes_nothing(file, "--job", "identities")
  out = must_run(file, "--job", "cleanup", "--step", "users.delete", "--yes")
  t.match(out, "users%.delete%s+4 deleted")
  t.eq(keys(users_by_email()), ORIGINAL_USERS)   -- adopted users untouched
  out = rerun_writes_nothing(file, "--job", "cleanup", "--yes")
  t.match(out, "users%.delete%s+nothing to do")
  -- the cache knows they are gone: the next import creates them again
  out = must_run(file, "--job", "identities")
  t.match(out, "users%.import%s+4 created, 4 unchanged")
  t.eq(#keys(users_by_email()), 9)
end)

local EXPECTED_SPACES = {
  ["DEV_Everyone"] = "managed", ["DEV_Finance"] = "managed", ["DEV_O'Brien's Reports"] = "managed",
  ["DEV_Sales_EMEA"] = "managed", ["DEV_Sandbox"] = "shared", ["Existing Space"] = "shared",
  ["Migration staging"] = "shared",
}

T.test("spaces.create: prefix, forbidden characters, quotes, map, staging, adoption; re-run writes nothing", function()
  clean()
  local existing_id = spaces()["Existing Space"].id
  local file = job()
  local out = must_run(file, "--step", "spaces.create")
  t.match(out, "spaces%.create%s+6 created, 1 adopted")
  local s = spaces()
  local types = {}
  for name, v in pairs(s) do types[name] = v.type end
  t.eq(types, EXPECTED_SPACES)
  t.eq(s["Existing Space"].id, existing_id)
  local rows, streams = cache(file).space, qrs_ids("stream", "name")
  t.eq(rows[streams.Existing].status, "adopted")
  t.eq(rows[streams.Existing].target_id, existing_id)
  t.eq(rows[streams["Sales/EMEA"]].target_id, s["DEV_Sales_EMEA"].id)
  t.eq(rows["@staging"].target_id, s["Migration staging"].id)
  t.eq(rows[streams.Archive], nil)   -- not in plan.apps.streams nor plan.spaces.map
  out = rerun_writes_nothing(file, "--step", "spaces.create")
  t.match(out, "spaces%.create%s+7 unchanged")
end)

T.test("a changed space name renames the space the project created, never an adopted one", function()
  clean()
  local file = job()
  must_run(file, "--step", "spaces.create")
  local before = spaces()
  local text = t.read(file):gsub("Existing: {name: Existing Space, type: shared}, Sandbox: {type: shared}",
    "Existing: {name: Other Space, type: shared}, Sandbox: {name: Play Area, type: shared}")
  t.write(file, text)
  local out = must_run(file, "--step", "spaces.create")
  t.match(out, "updated %(renamed from 'DEV_Sandbox'%)")
  local after = spaces()
  t.eq(after["Play Area"].id, before["DEV_Sandbox"].id)
  t.eq(after["DEV_Sandbox"], nil)
  t.eq(after["Existing Space"].id, before["Existing Space"].id)   -- adopted: left as it is
  t.truthy(after["Other Space"])                                  -- and the plan's space made anew
  t.match(out, "spaces%.create%s+1 created, 1 updated, 5 unchanged")
  -- undoing that run puts the old name back and removes what it created
  t.eq((cli.run { "undo", file, "--run", "2" }), 0)
  after = spaces()
  t.eq(after["DEV_Sandbox"].id, before["DEV_Sandbox"].id)
  t.eq(after["Play Area"], nil)
  t.eq(after["Other Space"], nil)
  t.eq(#keys(after), 7)
  -- and the next run applies the plan again
  out = must_run(file, "--step", "spaces.create")
  t.match(out, "spaces%.create%s+1 created, 1 updated, 5 unchanged")
  t.truthy(spaces()["Play Area"])
end)

T.test("two streams whose cleaned names collide: the second fails with a clear reason", function()
  clean()
  local file = job { streams = "[Finance, 'Sales:EMEA', 'Sales/EMEA']" }
  local code, out = run(file, "--step", "spaces.create")
  t.eq(code, 1, out)
  t.match(out, "failed %(stream 'Sales:EMEA' would become space 'DEV_Sales_EMEA', the name already taken " ..
    "by stream 'Sales/EMEA'")
  t.match(out, "spaces%.create%s+4 created, 1 adopted, 1 failed")   -- Finance, Sales/EMEA, Sandbox, staging
  t.truthy(spaces()["DEV_Sales_EMEA"])
  t.eq(cache(file).space[qrs_ids("stream", "name")["Sales:EMEA"]].status, "failed")
end)

T.test("plan lists what each step would do and writes nothing", function()
  clean()
  local file, project = job { users = "    create_missing: true\n" }
  local spaces_before = #cloud().spaces
  local code, out, err = cli.run { "plan", file }
  t.eq(code, 0, out .. err)
  t.match(out, "users%.import .-: would create[^\n]* %(POST /api/v1/users%)")
  t.match(out, "users%.import%s+4 to create, 4 to adopt")
  t.match(out, "spaces%.create .-: would create[^\n]* %(POST /api/v1/spaces%)")
  t.match(out, "spaces%.create%s+6 to create, 1 to adopt")
  t.match(out, "spaces%.assign%s+4 to create, 2 skipped")
  t.eq(the_sim():counts().total_writes, 0)
  t.eq(#cloud().spaces, spaces_before)
  t.eq(fs.exists(project .. "/userMappings.json"), false)
  -- once run, the plan of the delete steps lists what they would delete
  must_run(file, "--job", "identities", "--job", "containers")
  the_sim():reset_counters()
  code, out = cli.run { "plan", file, "--job", "cleanup" }
  t.eq(code, 0)
  t.match(out, "spaces%.delete .-: would delete %(DELETE /api/v1/spaces/")
  t.match(out, "spaces%.delete%s+6 to delete")
  t.match(out, "users%.delete%s+4 to delete")
  t.eq(the_sim():counts().total_writes, 0)
end)

T.test("spaces.assign: security rules and plan -> roles valid per space type, union update, reasons", function()
  clean()
  local file = job()
  must_run(file, "--job", "identities")
  local out = must_run(file, "--step", "spaces.create", "--step", "spaces.assign")
  t.eq(assignments(), {
    ["DEV_Finance"] = { ["group Finance"] = { "consumer", "publisher" } },
    ["DEV_Sales_EMEA"] = { ["group Sales"] = { "consumer" } },               -- Stream_* + resource.name
    ["DEV_Sandbox"] = { ["PARTNER\\ext1"] = { "consumer", "producer" } },    -- publish in a shared space
    -- the existing consumer assignment is widened, not duplicated; publisher is not a shared role
    ["Existing Space"] = { ["jdoe@corp.com"] = { "consumer", "producer" }, ["group Sales"] = { "consumer" } },
  })
  t.match(out, "unresolved: CORP\\bwong %(not in the tenant")
  t.match(out, "rule 'Finance admins' not translated: condition on user%.roles")
  t.match(out, "role publisher is not valid in a shared space %(CORP\\jdoe%)")
  t.match(out, "skipped %(unresolved: group Missing %(not in the tenant yet%)%)")
  t.eq(out:find("Auditors", 1, true), nil)   -- QMC-only rules grant no hub access
  t.match(out, "spaces%.assign%s+4 created, 2 skipped")
  out = rerun_writes_nothing(file, "--step", "spaces.create", "--step", "spaces.assign")
  t.match(out, "spaces%.assign%s+4 unchanged, 2 skipped")
  -- Ben appears in the tenant: the next run adds him, and only him
  file = job { users = "    create_missing: true\n" }
  must_run(file, "--job", "identities", "--step", "users.import")
  must_run(file, "--step", "spaces.create", "--step", "spaces.assign")
  t.eq(assignments()["DEV_Finance"], { ["group Finance"] = { "consumer", "publisher" },
    ["bwong@corp.com"] = { "consumer" } })
end)

T.test("spaces.owners: stream or plan owner becomes the space owner; the unresolved are skipped; undo restores",
  function()
  clean()
  local file = job()
  must_run(file, "--job", "identities")
  local out = must_run(file, "--job", "containers")
  local s = spaces()
  t.eq(s["DEV_Finance"].owner, "jdoe@corp.com")
  t.eq(s["DEV_Sales_EMEA"].owner, "ASmith@Corp.com")
  t.eq(s["Existing Space"].owner, "david.lee@corp.com")
  t.eq(s["DEV_Sandbox"].owner, "admin@acme.com")
  t.match(out, "owner PARTNER\\ext2 is not in the tenant")          -- plan.spaces.owners
  t.match(out, "owner INTERNAL\\sa_repository is a service account")
  t.match(out, "owner CORP\\cmartin is not in the tenant")
  t.match(out, "spaces%.owners%s+3 updated, 3 skipped")
  -- the migration identity keeps what later steps need in the spaces it handed over
  t.eq(assignments()["DEV_Finance"]["admin@acme.com"], { "facilitator", "publisher" })
  t.eq(assignments()["Existing Space"]["admin@acme.com"], { "facilitator", "producer" })
  rerun_writes_nothing(file, "--job", "containers")
  local code, uout = cli.run { "undo", file }
  t.eq(code, 0, uout)
  s = spaces()
  t.eq(s["Existing Space"].owner, "admin@acme.com")   -- adopted: restored, not deleted
  t.eq(s["DEV_Finance"], nil)
  t.eq(assignments(), { ["Existing Space"] = { ["jdoe@corp.com"] = { "consumer" } } })
end)

T.test("spaces.delete: only spaces the project created, only empty ones; re-run writes nothing", function()
  clean()
  local file = job()
  must_run(file, "--step", "spaces.create")
  post("data-connections", { qName = "Kept", qType = "ODBC", qConnectStatement = "x", datasourceID = "odbc",
    space = spaces()["DEV_Sandbox"].id })
  local out = must_run(file, "--job", "cleanup", "--step", "spaces.delete", "--yes")
  t.match(out, "spaces%.delete%s+5 deleted, 1 skipped")
  t.match(out, "space 'DEV_Sandbox' is not empty")
  t.eq(keys(spaces()), { "DEV_Sandbox", "Existing Space" })
  -- the re-run asks again for the skipped one only (Qlik refuses: 412) and changes nothing
  the_sim():reset_counters()
  out = must_run(file, "--job", "cleanup", "--yes")
  t.match(out, "spaces%.delete%s+1 skipped")
  local counts = the_sim():counts()
  t.eq(counts.applied_writes, 0, out)
  t.eq(counts.writes, { ["DELETE /api/v1/spaces/{spaceId}"] = 1 }, out)
  t.eq(counts.by_status["412"], 1)
  -- the cache knows which are gone: spaces.create makes them again
  out = must_run(file, "--step", "spaces.create")
  t.match(out, "spaces%.create%s+5 created, 2 unchanged")
  t.eq(#keys(spaces()), 7)
end)

T.test("a reply lost after the server created a space or a user: no duplicate, still the project's own",
  function()
  clean()
  local file = job { users = "    create_missing: true\n" }
  the_sim():faults { rules = {
    { match = "POST /api/v1/spaces", nth = 2, action = "drop_after_apply" },
    { match = "POST /api/v1/users", nth = 1, action = "drop_after_apply" },
  } }
  must_run(file, "--step", "users.export", "--step", "users.import", "--step", "spaces.create")
  the_sim():faults {}
  t.eq(#keys(users_by_email()), 9)
  t.eq(#keys(spaces()), 7)
  local rows = cache(file)
  local created = 0
  for _, r in pairs(rows.space) do if r.created_by_us then created = created + 1 end end
  t.eq(created, 6)
  created = 0
  for _, r in pairs(rows.user) do if r.created_by_us then created = created + 1 end end
  t.eq(created, 4)
end)

T.test("transforms.lua: the space and user hooks rename and leave out", function()
  clean()
  local file = job { users = "    create_missing: true\n", transforms = [[
return {
  space = function(stream, space)
    if stream.name == "Everyone" then return nil end
    space.name = space.name .. " (wave 1)"
    return space
  end,
  user = function(source, user)
    if source.userId == "bwong" then return nil end
    if source.userDirectory == "PARTNER" then user.email = source.userId .. "@partner.example" end
    return user
  end,
}]] }
  local out = must_run(file, "--step", "users.export", "--step", "users.import", "--step", "spaces.create")
  t.match(out, "left out by the transforms%.lua user hook")
  t.match(out, "left out by the transforms%.lua space hook")
  local u = users_by_email()
  t.eq(u["bwong@corp.com"], nil)
  t.eq(u["ext2@partner.example"].subject, "PARTNER\\ext2")
  local s = spaces()
  t.truthy(s["DEV_Finance (wave 1)"])
  t.eq(s["DEV_Everyone (wave 1)"], nil)
  t.eq(s["DEV_Everyone"], nil)
end)

return T
