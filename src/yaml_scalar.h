/*
** yaml_scalar.h — what a plain YAML scalar means.  The YAML 1.2 core
** schema, narrowed for files people write by hand:
**   ~ null Null NULL and the empty scalar  -> null
**   true True TRUE false False FALSE        -> boolean
**                                             (yes/no/on/off stay strings)
**   [-+]?[0-9]+, 0x.., 0o..                 -> integer, except that digits
**                                             with a leading zero (0012,
**                                             007) stay strings: they are
**                                             ids, codes and zip codes,
**                                             not octal numbers; so do
**                                             integers beyond 64 bits
**   1.5 1e3 .5 .inf -.inf .nan              -> float
**   anything else                           -> string
** Quoted and block scalars are always strings; the decoder checks that.
*/
#ifndef YAML_SCALAR_H
#define YAML_SCALAR_H

#include <stddef.h>
#include <lua.h>

/* Pushes the value of plain scalar s.  [-0, +1, m] */
void yaml_push_plain(lua_State *L, const char *s, size_t len);

/* Pushes s read as the given core tag ("int", "float", "bool", "null",
** "str"); returns 0 and pushes nothing when s is not such a value. */
int yaml_push_tagged(lua_State *L, const char *tag, const char *s, size_t len);

/* True when s, written plain, could be read as anything but the string s
** by us or by a YAML 1.1 reader (0012 as octal, yes as true): the
** encoder quotes those. */
int yaml_plain_is_ambiguous(const char *s, size_t len);

#endif
