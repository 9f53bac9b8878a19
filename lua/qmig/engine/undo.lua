-- `qmig-lua undo`: replays the undo journal newest first, after a summary
-- of what it will do (and a confirmation on a terminal), and forgets the
-- records that depended on what it removed.
--
-- Why forgetting matters: the engine leaves an item alone when its last
-- outcome was done and its source did not change.  Once undo deleted an
-- app, the records of the steps that worked on that app (its scripts,
-- reload, object owners, publish...) describe an object that is gone; kept,
-- they make the next run skip that work on the re-imported app.  Which
-- records depend on a removed one comes from the steps' own declarations:
-- a step that `requires` (directly or through other steps) the step that
-- recorded the removed object, with a record for the same source id (the
-- app steps are all keyed by the QRS app id).  No list of kinds here.
local errors = require "qmig.clients.errors"
local fs = require "qmig.fs"
local log = require "qmig.ui.log"
local names = require "qmig.store.names"
local qmig = require "qmig"
local steps = require "qmig.engine.loader"

local M = {}

-- closure(step_name) -> set of the step names it requires, transitively.
local function requirements(steps_path)
  local memo, mods = {}, {}
  local function module_of(name)
    if mods[name] == nil then
      local mod = steps.resolve(name, steps_path)
      mods[name] = type(mod) == "table" and mod or false
    end
    return mods[name] or nil
  end
  local function closure(name)
    if memo[name] then return memo[name] end
    local set = {}
    memo[name] = set  -- a loop in requires ends here
    local mod = module_of(name)
    for _, req in ipairs(mod and type(mod.requires) == "table" and mod.requires or {}) do
      set[req] = true
      for r in pairs(closure(req)) do set[r] = true end
    end
    return set
  end
  return closure, module_of
end
M.requirements = requirements

-- The records (other than `kind` itself) that depend on the record of
-- step `step` for source `source_id`: -> list of records.
function M.dependants(cache, closure, step, kind, source_id)
  local out = {}
  for _, rec in ipairs(cache:items(nil)) do
    if rec.source_id == tostring(source_id) and rec.kind ~= kind and rec.status ~= "deleted" and rec.step
        and closure(rec.step)[step] then
      out[#out + 1] = rec
    end
  end
  return out
end

-- Marks the records depending on a removed object deleted, so the next
-- run redoes them; what could not be undone on them is moot now that the
-- object is gone, so it is not listed again by the next undo.  -> how many.
function M.forget_dependants(cache, closure, e, run_id)
  local list = M.dependants(cache, closure, e.step, e.kind, e.source_id)
  local gone = {}
  for _, rec in ipairs(list) do
    cache:finish_item(rec.kind, rec.source_id, { status = "deleted",
      reason = "undo removed what it was done on (" .. e.kind .. " " .. tostring(e.target_id) .. ")" })
    gone[rec.kind] = true
  end
  for _, u in ipairs(cache:undo_entries {}) do
    if u.action == "irreversible" and u.source_id == tostring(e.source_id) and (gone[u.kind] or u.kind == e.kind) then
      cache:mark_undone(u.id, run_id)
    end
  end
  return #list
end

local ACTIONS = { "delete", "restore", "irreversible" }
local ACTION_TEXT = { delete = "to delete", restore = "to restore", irreversible = "cannot undo" }

-- One line per kind: counts per action, and why what cannot be undone.
function M.summary(entries)
  local by_kind, order = {}, {}
  for _, e in ipairs(entries) do
    local k = by_kind[e.kind]
    if not k then
      k = { kind = e.kind, counts = {}, reasons = {} }
      by_kind[e.kind] = k
      order[#order + 1] = e.kind
    end
    local action = e.action
    local method = (e.payload or {}).method
    if action ~= "irreversible" and method and method ~= "DELETE" then action = "restore" end
    k.counts[action] = (k.counts[action] or 0) + 1
    if action == "irreversible" then
      -- reasons name the object; the kind of reason is what a person needs here
      local why = names.generalize((e.payload or {}).reason or "irreversible")
      if not k.reasons[why] then k.reasons[#k.reasons + 1] = why; k.reasons[why] = true end
    end
  end
  table.sort(order)
  local lines = {}
  for _, kind in ipairs(order) do
    local k, parts = by_kind[kind], {}
    for _, a in ipairs(ACTIONS) do
      if k.counts[a] then parts[#parts + 1] = string.format("%d %s", k.counts[a], ACTION_TEXT[a]) end
    end
    local why = #k.reasons > 0 and (": " .. k.reasons[1] .. (#k.reasons > 1 and
      string.format(" (and %d other reasons)", #k.reasons - 1) or "")) or ""
    lines[#lines + 1] = string.format("  %-20s %s%s", kind, table.concat(parts, ", "), why)
  end
  return lines
end

-- M.command(opts, {job=, proj=, target=, say=fn, complain=fn, ask=fn}) -> exit status
-- opts: run=, dry_run=, yes=.  ask(question) -> true to go on; nil when
-- not on a terminal (then no question is asked).
function M.command(opts, env)
  local job, proj, target, say, complain = env.job, env.proj, env.target, env.say, env.complain
  local cache = proj.cache
  if opts.run then
    local ids, found = {}, false
    for _, r in ipairs(cache:runs()) do
      found = found or r.id == opts.run
      if r.command ~= "undo" then ids[#ids + 1] = tostring(r.id) end
    end
    if not found then
      complain("undo --run %d: no run %d in %s (runs: %s)", opts.run, opts.run, job.project.dir,
        #ids > 0 and table.concat(ids, ", ") or "none")
      return 2
    end
  end
  local entries = cache:undo_entries { run_id = opts.run }
  if #entries == 0 then
    say("nothing to undo%s", opts.run and (" in run " .. opts.run) or "")
    return 0
  end
  local index = names.of(cache)
  say("%s %d recorded change(s)%s:", opts.dry_run and "undo would reverse" or "undo reverses", #entries,
    opts.run and (" of run " .. opts.run) or "")
  for _, line in ipairs(M.summary(entries)) do say("%s", line) end
  if not opts.dry_run and not opts.yes and env.ask then
    if not env.ask("undo these in " .. job.target.url .. "? [y/N] ") then
      say("nothing undone")
      return 0
    end
  end
  local closure = requirements(job.steps_path)
  local run_id = not opts.dry_run and cache:start_run { command = "undo", job_file = job.file } or nil
  local undone, cannot, failed, forgotten = 0, 0, 0, 0
  for _, e in ipairs(entries) do
    local p = e.payload or {}
    local rec = cache:get(e.kind, e.source_id)
    local label = string.format("%s %s -> %s", e.kind, index.label(rec or { source_id = e.source_id, kind = e.kind }),
      tostring(e.target_id))
    if e.action == "irreversible" then
      cannot = cannot + 1
      say("  cannot undo %s: %s", label, tostring(p.reason or "irreversible"))
    elseif opts.dry_run then
      undone = undone + 1
      say("  would %s %s  (%s)", (p.method or "DELETE"), tostring(p.path), label)
    else
      local ok, uerr = pcall(function()
        -- fields kept in files rather than in the (redacted) cache, e.g. a script
        for field, file in pairs(p.body_files or {}) do
          p.body[field] = assert(fs.read_file(file))
        end
        -- a step may know better how to undo what it recorded (a task
        -- the tenant moved to another API, say): its undo(target, entry, record)
        local mod = steps.resolve(e.step, job.steps_path)
        if type(mod) == "table" and type(mod.undo) == "function" then
          local handled, why = mod.undo(target, p, rec)
          if handled == "irreversible" then error({ irreversible = tostring(why) }, 0) end
          if handled then return true end
        end
        return target:request(p.method or "DELETE", p.path, { json = p.body })
      end)
      if not ok and type(uerr) == "table" and uerr.irreversible then
        cannot = cannot + 1
        say("  cannot undo %s: %s", label, log.redact(uerr.irreversible))
      elseif ok or (errors.is(uerr) and uerr.status == 404 and (p.method or "DELETE") == "DELETE") then
        cache:mark_undone(e.id, run_id)
        if p.forget ~= false then cache:finish_item(e.kind, e.source_id, { status = "deleted" }) end
        if e.action == "delete" then forgotten = forgotten + M.forget_dependants(cache, closure, e, run_id) end
        undone = undone + 1
        say("  undone %s", label)
      else
        failed = failed + 1
        say("  failed to undo %s: %s", label, log.redact(tostring(uerr)))
      end
    end
  end
  if run_id then cache:finish_run(run_id, failed == 0 and "done" or "failed", { undone = undone, failed = failed }) end
  say("undo: %d %s, %d cannot be undone, %d failed%s", undone, opts.dry_run and "would be undone" or "undone", cannot,
    failed, forgotten > 0 and string.format("; %d dependent record(s) forgotten, the next run redoes them", forgotten)
      or "")
  return failed == 0 and 0 or 1
end

-- The question on a terminal; nil (no question) otherwise.
function M.terminal_ask()
  if not (qmig.isatty(0) and qmig.isatty(1)) then return nil end
  return function(question)
    io.stdout:write(question)
    io.stdout:flush()
    local answer = io.stdin:read("l")
    return answer ~= nil and answer:lower():match("^%s*y") ~= nil
  end
end

-- undo JOB: M.run(opts, {say=, complain=, ask=}) -> exit status.  Opens
-- the project (locked, as a run) and a client of the target, then
-- M.command.
function M.run(opts, env)
  local jobfile = require "qmig.job.file"
  local EXIT = require("qmig.clients.connect").EXIT
  local job, err = jobfile.load(opts.file or "")
  if not job then env.complain("%s", err); return EXIT.config end
  local proj, perr, pcode = require("qmig.store.project").open(job.project.dir)
  if not proj then env.complain("%s", perr); return pcode == "locked" and EXIT.auth or EXIT.config end
  local target = require("qmig.clients.cloud").new(job.target, { retries = job.options.retries })
  local code = M.command(opts, { job = job, proj = proj, target = target, say = env.say, complain = env.complain,
    ask = env.ask or M.terminal_ask() })
  proj:close()
  return code
end

return M
