/*
** lqmig.c — the `qmig` library table: host facts, time, uuid, sleep,
** Ctrl-C state, and lazy access to the sub-libraries (qmig.json, ...).
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "qmig.h"

#ifndef QMIG_PREFIX
#define QMIG_PREFIX "/usr/local"
#endif

/* Registry key (address of a static) of the weak set of scheduler tasks. */
static const char TASKS_KEY = 't';

static volatile sig_atomic_t interrupted_flag = 0;
static int trap_mode = 0;             /* 1: SIGINT only raises the flag */
static lua_State *sigint_state = NULL;
static char home[PATH_MAX];

int qmig_fail(lua_State *L, const char *msg, const char *code) {
  luaL_pushfail(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, code);
  return 3;
}

int qmig_interrupted(void) { return interrupted_flag != 0; }

/* {====== Ctrl-C: lua.c's hook trick, or a flag in trap mode */
static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void on_sigint(int sig) {
  interrupted_flag = 1;
  if (!trap_mode) {
    signal(sig, SIG_DFL);  /* a second Ctrl-C kills the process */
    if (sigint_state)
      lua_sethook(sigint_state, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
}

void qmig_install_sigint(lua_State *L) {
  sigint_state = L;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

void qmig_restore_sigint(void) {
  if (!trap_mode) signal(SIGINT, SIG_DFL);
}
/* }====== */

int qmig_in_task(lua_State *L) {
  if (!lua_isyieldable(L)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  int found = 0;
  if (lua_istable(L, -1)) {
    lua_pushthread(L);
    found = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return found;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* QMIG_HOME, else the folder of the executable when it holds lua/qmig
** (a build tree), else <exe>/../share/qmig-lua, else the install prefix. */
static void find_home(void) {
  const char *env = getenv("QMIG_HOME");
  if (env && *env) {
    snprintf(home, sizeof home, "%s", env);
    return;
  }
  char exe[PATH_MAX], probe[PATH_MAX + 32];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(probe, sizeof probe, "%s/lua/qmig", exe);
    if (is_dir(probe)) {
      snprintf(home, sizeof home, "%s", exe);
      return;
    }
    snprintf(probe, sizeof probe, "%s/../share/qmig-lua", exe);
    char resolved[PATH_MAX];
    if (is_dir(probe) && realpath(probe, resolved)) {
      snprintf(home, sizeof home, "%s", resolved);
      return;
    }
  }
  snprintf(home, sizeof home, "%s/share/qmig-lua", QMIG_PREFIX);
}

const char *qmig_home(void) { return home; }

/* {====== library functions */
static double realtime_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* qmig.time() -> seconds since the epoch, with fractions. */
static int q_time(lua_State *L) {
  lua_pushnumber(L, realtime_now());
  return 1;
}

/* qmig.monotonic() -> seconds on a clock that never jumps. */
static int q_monotonic(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
  return 1;
}

/* qmig.isotime([t]) -> "2024-01-11T06:00:00.123Z" (UTC). */
static int q_isotime(lua_State *L) {
  double t = luaL_optnumber(L, 1, realtime_now());
  time_t secs = (time_t)t;
  int ms = (int)((t - (double)secs) * 1000.0);
  if (ms < 0) ms = 0;
  if (ms > 999) ms = 999;
  struct tm tm;
  if (gmtime_r(&secs, &tm) == NULL) return luaL_error(L, "time out of range");
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  lua_pushstring(L, buf);
  return 1;
}

static int fill_random(lua_State *L, unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(buf + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return luaL_error(L, "getrandom: %s", strerror(errno));
    }
    got += (size_t)r;
  }
  return 0;
}

/* qmig.uuid() -> a random (version 4) UUID string. */
static int q_uuid(lua_State *L) {
  unsigned char b[16];
  fill_random(L, b, sizeof b);
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  char s[37];
  snprintf(s, sizeof s,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
           b[12], b[13], b[14], b[15]);
  lua_pushstring(L, s);
  return 1;
}

/* qmig.random_string(n [, alphabet]) -> n random characters (default
** [0-9a-zA-Z], what a QRS Xrfkey needs). */
static int q_random_string(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  size_t alen;
  const char *alphabet = luaL_optlstring(L, 2,
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", &alen);
  luaL_argcheck(L, n >= 0 && n <= 4096, 1, "length out of range");
  luaL_argcheck(L, alen > 0 && alen <= 256, 2, "alphabet must have 1..256 characters");
  unsigned char raw[4096];
  char out[4096];
  fill_random(L, raw, (size_t)n);
  for (lua_Integer i = 0; i < n; i++) out[i] = alphabet[raw[i] % alen];
  lua_pushlstring(L, out, (size_t)n);
  return 1;
}

/* qmig.sleep(seconds): inside a scheduler task it yields ("qmig.sleep", s)
** so other tasks run; elsewhere it blocks (Ctrl-C in trap mode cuts it). */
static int q_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  if (s < 0) s = 0;
  if (qmig_in_task(L)) {
    lua_pushliteral(L, "qmig.sleep");
    lua_pushnumber(L, s);
    return lua_yield(L, 2);
  }
  struct timespec req = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)}, rem;
  while (nanosleep(&req, &rem) != 0 && errno == EINTR && !interrupted_flag) req = rem;
  return 0;
}

static int q_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* qmig.isatty(fd) -> true when fd (0, 1, 2) is a terminal. */
static int q_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* qmig.interrupted() -> true once Ctrl-C was pressed. */
static int q_interrupted(lua_State *L) {
  lua_pushboolean(L, interrupted_flag);
  return 1;
}

/* host.trap_interrupt(on): in trap mode Ctrl-C never raises an error in
** the middle of Lua code; the engine polls qmig.interrupted() instead. */
static int q_trap_interrupt(lua_State *L) {
  trap_mode = lua_toboolean(L, 1);
  qmig_install_sigint(L);
  return 0;
}

/* host.mark_task(co): the scheduler declares co one of its tasks, so
** requests and sleeps inside it yield instead of blocking. */
static int q_mark_task(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);
  lua_pushvalue(L, 1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  return 0;
}

static int q_in_task(lua_State *L) {
  lua_pushboolean(L, qmig_in_task(L));
  return 1;
}

/* __index of the qmig table: qmig.json -> require "qmig.json". */
static int q_lazy_index(lua_State *L) {
  const char *name = luaL_checkstring(L, 2);
  lua_getglobal(L, "require");
  lua_pushfstring(L, "qmig.%s", name);
  lua_call(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);  /* cache it in the qmig table */
  return 1;
}
/* }====== */

static const luaL_Reg qmiglib[] = {
  {"time", q_time},
  {"monotonic", q_monotonic},
  {"isotime", q_isotime},
  {"uuid", q_uuid},
  {"random_string", q_random_string},
  {"sleep", q_sleep},
  {"getpid", q_getpid},
  {"isatty", q_isatty},
  {"interrupted", q_interrupted},
  {"in_task", q_in_task},
  {NULL, NULL}
};

int luaopen_qmig(lua_State *L) {
  luaL_newlib(L, qmiglib);
  lua_pushliteral(L, QMIG_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, home);
  lua_setfield(L, -2, "home");
  lua_createtable(L, 0, 1);  /* metatable for lazy sub-libraries */
  lua_pushcfunction(L, q_lazy_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 1;
}

/* qmig.host: what only the engine calls (lua/qmig/engine/sched.lua,
** engine/job.lua, store/cache.lua), kept off the qmig table that steps
** use: the scheduler's task mark, Ctrl-C trap mode, and the hook that
** runs before a write request is sent. */
static const luaL_Reg hostlib[] = {
  {"trap_interrupt", q_trap_interrupt},
  {"mark_task", q_mark_task},
  {"before_send", qmig_http_before_send},
  {NULL, NULL}
};

int luaopen_qmig_host(lua_State *L) {
  luaL_newlib(L, hostlib);
  return 1;
}

static const luaL_Reg preloads[] = {
  {"qmig", luaopen_qmig},
  {"qmig.http", luaopen_qmig_http},
  {"qmig.json", luaopen_qmig_json},
  {"qmig.yaml", luaopen_qmig_yaml},
  {"qmig.sqlite", luaopen_qmig_sqlite},
  {"qmig.fs", luaopen_qmig_fs},
  {"qmig.hash", luaopen_qmig_hash},
  {"qmig.ws", luaopen_qmig_ws},
  {"qmig.xlsx", luaopen_qmig_xlsx},
  {"qmig.xml", luaopen_qmig_xml},
  {"qmig.host", luaopen_qmig_host},
  {NULL, NULL}
};

void qmig_openlibs(lua_State *L, const char *argv0) {
  (void)argv0;
  find_home();
  luaL_openlibs(L);

  lua_createtable(L, 0, 1);  /* weak set of scheduler tasks */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &TASKS_KEY);

  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *lib = preloads; lib->func; lib++) {
    lua_pushcfunction(L, lib->func);
    lua_setfield(L, -2, lib->name);
  }
  lua_pop(L, 1);

  /* The host's own Lua modules come before anything on LUA_PATH, so a
  ** stray qmig module elsewhere can never shadow the engine. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", home, home, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);

  luaL_requiref(L, "qmig", luaopen_qmig, 1);
  lua_pop(L, 1);

  /* Built-in steps live in steps/<cat>/<action>.lua, not under lua/, yet a
  ** step pack wraps one with require "qmig.steps.<cat>.<action>" (the name
  ** LuaRocks installs them under).  A searcher after Lua's own maps that
  ** name to the file, so packages on package.path still come first. */
  if (luaL_dostring(L,
        "local home = require('qmig').home\n"
        "table.insert(package.searchers, function(name)\n"
        "  local cat, action = name:match('^qmig%.steps%.([%w_]+)%.([%w_]+)$')\n"
        "  if not cat then return nil end\n"
        "  local path = home .. '/steps/' .. cat .. '/' .. action .. '.lua'\n"
        "  local f = io.open(path, 'rb')\n"
        "  if not f then return '\\n\\tno built-in step ' .. path end\n"
        "  f:close()\n"
        "  local chunk, err = loadfile(path)\n"
        "  if not chunk then error(err, 0) end\n"
        "  return chunk, path\n"
        "end)\n") != LUA_OK) {
    lua_pop(L, 1); /* the host runs without it; steps still load by path */
  }
}
