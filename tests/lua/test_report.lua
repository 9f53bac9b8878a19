-- The migration report: counts, what needs attention, and escaping of
-- hostile names so nothing from the source can inject markup.
local t = require "testing"
local cache = require "qmig.cache"
local json = require "qmig.json"
local report = require "qmig.report"

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
