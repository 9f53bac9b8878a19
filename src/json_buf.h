/*
** json_buf.h — a growable byte buffer owned by a Lua userdata.
** qmig.json and qmig.yaml build outputs far larger than a luaL_Buffer
** likes to juggle while other values come and go on the stack; owning
** the memory through a userdata with __gc means an error raised halfway
** (bad value, out of memory) never leaks it.
*/
#ifndef JSON_BUF_H
#define JSON_BUF_H

#include <stddef.h>
#include <lua.h>

typedef struct jbuf {
  char *p;
  size_t len, cap;
} jbuf;

/* Pushes a new empty buffer (a full userdata).  [-0, +1, m] */
jbuf *jbuf_push(lua_State *L);

/* Makes room for n more bytes; 0 when memory is exhausted.  Never raises,
** so it is safe inside libyaml callbacks. */
int jbuf_try_reserve(jbuf *b, size_t n);

/* Appends, raising a memory error on failure.  [-0, +0, m] */
void jbuf_add(lua_State *L, jbuf *b, const void *s, size_t n);
void jbuf_addc(lua_State *L, jbuf *b, char c);
void jbuf_adds(lua_State *L, jbuf *b, const char *s);

/* Frees the memory now rather than at the next collection. */
void jbuf_release(jbuf *b);

#endif
