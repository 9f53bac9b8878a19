/*
** lyaml.c — the qmig.yaml library: job files in, YAML out.
** Job files are written by people, so decode errors are data
** (nil, "job.yaml:12:3: what", "yaml") and every decoded table comes with
** its position, for the validator's "job.yaml:12: unknown key" messages.
** Values share json's null and array metatable, so a YAML list stays a
** JSON array and a key written with no value is still visible.
*/
#include <lua.h>
#include <lauxlib.h>

#include "qmig.h"
#include "json_mt.h"
#include "yaml_emit.h"
#include "yaml_parse.h"

static int decode(lua_State *L, int all) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "<string>");
  lua_settop(L, 2);
  if (yaml_decode(L, text, len, name, all) < 0)
    return qmig_fail(L, lua_tostring(L, -1), "yaml");
  return 2;
}

/* yaml.decode(text [, name]) -> value, positions | nil, msg, "yaml" */
static int y_decode(lua_State *L) { return decode(L, 0); }

/* yaml.decode_all(text [, name]) -> {documents}, positions | nil, msg, "yaml" */
static int y_decode_all(lua_State *L) { return decode(L, 1); }

/* yaml.encode(value) -> text */
static int y_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  yaml_encode(L, 1);
  return 1;
}

/* yaml.position(positions, tbl [, key]) -> line of tbl, or of its key or
** item, or nil when unknown. */
static int y_position(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 3);
  if (!lua_istable(L, 2)) return luaL_pushfail(L), 1;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, 1) != LUA_TTABLE) return luaL_pushfail(L), 1;
  if (lua_isnil(L, 3)) {
    lua_getfield(L, -1, "line");
    return 1;
  }
  if (lua_getfield(L, -1, "keys") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_getfield(L, -1, "items");
  }
  if (!lua_istable(L, -1)) return luaL_pushfail(L), 1;
  lua_pushvalue(L, 3);
  lua_rawget(L, -2);
  return 1;
}

static const luaL_Reg yamllib[] = {
  {"decode", y_decode},
  {"decode_all", y_decode_all},
  {"encode", y_encode},
  {"position", y_position},
  {NULL, NULL}
};

int luaopen_qmig_yaml(lua_State *L) {
  luaL_newlib(L, yamllib);
  json_pushnull(L);
  lua_setfield(L, -2, "null");
  json_push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
  return 1;
}
