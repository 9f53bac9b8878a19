-- qmig.json: cjson with the JSON shape kept (`[]`, `{}`, `null`, long
-- integers), errors as data for bad input, path-naming errors for values
-- that have no JSON form.
local t = require "testing"
local json = qmig.json
local T = t.suite("json")

-- Strict equality: same types (integer vs float), same array marks,
-- -0.0 distinct from 0.
local function same(a, b, path)
  path = path or "value"
  if type(a) ~= type(b) then
    error(path .. ": " .. type(a) .. " vs " .. type(b), 2)
  elseif type(a) == "number" then
    if math.type(a) ~= math.type(b) or a ~= b
        or (a == 0 and math.type(a) == "float" and 1 / a ~= 1 / b) then
      error(path .. ": " .. string.format("%s %q vs %s %q", math.type(a), a, math.type(b), b), 2)
    end
  elseif type(a) == "table" then
    if json.is_array(a) ~= json.is_array(b) then
      error(path .. ": array mark differs (" .. tostring(json.is_array(a)) .. ")", 2)
    end
    for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
    for k in pairs(b) do
      if a[k] == nil then error(path .. "." .. tostring(k) .. ": missing", 2) end
    end
  elseif a ~= b then
    error(path .. ": " .. t.show(a) .. " vs " .. t.show(b), 2)
  end
end

local function decode(s) return assert(json.decode(s)) end

-- What QRS returns for GET /qrs/app/full, trimmed but with every shape.
local APP = [[
{
  "id": "8b5d0f4c-1234-4e5f-9abc-def012345678",
  "createdDate": "2023-05-02T10:11:12.345Z",
  "modifiedDate": "2024-01-11T06:00:00.000Z",
  "modifiedByUserName": "CORP\\jane",
  "customProperties": [],
  "owner": {"id": "2f5d...", "userId": "jane", "userDirectory": "CORP", "name": "Jane Doe", "privileges": null},
  "name": "Sales \"Q1\" [] {} dashboard — café 😀",
  "appId": "",
  "sourceAppId": "00000000-0000-0000-0000-000000000000",
  "targetAppId": "00000000-0000-0000-0000-000000000000",
  "publishTime": "1753-01-01T00:00:00.000Z",
  "published": false,
  "tags": [],
  "description": "Line 1\nLine 2\ttab, escaped \u00e9 and \ud83d\ude00, a path C:\\data\\, url https:\/\/q.example\/",
  "stream": null,
  "fileSize": 123456789,
  "lastReloadTime": "2024-01-11T06:00:00.000Z",
  "thumbnail": "\/appcontent\/8b5d\/thumb.png",
  "savedInProductVersion": "14.129.8",
  "migrationHash": "f5b0dc4f33e8c3cf2c9d2c8a39b7b0cbd5f7c5f1",
  "dynamicColor": "",
  "availabilityStatus": 0,
  "privileges": ["read", "update", "delete", "publish"],
  "schemaPath": "App",
  "big": 9007199254740993,
  "pow53": 9007199254740992,
  "minint": -9223372036854775808,
  "ratio": 0.30000000000000004,
  "tiny": 1.5e-7,
  "huge": 1e300,
  "negzero": -0,
  "nested": {"a": [[], [{}], {"b": []}], "c": {"d": {"e": null}}}
}
]]

T.test("decode marks every array, empty ones too; objects stay plain", function()
  local v = decode(APP)
  t.truthy(json.is_array(v.tags) and next(v.tags) == nil, "tags is an empty array")
  t.truthy(json.is_array(v.customProperties), "customProperties")
  t.truthy(json.is_array(v.privileges) and #v.privileges == 4, "privileges")
  t.truthy(not json.is_array(v) and not json.is_array(v.owner), "objects are plain")
  t.eq(getmetatable(v.tags), json.array_mt)
  t.eq(getmetatable(v.owner), nil)
  t.truthy(json.is_array(v.nested.a) and json.is_array(v.nested.a[1]), "nested empty array")
  t.truthy(not json.is_array(v.nested.a[2][1]) and next(v.nested.a[2][1]) == nil, "{} inside []")
  t.truthy(json.is_array(v.nested.a[3].b), "[] inside {} inside []")
  t.eq(v.stream, json.null)
  t.eq(v.owner.privileges, json.null)
  t.eq(v.nested.c.d.e, json.null)
  t.eq(type(json.null), "userdata")
end)

T.test("numbers: integers stay integers (beyond 2^53 too), floats exact, -0 kept", function()
  local v = decode(APP)
  t.eq(math.type(v.fileSize), "integer")
  t.eq(v.fileSize, 123456789)
  t.eq(math.type(v.availabilityStatus), "integer")
  t.eq(v.big, 9007199254740993)             -- strtod alone would give ...992
  t.eq(math.type(v.big), "integer")
  t.eq(v.pow53, 2 ^ 53)
  t.eq(math.type(v.pow53), "integer")
  t.eq(v.minint, math.mininteger)
  t.eq(v.ratio, 0.1 + 0.2)
  t.eq(v.tiny, 1.5e-7)
  t.eq(v.huge, 1e300)
  t.eq(math.type(v.negzero), "float")
  t.eq(1 / v.negzero, -math.huge)
  local w = decode("[99999999999999999999, -12345678901234567, 1.0, 1e3, 12345678901234567.5]")
  t.eq(math.type(w[1]), "float")          -- beyond int64: the nearest double
  t.eq(w[1], 1e20)
  t.eq(w[2], -12345678901234567)
  t.eq(math.type(w[2]), "integer")
  t.eq(math.type(w[3]), "integer")        -- JSON has one number type; 1.0 reads as 1
  t.eq(w[4], 1000)
  t.eq(w[5], 12345678901234567.5)
end)

T.test("strings: 4-byte UTF-8, \\u escapes, surrogate pairs, \\/", function()
  local v = decode(APP)
  t.eq(v.name, "Sales \"Q1\" [] {} dashboard — café 😀")
  t.eq(v.modifiedByUserName, "CORP\\jane")
  t.eq(v.thumbnail, "/appcontent/8b5d/thumb.png")
  t.match(v.description, "escaped é and 😀,", "\\u00e9 and the surrogate pair decode to UTF-8")
  t.match(v.description, "C:\\data\\,", "escaped backslashes")
  t.eq(decode('"\\u00e9\\u0000x"'), "é\0x")
end)

T.test("decode -> encode -> decode is identical, default and sorted/pretty", function()
  local v = decode(APP)
  for _, opts in ipairs({ {}, { sort_keys = true }, { indent = true }, { indent = true, sort_keys = true } }) do
    local text = json.encode(v, opts)
    same(decode(text), v)
    t.match(text, '"tags": ?%[%]', "[] stays []")
    t.match(text, '"stream": ?null', "null stays null")
    t.match(text, '"big": ?9007199254740993[,\n}]', "long integer digits kept")
    t.match(text, '"negzero": ?%-0[,\n}]', "-0 kept")
    t.match(text, '"ratio": ?0%.30000000000000004[,\n}]', "float printed exactly")
  end
  same(decode(json.encode(decode("[]"))), json.array())
  t.eq(json.encode(decode("[]")), "[]")
  t.eq(json.encode(decode("{}")), "{}")
  t.eq(json.encode(decode("[{}, [], [[]], null]")), "[{},[],[[]],null]")
  t.eq(json.encode(decode('{"a":{}}')), '{"a":{}}')
end)

T.test("a GET -> edit -> PUT keeps the untouched shape", function()
  local app = decode(APP)
  app.name = "Sales (migrated)"
  app.tags[#app.tags + 1] = { id = "t1", name = "migrated" }
  local back = decode(json.encode(app))
  t.eq(back.name, "Sales (migrated)")
  t.eq(back.tags[1].name, "migrated")
  t.truthy(json.is_array(back.customProperties) and #back.customProperties == 0)
  t.eq(back.stream, json.null)
end)

T.test("the empty-array marker never matches inside strings", function()
  local tricky = {
    '["[]", "[ ]", "a[]b", "\\"[]", "\\\\", "\\\\[]", "x\\\\\\"[]\\"", [], [ ], [\n\t]]',
    '{"k\\"[]": [], "[]": "[]", "\\\\": [ ], "e": "\\\\\\\\"}',
  }
  local a = decode(tricky[1])
  t.eq(#a, 10)
  t.eq(a[1], "[]"); t.eq(a[2], "[ ]"); t.eq(a[3], "a[]b"); t.eq(a[4], '"[]')
  t.eq(a[5], "\\"); t.eq(a[6], "\\[]"); t.eq(a[7], 'x\\"[]"')
  for i = 8, 10 do t.truthy(json.is_array(a[i]) and next(a[i]) == nil, "element " .. i) end
  local o = decode(tricky[2])
  t.truthy(json.is_array(o['k"[]']))
  t.eq(o["[]"], "[]")
  t.truthy(json.is_array(o["\\"]))
  t.eq(o.e, "\\\\")
  -- strings holding 0xFF bytes (not UTF-8, but cjson passes them) cannot
  -- be mistaken for markers either
  local ff = decode('["\255", "\255\255", "\255\2550", [], "\2550"]')
  t.eq(ff[1], "\255"); t.eq(ff[2], "\255\255"); t.eq(ff[3], "\255\2550"); t.eq(ff[5], "\2550")
  t.truthy(json.is_array(ff[4]) and next(ff[4]) == nil)
  local enc = json.encode({ "\255", json.array(), "\255\255", { x = (1 << 60) } })
  same(decode(enc), json.array({ "\255", json.array(), "\255\255", { x = (1 << 60) } }))
end)

T.test("invalid JSON is data: nil, message with line and column, 'json'", function()
  local v, msg, code = json.decode('{\n  "a": [1, 2],\n  "b": [1,,2]\n}')
  t.eq(v, nil)
  t.eq(code, "json")
  t.match(msg, "^invalid JSON: ")
  t.match(msg, "T_COMMA", "cjson's own words")
  t.match(msg, "%(line 3, column 11%)$")
  -- offsets are those of the caller's text, even after marked [] and long ints
  local _, msg2 = json.decode('{"a": [], "b": [ ], "n": 12345678901234567890, "c": x}')
  t.match(msg2, "at character 53 %(line 1, column 53%)")
  local _, msg3 = json.decode('["é😀", [], ?]')
  t.match(msg3, "at character 16 %(line 1, column 12%)", "columns count characters, offsets bytes")
  for _, bad in ipairs({ "", "[1,]", '{"a":1,}', '"open', "[1] 2", "{[]: 1}",
                         "{12345678901234567: 1}", "NaN", "[Infinity]", "0x10", "{'a':1}" }) do
    local r, m, c = json.decode(bad)
    t.eq(r, nil, bad)
    t.eq(c, "json", bad)
    t.match(m, "^invalid JSON: .+ %(line %d+, column %d+%)$", bad)
  end
  t.raises("bad argument #1 to '[%w.]*decode'", json.decode, {})
  local _, deep = json.decode(("["):rep(1500) .. ("]"):rep(1500))
  t.match(deep, "^invalid JSON: Found too many nested data structures %(1001%) at character 1001")
end)

T.test("encode: Lua tables to JSON", function()
  t.eq(json.encode({}), "{}")
  t.eq(json.encode(json.array()), "[]")
  t.eq(json.encode({ 1, 2, 3 }), "[1,2,3]")
  t.eq(json.encode({ a = json.array({ 1 }) }), '{"a":[1]}')
  t.eq(json.encode({ a = json.null }), '{"a":null}')
  t.eq(json.encode(json.null), "null")
  t.eq(json.encode(nil), "null")
  t.eq(json.encode("x/y\n\"é\0"), '"x/y\\n\\"é\\u0000"')
  t.eq(json.encode(true), "true")
  t.eq(json.encode(12), "12")
  t.eq(json.encode(1.5), "1.5")
  t.eq(json.encode({ n = math.maxinteger, m = math.mininteger, f = 2 ^ 63 }, { sort_keys = true }),
       '{"f":9.223372036854776e+18,"m":-9223372036854775808,"n":9223372036854775807}')
  t.eq(json.encode({ 100000000000000, 99999999999999, 0.1, 1e21, -0.0 }),
       "[100000000000000,99999999999999,0.1,1e+21,-0]")
end)

T.test("encode leaves the value as it found it", function()
  local shared = json.array()
  local v = { a = shared, b = { shared, (1 << 62) }, c = (1 << 62) }
  local text = json.encode(v)
  same(decode(text), { a = json.array(), b = json.array({ json.array(), (1 << 62) }), c = (1 << 62) })
  t.truthy(rawequal(v.a, shared) and rawequal(v.b[1], shared))
  t.eq(math.type(v.c), "integer")
  t.eq(v.c, (1 << 62))
  -- and after a failed encode too
  local w = { a = json.array(), n = (1 << 62), f = print }
  t.raises("cannot encode function", json.encode, w)
  t.truthy(json.is_array(w.a) and w.n == (1 << 62))
end)

T.test("sort_keys is deterministic; indent is 2-space", function()
  local a, b = {}, {}
  for i = 1, 50 do a["k" .. i] = i end
  for i = 50, 1, -1 do b["k" .. i] = i end
  t.eq(json.encode(a, { sort_keys = true }), json.encode(b, { sort_keys = true }))
  t.match(json.encode(a, { sort_keys = true }), '^{"k1":1,"k10":10,"k11":11,')
  local pretty = json.encode({ name = "x", tags = json.array(), list = { 1, { z = json.null } }, o = {} },
                             { indent = true, sort_keys = true })
  t.eq(pretty, table.concat({
    "{",
    '  "list": [',
    "    1,",
    "    {",
    '      "z": null',
    "    }",
    "  ],",
    '  "name": "x",',
    '  "o": {},',
    '  "tags": []',
    "}" }, "\n"))
end)

T.test("unencodable values raise an error naming the path", function()
  t.raises("^json%.encode: cannot encode function at %.a%.b%[2%]$", json.encode, { a = { b = { 1, print } } })
  t.raises("cannot encode userdata at %.f$", json.encode, { f = io.stdout })
  t.raises("cannot encode thread at top level", json.encode, coroutine.create(print))
  t.raises("cannot encode a sparse array at %.a$", json.encode, { a = { 1, nil, 3 } })
  t.raises("cannot encode a table with mixed keys at %.a$", json.encode, { a = { 1, x = 2 } })
  t.raises("cannot encode an array with string keys", json.encode, json.array({ x = 1 }))
  t.raises('cannot encode a table key of type boolean at %["odd key"%]$', json.encode, { ["odd key"] = { [true] = 1 } })
  t.raises("cannot encode NaN at %[2%]$", json.encode, { 1, 0 / 0 })
  t.raises("cannot encode inf at %.x$", json.encode, { x = math.huge })
  t.raises("cannot encode %-inf", json.encode, -math.huge, { indent = true })
  local c = { list = {} }
  c.list[1] = c
  t.raises("cannot encode a cycle at %.list%[1%]$", json.encode, c)
  t.raises("cannot encode a cycle", json.encode, c, { sort_keys = true })
  local deep = {}
  local cur = deep
  for _ = 1, 1100 do cur.x = {}; cur = cur.x end
  t.raises("nested this deep", json.encode, deep)
  -- a table referenced twice is not a cycle
  local s = { 1 }
  t.eq(json.encode({ s, s }), "[[1],[1]]")
end)

T.test("array, is_array, null, array_mt", function()
  local a = json.array()
  t.truthy(json.is_array(a) and next(a) == nil)
  local b = { 1, 2 }
  t.truthy(rawequal(json.array(b), b) and json.is_array(b))
  t.truthy(not json.is_array({}) and not json.is_array("x") and not json.is_array(nil))
  t.eq(getmetatable(a), json.array_mt)
  t.eq(qmig.yaml.array_mt, json.array_mt)
  t.eq(qmig.yaml.null, json.null)
  t.truthy(json.is_null(json.null) and not json.is_null(nil))
  t.raises("bad argument #1 to '[%w.]*array'", json.array, "x")
end)

T.test("a 20 MB reply decodes and encodes in reasonable time", function()
  local item = APP:gsub("%s*\n%s*", "")
  local parts = {}
  for i = 1, 15000 do parts[i] = item end
  local text = "[" .. table.concat(parts, ",") .. "]"
  t.truthy(#text > 15e6, #text)
  local started = qmig.monotonic()
  local v = decode(text)
  local again = json.encode(v)
  local took = qmig.monotonic() - started
  t.eq(#v, 15000)
  t.truthy(json.is_array(v[15000].tags))
  t.eq(v[6000].big, 9007199254740993)
  same(decode(again)[777], v[777])
  if os.getenv("QMIG_SANITIZED") == nil then t.truthy(took < 5, "took " .. took .. "s") end
end)

return T
