/*
** json_buf.c — growable byte buffer owned by a Lua userdata.
*/
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "json_buf.h"

#define JBUF_MT "qmig.jbuf"

static int jbuf_gc(lua_State *L) {
  jbuf_release((jbuf *)luaL_checkudata(L, 1, JBUF_MT));
  return 0;
}

jbuf *jbuf_push(lua_State *L) {
  jbuf *b = (jbuf *)lua_newuserdatauv(L, sizeof(jbuf), 0);
  b->p = NULL;
  b->len = b->cap = 0;
  if (luaL_newmetatable(L, JBUF_MT)) {
    lua_pushcfunction(L, jbuf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, jbuf_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  return b;
}

int jbuf_try_reserve(jbuf *b, size_t n) {
  if (b->cap - b->len >= n) return 1;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < n) {
    if (cap > ((size_t)-1) / 2) return 0;
    cap *= 2;
  }
  char *p = (char *)realloc(b->p, cap);
  if (p == NULL) return 0;
  b->p = p;
  b->cap = cap;
  return 1;
}

void jbuf_add(lua_State *L, jbuf *b, const void *s, size_t n) {
  if (!jbuf_try_reserve(b, n)) luaL_error(L, "not enough memory");
  if (n) memcpy(b->p + b->len, s, n);
  b->len += n;
}

void jbuf_addc(lua_State *L, jbuf *b, char c) {
  if (b->len == b->cap && !jbuf_try_reserve(b, 1)) luaL_error(L, "not enough memory");
  b->p[b->len++] = c;
}

void jbuf_adds(lua_State *L, jbuf *b, const char *s) {
  jbuf_add(L, b, s, strlen(s));
}

void jbuf_release(jbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}
