/*
** json_write.h — walks a Lua value as JSON.  Two uses:
**  - writer mode (out != NULL): our own encoder, for pretty printing and
**    sorted keys, which cjson 2.1.0 cannot do;
**  - check mode (out == NULL): validates a value before it goes to cjson
**    and lists what cjson would get wrong (empty arrays, numbers its
**    "%.14g" would round), to be patched around the cjson call.
** Both raise "json.encode: cannot encode <what> at <path>" on values that
** have no JSON form.
*/
#ifndef JSON_WRITE_H
#define JSON_WRITE_H

#include <stddef.h>
#include <lua.h>

#include "json_buf.h"

#define JSON_MAXDEPTH 1000

typedef struct jwriter {
  lua_State *L;
  jbuf *out;          /* writer mode: the output; check mode: NULL */
  int indent;         /* 2-space pretty printing (writer mode) */
  int sort_keys;      /* byte-wise sorted object keys (writer mode) */
  int subst;          /* check mode: stack index of the patch list */
  int nsubst;         /* check mode: patches recorded (4 slots each) */
  size_t ffrun;       /* check mode: longest run of 0xFF bytes in any string */
  int depth;
  int keys[JSON_MAXDEPTH + 1];     /* stack indices of the keys on the path */
  int parents[JSON_MAXDEPTH + 1];  /* stack indices of the tables on the path */
} jwriter;

/* Prepares w; in check mode pushes the patch list.  [-0, +0|1, m] */
void json_writer_init(jwriter *w, lua_State *L, jbuf *out);

/* Walks (and in writer mode writes) the value at idx.  [-0, +0, e] */
void json_write_value(jwriter *w, int idx);

/* Shortest "%.*g" text of d that reads back as d; 0 if d is not finite. */
int json_format_double(double d, char *buf, size_t size);

#endif
