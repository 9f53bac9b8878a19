/*
** json_write.c — JSON walker: our own writer for the pretty/sorted path,
** and the pre-flight check in front of cjson.  See json_write.h.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "json_mt.h"
#include "json_write.h"

/* cjson 2.1.0 prints every number with "%.14g", which is exact for integers
** of up to 14 digits and wrong beyond. */
#define CJSON_EXACT_INT 100000000000000LL  /* 1e14 */

void json_writer_init(jwriter *w, lua_State *L, jbuf *out) {
  memset(w, 0, sizeof *w);
  w->L = L;
  w->out = out;
  if (out == NULL) {
    lua_newtable(L);
    w->subst = lua_gettop(L);
  }
}

int json_format_double(double d, char *buf, size_t size) {
  if (!isfinite(d)) return 0;
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) break;
  }
  return 1;
}

/* {====== error paths */

static int is_identifier(const char *s, size_t len) {
  if (len == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
    return 0;
  for (size_t i = 1; i < len; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

/* Raises "json.encode: cannot encode <what> at .a.b[2]" (Lua indices). */
static int fail(jwriter *w, const char *what) {
  lua_State *L = w->L;
  luaL_Buffer b;
  lua_pushfstring(L, "json.encode: cannot encode %s at ", what);
  luaL_buffinit(L, &b);
  if (w->depth == 0) luaL_addstring(&b, "top level");
  for (int d = 0; d < w->depth; d++) {
    int k = w->keys[d];
    if (lua_type(L, k) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, k, &len);
      if (is_identifier(s, len)) {
        luaL_addchar(&b, '.');
        luaL_addlstring(&b, s, len);
      } else {
        lua_pushfstring(L, "[\"%s\"]", s);
        luaL_addvalue(&b);
      }
    } else {
      lua_pushfstring(L, "[%s]", luaL_tolstring(L, k, NULL));
      lua_remove(L, -2);
      luaL_addvalue(&b);
    }
  }
  luaL_pushresult(&b);
  lua_concat(L, 2);
  return lua_error(L);
}
/* }====== */

/* {====== output */

static void put(jwriter *w, const char *s, size_t n) { jbuf_add(w->L, w->out, s, n); }
static void putc_(jwriter *w, char c) { jbuf_addc(w->L, w->out, c); }

static void newline(jwriter *w) {
  if (!w->indent) return;
  putc_(w, '\n');
  for (int i = 0; i < w->depth; i++) put(w, "  ", 2);
}

static void put_string(jwriter *w, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  putc_(w, '"');
  size_t run = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      default: break;
    }
    if (esc == NULL && c >= 0x20) continue;
    put(w, s + run, i - run);
    run = i + 1;
    if (esc) {
      put(w, esc, strlen(esc));
    } else {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      put(w, u, 6);
    }
  }
  put(w, s + run, len - run);
  putc_(w, '"');
}
/* }====== */

/* Check mode: remembers that parent[key] must reach cjson as the raw JSON
** text `raw` (NULL: "[]") instead of its value. */
static void patch(jwriter *w, int vidx, const char *raw) {
  lua_State *L = w->L;
  if (w->depth == 0) return;  /* the caller handles a bare top-level value */
  int base = w->nsubst * 4;
  lua_pushvalue(L, w->parents[w->depth - 1]);
  lua_rawseti(L, w->subst, base + 1);
  lua_pushvalue(L, w->keys[w->depth - 1]);
  lua_rawseti(L, w->subst, base + 2);
  lua_pushvalue(L, vidx);
  lua_rawseti(L, w->subst, base + 3);
  if (raw) lua_pushstring(L, raw);
  else lua_pushboolean(L, 0);  /* the common case, an empty array: one shared marker */
  lua_rawseti(L, w->subst, base + 4);
  w->nsubst++;
}

static void walk_number(jwriter *w, int idx) {
  lua_State *L = w->L;
  char buf[64];
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)i);
    if (w->out) put(w, buf, strlen(buf));
    else if (i >= CJSON_EXACT_INT || i <= -CJSON_EXACT_INT) patch(w, idx, buf);
    return;
  }
  double d = lua_tonumber(L, idx);
  if (isnan(d)) fail(w, "NaN");
  if (!json_format_double(d, buf, sizeof buf)) fail(w, d > 0 ? "inf" : "-inf");
  if (w->out) {
    put(w, buf, strlen(buf));
  } else {
    char c14[64];
    snprintf(c14, sizeof c14, "%.14g", d);
    if (strtod(c14, NULL) != d) patch(w, idx, buf);
  }
}

static size_t ff_run(const char *s, size_t len) {
  size_t best = 0;
  const char *end = s + len, *p = s;
  while ((p = memchr(p, 0xFF, (size_t)(end - p))) != NULL) {
    const char *q = p;
    while (q < end && (unsigned char)*q == 0xFF) q++;
    if ((size_t)(q - p) > best) best = (size_t)(q - p);
    p = q;
  }
  return best;
}

static void walk_string(jwriter *w, int idx) {
  size_t len;
  const char *s = lua_tolstring(w->L, idx, &len);
  if (w->out) {
    put_string(w, s, len);
  } else {
    size_t run = ff_run(s, len);
    if (run > w->ffrun) w->ffrun = run;
  }
}

typedef struct keyref {
  const char *s;
  size_t len;
} keyref;

static int keycmp(const void *a, const void *b) {
  const keyref *x = (const keyref *)a, *y = (const keyref *)b;
  int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
  if (c != 0) return c;
  return (x->len > y->len) - (x->len < y->len);
}

static void walk_member(jwriter *w, int t, int key, int value) {
  w->parents[w->depth] = t;
  w->keys[w->depth] = key;
  w->depth++;
  json_write_value(w, value);
  w->depth--;
}

static void walk_array(jwriter *w, int t, lua_Integer n) {
  lua_State *L = w->L;
  if (w->out) putc_(w, '[');
  if (n == 0) {
    if (w->out) putc_(w, ']');
    else patch(w, t, NULL);
    return;
  }
  for (lua_Integer i = 1; i <= n; i++) {
    if (w->out && i > 1) putc_(w, ',');
    w->depth++;
    if (w->out) newline(w);
    w->depth--;
    lua_pushinteger(L, i);
    lua_rawgeti(L, t, i);
    walk_member(w, t, lua_gettop(L) - 1, lua_gettop(L));
    lua_pop(L, 2);
  }
  if (w->out) {
    newline(w);
    putc_(w, ']');
  }
}

static void write_key(jwriter *w, int key, int first) {
  size_t len;
  const char *s = lua_tolstring(w->L, key, &len);
  if (!first) putc_(w, ',');
  w->depth++;
  newline(w);
  w->depth--;
  put_string(w, s, len);
  if (w->indent) put(w, ": ", 2);
  else putc_(w, ':');
}

static void walk_object(jwriter *w, int t, lua_Integer n) {
  lua_State *L = w->L;
  if (w->out) putc_(w, '{');
  if (w->out && w->sort_keys) {
    keyref *keys = (keyref *)lua_newuserdatauv(L, sizeof(keyref) * (size_t)n, 0);
    lua_Integer i = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
      lua_pop(L, 1);
      keys[i].s = lua_tolstring(L, -1, &keys[i].len);  /* kept alive by t */
      i++;
    }
    qsort(keys, (size_t)n, sizeof *keys, keycmp);
    for (i = 0; i < n; i++) {
      lua_pushlstring(L, keys[i].s, keys[i].len);
      write_key(w, lua_gettop(L), i == 0);
      lua_pushvalue(L, -1);
      lua_rawget(L, t);
      walk_member(w, t, lua_gettop(L) - 1, lua_gettop(L));
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  } else {
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, t)) {
      if (w->out) write_key(w, lua_gettop(L) - 1, first);
      else walk_string(w, lua_gettop(L) - 1);
      first = 0;
      walk_member(w, t, lua_gettop(L) - 1, lua_gettop(L));
      lua_pop(L, 1);
    }
  }
  if (w->out) {
    if (n > 0) newline(w);
    putc_(w, '}');
  }
}

static void walk_table(jwriter *w, int t) {
  lua_State *L = w->L;
  luaL_checkstack(L, 8, "json.encode");
  if (w->depth >= JSON_MAXDEPTH) fail(w, "a value nested this deep");
  /* A cycle is a table that is its own ancestor; paths are short, and
  ** this is much cheaper than a hash set on values with 100k tables. */
  for (int d = 0; d < w->depth; d++)
    if (lua_rawequal(L, w->parents[d], t)) fail(w, "a cycle");

  /* Classify by the keys: a Lua table is an array, an object, or neither. */
  lua_Integer nint = 0, nstr = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      nstr++;
    } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
      nint++;
      if (lua_tointeger(L, -1) > max) max = lua_tointeger(L, -1);
    } else {
      const char *what = lua_pushfstring(L, "a table key of type %s", luaL_typename(L, -1));
      fail(w, what);
    }
  }
  int is_array = json_has_array_mt(L, t);
  if (is_array && nstr > 0) fail(w, "an array with string keys");
  if (!is_array && nint > 0 && nstr > 0) fail(w, "a table with mixed keys");
  if (nint != max) fail(w, "a sparse array");

  if (is_array || nint > 0) walk_array(w, t, nint);
  else walk_object(w, t, nstr);
}

void json_write_value(jwriter *w, int idx) {
  lua_State *L = w->L;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      if (w->out) put(w, "null", 4);
      break;
    case LUA_TBOOLEAN:
      if (w->out) put(w, lua_toboolean(L, idx) ? "true" : "false", lua_toboolean(L, idx) ? 4 : 5);
      break;
    case LUA_TNUMBER:
      walk_number(w, idx);
      break;
    case LUA_TSTRING:
      walk_string(w, idx);
      break;
    case LUA_TLIGHTUSERDATA:
      if (!json_isnull(L, idx)) fail(w, "userdata");
      if (w->out) put(w, "null", 4);
      break;
    case LUA_TTABLE:
      walk_table(w, idx);
      break;
    default:
      fail(w, luaL_typename(L, idx));
  }
}
