/*
** test_host.c — C-level tests of the host's internal pieces, linked with
** the same objects as qmig-lua (all but main.o).  Ends with
** "N passed, N failed" like every suite.
*/
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "http_transfer.h"
#include "qmig.h"
#include "yaml_scalar.h"

static int passed, failed, case_failed;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      case_failed = 1;                                                  \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                   \
  } while (0)

/* Runs one test function; a test passes when none of its checks failed. */
#define RUN(call)                                       \
  do {                                                  \
    case_failed = 0;                                    \
    call;                                               \
    if (case_failed) failed++; else passed++;           \
    printf("%s %s\n", case_failed ? "FAIL" : "ok  ", #call); \
  } while (0)

static void test_buffer_grows_and_terminates(void) {
  Buffer b = {NULL, 0, 0};
  char chunk[1000];
  memset(chunk, 'x', sizeof chunk);
  for (int i = 0; i < 100; i++) CHECK(buffer_append(&b, chunk, sizeof chunk) == 0);
  CHECK(b.len == 100000);
  CHECK(b.cap > b.len);
  CHECK(b.data[b.len] == '\0');
  buffer_free(&b);
  CHECK(b.data == NULL && b.len == 0);
}

/* The engine retries on these codes: a curl failure must never be
** reported as something it is not. */
static void test_error_codes(void) {
  Transfer t;
  memset(&t, 0, sizeof t);
  struct { CURLcode code; const char *want; } cases[] = {
    {CURLE_OPERATION_TIMEDOUT, "timeout"}, {CURLE_COULDNT_CONNECT, "refused"},
    {CURLE_COULDNT_RESOLVE_HOST, "dns"}, {CURLE_PEER_FAILED_VERIFICATION, "tls"},
    {CURLE_SSL_CERTPROBLEM, "tls"}, {CURLE_GOT_NOTHING, "dropped"}, {CURLE_RECV_ERROR, "dropped"},
    {CURLE_SEND_ERROR, "dropped"}, {CURLE_PARTIAL_FILE, "dropped"}, {CURLE_TOO_MANY_REDIRECTS, "redirects"},
    {CURLE_READ_ERROR, "io"}, {CURLE_URL_MALFORMAT, "http"}, {CURLE_OUT_OF_MEMORY, "too_large"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    t.result = cases[i].code;
    CHECK(strcmp(transfer_error_code(&t), cases[i].want) == 0);
  }
  t.result = CURLE_WRITE_ERROR;
  t.too_large = 1;
  CHECK(strcmp(transfer_error_code(&t), "too_large") == 0);
}

/* Pushes yaml_push_plain(s) and returns the Lua type, leaving the value. */
static int plain_type(lua_State *L, const char *s) {
  yaml_push_plain(L, s, strlen(s));
  return lua_type(L, -1);
}

static void test_yaml_plain_scalars(lua_State *L) {
  CHECK(plain_type(L, "0012") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "0012") == 0);
  CHECK(plain_type(L, "12") == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) == 12);
  CHECK(plain_type(L, "-7") == LUA_TNUMBER && lua_tointeger(L, -1) == -7);
  CHECK(plain_type(L, "0x1F") == LUA_TNUMBER && lua_tointeger(L, -1) == 31);
  CHECK(plain_type(L, "1.5") == LUA_TNUMBER && !lua_isinteger(L, -1));
  CHECK(plain_type(L, "true") == LUA_TBOOLEAN && lua_toboolean(L, -1));
  CHECK(plain_type(L, "yes") == LUA_TSTRING);
  CHECK(plain_type(L, "99999999999999999999999") == LUA_TSTRING);
  CHECK(plain_type(L, "~") == LUA_TLIGHTUSERDATA);  /* json.null */
  lua_settop(L, 0);
  CHECK(yaml_plain_is_ambiguous("0012", 4));
  CHECK(yaml_plain_is_ambiguous("on", 2));
  CHECK(!yaml_plain_is_ambiguous("Finance", 7));
}

/* The qmig library opens in a bare state and its pieces work from C. */
static void test_openlibs(lua_State *L) {
  CHECK(luaL_dostring(L, "return qmig.json.encode({tags = qmig.json.array(), n = qmig.json.null})") == LUA_OK);
  CHECK(lua_isstring(L, -1));
  const char *s = lua_tostring(L, -1);
  CHECK(strstr(s, "\"tags\":[]") != NULL && strstr(s, "\"n\":null") != NULL);
  lua_settop(L, 0);
  CHECK(luaL_dostring(L, "return #qmig.uuid(), qmig.in_task()") == LUA_OK);
  CHECK(lua_tointeger(L, 1) == 36 && lua_toboolean(L, 2) == 0);
  lua_settop(L, 0);
  /* A soft failure follows the nil, msg, code convention. */
  CHECK(luaL_dostring(L, "return qmig.json.decode('{bad')") == LUA_OK);
  CHECK(lua_gettop(L) == 3 && lua_isnil(L, 1) && strcmp(lua_tostring(L, 3), "json") == 0);
  lua_settop(L, 0);
}

int main(int argc, char **argv) {
  (void)argc;
  lua_State *L = luaL_newstate();
  qmig_openlibs(L, argv[0]);
  RUN(test_buffer_grows_and_terminates());
  RUN(test_error_codes());
  RUN(test_yaml_plain_scalars(L));
  RUN(test_openlibs(L));
  lua_close(L);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
