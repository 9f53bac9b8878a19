/*
** ws_conn.h — one WebSocket client connection over a libcurl connection.
**
** curl (CURLOPT_CONNECT_ONLY) makes the TCP connection and the TLS
** handshake with exactly the options HTTP uses (CA, client certificate,
** key passphrase); this file sends the HTTP/1.1 upgrade itself, checks the
** 101 reply, then frames messages over curl_easy_send / curl_easy_recv.
** Each connection has its own multi handle: the connect phase runs in
** non-blocking steps, and no other transfer's connection-cache pruning can
** close (or read from) the upgraded connection.  No Lua in here.
*/
#ifndef QMIG_WS_CONN_H
#define QMIG_WS_CONN_H

#include <curl/curl.h>
#include <stddef.h>

#include "ws_frame.h"

enum { WSC_CONNECTING, WSC_HANDSHAKE, WSC_OPEN, WSC_CLOSING, WSC_CLOSED, WSC_FAILED };

typedef struct WsOptions {
  const char *url;                 /* ws:// or wss:// */
  const char *cert, *key, *key_password, *ca;
  int insecure;
  struct curl_slist *headers;      /* extra "Name: value" lines, owned by the caller */
  long connect_timeout_ms;
  size_t max_message;
} WsOptions;

typedef struct WsConn {
  CURLM *multi;
  CURL *easy;
  curl_socket_t sock;
  int state;
  int tls;                         /* wss:// */
  short want;                      /* POLLIN or POLLOUT: what the connection waits for */
  char *request;                   /* the upgrade request while it is being sent */
  size_t request_len, request_sent;
  char accept[32];                 /* the Sec-WebSocket-Accept we expect */
  unsigned char *rx;               /* received bytes not parsed yet */
  size_t rx_len, rx_cap;
  unsigned char *msg;              /* the message being assembled / ready */
  size_t msg_cap;
  WsAssembler as;
  int ready, ready_opcode;         /* a whole message sits in msg[0..as.len) */
  size_t ready_len;
  int close_sent, close_received, close_code;
  char close_reason[124];
  long pongs, pings_answered;
  long http_status;
  const char *err_code;            /* once failed: timeout, refused, tls, auth, protocol, too_large, closed, ... */
  char err[512];
  char curl_err[CURL_ERROR_SIZE];
} WsConn;

/* Starts connecting; 0, or -1 with err/err_code set (c is usable for
** ws_conn_free either way). */
int ws_conn_start(WsConn *c, const WsOptions *o);

/* Moves the connection on as far as it goes without blocking: connect,
** upgrade, read and parse frames (answering pings and a close) until a
** message is ready.  Returns 1 when something a waiter wants may have
** happened (open, a message, closed, failed), 0 when it would block. */
int ws_conn_pump(WsConn *c);

/* Sends one message (opcode TEXT or BINARY) in frames of at most `fragment`
** bytes (0: one frame); waits for the socket up to timeout_ms.  0 or -1. */
int ws_conn_send(WsConn *c, int opcode, const unsigned char *data, size_t len, size_t fragment, long timeout_ms);

/* A control frame (PING, PONG, CLOSE) with at most 125 bytes. 0 or -1. */
int ws_conn_control(WsConn *c, int opcode, const unsigned char *data, size_t len, long timeout_ms);

/* Sends a close frame (once) with code and reason; state WSC_CLOSING. */
int ws_conn_close(WsConn *c, int code, const char *reason, long timeout_ms);

/* Takes the ready message: *len bytes at the returned pointer (valid until
** the next pump), its opcode in *opcode.  NULL when none is ready. */
const unsigned char *ws_conn_take(WsConn *c, size_t *len, int *opcode);

/* The sockets to wait for: fills up to max entries, returns how many. */
unsigned ws_conn_waitfds(WsConn *c, struct curl_waitfd *fds, unsigned max);

/* Marks the connection failed (the first cause stays). */
void ws_conn_fail(WsConn *c, const char *code, const char *msg);
void ws_conn_free(WsConn *c);

#endif
