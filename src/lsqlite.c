/*
** lsqlite.c — qmig.sqlite: a small, generic SQLite binding.
** The cache (lua/qmig/store/cache.lua) is written on top of it.  Values only
** ever travel as bound parameters: the API has no way to format them into
** SQL text.  Types follow liolib.c: "qmig.Sqlite" is the connection,
** "qmig.SqliteStmt" a statement in use (held by a rows() loop, or by a
** single call so that an error half-way never leaks it).
**
** Errors: bad SQL is a bug and raises "sqlite: <msg> (in: <sql>)";
** SQLITE_BUSY after the timeout raises "sqlite busy: ..." and disk-full or
** I/O trouble "sqlite io: ...", so the engine can tell the transient and
** environmental failures from the bugs.  Only open() returns nil, msg, code.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <lua.h>
#include <lauxlib.h>

#include "qmig.h"

#define SQLITE_DB   "qmig.Sqlite"
#define SQLITE_STMT "qmig.SqliteStmt"

/* Prepared statements kept per connection; bounded so a program that
** builds many distinct query texts cannot grow memory without limit. */
#define STMT_CACHE 48
#define SQL_IN_ERROR 80

typedef struct Slot {
  char *sql;
  sqlite3_stmt *stmt;
  int busy;                 /* held by a live SqliteStmt */
  unsigned long used;       /* LRU clock */
} Slot;

typedef struct LDb {
  sqlite3 *db;              /* NULL once closed */
  char *path;
  unsigned long clock;
  Slot slots[STMT_CACHE];
} LDb;

typedef struct LStmt {
  LDb *d;
  sqlite3_stmt *stmt;       /* NULL once released */
  int slot;                 /* index in d->slots, or -1 when not cached */
  const char *sql;          /* for error messages; owned by slot or copy */
  char *own_sql;            /* copy for uncached statements */
} LStmt;

#define todb(L) ((LDb *)luaL_checkudata(L, 1, SQLITE_DB))

static LDb *checkopen(lua_State *L) {
  LDb *d = todb(L);
  if (d->db == NULL) luaL_error(L, "sqlite: attempt to use a closed database");
  return d;
}

/* {====== errors */

/* The class of a failure decides its prefix; see the file header. */
static const char *prefix_for(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY: case SQLITE_LOCKED:
      return "sqlite busy";
    case SQLITE_IOERR: case SQLITE_FULL: case SQLITE_CANTOPEN: case SQLITE_CORRUPT:
    case SQLITE_NOTADB: case SQLITE_PROTOCOL: case SQLITE_READONLY: case SQLITE_NOLFS:
      return "sqlite io";
    default:
      return "sqlite";
  }
}

/* The SQL cut to one short line, into buf: it names the bug, nothing more. */
static const char *sql_line(char buf[SQL_IN_ERROR + 4], const char *sql) {
  size_t n = 0;
  /* cppcheck-suppress arrayIndexThenCheck ; sql[n] is in bounds: sql[0..n-1] were not its NUL */
  for (; sql[n] && n < SQL_IN_ERROR; n++)
    buf[n] = (sql[n] == '\n' || sql[n] == '\r' || sql[n] == '\t') ? ' ' : sql[n];
  if (sql[n]) {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n] = '\0';
  return buf;
}

/* Pushes the formatted error for rc (message taken from the connection). */
static void push_error(lua_State *L, sqlite3 *db, int rc, const char *sql) {
  const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  char line[SQL_IN_ERROR + 4];
  if (sql == NULL) lua_pushfstring(L, "%s: %s", prefix_for(rc), msg);
  else lua_pushfstring(L, "%s: %s (in: %s)", prefix_for(rc), msg, sql_line(line, sql));
}

static int raise_rc(lua_State *L, sqlite3 *db, int rc, const char *sql) {
  push_error(L, db, rc, sql);
  return lua_error(L);
}
/* }====== */

/* {====== statements: the per-connection cache and the holder object */

static void slot_clear(Slot *s) {
  if (s->stmt) sqlite3_finalize(s->stmt);
  free(s->sql);
  memset(s, 0, sizeof *s);
}

/* Gives the statement back: cached ones are reset for the next user,
** others finalized.  Safe to call twice and after the database closed
** (close finalizes every statement itself). */
static void stmt_release(LStmt *h) {
  if (h->stmt == NULL) return;
  if (h->d->db != NULL) {
    if (h->slot >= 0) {
      Slot *s = &h->d->slots[h->slot];
      sqlite3_reset(h->stmt);
      sqlite3_clear_bindings(h->stmt);  /* do not keep bound values alive */
      s->busy = 0;
    } else {
      sqlite3_finalize(h->stmt);
    }
  }
  h->stmt = NULL;
  h->sql = NULL;
  free(h->own_sql);
  h->own_sql = NULL;
}

/* Raises the error of rc after releasing h; the message is built first,
** because a reset can change what sqlite3_errmsg reports. */
static int stmt_raise(lua_State *L, LStmt *h, int rc) {
  push_error(L, h->d->db, rc, h->sql);
  stmt_release(h);
  return lua_error(L);
}

static int stmt_gc(lua_State *L) {
  stmt_release((LStmt *)luaL_checkudata(L, 1, SQLITE_STMT));
  return 0;
}

static int is_blank_tail(const char *tail) {
  for (; *tail; tail++)
    if (*tail != ';' && *tail != ' ' && *tail != '\n' && *tail != '\r' && *tail != '\t')
      return 0;
  return 1;
}

/* Pushes a SqliteStmt for sql (the db userdata must be at index 1 and is
** kept as its user value, so the connection outlives it). */
static LStmt *stmt_acquire(lua_State *L, LDb *d, const char *sql) {
  LStmt *h = (LStmt *)lua_newuserdatauv(L, sizeof(LStmt), 1);
  memset(h, 0, sizeof *h);
  h->d = d;
  h->slot = -1;
  luaL_setmetatable(L, SQLITE_STMT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);

  int victim = -1;
  for (int i = 0; i < STMT_CACHE; i++) {
    Slot *s = &d->slots[i];
    if (s->sql && strcmp(s->sql, sql) == 0 && !s->busy) {
      s->busy = 1;
      s->used = ++d->clock;
      h->stmt = s->stmt;
      h->slot = i;
      h->sql = s->sql;
      return h;
    }
    if (s->busy) continue;
    if (victim < 0 || s->sql == NULL ||
        (d->slots[victim].sql != NULL && s->used < d->slots[victim].used))
      victim = i;
  }

  sqlite3_stmt *stmt = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v2(d->db, sql, -1, &stmt, &tail);
  if (rc != SQLITE_OK) raise_rc(L, d->db, rc, sql);
  if (stmt == NULL) luaL_error(L, "sqlite: empty statement");
  if (!is_blank_tail(tail)) {
    sqlite3_finalize(stmt);
    char line[SQL_IN_ERROR + 4];
    luaL_error(L, "sqlite: more than one statement, use db:exec (in: %s)", sql_line(line, sql));
  }
  char *copy = strdup(sql);
  if (copy == NULL) {
    sqlite3_finalize(stmt);
    luaL_error(L, "not enough memory");
  }
  h->stmt = stmt;
  if (victim >= 0) {  /* the least recently used free slot makes room */
    Slot *s = &d->slots[victim];
    slot_clear(s);
    s->sql = copy;
    s->stmt = stmt;
    s->busy = 1;
    s->used = ++d->clock;
    h->slot = victim;
    h->sql = s->sql;
  } else {  /* every slot is held by a live loop: use a private one */
    h->own_sql = copy;
    h->sql = copy;
  }
  return h;
}

/* Binds one Lua value; on failure pushes a message and returns 0. */
static int bind_value(lua_State *L, sqlite3_stmt *st, int i, int idx) {
  int rc;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: case LUA_TNONE:
      rc = sqlite3_bind_null(st, i);
      break;
    case LUA_TBOOLEAN:
      rc = sqlite3_bind_int(st, i, lua_toboolean(L, idx));
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        rc = sqlite3_bind_int64(st, i, (sqlite3_int64)lua_tointeger(L, idx));
      else
        rc = sqlite3_bind_double(st, i, (double)lua_tonumber(L, idx));
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      rc = sqlite3_bind_text64(st, i, s, len, SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {  /* json.null */
        rc = sqlite3_bind_null(st, i);
        break;
      }
      /* FALLTHROUGH */
    default:
      lua_pushfstring(L, "sqlite: cannot bind a %s value to parameter %d",
                      luaL_typename(L, idx), i);
      return 0;
  }
  if (rc == SQLITE_OK) return 1;
  lua_pushfstring(L, "sqlite: cannot bind parameter %d (%s)", i, sqlite3_errstr(rc));
  return 0;
}

/* Binds the call's arguments from index first: one table binds named
** parameters (:name, @name, $name), anything else binds positionally.
** A mistake here is a bug: the statement is given back, then it raises. */
static void bind_args(lua_State *L, LStmt *h, int first) {
  int top = lua_gettop(L) - 1;  /* the LStmt sits on top */
  int nparams = sqlite3_bind_parameter_count(h->stmt);
  int ok = 1;
  if (top == first && lua_type(L, first) == LUA_TTABLE) {
    for (int i = 1; i <= nparams && ok; i++) {
      const char *name = sqlite3_bind_parameter_name(h->stmt, i);
      if (name == NULL) {
        lua_pushliteral(L, "sqlite: positional parameter in a statement given named ones");
        ok = 0;
        break;
      }
      lua_getfield(L, first, name + 1);
      ok = bind_value(L, h->stmt, i, -1);
      lua_remove(L, ok ? -1 : -2);  /* the value; keeps a message */
    }
  } else {
    int nargs = top < first ? 0 : top - first + 1;
    if (nargs != nparams) {  /* a forgotten value must not become a silent NULL */
      lua_pushfstring(L, "sqlite: %d values given for %d parameters", nargs, nparams);
      ok = 0;
    }
    for (int i = 1; i <= nargs && ok; i++) ok = bind_value(L, h->stmt, i, first + i - 1);
  }
  if (!ok) {
    char line[SQL_IN_ERROR + 4];
    lua_pushfstring(L, "%s (in: %s)", lua_tostring(L, -1), sql_line(line, h->sql));
    stmt_release(h);
    lua_error(L);
  }
}

/* Pushes the current row as a table of column name -> value (NULL
** columns are absent, as nil is in Lua). */
static void push_row(lua_State *L, sqlite3_stmt *st) {
  int n = sqlite3_column_count(st);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    switch (sqlite3_column_type(st, i)) {
      case SQLITE_INTEGER:
        lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(st, i));
        break;
      case SQLITE_FLOAT:
        lua_pushnumber(L, (lua_Number)sqlite3_column_double(st, i));
        break;
      case SQLITE_TEXT:
        lua_pushlstring(L, (const char *)sqlite3_column_text(st, i),
                        (size_t)sqlite3_column_bytes(st, i));
        break;
      case SQLITE_BLOB: {
        const void *p = sqlite3_column_blob(st, i);
        lua_pushlstring(L, p ? (const char *)p : "", (size_t)sqlite3_column_bytes(st, i));
        break;
      }
      default:
        continue;
    }
    lua_setfield(L, -2, sqlite3_column_name(st, i));
  }
}

/* Acquires and binds a statement for method(sql, ...) at index 2. */
static LStmt *prepare_call(lua_State *L, LDb *d) {
  const char *sql = luaL_checkstring(L, 2);
  LStmt *h = stmt_acquire(L, d, sql);
  bind_args(L, h, 3);
  return h;
}
/* }====== */

/* {====== connection methods */

/* db:exec(sql): runs a script of statements without parameters (schema). */
static int db_exec(lua_State *L) {
  LDb *d = checkopen(L);
  const char *sql = luaL_checkstring(L, 2);
  char *err = NULL;
  int rc = sqlite3_exec(d->db, sql, NULL, NULL, &err);
  sqlite3_free(err);  /* sqlite3_errmsg still holds the same text */
  if (rc != SQLITE_OK) return raise_rc(L, d->db, rc, sql);
  return 0;
}

/* db:run(sql, ...) -> changes, last_insert_rowid */
static int db_run(lua_State *L) {
  LDb *d = checkopen(L);
  LStmt *h = prepare_call(L, d);
  int rc;
  while ((rc = sqlite3_step(h->stmt)) == SQLITE_ROW) {}
  if (rc != SQLITE_DONE) return stmt_raise(L, h, rc);
  stmt_release(h);
  lua_pushinteger(L, (lua_Integer)sqlite3_changes64(d->db));
  lua_pushinteger(L, (lua_Integer)sqlite3_last_insert_rowid(d->db));
  return 2;
}

/* db:first(sql, ...) -> the first row, or nil */
static int db_first(lua_State *L) {
  LDb *d = checkopen(L);
  LStmt *h = prepare_call(L, d);
  int rc = sqlite3_step(h->stmt);
  if (rc == SQLITE_ROW) push_row(L, h->stmt);
  else if (rc == SQLITE_DONE) lua_pushnil(L);
  else return stmt_raise(L, h, rc);
  stmt_release(h);
  return 1;
}

/* db:all(sql, ...) -> array of rows */
static int db_all(lua_State *L) {
  LDb *d = checkopen(L);
  LStmt *h = prepare_call(L, d);
  lua_newtable(L);
  lua_Integer n = 0;
  int rc;
  while ((rc = sqlite3_step(h->stmt)) == SQLITE_ROW) {
    push_row(L, h->stmt);
    lua_rawseti(L, -2, ++n);
  }
  if (rc != SQLITE_DONE) return stmt_raise(L, h, rc);
  stmt_release(h);
  return 1;
}

static int rows_iter(lua_State *L) {
  LStmt *h = (LStmt *)luaL_checkudata(L, 1, SQLITE_STMT);
  if (h->stmt == NULL) return 0;  /* exhausted, or released by a break */
  if (h->d->db == NULL) return luaL_error(L, "sqlite: attempt to use a closed database");
  int rc = sqlite3_step(h->stmt);
  if (rc == SQLITE_ROW) {
    push_row(L, h->stmt);
    return 1;
  }
  if (rc != SQLITE_DONE) return stmt_raise(L, h, rc);
  stmt_release(h);
  return 0;
}

/* db:rows(sql, ...) -> iterator for a generic for; the statement is the
** loop's closing value, so a break or an error gives it back at once. */
static int db_rows(lua_State *L) {
  LDb *d = checkopen(L);
  prepare_call(L, d);
  int h = lua_gettop(L);
  lua_pushcfunction(L, rows_iter);
  lua_pushvalue(L, h);  /* state */
  lua_pushnil(L);       /* control */
  lua_pushvalue(L, h);  /* closing value */
  return 4;
}

static void exec_simple(lua_State *L, LDb *d, const char *sql) {
  int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK) raise_rc(L, d->db, rc, sql);
}

static int db_begin(lua_State *L) {
  static const char *const modes[] = {"immediate", "deferred", "exclusive", NULL};
  static const char *const sql[] = {"BEGIN IMMEDIATE", "BEGIN DEFERRED", "BEGIN EXCLUSIVE"};
  LDb *d = checkopen(L);
  exec_simple(L, d, sql[luaL_checkoption(L, 2, "immediate", modes)]);
  return 0;
}

static int db_commit(lua_State *L) {
  exec_simple(L, checkopen(L), "COMMIT");
  return 0;
}

static int db_rollback(lua_State *L) {
  exec_simple(L, checkopen(L), "ROLLBACK");
  return 0;
}

/* db:transaction(fn, ...) -> fn's results.  The outermost call is a
** BEGIN IMMEDIATE (the write lock is taken up front, so the busy timeout
** applies at the start rather than failing at the first write); nested
** calls, or calls inside db:begin(), use a savepoint.  fn runs under a
** plain lua_pcall, so it cannot yield: a transaction spanning a yield would
** swallow the writes other scheduler tasks make on this connection. */
static int db_transaction(lua_State *L) {
  LDb *d = checkopen(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 2;
  int outer = sqlite3_get_autocommit(d->db);
  exec_simple(L, d, outer ? "BEGIN IMMEDIATE" : "SAVEPOINT qmig_tx");
  int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
  if (d->db == NULL) {  /* fn closed the database: nothing left to finish */
    if (status != LUA_OK) return lua_error(L);
    return lua_gettop(L) - 1;
  }
  if (status != LUA_OK) {
    /* SQLite may already have rolled the whole transaction back (disk
    ** full, I/O errors); then there is nothing to undo.  Failures here are
    ** ignored so that fn's own error is the one reported. */
    if (!sqlite3_get_autocommit(d->db))
      sqlite3_exec(d->db, outer ? "ROLLBACK" : "ROLLBACK TO qmig_tx; RELEASE qmig_tx",
                   NULL, NULL, NULL);
    return lua_error(L);
  }
  if (outer) {
    if (!sqlite3_get_autocommit(d->db)) {  /* fn may have committed itself */
      int rc = sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL);
      if (rc != SQLITE_OK) {
        push_error(L, d->db, rc, "COMMIT");
        if (!sqlite3_get_autocommit(d->db))
          sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
        return lua_error(L);
      }
    }
  } else {
    exec_simple(L, d, "RELEASE qmig_tx");
  }
  return lua_gettop(L) - 1;
}

static int db_changes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sqlite3_changes64(checkopen(L)->db));
  return 1;
}

static int db_path(lua_State *L) {
  lua_pushstring(L, todb(L)->path ? todb(L)->path : "");
  return 1;
}

/* Finalizes every statement, including those held by unfinished loops
** (they notice d->db == NULL), then closes.  Idempotent. */
static void db_release(LDb *d) {
  if (d->db != NULL) {
    for (int i = 0; i < STMT_CACHE; i++) slot_clear(&d->slots[i]);
    sqlite3_stmt *st;
    while ((st = sqlite3_next_stmt(d->db, NULL)) != NULL) sqlite3_finalize(st);
    sqlite3_close_v2(d->db);
    d->db = NULL;
  }
  free(d->path);
  d->path = NULL;
}

static int db_close(lua_State *L) {
  db_release(todb(L));
  lua_pushboolean(L, 1);
  return 1;
}

static int db_gc(lua_State *L) {
  db_release(todb(L));
  return 0;
}

static int db_tostring(lua_State *L) {
  LDb *d = todb(L);
  if (d->db == NULL) lua_pushliteral(L, "qmig.Sqlite (closed)");
  else lua_pushfstring(L, "qmig.Sqlite (%s)", d->path);
  return 1;
}
/* }====== */

/* {====== sqlite.open */

/* Creates path 0600 unless it exists, so the cache is never readable by
** others, not even for the instant before a chmod. */
static int create_private(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    close(fd);
    return 0;
  }
  return errno == EEXIST ? 0 : -1;
}

static int open_fail(lua_State *L, LDb *d, const char *path, int rc) {
  lua_pushfstring(L, "%s: %s", path, d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc));
  const char *msg = lua_tostring(L, -1);
  db_release(d);
  return qmig_fail(L, msg, (rc & 0xff) == SQLITE_BUSY ? "busy" : "sqlite");
}

/* sqlite.open(path [, {readonly=, busy_timeout=ms}]) -> db | nil, msg, code
** (code: errno when creating the file failed, else "sqlite" or "busy"). */
static int l_open(lua_State *L) {
  size_t plen;
  const char *path = luaL_checklstring(L, 1, &plen);
  luaL_argcheck(L, strlen(path) == plen, 1, "path contains a NUL byte");
  int readonly = 0;
  int timeout = 5000;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "readonly");
    readonly = lua_toboolean(L, -1);
    lua_getfield(L, 2, "busy_timeout");
    timeout = (int)luaL_optinteger(L, -1, timeout);
    lua_pop(L, 2);
  }
  int memory = strcmp(path, ":memory:") == 0;
  if (!memory) {
    struct stat st;
    if (readonly ? stat(path, &st) != 0 : create_private(path) != 0)
      return luaL_fileresult(L, 0, path);
  }

  LDb *d = (LDb *)lua_newuserdatauv(L, sizeof(LDb), 0);
  memset(d, 0, sizeof *d);
  luaL_setmetatable(L, SQLITE_DB);
  d->path = strdup(path);
  if (d->path == NULL) return luaL_error(L, "not enough memory");

  /* The -wal and -shm files are created while the mode is set; SQLite
  ** copies the database file's mode to them, the umask covers the rest. */
  mode_t old = umask(077);
  int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  int rc = sqlite3_open_v2(path, &d->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(d->db, timeout);
    /* Reading the journal mode also proves the file is a database.
    ** synchronous=FULL: an in-progress marker must survive even a power
    ** loss before the target write it announces (one fsync per commit). */
    rc = sqlite3_exec(d->db, readonly ? "PRAGMA foreign_keys=ON; SELECT count(*) FROM sqlite_master"
                                      : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                                        "PRAGMA foreign_keys=ON",
                      NULL, NULL, NULL);
  }
  umask(old);
  if (rc != SQLITE_OK) return open_fail(L, d, path, rc);
  return 1;
}
/* }====== */

static const luaL_Reg meth[] = {
  {"exec", db_exec},
  {"run", db_run},
  {"first", db_first},
  {"all", db_all},
  {"rows", db_rows},
  {"begin", db_begin},
  {"commit", db_commit},
  {"rollback", db_rollback},
  {"transaction", db_transaction},
  {"changes", db_changes},
  {"path", db_path},
  {"close", db_close},
  {NULL, NULL}
};

static const luaL_Reg metameth[] = {
  {"__index", NULL},  /* placeholder */
  {"__gc", db_gc},
  {"__close", db_gc},
  {"__tostring", db_tostring},
  {NULL, NULL}
};

static const luaL_Reg stmtmeta[] = {
  {"__gc", stmt_gc},
  {"__close", stmt_gc},
  {NULL, NULL}
};

static const luaL_Reg lib[] = {
  {"open", l_open},
  {NULL, NULL}
};

int luaopen_qmig_sqlite(lua_State *L) {
  luaL_newlib(L, lib);
  lua_pushstring(L, sqlite3_libversion());
  lua_setfield(L, -2, "version");
  luaL_newmetatable(L, SQLITE_DB);
  luaL_setfuncs(L, metameth, 0);
  luaL_newlibtable(L, meth);
  luaL_setfuncs(L, meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, SQLITE_STMT);
  luaL_setfuncs(L, stmtmeta, 0);
  lua_pop(L, 1);
  return 1;
}
