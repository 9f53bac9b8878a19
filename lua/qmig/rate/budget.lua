-- The rate budget shared by the qmig-lua processes of one machine that
-- act as the same identity on the same tenant.  Qlik counts a tier per
-- user, not per process: two phases run at once (or a second project in
-- CI) each assuming the whole tier would together send twice the rate and
-- live on 429s.  So each process publishes what it sends, per tier, in a
-- small JSON file, and reads what the others send (qmig.rate.limiter turns
-- that into its share).
--
-- The file: <cache>/limits/<key>.json, <key> a hash of the target URL and
-- of the identity (the API key's hash or the OAuth client id's: never a
-- secret); <cache> is $QMIG_CACHE_DIR, else $XDG_CACHE_HOME/qmig-lua,
-- else ~/.cache/qmig-lua.  A sibling <key>.lock is taken with fs.lock
-- (flock: it dies with its holder) around each read-modify-write.
local fs = require "qmig.fs"
local hash = require "qmig.hash"
local json = require "qmig.json"
local qmig = require "qmig"

local M = {}
local Budget = {}
Budget.__index = Budget

-- An entry not refreshed for this long is ignored and dropped: its
-- process is gone or stuck, and either way it is not sending.  Entries
-- are rewritten every ~0.5 s by a live process, so 10 s is 20 missed
-- syncs, never a busy one.
M.STALE = 10

-- Files of identities not used for this long are removed when a budget
-- is opened, so test runs against simulators on random ports do not
-- pile up in the cache.
M.FORGET = 24 * 3600

function M.dir(env)
  env = env or os.getenv
  local base = env("QMIG_CACHE_DIR")
  if not base or base == "" then
    local xdg = env("XDG_CACHE_HOME")
    if xdg and xdg ~= "" then
      base = xdg .. "/qmig-lua"
    elseif env("HOME") and env("HOME") ~= "" then
      base = env("HOME") .. "/.cache/qmig-lua"
    else
      return nil
    end
  end
  return base .. "/limits"
end

-- The file's name for a target ({url=, api_key=} or {url=, oauth={client_id=}}).
function M.key(target)
  local who = target.oauth and ("oauth:" .. tostring(target.oauth.client_id))
    or ("key:" .. hash.sha256(tostring(target.api_key or "")))
  local url = tostring(target.url or ""):gsub("/+$", "")
  return hash.sha256(url .. "\n" .. who):sub(1, 32)
end

-- M.open(target [, {dir=}]) -> budget, or nil when there is no cache
-- folder or it cannot be made (the limiter then works alone).
function M.open(target, opts)
  local dir = opts and opts.dir or M.dir()
  if not dir or not fs.mkdirs(dir, 448) then return nil end  -- 0700
  local now = qmig.time()
  for _, name in ipairs(fs.dir(dir) or {}) do
    local st = name:match("%.json$") and fs.stat(dir .. "/" .. name)
    if st and st.mtime < now - M.FORGET then fs.remove(dir .. "/" .. name) end
  end
  local key = M.key(target)
  return setmetatable({ path = dir .. "/" .. key .. ".json", lock_path = dir .. "/" .. key .. ".lock",
    id = qmig.getpid() .. ":" .. qmig.random_string(8), pid = qmig.getpid() }, Budget)
end

-- b:sync({tier = {rate=, n60=, nwin=, pause_until=, hungry=}}) -> the others'
-- figures summed per tier {tier = {rate=, n60=, nwin=, pause_until=, procs=,
-- hungry= (how many), idle_rate= (what the others not hungry send)}}, or nil
-- when the file is locked right now (the caller keeps what it had and
-- tries again at its next sync: never waits for another process).
-- rate: requests per second lately; n60: requests in the last minute;
-- nwin: requests in the last window (Qlik's 5 minutes, qmig.rate.limiter
-- M.WINDOW; an entry of an older qmig-lua has only n60, which stands in);
-- pause_until: wall-clock time a 429 paused the tier until; hungry: it
-- waited for tokens just now (it would take a larger share).
function Budget:sync(mine)
  local lock = fs.lock(self.lock_path)
  if not lock then return nil end
  local now = qmig.time()
  local doc = json.decode(fs.read_file(self.path) or "") or nil
  local entries = type(doc) == "table" and type(doc.procs) == "table" and doc.procs or {}
  local others, kept = {}, {}
  for id, e in pairs(entries) do
    local fresh = type(e) == "table" and type(e.t) == "number" and e.t > now - M.STALE
      and math.type(e.pid) == "integer" and e.pid > 0 and fs.process_alive(e.pid)
    if fresh and id ~= self.id then
      kept[id] = e
      for tier, f in pairs(type(e.tiers) == "table" and e.tiers or {}) do
        if type(f) == "table" then
          local o = others[tier]
            or { rate = 0, n60 = 0, nwin = 0, pause_until = 0, procs = 0, hungry = 0, idle_rate = 0 }
          o.rate = o.rate + (tonumber(f.rate) or 0)
          if f.hungry == true then
            o.hungry = o.hungry + 1
          else
            o.idle_rate = o.idle_rate + (tonumber(f.rate) or 0)
          end
          o.n60 = o.n60 + (tonumber(f.n60) or 0)
          o.nwin = o.nwin + (tonumber(f.nwin) or tonumber(f.n60) or 0)
          o.pause_until = math.max(o.pause_until, tonumber(f.pause_until) or 0)
          o.procs = o.procs + 1
          others[tier] = o
        end
      end
    end
  end
  if mine then kept[self.id] = { pid = self.pid, t = now, tiers = mine } end
  -- Not atomic (no temporary file, no fsync): every reader holds the
  -- lock, and a file torn by a crash reads as empty, which only costs
  -- one sync's worth of sharing.
  fs.write_file(self.path, json.encode { procs = kept }, { atomic = false, mode = 384 })  -- 0600
  lock:unlock()
  return others
end

-- Takes this process's entry out (end of the run), so the others get the
-- whole tier at once rather than after M.STALE.
function Budget:leave()
  self:sync(nil)
end

return M
