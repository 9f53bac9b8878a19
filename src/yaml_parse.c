/*
** yaml_parse.c — libyaml events -> Lua values, with positions.
** Everything that can go wrong with a file a person wrote (syntax,
** duplicate keys, undefined aliases, alias bombs) becomes one message
** "name:line:col: what", raised inside a protected call so the libyaml
** state (owned by a userdata) is always released.
*/
#include <stdarg.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <yaml.h>

#include "json_mt.h"
#include "yaml_parse.h"
#include "yaml_scalar.h"

#define YPARSER_MT "qmig.yaml.parser"
#define CORE_TAG "tag:yaml.org,2002:"

typedef struct yparser {
  yaml_parser_t parser;
  yaml_event_t event;
  int live, has_event;
} yparser;

typedef struct ybuild {
  lua_State *L;
  yparser *p;
  const char *text, *name;
  size_t len;
  int all;
  int anchors, sizes, positions;  /* stack indices inside the protected call */
  long nodes;
  int depth;
} ybuild;

static int yparser_gc(lua_State *L) {
  yparser *p = (yparser *)luaL_checkudata(L, 1, YPARSER_MT);
  if (p->has_event) yaml_event_delete(&p->event);
  if (p->live) yaml_parser_delete(&p->parser);
  p->has_event = p->live = 0;
  return 0;
}

/* {====== errors */

static int fail_line_col(ybuild *b, size_t line, size_t col, const char *fmt, ...) {
  lua_State *L = b->L;
  va_list ap;
  va_start(ap, fmt);
  /* cppcheck-suppress invalidLengthModifierError ; %I is lua_pushfstring's lua_Integer */
  lua_pushfstring(L, "%s:%I:%I: ", b->name, (lua_Integer)line, (lua_Integer)col);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}

#define fail_at(b, mark, ...) \
  fail_line_col((b), (mark).line + 1, (mark).column + 1, __VA_ARGS__)

static void offset_line_col(ybuild *b, size_t off, size_t *line, size_t *col) {
  *line = *col = 1;
  for (size_t i = 0; i < off && i < b->len; i++) {
    if (b->text[i] == '\n') (*line)++, *col = 1;
    else if (((unsigned char)b->text[i] & 0xC0) != 0x80) (*col)++;
  }
}

static int parser_error(ybuild *b) {
  yaml_parser_t *ps = &b->p->parser;
  const char *problem = ps->problem ? ps->problem : "cannot parse";
  if (ps->error == YAML_MEMORY_ERROR) return luaL_error(b->L, "not enough memory");
  if (ps->error == YAML_READER_ERROR) {
    size_t line, col;
    offset_line_col(b, ps->problem_offset, &line, &col);
    return fail_line_col(b, line, col, "%s", problem);
  }
  size_t at = ps->problem_mark.index;
  if (at < b->len && b->text[at] == '\t')
    /* not "%s: a tab": after libyaml's "...cannot start any token" that
    ** reads as "token: a" to log.redact, which would print "token: ***" */
    return fail_at(b, ps->problem_mark, "%s (a tab; YAML indents with spaces only)", problem);
  if (ps->context)
    return fail_at(b, ps->problem_mark, "%s (%s at line %I, column %I)", problem, ps->context,
                   (lua_Integer)ps->context_mark.line + 1, (lua_Integer)ps->context_mark.column + 1);
  return fail_at(b, ps->problem_mark, "%s", problem);
}
/* }====== */

static yaml_event_t *next_event(ybuild *b) {
  yparser *p = b->p;
  if (p->has_event) {
    yaml_event_delete(&p->event);
    p->has_event = 0;
  }
  if (!yaml_parser_parse(&p->parser, &p->event)) parser_error(b);
  p->has_event = 1;
  return &p->event;
}

static void count(ybuild *b, long n, yaml_mark_t mark) {
  b->nodes += n;
  if (b->nodes > YAML_MAX_NODES)
    fail_at(b, mark, "more than %d values (aliases expanding without end?)", YAML_MAX_NODES);
}

/* anchors[name] = value on top; sizes[name] = size (-1: still open). */
static void set_anchor(ybuild *b, const char *name, long size) {
  lua_State *L = b->L;
  lua_pushvalue(L, -1);
  lua_setfield(L, b->anchors, name);
  lua_pushinteger(L, size);
  lua_setfield(L, b->sizes, name);
}

static void push_node(ybuild *b);

/* {====== scalars and aliases */

static void push_scalar(ybuild *b) {
  lua_State *L = b->L;
  yaml_event_t *e = &b->p->event;
  const char *s = (const char *)e->data.scalar.value;
  const char *tag = (const char *)e->data.scalar.tag;
  size_t n = e->data.scalar.length;
  if (tag && strcmp(tag, "!") != 0) {
    static const char *const core[] = {"str", "int", "float", "bool", "null", NULL};
    const char *short_tag = strncmp(tag, CORE_TAG, strlen(CORE_TAG)) == 0 ? tag + strlen(CORE_TAG) : NULL;
    int known = 0;
    for (int i = 0; short_tag && core[i]; i++) known |= strcmp(short_tag, core[i]) == 0;
    if (!known) fail_at(b, e->start_mark, "unsupported tag '%s'", tag);
    if (!yaml_push_tagged(L, short_tag, s, n))
      fail_at(b, e->start_mark, "'%s' is not a valid !!%s", s, short_tag);
  } else if (tag == NULL && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
    yaml_push_plain(L, s, n);
  } else {
    lua_pushlstring(L, s, n);  /* quoted, literal and folded: always text */
  }
  count(b, 1, e->start_mark);
  if (e->data.scalar.anchor) set_anchor(b, (const char *)e->data.scalar.anchor, 1);
}

static void push_alias(ybuild *b) {
  lua_State *L = b->L;
  yaml_event_t *e = &b->p->event;
  const char *name = (const char *)e->data.alias.anchor;
  lua_getfield(L, b->sizes, name);
  if (lua_isnil(L, -1)) fail_at(b, e->start_mark, "alias '*%s' has no anchor '&%s' before it", name, name);
  lua_Integer size = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (size < 0) fail_at(b, e->start_mark, "alias '*%s' refers to a node that contains it", name);
  count(b, (long)size, e->start_mark);
  lua_getfield(L, b->anchors, name);
}
/* }====== */

/* {====== collections */

/* Pushes {line=, col=, <listname>={}} and registers it for table t. */
static int new_position(ybuild *b, int t, yaml_mark_t mark, const char *listname) {
  lua_State *L = b->L;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)mark.line + 1);
  lua_setfield(L, -2, "line");
  lua_pushinteger(L, (lua_Integer)mark.column + 1);
  lua_setfield(L, -2, "col");
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, listname);
  lua_pushvalue(L, t);
  lua_pushvalue(L, -3);
  lua_rawset(L, b->positions);
  lua_remove(L, -2);
  return lua_gettop(L);  /* the list */
}

static void enter(ybuild *b, yaml_mark_t mark) {
  if (++b->depth > YAML_MAX_DEPTH) fail_at(b, mark, "nested more than %d levels", YAML_MAX_DEPTH);
  luaL_checkstack(b->L, 12, "yaml.decode");
}

static void push_sequence(ybuild *b) {
  lua_State *L = b->L;
  yaml_event_t *e = &b->p->event;
  yaml_mark_t start = e->start_mark;
  const char *anchor = (const char *)e->data.sequence_start.anchor;
  long before = b->nodes;
  enter(b, start);
  count(b, 1, start);
  lua_newtable(L);
  int t = lua_gettop(L);
  json_set_array_mt(L, t);
  if (anchor) {
    lua_pushstring(L, anchor);  /* the event's copy dies with the next event */
    anchor = lua_tostring(L, -1);
    lua_pushvalue(L, t);
    set_anchor(b, anchor, -1);
    lua_pop(L, 1);
  }
  int items = new_position(b, t, start, "items");
  lua_Integer i = 0;
  while ((e = next_event(b))->type != YAML_SEQUENCE_END_EVENT) {
    lua_Integer line = (lua_Integer)e->start_mark.line + 1;
    push_node(b);
    lua_rawseti(L, t, ++i);
    lua_pushinteger(L, line);
    lua_rawseti(L, items, i);
  }
  if (anchor) {  /* its size is known now; the name string is still on the stack */
    lua_pushinteger(L, b->nodes - before);
    lua_setfield(L, b->sizes, anchor);
  }
  lua_settop(L, t);
  b->depth--;
}

/* The key of a mapping entry as a string: keys are always text. */
static void push_key(ybuild *b) {
  lua_State *L = b->L;
  yaml_event_t *e = &b->p->event;
  switch (e->type) {
    case YAML_SCALAR_EVENT:
      lua_pushlstring(L, (const char *)e->data.scalar.value, e->data.scalar.length);
      count(b, 1, e->start_mark);
      if (e->data.scalar.anchor) set_anchor(b, (const char *)e->data.scalar.anchor, 1);
      return;
    case YAML_ALIAS_EVENT:
      push_alias(b);
      if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER ||
          lua_type(L, -1) == LUA_TBOOLEAN) {
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
        return;
      }
      break;
    default:
      break;
  }
  fail_at(b, e->start_mark, "a mapping key must be a plain value, not a list or a mapping");
}

static int is_merge_key(yaml_event_t *e) {
  return e->type == YAML_SCALAR_EVENT && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         e->data.scalar.length == 2 && memcmp(e->data.scalar.value, "<<", 2) == 0 &&
         (e->data.scalar.tag == NULL || strcmp((const char *)e->data.scalar.tag, CORE_TAG "merge") == 0);
}

static int is_mapping(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TTABLE && !json_has_array_mt(L, idx);
}

/* `<<: *a` or `<<: [*a, *b]`: appends the sources to the merge list. */
static void add_merge(ybuild *b, int merges, yaml_mark_t mark) {
  lua_State *L = b->L;
  push_node(b);
  int v = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, merges);
  if (is_mapping(L, v)) {
    lua_pushvalue(L, v);
    lua_rawseti(L, merges, ++n);
  } else if (lua_type(L, v) == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_rawgeti(L, v, i) != LUA_TNIL; i++) {
      if (!is_mapping(L, -1)) break;
      lua_rawseti(L, merges, ++n);
    }
    if (!lua_isnil(L, -1)) v = 0;
    lua_pop(L, 1);
  } else {
    v = 0;
  }
  if (v == 0) fail_at(b, mark, "'<<' merges a mapping or a list of mappings, nothing else");
  lua_settop(L, merges);
}

/* Explicit keys win over merged ones; earlier sources over later ones. */
static void apply_merges(ybuild *b, int t, int keys, int merges, yaml_mark_t mark) {
  lua_State *L = b->L;
  lua_Integer n = (lua_Integer)lua_rawlen(L, merges);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, merges, i);
    int src = lua_gettop(L);
    lua_pushvalue(L, src);
    lua_rawget(L, b->positions);
    int srcpos = lua_gettop(L);
    if (lua_istable(L, srcpos)) lua_getfield(L, srcpos, "keys");
    else lua_pushnil(L);
    int srckeys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
      lua_pushvalue(L, -2);
      if (lua_rawget(L, t) == LUA_TNIL) {
        count(b, 1, mark);
        lua_pushvalue(L, -3);
        lua_pushvalue(L, -3);
        lua_rawset(L, t);
        lua_pushvalue(L, -3);
        if (lua_istable(L, srckeys)) {
          lua_pushvalue(L, -1);
          lua_rawget(L, srckeys);
        } else {
          lua_pushinteger(L, (lua_Integer)mark.line + 1);
        }
        lua_rawset(L, keys);
      }
      lua_pop(L, 2);
    }
    lua_settop(L, src - 1);
  }
}

static void push_mapping(ybuild *b) {
  lua_State *L = b->L;
  yaml_event_t *e = &b->p->event;
  yaml_mark_t start = e->start_mark;
  const char *anchor = (const char *)e->data.mapping_start.anchor;
  long before = b->nodes;
  enter(b, start);
  count(b, 1, start);
  lua_newtable(L);
  int t = lua_gettop(L);
  if (anchor) {
    lua_pushstring(L, anchor);
    anchor = lua_tostring(L, -1);
    lua_pushvalue(L, t);
    set_anchor(b, anchor, -1);
    lua_pop(L, 1);
  }
  int keys = new_position(b, t, start, "keys");
  lua_newtable(L);
  int merges = lua_gettop(L);
  while ((e = next_event(b))->type != YAML_MAPPING_END_EVENT) {
    yaml_mark_t km = e->start_mark;
    if (is_merge_key(e)) {
      next_event(b);
      add_merge(b, merges, km);
      continue;
    }
    push_key(b);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) != LUA_TNIL) {
      lua_pushvalue(L, -2);
      lua_rawget(L, keys);
      lua_Integer first = lua_tointeger(L, -1);
      fail_at(b, km, "duplicate key '%s' (first at line %I)", lua_tostring(L, -3), first);
    }
    lua_pop(L, 1);
    next_event(b);
    push_node(b);                /* key, value */
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, t);            /* key */
    lua_pushinteger(L, (lua_Integer)km.line + 1);
    lua_rawset(L, keys);
  }
  apply_merges(b, t, keys, merges, start);
  if (anchor) {  /* its size is known now; the name string is still on the stack */
    lua_pushinteger(L, b->nodes - before);
    lua_setfield(L, b->sizes, anchor);
  }
  lua_settop(L, t);
  b->depth--;
}
/* }====== */

static void push_node(ybuild *b) {
  switch (b->p->event.type) {
    case YAML_SCALAR_EVENT: push_scalar(b); break;
    case YAML_ALIAS_EVENT: push_alias(b); break;
    case YAML_SEQUENCE_START_EVENT: push_sequence(b); break;
    case YAML_MAPPING_START_EVENT: push_mapping(b); break;
    default:
      fail_at(b, b->p->event.start_mark, "unexpected parser event %d", (int)b->p->event.type);
  }
}

/* Protected body: (ybuild*) -> value, positions */
static int build(lua_State *L) {
  ybuild *b = (ybuild *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  yparser *p = (yparser *)lua_newuserdatauv(L, sizeof(yparser), 0);  /* 1 */
  p->live = p->has_event = 0;
  luaL_setmetatable(L, YPARSER_MT);
  if (!yaml_parser_initialize(&p->parser)) return luaL_error(L, "not enough memory");
  p->live = 1;
  yaml_parser_set_input_string(&p->parser, (const unsigned char *)b->text, b->len);
  b->p = p;
  lua_newtable(L);  /* 2: positions, weak-keyed so it never keeps a value alive */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  b->positions = 2;
  lua_newtable(L);  /* 3: documents */
  json_set_array_mt(L, 3);
  lua_Integer ndocs = 0;
  yaml_event_t *e;
  while ((e = next_event(b))->type != YAML_STREAM_END_EVENT) {
    if (e->type != YAML_DOCUMENT_START_EVENT) continue;
    if (!b->all && ndocs == 1)
      fail_at(b, e->start_mark, "a second document starts here; yaml.decode reads one (use yaml.decode_all)");
    lua_settop(L, 3);
    lua_newtable(L);  /* 4: anchors are per document */
    lua_newtable(L);  /* 5 */
    b->anchors = 4;
    b->sizes = 5;
    next_event(b);
    push_node(b);
    lua_rawseti(L, 3, ++ndocs);
    next_event(b);  /* DOCUMENT-END */
  }
  lua_settop(L, 3);
  if (!b->all) {
    if (ndocs == 0) json_pushnull(L);
    else lua_rawgeti(L, 3, 1);
    lua_replace(L, 3);
  }
  lua_pushvalue(L, 2);
  yaml_event_delete(&p->event);  /* free libyaml now rather than at the next collection */
  yaml_parser_delete(&p->parser);
  p->has_event = p->live = 0;
  return 2;
}

int yaml_decode(lua_State *L, const char *text, size_t len, const char *name, int all) {
  if (luaL_newmetatable(L, YPARSER_MT)) {
    lua_pushcfunction(L, yparser_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  ybuild b;
  memset(&b, 0, sizeof b);
  b.L = L;
  b.text = text;
  b.len = len;
  b.name = name;
  b.all = all;
  lua_pushcfunction(L, build);
  lua_pushlightuserdata(L, &b);
  int status = lua_pcall(L, 1, 2, 0);
  if (status == LUA_OK) return 2;
  if (status != LUA_ERRRUN || lua_type(L, -1) != LUA_TSTRING) lua_error(L);
  return -1;
}
