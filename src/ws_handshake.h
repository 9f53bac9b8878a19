/*
** ws_handshake.h — the HTTP/1.1 upgrade of RFC 6455 §4.1: the client's
** request and the check of the server's 101 reply.  No I/O.
*/
#ifndef QMIG_WS_HANDSHAKE_H
#define QMIG_WS_HANDSHAKE_H

#include <curl/curl.h>
#include <stddef.h>

/* The request for url (ws:// or wss://) with the extra header lines; a
** malloc'd string (its length in *len) and the Sec-WebSocket-Accept value
** the server must answer in accept; NULL with a message in err. */
char *ws_handshake_request(const char *url, const struct curl_slist *headers, char accept[32], size_t *len,
                           char *err, size_t errsz);

/* The curl URL for a ws:// or wss:// one (http:// or https://), malloc'd;
** NULL when the scheme is neither. */
char *ws_handshake_curl_url(const char *url);

/* Checks the reply header block head[0..n) (through the empty line).
** Returns 0 when it accepts the upgrade; else -1 with *status (0 when the
** reply is not HTTP at all) and a message in err. */
int ws_handshake_check(const char *head, size_t n, const char *accept, long *status, char *err, size_t errsz);

/* base64(SHA-1(key + GUID)) into out (29 bytes with the NUL). */
void ws_handshake_accept(const char *key, char out[32]);

#endif
