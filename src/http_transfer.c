/*
** http_transfer.c — buffers and curl callbacks of one HTTP transfer.
*/
#include <errno.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "http_transfer.h"

int buffer_append(Buffer *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (grown == NULL) return -1;
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

void buffer_free(Buffer *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Error bodies (4xx/5xx) always stay in memory so the caller can read
** Qlik's error JSON; only a successful body goes to the sink. */
TransferTotals transfer_totals;

size_t transfer_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
  Transfer *t = userdata;
  size_t n = size * nmemb;
  transfer_totals.received += (long long)n;
  if (t->sink) {
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
      t->sink_used = 1;
      return fwrite(ptr, 1, n, t->sink);
    }
  }
  if (t->body.len + n > t->max_body) {
    t->too_large = 1;
    return 0;  /* makes curl fail with CURLE_WRITE_ERROR */
  }
  return buffer_append(&t->body, ptr, n) == 0 ? n : 0;
}

/* Keeps only the header block of the last response: a redirect or a
** "100 Continue" starts a new block. */
size_t transfer_header_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
  Transfer *t = userdata;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) t->head.len = 0;
  if (t->head.len + n > (size_t)1024 * 1024) return 0;  /* absurd headers: fail */
  return buffer_append(&t->head, ptr, n) == 0 ? n : 0;
}

size_t transfer_read_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
  Transfer *t = userdata;
  size_t n = fread(ptr, 1, size * nmemb, t->source);
  if (n == 0 && ferror(t->source)) return CURL_READFUNC_ABORT;
  transfer_totals.sent += (long long)n;
  return n;
}

int transfer_prereq_cb(void *userdata, char *remote_ip, char *local_ip, int remote_port, int local_port) {
  (void)remote_ip, (void)local_ip, (void)remote_port, (void)local_port;
  Transfer *t = userdata;
  long redirects = 0;
  curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_COUNT, &redirects);
  if (t->sends > 0 && redirects == t->redirects_at_send) {
    t->resend_refused = 1;
    return CURL_PREREQFUNC_ABORT;
  }
  t->sends++;
  t->redirects_at_send = redirects;
  return CURL_PREREQFUNC_OK;
}

int transfer_open_sink(Transfer *t, const char *path) {
  size_t len = strlen(path);
  t->sink_path = malloc(len + 1);
  t->sink_part = malloc(len + 6);
  if (!t->sink_path || !t->sink_part) return ENOMEM;
  memcpy(t->sink_path, path, len + 1);
  memcpy(t->sink_part, path, len);
  memcpy(t->sink_part + len, ".part", 6);
  t->sink = fopen(t->sink_part, "wb");
  return t->sink ? 0 : errno;
}

int sink_finish(FILE *f, const char *part, const char *path, int keep) {
  int err = 0;
  if (keep && (fflush(f) != 0 || fsync(fileno(f)) != 0)) err = errno;
  if (fclose(f) != 0 && !err) err = errno;
  if (keep && !err) {
    if (rename(part, path) != 0) err = errno;
  } else {
    remove(part);
  }
  return err;
}

int transfer_close_sink(Transfer *t, int keep) {
  if (t->sink == NULL) return 0;
  FILE *f = t->sink;
  t->sink = NULL;
  return sink_finish(f, t->sink_part, t->sink_path, keep);
}

void transfer_cleanup(Transfer *t) {
  if (t->easy) curl_easy_cleanup(t->easy);
  t->easy = NULL;
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  curl_mime_free(t->mime);
  t->mime = NULL;
  transfer_close_sink(t, 0);
  if (t->source) fclose(t->source);
  t->source = NULL;
  free(t->sink_path);
  free(t->sink_part);
  t->sink_path = t->sink_part = NULL;
  buffer_free(&t->body);
  buffer_free(&t->head);
}

const char *transfer_error_code(const Transfer *t) {
  if (t->too_large) return "too_large";
  if (t->resend_refused) return "dropped";
  switch (t->result) {
    case CURLE_OPERATION_TIMEDOUT:
      return "timeout";
    case CURLE_COULDNT_CONNECT:
      return "refused";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return "dns";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
      return "tls";
    case CURLE_SEND_FAIL_REWIND:  /* curl wanted to re-send a streamed upload */
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return "dropped";
    case CURLE_TOO_MANY_REDIRECTS:
      return "redirects";
    case CURLE_OUT_OF_MEMORY:  /* what curl reports for an oversized header line */
      return "too_large";
    case CURLE_WRITE_ERROR:
    case CURLE_READ_ERROR:
    case CURLE_FILE_COULDNT_READ_FILE:
    case CURLE_ABORTED_BY_CALLBACK:
      return "io";
    default:
      return "http";
  }
}
