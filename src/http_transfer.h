/*
** http_transfer.h — one HTTP transfer on a libcurl easy handle: buffers,
** streaming to and from files, and the mapping of curl failures to the
** short error codes the engine retries on.  No Lua in here.
*/
#ifndef QMIG_HTTP_TRANSFER_H
#define QMIG_HTTP_TRANSFER_H

#include <stdio.h>
#include <curl/curl.h>

typedef struct Buffer {
  char *data;
  size_t len, cap;
} Buffer;

int buffer_append(Buffer *b, const char *p, size_t n);
void buffer_free(Buffer *b);

typedef struct Transfer {
  CURL *easy;
  struct curl_slist *headers;
  curl_mime *mime;
  Buffer body;            /* reply body when it is not streamed to a file */
  Buffer head;            /* raw header lines of the final response */
  FILE *sink;             /* reply body goes here when the status is 2xx */
  char *sink_path;        /* final name; data is written to <sink_path>.part */
  char *sink_part;
  int sink_used;          /* the body went to the sink file */
  FILE *source;           /* request body streamed from this file */
  size_t max_body;        /* bound on an in-memory reply body */
  int too_large;          /* the reply exceeded max_body */
  int done;               /* curl reported the transfer finished */
  int in_multi;
  int sends;              /* times curl was about to send the request */
  long redirects_at_send; /* redirects followed by then */
  int resend_refused;     /* curl wanted to re-send it: stopped, see below */
  CURLcode result;
  char errbuf[CURL_ERROR_SIZE];
} Transfer;

/* Bytes moved by every transfer of the process so far, for the progress
** line's bytes/s: counted as they arrive or leave (file uploads), or when
** the transfer ends (bodies sent from memory). */
typedef struct TransferTotals {
  long long received, sent, finished;
} TransferTotals;
extern TransferTotals transfer_totals;

/* Curl callbacks; userdata is the Transfer. */
size_t transfer_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
size_t transfer_header_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
size_t transfer_read_cb(char *ptr, size_t size, size_t nmemb, void *userdata);

/* CURLOPT_PREREQFUNCTION for writes; userdata is the Transfer.  curl
** silently re-sends a request whose reused connection died before any
** reply byte; for a write the server may already have applied, that is a
** duplicate.  This lets the first send through (and a redirect's), and
** stops a re-send of the same request: the transfer fails with code
** "dropped", and the caller looks before it writes again. */
int transfer_prereq_cb(void *userdata, char *remote_ip, char *local_ip, int remote_port, int local_port);

/* Opens <path>.part for the reply body; 0 on success, else errno. */
int transfer_open_sink(Transfer *t, const char *path);
/* Closes the sink: fsyncs it and renames .part into place when keep,
** removes it otherwise.  0 on success, else errno. */
int transfer_close_sink(Transfer *t, int keep);
/* The same for a sink file already taken off its Transfer (the I/O
** worker closes it while the Transfer keeps the names). */
int sink_finish(FILE *f, const char *part, const char *path, int keep);

/* Releases everything but the struct itself; safe to call twice. */
void transfer_cleanup(Transfer *t);

/* Short, stable error code for a failed transfer ("timeout", "refused",
** "dns", "tls", "dropped", "too_large", "redirects", "io", "interrupted",
** "http"); the engine decides what is transient from it. */
const char *transfer_error_code(const Transfer *t);

#endif
