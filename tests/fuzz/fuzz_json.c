/*
** fuzz_json.c — bytes -> qmig.json.decode -> encode -> decode.
** Server replies are hostile: decode returns a value or nil + "invalid
** JSON: ... at character N (line L, column C)" + "json", never raises.
** A decoded value always encodes, and the round trip keeps its shape:
** same types (integer vs float), same [] vs {}, same nulls, same text
** when encoded with sorted keys (a fixed point).
*/
#define FUZZ_NAME "fuzz_json"
#define FUZZ_LUA \
  "local json = require 'qmig.json'\n" \
  "local function same(a, b, path)\n" \
  "  if type(a) ~= type(b) then error(path .. ': ' .. type(a) .. ' became ' .. type(b)) end\n" \
  "  if type(a) == 'number' then\n" \
  "    if math.type(a) ~= math.type(b) then error(path .. ': ' .. math.type(a) .. ' became ' .. math.type(b)) end\n" \
  "    if a ~= b and not (a ~= a and b ~= b) then error(path .. ': ' .. tostring(a) .. ' became ' .. tostring(b)) end\n" \
  "    return\n" \
  "  end\n" \
  "  if type(a) ~= 'table' then\n" \
  "    if a ~= b then error(path .. ': value changed') end\n" \
  "    return\n" \
  "  end\n" \
  "  if (a == json.null) ~= (b == json.null) then error(path .. ': null changed') end\n" \
  "  if json.is_array(a) ~= json.is_array(b) then error(path .. ': array/object changed') end\n" \
  "  for k, v in pairs(a) do same(v, b[k], path .. '.' .. tostring(k)) end\n" \
  "  for k in pairs(b) do if a[k] == nil then error(path .. '.' .. tostring(k) .. ': appeared') end end\n" \
  "end\n" \
  "return function(s)\n" \
  "  local ok, v, msg, code = pcall(json.decode, s)\n" \
  "  if not ok then error('json.decode raised: ' .. tostring(v)) end\n" \
  "  if v == nil then\n" \
  "    assert(type(msg) == 'string' and code == 'json', 'soft failure without message')\n" \
  "    assert(msg:find('^invalid JSON: .* at character %d+ %(line %d+, column %d+%)$'), 'odd message: ' .. msg)\n" \
  "    return\n" \
  "  end\n" \
  "  local eok, text = pcall(json.encode, v)\n" \
  "  if not eok then error('a decoded value does not encode: ' .. tostring(text)) end\n" \
  "  local back, err = json.decode(text)\n" \
  "  if back == nil then error('encode produced invalid JSON: ' .. tostring(err) .. ' in ' .. text:sub(1, 200)) end\n" \
  "  same(v, back, '$')\n" \
  "  local s1 = json.encode(v, {sort_keys = true})\n" \
  "  local s2 = json.encode(back, {sort_keys = true})\n" \
  "  if s1 ~= s2 then error('sorted encoding is not a fixed point') end\n" \
  "  local again = json.decode(s1)\n" \
  "  same(v, again, '$sorted')\n" \
  "end\n"
#include "driver.h"
