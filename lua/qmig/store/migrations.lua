-- The schema of the project's cache (lua/qmig/store/cache.lua) and its
-- migrations.
--
-- Schema v1 (PRAGMA user_version counts the applied MIGRATIONS):
--   runs(id, command, job_file, started_at, finished_at, status, pid,
--        args JSON, summary JSON)
--   items(kind, source_id, target_id, natural_key, status, step, run_id,
--         attempts, last_error, reason, fingerprint, data JSON,
--         created_by_us, started_at, updated_at), key (kind, source_id)
--   events(id, run_id, at, step, kind, source_id, status, message, data JSON)
--   undo(id, run_id, at, step, kind, source_id, target_id, action, payload
--        JSON, undone_at, undone_by_run)
--   meta(key, value)
-- Timestamps are ISO 8601 UTC strings (qmig.isotime), which sort as text.
-- items is WITHOUT ROWID: it is only ever reached through its key or the
-- (kind, target_id) index.

local M = {}

local MIGRATIONS = {
  [[
  CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    command     TEXT NOT NULL,
    job_file    TEXT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL
                CHECK (status IN ('running','done','failed','interrupted','crashed')),
    pid         INTEGER,
    args        TEXT,
    summary     TEXT
  );
  CREATE TABLE items (
    kind          TEXT NOT NULL,
    source_id     TEXT NOT NULL,
    target_id     TEXT,
    natural_key   TEXT,
    status        TEXT NOT NULL
                  CHECK (status IN ('in_progress','created','updated','adopted','skipped',
                                    'unchanged','failed','deleted')),
    step          TEXT,
    run_id        INTEGER REFERENCES runs(id),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    reason        TEXT,
    fingerprint   TEXT,
    data          TEXT,
    created_by_us INTEGER NOT NULL DEFAULT 0,
    started_at    TEXT,
    updated_at    TEXT,
    PRIMARY KEY (kind, source_id)
  ) WITHOUT ROWID;
  CREATE INDEX items_by_target ON items(kind, target_id);
  CREATE INDEX items_by_status ON items(status, kind);
  CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    run_id    INTEGER REFERENCES runs(id),
    at        TEXT NOT NULL,
    step      TEXT,
    kind      TEXT,
    source_id TEXT,
    status    TEXT,
    message   TEXT,
    data      TEXT
  );
  CREATE INDEX events_by_run ON events(run_id);
  CREATE INDEX events_by_item ON events(kind, source_id);
  CREATE TABLE undo (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER REFERENCES runs(id),
    at            TEXT NOT NULL,
    step          TEXT,
    kind          TEXT,
    source_id     TEXT,
    target_id     TEXT,
    action        TEXT NOT NULL CHECK (action IN ('delete','restore','irreversible')),
    payload       TEXT,
    undone_at     TEXT,
    undone_by_run INTEGER REFERENCES runs(id)
  );
  CREATE INDEX undo_by_run ON undo(run_id);
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT
  );
  ]],
}
M.VERSION = #MIGRATIONS

-- Applies the migrations not yet applied, all in one transaction: a crash
-- half-way leaves the previous version intact.  The version is re-read
-- inside the transaction, as another process may have migrated meanwhile.
function M.apply(db, path)
  local function version() return db:first("PRAGMA user_version").user_version end
  local function newer(v)
    return string.format("%s: cache schema version %d is newer than this qmig-lua (%d)",
                         path, v, #MIGRATIONS)
  end
  local v = version()
  if v > #MIGRATIONS then return nil, newer(v), "version" end
  if v == #MIGRATIONS then return true end
  return db:transaction(function()
    v = version()
    if v > #MIGRATIONS then return nil, newer(v), "version" end
    for i = v + 1, #MIGRATIONS do
      local step = MIGRATIONS[i]
      if type(step) == "function" then step(db) else db:exec(step) end
      -- A PRAGMA takes no parameters; i is our own loop counter.
      db:exec(string.format("PRAGMA user_version = %d", i))
    end
    return true
  end)
end

return M
