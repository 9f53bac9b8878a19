/*
** lhttp.c — qmig.http: HTTP clients on the libcurl multi interface.
**
** Every request is an easy handle added to one process-wide multi handle.
** Inside a scheduler task (qmig_in_task) a request yields the coroutine
** with its request object; the scheduler calls http.poll() to drive all
** transfers at once and resumes the task when its transfer is done.
** Outside a task the request drives the multi handle itself until done.
**
** Userdata types (liolib.c pattern): "qmig.HttpClient", "qmig.HttpRequest".
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>

#include "http_transfer.h"
#include "io_worker.h"
#include "qmig.h"
#include "ws_loop.h"

#define HTTP_CLIENT "qmig.HttpClient"
#define HTTP_REQUEST "qmig.HttpRequest"

/* Registry keys: addresses of statics. */
static const char INFLIGHT_KEY = 'i';  /* lightuserdata(Request*) -> userdata */
static const char DONE_KEY = 'd';      /* array of finished, undelivered requests */

static CURLM *multi = NULL;
static int inflight_count = 0;

/* host.before_send(fn) (qmig.host): fn runs before curl is next driven when a write
** (any method but GET/HEAD) was queued since, so that the cache can commit
** the in-progress markers announcing those writes first (group commit,
** see Cache:group).  curl sends nothing before curl_multi_perform. */
static const char SEND_HOOK_KEY = 'h';  /* registry: the before_send function */
static int unsent_write = 0;

typedef struct Client {
  char *base_url, *cert, *key, *key_password, *ca, *user_agent;
  char *ntlm_user, *ntlm_password;  /* Windows account ("DOMAIN\\user"), when set */
  int insecure;
  long connect_timeout_ms, timeout_ms, idle_timeout_s;
  size_t max_body;
} Client;

typedef struct Request {
  Transfer t;
  char *url;
  char method[16];
  int sink_err;     /* what closing the sink on the I/O worker gave */
  int sink_job;     /* stack index of that job while the task waits */
} Request;

#define check_client(L, i) ((Client *)luaL_checkudata(L, i, HTTP_CLIENT))
#define check_request(L, i) ((Request *)luaL_checkudata(L, i, HTTP_REQUEST))

static char *dup_opt(lua_State *L, int idx, const char *field) {
  char *copy = NULL;
  if (lua_getfield(L, idx, field) == LUA_TSTRING) copy = strdup(lua_tostring(L, -1));
  else if (!lua_isnil(L, -1)) luaL_error(L, "http: option '%s' must be a string", field);
  lua_pop(L, 1);
  return copy;
}

static double num_opt(lua_State *L, int idx, const char *field, double dflt) {
  double v = dflt;
  if (lua_getfield(L, idx, field) != LUA_TNIL) {
    if (!lua_isnumber(L, -1)) luaL_error(L, "http: option '%s' must be a number", field);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static void free_secret(char *s) {
  if (s) {
    memset(s, 0, strlen(s));  /* a key passphrase should not linger in freed memory */
    free(s);
  }
}

static void cleanup_multi(void) {
  io_set_notify(NULL);  /* no I/O worker may wake a freed multi handle */
  if (multi) curl_multi_cleanup(multi);
  multi = NULL;
  curl_global_cleanup();
}

/* From the I/O worker's thread: a job ended, so a poll waiting for
** sockets must return to hand it over. */
static void wake_poll(void) {
  if (multi) curl_multi_wakeup(multi);
}

static CURLM *get_multi(void) {
  if (multi == NULL) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi = curl_multi_init();
    atexit(cleanup_multi);
    io_set_notify(wake_poll);
  }
  return multi;
}

/* {====== client */

/* ntlm = {username=, password=}: both strings; copied into the client. */
static void ntlm_opt(lua_State *L, Client *c) {
  int t = lua_getfield(L, 1, "ntlm");
  if (t == LUA_TTABLE) {
    int idx = lua_gettop(L);
    c->ntlm_user = dup_opt(L, idx, "username");
    c->ntlm_password = dup_opt(L, idx, "password");
    if (!c->ntlm_user || !c->ntlm_password) luaL_error(L, "http: option 'ntlm' needs username and password");
  } else if (t != LUA_TNIL) {
    luaL_error(L, "http: option 'ntlm' must be a table");
  }
  lua_pop(L, 1);
}

/* http.client{base_url=, headers=, timeout=, connect_timeout=,
**   idle_timeout=, cert=, key=, key_password=, ca=, insecure=,
**   user_agent=, max_body=, ntlm={username=, password=}}  [-1, +1, e] */
static int http_client(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  Client *c = lua_newuserdatauv(L, sizeof(Client), 1);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, HTTP_CLIENT);
  c->base_url = dup_opt(L, 1, "base_url");
  c->cert = dup_opt(L, 1, "cert");
  c->key = dup_opt(L, 1, "key");
  c->key_password = dup_opt(L, 1, "key_password");
  c->ca = dup_opt(L, 1, "ca");
  c->user_agent = dup_opt(L, 1, "user_agent");
  ntlm_opt(L, c);
  lua_getfield(L, 1, "insecure");
  c->insecure = lua_toboolean(L, -1);
  lua_pop(L, 1);
  c->connect_timeout_ms = (long)(num_opt(L, 1, "connect_timeout", 15) * 1000);
  c->timeout_ms = (long)(num_opt(L, 1, "timeout", 0) * 1000);
  c->idle_timeout_s = (long)num_opt(L, 1, "idle_timeout", 120);
  c->max_body = (size_t)num_opt(L, 1, "max_body", 256.0 * 1024 * 1024);
  lua_createtable(L, 0, 4);  /* default headers, copied */
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -5);
    }
  }
  lua_pop(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int client_gc(lua_State *L) {
  Client *c = check_client(L, 1);
  free(c->base_url);
  free(c->cert);
  free(c->key);
  free_secret(c->key_password);
  free(c->ca);
  free(c->user_agent);
  free(c->ntlm_user);
  free_secret(c->ntlm_password);
  memset(c, 0, sizeof *c);
  return 0;
}

static int client_tostring(lua_State *L) {
  Client *c = check_client(L, 1);
  lua_pushfstring(L, "qmig.HttpClient (%s)", c->base_url ? c->base_url : "no base url");
  return 1;
}
/* }====== */

/* {====== building a request */

/* The URL is built in a C buffer, not a luaL_Buffer: building it reads
** the options table, and a luaL_Buffer forbids stack use in between. */
static void url_add(lua_State *L, Buffer *u, const char *p, size_t n) {
  if (buffer_append(u, p, n) != 0) {
    buffer_free(u);
    luaL_error(L, "http: out of memory");
  }
}

static void add_escaped(lua_State *L, Buffer *u, const char *s, size_t len) {
  char *e = curl_easy_escape(NULL, s, (int)len);
  if (e == NULL) {
    buffer_free(u);
    luaL_error(L, "http: out of memory");
    return;  /* not reached: luaL_error does not return (for the analyzer) */
  }
  size_t n = strlen(e);
  int failed = buffer_append(u, e, n);
  curl_free(e);
  if (failed) luaL_error(L, "http: out of memory");
}

static void add_query_value(lua_State *L, Buffer *u, int *first, const char *key, int vidx) {
  size_t len;
  const char *v;
  int t = lua_type(L, vidx);
  if (t == LUA_TBOOLEAN) {
    v = lua_toboolean(L, vidx) ? "true" : "false";
    len = strlen(v);
  } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    v = lua_tolstring(L, vidx, &len);
  } else {
    buffer_free(u);
    luaL_error(L, "http: query value for '%s' must be a string, number or boolean", key);
    return;
  }
  if (!*first) url_add(L, u, "&", 1);
  *first = 0;
  add_escaped(L, u, key, strlen(key));
  url_add(L, u, "=", 1);
  add_escaped(L, u, v, len);
}

static int compare_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends "?k=v&..." for the query table at qidx, keys sorted so the same
** request always has the same URL.  Array values repeat the key. */
static void add_query(lua_State *L, Buffer *u, int qidx, int has_question) {
  const char *keys[256];
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, qidx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || n == 256) {
      buffer_free(u);
      luaL_error(L, "http: query keys must be strings (at most 256)");
    }
    keys[n++] = lua_tostring(L, -1);  /* anchored by the query table */
  }
  if (n == 0) return;
  qsort(keys, (size_t)n, sizeof keys[0], compare_keys);
  int first = 1;
  url_add(L, u, has_question ? "&" : "?", 1);
  for (int i = 0; i < n; i++) {
    lua_getfield(L, qidx, keys[i]);
    if (lua_istable(L, -1)) {
      lua_Integer len = luaL_len(L, -1);
      for (lua_Integer j = 1; j <= len; j++) {
        lua_geti(L, -1, j);
        add_query_value(L, u, &first, keys[i], lua_gettop(L));
        lua_pop(L, 1);
      }
    } else {
      add_query_value(L, u, &first, keys[i], lua_gettop(L));
    }
    lua_pop(L, 1);
  }
}

static int is_absolute(const char *s) {
  return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* Pushes the full URL for the request options at oidx. */
static void push_url(lua_State *L, Client *c, int oidx) {
  Buffer u = {NULL, 0, 0};
  lua_getfield(L, oidx, "path");
  const char *path = luaL_optstring(L, -1, "");
  if (is_absolute(path)) {
    url_add(L, &u, path, strlen(path));
  } else {
    if (c->base_url == NULL) {
      luaL_error(L, "http: relative path '%s' but the client has no base_url", path);
      return;  /* not reached: luaL_error does not return (for the analyzer) */
    }
    size_t blen = strlen(c->base_url);
    while (blen > 0 && c->base_url[blen - 1] == '/') blen--;
    url_add(L, &u, c->base_url, blen);
    if (*path && *path != '/') url_add(L, &u, "/", 1);
    url_add(L, &u, path, strlen(path));
  }
  int has_question = strchr(path, '?') != NULL;
  lua_pop(L, 1);
  if (lua_getfield(L, oidx, "query") == LUA_TTABLE) add_query(L, &u, lua_gettop(L), has_question);
  lua_pop(L, 1);
  lua_pushlstring(L, u.data ? u.data : "", u.len);
  buffer_free(&u);
}

/* Collects the header table at hidx into acc (lowercase name -> line);
** a false value removes a default header. */
static void collect_headers(lua_State *L, int hidx, int acc) {
  lua_pushnil(L);
  while (lua_next(L, hidx)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "http: header names must be strings");
    const char *name = lua_tostring(L, -2);
    char lower[128];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof lower) luaL_error(L, "http: bad header name");
    for (size_t i = 0; i <= n; i++) lower[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    if (lua_toboolean(L, -1)) {
      const char *value = luaL_tolstring(L, -1, NULL);
      if (strpbrk(value, "\r\n")) luaL_error(L, "http: header '%s' contains a line break", name);
      lua_pushfstring(L, "%s: %s", name, value);
      lua_setfield(L, acc, lower);
      lua_pop(L, 1);
    } else {
      lua_pushnil(L);
      lua_setfield(L, acc, lower);
    }
    lua_pop(L, 1);
  }
}

static void set_headers(lua_State *L, Request *r, int client_idx, int oidx, int json_body) {
  lua_newtable(L);
  int acc = lua_gettop(L);
  lua_getiuservalue(L, client_idx, 1);
  collect_headers(L, lua_gettop(L), acc);
  lua_pop(L, 1);
  if (json_body) {
    lua_pushliteral(L, "Content-Type: application/json");
    lua_setfield(L, acc, "content-type");
  }
  if (lua_getfield(L, oidx, "headers") == LUA_TTABLE) collect_headers(L, lua_gettop(L), acc);
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, acc)) {
    r->t.headers = curl_slist_append(r->t.headers, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* No "Expect: 100-continue": it costs a round trip per upload. */
  r->t.headers = curl_slist_append(r->t.headers, "Expect:");
  curl_easy_setopt(r->t.easy, CURLOPT_HTTPHEADER, r->t.headers);
}

/* Multipart parts: {name=, data=|path=, filename=, content_type=}. */
static void set_multipart(lua_State *L, Request *r, int pidx) {
  r->t.mime = curl_mime_init(r->t.easy);
  lua_Integer n = luaL_len(L, pidx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, pidx, i);
    int part_idx = lua_gettop(L);
    luaL_checktype(L, part_idx, LUA_TTABLE);
    curl_mimepart *part = curl_mime_addpart(r->t.mime);
    lua_getfield(L, part_idx, "name");
    curl_mime_name(part, luaL_checkstring(L, -1));
    if (lua_getfield(L, part_idx, "path") == LUA_TSTRING) {
      if (curl_mime_filedata(part, lua_tostring(L, -1)) != CURLE_OK)
        luaL_error(L, "http: cannot read multipart file '%s'", lua_tostring(L, -1));
    } else {
      size_t len;
      lua_getfield(L, part_idx, "data");
      const char *data = luaL_checklstring(L, -1, &len);
      curl_mime_data(part, data, len);
      lua_pop(L, 1);
    }
    if (lua_getfield(L, part_idx, "filename") == LUA_TSTRING) curl_mime_filename(part, lua_tostring(L, -1));
    if (lua_getfield(L, part_idx, "content_type") == LUA_TSTRING) curl_mime_type(part, lua_tostring(L, -1));
    lua_settop(L, part_idx - 1);
  }
  curl_easy_setopt(r->t.easy, CURLOPT_MIMEPOST, r->t.mime);
}

static void set_tls(Request *r, Client *c) {
  CURL *e = r->t.easy;
  if (c->cert) curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert);
  if (c->key) curl_easy_setopt(e, CURLOPT_SSLKEY, c->key);
  /* Without a password OpenSSL asks for one on the terminal and an
  ** unattended run hangs; an empty one makes an encrypted key fail to load
  ** instead (CURLE_SSL_CERTPROBLEM), and is ignored for a plain key. */
  if (c->key) curl_easy_setopt(e, CURLOPT_KEYPASSWD, c->key_password ? c->key_password : "");
  if (c->ca) curl_easy_setopt(e, CURLOPT_CAINFO, c->ca);
  if (c->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
}

/* NTLM only, not CURLAUTH_ANY: curl then sends its type 1 message with the
** first request instead of a request without credentials first.  curl
** keeps the handshake on the connection, and gives a connection that
** finished one only to requests with the same credentials. */
static void set_auth(Request *r, Client *c) {
  if (c->ntlm_user == NULL) return;
  curl_easy_setopt(r->t.easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_NTLM);
  curl_easy_setopt(r->t.easy, CURLOPT_USERNAME, c->ntlm_user);
  curl_easy_setopt(r->t.easy, CURLOPT_PASSWORD, c->ntlm_password);
}

/* Sets the body from opts.body / opts.json / opts.source / opts.multipart.
** Returns 0, or an errno when the source file cannot be opened. */
static int set_body(lua_State *L, Request *r, int oidx, int *json_body) {
  CURL *e = r->t.easy;
  size_t len;
  *json_body = 0;
  if (lua_getfield(L, oidx, "json") != LUA_TNIL) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "qmig.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 1);
    const char *body = lua_tolstring(L, -1, &len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    *json_body = 1;
    lua_pop(L, 3);
    return 0;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, oidx, "body") != LUA_TNIL) {
    const char *body = luaL_checklstring(L, -1, &len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, oidx, "source") != LUA_TNIL) {
    const char *path = luaL_checkstring(L, -1);
    struct stat st;
    r->t.source = fopen(path, "rb");
    if (r->t.source == NULL || fstat(fileno(r->t.source), &st) != 0) {
      lua_pop(L, 1);
      return errno ? errno : EIO;
    }
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, transfer_read_cb);
    curl_easy_setopt(e, CURLOPT_READDATA, &r->t);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)st.st_size);
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, oidx, "multipart") == LUA_TTABLE) set_multipart(L, r, lua_gettop(L));
  lua_pop(L, 1);
  return 0;
}

/* A write: any method but GET and HEAD (what the server may apply). */
static int is_write(const Request *r) {
  return strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0;
}

static void set_method(lua_State *L, Request *r, int oidx) {
  lua_getfield(L, oidx, "method");
  const char *m = luaL_optstring(L, -1, "GET");
  size_t n = strlen(m);
  if (n == 0 || n >= sizeof r->method) luaL_error(L, "http: bad method '%s'", m);
  for (size_t i = 0; i <= n; i++) r->method[i] = (char)((m[i] >= 'a' && m[i] <= 'z') ? m[i] - 32 : m[i]);
  lua_pop(L, 1);
  if (strcmp(r->method, "HEAD") == 0) curl_easy_setopt(r->t.easy, CURLOPT_NOBODY, 1L);
  else curl_easy_setopt(r->t.easy, CURLOPT_CUSTOMREQUEST, r->method);
  /* A write may reuse a pooled connection (a fresh TLS handshake for
  ** each would cost both sides more than the request), but curl must not
  ** re-send it on its own: transfer_prereq_cb.  Only connections idle for
  ** under 30 s: past that a server or proxy may be closing one as we
  ** send, which costs a look-up and a retry. */
  if (is_write(r)) {
    curl_easy_setopt(r->t.easy, CURLOPT_PREREQFUNCTION, transfer_prereq_cb);
    curl_easy_setopt(r->t.easy, CURLOPT_PREREQDATA, &r->t);
    curl_easy_setopt(r->t.easy, CURLOPT_MAXAGE_CONN, 30L);
  }
}
/* }====== */

/* {====== running transfers */

static void push_done_list(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &DONE_KEY);
}

/* Takes finished transfers off the multi handle.  The one `waiter` is
** waiting for synchronously is only flagged; the others are queued for
** the scheduler's next http.poll(). */
static void drain(lua_State *L, Request *waiter) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    Request *r = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    r->t.result = msg->data.result;
    r->t.done = 1;
    transfer_totals.finished++;
    curl_multi_remove_handle(multi, msg->easy_handle);
    r->t.in_multi = 0;
    inflight_count--;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &INFLIGHT_KEY);
    if (r != waiter) {
      push_done_list(L);
      lua_rawgetp(L, -2, r);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      lua_pop(L, 1);
    }
    lua_pushnil(L);
    lua_rawsetp(L, -2, r);
    lua_pop(L, 1);
  }
}

static void abort_transfer(lua_State *L, Request *r) {
  if (r->t.in_multi) {
    curl_multi_remove_handle(multi, r->t.easy);
    r->t.in_multi = 0;
    inflight_count--;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &INFLIGHT_KEY);
    lua_pushnil(L);
    lua_rawsetp(L, -2, r);
    lua_pop(L, 1);
  }
  r->t.done = 1;
  r->t.result = CURLE_ABORTED_BY_CALLBACK;
}

/* Parses the raw header block into a table: lowercase name -> value,
** repeated headers joined with ", ".  [-0, +1, m] */
static void push_headers(lua_State *L, const Buffer *head) {
  lua_newtable(L);
  if (head->data == NULL) return;
  const char *p = head->data, *end = head->data + head->len;
  const char *eol = memchr(p, '\n', (size_t)(end - p));  /* skip status line */
  p = eol ? eol + 1 : end;
  while (p < end) {
    eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol : end;
    const char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon && colon > p) {
      luaL_Buffer name;
      luaL_buffinit(L, &name);
      for (const char *q = p; q < colon; q++) luaL_addchar(&name, (char)((*q >= 'A' && *q <= 'Z') ? *q + 32 : *q));
      luaL_pushresult(&name);
      const char *v = colon + 1, *ve = line_end;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    p = eol ? eol + 1 : end;
  }
}

/* Turns a finished request into results: a response table, or
** nil, message, code.  [-0, +(1|3), m] */
static int keeps_sink(Request *r) {
  long status = 0;
  curl_easy_getinfo(r->t.easy, CURLINFO_RESPONSE_CODE, &status);
  return r->t.result == CURLE_OK && status >= 200 && status < 300;
}

static int finish(lua_State *L, Request *r) {
  long status = 0;
  curl_easy_getinfo(r->t.easy, CURLINFO_RESPONSE_CODE, &status);
  int ok = r->t.result == CURLE_OK;
  int keep_sink = keeps_sink(r);
  /* a sink the I/O worker closed is gone from the Transfer already */
  int sink_err = r->sink_err ? r->sink_err : transfer_close_sink(&r->t, keep_sink);
  if (!ok) {
    const char *code = (r->t.result == CURLE_ABORTED_BY_CALLBACK && qmig_interrupted()) ? "interrupted"
                                                                                     : transfer_error_code(&r->t);
    const char *detail = r->t.errbuf[0] ? r->t.errbuf : curl_easy_strerror(r->t.result);
    if (r->t.too_large) detail = "reply body larger than max_body";
    else if (r->t.result == CURLE_OUT_OF_MEMORY) detail = "reply headers too large";
    else if (r->t.resend_refused) detail = "connection closed before any reply; not re-sent (it may have been applied)";
    if (strcmp(code, "interrupted") == 0) detail = "interrupted";
    lua_pushfstring(L, "%s %s: %s", r->method, r->url, detail);
    const char *msg = lua_tostring(L, -1);
    int n = qmig_fail(L, msg, code);
    lua_remove(L, -4);
    return n;
  }
  if (sink_err) {
    lua_pushfstring(L, "%s: %s", r->t.sink_path, strerror(sink_err));
    return qmig_fail(L, lua_tostring(L, -1), "io");
  }
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  push_headers(L, &r->t.head);
  lua_setfield(L, -2, "headers");
  if (keep_sink && r->t.sink_path) {
    lua_pushstring(L, r->t.sink_path);
    lua_setfield(L, -2, "sink");
  } else {
    lua_pushlstring(L, r->t.body.data ? r->t.body.data : "", r->t.body.len);
    lua_setfield(L, -2, "body");
  }
  curl_off_t down = 0, up = 0;
  double total = 0;
  char *effective = NULL;
  curl_easy_getinfo(r->t.easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
  curl_easy_getinfo(r->t.easy, CURLINFO_SIZE_UPLOAD_T, &up);
  if (r->t.source == NULL) transfer_totals.sent += (long long)up;  /* file uploads counted as read */
  curl_easy_getinfo(r->t.easy, CURLINFO_TOTAL_TIME, &total);
  curl_easy_getinfo(r->t.easy, CURLINFO_EFFECTIVE_URL, &effective);
  lua_pushinteger(L, (lua_Integer)down);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, (lua_Integer)up);
  lua_setfield(L, -2, "uploaded");
  lua_pushnumber(L, total);
  lua_setfield(L, -2, "time");
  lua_pushstring(L, effective ? effective : r->url);
  lua_setfield(L, -2, "url");
  lua_pushstring(L, r->method);
  lua_setfield(L, -2, "method");
  return 1;
}

static int request_done(lua_State *L, Request *r) {
  int n = finish(L, r);
  transfer_cleanup(&r->t);
  return n;
}

/* A downloaded file's flush, fsync and rename, on the I/O worker. */
typedef struct SinkClose {
  FILE *f;
  const char *part, *path;  /* owned by the Transfer the job anchors */
} SinkClose;

static int sink_close_job(IoJob *job) {
  SinkClose *c = io_job_payload(job);
  return sink_finish(c->f, c->part, c->path, 1);
}

static int request_sink_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  Request *r = check_request(L, (int)ctx);
  IoJob *job = io_job_test(L, r->sink_job);
  r->sink_err = job ? job->err : EIO;
  return request_done(L, r);
}

/* Continuation after the scheduler resumed the task: the request object
** sits at stack index ctx.  Inside a task a file the reply went to is
** closed (fsync) by the I/O worker, the task waiting for it. */
static int request_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  Request *r = check_request(L, (int)ctx);
  if (r->t.sink && keeps_sink(r) && qmig_in_task(L)) {
    SinkClose *c = io_job_payload(io_job_new(L, sink_close_job, sizeof(SinkClose), (int)ctx));
    c->f = r->t.sink;
    c->part = r->t.sink_part;
    c->path = r->t.sink_path;
    r->t.sink = NULL;  /* the worker's now: nothing else may touch it */
    r->sink_job = lua_gettop(L);
    return io_job_await(L, c->path, ctx, request_sink_k);
  }
  return request_done(L, r);
}

/* Calls the before_send hook if a write was queued since the last call.
** An error in it propagates, and the writes stay unsent until it succeeds. */
static void before_send(lua_State *L) {
  if (!unsent_write) return;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SEND_HOOK_KEY) == LUA_TFUNCTION) lua_call(L, 0, 0);
  else lua_pop(L, 1);
  unsent_write = 0;
}

/* Runs the multi handle until r is done (a request outside any task). */
static void wait_sync(lua_State *L, Request *r) {
  while (!r->t.done) {
    int running = 0;
    before_send(L);
    curl_multi_perform(multi, &running);
    drain(L, r);
    if (r->t.done) break;
    if (qmig_interrupted()) {
      abort_transfer(L, r);
      break;
    }
    curl_multi_poll(multi, NULL, 0, 100, NULL);
  }
}

/* client:request{method=, path=, query=, headers=, body=|json=|source=|
**   multipart=, sink=, follow=, timeout=, durable=}
** -> response | nil, msg, code.  Yields inside a scheduler task. */
static int client_request(lua_State *L) {
  Client *c = check_client(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  Request *r = lua_newuserdatauv(L, sizeof(Request), 0);
  memset(r, 0, sizeof *r);
  luaL_setmetatable(L, HTTP_REQUEST);
  int ridx = lua_gettop(L);
  get_multi();
  r->t.easy = curl_easy_init();
  if (r->t.easy == NULL) return luaL_error(L, "http: cannot create a curl handle");
  r->t.max_body = (size_t)num_opt(L, 2, "max_body", (double)c->max_body);
  CURL *e = r->t.easy;

  push_url(L, c, 2);
  r->url = strdup(lua_tostring(L, -1));
  lua_pop(L, 1);
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->t.errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, transfer_write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->t);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, transfer_header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &r->t);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(num_opt(L, 2, "timeout", c->timeout_ms / 1000.0) * 1000));
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)num_opt(L, 2, "idle_timeout", (double)c->idle_timeout_s));
  if (c->user_agent) curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
  long follow = (long)num_opt(L, 2, "follow", 0);
  if (follow > 0) {
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, follow);
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  }
  set_tls(r, c);
  set_auth(r, c);
  set_method(L, r, 2);
  /* the handshake sends the request once per message, and a write must
  ** be sent once (transfer_prereq_cb would stop it) */
  if (c->ntlm_user && is_write(r)) return luaL_error(L, "http: a client with 'ntlm' sends reads only");
  int json_body = 0;
  int err = set_body(L, r, 2, &json_body);
  if (err == 0 && lua_getfield(L, 2, "sink") == LUA_TSTRING) err = transfer_open_sink(&r->t, lua_tostring(L, -1));
  lua_settop(L, ridx);
  if (err) {
    lua_pushfstring(L, "%s %s: %s", r->method, r->url, strerror(err));
    transfer_cleanup(&r->t);
    return qmig_fail(L, lua_tostring(L, -1), "io");
  }
  set_headers(L, r, 1, 2, json_body);

  CURLMcode mc = curl_multi_add_handle(multi, e);
  if (mc != CURLM_OK) return luaL_error(L, "http: %s", curl_multi_strerror(mc));
  r->t.in_multi = 1;
  inflight_count++;
  /* durable = true: the caller passed qmig.store.durable's barrier already */
  lua_getfield(L, 2, "durable");
  int covered = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!covered && is_write(r)) unsent_write = 1;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &INFLIGHT_KEY);
  lua_pushvalue(L, ridx);
  lua_rawsetp(L, -2, r);
  lua_pop(L, 1);

  if (qmig_in_task(L)) {
    lua_pushvalue(L, ridx);
    return lua_yieldk(L, 1, (lua_KContext)ridx, request_k);
  }
  wait_sync(L, r);
  return request_k(L, LUA_OK, (lua_KContext)ridx);
}

/* http.poll([timeout]) -> array of requests whose transfers finished and
** of I/O jobs (qmig.IoJob) the worker ended.
** Waits up to timeout seconds (default 1) when none is ready yet. */
static int http_poll(lua_State *L) {
  double timeout = luaL_optnumber(L, 1, 1.0);
  get_multi();
  int running = 0;
  before_send(L);
  curl_multi_perform(multi, &running);
  drain(L, NULL);
  push_done_list(L);
  io_collect(L, -1);
  ws_loop_collect(L, -1);
  long wait_ms = (long)(timeout * 1000);
  while (lua_rawlen(L, -1) == 0 && wait_ms > 0 && !qmig_interrupted()) {
    long slice = wait_ms > 100 ? 100 : wait_ms;  /* stay responsive to Ctrl-C */
    struct curl_waitfd ws_fds[64];  /* the WebSockets tasks wait on (lws.c) */
    unsigned nws = ws_loop_waitfds(ws_fds, 64);
    curl_multi_poll(multi, nws ? ws_fds : NULL, nws, (int)slice, NULL);
    wait_ms -= slice;
    curl_multi_perform(multi, &running);
    drain(L, NULL);
    io_collect(L, -1);
    ws_loop_collect(L, -1);
  }
  ws_loop_collect(L, -1);  /* a wait that ended with the last slice (a timeout, Ctrl-C) */
  lua_newtable(L);  /* fresh done list for next time */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &DONE_KEY);
  return 1;
}

/* http.abort(req): stops a transfer; its task resumes with a failure. */
static int http_abort(lua_State *L) {
  Request *r = check_request(L, 1);
  if (!r->t.done) {
    abort_transfer(L, r);
    push_done_list(L);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  }
  return 0;
}

/* host.before_send(fn | nil): sets or clears the hook (see SEND_HOOK_KEY).
** Part of qmig.host (lqmig.c), the engine's, not of the http library steps
** use. */
int qmig_http_before_send(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SEND_HOOK_KEY);
  return 0;
}

/* http.stats() -> {received=, sent=, finished=}: bytes and transfers of
** the whole process so far (the progress line takes differences). */
static int http_stats(lua_State *L) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, transfer_totals.received);
  lua_setfield(L, -2, "received");
  lua_pushinteger(L, transfer_totals.sent);
  lua_setfield(L, -2, "sent");
  lua_pushinteger(L, transfer_totals.finished);
  lua_setfield(L, -2, "finished");
  return 1;
}

static int http_pending(lua_State *L) {
  lua_pushinteger(L, inflight_count);
  return 1;
}

static int http_is_request(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, HTTP_REQUEST) != NULL);
  return 1;
}

/* http.is_job(x): x is an I/O job (see io_worker.h) or a WebSocket
** (ws_loop.h) a task waits for; http.poll hands it back like a finished
** request. */
static int http_is_job(lua_State *L) {
  lua_pushboolean(L, io_job_test(L, 1) != NULL || ws_loop_is_wait(L, 1));
  return 1;
}

/* http.escape(s) -> percent-encoded s (everything but A-Z a-z 0-9 -._~). */
static int http_escape(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char *e = curl_easy_escape(NULL, s, (int)len);
  lua_pushstring(L, e);
  curl_free(e);
  return 1;
}

/* http.configure{max_host_connections=, max_total_connections=} */
static int http_configure(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  get_multi();
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)num_opt(L, 1, "max_host_connections", 0));
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)num_opt(L, 1, "max_total_connections", 0));
  return 0;
}

static int request_gc(lua_State *L) {
  Request *r = check_request(L, 1);
  if (r->t.in_multi && multi) {
    curl_multi_remove_handle(multi, r->t.easy);
    inflight_count--;
  }
  r->t.in_multi = 0;
  transfer_cleanup(&r->t);
  free(r->url);
  r->url = NULL;
  return 0;
}

static int request_tostring(lua_State *L) {
  Request *r = check_request(L, 1);
  lua_pushfstring(L, "qmig.HttpRequest (%s %s%s)", r->method, r->url ? r->url : "?", r->t.done ? ", done" : "");
  return 1;
}
/* }====== */

static const luaL_Reg client_meth[] = {
  {"request", client_request},
  {NULL, NULL}
};

static const luaL_Reg client_metameth[] = {
  {"__index", NULL},
  {"__gc", client_gc},
  {"__close", client_gc},
  {"__tostring", client_tostring},
  {NULL, NULL}
};

static const luaL_Reg request_metameth[] = {
  {"__gc", request_gc},
  {"__close", request_gc},
  {"__tostring", request_tostring},
  {NULL, NULL}
};

static const luaL_Reg httplib[] = {
  {"client", http_client},
  {"poll", http_poll},
  {"abort", http_abort},
  {"pending", http_pending},
  {"stats", http_stats},
  {"is_request", http_is_request},
  {"is_job", http_is_job},
  {"escape", http_escape},
  {"configure", http_configure},
  {NULL, NULL}
};

int luaopen_qmig_http(lua_State *L) {
  io_worker_open(L);
  luaL_newmetatable(L, HTTP_CLIENT);
  luaL_setfuncs(L, client_metameth, 0);
  luaL_newlibtable(L, client_meth);
  luaL_setfuncs(L, client_meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, HTTP_REQUEST);
  luaL_setfuncs(L, request_metameth, 0);
  lua_pop(L, 1);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &INFLIGHT_KEY);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &DONE_KEY);
  luaL_newlib(L, httplib);
  return 1;
}
