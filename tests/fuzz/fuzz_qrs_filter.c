/*
** fuzz_qrs_filter.c — arbitrary strings -> qmig.qrs.eq / quote.
** A source name must never break a QRS filter: the literal that eq and
** quote produce, read back by a small reader of QRS's literal syntax
** ('...' with '' for a quote; bare GUIDs), is exactly the input, and
** nothing follows it.
*/
#define FUZZ_NAME "fuzz_qrs_filter"
#define FUZZ_LUA \
  "local qrs = require 'qmig.clients.qrs'\n" \
  "local GUID = '^' .. ('%x'):rep(8) .. '%-' .. ('%x'):rep(4) .. '%-' .. ('%x'):rep(4) .. '%-' .. ('%x'):rep(4)\n" \
  "  .. '%-' .. ('%x'):rep(12)\n" \
  "-- reads one literal at s[i]; returns its value and the index after it\n" \
  "local function literal(s, i)\n" \
  "  if s:sub(i, i) == \"'\" then\n" \
  "    local out, j = {}, i + 1\n" \
  "    while true do\n" \
  "      local q = s:find(\"'\", j, true)\n" \
  "      if not q then error('unterminated literal in ' .. s) end\n" \
  "      out[#out + 1] = s:sub(j, q - 1)\n" \
  "      if s:sub(q + 1, q + 1) == \"'\" then out[#out + 1] = \"'\"; j = q + 2\n" \
  "      else return table.concat(out), q + 1 end\n" \
  "    end\n" \
  "  end\n" \
  "  local g = s:match(GUID, i)\n" \
  "  if g then return g, i + #g end\n" \
  "  local b = s:match('^true', i) or s:match('^false', i)\n" \
  "  if b then return b == 'true', i + #b end\n" \
  "  error('no literal at ' .. i .. ' in ' .. s)\n" \
  "end\n" \
  "local function check(filter, prefix, value)\n" \
  "  assert(filter:sub(1, #prefix) == prefix, 'prefix changed: ' .. filter)\n" \
  "  local v, after = literal(filter, #prefix + 1)\n" \
  "  if after ~= #filter + 1 then error('text after the literal: ' .. filter) end\n" \
  "  if v ~= value then error('literal reads back as ' .. tostring(v) .. ', not ' .. tostring(value)) end\n" \
  "end\n" \
  "return function(s)\n" \
  "  check(qrs.quote(s), '', s)\n" \
  "  check(qrs.eq('name', s), 'name eq ', s)\n" \
  "  check(qrs.eq('stream.name', s), 'stream.name eq ', s)\n" \
  "end\n"
#include "driver.h"
