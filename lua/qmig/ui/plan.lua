-- How a plan reads for a person: per object the action (create, update,
-- adopt, export, no change, skip...), its source name and where it would
-- go; per step the counts per action; at the end what the plan adds up to
-- in writes and, with rate limits on, in time.
local fs = require "qmig.fs"
local json = require "qmig.json"
local limiter = require "qmig.rate.limiter"
local overlay = require "qmig.store.overlay"

local M = {}

-- The action an outcome of a dry run stands for.
function M.action(o)
  if o.status == "planned" then return o.action or "change" end
  return ({ adopted = "adopt", unchanged = "no change", skipped = "skip", failed = "fail",
    interrupted = "interrupted" })[o.status] or o.status
end

-- Actions in the order a summary lists them.
M.ORDER = { "create", "recreate", "update", "adopt", "delete", "export", "validate", "no change", "skip", "fail",
  "interrupted" }

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
  -- where a new object goes (an update's object stays where it is)
  if o.space_name and (o.action == "create" or o.action == "recreate") then
    parts[#parts + 1] = "in space " .. quoted(o.space_name)
  end
  for _, c in ipairs(o.changes or {}) do
    parts[#parts + 1] = string.format("%s %s -> %s", c.field, quoted(c.old), quoted(c.new))
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
-- no limits).  Qlik counts a tier over a window (qmig.rate.limiter
-- M.WINDOW, 5 minutes): a window's allowance goes at once, each further
-- one a window later; writes / rate would claim minutes for what one
-- window takes at once.
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
      if rate and rate > 0 then
        local allowance = rate * limiter.WINDOW / 60
        seconds = math.max(seconds, (math.ceil(n / allowance) - 1) * limiter.WINDOW)
      end
    end
    text = text .. string.format("; at the tenant's rate limits that is at least %.0f s", seconds)
  end
  lines[#lines + 1] = text .. " (each object's first change; ids shown " .. overlay.SHOWN .. " are made by the run)"
  return lines
end

-- {====== plan files (plan --json, plan --out FILE, run --plan FILE)

-- One object of a plan as a JSON-able record: {step, kind, key, name,
-- action, target = {id, name, space}, changes = [{field, old, new}],
-- reason}.  A placeholder id is written as null: the run makes it.
function M.record(step, kind, o)
  local target
  if o.target_id or o.target_name or o.space_name then
    target = { id = not overlay.is_placeholder(o.target_id) and o.target_id or nil, name = o.target_name,
      space = o.space_name }
  end
  local changes
  for _, c in ipairs(o.changes or {}) do
    changes = changes or json.array()
    changes[#changes + 1] = { field = c.field, old = c.old, new = c.new }
  end
  return { step = step, kind = kind, key = o.key, name = o.name, action = M.action(o), target = target,
    changes = changes, reason = o.reason and M.readable(o.reason) or nil }
end

function M.encode(rec)
  return json.encode(rec, { sort_keys = true })
end

-- Writes the records, one JSON object per line, mode 0600 (names of
-- objects are the customer's business).  -> true | nil, message
function M.write(path, records)
  local lines = {}
  for _, r in ipairs(records) do lines[#lines + 1] = M.encode(r) end
  local ok, err = fs.write_file(path, table.concat(lines, "\n") .. (#lines > 0 and "\n" or ""),
    { mode = 384, atomic = true })
  if not ok then return nil, "cannot write " .. path .. ": " .. tostring(err) end
  return true
end

-- -> records | nil, "FILE:LINE: why"
function M.read(path)
  local text, err = fs.read_file(path)
  -- (fs.read_file's message starts with the path: src/lfs.c, luaL_fileresult)
  if not text then return nil, tostring(err) end
  local out, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find("%S") then
      local rec = json.decode(line)
      if type(rec) ~= "table" or type(rec.step) ~= "string" or rec.key == nil or type(rec.action) ~= "string" then
        return nil, string.format("%s:%d: not a plan record (plan --out writes them: step, key, action)", path, n)
      end
      out[#out + 1] = rec
    end
  end
  if #out == 0 then return nil, path .. ": no plan record in it" end
  return out
end

local function changes_text(r)
  local parts = {}
  for _, c in ipairs(type(r.changes) == "table" and r.changes or {}) do
    parts[#parts + 1] = string.format("%s %s -> %s", tostring(c.field), quoted(c.old), quoted(c.new))
  end
  return #parts > 0 and (" " .. table.concat(parts, ", ")) or ""
end

-- What differs between a saved plan and the plan of now: one line per
-- object whose action changed, appeared or went away.
function M.compare(saved, now)
  local function index(records)
    local by = {}
    for _, r in ipairs(records) do by[r.step .. "\0" .. tostring(r.key)] = r end
    return by
  end
  -- what would now be done differently first, then what is done already
  local was, is, out, done = index(saved), index(now), {}, {}
  local function label(r) return string.format("%s '%s' (%s)", r.step, tostring(r.name or r.key), tostring(r.key)) end
  for _, r in ipairs(saved) do
    local n = is[r.step .. "\0" .. tostring(r.key)]
    if not n then
      out[#out + 1] = label(r) .. ": planned to " .. r.action .. ", now not in the plan"
    elseif n.action ~= r.action or changes_text(n) ~= changes_text(r) then
      local list = n.action == "no change" and done or out
      list[#list + 1] = label(r) .. ": planned to " .. r.action .. changes_text(r) .. ", now " .. n.action
        .. changes_text(n) .. (n.reason and (" (" .. n.reason .. ")") or "")
    end
  end
  for _, r in ipairs(now) do
    if not was[r.step .. "\0" .. tostring(r.key)] then
      out[#out + 1] = label(r) .. ": not in the saved plan, now " .. r.action
    end
  end
  for _, line in ipairs(done) do out[#out + 1] = line end
  return out
end
-- True when every object of the saved plan that was to change now shows
-- no change (or is skipped as then) and nothing new is to change: the
-- plan was run.
function M.carried_out(saved, now)
  local is = {}
  for _, r in ipairs(now) do is[r.step .. "\0" .. tostring(r.key)] = r end
  for _, r in ipairs(saved) do
    local n = is[r.step .. "\0" .. tostring(r.key)]
    -- a validation writes nothing: once run, one that found a difference
    -- is read again by each plan (skip, with what it finds), not re-planned
    local read_again = r.action == "validate" and n and n.action == "skip"
    if not n or (n.action ~= "no change" and n.action ~= r.action and not read_again) then return false end
  end
  for _, r in ipairs(now) do
    if r.action ~= "no change" and r.action ~= "skip" then return false end
  end
  return true
end
-- }======

return M
