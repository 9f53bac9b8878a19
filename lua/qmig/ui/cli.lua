-- Command dispatch for qmig-lua (SPEC §4.1).  Each command returns the
-- process exit status: 0 done, 1 some items failed, 2 usage or
-- configuration error (nothing changed), 3 authentication/authorisation
-- failure or project locked, 4 a side unreachable (the run stopped; the
-- next run resumes), 130 interrupted.
local catalogue = require "qmig.job.catalogue"
local connect = require "qmig.clients.connect"
local cloud = require "qmig.clients.cloud"
local engine = require "qmig.engine.step"
local http = require "qmig.http"
local jobfile = require "qmig.job.file"
local json = require "qmig.json"
local log = require "qmig.ui.log"
local planview = require "qmig.ui.plan"
local project = require "qmig.store.project"
local qmig = require "qmig"
local progress = require "qmig.ui.progress"
local report = require "qmig.ui.report"
local retry = require "qmig.rate.retry"
local steps = require "qmig.engine.loader"

local M = {}

local EXIT = { ok = 0, failed = 1, config = 2, auth = 3, outage = 4, interrupted = 130 }
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

local function load_job(opts)
  if not opts.file then return nil, "a job file is required" end
  return jobfile.load(opts.file, { resolve = steps.resolve })
end

local function did_you_mean(word, candidates)
  local hint = catalogue.nearest(word, candidates)
  return hint and ("; did you mean '" .. hint .. "'?") or ""
end

-- The jobs to run, in priority order then file order, narrowed by --job
-- and --step.  Returns a list of {name=, steps={module...}}.
local function select(job, opts)
  local wanted_jobs, wanted_steps = {}, {}
  for _, n in ipairs(opts.jobs) do wanted_jobs[n] = true end
  for _, n in ipairs(opts.steps) do wanted_steps[n] = true end
  for n in pairs(wanted_jobs) do
    local found = false
    for _, j in ipairs(job.jobs) do if j.name == n then found = true end end
    if not found then
      local names = {}
      for _, j in ipairs(job.jobs) do names[#names + 1] = j.name end
      return nil, "no job named '" .. n .. "' in " .. job.file .. did_you_mean(n, names)
    end
  end
  local list = {}
  for i, j in ipairs(job.jobs) do
    if next(wanted_jobs) == nil or wanted_jobs[j.name] then
      local mods = {}
      for _, name in ipairs(j.steps) do
        if next(wanted_steps) == nil or wanted_steps[name] then mods[#mods + 1] = job.modules[name].module end
      end
      list[#list + 1] = { name = j.name, priority = j.priority or 0, index = i, steps = steps.sort(mods) }
    end
  end
  table.sort(list, function(a, b)
    if a.priority ~= b.priority then return a.priority > b.priority end
    return a.index < b.index
  end)
  for n in pairs(wanted_steps) do
    local found = false
    for _, j in ipairs(list) do for _, m in ipairs(j.steps) do if m.name == n then found = true end end end
    if not found then
      local names = {}
      for _, j in ipairs(job.jobs) do for _, name in ipairs(j.steps) do names[#names + 1] = name end end
      local hint = did_you_mean(n, names)
      if hint == "" then hint = did_you_mean(n, catalogue.names()) end
      return nil, "step '" .. n .. "' is not in the selected jobs" .. hint
    end
  end
  return list
end

local function load_transforms(job)
  if not job.transforms then return {} end
  local chunk, err = loadfile(job.transforms, "t")
  if not chunk then return nil, err end
  local ok, hooks = pcall(chunk)
  if not ok then return nil, job.transforms .. ": " .. tostring(hooks) end
  if type(hooks) ~= "table" then return nil, job.transforms .. ": must return a table of functions" end
  local known = { space = true, user = true, app = true, script = true, data_connection = true, schedule = true }
  for k, v in pairs(hooks) do
    if not known[k] then return nil, job.transforms .. ": unknown hook '" .. tostring(k) .. "'" end
    if type(v) ~= "function" then return nil, job.transforms .. ": hook '" .. k .. "' must be a function" end
  end
  return hooks
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

-- A plan of the selection, quietly, with clients of its own that refuse
-- writes: its records (qmig.ui.plan), or nil, message, exit status.
local function plan_now(job, selection, proj, transforms, opts)
  local source, target, status = connect.open(job, { dry_run = true })
  if not source then return nil, target, status end
  local eng = engine.new { job = job, project = proj, source = source, target = target, transforms = transforms,
    dry_run = true, force = opts.force, concurrency = opts.concurrency or job.options.concurrency }
  local records = {}
  for _, j in ipairs(selection) do
    for _, step in ipairs(j.steps) do
      if eng.aborted or qmig.interrupted() then return nil, "the plan stopped: " .. tostring(eng.aborted or
        "interrupted"), EXIT.outage end
      for _, o in ipairs(eng:run_step(step).outcomes) do
        records[#records + 1] = planview.record(step.name, step.object, o)
      end
    end
  end
  return records
end

-- run --plan FILE: the saved plan must still be what would happen.
local function check_saved_plan(job, selection, proj, transforms, opts)
  local saved, err = planview.read(opts.plan_file)
  if not saved then return nil, err end
  local now, why, status = plan_now(job, selection, proj, transforms, opts)
  if not now then return nil, why, status end
  local diff = planview.compare(saved, now)
  if #diff == 0 then return true end
  if planview.carried_out(saved, now) then return nil, "done", EXIT.ok end
  local shown = {}
  for i = 1, math.min(#diff, 20) do shown[i] = "  " .. diff[i] end
  if #diff > 20 then shown[#shown + 1] = string.format("  ... and %d more", #diff - 20) end
  return nil, string.format("%s no longer holds: the source or the target changed since it was made (%d object%s); "
    .. "nothing was run. Make a new plan with 'qmig-lua plan %s --out FILE'.\n%s", opts.plan_file, #diff,
    #diff == 1 and "" or "s", job.file, table.concat(shown, "\n"))
end

function M.run(opts)
  local job, err = load_job(opts)
  if not job then complain("%s", err); return EXIT.config end
  local selection
  selection, err = select(job, opts)
  if not selection then complain("%s", err); return EXIT.config end
  local transforms
  transforms, err = load_transforms(job)
  if not transforms then complain("%s", err); return EXIT.config end
  if not opts.yes and not opts.dry_run then
    for _, j in ipairs(selection) do
      for _, step in ipairs(j.steps) do
        if step.name:match("%.delete$") or step.name:match("%.delete_") then  -- nprinting.delete_reports
          complain("%s deletes objects in the target; run it with --yes (or see first with 'qmig-lua plan')", step.name)
          return EXIT.config
        end
      end
    end
  end
  retry.base_delay = job.options.retry_delay
  -- both connections are proven before the project folder is even made:
  -- a run refused at the door leaves nothing behind
  local source, target, status = connect.open(job, opts)
  if not source then complain("%s", target); return status end
  local proj, perr, pcode = project.open(job.project.dir)
  if not proj then complain("%s", perr); return pcode == "locked" and EXIT.auth or EXIT.config end
  qmig.trap_interrupt(true)
  http.configure { max_host_connections = job.options.max_per_host or 0 }
  if opts.plan_file and not opts.dry_run then
    local ok, why, why_status = check_saved_plan(job, selection, proj, transforms, opts)
    if not ok and why_status == EXIT.ok then
      say("%s is carried out already: every object in it is as it planned; nothing to do", opts.plan_file)
      proj:close()
      return EXIT.ok
    elseif not ok then
      complain("%s", why)
      proj:close()
      return why_status or EXIT.config
    end
  end
  local run_id = not opts.dry_run and proj.cache:start_run {
    command = opts.dry_run and "plan" or "run", job_file = job.file,
    args = { jobs = opts.jobs, steps = opts.steps, force = opts.force or false },
  } or nil
  if run_id then log.open_jsonl(proj:path("logs", "run-" .. run_id .. ".jsonl")) end
  local show = progress.new { tty = qmig.isatty(1), json = opts.json, quiet = opts.quiet, verbose = opts.verbose,
    limiter = target.limiter, plan = opts.dry_run }
  local planned, records = {}, {}  -- a plan's outcomes, for its closing lines and --out
  local eng = engine.new {
    job = job, project = proj, source = source, target = target, transforms = transforms, run_id = run_id,
    dry_run = opts.dry_run, force = opts.force, concurrency = opts.concurrency or job.options.concurrency,
    reporter = function(event)
      if event.kind == "item" then
        local o = event.outcome
        log.info("item", { step = event.step, key = o.key, status = o.status, target_id = o.target_id,
          reason = o.reason })
      end
      show:event(event)
    end,
  }
  local totals, started = {}, qmig.monotonic()
  show:say("%s %s%s", opts.dry_run and "plan" or "run", job.file, run_id and (" (run " .. run_id .. ")") or "")
  local scheduled = {}
  for _, j in ipairs(selection) do
    show:say("job %s", j.name)
    eng.job_name = j.name
    for _, step in ipairs(j.steps) do
      if eng.aborted or qmig.interrupted() then break end
      for _, req in ipairs(step.requires or {}) do
        if not scheduled[req] and not proj.cache:step_ran(req) then
          show:say("  warning: %s reads the results of %s, which has never run in this project", step.name, req)
        end
      end
      scheduled[step.name] = true
      local summary = eng:run_step(step)
      for k, n in pairs(summary.counts) do totals[k] = (totals[k] or 0) + n end
      if opts.dry_run then
        show:say("%s", planview.step_line(step.name, summary.outcomes))
        for _, o in ipairs(summary.outcomes) do
          planned[#planned + 1] = o
          records[#records + 1] = planview.record(step.name, step.object, o)
        end
      else
        show:say("%s", summary_line(step.name, summary.counts))
      end
      log.info("step done", { step = step.name, counts = summary.counts })
    end
  end
  if opts.dry_run then
    local rates = target.limiter and (type(job.options.rate_limits) == "table" and job.options.rate_limits
      or require("qmig.rate.limiter").DEFAULTS)
    for _, line in ipairs(planview.totals(planned, rates)) do show:say("%s", line) end
    if opts.out then
      local ok, werr = planview.write(opts.out, records)
      if not ok then complain("%s", werr) else show:say("plan saved: %s (run it with 'qmig-lua run %s --plan %s')",
        opts.out, job.file, opts.out) end
    end
  end
  local hint = not opts.dry_run and progress.rate_hint(target.limiter, qmig.monotonic() - started)
  if hint then show:say("%s", hint) end
  local code = EXIT.ok
  if eng.aborted and eng.aborted.outage then
    complain("stopped: %s; nothing more was tried, the next run resumes where this one stopped",
      tostring(eng.aborted))
    code = EXIT.outage
  elseif eng.aborted then
    complain("stopped: %s", tostring(eng.aborted))
    code = EXIT.auth
  elseif qmig.interrupted() then
    complain("interrupted; the next run resumes where this one stopped")
    code = EXIT.interrupted
  elseif (totals.failed or 0) > 0 then
    code = EXIT.failed
  end
  if run_id then
    local final = ({ [0] = "done", [1] = "failed", [3] = "failed", [4] = "interrupted", [130] = "interrupted" })[code]
    proj.cache:finish_run(run_id, final, { totals = totals })
    show:say("report: %s", report.write(proj, { project = job.project.name, job_file = job.file }))
  end
  log.close()
  proj:close()
  return code
end

function M.plan(opts)
  opts.dry_run = true
  return M.run(opts)
end

function M.check(opts)
  local job, err = load_job(opts)
  if not job then complain("%s", err); return EXIT.config end
  local transforms, terr = load_transforms(job)
  if not transforms then complain("%s", terr); return EXIT.config end
  local source, target, status = connect.open(job, { dry_run = true })
  if not source then complain("%s", target); return status end
  local about = source:about()
  say("job file %s: valid", job.file)
  say("source %s: QRS %s", job.source.url, tostring(about.buildVersion))
  local me = target:get("users/me")
  say("target %s: authenticated as %s with %s", job.target.url, tostring(me and (me.email or me.name or me.id)),
    target:auth_description())
  local failed = false
  for _, f in ipairs(require("qmig.engine.preflight").run(job, source, target, transforms)) do
    say("%-4s %s", f.level, f.text)
    failed = failed or f.level == "fail"
  end
  return failed and EXIT.failed or EXIT.ok
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
  local job, err = jobfile.load(opts.file or "")
  if not job then complain("%s", err); return EXIT.config end
  local proj, perr, pcode = project.open(job.project.dir)
  if not proj then complain("%s", perr); return pcode == "locked" and EXIT.auth or EXIT.config end
  local target = cloud.new(job.target, { retries = job.options.retries })
  local undo = require "qmig.engine.undo"
  local code = undo.command(opts, { job = job, proj = proj, target = target, say = say, complain = complain,
    ask = undo.terminal_ask() })
  proj:close()
  return code
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
