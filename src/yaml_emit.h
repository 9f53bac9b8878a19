/*
** yaml_emit.h — Lua values -> YAML text through the libyaml emitter.
** Keys come out sorted, so the same value always gives the same text.
*/
#ifndef YAML_EMIT_H
#define YAML_EMIT_H

#include <lua.h>

/* Encodes the value at idx; pushes the text.  Raises
** "yaml.encode: cannot encode <what> at <path>".  [-0, +1, e] */
void yaml_encode(lua_State *L, int idx);

#endif
