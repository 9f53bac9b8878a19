/*
** qmig.h — what the C files of the qmig-lua host share.
** Each library is a separate file with a luaopen_qmig_<name> entry point;
** lqmig.c preloads them under package.preload["qmig.<name>"].
*/
#ifndef QMIG_H
#define QMIG_H

#include <lua.h>
#include <lauxlib.h>

#define QMIG_VERSION "0.1.0"

/* Library entry points [-0, +1, e]. */
int luaopen_qmig(lua_State *L);
int luaopen_qmig_http(lua_State *L);
int luaopen_qmig_json(lua_State *L);
int luaopen_qmig_yaml(lua_State *L);
int luaopen_qmig_sqlite(lua_State *L);
int luaopen_qmig_fs(lua_State *L);
int luaopen_qmig_hash(lua_State *L);
int luaopen_qmig_ws(lua_State *L);
int luaopen_qmig_xlsx(lua_State *L);
int luaopen_qmig_xml(lua_State *L);
int luaopen_qmig_host(lua_State *L);
/* host.before_send (lhttp.c), a function of qmig.host */
int qmig_http_before_send(lua_State *L);

/* Opens the standard libraries, preloads every qmig library, sets the
** global `qmig` and points package.path at the host's Lua folder. */
void qmig_openlibs(lua_State *L, const char *argv0);

/* The folder holding lua/ and steps/ (build tree or installed share dir). */
const char *qmig_home(void);

/* Soft failure in the liolib style: pushes nil, msg, code; returns 3. */
int qmig_fail(lua_State *L, const char *msg, const char *code);

/* Ctrl-C handling.  In "trap" mode SIGINT only raises a flag that the
** engine polls (and that makes pending HTTP waits return); otherwise it
** interrupts the running Lua code like lua.c does. */
void qmig_install_sigint(lua_State *L);
void qmig_restore_sigint(void);
int qmig_interrupted(void);

/* True when L is a coroutine driven by the qmig scheduler, i.e. it may
** yield while it waits for I/O or a timer. */
int qmig_in_task(lua_State *L);

#endif
