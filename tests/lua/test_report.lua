-- The migration report: counts, what needs attention, and escaping of
-- hostile names so nothing from the source can inject markup.
local t = require "testing"
local cache = require "qmig.store.cache"
local json = require "qmig.json"
local report = require "qmig.ui.report"

local T = t.suite("report")

local function filled_cache()
  local c = assert(cache.open(t.tmpdir() .. "/qmig.db"))
  local run = c:start_run { command = "run", job_file = "job.yaml" }
  local function item(kind, id, status, extra)
    c:begin_item(kind, id, { step = kind == "space" and "spaces.create" or "apps.import", run_id = run })
    if status == "failed" then
      c:fail_item(kind, id, extra.reason, run)
    else
      c:finish_item(kind, id, { status = status, target_id = "t-" .. id, natural_key = extra and extra.name,
        reason = extra and extra.reason })
    end
  end
  item("space", "s1", "created", { name = "Finance" })
  item("space", "s2", "adopted", { name = "Sales" })
  item("app", "a1", "created", { name = "<script>alert(1)</script> & \"quotes\"" })
  item("app", "a2", "skipped", { name = "Personal", reason = "owner CORP\\x is not in the tenant" })
  item("app", "a3", "failed", { reason = "POST /api/v1/apps/import: HTTP 413 quota" })
  c:finish_run(run, "failed", {})
  return c
end

T.test("the data counts outcomes per step and lists what needs attention", function()
  local c = filled_cache()
  local d = report.data(c, { project = "p", job_file = "job.yaml" })
  t.eq(d.totals, { created = 2, adopted = 1, skipped = 1, failed = 1 })
  t.eq(#d.steps, 2)
  t.eq(#d.attention, 2)
  t.eq(d.runs[1].status, "failed")
  t.truthy(json.decode(json.encode(d)), "serialisable")
  c:close()
end)

T.test("failures first, skips grouped by reason, one row per app across the pipeline, names next to ids", function()
  local c = assert(cache.open(t.tmpdir() .. "/qmig.db"))
  local run = c:start_run { command = "run" }
  local function rec(kind, id, status, o)
    o = o or {}
    c:begin_item(kind, id, { step = o.step or kind, run_id = run })
    if status == "failed" then return c:fail_item(kind, id, o.reason, run) end
    c:finish_item(kind, id, { status = status, target_id = o.target, natural_key = o.natural_key, data = o.data,
      reason = o.reason })
  end
  local A1, A2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
  rec("app.export", A1, "created", { step = "apps.export", data = { name = "Sales" } })
  rec("app.export", A2, "created", { step = "apps.export", data = { name = "Budget" } })
  rec("app", A1, "created", { step = "apps.import", target = "t1", natural_key = "[qmig-lua:1:" .. A1 .. "]",
    data = { name = "Sales" } })
  rec("app", A2, "created", { step = "apps.import", target = "t2", data = { name = "Budget" } })
  rec("app.reload", A1, "created", { step = "apps.reload" })
  rec("app.reload", A2, "failed", { step = "apps.reload", reason = "reload failed: no data" })
  rec("app.published", A1, "skipped", { step = "apps.publish", reason = "app " .. A1 .. " stays personal" })
  rec("app.published", A2, "skipped", { step = "apps.publish", reason = "app " .. A2 .. " stays personal" })
  rec("app.schedule", "trigger-1", "created", { step = "apps.schedules", data = { app_id = "t1" },
    natural_key = "Reload Sales / Daily" })
  c:finish_run(run, "failed", {})
  local d = report.data(c, { project = "p" })
  t.eq(#d.failures, 1)
  t.eq({ d.failures[1].step, d.failures[1].name }, { "apps.reload", "Budget" })
  t.eq(#d.skipped, 1, "both skips share one reason once their ids are left out")
  t.eq({ d.skipped[1].count, d.skipped[1].reason }, { 2, "app <id> stays personal" })
  t.eq(#d.apps, 2)
  local budget, sales = d.apps[1], d.apps[2]
  t.eq({ budget.name, sales.name }, { "Budget", "Sales" })
  t.eq(sales.stages.reload.status, "created")
  t.eq(sales.stages.schedules.status, "created", "schedules found through the target app id")
  t.eq({ sales.done, budget.done }, { true, false })
  for _, s in ipairs(d.steps) do
    for _, i in ipairs(s.items) do t.truthy(i.name and not i.name:match("^%[qmig"), s.step .. " " .. i.source_id) end
  end
  local html = report.html(d)
  c:close()
  t.match(html, "<h2 id=\"failed\">.-<h2 id=\"skipped\">.-<h2 id=\"apps\">.-<h2>Per step</h2>")
  t.match(html, "<summary><b class=\"count\">2</b> apps%.publish: app &lt;id&gt; stays personal</summary>")
  t.truthy(html:find("<b>Sales</b> <code>" .. A1 .. "</code>", 1, true), "name next to the id")
end)

T.test("the page is self-contained and escapes every name", function()
  local c = filled_cache()
  local html = report.html(report.data(c, { project = "p<1>", job_file = "job.yaml" }))
  c:close()
  t.truthy(not html:find("<script>", 1, true), "no markup from names")
  t.truthy(html:find("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;", 1, true))
  t.truthy(not html:find("http[s]?://"), "no external asset")
  t.match(html, 'data%-outcome="created">2<')
  t.match(html, 'data%-outcome="failed">1<')
  t.match(html, "owner CORP\\x is not in the tenant")
  t.match(html, "HTTP 413 quota")
  t.eq(report.escape("a\27[31mb"), "a\239\191\189[31mb", "terminal escapes are neutralised")
end)

return T
