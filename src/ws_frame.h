/*
** ws_frame.h — RFC 6455 framing with no I/O: a frame parser (bytes in,
** one frame out), a frame header encoder with client masking, the message
** assembler (fragments and control frames in, whole messages out) and
** the UTF-8 check a text message needs.  Pure functions, so the fuzzer
** (tests/fuzz/fuzz_ws.c) drives exactly what the connection uses.
*/
#ifndef QMIG_WS_FRAME_H
#define QMIG_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
  WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA
};

/* ws_parse_frame results: > 0 bytes consumed (a frame in *f), 0 more bytes
** needed, < 0 a protocol violation (the connection must fail). */
enum {
  WS_NEED_MORE = 0,
  WS_ERR_RSV = -1,          /* reserved bits set: no extension was agreed */
  WS_ERR_OPCODE = -2,       /* reserved opcode */
  WS_ERR_CONTROL = -3,      /* control frame fragmented or over 125 bytes */
  WS_ERR_LENGTH = -4,       /* length not in its shortest form, or 2^63 and over */
  WS_ERR_MASKED = -5,       /* a server frame must not be masked (6455 §5.1) */
  WS_ERR_TOO_BIG = -6,      /* payload over the caller's limit */
  WS_ERR_SEQUENCE = -7,     /* continuation without a start, or a start inside one */
  WS_ERR_UTF8 = -8,         /* text message that is not UTF-8 */
  WS_ERR_CLOSE = -9         /* close frame with a 1-byte or bad payload */
};

/* The largest payload ws_parse_frame accepts whatever the caller asks, so
** that a frame's size always fits the int it returns. */
#define WS_MAX_PAYLOAD ((uint64_t)1 << 30)

typedef struct WsFrame {
  int fin, opcode, masked;
  unsigned char mask[4];
  uint64_t len;                   /* payload length */
  const unsigned char *payload;   /* into the parsed buffer, still masked if masked */
  size_t header_len;
} WsFrame;

/* Parses one frame at buf[0..n).  A header announcing more than max_payload
** bytes fails at once (WS_ERR_TOO_BIG), before its payload is read, so a
** receiver never buffers more than max_payload + 14 bytes for a frame.
** allow_masked: 0 for a client reading server frames. */
int ws_parse_frame(const unsigned char *buf, size_t n, uint64_t max_payload, int allow_masked, WsFrame *f);

/* Writes a frame header into out (at least 14 bytes); returns its length.
** mask: 4 bytes, or NULL for an unmasked frame. */
size_t ws_encode_header(unsigned char *out, int fin, int opcode, uint64_t len, const unsigned char *mask);

/* XORs data with the mask, starting at mask offset `offset` (6455 §5.3). */
void ws_apply_mask(unsigned char *data, size_t n, const unsigned char mask[4], size_t offset);

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int ws_utf8_valid(const unsigned char *s, size_t n);

/* A close frame's payload: 0, or 2 bytes of status and UTF-8 reason. 1 when
** acceptable; sets *code (1005 "no status" when empty). */
int ws_close_payload_valid(const unsigned char *p, size_t n, int *code);

/* The message assembler: data frames of one message, with control frames
** between them, become one message of at most max_message bytes. */
typedef struct WsAssembler {
  int in_message;     /* a fragmented message is under way */
  int opcode;         /* its opcode (TEXT or BINARY) */
  size_t len;         /* bytes gathered so far */
  uint64_t max_message;
} WsAssembler;

/* What to do with a parsed frame: returns < 0 (an error above), or one of
** WS_ACT_* : append the payload to the message (and it is complete when
** *complete is set), or handle a control frame. */
enum { WS_ACT_DATA = 1, WS_ACT_CONTROL = 2 };
int ws_assemble(WsAssembler *a, const WsFrame *f, int *complete);

#endif
