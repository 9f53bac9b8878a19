/*
** fuzz_yaml.c — bytes -> qmig.yaml.decode.  A job file is written by a
** person: whatever the bytes, decode returns a value and its positions,
** or nil + "name:line:col: message" + "yaml"; it never raises, never
** crashes.  A decoded value that encodes must decode back.
*/
#define FUZZ_NAME "fuzz_yaml"
#define FUZZ_LUA \
  "local yaml = require 'qmig.yaml'\n" \
  "return function(s)\n" \
  "  local ok, v, pos, code = pcall(yaml.decode, s, 'fuzz.yaml')\n" \
  "  if not ok then error('yaml.decode raised: ' .. tostring(v)) end\n" \
  "  if v == nil then\n" \
  "    assert(type(pos) == 'string' and code == 'yaml', 'soft failure without message')\n" \
  "    assert(pos:find('^fuzz%.yaml:%d+:%d+: '), 'message without file:line:col: ' .. pos)\n" \
  "    return\n" \
  "  end\n" \
  "  assert(type(pos) == 'table', 'no positions table')\n" \
  "  local eok, text = pcall(yaml.encode, v)\n" \
  "  if eok then\n" \
  "    local back, err = yaml.decode(text, 'encoded')\n" \
  "    assert(back ~= nil, 'encode produced YAML that does not decode: ' .. tostring(err))\n" \
  "  end\n" \
  "  local all = yaml.decode_all(s, 'fuzz.yaml')\n" \
  "  assert(all == nil or type(all) == 'table')\n" \
  "end\n"
#include "driver.h"
