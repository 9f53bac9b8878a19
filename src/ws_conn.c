/*
** ws_conn.c — a WebSocket client connection (ws_conn.h).
*/
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/select.h>
#include <time.h>

#include "ws_conn.h"
#include "ws_handshake.h"

#define READ_CHUNK ((size_t)16384)
#define MAX_REPLY_HEAD ((size_t)16384)  /* the upgrade reply's header block */

void ws_conn_fail(WsConn *c, const char *code, const char *msg) {
  if (c->state == WSC_FAILED) return;  /* the first cause is the one reported */
  snprintf(c->err, sizeof c->err, "%s", msg);
  c->err_code = code;
  c->state = WSC_FAILED;
}

/* ws_conn_fail with a printf format.  A macro, not a variadic function:
** clang-tidy's va_list checker misreads vsnprintf here after it analyzed
** a file that includes lua.h (make lint runs them in one process). */
#define FAILF(c, code, ...)                 \
  do {                                      \
    char failf_msg_[512];                   \
    snprintf(failf_msg_, sizeof failf_msg_, __VA_ARGS__); \
    ws_conn_fail((c), (code), failf_msg_);  \
  } while (0)

/* A refused call on a connection that is fine as it is (a send after the
** close): the error for the caller, the state unchanged. */
static void refuse(WsConn *c, const char *code, const char *msg) {
  if (c->state == WSC_FAILED) return;
  snprintf(c->err, sizeof c->err, "%s", msg);
  c->err_code = code;
}

/* The short codes HTTP failures have too (http_transfer.c), so the engine's
** retry rules read both alike. */
static const char *curl_code(CURLcode rc) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_CONNECT: return "refused";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "dns";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR: return "tls";
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING: return "dropped";
    default: return "io";
  }
}

static void fail_curl(WsConn *c, CURLcode rc, const char *what) {
  FAILF(c, curl_code(rc), "%s: %s", what, c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc));
}

int ws_conn_start(WsConn *c, const WsOptions *o) {
  memset(c, 0, sizeof *c);
  c->sock = CURL_SOCKET_BAD;
  c->as.max_message = o->max_message;
  c->close_code = 1005;
  c->state = WSC_CONNECTING;
  c->request = ws_handshake_request(o->url, o->headers, c->accept, &c->request_len, c->err, sizeof c->err);
  if (c->request == NULL) {
    c->state = WSC_FAILED;
    c->err_code = "config";
    return -1;
  }
  char *curl_url = ws_handshake_curl_url(o->url);
  c->tls = curl_url && strncmp(curl_url, "https:", 6) == 0;
  c->multi = curl_multi_init();
  c->easy = curl_easy_init();
  if (curl_url == NULL || c->multi == NULL || c->easy == NULL) {
    free(curl_url);
    ws_conn_fail(c, "io", "cannot create a curl handle");
    return -1;
  }
  CURL *e = c->easy;
  curl_easy_setopt(e, CURLOPT_URL, curl_url);  /* curl copies it */
  free(curl_url);
  /* 1: connect (and TLS), then hand the connection over; the upgrade is ours */
  curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
  /* The same TLS set-up as an HTTP request (lhttp.c set_tls). */
  if (o->cert) curl_easy_setopt(e, CURLOPT_SSLCERT, o->cert);
  if (o->key) curl_easy_setopt(e, CURLOPT_SSLKEY, o->key);
  if (o->key) curl_easy_setopt(e, CURLOPT_KEYPASSWD, o->key_password ? o->key_password : "");
  if (o->ca) curl_easy_setopt(e, CURLOPT_CAINFO, o->ca);
  if (o->insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  CURLMcode mc = curl_multi_add_handle(c->multi, e);
  if (mc != CURLM_OK) {
    FAILF(c, "io", "curl: %s", curl_multi_strerror(mc));
    return -1;
  }
  return 0;
}

void ws_conn_free(WsConn *c) {
  if (c->easy) {
    if (c->multi) curl_multi_remove_handle(c->multi, c->easy);  /* closes a connect-only connection */
    curl_easy_cleanup(c->easy);
  }
  if (c->multi) curl_multi_cleanup(c->multi);
  free(c->request);
  free(c->rx);
  free(c->msg);
  memset(c, 0, sizeof *c);
  c->sock = CURL_SOCKET_BAD;
  c->state = WSC_CLOSED;
}

/* {====== sending */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes all of buf.  A message is sent whole before the call returns, so
** frames of two messages can never interleave; the socket buffer takes a
** JSON-RPC request at once, so the wait is rare and short. */
static int send_all(WsConn *c, const unsigned char *buf, size_t n, long timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  while (n > 0) {
    size_t sent = 0;
    CURLcode rc = curl_easy_send(c->easy, buf, n, &sent);
    if (rc == CURLE_AGAIN) {
      long long left = deadline - now_ms();
      if (left <= 0) {
        FAILF(c, "timeout", "sending: the peer took nothing for %ld ms", timeout_ms);
        return -1;
      }
      struct pollfd p = {c->sock, POLLOUT, 0};
      poll(&p, 1, (int)(left > 1000 ? 1000 : left));
      continue;
    }
    if (rc != CURLE_OK) {
      fail_curl(c, rc, "sending");
      return -1;
    }
    buf += sent;
    n -= sent;
  }
  return 0;
}

/* One masked frame: a client masks everything it sends (6455 §5.3) with
** a fresh unpredictable key. */
static int send_frame(WsConn *c, int fin, int opcode, const unsigned char *data, size_t len, long timeout_ms) {
  unsigned char mask[4];
  if (getrandom(mask, sizeof mask, 0) != (ssize_t)sizeof mask) {
    ws_conn_fail(c, "io", "no random bytes for a frame mask");
    return -1;
  }
  unsigned char head[14];
  size_t hl = ws_encode_header(head, fin, opcode, len, mask);
  unsigned char *frame = malloc(hl + len + 1);
  if (frame == NULL) {
    ws_conn_fail(c, "io", "out of memory");
    return -1;
  }
  memcpy(frame, head, hl);
  if (len) memcpy(frame + hl, data, len);
  ws_apply_mask(frame + hl, len, mask, 0);
  int r = send_all(c, frame, hl + len, timeout_ms);
  free(frame);
  return r;
}

static int can_send(WsConn *c) {
  if (c->state == WSC_FAILED) return 0;
  if (c->state != WSC_OPEN || c->close_sent) {
    refuse(c, "closed", "the WebSocket is closed");
    return 0;
  }
  return 1;
}

int ws_conn_send(WsConn *c, int opcode, const unsigned char *data, size_t len, size_t fragment, long timeout_ms) {
  if (!can_send(c)) return -1;
  if (fragment == 0 || fragment >= len) return send_frame(c, 1, opcode, data, len, timeout_ms);
  for (size_t off = 0; off < len; off += fragment) {
    size_t n = len - off < fragment ? len - off : fragment;
    if (send_frame(c, off + n == len, off == 0 ? opcode : WS_OP_CONT, data + off, n, timeout_ms) != 0) return -1;
  }
  return 0;
}

int ws_conn_control(WsConn *c, int opcode, const unsigned char *data, size_t len, long timeout_ms) {
  if (len > 125) len = 125;
  if (opcode != WS_OP_CLOSE && opcode != WS_OP_PONG && !can_send(c)) return -1;
  return send_frame(c, 1, opcode, data, len, timeout_ms);
}

int ws_conn_close(WsConn *c, int code, const char *reason, long timeout_ms) {
  if (c->close_sent || c->state == WSC_FAILED || c->state == WSC_CLOSED) return 0;
  if (c->state != WSC_OPEN) {
    refuse(c, "closed", "closed before it opened");
    return -1;
  }
  unsigned char p[125];
  size_t rn = reason ? strlen(reason) : 0;
  if (rn > 123) rn = 123;
  p[0] = (unsigned char)(code >> 8);
  p[1] = (unsigned char)code;
  if (rn) memcpy(p + 2, reason, rn);
  c->close_sent = 1;
  c->state = WSC_CLOSING;
  return send_frame(c, 1, WS_OP_CLOSE, p, rn + 2, timeout_ms);
}
/* }====== */

/* {====== receiving */

/* Reads what the connection has into rx.  1 bytes came, 0 would block,
** -1 failed or the peer closed the TCP connection. */
static int read_some(WsConn *c, size_t limit) {
  if (c->rx_cap - c->rx_len < READ_CHUNK) {
    size_t cap = c->rx_cap ? c->rx_cap * 2 : READ_CHUNK * 2;
    while (cap - c->rx_len < READ_CHUNK) cap *= 2;
    if (cap > limit) cap = limit;
    if (cap <= c->rx_len) {
      FAILF(c, "too_large", "a frame larger than the message cap (%zu bytes)", (size_t)c->as.max_message);
      return -1;
    }
    unsigned char *grown = realloc(c->rx, cap);
    if (grown == NULL) {
      ws_conn_fail(c, "io", "out of memory");
      return -1;
    }
    c->rx = grown;
    c->rx_cap = cap;
  }
  size_t got = 0;
  CURLcode rc = curl_easy_recv(c->easy, c->rx + c->rx_len, c->rx_cap - c->rx_len, &got);
  if (rc == CURLE_AGAIN) {
    c->want = POLLIN;
    return 0;
  }
  if (rc != CURLE_OK) {
    fail_curl(c, rc, "receiving");
    return -1;
  }
  if (got == 0) {
    if (c->close_received || c->close_sent) c->state = WSC_CLOSED;
    else ws_conn_fail(c, "dropped", "the server closed the connection without a close frame");
    return -1;
  }
  c->rx_len += got;
  return 1;
}

static void consume(WsConn *c, size_t n) {
  memmove(c->rx, c->rx + n, c->rx_len - n);
  c->rx_len -= n;
}

static void protocol_error(WsConn *c, int err) {
  static const struct { int err, status; const char *code, *what; } map[] = {
    {WS_ERR_RSV, 1002, "protocol", "reserved bits set"},
    {WS_ERR_OPCODE, 1002, "protocol", "reserved opcode"},
    {WS_ERR_CONTROL, 1002, "protocol", "fragmented or long control frame"},
    {WS_ERR_LENGTH, 1002, "protocol", "frame length not in its shortest form"},
    {WS_ERR_MASKED, 1002, "protocol", "masked frame from the server"},
    {WS_ERR_TOO_BIG, 1009, "too_large", "message larger than the cap"},
    {WS_ERR_SEQUENCE, 1002, "protocol", "fragments out of sequence"},
    {WS_ERR_UTF8, 1007, "protocol", "text message that is not UTF-8"},
    {WS_ERR_CLOSE, 1002, "protocol", "bad close frame"},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (map[i].err != err) continue;
    /* tell the server why (best effort), then fail: 6455 §7.1.7 */
    if (c->state == WSC_OPEN && !c->close_sent) {
      unsigned char p[2] = {(unsigned char)(map[i].status >> 8), (unsigned char)map[i].status};
      c->close_sent = 1;
      send_frame(c, 1, WS_OP_CLOSE, p, 2, 1000);
    }
    if (err == WS_ERR_TOO_BIG)
      FAILF(c, map[i].code, "WebSocket: %s (%zu bytes), refused", map[i].what, (size_t)c->as.max_message);
    else
      FAILF(c, map[i].code, "WebSocket: %s", map[i].what);
    return;
  }
  FAILF(c, "protocol", "WebSocket: protocol error %d", err);
}

static int on_control(WsConn *c, const WsFrame *f) {
  if (f->opcode == WS_OP_PING) {
    c->pings_answered++;
    if (!c->close_sent) return send_frame(c, 1, WS_OP_PONG, f->payload, (size_t)f->len, 5000);
    return 0;
  }
  if (f->opcode == WS_OP_PONG) {
    c->pongs++;
    return 0;
  }
  int code;
  if (!ws_close_payload_valid(f->payload, (size_t)f->len, &code)) {
    protocol_error(c, WS_ERR_CLOSE);
    return -1;
  }
  c->close_received = 1;
  c->close_code = code;
  size_t rn = f->len > 2 ? (size_t)f->len - 2 : 0;
  if (rn >= sizeof c->close_reason) rn = sizeof c->close_reason - 1;
  if (rn) memcpy(c->close_reason, f->payload + 2, rn);
  c->close_reason[rn] = '\0';
  if (!c->close_sent) {  /* echo the status back (6455 §5.5.1) */
    unsigned char p[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    c->close_sent = 1;
    send_frame(c, 1, WS_OP_CLOSE, p, code == 1005 ? 0 : 2, 5000);
  }
  c->state = WSC_CLOSED;
  return 0;
}

static int on_data(WsConn *c, const WsFrame *f) {
  int complete;
  int r = ws_assemble(&c->as, f, &complete);
  if (r < 0) {
    protocol_error(c, r);
    return -1;
  }
  if (r == WS_ACT_CONTROL) return on_control(c, f);
  size_t start = c->as.len - (size_t)f->len;
  if (c->as.len + 1 > c->msg_cap) {
    size_t cap = c->msg_cap ? c->msg_cap : 4096;
    while (cap < c->as.len + 1) cap *= 2;
    unsigned char *grown = realloc(c->msg, cap);
    if (grown == NULL) {
      ws_conn_fail(c, "io", "out of memory");
      return -1;
    }
    c->msg = grown;
    c->msg_cap = cap;
  }
  if (f->len) memcpy(c->msg + start, f->payload, (size_t)f->len);
  if (complete) {
    if (c->as.opcode == WS_OP_TEXT && !ws_utf8_valid(c->msg, c->as.len)) {
      protocol_error(c, WS_ERR_UTF8);
      return -1;
    }
    c->ready = 1;
    c->ready_opcode = c->as.opcode;
    c->ready_len = c->as.len;
  }
  return 0;
}

/* Parses the frames in rx until a message is ready or more bytes are
** needed.  1 progress, 0 needs bytes, -1 failed. */
static int parse_frames(WsConn *c) {
  while (!c->ready && c->state != WSC_CLOSED && c->state != WSC_FAILED) {
    WsFrame f;
    /* the room left in the message; control frames (<= 125) always fit */
    uint64_t room = c->as.max_message - c->as.len;
    int n = ws_parse_frame(c->rx, c->rx_len, room < 125 ? 125 : room, 0, &f);
    if (n == WS_NEED_MORE) return 0;
    if (n < 0) {
      protocol_error(c, n);
      return -1;
    }
    int r = on_data(c, &f);
    consume(c, (size_t)n);
    if (r < 0) return -1;
  }
  return 1;
}

static int pump_connect(WsConn *c) {
  int running = 0;
  curl_multi_perform(c->multi, &running);
  int left;
  CURLMsg *m;
  while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    if (m->data.result != CURLE_OK) {
      fail_curl(c, m->data.result, "connecting");
      return 1;
    }
    curl_socket_t s = CURL_SOCKET_BAD;
    curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &s);
    if (s == CURL_SOCKET_BAD) {
      ws_conn_fail(c, "io", "connected, but curl has no socket");
      return 1;
    }
    c->sock = s;
    c->state = WSC_HANDSHAKE;
    return 1;
  }
  return 0;
}

/* With TLS 1.3 the client's side of the handshake ends before the server
** has checked our certificate; a server that refuses it sends an alert and
** closes, which we see on the first read, or as a reset while we still
** send the upgrade.  A TLS connection lost before any byte of a reply is
** that refusal (or a TLS-level failure like it), not a dropped line. */
static void tls_refusal(WsConn *c) {
  if (!c->tls || c->rx_len > 0 || c->err_code == NULL || strcmp(c->err_code, "dropped") != 0) return;
  c->err_code = "tls";
  size_t n = strlen(c->err);
  snprintf(c->err + n, sizeof c->err - n, " (TLS connection closed before the upgrade reply: is the client certificate refused?)");
}

static int pump_handshake(WsConn *c) {
  while (c->request_sent < c->request_len) {
    size_t sent = 0;
    CURLcode rc = curl_easy_send(c->easy, c->request + c->request_sent, c->request_len - c->request_sent, &sent);
    if (rc == CURLE_AGAIN) {
      c->want = POLLOUT;
      return 0;
    }
    if (rc != CURLE_OK) {
      fail_curl(c, rc, "sending the upgrade");
      tls_refusal(c);
      return 1;
    }
    c->request_sent += sent;
  }
  for (;;) {
    const unsigned char *end = NULL;
    for (size_t i = 3; i < c->rx_len && end == NULL; i++)
      if (memcmp(c->rx + i - 3, "\r\n\r\n", 4) == 0) end = c->rx + i + 1;
    if (end) {
      size_t hl = (size_t)(end - c->rx);
      if (ws_handshake_check((const char *)c->rx, hl, c->accept, &c->http_status, c->err, sizeof c->err) != 0) {
        const char *code = c->http_status == 401 || c->http_status == 403 ? "auth"
                         : c->http_status == 404 ? "not_found" : c->http_status ? "http" : "protocol";
        char msg[sizeof c->err];
        memcpy(msg, c->err, sizeof msg);
        ws_conn_fail(c, code, msg);
        return 1;
      }
      consume(c, hl);  /* what follows is frames already */
      free(c->request);
      c->request = NULL;
      c->state = WSC_OPEN;
      return 1;
    }
    int r = read_some(c, MAX_REPLY_HEAD + READ_CHUNK);
    if (r == 0) return 0;
    if (r < 0 && c->state == WSC_FAILED) tls_refusal(c);
    if (r < 0) {
      if (c->state != WSC_FAILED) ws_conn_fail(c, "dropped", "the server closed the connection during the upgrade");
      return 1;
    }
    if (c->rx_len > MAX_REPLY_HEAD) {
      FAILF(c, "protocol", "the upgrade reply's headers are over %zu bytes", MAX_REPLY_HEAD);
      return 1;
    }
  }
}

int ws_conn_pump(WsConn *c) {
  if (c->state == WSC_CONNECTING) {
    if (!pump_connect(c)) return 0;
    if (c->state != WSC_HANDSHAKE) return 1;
  }
  if (c->state == WSC_HANDSHAKE) return pump_handshake(c);  /* at once after connecting */
  if (c->state != WSC_OPEN && c->state != WSC_CLOSING) return 1;
  /* a frame may be up to the message cap plus its header in rx */
  size_t limit = (size_t)c->as.max_message + 14 + READ_CHUNK;
  for (;;) {
    int r = parse_frames(c);
    if (r != 0) return 1;
    r = read_some(c, limit);
    if (r < 0) return 1;
    if (r == 0) return 0;
  }
}

const unsigned char *ws_conn_take(WsConn *c, size_t *len, int *opcode) {
  if (!c->ready) return NULL;
  c->ready = 0;
  *len = c->ready_len;
  *opcode = c->ready_opcode;
  c->as.len = 0;
  return c->msg;
}

unsigned ws_conn_waitfds(WsConn *c, struct curl_waitfd *fds, unsigned max) {
  if (max == 0) return 0;
  if (c->state == WSC_CONNECTING) {
    fd_set r, w, x;
    int maxfd = -1;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_ZERO(&x);
    curl_multi_fdset(c->multi, &r, &w, &x, &maxfd);
    unsigned n = 0;
    for (int fd = 0; fd <= maxfd && n < max; fd++) {
      short ev = (short)((FD_ISSET(fd, &r) ? POLLIN : 0) | (FD_ISSET(fd, &w) ? POLLOUT : 0));
      if (ev) {
        fds[n].fd = fd;
        fds[n].events = ev;
        fds[n].revents = 0;
        n++;
      }
    }
    return n;  /* none (a name look-up in a thread): the loop's time slice brings us back */
  }
  if (c->sock == CURL_SOCKET_BAD || c->state == WSC_FAILED || c->state == WSC_CLOSED) return 0;
  fds[0].fd = c->sock;
  fds[0].events = c->want ? c->want : POLLIN;
  fds[0].revents = 0;
  return 1;
}
/* }====== */
