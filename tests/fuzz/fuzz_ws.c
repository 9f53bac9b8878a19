/*
** fuzz_ws.c — bytes -> qmig.ws.parse (the RFC 6455 frame parser and
** message assembler of src/ws_frame.c, what a connection runs on every
** byte a server sends).  The first byte picks the message cap and whether
** masked frames are allowed; the rest is the stream.  Must hold: parse
** never raises; the error, if any, is one of the named ones; the frames
** it returns re-encode to exactly the bytes it consumed (the encoding is
** canonical: shortest lengths only); without an error, what is left is an
** incomplete frame; every message is within the cap, is the
** concatenation of its data frames, and a text message is UTF-8 (checked
** against Lua's own utf8.len, which is strict in 5.4).
*/
#define FUZZ_NAME "fuzz_ws"
#define FUZZ_LUA \
  "local ws = require 'qmig.ws'\n" \
  "local ERRORS = {rsv=1, opcode=1, control=1, length=1, masked=1, too_big=1, sequence=1, utf8=1, close=1}\n" \
  "local CAPS = {0, 1, 125, 126, 1000, 65535, 65536, 1 << 20}\n" \
  "return function(s)\n" \
  "  if #s == 0 then return end\n" \
  "  local b = s:byte(1)\n" \
  "  local cap, masked, stream = CAPS[(b & 7) + 1], (b & 8) ~= 0, s:sub(2)\n" \
  "  local ok, frames, msgs, consumed, err = pcall(ws.parse, stream, cap, masked)\n" \
  "  if not ok then error('ws.parse raised: ' .. tostring(frames)) end\n" \
  "  assert(consumed >= 0 and consumed <= #stream, 'consumed out of range')\n" \
  "  if err ~= nil then assert(ERRORS[err], 'unknown error ' .. tostring(err)) end\n" \
  "  local parts, data, texts = {}, {}, {}\n" \
  "  for i, f in ipairs(frames) do\n" \
  "    assert(f.masked == (f.mask ~= nil), 'mask field')\n" \
  "    if not masked then assert(not f.masked, 'a masked frame was accepted') end\n" \
  "    parts[i] = ws.encode(f.opcode, f.payload, f.fin, f.mask)\n" \
  "  end\n" \
  "  local again = table.concat(parts)\n" \
  "  if again ~= stream:sub(1, consumed) then error('frames do not re-encode to the consumed bytes') end\n" \
  "  if err == nil and consumed < #stream then\n" \
  "    local f2, m2, c2, e2 = ws.parse(stream:sub(consumed + 1), cap, masked)\n" \
  "    assert(#f2 == 0 and #m2 == 0 and c2 == 0 and e2 == nil, 'parsing stopped before a complete frame')\n" \
  "  end\n" \
  "  -- rebuild the messages from the data frames and compare\n" \
  "  local cur, op, built = nil, nil, {}\n" \
  "  for _, f in ipairs(frames) do\n" \
  "    if f.opcode < 8 then\n" \
  "      if f.opcode ~= 0 then cur, op = {}, f.opcode end\n" \
  "      if cur then\n" \
  "        cur[#cur + 1] = f.payload\n" \
  "        if f.fin then built[#built + 1] = {opcode = op, data = table.concat(cur)}; cur = nil end\n" \
  "      end\n" \
  "    end\n" \
  "  end\n" \
  "  assert(#msgs <= #built, 'more messages than complete frame sequences')\n" \
  "  for i, m in ipairs(msgs) do\n" \
  "    assert(m.opcode == built[i].opcode and m.data == built[i].data, 'message ' .. i .. ' differs from its frames')\n" \
  "    assert(#m.data <= math.max(cap, 0), 'message over the cap')\n" \
  "    if m.opcode == 1 then assert(utf8.len(m.data), 'a text message that is not UTF-8') end\n" \
  "  end\n" \
  "end\n"
#include "driver.h"
