/*
** json_scan.c — marks empty arrays and long integers for the decoder.
** See json_scan.h for why.  The scan is one linear pass; strings are
** skipped with memchr, which matters on 50 MB QRS replies.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

size_t json_scan_huge(const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    char c = s[i];
    if (c == '"') {
      i = skip_string(s, n, i);
    } else if (c == '-' || is_digit(c)) {
      size_t j = i;
      while (j < n && (is_digit(s[j]) || s[j] == '-' || s[j] == '+' || s[j] == '.' || s[j] == 'e' || s[j] == 'E'))
        j++;
      char *copy = malloc(j - i + 1);  /* error path only: the cost does not matter */
      if (copy == NULL) return i;
      memcpy(copy, s + i, j - i);
      copy[j - i] = '\0';
      int huge = isinf(strtod(copy, NULL));
      free(copy);
      if (huge) return i;
      i = j;
    } else {
      i++;
    }
  }
  return n;
}

static int hex4(const char *s, unsigned *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    *v = *v * 16 + (unsigned)d;
  }
  return 1;
}

size_t json_fix_surrogates(char *s, size_t n) {
  size_t fixed = 0, i = 0;
  while (i < n) {
    if (s[i] != '"') { i++; continue; }
    for (i++; i < n && s[i] != '"'; i++) {  /* inside a string */
      if (s[i] != '\\') continue;
      if (i + 1 >= n) return fixed;
      if (s[i + 1] != 'u' || i + 6 > n) { i++; continue; }  /* \n, \", \\ ... */
      unsigned u, lo;
      if (!hex4(s + i + 2, &u)) { i++; continue; }          /* cjson reports it */
      if (u >= 0xD800 && u <= 0xDBFF && i + 12 <= n && s[i + 6] == '\\' && s[i + 7] == 'u' &&
          hex4(s + i + 8, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
        i += 11;  /* a valid pair */
        continue;
      }
      if (u >= 0xD800 && u <= 0xDFFF) {  /* lone: same length, so offsets stay */
        memcpy(s + i + 2, "fffd", 4);
        fixed++;
      }
      i += 5;
    }
    i++;
  }
  return fixed;
}
