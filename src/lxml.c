/*
** lxml.c — the qmig.xml library: XML documents (QlikView's -prj project
** files) parsed by libexpat into a Lua tree.
** The files come from a share anyone may have written to, so a document
** is data, never trusted: entity declarations (billion laughs, external
** entities) and undeclared entity references are refused, no external DTD
** is ever read, and size, nesting depth, attribute length and element
** count are bounded.  Every failure is nil, "name:line:col: what", "xml".
**
** Tree: an element is {name = "Tag", attrs = {k = v}, line = L, col = C,
** [1..n] = children}, each child an element or a string (character data,
** CDATA included; whitespace-only runs dropped unless keep_space).
*/
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>
#include <lua.h>
#include <lauxlib.h>

#include "qmig.h"

#define XML_BOX "qmig.xml.parser"

/* Defaults of the limits (xml.limits shows them, options change them). */
#define DEF_MAX_BYTES ((lua_Integer)64 * 1024 * 1024)
#define DEF_MAX_DEPTH ((lua_Integer)256)
#define DEF_MAX_ATTR ((lua_Integer)1024 * 1024)
#define DEF_MAX_NODES ((lua_Integer)1000000)

typedef struct {
  XML_Parser parser;   /* NULL once freed */
  lua_State *L;
  int stack;           /* absolute index of the element stack table */
  int depth;
  lua_Integer nodes;
  char *text;          /* pending character data */
  size_t tlen, tcap;
  int failed;
  unsigned long fline, fcol;  /* where a refusal was decided */
  int keep_space;
  lua_Integer max_depth, max_attr, max_nodes;
  char err[320];
} XmlBox;

static void box_free(XmlBox *b) {
  if (b->parser) XML_ParserFree(b->parser);
  b->parser = NULL;
  free(b->text);
  b->text = NULL;
}

static int box_gc(lua_State *L) {
  box_free((XmlBox *)luaL_checkudata(L, 1, XML_BOX));
  return 0;
}

/* Stops the parse with a message; the first one wins. */
static void stop(XmlBox *b, const char *msg) {
  if (b->failed) return;
  b->failed = 1;
  b->fline = XML_GetCurrentLineNumber(b->parser);
  b->fcol = XML_GetCurrentColumnNumber(b->parser) + 1;
  strncpy(b->err, msg, sizeof b->err - 1);
  b->err[sizeof b->err - 1] = '\0';
  XML_StopParser(b->parser, XML_FALSE);
}

static int all_space(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return 0;
  return 1;
}

/* Appends the value on top of the stack to the element at depth d. */
static void append(XmlBox *b, int d) {
  lua_State *L = b->L;
  lua_rawgeti(L, b->stack, d);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

static void flush_text(XmlBox *b) {
  if (b->tlen == 0) return;
  if (b->depth > 0 && (b->keep_space || !all_space(b->text, b->tlen))) {
    lua_pushlstring(b->L, b->text, b->tlen);
    append(b, b->depth);
  }
  b->tlen = 0;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  XmlBox *b = (XmlBox *)ud;
  lua_State *L = b->L;
  char msg[200];
  if (b->failed) return;
  flush_text(b);
  if (b->depth >= b->max_depth) {
    snprintf(msg, sizeof msg, "elements nested deeper than %lld levels", (long long)b->max_depth);
    stop(b, msg);
    return;
  }
  if (++b->nodes > b->max_nodes) {
    snprintf(msg, sizeof msg, "more than %lld elements", (long long)b->max_nodes);
    stop(b, msg);
    return;
  }
  for (int i = 0; attrs[i]; i += 2) {
    if ((lua_Integer)strlen(attrs[i + 1]) > b->max_attr) {
      snprintf(msg, sizeof msg, "attribute '%.60s' of <%.60s> longer than %lld bytes", attrs[i], name,
               (long long)b->max_attr);
      stop(b, msg);
      return;
    }
  }
  luaL_checkstack(L, 6, "xml");
  lua_createtable(L, 2, 4);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  lua_newtable(L);
  for (int i = 0; attrs[i]; i += 2) {
    lua_pushstring(L, attrs[i + 1]);
    lua_setfield(L, -2, attrs[i]);
  }
  lua_setfield(L, -2, "attrs");
  lua_pushinteger(L, (lua_Integer)XML_GetCurrentLineNumber(b->parser));
  lua_setfield(L, -2, "line");
  lua_pushinteger(L, (lua_Integer)XML_GetCurrentColumnNumber(b->parser) + 1);
  lua_setfield(L, -2, "col");
  lua_pushvalue(L, -1);
  append(b, b->depth);
  b->depth++;
  lua_rawseti(L, b->stack, b->depth);
}

static void on_end(void *ud, const XML_Char *name) {
  XmlBox *b = (XmlBox *)ud;
  (void)name;
  if (b->failed) return;
  flush_text(b);
  lua_pushnil(b->L);
  lua_rawseti(b->L, b->stack, b->depth);
  b->depth--;
}

static void on_text(void *ud, const XML_Char *s, int len) {
  XmlBox *b = (XmlBox *)ud;
  if (b->failed || len <= 0) return;
  size_t n = (size_t)len;
  if (b->tlen + n > b->tcap) {
    size_t cap = b->tcap ? b->tcap : 256;
    while (cap < b->tlen + n) cap *= 2;
    char *t = (char *)realloc(b->text, cap);
    if (!t) {
      stop(b, "out of memory");
      return;
    }
    b->text = t;
    b->tcap = cap;
  }
  memcpy(b->text + b->tlen, s, n);
  b->tlen += n;
}

/* Entities are the whole attack surface of a DTD: any declaration, internal
** or external, parsed or not, is refused rather than expanded. */
static void on_entity_decl(void *ud, const XML_Char *name, int is_param, const XML_Char *value, int value_len,
                           const XML_Char *base, const XML_Char *system_id, const XML_Char *public_id,
                           const XML_Char *notation) {
  XmlBox *b = (XmlBox *)ud;
  char msg[200];
  (void)value; (void)value_len; (void)base; (void)public_id; (void)notation;
  snprintf(msg, sizeof msg, "DTD declares %sentity '%.60s'%s: entity declarations are refused",
           is_param ? "parameter " : "", name, system_id ? " (external)" : "");
  stop(b, msg);
}

static void on_skipped(void *ud, const XML_Char *name, int is_param) {
  XmlBox *b = (XmlBox *)ud;
  char msg[200];
  snprintf(msg, sizeof msg, "reference to undeclared %sentity '%.60s'", is_param ? "parameter " : "", name);
  stop(b, msg);
}

static lua_Integer opt_limit(lua_State *L, int opts, const char *key, lua_Integer def) {
  if (lua_isnoneornil(L, opts)) return def;
  lua_getfield(L, opts, key);
  lua_Integer v = luaL_optinteger(L, -1, def);
  lua_pop(L, 1);
  if (v < 1) luaL_error(L, "xml.decode: option %s must be a positive integer", key);
  return v;
}

static int fail_at(lua_State *L, const char *name, unsigned long line, unsigned long col, const char *what) {
  lua_pushfstring(L, "%s:%d:%d: %s", name, (int)line, (int)col, what);
  return qmig_fail(L, lua_tostring(L, -1), "xml");
}

/* xml.decode(text [, name [, opts]]) -> root element | nil, msg, "xml"
** opts: max_bytes, max_depth, max_attr, max_nodes, keep_space. */
static int x_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "<string>");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);  /* the box and the stack go above the arguments */
  lua_Integer max_bytes = opt_limit(L, 3, "max_bytes", DEF_MAX_BYTES);
  if (max_bytes > INT_MAX) max_bytes = INT_MAX;
  if ((lua_Integer)len > max_bytes || len > (size_t)INT_MAX) {
    char what[120];
    snprintf(what, sizeof what, "document of %zu bytes is larger than the limit of %lld bytes", len,
             (long long)max_bytes);
    return fail_at(L, name, 1, 1, what);
  }
  XmlBox *b = (XmlBox *)lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, XML_BOX);
  b->L = L;
  b->max_depth = opt_limit(L, 3, "max_depth", DEF_MAX_DEPTH);
  b->max_attr = opt_limit(L, 3, "max_attr", DEF_MAX_ATTR);
  b->max_nodes = opt_limit(L, 3, "max_nodes", DEF_MAX_NODES);
  if (!lua_isnoneornil(L, 3)) {
    lua_getfield(L, 3, "keep_space");
    b->keep_space = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_newtable(L);  /* element stack; [0] holds the document's root */
  b->stack = lua_gettop(L);
  lua_newtable(L);
  lua_rawseti(L, b->stack, 0);
  b->parser = XML_ParserCreate(NULL);
  if (!b->parser) return luaL_error(L, "xml.decode: out of memory");
  XML_SetUserData(b->parser, b);
  XML_SetElementHandler(b->parser, on_start, on_end);
  XML_SetCharacterDataHandler(b->parser, on_text);
  XML_SetEntityDeclHandler(b->parser, on_entity_decl);
  XML_SetSkippedEntityHandler(b->parser, on_skipped);
  XML_SetParamEntityParsing(b->parser, XML_PARAM_ENTITY_PARSING_NEVER);
  enum XML_Status st = XML_Parse(b->parser, text, (int)len, XML_TRUE);
  unsigned long line = XML_GetCurrentLineNumber(b->parser);
  unsigned long col = XML_GetCurrentColumnNumber(b->parser) + 1;
  if (b->failed || st != XML_STATUS_OK) {
    const char *what = b->failed ? b->err : XML_ErrorString(XML_GetErrorCode(b->parser));
    lua_pushstring(L, what ? what : "malformed XML");
    if (b->failed) line = b->fline, col = b->fcol;
    box_free(b);  /* the parser is freed now, not at the next collection */
    return fail_at(L, name, line, col, lua_tostring(L, -1));
  }
  box_free(b);
  lua_rawgeti(L, b->stack, 0);
  lua_rawgeti(L, -1, 1);
  return 1;
}

static const luaL_Reg xmllib[] = {
  {"decode", x_decode},
  {NULL, NULL}
};

int luaopen_qmig_xml(lua_State *L) {
  if (luaL_newmetatable(L, XML_BOX)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, xmllib);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, DEF_MAX_BYTES);
  lua_setfield(L, -2, "max_bytes");
  lua_pushinteger(L, DEF_MAX_DEPTH);
  lua_setfield(L, -2, "max_depth");
  lua_pushinteger(L, DEF_MAX_ATTR);
  lua_setfield(L, -2, "max_attr");
  lua_pushinteger(L, DEF_MAX_NODES);
  lua_setfield(L, -2, "max_nodes");
  lua_setfield(L, -2, "limits");
  lua_pushstring(L, XML_ExpatVersion());
  lua_setfield(L, -2, "expat_version");
  return 1;
}
