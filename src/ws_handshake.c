/*
** ws_handshake.c — the RFC 6455 opening handshake (ws_handshake.h).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "ws_handshake.h"

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void ws_handshake_accept(const char *key, char out[32]) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  char buf[128];
  int n = snprintf(buf, sizeof buf, "%s%s", key, GUID);
  SHA1((const unsigned char *)buf, (size_t)n, digest);
  EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);  /* 28 chars + NUL */
}

char *ws_handshake_curl_url(const char *url) {
  const char *rest;
  const char *scheme;
  if (strncasecmp(url, "ws://", 5) == 0) scheme = "http://", rest = url + 5;
  else if (strncasecmp(url, "wss://", 6) == 0) scheme = "https://", rest = url + 6;
  else return NULL;
  size_t n = strlen(scheme) + strlen(rest) + 1;
  char *out = malloc(n);
  if (out) snprintf(out, n, "%s%s", scheme, rest);
  return out;
}

/* Appends to a malloc'd string; on failure frees it and returns NULL. */
static char *append(char *s, size_t *len, const char *add) {
  size_t n = strlen(add);
  char *grown = realloc(s, *len + n + 1);
  if (grown == NULL) {
    free(s);
    return NULL;
  }
  memcpy(grown + *len, add, n + 1);
  *len += n;
  return grown;
}

char *ws_handshake_request(const char *url, const struct curl_slist *headers, char accept[32], size_t *len,
                           char *err, size_t errsz) {
  char *http_url = ws_handshake_curl_url(url);
  if (http_url == NULL) {
    snprintf(err, errsz, "%s: not a ws:// or wss:// URL", url);
    return NULL;
  }
  CURLU *u = curl_url();
  char *host = NULL, *port = NULL, *path = NULL, *query = NULL, *out = NULL;
  if (u == NULL || curl_url_set(u, CURLUPART_URL, http_url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
    snprintf(err, errsz, "%s: bad URL", url);
    goto done;
  }
  curl_url_get(u, CURLUPART_PORT, &port, 0);  /* absent when the URL names none */
  curl_url_get(u, CURLUPART_PATH, &path, 0);
  curl_url_get(u, CURLUPART_QUERY, &query, 0);
  unsigned char raw[16];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
    snprintf(err, errsz, "no random bytes for the WebSocket key");
    goto done;
  }
  char key[32];
  EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);  /* 24 chars */
  ws_handshake_accept(key, accept);
  char line[512];
  *len = 0;
  snprintf(line, sizeof line, "GET %s%s%s HTTP/1.1\r\nHost: %s%s%s\r\n", path && *path ? path : "/",
           query ? "?" : "", query ? query : "", host, port ? ":" : "", port ? port : "");
  out = append(NULL, len, line);
  snprintf(line, sizeof line,
           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key);
  if (out) out = append(out, len, line);
  for (const struct curl_slist *h = headers; h && out; h = h->next) {
    out = append(out, len, h->data);
    if (out) out = append(out, len, "\r\n");
  }
  if (out) out = append(out, len, "\r\n");
  if (out == NULL) snprintf(err, errsz, "out of memory");
done:
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_free(query);
  curl_url_cleanup(u);
  free(http_url);
  return out;
}

/* The value of header `name` in the block (first one), trimmed, into out. */
static int header_value(const char *head, size_t n, const char *name, char *out, size_t outsz) {
  size_t nlen = strlen(name);
  const char *p = memchr(head, '\n', n);  /* skip the status line */
  const char *end = head + n;
  while (p && p < end) {
    p++;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
      const char *v = p + nlen + 1, *ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      size_t vn = (size_t)(ve - v) < outsz - 1 ? (size_t)(ve - v) : outsz - 1;
      memcpy(out, v, vn);
      out[vn] = '\0';
      return 1;
    }
    p = eol < end ? eol : NULL;
  }
  return 0;
}

/* Connection is a comma-separated token list (RFC 7230 §6.1). */
static int has_token(const char *list, const char *token) {
  size_t tn = strlen(token);
  for (const char *p = list; *p;) {
    while (*p == ' ' || *p == ',' || *p == '\t') p++;
    const char *e = p;
    while (*e && *e != ',') e++;
    const char *te = e;
    while (te > p && (te[-1] == ' ' || te[-1] == '\t')) te--;
    if ((size_t)(te - p) == tn && strncasecmp(p, token, tn) == 0) return 1;
    p = e;
  }
  return 0;
}

int ws_handshake_check(const char *head, size_t n, const char *accept, long *status, char *err, size_t errsz) {
  *status = 0;
  int major = 0, minor = 0, code = 0;
  char first[64];
  size_t fl = n < sizeof first - 1 ? n : sizeof first - 1;
  memcpy(first, head, fl);
  first[fl] = '\0';
  if (sscanf(first, "HTTP/%d.%d %d", &major, &minor, &code) != 3) {
    snprintf(err, errsz, "the upgrade reply is not HTTP");
    return -1;
  }
  *status = code;
  if (code != 101) {
    snprintf(err, errsz, "upgrade refused: HTTP %d", code);
    return -1;
  }
  char v[256];
  if (!header_value(head, n, "Upgrade", v, sizeof v) || strcasecmp(v, "websocket") != 0) {
    snprintf(err, errsz, "101 reply without Upgrade: websocket");
    return -1;
  }
  if (!header_value(head, n, "Connection", v, sizeof v) || !has_token(v, "upgrade")) {
    snprintf(err, errsz, "101 reply without Connection: Upgrade");
    return -1;
  }
  if (!header_value(head, n, "Sec-WebSocket-Accept", v, sizeof v) || strcmp(v, accept) != 0) {
    snprintf(err, errsz, "101 reply with a wrong Sec-WebSocket-Accept");
    return -1;
  }
  /* we offered no extension and no subprotocol: one the server picks anyway
  ** would change the framing (6455 §4.1, items 5 and 6) */
  if (header_value(head, n, "Sec-WebSocket-Extensions", v, sizeof v) && *v) {
    snprintf(err, errsz, "the server chose an extension we did not offer (%s)", v);
    return -1;
  }
  return 0;
}
