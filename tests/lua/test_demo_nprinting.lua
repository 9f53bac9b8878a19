-- The demo's NPrinting reports (examples/demo/nprinting.yaml, after
-- examples/demo/job.yaml in the same project, as examples/demo/run.sh runs
-- them): each report template goes on the app users open, its publish
-- task becomes a sharing task, and its filters become report filters.  A
-- Qlik entity report is skipped and said why.  The re-run writes nothing;
-- undo of that run removes what it made.
local t = require "testing"
local cli = require "cli"
local fs = require "qmig.fs"
local json = require "qmig.json"
local simlib = require "sim"
local demo_outcome = require "demo_outcome"

local T = t.suite("demo_nprinting")
local sim, env, dir

T.after_all(function() if sim then sim:stop() end end)

local function setup()
  if sim then return end
  sim = simlib.start { site = "examples/demo/site.json" }
  dir = fs.realpath(t.tmpdir())
  t.write(dir .. "/secrets.yaml", "Finance DB: {username: u, password: p}\n'Sales DB (CORP_jdoe)': {username: s, "
    .. "password: q}\n")
  fs.chmod(dir .. "/secrets.yaml", 384)
  env = { QMIG_DEMO_QRS_URL = sim.info.qrs_url, QMIG_DEMO_CLOUD_URL = sim.info.cloud_url,
    QMIG_DEMO_API_KEY = sim.info.api_key, QMIG_DEMO_CERTS = fs.dirname(sim.info.certs.ca),
    QMIG_DEMO_PROJECT = dir .. "/project", QMIG_DEMO_DIR = dir, QMIG_DEMO_NP_URL = sim.info.nprinting_url,
    QMIG_DEMO_NP_JWT = sim.info.nprinting_jwt, QMIG_DEMO_NP_EXPORT = sim.info.nprinting_export }
  demo_outcome.ran(cli.run({ "run", "examples/demo/job.yaml" }, { env = env }))
end

T.test("the demo's NPrinting reports, schedules and filters migrate onto the apps users open", function()
  setup()
  local code, out, err = cli.run({ "run", "examples/demo/nprinting.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.match(out, "nprinting%.reports%s+4 created, 1 skipped")
  t.match(out, "nprinting%.filters%s+3 created")
  local st = sim:state().cloud
  local by_id = {}
  for _, a in ipairs(st.apps) do by_id[a.id] = a end
  local templates = {}
  for _, tp in ipairs(st.report_templates) do
    local app = by_id[tp.sourceAppId]
    templates[tp.name] = app.name .. (app.published and " (published)" or "")
  end
  t.eq(templates, { ["Weekly Sales"] = "Sales Overview (published)", ["Budget Pack"] = "Budget vs Actual (published)" })
  local tasks = {}
  for _, k in ipairs(st.sharing_tasks) do
    tasks[k.name] = k.scheduleOptions.timezone .. " " .. k.scheduleOptions.recurrence[1] .. " to "
      .. #k.recipients.userIds
  end
  t.eq(tasks, {
    ["Monday sales mail"] = "Europe/Berlin RRULE:FREQ=WEEKLY;INTERVAL=1;BYDAY=MO;BYHOUR=7;BYMINUTE=0 to 2",
    ["Month end"] = "America/New_York RRULE:FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=1;BYHOUR=6;BYMINUTE=30 to 1",
  })
  local filters = {}
  for _, f in ipairs(st.report_filters) do filters[#filters + 1] = by_id[f.appId].name .. ": " .. f.name end
  table.sort(filters)
  t.eq(filters, { "Budget vs Actual: Opex", "Sales Overview: Key accounts", "Sales Overview: Large orders" })
  -- per report, what was migrated and what was not, and why
  local report = json.decode(t.read(dir .. "/project/reports/nprinting.json")).reports
  local why = {}
  for _, r in ipairs(report) do why[r.title] = r.template.status .. ": " .. tostring(r.template.reason) end
  t.match(why["Sales Snapshot"], "^skipped: a qlikentity report")
  t.match(why["Weekly Sales"], "^created: NPrinting levels %(Customer%)")

  sim:reset_counters()
  code, out, err = cli.run({ "run", "examples/demo/nprinting.yaml" }, { env = env })
  t.eq(code, 0, out .. err)
  t.eq(sim:counts().total_writes, 0, json.encode(sim:counts().writes))

  -- the reporting run was run 2: undo it alone
  code, out, err = cli.run({ "undo", "examples/demo/nprinting.yaml", "--run", "2", "--yes" }, { env = env })
  t.eq(code, 0, out .. err)
  st = sim:state().cloud
  t.eq({ #st.report_templates, #st.sharing_tasks, #st.report_filters }, { 0, 0, 0 })
  t.eq(#st.apps > 0, true)   -- the apps the first job migrated stay
end)

return T
