/*
** json_mt.h — the two values qmig.json and qmig.yaml must agree on: the
** metatable that marks a table as a JSON array (so `[]` survives a
** decode/encode trip) and `null` (cjson's NULL lightuserdata).
*/
#ifndef JSON_MT_H
#define JSON_MT_H

#include <lua.h>

/* Pushes the shared array metatable, creating it on first use.  [-0, +1, m] */
void json_push_array_mt(lua_State *L);

/* Sets the array metatable on the table at idx.  [-0, +0, m] */
void json_set_array_mt(lua_State *L, int idx);

/* True when the value at idx is a table carrying the array metatable. */
int json_has_array_mt(lua_State *L, int idx);

/* null is what cjson uses: a NULL light userdata. */
#define json_pushnull(L) lua_pushlightuserdata((L), NULL)
#define json_isnull(L, idx) \
  (lua_type((L), (idx)) == LUA_TLIGHTUSERDATA && lua_touserdata((L), (idx)) == NULL)

#endif
