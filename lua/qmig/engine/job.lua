-- Runs a job file: which jobs and steps (--job, --step), the rules a run
-- must pass before anything is contacted (a delete step needs --yes, a
-- saved --plan must still hold), the step loop with the `requires`
-- warnings, the run record, the report, and the exit status.  It prints
-- nothing: it tells `emit` what happens (events below) and qmig.ui.cli
-- prints them.
--
-- Events, {kind = ...}:
--   job.error   {text}                     refused or stopped (stderr)
--   job.contract {text}                    an override lacks what others read
--   job.notice  {text}                     a plain line (stdout)
--   job.start   {limiter, file, run_id, dry_run}   the run begins
--   job.job     {name}                     a job of the file begins
--   job.warning {step, requires}           step reads a step that never ran
--   job.step    {step, summary}            a step ended: counts, outcomes
--   job.plan    {planned, records, rates}  a plan ended
--   job.saved   {path, file}               a plan's --out written
--   job.end     {limiter, elapsed}         the steps are over
--   job.report  {path}                     the report written
-- and the engine's own step/item events (qmig.engine.step).
local catalogue = require "qmig.job.catalogue"
local connect = require "qmig.clients.connect"
local durable = require "qmig.store.durable"
local engine = require "qmig.engine.step"
local overlap = require "qmig.engine.overlap"
local http = require "qmig.http"
local jobfile = require "qmig.job.file"
local log = require "qmig.ui.log"
local planview = require "qmig.ui.plan"
local project = require "qmig.store.project"
local qmig = require "qmig"
local report = require "qmig.ui.report"
local retry = require "qmig.rate.retry"
local steps = require "qmig.engine.loader"
local transforms = require "qmig.job.transforms"

local M = {}

-- The process exit statuses: 0 done, 1 some items failed, 2 usage or
-- configuration error (nothing changed), 3 authentication/authorisation
-- failure or project locked, 4 a side unreachable (the run stopped; the
-- next run resumes), 130 interrupted.
local EXIT = { ok = 0, failed = 1, config = 2, auth = 3, outage = 4, interrupted = 130 }
M.EXIT = EXIT

-- The job file of opts.file, its steps resolved.
function M.load(opts)
  if not opts.file then return nil, "a job file is required" end
  return jobfile.load(opts.file, { resolve = steps.resolve })
end

local function did_you_mean(word, candidates)
  local hint = catalogue.nearest(word, candidates)
  return hint and ("; did you mean '" .. hint .. "'?") or ""
end

-- The jobs to run, in priority order then file order, narrowed by --job
-- and --step.  Returns a list of {name=, steps={module...}}.
function M.select(job, opts)
  local wanted_jobs, wanted_steps = {}, {}
  for _, n in ipairs(opts.jobs or {}) do wanted_jobs[n] = true end
  for _, n in ipairs(opts.steps or {}) do wanted_steps[n] = true end
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

-- A step that deletes objects in the target runs only with --yes (or in a
-- plan); nil, or the message refusing the run.
local function needs_yes(selection, opts)
  if opts.yes or opts.dry_run then return nil end
  for _, j in ipairs(selection) do
    for _, step in ipairs(j.steps) do
      if step.name:match("%.delete$") or step.name:match("%.delete_") then  -- nprinting.delete_reports
        return string.format("%s deletes objects in the target; run it with --yes (or see first with 'qmig-lua plan')",
          step.name)
      end
    end
  end
  return nil
end

-- A plan of the selection, quietly, with clients of its own that refuse
-- writes: its records (qmig.ui.plan), or nil, message, exit status.
local function plan_now(job, selection, proj, hooks, opts)
  local source, target, status = connect.open(job, { dry_run = true })
  if not source then return nil, target, status end
  local eng = engine.new { job = job, project = proj, source = source, target = target, transforms = hooks,
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
local function check_saved_plan(job, selection, proj, hooks, opts)
  local saved, err = planview.read(opts.plan_file)
  if not saved then return nil, err end
  local now, why, status = plan_now(job, selection, proj, hooks, opts)
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

-- The exit status of a run whose steps are over, and why it stopped.
local function exit_status(eng, totals)
  if eng.aborted and eng.aborted.outage then
    return EXIT.outage, "stopped: " .. tostring(eng.aborted)
      .. "; nothing more was tried, the next run resumes where this one stopped"
  elseif eng.aborted then
    return EXIT.auth, "stopped: " .. tostring(eng.aborted)
  elseif qmig.interrupted() then
    return EXIT.interrupted, "interrupted; the next run resumes where this one stopped"
  elseif (totals.failed or 0) > 0 then
    return EXIT.failed
  end
  return EXIT.ok
end

local RUN_STATUS = { [0] = "done", [1] = "failed", [3] = "failed", [4] = "interrupted", [130] = "interrupted" }

-- The steps of the selection, in order, each after the warnings for what it
-- reads; the totals of their counts.
local function run_steps(eng, selection, proj, opts, emit, plan)
  local totals, scheduled = {}, {}
  local function ended(step, summary)
    for k, n in pairs(summary.counts) do totals[k] = (totals[k] or 0) + n end
    if opts.dry_run then
      for _, o in ipairs(summary.outcomes) do
        plan.planned[#plan.planned + 1] = o
        plan.records[#plan.records + 1] = planview.record(step.name, step.object, o)
      end
    end
    emit { kind = "job.step", step = step, summary = summary, dry_run = opts.dry_run }
    log.info("step done", { step = step.name, counts = summary.counts })
  end
  for _, j in ipairs(selection) do
    emit { kind = "job.job", name = j.name }
    eng.job_name = j.name
    -- steps that go object by object run with the step before them (qmig.engine.overlap)
    for _, group in ipairs(overlap.groups(j.steps, opts.dry_run)) do
      if eng.aborted or qmig.interrupted() then break end
      for _, step in ipairs(group) do
        for _, req in ipairs(step.requires or {}) do
          if not scheduled[req] and not proj.cache:step_ran(req) then
            emit { kind = "job.warning", step = step.name, requires = req }
          end
        end
        scheduled[step.name] = true
      end
      eng:run_group(group, ended)
    end
  end
  return totals
end

-- M.run(opts, emit) -> exit status.  opts: the CLI's (file, jobs, steps,
-- dry_run, force, yes, plan_file, out, concurrency).
function M.run(opts, emit)
  local function refuse(text, code)
    -- Ctrl-C before the trap below is set raises "interrupted!" inside
    -- whatever request was under way (the connection checks), which would
    -- read as that side failing
    if qmig.interrupted() then text, code = "interrupted before anything was changed", EXIT.interrupted end
    emit { kind = "job.error", text = text }
    return code
  end
  local job, err = M.load(opts)
  if not job then return refuse(err, EXIT.config) end
  local selection
  selection, err = M.select(job, opts)
  if not selection then return refuse(err, EXIT.config) end
  local hooks
  hooks, err = transforms.load(job.transforms)
  if not hooks then return refuse(err, EXIT.config) end
  err = needs_yes(selection, opts)
  if err then return refuse(err, EXIT.config) end
  -- an override of a built-in step that leaves out what later steps read
  -- is said now, before anything is contacted
  for _, text in ipairs(require("qmig.engine.contract").check(job)) do
    emit { kind = "job.contract", text = text }
  end
  retry.base_delay = job.options.retry_delay
  -- both connections are proven before the project folder is even made:
  -- a run refused at the door leaves nothing behind
  -- the clients wait, before each write, until the markers the cache has
  -- committed are on disk (qmig.store.durable, set by Cache:group while a
  -- step's items run): crash safety's rule, handed to them explicitly
  local source, target, status = connect.open(job, { dry_run = opts.dry_run, barrier = durable.wait })
  if not source then return refuse(target, status) end
  local proj, perr, pcode = project.open(job.project.dir)
  if not proj then return refuse(perr, pcode == "locked" and EXIT.auth or EXIT.config) end
  require("qmig.host").trap_interrupt(true)
  http.configure { max_host_connections = job.options.max_per_host or 0 }
  if opts.plan_file and not opts.dry_run then
    local ok, why, why_status = check_saved_plan(job, selection, proj, hooks, opts)
    if not ok and why_status == EXIT.ok then
      emit { kind = "job.notice",
        text = opts.plan_file .. " is carried out already: every object in it is as it planned; nothing to do" }
      proj:close()
      return EXIT.ok
    elseif not ok then
      proj:close()
      return refuse(why, why_status or EXIT.config)
    end
  end
  local run_id = not opts.dry_run and proj.cache:start_run {
    command = opts.dry_run and "plan" or "run", job_file = job.file,
    args = { jobs = opts.jobs, steps = opts.steps, force = opts.force or false },
  } or nil
  if run_id then log.open_jsonl(proj:path("logs", "run-" .. run_id .. ".jsonl")) end
  emit { kind = "job.start", limiter = target.limiter, file = job.file, run_id = run_id, dry_run = opts.dry_run }
  local eng = engine.new {
    job = job, project = proj, source = source, target = target, transforms = hooks, run_id = run_id,
    dry_run = opts.dry_run, force = opts.force, concurrency = opts.concurrency or job.options.concurrency,
    reporter = function(event)
      if event.kind == "item" then
        local o = event.outcome
        log.info("item", { step = event.step, key = o.key, status = o.status, target_id = o.target_id,
          reason = o.reason })
      end
      emit(event)
    end,
  }
  local started = qmig.monotonic()
  local plan = { planned = {}, records = {} }  -- a plan's outcomes, for its closing lines and --out
  local totals = run_steps(eng, selection, proj, opts, emit, plan)
  if opts.dry_run then
    local rates = target.limiter and (type(job.options.rate_limits) == "table" and job.options.rate_limits
      or require("qmig.rate.limiter").DEFAULTS)
    emit { kind = "job.plan", planned = plan.planned, records = plan.records, rates = rates }
    if opts.out then
      local ok, werr = planview.write(opts.out, plan.records)
      if not ok then emit { kind = "job.error", text = werr } else
        emit { kind = "job.saved", path = opts.out, file = job.file } end
    end
  end
  emit { kind = "job.end", limiter = target.limiter, elapsed = qmig.monotonic() - started, dry_run = opts.dry_run }
  local code, why = exit_status(eng, totals)
  if why then emit { kind = "job.error", text = why } end
  if run_id then
    proj.cache:finish_run(run_id, RUN_STATUS[code], { totals = totals })
    emit { kind = "job.report", path = report.write(proj, { project = job.project.name, job_file = job.file }) }
  end
  log.close()
  proj:close()
  return code
end

return M
