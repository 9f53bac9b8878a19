-- What a run shows while it works.  On a terminal: one live line for the
-- running step (done/total, failures, items/s, ETA, then the transfer
-- rate in and out and, with rate limits on, each Qlik Cloud tier's
-- requests per minute against its limit), rewritten in place; not on a
-- terminal: a plain line now and then; with --json: one JSON object per
-- event on stdout (step_done carries the step's bytes and tier rates).
-- Summaries and failures are always printed.
local http = require "qmig.http"
local json = require "qmig.json"
local log = require "qmig.ui.log"
local qmig = require "qmig"

local M = {}
local Progress = {}
Progress.__index = Progress

-- M.new{tty=, json=, quiet=, verbose=, out=file, limiter=qmig.rate.limiter
-- object or nil}
function M.new(opts)
  local self = setmetatable({
    out = opts.out or io.stdout, tty = opts.tty, json = opts.json, quiet = opts.quiet, verbose = opts.verbose,
    limiter = opts.limiter, plan = opts.plan, last_draw = 0, line_open = false,
    -- steps under way, by name: steps that overlap (qmig.engine.overlap) are together
    open_steps = {},
  }, Progress)
  return self
end

local UNITS = { "B", "KiB", "MiB", "GiB" }

function M.bytes_per_s(n)
  local i = 1
  while n >= 1024 and i < #UNITS do n, i = n / 1024, i + 1 end
  return string.format(i == 1 and "%.0f %s/s" or "%.1f %s/s", n, UNITS[i])
end

-- Bytes moved and the limiter's per-tier figures ({used=, per_minute=})
-- so far: taken at a step's start and again to get its rates.
local function marks(self)
  local st = http.stats()
  return { at = qmig.monotonic(), received = st.received, sent = st.sent,
    tiers = self.limiter and self.limiter:stats() or {} }
end

-- Since the step started: {received_per_s, sent_per_s, tiers = {{tier,
-- per_minute, limit}}} (tiers used during the step, by name).
function Progress:rates(s)
  s = s or self.step
  local st = marks(self)
  local secs = math.max(1e-3, st.at - s.mark.at)
  local out = { received_per_s = (st.received - s.mark.received) / secs, sent_per_s = (st.sent - s.mark.sent) / secs,
    tiers = {} }
  for tier, t in pairs(st.tiers) do
    local n = t.used - (s.mark.tiers[tier] and s.mark.tiers[tier].used or 0)
    if n > 0 then
      out.tiers[#out.tiers + 1] = { tier = tier, per_minute = n / secs * 60, limit = t.per_minute }
    end
  end
  table.sort(out.tiers, function(a, b) return a.tier < b.tier end)
  return out
end

function Progress:rates_text()
  local r = self:rates()
  local parts = {}
  if r.received_per_s >= 1 or r.sent_per_s >= 1 then
    parts[#parts + 1] = string.format("in %s out %s", M.bytes_per_s(r.received_per_s), M.bytes_per_s(r.sent_per_s))
  end
  for _, t in ipairs(r.tiers) do
    parts[#parts + 1] = string.format("%s %.0f/%.0f per min", t.tier, t.per_minute, t.limit)
  end
  return #parts > 0 and ("  " .. table.concat(parts, "  ")) or ""
end

-- One line for the end of a run that spent most of its time (wall clock)
-- waiting for the rate limits: which tier held it back, and what to do.
-- -> text or nil.
function M.rate_hint(limiter, elapsed)
  if not limiter or not elapsed or elapsed < 5 then return nil end
  local waited = limiter.wall_waited or 0
  if waited < elapsed / 2 then return nil end
  local worst, worst_t
  for tier, t in pairs(limiter:stats()) do
    if (t.waited or 0) > 0 and (not worst_t or t.waited > worst_t.waited) then worst, worst_t = tier, t end
  end
  return string.format("hint: %d%% of this run (%.0f of %.0f s) went to waiting for Qlik Cloud's rate limits%s; "
    .. "if the tenant allows more, raise options.rate_limits (the defaults: docs/job-file.md)",
    math.floor(waited / elapsed * 100 + 0.5), waited, elapsed,
    worst and string.format(", mostly %s at %.0f per min", worst, worst_t.per_minute) or "")
end

function Progress:write(...) self.out:write(...) end

function Progress:clear_line()
  if self.line_open then
    self:write("\r\27[K")
    self.line_open = false
  end
end

-- A line that stays (summary, failure): clears the live line first.
function Progress:say(fmt, ...)
  if self.json then return end
  self:clear_line()
  self:write(log.redact(string.format(fmt, ...)), "\n")
  self.out:flush()
end

-- Items per second the rate limits allow from here on: for each tier,
-- its limit over the requests an item has needed of it so far.  The
-- first window's burst (Qlik's 5 minutes, qmig.rate.limiter M.WINDOW)
-- runs faster than that, and an ETA from it alone would promise too much.  -> rate or nil (no limit in play).
function Progress:allowed_rate(s)
  if not self.limiter or s.done == 0 or not s.mark then return nil end
  local best
  for tier, t in pairs(self.limiter:stats()) do
    local used = t.used - (s.mark.tiers[tier] and s.mark.tiers[tier].used or 0)
    if used > 0 and t.per_minute > 0 then
      local items_per_s = t.per_minute / 60 / (used / s.done)
      if not best or items_per_s < best then best = items_per_s end
    end
  end
  return best
end

function M.eta(step, allowed)
  local done = step.done
  local elapsed = qmig.monotonic() - step.started
  if done == 0 or elapsed <= 0 then return "", 0 end
  local rate = done / elapsed
  local speed = allowed and math.min(rate, allowed) or rate
  local left = (step.total - done) / speed
  return string.format("ETA %ds", math.floor(left + 0.5)), rate
end

function Progress:draw(force)
  local s = self.step
  if not s or self.quiet or self.json then return end
  local now = qmig.monotonic()
  if not self.tty and (force or now - s.started < 10) then return end  -- plain output: only for long steps
  if not force and now - self.last_draw < (self.tty and 0.1 or 10) then return end
  self.last_draw = now
  local left, rate = M.eta(s, self:allowed_rate(s))
  local line = string.format("  %-28s %d/%d%s  %.1f/s  %s%s", s.name, s.done, s.total,
    s.failed > 0 and string.format("  %d failed", s.failed) or "", rate, left, self:rates_text())
  if self.tty then
    self:write("\r\27[K", line)
    self.line_open = true
  else
    self:write(line, "\n")
  end
  self.out:flush()
end

-- The engine's reporter: fn(event).
function Progress:event(event)
  if self.json and self.plan then
    -- plan --json: one record per object, nothing else (qmig.ui.plan)
    if event.kind == "item" then
      local pv = require "qmig.ui.plan"
      self:write(pv.encode(log.redact(pv.record(event.step, event.object, event.outcome))), "\n")
      self.out:flush()
    elseif event.kind == "step_failed" then
      self:write(json.encode(log.redact({ step = event.step, action = "fail", reason = event.reason }),
        { sort_keys = true }), "\n")
    end
    return
  end
  if self.json then
    if event.kind == "step_start" then self.open_steps[event.step] = { mark = marks(self) } end
    if event.kind == "step_done" and self.open_steps[event.step] then
      event.rates = self:rates(self.open_steps[event.step])
      self.open_steps[event.step] = nil
    end
    self:write(json.encode(log.redact(event), { sort_keys = true }), "\n")
    self.out:flush()
    return
  end
  -- Each step under way is counted; the live line shows the one started last.
  if event.kind == "step_start" then
    self.step = { name = event.step, total = event.total, done = 0, failed = 0, started = qmig.monotonic(),
      mark = marks(self) }
    self.open_steps[event.step] = self.step
    self:draw(true)
  elseif event.kind == "item" then
    local o, s = event.outcome, self.open_steps[event.step] or self.step
    if s then
      s.total = math.max(s.total, s.done + 1)  -- an overlapping step's total grows as it lists
      s.done = s.done + 1
      if o.status == "failed" then s.failed = s.failed + 1 end
    end
    local shown = { failed = true, planned = true }
    if self.plan then
      -- a plan is read object by object: every one has its line
      if not self.quiet then self:say("%s", require("qmig.ui.plan").line(event.step, o)) end
    elseif not self.quiet and (self.verbose or shown[o.status]) then
      local what = o.status == "planned" and ("would " .. o.action) or o.status
      local label = o.name and string.format("'%s' (%s)", o.name, tostring(o.key)) or tostring(o.key)
      self:say("    %s %s: %s%s", event.step, label, what, o.reason and (" (" .. o.reason .. ")") or "")
    end
    self:draw(false)
  elseif event.kind == "step_failed" then
    self:say("    %s: %s", event.step, event.reason)
  elseif event.kind == "step_done" then
    self:clear_line()
    self.open_steps[event.step] = nil
    if self.step and self.step.name == event.step then self.step = select(2, next(self.open_steps)) end
  end
end

return M
