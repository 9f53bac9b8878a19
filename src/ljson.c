/*
** ljson.c — the qmig.json library: lua-cjson with the JSON shape kept.
** Qlik's QRS API takes whole objects back on PUT, so a GET -> edit -> PUT
** must give back `[]` as `[]`, `{}` as `{}`, `null` as `null` and ids as
** the same digits.  cjson 2.1.0 (Debian) loses all of that, so:
**  - decode: json_scan marks empty arrays and long integers before cjson
**    parses, then a fix-up walk restores them, puts array_mt on arrays and
**    turns integral floats back into integers;
**  - encode: json_write checks the value first (errors name the path) and
**    lists what cjson would print wrongly; those fields are swapped for
**    marker strings during the cjson call and spliced back as raw text.
** cjson is private to this library (its own cjson.new() instance), so no
** other code can change its settings under us.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lua-cjson.h>

#include "qmig.h"
#include "json_buf.h"
#include "json_mt.h"
#include "json_scan.h"
#include "json_write.h"

/* Upvalues of decode/encode. */
#define CJSON_DECODE lua_upvalueindex(1)
#define CJSON_ENCODE lua_upvalueindex(2)

/* {====== decode */

/* Line and column (1-based, column in UTF-8 characters) of byte off. */
static void line_col(const char *s, size_t n, size_t off, size_t *line, size_t *col) {
  if (off > n) off = n;
  *line = 1;
  size_t bol = 0;
  for (const char *p = s; (p = memchr(p, '\n', off - (size_t)(p - s))) != NULL; p++) {
    (*line)++;
    bol = (size_t)(p - s) + 1;
  }
  *col = 1;
  for (size_t i = bol; i < off; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) (*col)++;
}

/* Returns nil, "invalid JSON: <what> at character N (line L, column C)",
** "json", where N counts bytes from 1 in the caller's text. */
static int invalid(lua_State *L, const char *text, size_t n, const char *what, size_t off) {
  size_t line, col;
  line_col(text, n, off, &line, &col);
  /* cppcheck-suppress invalidLengthModifierError ; %I is lua_pushfstring's lua_Integer */
  lua_pushfstring(L, "invalid JSON: %s at character %I (line %I, column %I)", what,
                  (lua_Integer)off + 1, (lua_Integer)line, (lua_Integer)col);
  return qmig_fail(L, lua_tostring(L, -1), "json");
}

/* cjson says "... at character N" with N counting the rewritten text. */
static int cjson_error(lua_State *L, const jscan *sc, const char *text, size_t n) {
  const char *msg = lua_tostring(L, -1);
  if (msg == NULL) msg = "unreadable error";
  const char *at = strstr(msg, " at character ");
  size_t off = n;
  if (at) {
    off = (size_t)strtoull(at + 14, NULL, 10);
    off = off > 0 ? off - 1 : 0;
    if (sc->nrw > 0) off = json_scan_origpos(sc, off);
    lua_pushlstring(L, msg, (size_t)(at - msg));
    msg = lua_tostring(L, -1);
  }
  return invalid(L, text, n, msg, off);
}

typedef struct fixup {
  lua_State *L;
  const jscan *sc;
  const char *text;
  size_t n;
  const jrewrite *bad_key;  /* a marker that ended up as an object key */
  int huge;                 /* a number beyond the double range was read */
} fixup;

/* Replaces the value on top of the stack when it needs it; returns 1 when
** it was replaced (the caller stores it back). */
static int fix_value(fixup *f);

static void fix_table(fixup *f, int t) {
  lua_State *L = f->L;
  luaL_checkstack(L, 6, "json.decode");
  if (lua_rawgeti(L, t, 1) != LUA_TNIL) {  /* cjson gives objects string keys only */
    lua_pop(L, 1);
    lua_Integer n = (lua_Integer)lua_rawlen(L, t);
    for (lua_Integer i = 1; i <= n && !f->bad_key; i++) {
      lua_rawgeti(L, t, i);
      if (fix_value(f)) lua_rawseti(L, t, i);
      else lua_pop(L, 1);
    }
    json_set_array_mt(L, t);
    return;
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (f->sc->nrw > 0) {
      size_t len;
      const char *k = lua_tolstring(L, -2, &len);
      const jrewrite *r = json_scan_marker(f->sc, k, len);
      if (r) {
        f->bad_key = r;
        lua_pop(L, 2);
        return;
      }
    }
    if (fix_value(f)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, t);  /* assigning an existing field is allowed mid-traversal */
    } else {
      lua_pop(L, 1);
    }
    if (f->bad_key) {
      lua_pop(L, 1);
      return;
    }
  }
}

static int fix_value(fixup *f) {
  lua_State *L = f->L;
  switch (lua_type(L, -1)) {
    case LUA_TNUMBER: {
      if (lua_isinteger(L, -1)) return 0;
      double d = lua_tonumber(L, -1);
      /* 1e400 reads as inf, which no JSON can carry back (found by
      ** tests/fuzz/fuzz_json): the decode fails instead, see j_decode */
      if (isinf(d)) f->huge = 1;
      /* -0 stays a float so it prints back as -0 */
      /* cppcheck-suppress incorrectLogicOperator ; cppcheck 2.10 misreads the hex floats ±2^63 */
      if (d != floor(d) || (d == 0 && signbit(d)) || d < -0x1p63 || d >= 0x1p63) return 0;
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)d);
      return 1;
    }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      const jrewrite *r = json_scan_marker(f->sc, s, len);
      if (r == NULL) return 0;
      lua_pop(L, 1);
      if (r->kind == JREW_ARRAY) {
        lua_newtable(L);
        json_set_array_mt(L, -1);
      } else if (!lua_stringtonumber(L, lua_pushlstring(L, f->text + r->pos, r->len))) {
        luaL_error(L, "json.decode: unreadable integer");  /* the scanner let a non-number through */
      } else {
        lua_remove(L, -2);  /* the literal; the number stays (a float beyond int64) */
        /* same rules as any other number (found by tests/fuzz/fuzz_json):
        ** -9223372036854775809 rounds to the float -2^63, which must read
        ** as the integer a re-encoded copy would give; 1e400-sized
        ** integers are out of range */
        (void)fix_value(f);
      }
      return 1;
    }
    case LUA_TTABLE:
      fix_table(f, lua_gettop(L));
      return 0;
    default:
      return 0;
  }
}

/* True when s holds "\\ud" or "\\uD" somewhere (a surrogate escape). */
static int may_have_surrogate(const char *s, size_t n) {
  const char *end = s + n, *p = s;
  while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL && end - p >= 3) {
    if (p[1] == 'u' && (p[2] == 'd' || p[2] == 'D')) return 1;
    p += 2;  /* skips the escaped character too, so "\\\\ud" is not one */
  }
  return 0;
}

/* json.decode(text) -> value | nil, msg, "json"  [-1, +1|3, e] */
static int j_decode(lua_State *L) {
  size_t n;
  const char *text = luaL_checklstring(L, 1, &n);
  lua_settop(L, 1);
  if (may_have_surrogate(text, n)) {  /* rare: a copy is fine */
    jbuf *copy = jbuf_push(L);
    jbuf_add(L, copy, text, n);
    if (json_fix_surrogates(copy->p, n) > 0) {
      lua_pushlstring(L, copy->p, n);
      lua_replace(L, 1);
      text = lua_tostring(L, 1);
    }
    jbuf_release(copy);
    lua_settop(L, 1);
  }
  jscan sc;
  json_scan(L, text, n, &sc);  /* stack: text, rewritten, rewrites */
  lua_pushvalue(L, CJSON_DECODE);
  if (sc.nrw > 0) {
    lua_pushlstring(L, sc.text->p, sc.text->len);
    jbuf_release(sc.text);
  } else {
    lua_pushvalue(L, 1);
  }
  int status = lua_pcall(L, 1, 1, 0);
  if (status == LUA_ERRMEM) return lua_error(L);
  if (status != LUA_OK) return cjson_error(L, &sc, text, n);
  fixup f = {L, &sc, text, n, NULL, 0};
  (void)fix_value(&f);  /* a replaced top-level value is already on top */
  if (f.bad_key) return invalid(L, text, n, "expected an object key string", f.bad_key->pos);
  if (f.huge) return invalid(L, text, n, "number out of range", json_scan_huge(text, n));
  return 1;
}
/* }====== */

/* {====== encode */

static int opt_flag(lua_State *L, int opts, const char *name) {
  if (lua_isnoneornil(L, opts)) return 0;
  lua_getfield(L, opts, name);
  int on = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return on;
}

/* Our own writer: pretty printing, sorted keys, bare scalars. */
static int encode_own(lua_State *L, int indent, int sort_keys) {
  jbuf *out = jbuf_push(L);
  jwriter w;
  json_writer_init(&w, L, out);
  w.indent = indent;
  w.sort_keys = sort_keys;
  json_write_value(&w, 1);
  lua_pushlstring(L, out->p, out->len);
  return 1;
}

/* Splices raw text back where cjson printed a marker string: every run of
** k 0xFF bytes in the output starts one (no user string has such a run). */
static void splice_markers(lua_State *L, const char *s, size_t n, size_t k) {
  jbuf *out = jbuf_push(L);
  const char *end = s + n, *p = s, *copied = s;
  while ((p = memchr(p, 0xFF, (size_t)(end - p))) != NULL) {
    const char *q = p;
    while (q < end && (unsigned char)*q == 0xFF) q++;
    if ((size_t)(q - p) >= k) {
      const char *close = memchr(q, '"', (size_t)(end - q));
      if (close == NULL) close = end;  /* cannot happen: cjson closes strings */
      jbuf_add(L, out, copied, (size_t)(p - 1 - copied));  /* drop the opening quote */
      jbuf_add(L, out, q, (size_t)(close - q));
      copied = close < end ? close + 1 : end;
      q = copied;
    }
    p = q;
  }
  jbuf_add(L, out, copied, (size_t)(end - copied));
  lua_pushlstring(L, out->p, out->len);
}

/* Calls cjson.encode(value) after swapping the listed fields for
** markers; always puts the fields back, even when cjson fails. */
static int encode_cjson(lua_State *L, jwriter *w) {
  int subst = w->subst;
  if (w->nsubst > 0) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < w->ffrun + 1; i++) luaL_addchar(&b, (char)0xFF);
    luaL_pushresult(&b);
    int prefix = lua_gettop(L);
    lua_pushvalue(L, prefix);
    lua_pushliteral(L, "[]");
    lua_concat(L, 2);
    int empty_array = lua_gettop(L);
    for (int i = 0; i < w->nsubst; i++) {
      lua_rawgeti(L, subst, 4 * i + 1);  /* parent */
      lua_rawgeti(L, subst, 4 * i + 2);  /* key */
      if (lua_rawgeti(L, subst, 4 * i + 4) == LUA_TSTRING) {  /* raw text */
        lua_pushvalue(L, prefix);
        lua_insert(L, -2);
        lua_concat(L, 2);
      } else {
        lua_pop(L, 1);
        lua_pushvalue(L, empty_array);
      }
      lua_rawset(L, -3);
      lua_pop(L, 1);
    }
  }
  lua_pushvalue(L, CJSON_ENCODE);
  lua_pushvalue(L, 1);
  int status = lua_pcall(L, 1, 1, 0);
  for (int i = w->nsubst - 1; i >= 0; i--) {  /* newest first, for shared tables */
    lua_rawgeti(L, subst, 4 * i + 1);
    lua_rawgeti(L, subst, 4 * i + 2);
    lua_rawgeti(L, subst, 4 * i + 3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  if (status != LUA_OK) return lua_error(L);
  if (w->nsubst == 0) return 1;
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  splice_markers(L, s, len, w->ffrun + 1);
  return 1;
}

/* json.encode(value [, {indent=, sort_keys=}]) -> string  [-1|2, +1, e] */
static int j_encode(lua_State *L) {
  luaL_checkany(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  int indent = opt_flag(L, 2, "indent"), sort_keys = opt_flag(L, 2, "sort_keys");
  if (indent || sort_keys || lua_type(L, 1) != LUA_TTABLE) return encode_own(L, indent, sort_keys);
  jwriter w;
  json_writer_init(&w, L, NULL);
  json_write_value(&w, 1);
  lua_pushnil(L);
  if (json_has_array_mt(L, 1) && !lua_next(L, 1)) {
    lua_pushliteral(L, "[]");
    return 1;
  }
  lua_settop(L, w.subst);
  return encode_cjson(L, &w);
}
/* }====== */

/* json.array([t]) -> t, marked as an array (a new table when absent). */
static int j_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  json_set_array_mt(L, 1);
  return 1;
}

static int j_is_array(lua_State *L) {
  lua_pushboolean(L, json_has_array_mt(L, 1));
  return 1;
}

static int j_is_null(lua_State *L) {
  lua_pushboolean(L, json_isnull(L, 1));
  return 1;
}

/* Pushes a private cjson instance, configured for strict JSON. */
static void new_cjson(lua_State *L) {
  lua_pushcfunction(L, luaopen_cjson);
  lua_call(L, 0, 1);
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1);
  lua_remove(L, -2);
  lua_getfield(L, -1, "decode_invalid_numbers");
  lua_pushboolean(L, 0);  /* NaN, Infinity and hex are not JSON */
  lua_call(L, 1, 0);
}

static const luaL_Reg jsonlib[] = {
  {"array", j_array},
  {"is_array", j_is_array},
  {"is_null", j_is_null},
  {NULL, NULL}
};

int luaopen_qmig_json(lua_State *L) {
  luaL_newlib(L, jsonlib);       /* lib */
  new_cjson(L);                  /* lib, cjson */
  lua_getfield(L, -1, "decode");
  lua_getfield(L, -2, "encode");  /* lib, cjson, dec, enc */
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, j_decode, 2);
  lua_setfield(L, -5, "decode");
  lua_pushcclosure(L, j_encode, 2);  /* lib, cjson, encode */
  lua_setfield(L, -3, "encode");
  lua_pop(L, 1);                 /* lib */
  json_pushnull(L);
  lua_setfield(L, -2, "null");
  json_push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
  return 1;
}
