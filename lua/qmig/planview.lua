-- How a plan reads for a person: per object the action (create, update,
-- adopt, export, no change, skip...), its source name and where it would
-- go; per step the counts per action; at the end what the plan adds up to
-- in writes and, with rate limits on, in time.
local limiter = require "qmig.limiter"
local overlay = require "qmig.overlay"

local M = {}

-- The action an outcome of a dry run stands for.
function M.action(o)
  if o.status == "planned" then return o.action or "change" end
  return ({ adopted = "adopt", unchanged = "no change", skipped = "skip", failed = "fail",
    interrupted = "interrupted" })[o.status] or o.status
end

-- Actions in the order a summary lists them.
M.ORDER = { "create", "update", "adopt", "delete", "export", "validate", "no change", "skip", "fail", "interrupted" }

local function quoted(s) return "'" .. tostring(s) .. "'" end

-- Placeholder ids as people read them.
function M.readable(text)
  return (tostring(text):gsub("%(known after run: [^)]*%)", overlay.SHOWN))
end

-- "    spaces.create 'Finance': create as 'Finance Dept' (POST /api/v1/spaces)"
function M.line(step, o)
  local label = o.name and string.format("%s (%s)", quoted(o.name), tostring(o.key)) or tostring(o.key)
  local action = M.action(o)
  if o.status == "planned" or o.status == "adopted" then action = "would " .. action end
  local parts = { string.format("    %s %s: %s", step, label, action) }
  if o.target_name and o.target_name ~= o.name then parts[#parts + 1] = "as " .. quoted(o.target_name) end
  if o.space_name then parts[#parts + 1] = "in space " .. quoted(o.space_name) end
  for _, c in ipairs(o.changes or {}) do
    parts[#parts + 1] = string.format("%s %s -> %s", c.field, tostring(c.old), tostring(c.new))
  end
  local text = table.concat(parts, " ")
  if o.reason then text = text .. " (" .. M.readable(o.reason) .. ")" end
  return text
end

-- {action = n} of a step's outcomes
function M.counts(outcomes)
  local counts = {}
  for _, o in ipairs(outcomes) do
    local a = M.action(o)
    counts[a] = (counts[a] or 0) + 1
  end
  return counts
end

local function phrase(action, n)
  if action == "no change" or action == "skip" or action == "fail" or action == "interrupted" then
    return string.format("%d %s", n, action == "skip" and "skipped" or action == "fail" and "failed" or action)
  end
  return string.format("%d to %s", n, action)
end

function M.counts_text(counts)
  local parts, seen = {}, {}
  for _, a in ipairs(M.ORDER) do
    if counts[a] then parts[#parts + 1] = phrase(a, counts[a]); seen[a] = true end
  end
  for a, n in pairs(counts) do
    if not seen[a] then parts[#parts + 1] = phrase(a, n) end
  end
  return #parts > 0 and table.concat(parts, ", ") or "nothing to do"
end

function M.step_line(name, outcomes)
  return string.format("  %-28s %s", name, M.counts_text(M.counts(outcomes)))
end

local WRITES = { POST = true, PUT = true, PATCH = true, DELETE = true }

-- The closing lines: counts per action over every step, the writes the
-- first of each object's changes takes at least, and the time the
-- tenant's rate limits allow for them (rates: per tier per minute, nil:
-- no limits).
function M.totals(all_outcomes, rates)
  local counts, per_tier, writes = M.counts(all_outcomes), {}, 0
  for _, o in ipairs(all_outcomes) do
    local w = o.status == "planned" and o.write
    if w and WRITES[w.method] and tostring(w.path):find("^/api/") then
      writes = writes + 1
      local tier = limiter.tier(w.method, w.path)
      per_tier[tier] = (per_tier[tier] or 0) + 1
    end
  end
  local lines = { "plan: " .. M.counts_text(counts) }
  local text = string.format("at least %d write%s to the target", writes, writes == 1 and "" or "s")
  if rates and writes > 0 then
    local seconds = 0
    for tier, n in pairs(per_tier) do
      local rate = rates[tier]
      if rate and rate > 0 then seconds = math.max(seconds, n / rate * 60) end
    end
    text = text .. string.format("; at the tenant's rate limits that is at least %.0f s", seconds)
  end
  lines[#lines + 1] = text .. " (each object's first change; ids shown " .. overlay.SHOWN .. " are made by the run)"
  return lines
end

return M
