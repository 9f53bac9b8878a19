-- qmig-lua's commands (the usage text below; docs/qmig-lua.1): parses the
-- arguments and prints.  What a command does is the engine's: a run or plan
-- is qmig.engine.job, undo qmig.engine.undo, check qmig.engine.preflight.
-- Each command returns the process exit status (qmig.engine.job.EXIT).
local catalogue = require "qmig.job.catalogue"
local jobfile = require "qmig.job.file"
local json = require "qmig.json"
local log = require "qmig.ui.log"
local planview = require "qmig.ui.plan"
local project = require "qmig.store.project"
local qmig = require "qmig"
local progress = require "qmig.ui.progress"
local report = require "qmig.ui.report"
local runner = require "qmig.engine.job"
local steps = require "qmig.engine.loader"

local M = {}

local EXIT = runner.EXIT
M.EXIT = EXIT

local USAGE = [[
usage: qmig-lua COMMAND JOB [options]

commands:
  run JOB      run the job file's jobs (--job NAME, --step NAME, --dry-run, --force,
               --concurrency N, --plan FILE: only if that saved plan still holds)
  plan JOB     dry run: what each step would do per object, without writing (--json,
               --out FILE saves it for run --plan)
  status JOB   per step counts from the cache; objects with --objects, --failed (--json)
  undo JOB     reverse what runs created or changed, newest first (--run N, --dry-run, --yes)
  steps [JOB]  the step catalogue and where each module is loaded from
  check JOB    validate the job file and test both connections
  report JOB   write the migration report (reports/report.html and report.json)
  help         this text

qmig-lua SCRIPT.lua [ARGS]   run a Lua script with the qmig library (-e CODE, -i, -v)]]

local function say(...) io.stdout:write(string.format(...), "\n") end
local function complain(...) io.stderr:write("qmig-lua: ", log.redact(string.format(...)), "\n") end

-- Options shared by the commands.  Returns opts or nil, message.
local function parse(args)
  local opts = { jobs = {}, steps = {} }
  local flags = { ["--dry-run"] = "dry_run", ["--force"] = "force", ["--failed"] = "failed", ["--json"] = "json",
    ["--yes"] = "yes", ["--quiet"] = "quiet", ["--verbose"] = "verbose", ["--objects"] = "objects" }
  local i = 1
  while i <= #args do
    local a = args[i]
    if flags[a] then
      opts[flags[a]] = true
    elseif a == "--job" or a == "--step" or a == "--run" or a == "--concurrency" or a == "--out"
        or a == "--plan" then
      local v = args[i + 1]
      if not v then return nil, a .. " needs a value" end
      i = i + 1
      if a == "--job" then opts.jobs[#opts.jobs + 1] = v
      elseif a == "--step" then opts.steps[#opts.steps + 1] = v
      elseif a == "--out" then opts.out = v
      elseif a == "--plan" then opts.plan_file = v
      else
        local n = math.tointeger(tonumber(v))
        if not n or n < 1 then return nil, a .. " needs a positive integer, got '" .. v .. "'" end
        opts[a:sub(3)] = n
      end
    elseif a:sub(1, 1) == "-" then
      return nil, "unknown option '" .. a .. "'"
    elseif not opts.file then
      opts.file = a
    else
      return nil, "unexpected argument '" .. a .. "'"
    end
    i = i + 1
  end
  return opts
end

local function summary_line(name, counts, more)
  local parts = {}
  local statuses = { "created", "updated", "adopted", "unchanged", "deleted", "skipped", "planned", "failed",
    "interrupted" }
  for _, s in ipairs(more or {}) do statuses[#statuses + 1] = s end
  for _, s in ipairs(statuses) do
    if counts[s] then parts[#parts + 1] = string.format("%d %s", counts[s], s) end
  end
  return string.format("  %-28s %s", name, #parts > 0 and table.concat(parts, ", ") or "nothing to do")
end

-- run and plan: qmig.engine.job runs them; this prints what it tells.
function M.run(opts)
  local show
  local function print_event(e)
    local kind = e.kind
    if kind == "job.error" then complain("%s", e.text)
    elseif kind == "job.contract" then complain("warning: %s", e.text)
    elseif kind == "job.notice" then say("%s", e.text)
    elseif kind == "job.start" then
      show = progress.new { tty = qmig.isatty(1), json = opts.json, quiet = opts.quiet, verbose = opts.verbose,
        limiter = e.limiter, plan = e.dry_run }
      local shown = show
      log.before_stderr = function()
        shown:clear_line()
        shown.out:flush()
      end
      show:say("%s %s%s", e.dry_run and "plan" or "run", e.file, e.run_id and (" (run " .. e.run_id .. ")") or "")
    elseif kind == "job.job" then show:say("job %s", e.name)
    elseif kind == "job.warning" then
      show:say("  warning: %s reads the results of %s, which has never run in this project", e.step, e.requires)
    elseif kind == "job.step" then
      if e.dry_run then show:say("%s", planview.step_line(e.step.name, e.summary.outcomes))
      else show:say("%s", summary_line(e.step.name, e.summary.counts)) end
    elseif kind == "job.plan" then
      for _, line in ipairs(planview.totals(e.planned, e.rates)) do show:say("%s", line) end
    elseif kind == "job.saved" then
      show:say("plan saved: %s (run it with 'qmig-lua run %s --plan %s')", e.path, e.file, e.path)
    elseif kind == "job.end" then
      local hint = not e.dry_run and progress.rate_hint(e.limiter, e.elapsed)
      if hint then show:say("%s", hint) end
    elseif kind == "job.report" then show:say("report: %s", e.path)
    else show:event(e) end
  end
  return runner.run(opts, print_event)
end

function M.plan(opts)
  opts.dry_run = true
  return M.run(opts)
end

function M.check(opts)
  return require("qmig.engine.preflight").check(opts, say, complain)
end

function M.steps(opts)
  local steps_path = {}
  if opts.file then
    local job, err = jobfile.load(opts.file)
    if not job then complain("%s", err); return EXIT.config end
    steps_path = job.steps_path or {}
  end
  for _, entry in ipairs(catalogue.list) do
    local mod, path = steps.resolve(entry.name, steps_path)
    local where = mod and path or ("(" .. path .. ")")
    say("%4d  %-28s %-40s %s", entry.order, entry.name, entry.title, where)
  end
  for _, name in ipairs(steps.discover(steps_path)) do
    local mod, path = steps.resolve(name, steps_path)
    if mod then
      say("%4d  %-28s %-40s %s", mod.order, name, mod.title, path)
    else
      say("   ?  %-28s %-40s (%s)", name, "", path)
    end
  end
  return EXIT.ok
end

-- Status: per step counts by default (what a person reads first); the
-- objects, with names, with --objects (all) or --failed (failed and
-- unfinished); --json: every record, with its name, for scripts.
function M.status(opts)
  local job, err = jobfile.load(opts.file or "")
  if not job then complain("%s", err); return EXIT.config end
  local proj, perr = project.open(job.project.dir, { lock = false })
  if not proj then complain("%s", perr); return EXIT.config end
  local all = proj.cache:items(nil)
  local index = require("qmig.store.names").index(all)
  local rows = {}
  for _, item in ipairs(all) do
    if not opts.failed or item.status == "failed" or item.status == "in_progress" then
      item.name = index.name(item)
      rows[#rows + 1] = item
    end
  end
  table.sort(rows, function(a, b)
    if a.step ~= b.step then return tostring(a.step) < tostring(b.step) end
    return tostring(a.source_id) < tostring(b.source_id)
  end)
  if opts.json then
    say("%s", json.encode(json.array(rows), { sort_keys = true }))
  elseif opts.objects or opts.failed then
    for _, r in ipairs(rows) do
      local note = r.last_error or r.reason
      say("%-24s %-16s %-11s %s%s%s", tostring(r.step), tostring(r.kind), r.status, index.label(r),
        r.target_id and (" -> " .. r.target_id) or "", note and ("  " .. note) or "")
    end
    if #rows == 0 then say("%s", opts.failed and "no failed or unfinished object" or "no object recorded yet") end
  else
    local counts, order = {}, {}
    for _, r in ipairs(rows) do
      local name = tostring(r.step or r.kind)
      if not counts[name] then counts[name] = {}; order[#order + 1] = name end
      counts[name][r.status] = (counts[name][r.status] or 0) + 1
    end
    for _, name in ipairs(order) do say("%s", summary_line(name, counts[name], { "in_progress" })) end
    if #order == 0 then say("no object recorded yet in %s", job.project.dir) end
    say("objects with names: --objects (all), --failed (failed and unfinished); every record: --json")
  end
  proj:close()
  return EXIT.ok
end

function M.report(opts)
  local job, err = jobfile.load(opts.file or "")
  if not job then complain("%s", err); return EXIT.config end
  local proj, perr = project.open(job.project.dir, { lock = false })
  if not proj then complain("%s", perr); return EXIT.config end
  local path = report.write(proj, { project = job.project.name, job_file = job.file })
  proj:close()
  say("report: %s", path)
  say("data:   %s", path:gsub("%.html$", ".json"))
  return EXIT.ok
end

function M.undo(opts)
  return require("qmig.engine.undo").run(opts, { say = say, complain = complain })
end

local HELP = {
  run = "qmig-lua run JOB [--job NAME]... [--step NAME]... [--dry-run] [--force] [--concurrency N]\n"
    .. "                   [--plan FILE] [--quiet | --verbose | --json]\n"
    .. "Runs the job file's jobs (all, in priority then file order, or those named by --job), each job's steps in\n"
    .. "the global step order.  Objects done before are left alone unless their source changed or --force.\n"
    .. "--plan FILE (saved by 'plan --out'): plans again first and runs only when every object would do what\n"
    .. "the saved plan says; otherwise lists what changed and exits 2 with nothing done.\n"
    .. "Towards Qlik Cloud, requests per minute per rate tier unless options.rate_limits says otherwise: tier1\n"
    .. string.format("%d (reads), tier2 %d (writes), special %d (reloads); the progress line shows each tier's rate\n",
      require("qmig.rate.limiter").DEFAULTS.tier1, require("qmig.rate.limiter").DEFAULTS.tier2,
      require("qmig.rate.limiter").DEFAULTS.special)
    .. "against its limit, and a run that mostly waited on them ends with a hint.\n"
    .. "Exit: 0 done, 1 some items failed, 2 bad job file, 3 authentication or certificate refused, or project in\n"
    .. "use, 4 a side unreachable (5 requests in a row without an answer: the run stops; the next run resumes),\n"
    .. "130 Ctrl-C.",
  plan = "qmig-lua plan JOB [--job NAME]... [--step NAME]... [--json] [--out FILE]\n"
    .. "Dry run: what each step would do per object (create, update, adopt, export, no change, skip with the\n"
    .. "reason; for updates the fields old -> new), each step seeing what the steps before it would make (ids\n"
    .. "shown as (known after run)); then the totals, the writes and the time the rate limits allow.  Writes\n"
    .. "nothing, to the tenant or the project's cache.  --json: one JSON object per object (step, kind, key,\n"
    .. "name, action, target, changes, reason); --out FILE saves them for 'run JOB --plan FILE', which\n"
    .. "refuses to run (exit 2) when any object would now do something else.",
  status = "qmig-lua status JOB [--objects | --failed] [--json]\n"
    .. "Per step counts from the project's cache; --objects lists every object (name, id, outcome, target id),\n"
    .. "--failed only the failed and unfinished ones; --json every record, with its name.",
  undo = "qmig-lua undo JOB [--run N] [--dry-run] [--yes]\n"
    .. "Reverses what runs created or changed, newest first (only run N with --run); lists what cannot be undone.\n"
    .. "First a summary per kind (to delete, to restore, cannot undo and why); on a terminal it then asks unless\n"
    .. "--yes.  Records of steps that worked on a removed object are forgotten, so the next run redoes them.",
  steps = "qmig-lua steps [JOB]\nThe step catalogue: order, name, title, and the file each step is loaded from.",
  check = "qmig-lua check JOB\nValidates the job file, resolves its steps and tests both connections.",
  report = "qmig-lua report JOB\nWrites reports/report.html and reports/report.json into the project folder.",
}

local commands = { run = M.run, plan = M.plan, check = M.check, steps = M.steps, status = M.status, undo = M.undo,
  report = M.report }

-- cli.main(argv...) -> exit status
function M.main(cmd, ...)
  if cmd == "help" or cmd == "--help" or cmd == nil then say("%s", USAGE); return EXIT.ok end
  if cmd == "--version" then say("qmig-lua %s", qmig.version); return EXIT.ok end
  local fn = commands[cmd]
  if not fn then complain("unknown command '%s'\n%s", cmd, USAGE); return EXIT.config end
  for _, a in ipairs { ... } do
    if a == "--help" or a == "-h" then say("%s", HELP[cmd]); return EXIT.ok end
  end
  local opts, err = parse({ ... })
  if not opts then complain("%s: %s", cmd, err); return EXIT.config end
  return fn(opts)
end

return M
