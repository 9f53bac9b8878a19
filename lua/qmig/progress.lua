-- What a run shows while it works.  On a terminal: one live line for the
-- running step (done/total, failures, rate, ETA), rewritten in place; not
-- on a terminal: a plain line now and then; with --json: one JSON object
-- per event on stdout.  Summaries and failures are always printed.
local json = require "qmig.json"
local log = require "qmig.log"
local qmig = require "qmig"

local M = {}
local Progress = {}
Progress.__index = Progress

-- M.new{tty=, json=, quiet=, verbose=, out=file}
function M.new(opts)
  local self = setmetatable({
    out = opts.out or io.stdout, tty = opts.tty, json = opts.json, quiet = opts.quiet, verbose = opts.verbose,
    last_draw = 0, line_open = false,
  }, Progress)
  return self
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

local function eta(step)
  local done = step.done
  local elapsed = qmig.monotonic() - step.started
  if done == 0 or elapsed <= 0 then return "", 0 end
  local rate = done / elapsed
  local left = (step.total - done) / rate
  return string.format("ETA %ds", math.floor(left + 0.5)), rate
end

function Progress:draw(force)
  local s = self.step
  if not s or self.quiet or self.json then return end
  local now = qmig.monotonic()
  if not self.tty and (force or now - s.started < 10) then return end  -- plain output: only for long steps
  if not force and now - self.last_draw < (self.tty and 0.1 or 10) then return end
  self.last_draw = now
  local left, rate = eta(s)
  local line = string.format("  %-28s %d/%d%s  %.1f/s  %s", s.name, s.done, s.total,
    s.failed > 0 and string.format("  %d failed", s.failed) or "", rate, left)
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
  if self.json then
    self:write(json.encode(log.redact(event), { sort_keys = true }), "\n")
    self.out:flush()
    return
  end
  if event.kind == "step_start" then
    self.step = { name = event.step, total = event.total, done = 0, failed = 0, started = qmig.monotonic() }
    self:draw(true)
  elseif event.kind == "item" then
    local o, s = event.outcome, self.step
    if s then
      s.done = s.done + 1
      if o.status == "failed" then s.failed = s.failed + 1 end
    end
    local shown = { failed = true, planned = true }
    if not self.quiet and (self.verbose or shown[o.status]) then
      local what = o.status == "planned" and ("would " .. o.action) or o.status
      self:say("    %s %s: %s%s%s", event.step, tostring(o.key), what, o.reason and (" (" .. o.reason .. ")") or "",
        o.name and (" " .. o.name) or "")
    end
    self:draw(false)
  elseif event.kind == "step_failed" then
    self:say("    %s: %s", event.step, event.reason)
  elseif event.kind == "step_done" then
    self:clear_line()
    self.step = nil
  end
end

return M
