-- The dry-run overlay: a cache that plan (and run --dry-run) reads and
-- writes like the project's cache, where every write stays in memory.
-- What a step would create is recorded with a placeholder target id
-- ("known after run"), so later steps plan against it as they would
-- against the real record, and the plan sees past its first step.
-- Nothing reaches qmig.db: the real cache is only read.
local M = {}

local PREFIX = "(known after run"
M.PREFIX = PREFIX

-- The target id of an object a dry run would create.  Unique per record
-- (find_by_target, lookups by id), and recognisable wherever it travels:
-- in a path it makes the API client answer "not found" without asking,
-- since the object does not exist yet (qmig.clients.cloud).
function M.placeholder(kind, source_id)
  return PREFIX .. ": " .. tostring(kind) .. " " .. tostring(source_id) .. ")"
end

function M.is_placeholder(id)
  return type(id) == "string" and id:sub(1, #PREFIX) == PREFIX
end

-- how a placeholder reads for people
M.SHOWN = "(known after run)"

local function copy(rec)
  if rec == nil then return nil end
  local out = {}
  for k, v in pairs(rec) do out[k] = v end
  return out
end

local Overlay = {}

-- Reads the overlay does not change (the run history, the undo journal).
local READS = { runs = true, undo_entries = true, meta_get = true, in_progress = true }

Overlay.__index = function(self, name)
  local own = Overlay[name]
  if own ~= nil then return own end
  if READS[name] then
    return function(_, ...)
      local real = rawget(self, "real")
      return real[name](real, ...)
    end
  end
  -- anything else would write: refused loudly rather than reaching the file
  return function() error("dry run: the cache's " .. tostring(name) .. " is not available in a plan", 2) end
end

function M.new(real)
  return setmetatable({ real = real, records = {}, dropped = {}, log = {}, ran = {}, made = {} }, Overlay)
end

local function slot(self, kind, source_id)
  local by_kind = self.records[kind]
  if not by_kind then by_kind = {}; self.records[kind] = by_kind end
  return by_kind, tostring(source_id)
end

-- The record as the overlay sees it: its own, else the file's (a copy,
-- so a step changing it changes nothing).
function Overlay:get(kind, source_id)
  local by_kind, key = slot(self, kind, source_id)
  if by_kind[key] then return copy(by_kind[key]) end
  if self.dropped[kind .. "\0" .. key] then return nil end
  return self.real and self.real:get(kind, key) or nil
end

function Overlay:items(kind, filter)
  local merged, seen = {}, {}
  local function take(rec)
    local id = rec.kind .. "\0" .. rec.source_id
    if seen[id] or self.dropped[id] then return end
    seen[id] = true
    if not (filter and filter.status) or rec.status == filter.status then merged[#merged + 1] = copy(rec) end
  end
  for k, by_kind in pairs(self.records) do
    if kind == nil or k == kind then
      for _, rec in pairs(by_kind) do take(rec) end
    end
  end
  for _, rec in ipairs(self.real and self.real:items(kind) or {}) do take(rec) end
  table.sort(merged, function(a, b)
    if a.kind ~= b.kind then return a.kind < b.kind end
    return a.source_id < b.source_id
  end)
  return merged
end

function Overlay:find_by_target(kind, target_id)
  target_id = tostring(target_id)
  for _, rec in ipairs(self:items(kind)) do
    if rec.target_id == target_id then return rec end
  end
  return nil
end

function Overlay:step_ran(step)
  return self.ran[step] or (self.real ~= nil and self.real:step_ran(step))
end

-- The writes: the same merge rules as qmig.store.cache (a value not given keeps
-- what the record had), in memory.
local function put(self, kind, source_id, fields)
  local by_kind, key = slot(self, kind, source_id)
  local rec = by_kind[key] or copy(self.real and self.real:get(kind, key)) or
    { kind = kind, source_id = key, attempts = 0, created_by_us = false }
  for k, v in pairs(fields) do
    if k == "created_by_us" then rec[k] = rec[k] or v
    elseif v ~= nil then rec[k] = v end
  end
  by_kind[key] = rec
  self.dropped[kind .. "\0" .. key] = nil
  if rec.step then self.ran[rec.step] = true end
  return copy(rec)
end

function Overlay:begin_item(kind, source_id, opts)
  opts = opts or {}
  local rec = put(self, kind, source_id, { status = "in_progress", step = opts.step, run_id = opts.run_id })
  return (rec.attempts or 0) + 1
end

function Overlay:finish_item(kind, source_id, o)
  o = o or {}
  local rec = put(self, kind, source_id, {
    status = o.status, target_id = o.target_id ~= nil and tostring(o.target_id) or nil,
    natural_key = o.natural_key, step = o.step, run_id = o.run_id, fingerprint = o.fingerprint, data = o.data,
    created_by_us = o.created_by_us or false, planned = o.planned, action = o.action,
  })
  -- reason is replaced, not kept, as in the file
  self.records[kind][tostring(source_id)].reason = o.reason
  return rec
end

function Overlay:fail_item(kind, source_id, err)
  return put(self, kind, source_id, { status = "failed", last_error = tostring(err) })
end

function Overlay:drop_item(kind, source_id)
  local by_kind, key = slot(self, kind, source_id)
  by_kind[key] = nil
  self.dropped[kind .. "\0" .. key] = true
end

-- What a plan would create, as the tenant would return it: the body of
-- its create request with its placeholder id (steps reading the object
-- back, e.g. its owner, read what they would have sent).
function Overlay:remember_create(id, body)
  if not M.is_placeholder(id) then return end
  local made = {}
  for k, v in pairs(type(body) == "table" and body or {}) do made[k] = v end
  made.id = id
  if type(made.attributes) == "table" then made.attributes.id = id end
  self.made[id] = made
end

function Overlay:planned_object(id)
  local made = self.made[id]
  return made and copy(made) or nil
end

function Overlay:event(fields)
  self.log[#self.log + 1] = copy(fields)
  return #self.log
end

function Overlay:events(filter)
  filter = filter or {}
  local out = self.real and self.real:events(filter) or {}
  for _, e in ipairs(self.log) do
    if (filter.run_id == nil or e.run_id == filter.run_id) and (filter.kind == nil or e.kind == filter.kind)
        and (filter.source_id == nil or tostring(e.source_id) == tostring(filter.source_id)) then
      out[#out + 1] = copy(e)
    end
  end
  return out
end

-- Undo entries, commits and batching mean nothing for a plan.
function Overlay.add_undo() end
function Overlay.group() end
function Overlay.flush() end
function Overlay.meta_set() end

return M
