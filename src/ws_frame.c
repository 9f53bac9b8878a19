/*
** ws_frame.c — RFC 6455 frames and messages, without I/O (ws_frame.h).
*/
#include <string.h>

#include "ws_frame.h"

static int is_control(int op) { return op >= 0x8; }

static int known_opcode(int op) {
  return op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
         op == WS_OP_PING || op == WS_OP_PONG;
}

int ws_parse_frame(const unsigned char *buf, size_t n, uint64_t max_payload, int allow_masked, WsFrame *f) {
  if (n < 2) return WS_NEED_MORE;
  memset(f, 0, sizeof *f);
  f->fin = (buf[0] & 0x80) != 0;
  f->opcode = buf[0] & 0x0f;
  f->masked = (buf[1] & 0x80) != 0;
  /* The checks that need only the first two bytes come first, so a bad
  ** frame fails before the receiver waits for more of it. */
  if (buf[0] & 0x70) return WS_ERR_RSV;
  if (!known_opcode(f->opcode)) return WS_ERR_OPCODE;
  if (f->masked && !allow_masked) return WS_ERR_MASKED;
  uint64_t len = buf[1] & 0x7f;
  size_t pos = 2;
  if (is_control(f->opcode) && (!f->fin || len > 125)) return WS_ERR_CONTROL;
  if (len == 126) {
    if (n < 4) return WS_NEED_MORE;
    len = ((uint64_t)buf[2] << 8) | buf[3];
    if (len < 126) return WS_ERR_LENGTH;
    pos = 4;
  } else if (len == 127) {
    if (n < 10) return WS_NEED_MORE;
    if (buf[2] & 0x80) return WS_ERR_LENGTH;  /* the most significant bit must be 0 */
    len = 0;
    for (int i = 2; i < 10; i++) len = (len << 8) | buf[i];
    if (len <= 0xffff) return WS_ERR_LENGTH;
    pos = 10;
  }
  if (max_payload > WS_MAX_PAYLOAD) max_payload = WS_MAX_PAYLOAD;
  if (len > max_payload) return WS_ERR_TOO_BIG;
  if (f->masked) {
    if (n < pos + 4) return WS_NEED_MORE;
    memcpy(f->mask, buf + pos, 4);
    pos += 4;
  }
  if ((uint64_t)(n - pos) < len) return WS_NEED_MORE;
  f->len = len;
  f->header_len = pos;
  f->payload = buf + pos;
  return (int)(pos + (size_t)len);  /* at most WS_MAX_PAYLOAD + 14: fits an int */
}

size_t ws_encode_header(unsigned char *out, int fin, int opcode, uint64_t len, const unsigned char *mask) {
  size_t pos = 0;
  out[pos++] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
  unsigned char m = mask ? 0x80 : 0;
  if (len < 126) {
    out[pos++] = (unsigned char)(m | len);
  } else if (len <= 0xffff) {
    out[pos++] = (unsigned char)(m | 126);
    out[pos++] = (unsigned char)(len >> 8);
    out[pos++] = (unsigned char)len;
  } else {
    out[pos++] = (unsigned char)(m | 127);
    for (int i = 7; i >= 0; i--) out[pos++] = (unsigned char)(len >> (8 * i));
  }
  if (mask) {
    memcpy(out + pos, mask, 4);
    pos += 4;
  }
  return pos;
}

void ws_apply_mask(unsigned char *data, size_t n, const unsigned char mask[4], size_t offset) {
  for (size_t i = 0; i < n; i++) data[i] ^= mask[(offset + i) & 3];
}

int ws_utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned cp, min;
    if ((c & 0xe0) == 0xc0) need = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) need = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) need = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n - i - 1 < need) return 0;
    for (size_t k = 1; k <= need; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += need + 1;
  }
  return 1;
}

/* Status codes a peer may send (6455 §7.4.1; 1004-1006 and 1015 are never
** on the wire; 3000-4999 are for libraries and applications). */
static int valid_close_code(int code) {
  if (code >= 3000 && code <= 4999) return 1;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006;
}

int ws_close_payload_valid(const unsigned char *p, size_t n, int *code) {
  *code = 1005;
  if (n == 0) return 1;
  if (n == 1) return 0;
  *code = (p[0] << 8) | p[1];
  return valid_close_code(*code) && ws_utf8_valid(p + 2, n - 2);
}

int ws_assemble(WsAssembler *a, const WsFrame *f, int *complete) {
  *complete = 0;
  if (is_control(f->opcode)) return WS_ACT_CONTROL;
  if (f->opcode == WS_OP_CONT) {
    if (!a->in_message) return WS_ERR_SEQUENCE;
  } else {
    if (a->in_message) return WS_ERR_SEQUENCE;
    a->in_message = 1;
    a->opcode = f->opcode;
    a->len = 0;
  }
  if (f->len > a->max_message - a->len) return WS_ERR_TOO_BIG;
  a->len += (size_t)f->len;
  if (f->fin) {
    a->in_message = 0;
    *complete = 1;
  }
  return WS_ACT_DATA;
}
