/*
** driver.h — the shared libFuzzer driver of the qmig-lua harnesses.
** Each harness defines FUZZ_NAME and FUZZ_LUA: a Lua chunk returning a
** function check(bytes).  The driver opens one Lua state with
** qmig_openlibs (as the host does), loads the chunk once, and calls
** check for every input in protected mode.  A raised Lua error is a
** broken invariant: the driver prints it and aborts, so libFuzzer keeps
** the input as a crash.  Memory errors abort too (inputs are capped by
** -max_len, so an out-of-memory is a bug of its own).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "qmig.h"

#ifndef QMIG_FUZZ_HOME
#define QMIG_FUZZ_HOME "."
#endif

static lua_State *FL;
static int fuzz_check_ref = LUA_NOREF;
static unsigned long fuzz_runs;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  setenv("QMIG_HOME", QMIG_FUZZ_HOME, 0);  /* lua/qmig of the source tree */
  FL = luaL_newstate();
  if (FL == NULL) abort();
  qmig_openlibs(FL, "fuzz");
  lua_pushcfunction(FL, fuzz_traceback);
  if (luaL_loadbuffer(FL, FUZZ_LUA, sizeof(FUZZ_LUA) - 1, "=" FUZZ_NAME) != LUA_OK ||
      lua_pcall(FL, 0, 1, 1) != LUA_OK || !lua_isfunction(FL, -1)) {
    fprintf(stderr, "%s: cannot load the harness: %s\n", FUZZ_NAME, lua_tostring(FL, -1));
    abort();
  }
  fuzz_check_ref = luaL_ref(FL, LUA_REGISTRYINDEX);
  lua_pop(FL, 1);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = FL;
  lua_pushcfunction(L, fuzz_traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fuzz_check_ref);
  lua_pushlstring(L, (const char *)data, size);
  int status = lua_pcall(L, 1, 0, -3);
  if (status != LUA_OK) {
    fprintf(stderr, "%s: invariant broken (status %d): %s\n", FUZZ_NAME, status, lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  if (++fuzz_runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
