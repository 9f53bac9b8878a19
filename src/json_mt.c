/*
** json_mt.c — the array metatable shared by qmig.json and qmig.yaml.
*/
#include <lua.h>
#include <lauxlib.h>

#include "json_mt.h"

/* Registry key: the address of this static. */
static const char ARRAY_MT_KEY = 'a';

void json_push_array_mt(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "qmig.json.array");  /* shown by tostring-style helpers */
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY);
}

void json_set_array_mt(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  json_push_array_mt(L);
  lua_setmetatable(L, idx);
}

int json_has_array_mt(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}
