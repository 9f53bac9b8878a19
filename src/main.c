/*
** main.c — the qmig-lua stand-alone host.
** Shaped like Lua's own lua.c: main() only creates the state and calls
** pmain() under lua_pcall, so that argument handling and library opening
** are protected too; every chunk runs through docall(), whose message
** handler appends a traceback.
**
** qmig-lua COMMAND ...      a migration command (run, plan, status, ...),
**                           dispatched to the Lua module qmig.ui.cli
** qmig-lua script.lua args  interpreter mode, like `lua script.lua args`
** qmig-lua -e CODE | -i | -v | -
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "qmig.h"

static const char *progname = "qmig-lua";

/* Exit status of a command when the Lua code returns none. */
#define EXIT_SCRIPT_ERROR 1

static const char *const commands[] = {
  "run", "plan", "status", "undo", "steps", "check", "report", "help", NULL
};

static void l_message(const char *pname, const char *msg) {
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Prints the error on top of the stack (if any) and pops it. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    l_message(progname, msg);
    lua_pop(L, 1);
  }
  return status;
}

/* Message handler: turns any error object into a string with a traceback. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;  /* the error object knows how to print itself */
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below its nargs arguments with the message handler;
** Ctrl-C interrupts it while it runs.  [-(nargs+1), +(nres|1), -] */
static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  qmig_install_sigint(L);
  int status = lua_pcall(L, narg, nres, base);
  qmig_restore_sigint();
  lua_remove(L, base);
  return status;
}

static void print_version(void) {
  printf("qmig-lua %s (%s)\n", QMIG_VERSION, LUA_RELEASE);
  fflush(stdout);
}

static void print_usage(const char *badoption) {
  if (badoption) fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  fprintf(stderr,
    "usage: %s COMMAND JOB [options]   (run, plan, status, undo, steps, check, report, help)\n"
    "       %s [options] [script [args]]\n"
    "Interpreter options:\n"
    "  -e stat   execute string 'stat'\n"
    "  -i        enter interactive mode after executing 'script'\n"
    "  -v        show version information\n"
    "  --        stop handling options\n"
    "  -         execute stdin and stop handling options\n",
    progname, progname);
}

/* The global `arg` as lua.c builds it: script at 0, its arguments from 1,
** interpreter options at negative indices. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;
  int narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* Pushes the script's arguments (everything after it) and runs it. */
static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;  /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = 0;
    lua_getglobal(L, "arg");
    if (lua_type(L, -1) == LUA_TTABLE) {
      n = (int)luaL_len(L, -1);
      luaL_checkstack(L, n + 3, "too many arguments to script");
      for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
      lua_remove(L, -n - 1);
    } else {
      lua_pop(L, 1);
    }
    status = docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

/* {====== interactive mode (plain line reading; no readline dependency) */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= 5 && strcmp(msg + lmsg - 5, "<eof>") == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

static int pushline(lua_State *L, int firstline) {
  char buffer[4096];
  fputs(firstline ? "> " : ">> ", stdout);
  fflush(stdout);
  if (fgets(buffer, sizeof buffer, stdin) == NULL) return 0;
  size_t l = strlen(buffer);
  if (l > 0 && buffer[l - 1] == '\n') buffer[--l] = '\0';
  if (firstline && buffer[0] == '=')
    lua_pushfstring(L, "return %s", buffer + 1);
  else
    lua_pushlstring(L, buffer, l);
  return 1;
}

/* Tries "return <line>" first so expressions print their value. */
static int loadline(lua_State *L) {
  if (!pushline(L, 1)) return -1;
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2);
  } else {
    lua_pop(L, 2);
    for (;;) {
      size_t len;
      const char *chunk = lua_tolstring(L, 1, &len);
      status = luaL_loadbuffer(L, chunk, len, "=stdin");
      if (!incomplete(L, status) || !pushline(L, 0)) break;
      lua_pushliteral(L, "\n");
      lua_insert(L, -2);
      lua_concat(L, 3);
    }
  }
  lua_remove(L, 1);
  return status;
}

static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      l_message(progname, lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1)));
  }
}

static void doREPL(lua_State *L) {
  int status;
  const char *oldprogname = progname;
  progname = NULL;
  while ((status = loadline(L)) != -1) {
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) print_results(L);
    else report(L, status);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  progname = oldprogname;
}
/* }====== */

static int is_command(const char *s) {
  for (int i = 0; commands[i]; i++)
    if (strcmp(s, commands[i]) == 0) return 1;
  return strcmp(s, "--help") == 0 || strcmp(s, "--version") == 0;
}

/* Runs qmig.cli.main(argv...) and uses its return value as exit status. */
static int run_command(lua_State *L, int argc, char **argv) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "qmig.ui.cli");
  int status = docall(L, 1, 1);
  if (status != LUA_OK) return report(L, status), EXIT_SCRIPT_ERROR;
  lua_getfield(L, -1, "main");
  lua_remove(L, -2);
  luaL_checkstack(L, argc, "too many arguments");
  for (int i = 1; i < argc; i++) lua_pushstring(L, argv[i]);
  status = docall(L, argc - 1, 1);
  if (status != LUA_OK) return report(L, status), EXIT_SCRIPT_ERROR;
  int code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
  lua_pop(L, 1);
  return code;
}

#define has_error 1
#define has_i 2
#define has_v 4
#define has_e 8

/* Scans options up to the script name; returns flags, sets *first to the
** script's index (or argc). */
static int collectargs(char **argv, int *first) {
  int args = 0, i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;
    switch (argv[i][1]) {
      case '-':
        if (argv[i][2] != '\0') return has_error;
        *first = i + 1;
        return args;
      case '\0':
        return args;
      case 'i':
        if (argv[i][2] != '\0') return has_error;
        args |= has_i | has_v;
        break;
      case 'v':
        if (argv[i][2] != '\0') return has_error;
        args |= has_v;
        break;
      case 'e':
        args |= has_e;
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') return has_error;
        }
        break;
      default:
        return has_error;
    }
  }
  *first = i;
  return args;
}

static int runargs(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    if (argv[i][1] == 'e') {
      const char *chunk = argv[i] + 2;
      if (*chunk == '\0') chunk = argv[++i];
      if (dostring(L, chunk, "=(command line)") != LUA_OK) return 0;
    }
  }
  return 1;
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int *exitcode = (int *)lua_touserdata(L, 3);
  if (argv[0] && argv[0][0]) progname = argv[0];
  luaL_checkversion(L);
  qmig_openlibs(L, argv[0]);

  if (argc > 1 && is_command(argv[1])) {
    createargtable(L, argv, argc, 0);
    *exitcode = run_command(L, argc, argv);
    return 0;
  }
  int script = 0;
  int args = collectargs(argv, &script);
  if (args == has_error) {
    print_usage(argv[script]);
    *exitcode = 2;
    return 0;
  }
  if (args & has_v) print_version();
  createargtable(L, argv, argc, script);
  if (!runargs(L, argv, script)) return 0;
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (args & has_i) {
    doREPL(L);
  } else if (script == argc && !(args & (has_e | has_v))) {
    print_usage(NULL);
    *exitcode = 2;
    return 0;
  }
  *exitcode = EXIT_SUCCESS;
  return 0;
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    l_message(argv[0], "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  int exitcode = EXIT_SCRIPT_ERROR;  /* stays so when a chunk fails */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushlightuserdata(L, &exitcode);
  int status = lua_pcall(L, 3, 0, 0);
  report(L, status);
  lua_close(L);
  return status == LUA_OK ? exitcode : EXIT_FAILURE;
}
