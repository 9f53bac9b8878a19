/*
** json_scan.h — the pass that lets cjson 2.1.0 keep what it would lose.
** cjson decodes `[]` as an empty table (indistinguishable from `{}`) and
** every number through strtod (integers beyond 2^53 lose digits).  Before
** cjson sees the text, this pass replaces each empty array and each long
** integer literal outside strings with a marker string "<M><index>", where
** <M> is a run of 0xFF bytes one longer than any such run in the input, so
** no decoded string can start with it by accident (0xFF never occurs in
** UTF-8, and \u escapes cannot produce it).  The decoder then turns markers
** back into arrays and integers, and maps cjson's error offsets back onto
** the original text.
*/
#ifndef JSON_SCAN_H
#define JSON_SCAN_H

#include <stddef.h>
#include <lua.h>

#include "json_buf.h"

enum { JREW_ARRAY = 'A', JREW_INT = 'I' };

typedef struct jrewrite {
  size_t pos, len;        /* span in the original text */
  size_t newpos, newlen;  /* span of the marker in the rewritten text */
  int kind;               /* JREW_ARRAY or JREW_INT */
} jrewrite;

typedef struct jscan {
  jbuf *text;         /* rewritten text; empty when nothing was rewritten */
  jbuf *rw;           /* jrewrite[nrw] */
  size_t nrw;
  size_t k;           /* marker length: number of 0xFF bytes */
} jscan;

/* Scans s[0..n); pushes the two buffers (text, rewrites).  [-0, +2, m] */
void json_scan(lua_State *L, const char *s, size_t n, jscan *sc);

/* If str is a marker, returns its rewrite record, else NULL. */
const jrewrite *json_scan_marker(const jscan *sc, const char *str, size_t len);

/* Original offset of offset `off` in the rewritten text (both 0-based). */
size_t json_scan_origpos(const jscan *sc, size_t off);

/* Offset of the first number literal outside strings that strtod reads
** as infinite (1e400), or n.  Used for the error message only. */
size_t json_scan_huge(const char *s, size_t n);

/* Replaces every lone UTF-16 surrogate escape (\\ud800 without its pair)
** inside the strings of s[0..n) by \\ufffd, in place (same length, so
** error offsets do not move); returns how many.  cjson 2.1.0 rejects
** them, and one such name from a .NET server (QRS) would make a whole
** listing undecodable.  Found by tests/lua/test_hostile.lua. */
size_t json_fix_surrogates(char *s, size_t n);

#endif
