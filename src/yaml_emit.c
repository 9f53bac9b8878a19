/*
** yaml_emit.c — Lua values -> YAML through the libyaml emitter.
** Strings are given the style that reads back as the same string: plain
** only when no reader (ours, or a YAML 1.1 one) would take it for a
** number, boolean or null; literal blocks for multi-line text.  libyaml
** itself still refuses plain or literal when the text needs quoting
** (": ", "#", leading spaces, control characters) and quotes instead.
*/
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <yaml.h>

#include "json_buf.h"
#include "json_mt.h"
#include "json_write.h"
#include "yaml_emit.h"
#include "yaml_scalar.h"

#define YEMITTER_MT "qmig.yaml.emitter"
#define MAXDEPTH 512

typedef struct yemitter {
  yaml_emitter_t em;
  int live;
} yemitter;

typedef struct yenc {
  lua_State *L;
  yemitter *e;
  int depth;
  int keys[MAXDEPTH + 1];     /* stack indices of the keys on the path */
  int parents[MAXDEPTH + 1];  /* stack indices of the tables on the path */
} yenc;

static int yemitter_gc(lua_State *L) {
  yemitter *e = (yemitter *)luaL_checkudata(L, 1, YEMITTER_MT);
  if (e->live) yaml_emitter_delete(&e->em);
  e->live = 0;
  return 0;
}

/* libyaml calls this from inside the emitter: it must not raise. */
static int write_handler(void *data, unsigned char *buffer, size_t size) {
  jbuf *b = (jbuf *)data;
  if (!jbuf_try_reserve(b, size)) return 0;
  memcpy(b->p + b->len, buffer, size);
  b->len += size;
  return 1;
}

/* Raises "yaml.encode: cannot encode <what> at <path>". */
static int fail(yenc *y, const char *what) {
  lua_State *L = y->L;
  luaL_Buffer b;
  lua_pushfstring(L, "yaml.encode: cannot encode %s at ", what);
  luaL_buffinit(L, &b);
  if (y->depth == 0) luaL_addstring(&b, "top level");
  for (int d = 0; d < y->depth; d++) {
    if (lua_type(L, y->keys[d]) == LUA_TSTRING) lua_pushfstring(L, ".%s", lua_tostring(L, y->keys[d]));
    /* cppcheck-suppress invalidLengthModifierError ; %I is lua_pushfstring's lua_Integer */
    else lua_pushfstring(L, "[%I]", (lua_Integer)lua_tointeger(L, y->keys[d]));
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_concat(L, 2);
  return lua_error(L);
}

static void emit(yenc *y, yaml_event_t *ev, int initialised) {
  if (!initialised) luaL_error(y->L, "not enough memory");
  if (!yaml_emitter_emit(&y->e->em, ev)) {  /* the emitter owns ev either way */
    if (y->e->em.error == YAML_MEMORY_ERROR || y->e->em.error == YAML_WRITER_ERROR)
      luaL_error(y->L, "not enough memory");
    fail(y, y->e->em.problem ? y->e->em.problem : "a value");
  }
}

static void emit_scalar(yenc *y, const char *s, size_t len, yaml_scalar_style_t style) {
  yaml_event_t ev;
  if (len > INT_MAX) fail(y, "a string this long");
  /* initialisation checks the UTF-8; running out of memory there is
  ** far less likely than a Latin-1 string */
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)len, 1, 1, style))
    fail(y, "a string that is not valid UTF-8");
  emit(y, &ev, 1);
}

static void emit_string(yenc *y, const char *s, size_t len) {
  yaml_scalar_style_t style = YAML_PLAIN_SCALAR_STYLE;
  if (memchr(s, '\n', len)) style = YAML_LITERAL_SCALAR_STYLE;
  else if (yaml_plain_is_ambiguous(s, len)) style = YAML_SINGLE_QUOTED_SCALAR_STYLE;
  emit_scalar(y, s, len, style);
}

static void emit_number(yenc *y, int idx) {
  lua_State *L = y->L;
  char buf[64];
  if (lua_isinteger(L, idx)) {
    snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
  } else {
    double d = lua_tonumber(L, idx);
    if (isnan(d)) snprintf(buf, sizeof buf, ".nan");
    else if (isinf(d)) snprintf(buf, sizeof buf, "%s", d > 0 ? ".inf" : "-.inf");
    else {
      json_format_double(d, buf, sizeof buf - 2);
      size_t m = strlen(buf);
      if (!strpbrk(buf, ".eE")) snprintf(buf + m, sizeof buf - m, ".0");  /* stays a float when read back */
    }
  }
  emit_scalar(y, buf, strlen(buf), YAML_PLAIN_SCALAR_STYLE);
}

static void encode_value(yenc *y, int idx);

static void encode_member(yenc *y, int t, int key, int value) {
  y->parents[y->depth] = t;
  y->keys[y->depth++] = key;
  encode_value(y, value);
  y->depth--;
}

typedef struct keyref {
  const char *s;
  size_t len;
} keyref;

static int keycmp(const void *a, const void *b) {
  const keyref *x = (const keyref *)a, *z = (const keyref *)b;
  int c = memcmp(x->s, z->s, x->len < z->len ? x->len : z->len);
  return c != 0 ? c : (x->len > z->len) - (x->len < z->len);
}

static void encode_table(yenc *y, int t) {
  lua_State *L = y->L;
  yaml_event_t ev;
  luaL_checkstack(L, 8, "yaml.encode");
  if (y->depth >= MAXDEPTH) fail(y, "a value nested this deep");
  for (int d = 0; d < y->depth; d++)  /* a cycle: the table is its own ancestor */
    if (lua_rawequal(L, y->parents[d], t)) fail(y, "a cycle");
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
      fail(y, lua_pushfstring(L, "a table key of type %s", luaL_typename(L, -1)));
    }
  }
  int is_array = json_has_array_mt(L, t);
  if (is_array && nstr > 0) fail(y, "an array with string keys");
  if (!is_array && nint > 0 && nstr > 0) fail(y, "a table with mixed keys");
  if (nint != max) fail(y, "a sparse array");

  if (is_array || nint > 0) {
    yaml_sequence_style_t style = nint == 0 ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE;
    emit(y, &ev, yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, style));
    for (lua_Integer i = 1; i <= nint; i++) {
      lua_pushinteger(L, i);
      lua_rawgeti(L, t, i);
      encode_member(y, t, lua_gettop(L) - 1, lua_gettop(L));
      lua_pop(L, 2);
    }
    emit(y, &ev, yaml_sequence_end_event_initialize(&ev));
  } else {
    yaml_mapping_style_t style = nstr == 0 ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE;
    emit(y, &ev, yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, style));
    keyref *keys = (keyref *)lua_newuserdatauv(L, sizeof(keyref) * (size_t)(nstr + 1), 0);
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
      lua_pop(L, 1);
      keys[n].s = lua_tolstring(L, -1, &keys[n].len);  /* alive: t holds it */
      n++;
    }
    qsort(keys, (size_t)n, sizeof *keys, keycmp);
    for (lua_Integer i = 0; i < n; i++) {
      lua_pushlstring(L, keys[i].s, keys[i].len);
      emit_string(y, keys[i].s, keys[i].len);
      lua_pushvalue(L, -1);
      lua_rawget(L, t);
      encode_member(y, t, lua_gettop(L) - 1, lua_gettop(L));
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
    emit(y, &ev, yaml_mapping_end_event_initialize(&ev));
  }
}

static void encode_value(yenc *y, int idx) {
  lua_State *L = y->L;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      emit_scalar(y, "null", 4, YAML_PLAIN_SCALAR_STYLE);
      break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) emit_scalar(y, "true", 4, YAML_PLAIN_SCALAR_STYLE);
      else emit_scalar(y, "false", 5, YAML_PLAIN_SCALAR_STYLE);
      break;
    case LUA_TNUMBER:
      emit_number(y, idx);
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      emit_string(y, s, len);
      break;
    }
    case LUA_TLIGHTUSERDATA:
      if (!json_isnull(L, idx)) fail(y, "userdata");
      emit_scalar(y, "null", 4, YAML_PLAIN_SCALAR_STYLE);
      break;
    case LUA_TTABLE:
      encode_table(y, idx);
      break;
    default:
      fail(y, luaL_typename(L, idx));
  }
}

void yaml_encode(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  jbuf *out = jbuf_push(L);
  yemitter *e = (yemitter *)lua_newuserdatauv(L, sizeof(yemitter), 0);
  e->live = 0;
  if (luaL_newmetatable(L, YEMITTER_MT)) {
    lua_pushcfunction(L, yemitter_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if (!yaml_emitter_initialize(&e->em)) luaL_error(L, "not enough memory");
  e->live = 1;
  yaml_emitter_set_output(&e->em, write_handler, out);
  yaml_emitter_set_unicode(&e->em, 1);
  yaml_emitter_set_width(&e->em, -1);  /* never fold long values */
  yaml_emitter_set_indent(&e->em, 2);
  yenc y;
  y.L = L;
  y.e = e;
  y.depth = 0;
  yaml_event_t ev;
  emit(&y, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
  emit(&y, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
  encode_value(&y, idx);
  emit(&y, &ev, yaml_document_end_event_initialize(&ev, 1));
  emit(&y, &ev, yaml_stream_end_event_initialize(&ev));
  yaml_emitter_delete(&e->em);  /* now rather than at the next collection */
  e->live = 0;
  lua_pop(L, 2);
  lua_pushlstring(L, out->p, out->len);
  lua_remove(L, -2);
}
