/*
** lws.c — qmig.ws: WebSocket clients (RFC 6455) for the Qlik engine API.
**
** A connection is a "qmig.WebSocket" userdata (liolib.c pattern: a
** metatable, __gc, __close, __tostring) over ws_conn.c.  Waiting (for the
** connection to open, for a message, for the peer's close) yields inside
** a scheduler task like an HTTP request does: the task yields the
** connection, http.poll() waits on its socket along with curl's
** (ws_loop.h) and hands it back when the wait ends.  Outside a task the
** call polls the socket itself.  Sends never yield: a message is written
** whole before send returns (JSON-RPC requests fit the socket buffer).
** Failures are nil, msg, code.
*/
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>

#include "qmig.h"
#include "ws_conn.h"
#include "ws_loop.h"

#define WS_META "qmig.WebSocket"

/* Registry key: lightuserdata(WsLua*) -> userdata while a task waits on it,
** so the collector cannot free a connection the loop still drives. */
static const char WAITING_KEY = 'w';

enum { WAIT_NONE, WAIT_OPEN, WAIT_MESSAGE, WAIT_CLOSE };

typedef struct WsLua {
  WsConn c;
  int wait;                  /* what the waiting call wants */
  int timed_out, interrupted;
  long long deadline;        /* monotonic ms */
  int listed;                /* in the waiting list */
  struct WsLua *next;
  double timeout;            /* default receive timeout, seconds */
  char url[512];
} WsLua;

static WsLua *waiting_head = NULL;

#define check_ws(L, i) ((WsLua *)luaL_checkudata(L, i, WS_META))

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void unlist(WsLua *w) {
  for (WsLua **p = &waiting_head; *p; p = &(*p)->next) {
    if (*p == w) {
      *p = w->next;
      break;
    }
  }
  w->listed = 0;
  w->next = NULL;
}

static int satisfied(const WsLua *w) {
  int st = w->c.state;
  if (st == WSC_FAILED || st == WSC_CLOSED) return 1;
  switch (w->wait) {
    case WAIT_OPEN: return st != WSC_CONNECTING && st != WSC_HANDSHAKE;
    case WAIT_MESSAGE: return w->c.ready;
    default: return 0;  /* WAIT_CLOSE: only the states above */
  }
}

/* Drives the connection as far as it goes now.  1 when the wait is over. */
static int advance(WsLua *w) {
  for (;;) {
    if (w->wait == WAIT_CLOSE && w->c.ready) {  /* messages after our close are dropped */
      size_t n;
      int op;
      ws_conn_take(&w->c, &n, &op);
    }
    if (satisfied(w)) return 1;
    if (ws_conn_pump(&w->c) == 0) break;
  }
  if (satisfied(w)) return 1;
  if (now_ms() >= w->deadline) return w->timed_out = 1;
  if (qmig_interrupted()) return w->interrupted = 1;
  return 0;
}

/* {====== the event loop's side (ws_loop.h) */
unsigned ws_loop_waitfds(struct curl_waitfd *fds, unsigned max) {
  unsigned n = 0;
  for (WsLua *w = waiting_head; w && n < max; w = w->next) n += ws_conn_waitfds(&w->c, fds + n, max - n);
  return n;
}

int ws_loop_collect(lua_State *L, int list_idx) {
  list_idx = lua_absindex(L, list_idx);
  int n = 0;
  WsLua *w = waiting_head;
  while (w) {
    WsLua *next = w->next;
    if (advance(w)) {
      unlist(w);
      lua_rawgetp(L, LUA_REGISTRYINDEX, &WAITING_KEY);
      lua_rawgetp(L, -1, w);
      lua_rawseti(L, list_idx, (lua_Integer)lua_rawlen(L, list_idx) + 1);
      lua_pushnil(L);
      lua_rawsetp(L, -2, w);
      lua_pop(L, 1);
      n++;
    }
    w = next;
  }
  return n;
}

int ws_loop_is_wait(lua_State *L, int idx) {
  return luaL_testudata(L, idx, WS_META) != NULL;
}
/* }====== */

/* Waits until `kind` holds, then returns k's results: yields inside a
** task, polls the socket outside one.  The connection is at stack idx. */
static int wait_for(lua_State *L, int idx, WsLua *w, int kind, double timeout, lua_KFunction k) {
  if (w->wait != WAIT_NONE) return luaL_error(L, "ws: another task is waiting on this WebSocket");
  w->wait = kind;
  w->timed_out = w->interrupted = 0;
  w->deadline = now_ms() + (long long)(timeout * 1000);
  if (advance(w)) return k(L, LUA_OK, (lua_KContext)idx);
  if (qmig_in_task(L)) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &WAITING_KEY);
    lua_pushvalue(L, idx);
    lua_rawsetp(L, -2, w);
    lua_pop(L, 1);
    w->next = waiting_head;
    waiting_head = w;
    w->listed = 1;
    lua_pushvalue(L, idx);
    return lua_yieldk(L, 1, (lua_KContext)idx, k);
  }
  while (!advance(w)) {
    struct curl_waitfd cfds[8];
    struct pollfd pfds[8];
    unsigned n = ws_conn_waitfds(&w->c, cfds, 8);
    for (unsigned i = 0; i < n; i++) {
      pfds[i].fd = cfds[i].fd;
      pfds[i].events = cfds[i].events;
      pfds[i].revents = 0;
    }
    poll(pfds, n, 100);  /* a slice, so timeouts and Ctrl-C are seen */
  }
  return k(L, LUA_OK, (lua_KContext)idx);
}

/* nil, "<url>: msg", code for a failed, timed-out or interrupted wait. */
static int wait_failure(lua_State *L, WsLua *w, const char *what) {
  if (w->interrupted) return qmig_fail(L, lua_pushfstring(L, "%s: interrupted", w->url), "interrupted");
  if (w->timed_out) return qmig_fail(L, lua_pushfstring(L, "%s: no %s in time", w->url, what), "timeout");
  if (w->c.state == WSC_FAILED)
    return qmig_fail(L, lua_pushfstring(L, "%s: %s", w->url, w->c.err), w->c.err_code ? w->c.err_code : "io");
  return qmig_fail(L, lua_pushfstring(L, "%s: closed by the server (%d%s%s)", w->url, w->c.close_code,
                                      w->c.close_reason[0] ? " " : "", w->c.close_reason), "closed");
}

/* {====== connecting */
static double num_opt(lua_State *L, int idx, const char *field, double dflt) {
  double v = dflt;
  if (lua_getfield(L, idx, field) != LUA_TNIL) {
    if (!lua_isnumber(L, -1)) luaL_error(L, "ws: option '%s' must be a number", field);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static const char *str_opt(lua_State *L, int idx, const char *field) {
  int t = lua_getfield(L, idx, field);
  const char *s = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;  /* anchored by the options table */
  if (t != LUA_TNIL && t != LUA_TSTRING && !(t == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
    luaL_error(L, "ws: option '%s' must be a string", field);  /* false: none */
  lua_pop(L, 1);
  return s;
}

/* headers = {Name = value, ...} -> "Name: value" lines (a false value is left out). */
static struct curl_slist *header_list(lua_State *L, int idx) {
  struct curl_slist *list = NULL;
  if (lua_getfield(L, idx, "headers") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_toboolean(L, -1)) {
        const char *name = lua_tostring(L, -2);
        const char *value = luaL_tolstring(L, -1, NULL);  /* pushes: name's index is -3 now */
        const char *line = lua_pushfstring(L, "%s: %s", name, value);
        if (strpbrk(line, "\r\n")) {
          curl_slist_free_all(list);
          luaL_error(L, "ws: header '%s' contains a line break", name);
        }
        struct curl_slist *grown = curl_slist_append(list, line);
        if (grown == NULL) {
          curl_slist_free_all(list);
          luaL_error(L, "ws: out of memory");
        }
        list = grown;
        lua_pop(L, 2);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return list;
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  WsLua *w = check_ws(L, (int)ctx);
  w->wait = WAIT_NONE;
  if (w->c.state == WSC_OPEN) {
    lua_pushvalue(L, (int)ctx);
    return 1;
  }
  int n = wait_failure(L, w, "upgrade");
  ws_conn_free(&w->c);
  return n;
}

/* ws.connect{url=, headers=, cert=, key=, key_password=, ca=, insecure=,
**   connect_timeout= (15 s), timeout= (120 s, receive), max_message= (16 MiB)}
** -> connection | nil, msg, code.  Yields inside a scheduler task. */
static int ws_connect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  WsOptions o;
  memset(&o, 0, sizeof o);
  o.url = str_opt(L, 1, "url");
  if (o.url == NULL) return luaL_error(L, "ws: option 'url' is required");
  o.cert = str_opt(L, 1, "cert");
  o.key = str_opt(L, 1, "key");
  o.key_password = str_opt(L, 1, "key_password");
  o.ca = str_opt(L, 1, "ca");
  lua_getfield(L, 1, "insecure");
  o.insecure = lua_toboolean(L, -1);
  lua_pop(L, 1);
  double connect_timeout = num_opt(L, 1, "connect_timeout", 15);
  o.connect_timeout_ms = (long)(connect_timeout * 1000);
  double maxm = num_opt(L, 1, "max_message", 16.0 * 1024 * 1024);
  luaL_argcheck(L, maxm >= 125 && maxm <= (double)WS_MAX_PAYLOAD, 1, "max_message out of range (125 .. 1 GiB)");
  o.max_message = (size_t)maxm;
  double timeout = num_opt(L, 1, "timeout", 120);
  WsLua *w = lua_newuserdatauv(L, sizeof(WsLua), 0);
  memset(w, 0, sizeof *w);
  w->c.state = WSC_CLOSED;
  luaL_setmetatable(L, WS_META);
  int idx = lua_gettop(L);
  w->timeout = timeout;
  snprintf(w->url, sizeof w->url, "%s", o.url);
  o.headers = header_list(L, 1);
  int rc = ws_conn_start(&w->c, &o);
  curl_slist_free_all(o.headers);  /* the request text holds them now */
  if (rc != 0) {
    lua_pushfstring(L, "%s: %s", w->url, w->c.err);
    int n = qmig_fail(L, lua_tostring(L, -1), w->c.err_code ? w->c.err_code : "io");
    ws_conn_free(&w->c);
    return n;
  }
  /* the upgrade is bounded by the connect timeout too */
  return wait_for(L, idx, w, WAIT_OPEN, connect_timeout + 1, connect_k);
}
/* }====== */

/* {====== methods */
static long send_timeout_ms(const WsLua *w) {
  return (long)(w->timeout * 1000);
}

static int send_result(lua_State *L, WsLua *w, int rc) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushfstring(L, "%s: %s", w->url, w->c.err);
  return qmig_fail(L, lua_tostring(L, -1), w->c.err_code ? w->c.err_code : "io");
}

/* conn:send(data [, {binary = false, fragment = N}]) -> true | nil, msg, code */
static int ws_send(lua_State *L) {
  WsLua *w = check_ws(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int binary = 0;
  size_t fragment = 0;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "binary");
    binary = lua_toboolean(L, -1);
    lua_pop(L, 1);
    double f = num_opt(L, 3, "fragment", 0);
    luaL_argcheck(L, f >= 0, 3, "fragment must be >= 0");
    fragment = (size_t)f;
  }
  if (len > w->c.as.max_message) {
    char msg[640];
    snprintf(msg, sizeof msg, "%s: message of %zu bytes over the cap of %zu", w->url, len,
             (size_t)w->c.as.max_message);
    return qmig_fail(L, msg, "too_large");
  }
  int rc = ws_conn_send(&w->c, binary ? WS_OP_BINARY : WS_OP_TEXT, (const unsigned char *)data, len, fragment,
                        send_timeout_ms(w));
  return send_result(L, w, rc);
}

static int receive_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  WsLua *w = check_ws(L, (int)ctx);
  w->wait = WAIT_NONE;
  size_t len;
  int op;
  const unsigned char *m = ws_conn_take(&w->c, &len, &op);
  if (m == NULL) return wait_failure(L, w, "message");
  lua_pushlstring(L, (const char *)m, len);
  lua_pushstring(L, op == WS_OP_BINARY ? "binary" : "text");
  return 2;
}

/* conn:receive([timeout]) -> data, "text"|"binary" | nil, msg, code */
static int ws_receive(lua_State *L) {
  WsLua *w = check_ws(L, 1);
  double timeout = luaL_optnumber(L, 2, w->timeout);
  lua_settop(L, 1);
  return wait_for(L, 1, w, WAIT_MESSAGE, timeout, receive_k);
}

/* conn:ping([payload]) -> true | nil, msg, code.  The pong is counted
** (conn:info().pongs) when a later receive reads it. */
static int ws_ping(lua_State *L) {
  WsLua *w = check_ws(L, 1);
  size_t len;
  const char *p = luaL_optlstring(L, 2, "", &len);
  luaL_argcheck(L, len <= 125, 2, "a ping carries at most 125 bytes");
  return send_result(L, w, ws_conn_control(&w->c, WS_OP_PING, (const unsigned char *)p, len, send_timeout_ms(w)));
}

static int close_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  WsLua *w = check_ws(L, (int)ctx);
  w->wait = WAIT_NONE;
  int ok = w->c.state == WSC_CLOSED && w->c.close_received;
  int code = w->c.close_code;
  if (!ok) {
    int n = wait_failure(L, w, "close reply");
    ws_conn_free(&w->c);
    return n;
  }
  ws_conn_free(&w->c);
  lua_pushboolean(L, 1);
  lua_pushinteger(L, code);
  return 2;
}

/* conn:close([code = 1000 [, reason [, timeout = 5]]]) -> true, peer's code |
** nil, msg, code.  The closing handshake: our close frame, then the
** server's, then the TCP connection goes. */
static int ws_close(lua_State *L) {
  WsLua *w = check_ws(L, 1);
  int code = (int)luaL_optinteger(L, 2, 1000);
  const char *reason = luaL_optstring(L, 3, "");
  double timeout = luaL_optnumber(L, 4, 5);
  lua_settop(L, 1);
  if (w->c.easy == NULL) {  /* closed already */
    lua_pushboolean(L, 1);
    lua_pushinteger(L, w->c.close_code);
    return 2;
  }
  if (w->c.state == WSC_OPEN && ws_conn_close(&w->c, code, reason, (long)(timeout * 1000)) != 0)
    return close_k(L, LUA_OK, 1);
  return wait_for(L, 1, w, WAIT_CLOSE, timeout, close_k);
}

static const char *state_name(int st) {
  static const char *const names[] = {"connecting", "handshake", "open", "closing", "closed", "failed"};
  return st >= 0 && st <= WSC_FAILED ? names[st] : "?";
}

/* conn:info() -> {state=, pongs=, pings_answered=, close_code=, close_reason=, http_status=} */
static int ws_info(lua_State *L) {
  WsLua *w = check_ws(L, 1);
  lua_createtable(L, 0, 6);
  lua_pushstring(L, state_name(w->c.state));
  lua_setfield(L, -2, "state");
  lua_pushinteger(L, w->c.pongs);
  lua_setfield(L, -2, "pongs");
  lua_pushinteger(L, w->c.pings_answered);
  lua_setfield(L, -2, "pings_answered");
  lua_pushinteger(L, w->c.close_code);
  lua_setfield(L, -2, "close_code");
  lua_pushstring(L, w->c.close_reason);
  lua_setfield(L, -2, "close_reason");
  lua_pushinteger(L, w->c.http_status);
  lua_setfield(L, -2, "http_status");
  lua_pushinteger(L, (lua_Integer)w->c.as.max_message);
  lua_setfield(L, -2, "max_message");
  return 1;
}

/* __gc / __close: drops the connection without the closing handshake. */
static int ws_gc(lua_State *L) {
  WsLua *w = check_ws(L, 1);
  if (w->listed) unlist(w);
  ws_conn_free(&w->c);
  return 0;
}

static int ws_tostring(lua_State *L) {
  WsLua *w = check_ws(L, 1);
  lua_pushfstring(L, "qmig.WebSocket (%s, %s)", w->url, state_name(w->c.state));
  return 1;
}
/* }====== */

/* {====== the pure framing, for tests and the fuzzer */
static const char *frame_error_name(int err) {
  static const char *const names[] = {"rsv", "opcode", "control", "length", "masked",
                                      "too_big", "sequence", "utf8", "close"};
  return err <= -1 && err >= -9 ? names[-err - 1] : "unknown";
}

/* ws.parse(bytes [, max_message = 16 MiB [, allow_masked]]) -> frames,
** messages, consumed, error name | nil.  Frames: {fin=, opcode=, masked=,
** mask=, payload= (unmasked)}; messages: {opcode=, data=}, assembled as a
** connection does (fragments, interleaved control frames, UTF-8 text, close payloads). */
static int ws_parse(lua_State *L) {
  size_t n;
  const unsigned char *buf = (const unsigned char *)luaL_checklstring(L, 1, &n);
  lua_Integer maxm = luaL_optinteger(L, 2, (lua_Integer)16 << 20);
  luaL_argcheck(L, maxm >= 0, 2, "max_message must be >= 0");
  int allow_masked = lua_toboolean(L, 3);
  lua_settop(L, 3);
  lua_newtable(L);  /* 4: frames */
  lua_newtable(L);  /* 5: messages */
  luaL_Buffer msg;
  luaL_buffinit(L, &msg);  /* 6 (buffer box) — only pushes below it */
  WsAssembler as = {0, 0, 0, (uint64_t)maxm};
  size_t pos = 0;
  const char *err = NULL;
  while (pos < n) {
    WsFrame f;
    uint64_t room = as.max_message - as.len;
    int r = ws_parse_frame(buf + pos, n - pos, room < 125 ? 125 : room, allow_masked, &f);
    if (r == WS_NEED_MORE) break;
    if (r < 0) {
      err = frame_error_name(r);
      break;
    }
    unsigned char *payload = malloc((size_t)f.len + 1);
    if (payload == NULL) return luaL_error(L, "ws: out of memory");
    if (f.len) memcpy(payload, f.payload, (size_t)f.len);
    if (f.masked) ws_apply_mask(payload, (size_t)f.len, f.mask, 0);
    int complete, code;
    int a = ws_assemble(&as, &f, &complete);
    if (a == WS_ACT_CONTROL && f.opcode == WS_OP_CLOSE && !ws_close_payload_valid(payload, (size_t)f.len, &code))
      a = WS_ERR_CLOSE;
    if (a == WS_ACT_DATA) {
      luaL_addlstring(&msg, (const char *)payload, (size_t)f.len);
      if (complete && as.opcode == WS_OP_TEXT &&
          !ws_utf8_valid((const unsigned char *)luaL_buffaddr(&msg), luaL_bufflen(&msg)))
        a = WS_ERR_UTF8;
    }
    /* the frame table goes in with lua_rawseti on indices below the buffer */
    lua_createtable(L, 0, 4);
    lua_pushboolean(L, f.fin);
    lua_setfield(L, -2, "fin");
    lua_pushinteger(L, f.opcode);
    lua_setfield(L, -2, "opcode");
    lua_pushboolean(L, f.masked);
    lua_setfield(L, -2, "masked");
    if (f.masked) {
      lua_pushlstring(L, (const char *)f.mask, 4);
      lua_setfield(L, -2, "mask");
    }
    lua_pushlstring(L, (const char *)payload, (size_t)f.len);
    lua_setfield(L, -2, "payload");
    free(payload);
    lua_rawseti(L, 4, (lua_Integer)lua_rawlen(L, 4) + 1);
    pos += (size_t)r;
    if (a < 0) {
      err = frame_error_name(a);
      break;
    }
    if (a == WS_ACT_DATA && complete) {
      lua_createtable(L, 0, 2);
      lua_pushinteger(L, as.opcode);
      lua_setfield(L, -2, "opcode");
      lua_pushlstring(L, luaL_buffaddr(&msg), luaL_bufflen(&msg));
      lua_setfield(L, -2, "data");
      lua_rawseti(L, 5, (lua_Integer)lua_rawlen(L, 5) + 1);
      luaL_buffsub(&msg, luaL_bufflen(&msg));
      as.len = 0;
    }
  }
  luaL_pushresult(&msg);
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)pos);
  if (err) lua_pushstring(L, err);
  else lua_pushnil(L);
  return 4;
}

/* ws.encode(opcode, payload [, fin = true [, mask (4 bytes)]]) -> frame bytes */
static int ws_encode(lua_State *L) {
  int op = (int)luaL_checkinteger(L, 1);
  size_t len, ml = 0;
  const char *payload = luaL_checklstring(L, 2, &len);
  int fin = lua_isnoneornil(L, 3) ? 1 : lua_toboolean(L, 3);
  const char *mask = luaL_optlstring(L, 4, NULL, &ml);
  luaL_argcheck(L, mask == NULL || ml == 4, 4, "a mask is 4 bytes");
  luaL_argcheck(L, op >= 0 && op <= 15, 1, "opcode out of range");
  unsigned char head[14];
  size_t hl = ws_encode_header(head, fin, op, len, (const unsigned char *)mask);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, hl + len);
  memcpy(out, head, hl);
  if (len) memcpy(out + hl, payload, len);
  if (mask) ws_apply_mask(out + hl, len, (const unsigned char *)mask, 0);
  luaL_pushresultsize(&b, hl + len);
  return 1;
}
/* }====== */

static const luaL_Reg ws_meth[] = {
  {"send", ws_send},
  {"receive", ws_receive},
  {"ping", ws_ping},
  {"close", ws_close},
  {"info", ws_info},
  {NULL, NULL}
};

static const luaL_Reg ws_metameth[] = {
  {"__index", NULL},
  {"__gc", ws_gc},
  {"__close", ws_gc},
  {"__tostring", ws_tostring},
  {NULL, NULL}
};

static const luaL_Reg wslib[] = {
  {"connect", ws_connect},
  {"parse", ws_parse},
  {"encode", ws_encode},
  {NULL, NULL}
};

int luaopen_qmig_ws(lua_State *L) {
  luaL_newmetatable(L, WS_META);
  luaL_setfuncs(L, ws_metameth, 0);
  luaL_newlibtable(L, ws_meth);
  luaL_setfuncs(L, ws_meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &WAITING_KEY);
  luaL_newlib(L, wslib);
  return 1;
}
