-- Find-or-create, owned by the engine: the one place that decides whether
-- the object an item needs is the one it recorded, one that exists
-- already (adopted), one its own earlier attempt made (recovered: a reply
-- lost, a crash), or has to be made.  A step says how to get, find and
-- create; it never compares owners or times itself.
--
-- ctx.ensure{
--   get = fn(id) -> obj | nil       the recorded target, if it still exists (a read by id)
--   find = fn() -> obj | nil        by natural key or marker
--   candidates = fn() -> {obj...}   instead of find, when several may match
--   consistent = false              true when find reads a consistent source
--   mine = {by = fn(obj) -> bool, created = fn(obj) -> ISO time}
--                                   did an earlier attempt of this item make obj?
--   adopt = fn(obj) -> ok, why      may a found object not made by us be used? (default: yes)
--   others = "refuse"|"ignore"      what a refused object means: stop (default), or create anyway
--   create = fn() -> obj [, "exists"]  the write (nil: find only); "exists": it found
--                                   the object made meanwhile by someone else (a 409)
--   id = fn(obj) -> id              (default obj.id)
--   undo = fn(id, obj) -> entry     recorded for what this item made
-- } -> {object =, id =, status = "unchanged"|"adopted"|"created", how =
--   "recorded"|"found"|"recovered"|"created", refused = obj, reason =, waited = s}
--
-- Qlik Cloud's listings are eventually consistent (the items catalogue is
-- fed by events): an object made a moment ago may not be listed yet.  So
-- an item in doubt — its previous attempt may have written (in progress
-- when the run died, failed, or an unknown outcome in this run) — does
-- not conclude "absent" from one listing: it looks again until
-- options.catalogue_lag seconds have passed since it first looked, by
-- when anything that attempt made is listed.  Items never attempted, and
-- finds over consistent sources, do not wait.
--
-- "Made by our earlier attempt" = made by this identity (mine.by) at or
-- after the attempt began, on the tenant's clock: the tenant's time is
-- brought to this machine's through the offset the client measures from
-- each reply's Date header, with a margin for its one-second resolution.
local clock = require "qmig.clock"
local qmig = require "qmig"

local M = {}

M.DEFAULT_LAG = 20      -- seconds; Qlik Cloud lists a new app within seconds (docs/steps.md)
M.CLOCK_MARGIN = 3      -- seconds: Date headers have one-second resolution, plus the request's own time
M.FIRST_DELAY = 0.25    -- seconds before looking again; doubles up to MAX_DELAY
M.MAX_DELAY = 2

local function id_of(spec, obj)
  if spec.id then return spec.id(obj) end
  return obj.id
end

-- Did the attempt that began at ctx.started_at make obj?
local function made_by_attempt(ctx, spec, obj)
  local mine = spec.mine
  if not mine or not ctx.resume or not ctx.started_at then return false end
  if mine.by and not mine.by(obj) then return false end
  if not mine.created then return true end
  local began = clock.parse_iso(ctx.started_at)
  local stamp = mine.created(obj)
  local created = ctx.target.local_time and ctx.target:local_time(stamp) or clock.parse_iso(stamp)
  return began ~= nil and created ~= nil and created >= began - M.CLOCK_MARGIN
end

-- Among what was found: one this item's earlier attempt made, else the
-- first that may be adopted.  -> obj, how | nil, nil, the first refused
local function choose(ctx, spec, list)
  for _, obj in ipairs(list) do
    if made_by_attempt(ctx, spec, obj) then return obj, "recovered" end
  end
  local refused
  for _, obj in ipairs(list) do
    local ok, why = true, nil
    if spec.adopt then ok, why = spec.adopt(obj) end
    if ok then return obj, "found" end
    refused = refused or { object = obj, reason = why }
  end
  return nil, nil, refused
end

local function look(spec)
  if spec.candidates then return spec.candidates() or {} end
  local obj = spec.find()
  return obj and { obj } or {}
end

-- An object known to exist (made by an earlier step, maybe moments ago)
-- looked up in a listing that may not show it yet: fn() is called again
-- until it returns something or options.catalogue_lag seconds have passed
-- since the first look.  -> what fn returned, or nil
function M.listed(ctx, fn)
  local found = fn()
  if found ~= nil or ctx.dry_run then return found end
  local deadline, delay = qmig.monotonic() + (ctx.catalogue_lag or M.DEFAULT_LAG), M.FIRST_DELAY
  while found == nil and qmig.monotonic() < deadline and not qmig.interrupted() do
    qmig.sleep(math.min(delay, deadline - qmig.monotonic()))
    delay = math.min(delay * 2, M.MAX_DELAY)
    found = fn()
  end
  return found
end

-- What was found, looked at again (M.listed) while the item is in doubt
-- and the catalogue may not list yet what its earlier attempt made.
local function find_settled(ctx, spec)
  local how, refused
  local function pick()
    local obj
    obj, how, refused = choose(ctx, spec, look(spec))
    return obj
  end
  if spec.consistent or not ctx.resume then return pick(), how, refused, 0 end
  local first = qmig.monotonic()
  local obj = M.listed(ctx, pick)
  return obj, how, refused, qmig.monotonic() - first
end

function M.run(ctx, spec)
  -- (a record marked deleted is looked at too: an undone rename leaves
  -- the object in place, and a deleted one costs one 404)
  local prev = ctx.previous
  local prev_id = prev and prev.target_id or nil
  if prev_id and spec.get then
    local obj = spec.get(prev_id)
    if obj then return { object = obj, id = id_of(spec, obj), status = "unchanged", how = "recorded" } end
  end
  local obj, how, refused, waited = find_settled(ctx, spec)
  if obj then
    local id = id_of(spec, obj)
    if how == "recovered" then
      if spec.undo then ctx.undo(spec.undo(id, obj)) end
      return { object = obj, id = id, status = "created", how = how, waited = waited }
    end
    return { object = obj, id = id, status = "adopted", how = how, waited = waited }
  end
  if refused and spec.others ~= "ignore" then
    return { refused = refused.object, reason = refused.reason, waited = waited }
  end
  if not spec.create then return { waited = waited } end
  local exists
  obj, exists = spec.create()
  if obj == nil then return { waited = waited } end  -- create decided not to (the step knows why)
  local id = id_of(spec, obj)
  -- (a create refused because the object appeared meanwhile: someone
  -- else's, found by create's own look after its 409)
  if exists == "exists" then return { object = obj, id = id, status = "adopted", how = "found", waited = waited } end
  if spec.undo then ctx.undo(spec.undo(id, obj)) end
  return { object = obj, id = id, status = "created", how = "created", waited = waited }
end

return M
