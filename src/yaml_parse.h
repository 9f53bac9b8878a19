/*
** yaml_parse.h — builds Lua values from libyaml parser events.
*/
#ifndef YAML_PARSE_H
#define YAML_PARSE_H

#include <stddef.h>
#include <lua.h>

/* Alias expansion cap: a "billion laughs" file stops here. */
#define YAML_MAX_NODES 1000000
#define YAML_MAX_DEPTH 512

/* Decodes text.  all=0: the single document (error if there are more);
** all=1: an array of every document.  On success pushes value, positions
** and returns 2; on a data error pushes the message "name:line:col: ..."
** and returns -1.  Memory errors are raised.  [-0, +2|1, m] */
int yaml_decode(lua_State *L, const char *text, size_t len, const char *name, int all);

#endif
