/*
** lxlsx.c — qmig.xlsx: writing an .xlsx workbook with libxlsxwriter.
**
**   local wb = assert(xlsx.open(path))         -- nothing is written yet
**   local s = wb:add_sheet("Summary")          -- a sheet's index, from 1
**   wb:write(s, row, col, value [, "bold"])    -- row, col from 0; number or string
**   wb:set_column(s, first, last, width)
**   assert(wb:close())                         -- writes the file
**
** A workbook is a userdata in the liolib.c FILE* style: close writes the
** file and returns true or nil, msg, code; __close and __gc of a workbook
** not closed free it without writing anything (an error unwinding past a
** half-written report leaves no file).  libxlsxwriter
** only writes at close, so a failure there (a folder that is not there,
** a full disk) is the one I/O failure to report; bad arguments raise.
*/
#include <string.h>

#include <xlsxwriter.h>

#include <lua.h>
#include <lauxlib.h>

#include "qmig.h"

#define XLSX_WORKBOOK "qmig.Workbook"
#define MAX_SHEETS 64

typedef struct Workbook {
  lxw_workbook *wb;            /* NULL once closed */
  lxw_format *bold;
  lxw_worksheet *sheets[MAX_SHEETS];
  int nsheets;
} Workbook;

static Workbook *check_open(lua_State *L) {
  Workbook *w = (Workbook *)luaL_checkudata(L, 1, XLSX_WORKBOOK);
  if (w->wb == NULL) luaL_error(L, "attempt to use a closed workbook");
  return w;
}

static lxw_worksheet *check_sheet(lua_State *L, Workbook *w, int arg) {
  lua_Integer i = luaL_checkinteger(L, arg);
  luaL_argcheck(L, i >= 1 && i <= w->nsheets, arg, "no such sheet");
  return w->sheets[i - 1];
}

/* xlsx.open(path) -> workbook */
static int x_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  Workbook *w = (Workbook *)lua_newuserdatauv(L, sizeof(Workbook), 0);
  memset(w, 0, sizeof *w);
  luaL_setmetatable(L, XLSX_WORKBOOK);
  w->wb = workbook_new(path);
  if (w->wb == NULL) return qmig_fail(L, "cannot start a workbook (out of memory)", "nomem");
  w->bold = workbook_add_format(w->wb);
  if (w->bold) format_set_bold(w->bold);
  return 1;
}

/* wb:add_sheet(name) -> index */
static int w_add_sheet(lua_State *L) {
  Workbook *w = check_open(L);
  const char *name = luaL_checkstring(L, 2);
  luaL_argcheck(L, w->nsheets < MAX_SHEETS, 2, "too many sheets");
  lxw_error err = workbook_validate_sheet_name(w->wb, name);
  if (err != LXW_NO_ERROR) return luaL_error(L, "bad sheet name '%s': %s", name, lxw_strerror(err));
  lxw_worksheet *ws = workbook_add_worksheet(w->wb, name);
  if (ws == NULL) return luaL_error(L, "cannot add sheet '%s'", name);
  w->sheets[w->nsheets++] = ws;
  lua_pushinteger(L, w->nsheets);
  return 1;
}

static lxw_row_t check_row(lua_State *L, int arg) {
  lua_Integer r = luaL_checkinteger(L, arg);
  luaL_argcheck(L, r >= 0 && r < LXW_ROW_MAX, arg, "row out of range");
  return (lxw_row_t)r;
}

static lxw_col_t check_col(lua_State *L, int arg) {
  lua_Integer c = luaL_checkinteger(L, arg);
  luaL_argcheck(L, c >= 0 && c < LXW_COL_MAX, arg, "column out of range");
  return (lxw_col_t)c;
}

/* wb:write(sheet, row, col, value [, "bold"]): a number or a string (nil
** leaves the cell empty). */
static int w_write(lua_State *L) {
  Workbook *w = check_open(L);
  lxw_worksheet *ws = check_sheet(L, w, 2);
  lxw_row_t row = check_row(L, 3);
  lxw_col_t col = check_col(L, 4);
  static const char *const styles[] = {"plain", "bold", NULL};
  lxw_format *fmt = luaL_checkoption(L, 6, "plain", styles) == 1 ? w->bold : NULL;
  lxw_error err = LXW_NO_ERROR;
  switch (lua_type(L, 5)) {
    case LUA_TNIL: break;
    case LUA_TNUMBER: err = worksheet_write_number(ws, row, col, lua_tonumber(L, 5), fmt); break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, 5, &len);
      luaL_argcheck(L, strlen(s) == len, 5, "string holds a zero byte");
      err = worksheet_write_string(ws, row, col, s, fmt);
      break;
    }
    default: return luaL_typeerror(L, 5, "number, string or nil");
  }
  if (err != LXW_NO_ERROR) return luaL_error(L, "cannot write cell %d,%d: %s", (int)row, (int)col, lxw_strerror(err));
  return 0;
}

/* wb:set_column(sheet, first, last, width) */
static int w_set_column(lua_State *L) {
  Workbook *w = check_open(L);
  lxw_worksheet *ws = check_sheet(L, w, 2);
  lxw_col_t first = check_col(L, 3), last = check_col(L, 4);
  double width = luaL_checknumber(L, 5);
  luaL_argcheck(L, first <= last, 4, "last column before the first");
  luaL_argcheck(L, width >= 0 && width <= 255, 5, "width out of range");
  worksheet_set_column(ws, first, last, width, NULL);
  return 0;
}

/* wb:close() -> true | nil, msg, code (writes the file) */
static int w_close(lua_State *L) {
  Workbook *w = (Workbook *)luaL_checkudata(L, 1, XLSX_WORKBOOK);
  if (w->wb == NULL) return luaL_error(L, "attempt to use a closed workbook");
  lxw_workbook *wb = w->wb;
  w->wb = NULL;
  lxw_error err = workbook_close(wb);  /* frees wb whatever the outcome */
  if (err != LXW_NO_ERROR) return qmig_fail(L, lxw_strerror(err), "io");
  lua_pushboolean(L, 1);
  return 1;
}

static int w_gc(lua_State *L) {
  Workbook *w = (Workbook *)luaL_checkudata(L, 1, XLSX_WORKBOOK);
  if (w->wb != NULL) lxw_workbook_free(w->wb);  /* never closed: write nothing */
  w->wb = NULL;
  return 0;
}

static int w_tostring(lua_State *L) {
  Workbook *w = (Workbook *)luaL_checkudata(L, 1, XLSX_WORKBOOK);
  lua_pushstring(L, w->wb ? "workbook" : "workbook (closed)");
  return 1;
}

static const luaL_Reg methods[] = {
  {"add_sheet", w_add_sheet},
  {"write", w_write},
  {"set_column", w_set_column},
  {"close", w_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", w_gc},
  {"__close", w_gc},
  {"__tostring", w_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

static const luaL_Reg lib[] = {
  {"open", x_open},
  {NULL, NULL}
};

int luaopen_qmig_xlsx(lua_State *L) {
  luaL_newmetatable(L, XLSX_WORKBOOK);
  luaL_setfuncs(L, meta, 0);
  luaL_newlibtable(L, methods);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, lib);
  return 1;
}
