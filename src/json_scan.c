/*
** json_scan.c — marks empty arrays and long integers for the decoder.
** See json_scan.h for why.  The scan is one linear pass; strings are
** skipped with memchr, which matters on 50 MB QRS replies.
*/
#include <stdio.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "json_scan.h"

/* Integers with more digits than this may not survive strtod exactly
** (2^53 has 16 digits); shorter ones always do. */
#define SAFE_DIGITS 15

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static size_t longest_ff_run(const char *s, size_t n) {
  size_t best = 0;
  const char *end = s + n, *p = s;
  while ((p = memchr(p, 0xFF, (size_t)(end - p))) != NULL) {
    const char *q = p;
    while (q < end && (unsigned char)*q == 0xFF) q++;
    if ((size_t)(q - p) > best) best = (size_t)(q - p);
    p = q;
  }
  return best;
}

/* Index just past the closing quote of the string opening at s[i], or n
** when it is unterminated (cjson will then report the error). */
static size_t skip_string(const char *s, size_t n, size_t i) {
  size_t j = i + 1;
  for (;;) {
    const char *q = memchr(s + j, '"', n - j);
    if (q == NULL) return n;
    size_t at = (size_t)(q - s), bs = 0;
    while (at - bs > i + 1 && s[at - bs - 1] == '\\') bs++;
    if (bs % 2 == 0) return at + 1;  /* an even run of backslashes escapes itself */
    j = at + 1;
  }
}

static void add_rewrite(lua_State *L, jscan *sc, const char *s, size_t *copied,
                        size_t pos, size_t len, int kind) {
  char marker[64];
  jbuf *t = sc->text;
  jbuf_add(L, t, s + *copied, pos - *copied);
  jrewrite r = {pos, len, t->len, 0, kind};
  jbuf_addc(L, t, '"');
  for (size_t i = 0; i < sc->k; i++) jbuf_addc(L, t, (char)0xFF);
  int m = snprintf(marker, sizeof marker, "%zu\"", sc->nrw);
  jbuf_add(L, t, marker, (size_t)m);
  r.newlen = t->len - r.newpos;
  jbuf_add(L, sc->rw, &r, sizeof r);
  sc->nrw++;
  *copied = pos + len;
}

void json_scan(lua_State *L, const char *s, size_t n, jscan *sc) {
  sc->text = jbuf_push(L);
  sc->rw = jbuf_push(L);
  sc->nrw = 0;
  sc->k = longest_ff_run(s, n) + 1;
  size_t i = 0, copied = 0;
  while (i < n) {
    char c = s[i];
    if (c == '"') {
      i = skip_string(s, n, i);
    } else if (c == '[') {
      size_t j = i + 1;
      while (j < n && is_ws(s[j])) j++;
      if (j < n && s[j] == ']') {
        add_rewrite(L, sc, s, &copied, i, j + 1 - i, JREW_ARRAY);
        i = j + 1;
      } else {
        i++;
      }
    } else if (c == '-' || is_digit(c)) {
      /* take the whole number token, so an exponent is never mistaken
      ** for an integer of its own */
      size_t j = i, digits = 0;
      int plain = 1;
      for (; j < n && (is_digit(s[j]) || s[j] == '-' || s[j] == '+' || s[j] == '.' ||
                       s[j] == 'e' || s[j] == 'E'); j++) {
        if (is_digit(s[j])) digits++;
        else if (j > i || s[j] != '-') plain = 0;
      }
      size_t first = i + (c == '-');
      if (plain && digits > SAFE_DIGITS && s[first] != '0')
        add_rewrite(L, sc, s, &copied, i, j - i, JREW_INT);
      i = j;
    } else {
      i++;
    }
  }
  if (sc->nrw > 0) jbuf_add(L, sc->text, s + copied, n - copied);
}

const jrewrite *json_scan_marker(const jscan *sc, const char *str, size_t len) {
  if (sc->nrw == 0 || len <= sc->k || (unsigned char)str[0] != 0xFF) return NULL;
  for (size_t i = 0; i < sc->k; i++)
    if ((unsigned char)str[i] != 0xFF) return NULL;
  size_t idx = 0;
  for (size_t i = sc->k; i < len; i++) {
    if (!is_digit(str[i])) return NULL;
    idx = idx * 10 + (size_t)(str[i] - '0');
    if (idx >= sc->nrw) return NULL;
  }
  return (const jrewrite *)sc->rw->p + idx;
}

size_t json_scan_origpos(const jscan *sc, size_t off) {
  const jrewrite *r = (const jrewrite *)sc->rw->p, *last = NULL;
  size_t lo = 0, hi = sc->nrw;  /* records are sorted by newpos */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r[mid].newpos <= off) last = &r[mid], lo = mid + 1;
    else hi = mid;
  }
  if (last == NULL) return off;
  if (off < last->newpos + last->newlen) return last->pos;
  return last->pos + last->len + (off - last->newpos - last->newlen);
}
