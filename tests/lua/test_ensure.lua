-- qmig.engine.ensure, the engine's find-or-create, with a stand-in ctx: what it
-- decides (recorded, adopted, recovered, created, refused), that an item
-- in doubt waits out the catalogue's lag and one never attempted does
-- not, and that "made by our attempt" is judged on the tenant's clock.
local t = require "testing"
local clock = require "qmig.clients.clock"
local ensure = require "qmig.engine.ensure"
local sched = require "qmig.engine.sched"

local T = t.suite("ensure")

local function iso(epoch)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(epoch)) .. string.format(".%03dZ", math.floor(epoch % 1 * 1000))
end

-- A stand-in ctx: started_at = when the attempt began; the tenant's clock
-- `offset` seconds ahead of this machine's.
local function ctx_of(o)
  o = o or {}
  local undo = {}
  local ctx = { resume = o.resume, previous = o.previous, catalogue_lag = o.lag or 1, undo_entries = undo,
    witnesses = o.witnesses,
    started_at = o.started_at, undo = function(e) undo[#undo + 1] = e end }
  ctx.target = { clock_offset = o.offset or 0, local_time = function(self, stamp)
    local s = clock.parse_iso(stamp)
    return s and s - self.clock_offset
  end }
  return ctx
end

local function spec(o)
  local calls = { find = 0, create = 0, get = 0 }
  local s = {
    get = o.get and function(id) calls.get = calls.get + 1; return o.get(id) end,
    find = function() calls.find = calls.find + 1; return o.find and o.find(calls.find) or nil end,
    mine = o.mine or { by = function(x) return x.owner == "me" end, created = function(x) return x.created end },
    adopt = o.adopt, others = o.others, consistent = o.consistent,
    create = o.create ~= false and function() calls.create = calls.create + 1; return { id = "new" } end or nil,
    undo = function(id) return { method = "DELETE", path = "things/" .. id } end,
  }
  return s, calls
end

T.test("recorded and still there: unchanged, nothing looked up or made", function()
  local ctx = ctx_of { previous = { target_id = "t1", status = "created" } }
  local s, calls = spec { get = function(id) return { id = id } end, find = function() return { id = "x" } end }
  local r = ensure.run(ctx, s)
  t.eq({ r.status, r.how, r.id }, { "unchanged", "recorded", "t1" })
  t.eq({ calls.find, calls.create }, { 0, 0 })
end)

T.test("found and not ours: adopted, no undo; found by nobody: created, undo recorded", function()
  local ctx = ctx_of {}
  local r = ensure.run(ctx, (spec { find = function() return { id = "x", owner = "bob" } end }))
  t.eq({ r.status, r.how, r.id }, { "adopted", "found", "x" })
  t.eq(#ctx.undo_entries, 0)
  local s, calls = spec {}
  r = ensure.run(ctx, s)
  t.eq({ r.status, r.how, r.id }, { "created", "created", "new" })
  t.eq(calls.find, 1)  -- never attempted before: one look, no waiting
  t.eq(ctx.undo_entries, { { method = "DELETE", path = "things/new" } })
end)

T.test("ours, made since the attempt began (tenant clock 10 min ahead): recovered as created, undo", function()
  local began = qmig.time() - 60
  local ctx = ctx_of { resume = true, started_at = iso(began), offset = 600 }
  -- the tenant wrote the time on its own clock, 30 s after the attempt began
  local obj = { id = "x", owner = "me", created = iso(began + 600 + 30) }
  local r = ensure.run(ctx, (spec { find = function() return obj end }))
  t.eq({ r.status, r.how, r.id }, { "created", "recovered", "x" })
  t.eq(#ctx.undo_entries, 1)
  -- ours but made before the attempt began (on the tenant's clock): adopted, not ours to undo
  ctx = ctx_of { resume = true, started_at = iso(began), offset = 600 }
  obj.created = iso(began + 600 - 120)
  r = ensure.run(ctx, (spec { find = function() return obj end }))
  t.eq(r.status, "adopted")
  -- someone else's, made after: adopted
  ctx = ctx_of { resume = true, started_at = iso(began), offset = 600 }
  obj.created, obj.owner = iso(began + 600 + 30), "bob"
  r = ensure.run(ctx, (spec { find = function() return obj end }))
  t.eq(r.status, "adopted")
  -- a string comparison of the two clocks would have called this ours: the
  -- tenant is 10 min behind, its time reads "after" the attempt began
  -- although the object is 5 min older than the attempt
  ctx = ctx_of { resume = true, started_at = iso(began), offset = -600 }
  obj.owner, obj.created = "me", iso(began - 600 - 300)
  t.eq(ensure.run(ctx, (spec { find = function() return obj end })).status, "adopted")
end)

T.test("in doubt: not absent until the catalogue's lag passed; the lagging object is found, not made again", function()
  local began = qmig.time() - 1
  local ctx = ctx_of { resume = true, started_at = iso(began), lag = 2 }
  -- the catalogue lists it from the third look on
  local s, calls = spec { find = function(n)
    if n >= 3 then return { id = "x", owner = "me", created = iso(began + 0.5) } end
  end }
  local r = sched.run(function() return ensure.run(ctx, s) end)
  t.eq({ r.status, r.how, r.id }, { "created", "recovered", "x" })
  t.eq(calls.create, 0)
  t.eq(calls.find, 3)
  t.truthy(r.waited > 0)
  -- truly absent: looked at until the lag passed, then made
  ctx = ctx_of { resume = true, started_at = iso(began), lag = 1 }
  s, calls = spec {}
  local started = qmig.monotonic()
  r = sched.run(function() return ensure.run(ctx, s) end)
  t.eq(r.status, "created")
  t.truthy(qmig.monotonic() - started >= 1, "waited the lag")
  t.truthy(calls.find >= 3, "looked again: " .. calls.find)
  -- a consistent source, or a dry run, never waits
  ctx = ctx_of { resume = true, started_at = iso(began), lag = 30 }
  s, calls = spec { consistent = true }
  t.eq(ensure.run(ctx, s).status, "created")
  t.eq(calls.find, 1)
end)

T.test("fresh_look = false: an item never attempted does not look; in doubt it does", function()
  local s, calls = spec { find = function() return { id = "x", owner = "me" } end }
  s.fresh_look = false
  local r = ensure.run(ctx_of {}, s)
  t.eq({ r.status, r.how, calls.find, calls.create }, { "created", "created", 0, 1 })
  s, calls = spec { find = function() return { id = "x", owner = "me", created = iso(qmig.time()) } end }
  s.fresh_look = false
  r = ensure.run(ctx_of { resume = true, started_at = iso(qmig.time() - 5) }, s)
  t.eq({ r.status, r.how, calls.find, calls.create }, { "created", "recovered", 1, 0 })
end)

T.test("in doubt, consistent: one look, after the write that lost its connection had time to end", function()
  -- the doubt began just now (a dropped connection): the look waits for
  -- the rest of WITNESS_MARGIN, then is believed, however long the lag
  local ctx = ctx_of { resume = true, started_at = iso(qmig.time() - 5), lag = 30 }
  ctx.doubt_at = qmig.monotonic()
  local s, calls = spec { consistent = true }
  local looked_at
  local find = s.find
  s.find = function() looked_at = qmig.monotonic(); return find() end
  local r = sched.run(function() return ensure.run(ctx, s) end)
  t.eq({ r.status, calls.find, calls.create }, { "created", 1, 1 })
  t.truthy(looked_at - ctx.doubt_at >= ensure.WITNESS_MARGIN - 0.01,
    string.format("looked %.2f s after the doubt", looked_at - ctx.doubt_at))
  -- a doubt long enough ago: at once
  ctx = ctx_of { resume = true, started_at = iso(qmig.time() - 5), lag = 30 }
  ctx.doubt_at = qmig.monotonic() - ensure.WITNESS_MARGIN - 1
  s, calls = spec { consistent = true }
  r = sched.run(function() return ensure.run(ctx, s) end)
  t.eq({ r.status, calls.find, r.waited }, { "created", 1, 0 })
end)

T.test("in doubt, with a witness: absent at once once a later create of the step is listed", function()
  local ws = {}
  -- another item of the step creates after this one's doubtful write
  -- ended: its create records a witness, listed by its own find
  local listed = {}
  local other = spec { find = function() return listed.w end }
  other.create = function() listed.w = { id = "w" }; return { id = "w" } end
  local doubt_at = qmig.monotonic() - ensure.WITNESS_MARGIN - 0.5
  t.eq(ensure.run(ctx_of { witnesses = ws }, other).status, "created")
  t.eq(#ws, 1)
  -- the item in doubt: its object is not listed; the witness is, so it is
  -- made at once (one look, the witness's, one look again), not after the lag
  local ctx = ctx_of { resume = true, started_at = iso(qmig.time() - 5), lag = 3, witnesses = ws }
  ctx.doubt_at = doubt_at
  local s, calls = spec {}
  local r = sched.run(function() return ensure.run(ctx, s) end)
  t.eq(r.status, "created")
  t.eq(calls.find, 2)
  t.eq(calls.create, 1)
  -- the new object is a witness too, the latest
  t.eq({ #ws, ws[2].id }, { 2, "new" })
end)

T.test("in doubt: a witness that began before the doubt ended, or is not listed yet, proves nothing", function()
  -- began before: the doubtful write may come after it in the catalogue's feed
  local ws = {}
  local w = spec { find = function() return { id = "w" } end }
  ws[1] = { spec = w, id = "w", began = qmig.monotonic() }
  local ctx = ctx_of { resume = true, started_at = iso(qmig.time() - 5), lag = 1, witnesses = ws }
  ctx.doubt_at = qmig.monotonic()
  local s, calls = spec {}
  t.eq(sched.run(function() return ensure.run(ctx, s) end).status, "created")
  t.truthy(calls.find >= 3, "waited the lag: " .. calls.find)
  -- later, but not listed (the catalogue lags): waits the lag too, and
  -- the lagging object of the item in doubt is found, not made again
  local wcalls
  w, wcalls = spec {}
  ws = { { spec = w, id = "w", began = qmig.monotonic() + 10 } }
  ctx = ctx_of { resume = true, started_at = iso(qmig.time() - 5), lag = 2, witnesses = ws }
  ctx.doubt_at = qmig.monotonic()
  s, calls = spec { find = function(n) if n >= 3 then return { id = "x", owner = "bob" } end end }
  local r = sched.run(function() return ensure.run(ctx, s) end)
  t.eq({ r.status, r.id, calls.create }, { "adopted", "x", 0 })
  t.eq(wcalls.find, 1)  -- one look per witness
end)

T.test("in doubt, unique names: one look, and the create's 409 finds what the attempt made (recovered)", function()
  local began = qmig.time() - 5
  local ctx = ctx_of { resume = true, started_at = iso(began), lag = 3 }
  -- the catalogue does not list it yet; the service knows it (409)
  local s, calls = spec { consistent = false }
  s.unique = true
  s.create = function() calls.create = calls.create + 1
    return { id = "x", owner = "me", created = iso(began + 1) }, "exists" end
  local r = sched.run(function() return ensure.run(ctx, s) end)
  t.eq({ r.status, r.how, r.id }, { "created", "recovered", "x" })
  t.eq({ calls.find, calls.create }, { 1, 1 })
  t.eq(ctx.undo_entries, { { method = "DELETE", path = "things/x" } })
  -- someone else's of that name: adopted, as before
  ctx = ctx_of { resume = true, started_at = iso(began), lag = 3 }
  s.create = function() return { id = "y", owner = "bob", created = iso(began + 1) }, "exists" end
  r = sched.run(function() return ensure.run(ctx, s) end)
  t.eq({ r.status, r.how, #ctx.undo_entries }, { "adopted", "found", 0 })
end)

T.test("refused: someone else's object that must not be adopted stops, or is passed over (others = ignore)", function()
  local ctx = ctx_of {}
  local s, calls = spec { find = function() return { id = "x", owner = "bob" } end,
    adopt = function() return false, "not ours" end }
  local r = ensure.run(ctx, s)
  t.eq({ r.refused.id, r.reason, r.status }, { "x", "not ours", nil })
  t.eq(calls.create, 0)
  s, calls = spec { find = function() return { id = "x", owner = "bob" } end, adopt = function() return false end,
    others = "ignore" }
  r = ensure.run(ctx, s)
  t.eq(r.status, "created")
  t.eq(calls.create, 1)
end)

T.test("create finding the object made meanwhile (a 409): adopted, no undo", function()
  local ctx = ctx_of {}
  local s = spec {}
  s.create = function() return { id = "theirs" }, "exists" end
  local r = ensure.run(ctx, s)
  t.eq({ r.status, r.id }, { "adopted", "theirs" })
  t.eq(#ctx.undo_entries, 0)
  -- a POST's second value (the response) is not "exists"
  s.create = function() return { id = "mine" }, { status = 201 } end
  t.eq(ensure.run(ctx, s).status, "created")
end)

T.test("recorded but gone (deleted by hand, or undone): looked for and made again", function()
  local ctx = ctx_of { previous = { target_id = "gone", status = "deleted" } }
  local s, calls = spec { get = function() return nil end }
  local r = ensure.run(ctx, s)
  t.eq({ r.status, r.id }, { "created", "new" })
  t.eq({ calls.get, calls.find, calls.create }, { 1, 1, 1 })
end)

return T
