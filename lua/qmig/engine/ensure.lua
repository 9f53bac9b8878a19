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
--   consistent = false              true when what this item's own write makes is
--                                   seen by find at once (a read by id, a listing
--                                   that reads its writes): an item in doubt looks
--                                   once; what others made may still lag, as for
--                                   an item never attempted
--   fresh_look = true               false: an item never attempted does not look
--                                   (it adopts nothing and nothing of its own can
--                                   exist: a request saved); find/candidates
--                                   then look whenever called, as witnesses' looks need
--   unique = false                  true when the service refuses a second one
--                                   (create's 409, checked on its own records,
--                                   not the lagging catalogue): an item in doubt
--                                   looks once, and its create is the sure look
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
-- Nor does an item in doubt wait when the listing is seen to be fresh: a
-- witness is an object another item of the same step made (its create
-- returned, so its outcome is known) with a write that began after this
-- item's doubtful write had ended (ctx.doubt_at; any time of this run for
-- an attempt of an earlier run).  The catalogue is fed by the events of
-- those writes in order, so once the witness is listed, whatever the
-- doubtful write made is listed too: not finding it then means it was not
-- made.  Without this, every 503 or dropped connection on a create cost a
-- whole options.catalogue_lag (bench/, part 6: 102 s over the demo's
-- tasks, 13.6x the fault-free run).  A step's find/candidates are reads,
-- so looking again with a witness's own is safe.
--
-- "Made by our earlier attempt" = made by this identity (mine.by) at or
-- after the attempt began, on the tenant's clock: the tenant's time is
-- brought to this machine's through the offset the client measures from
-- each reply's Date header, with a margin for its one-second resolution.
local clock = require "qmig.clients.clock"
local qmig = require "qmig"

local M = {}

M.DEFAULT_LAG = 20      -- seconds; Qlik Cloud lists a new app within seconds (docs/steps.md)
M.CLOCK_MARGIN = 3      -- seconds: Date headers have one-second resolution, plus the request's own time
M.FIRST_DELAY = 0.25    -- seconds before looking again; doubles up to MAX_DELAY
M.MAX_DELAY = 2
-- A doubtful write that ended with no answer (a timeout, a dropped
-- connection) may still be running on the server for a moment: a witness
-- must have begun this much later.
M.WITNESS_MARGIN = 1
M.WITNESSES = 8         -- the latest kept per step (a witness is a look: one request)

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
-- since the first look, or absent() (when given) says it is absent for
-- sure.  -> what fn returned, or nil
function M.listed(ctx, fn, absent)
  local found = fn()
  if found ~= nil or ctx.dry_run then return found end
  local deadline, delay = qmig.monotonic() + (ctx.catalogue_lag or M.DEFAULT_LAG), M.FIRST_DELAY
  while found == nil and qmig.monotonic() < deadline and not qmig.interrupted() do
    if absent and absent() then return nil end
    qmig.sleep(math.min(delay, deadline - qmig.monotonic()))
    delay = math.min(delay * 2, M.MAX_DELAY)
    found = fn()
  end
  return found
end

-- Is a witness (M.witness) listed by its own look?
local function listed_witness(w)
  local ok, list = pcall(look, w.spec)
  if not ok then return false end
  for _, obj in ipairs(list) do
    if id_of(w.spec, obj) == w.id then return true end
  end
  return false
end

-- A witness for an item in doubt since ctx.doubt_at (M.listed) that the
-- listing shows now, or nil.  Looks at the latest first, at most one
-- request per witness per call.
local function fresh_witness(ctx, tried)
  local ws = ctx.witnesses
  if not ws or ctx.dry_run then return nil end
  local after = (ctx.doubt_at or -math.huge) + M.WITNESS_MARGIN
  for i = #ws, 1, -1 do
    local w = ws[i]
    if w.began < after then break end  -- kept in order of their begin
    if not tried[w] then
      tried[w] = true
      if listed_witness(w) then return w end
    end
  end
  return nil
end

-- Records what a create made, with when its write began, as a witness
-- for the other items of the step (ctx.witnesses: one list per step, the
-- engine's).
local function add_witness(ctx, spec, id, began)
  local ws = ctx.witnesses
  if not ws or id == nil or not (spec.find or spec.candidates) then return end
  local i = #ws + 1
  while i > 1 and ws[i - 1].began > began do i = i - 1 end
  table.insert(ws, i, { spec = spec, id = id, began = began })
  if #ws > M.WITNESSES then table.remove(ws, 1) end
end

-- What was found, looked at again (M.listed) while the item is in doubt
-- and the catalogue may not list yet what its earlier attempt made,
-- unless a witness shows that it lists everything that attempt could
-- have made.
local function find_settled(ctx, spec)
  local how, refused
  local function pick()
    local obj
    obj, how, refused = choose(ctx, spec, look(spec))
    return obj
  end
  -- (unique: an object our attempt made and the catalogue does not list
  -- yet makes the create's 409, and M.run recovers it then)
  if not ctx.resume and spec.fresh_look == false then return nil, nil, nil, 0 end
  if spec.unique or not ctx.resume then return pick(), how, refused, 0 end
  if spec.consistent then
    -- a read that is never behind still cannot see a write the server is
    -- still making after its connection dropped (M.WITNESS_MARGIN)
    local settle = ctx.doubt_at and ctx.doubt_at + M.WITNESS_MARGIN - qmig.monotonic() or 0
    if settle > 0 and not ctx.dry_run then qmig.sleep(settle) end
    return pick(), how, refused, math.max(settle, 0)
  end
  local first = qmig.monotonic()
  local tried = {}
  local obj = M.listed(ctx, pick, function()
    -- (a look of our own after the witness's: the witness may have
    -- been listed only after our look)
    return fresh_witness(ctx, tried) and pick() == nil
  end)
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
  local began = qmig.monotonic()
  obj, exists = spec.create()
  if obj == nil then return { waited = waited } end  -- create decided not to (the step knows why)
  local id = id_of(spec, obj)
  -- (a create refused because the object appeared meanwhile: someone
  -- else's, found by create's own look after its 409)
  -- (or, for an item in doubt, the one its earlier attempt made)
  if exists == "exists" then
    if made_by_attempt(ctx, spec, obj) then
      if spec.undo then ctx.undo(spec.undo(id, obj)) end
      return { object = obj, id = id, status = "created", how = "recovered", waited = waited }
    end
    return { object = obj, id = id, status = "adopted", how = "found", waited = waited }
  end
  add_witness(ctx, spec, id, began)
  if spec.undo then ctx.undo(spec.undo(id, obj)) end
  return { object = obj, id = id, status = "created", how = "created", waited = waited }
end

return M
