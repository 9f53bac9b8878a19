-- qmig.yaml: job files in (with positions for file:line messages), YAML
-- out.  Decode errors are data (nil, "name:line:col: what", "yaml").
local t = require "testing"
local json, yaml = qmig.json, qmig.yaml
local T = t.suite("yaml")

-- Strict equality: same types (integer vs float), same array marks.
local function same(a, b, path)
  path = path or "value"
  if type(a) ~= type(b) then
    error(path .. ": " .. type(a) .. " vs " .. type(b), 2)
  elseif type(a) == "number" then
    if math.type(a) ~= math.type(b) or (a ~= b and not (a ~= a and b ~= b)) then
      error(path .. ": " .. string.format("%s %s vs %s %s", math.type(a), a, math.type(b), b), 2)
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

local A = json.array

local function decode(text, name)
  local v, pos = yaml.decode(text, name)
  if v == nil then error(pos, 2) end
  return v, pos
end

local function decode_error(text, name)
  local v, msg, code = yaml.decode(text, name)
  t.eq(v, nil, "expected a decode error")
  t.eq(code, "yaml")
  return msg
end

-- The example job file of the product specification, verbatim.
local JOB = [==[
version: 1
project: finance-wave1              # or {name: finance-wave1, dir: path}; the folder defaults
                                    # to ./finance-wave1 next to the job file
source:
  type: qrs
  url: https://qlik.corp.example:4242
  cert: certs/client.pem            # mutual TLS, as exported from the QMC
  key: certs/client_key.pem
  ca: certs/root.pem                # or `insecure: true`, which is logged as a warning
  user: 'INTERNAL\sa_api'           # sent as X-Qlik-User: UserDirectory=INTERNAL; UserId=sa_api
  # key_password: ${QRS_KEY_PASSWORD} when the exported key is encrypted
target:
  type: cloud
  url: https://acme.eu.qlikcloud.com
  api_key: ${QMIG_API_KEY}          # ${NAME} reads the environment; never logged or stored
plan:
  apps:
    streams: [Finance, Sales]       # published apps in these streams ('*' = all)
    personal: true                  # also unpublished ("My work") apps, to owners' personal spaces
    names: ['*']                    # globs, case-insensitive (streams too)
    tags: []                        # only apps carrying one of these QRS tags; [] = no filter
    exclude: {names: ['*_old'], tags: [obsolete]}
    export_scope: all               # all | published | approved
    with_data: false
    publish: true                   # publish to the managed space after import
  spaces:
    prefix: 'DEV_'
    suffix: ''
    map:                            # stream → space; default: same name, managed
      Sandbox: {name: Sandbox, type: shared}
    staging: 'Migration staging'    # shared space used to import apps bound for managed spaces
    # map values and staging are final names: prefix/suffix apply only to names derived
    # from streams. Optional overrides (default: derived from the source):
    # assignments: {Finance: [{user: 'CORP\jane', roles: [consumer]}, {group: Sales, roles: [consumer]}]}
    # owners: {Finance: 'CORP\jane'}
  users:
    domains: {CORP: corp.com}       # CORP\jane → jane@corp.com when no email attribute
    map: {'CORP\jdoe': john.doe@corp.com}
    skip_directories: [INTERNAL]
    create_missing: false           # true: users not found in the tenant are created as invited
  data_connections:
    names: ['*']
    map: {'Finance DB': {space: Finance}}
    credentials: secrets.yaml       # {source connection name: {username, password}}, ${ENV}
                                    # allowed; refused if group/world-readable
  scripts:
    replace:
      - {find: 'lib://Finance Files/', replace: 'lib://Finance:DataFiles/'}
      - {pattern: 'ODBC CONNECT TO %[?([^%]]+)%]?', replace: "LIB CONNECT TO '%1'"}
      # pattern = a Lua pattern; the data-connection renames are applied first
transforms: transforms.lua          # optional Lua hooks (§5.3)
steps_path: [./steps]               # optional folders searched before built-in steps
options: {concurrency: 8}
jobs:
  - {name: identities, steps: [users.export, users.import]}
  - {name: containers, steps: [spaces.create, spaces.assign, spaces.owners]}
  - {name: connections, steps: [dataconnections.migrate]}
  - {name: apps, steps: [apps.export, apps.import, apps.object_owners, apps.scripts,
                         apps.publish, apps.shares, apps.schedules, apps.owners]}
]==]

T.test("the SPEC job file: types, arrays and positions", function()
  local job, pos = decode(JOB, "job.yaml")
  t.eq(job.version, 1)
  t.eq(math.type(job.version), "integer")
  t.eq(job.project, "finance-wave1")
  t.eq(job.source.user, "INTERNAL\\sa_api")
  t.eq(job.source.url, "https://qlik.corp.example:4242")
  t.eq(job.target.api_key, "${QMIG_API_KEY}")
  t.eq(job.plan.apps.personal, true)
  t.eq(job.plan.apps.with_data, false)
  same(job.plan.apps.streams, A { "Finance", "Sales" })
  same(job.plan.apps.tags, A {})
  same(job.plan.apps.exclude, { names = A { "*_old" }, tags = A { "obsolete" } })
  t.eq(job.plan.spaces.prefix, "DEV_")
  t.eq(job.plan.spaces.suffix, "")
  same(job.plan.spaces.map, { Sandbox = { name = "Sandbox", type = "shared" } })
  t.eq(job.plan.users.map["CORP\\jdoe"], "john.doe@corp.com")
  t.eq(job.plan.scripts.replace[2].pattern, "ODBC CONNECT TO %[?([^%]]+)%]?")
  t.eq(job.plan.scripts.replace[2].replace, "LIB CONNECT TO '%1'")
  t.eq(job.options.concurrency, 8)
  t.eq(#job.jobs, 4)
  same(job.jobs[4].steps, A { "apps.export", "apps.import", "apps.object_owners", "apps.scripts",
                              "apps.publish", "apps.shares", "apps.schedules", "apps.owners" })
  -- positions: what the validator needs for "job.yaml:12: unknown key"
  t.eq(pos[job].line, 1)
  t.eq(pos[job].keys.version, 1)
  t.eq(pos[job].keys.plan, 16)
  t.eq(pos[job].keys.jobs, 54)
  t.eq(pos[job.source].line, 5)
  t.eq(pos[job.source].keys.user, 10)
  t.eq(yaml.position(pos, job.plan.apps, "exclude"), 22)
  t.eq(yaml.position(pos, job.plan.apps.exclude, "tags"), 22)
  t.eq(yaml.position(pos, job.plan.apps.exclude), 22)
  t.eq(yaml.position(pos, job.plan.spaces, "staging"), 31)
  t.eq(yaml.position(pos, job.plan.users, "create_missing"), 40)
  t.eq(yaml.position(pos, job.plan.scripts.replace, 2), 49)
  t.eq(yaml.position(pos, job.jobs, 3), 57)
  t.eq(yaml.position(pos, job.jobs[4].steps, 5), 59)
  t.eq(pos[job.jobs[4]].col, 5)
  t.eq(yaml.position(pos, job.plan, "nope"), nil)
  t.eq(yaml.position(pos, {}, "x"), nil)
  t.eq(getmetatable(pos).__mode, "k")
end)

T.test("scalars: core schema, ids with leading zeros stay strings", function()
  local v = decode([[
plain_zero: 0012
quoted_zero: '0012'
twelve: 12
zip: 007
zero: 0
neg: -5
plus: +7
hex: 0x1F
oct: 0o17
float: 1.5
exp: 1e3
half: .5
inf: .inf
ninf: -.inf
nan: .nan
huge: 123456789012345678901234
t1: true
t2: True
t3: TRUE
f1: false
f2: FALSE
yes: yes
no: No
on: on
off: OFF
tilde: ~
null1: null
null2: Null
null3: NULL
empty:
version: 1.2.3
date: 2024-01-11
str_tag: !!str 12
int_tag: !!int "12"
float_tag: !!float 3
bool_tag: !!bool "true"
null_tag: !!null ""
nonspecific: ! 12
quoted_true: "true"
single_null: 'null'
]])
  t.eq(v.plain_zero, "0012")
  t.eq(v.quoted_zero, "0012")
  t.eq(v.twelve, 12); t.eq(math.type(v.twelve), "integer")
  t.eq(v.zip, "007")
  t.eq(v.zero, 0); t.eq(math.type(v.zero), "integer")
  t.eq(v.neg, -5); t.eq(v.plus, 7)
  t.eq(v.hex, 31); t.eq(v.oct, 15)
  t.eq(v.float, 1.5); t.eq(math.type(v.exp), "float"); t.eq(v.exp, 1000.0); t.eq(v.half, 0.5)
  t.eq(v.inf, math.huge); t.eq(v.ninf, -math.huge); t.truthy(v.nan ~= v.nan, ".nan is NaN")
  t.eq(v.huge, "123456789012345678901234")
  t.eq(v.t1, true); t.eq(v.t2, true); t.eq(v.t3, true); t.eq(v.f1, false); t.eq(v.f2, false)
  t.eq(v.yes, "yes"); t.eq(v.no, "No"); t.eq(v.on, "on"); t.eq(v.off, "OFF")
  for _, k in ipairs({ "tilde", "null1", "null2", "null3", "empty" }) do t.eq(v[k], yaml.null, k) end
  t.eq(v.version, "1.2.3"); t.eq(v.date, "2024-01-11")
  t.eq(v.str_tag, "12"); t.eq(v.int_tag, 12); t.eq(math.type(v.float_tag), "float")
  t.eq(v.bool_tag, true); t.eq(v.null_tag, yaml.null); t.eq(v.nonspecific, "12")
  t.eq(v.quoted_true, "true"); t.eq(v.single_null, "null")
end)

T.test("keys are strings; a key with no value is visible as null", function()
  local v, pos = decode("1: one\ntrue: yes\n~: tilde\nnovalue:\n'quoted': q\n")
  t.eq(v["1"], "one"); t.eq(v[1], nil)
  t.eq(v["true"], "yes"); t.eq(v["~"], "tilde")
  t.eq(v.novalue, yaml.null)
  t.eq(yaml.position(pos, v, "novalue"), 4)
  t.eq(v.quoted, "q")
end)

T.test("empty lists and maps; sequences carry array_mt", function()
  local v = decode("a: []\nb: {}\nc:\n  - []\n  - {}\n  -\nd: [[]]\n")
  same(v, { a = A {}, b = {}, c = A { A {}, {}, yaml.null }, d = A { A {} } })
  t.eq(json.encode(v, { sort_keys = true }), '{"a":[],"b":{},"c":[[],{},null],"d":[[]]}')
end)

T.test("multi-line strings: literal, keep/strip chomping, folded", function()
  local v = decode([[
lit: |
  line 1
    indented
  line 3
strip: |-
  no newline
keep: |+
  keeps

folded: >
  one
  two

  para
folded_strip: >-
  a
  b
script: |
  LIB CONNECT TO 'Finance:DB';
  LOAD * FROM [lib://Finance Files/x.qvd] (qvd);
]])
  t.eq(v.lit, "line 1\n  indented\nline 3\n")
  t.eq(v.strip, "no newline")
  t.eq(v.keep, "keeps\n\n")
  t.eq(v.folded, "one two\npara\n")
  t.eq(v.folded_strip, "a b")
  t.eq(v.script, "LIB CONNECT TO 'Finance:DB';\nLOAD * FROM [lib://Finance Files/x.qvd] (qvd);\n")
end)

T.test("UTF-8 keys and values", function()
  local v, pos = decode("ключ: значение\nstream: 'Ventes – Été'\nemoji: 😀 ok\n\"caf\\u00e9\": \"\\u00e9\"\n")
  t.eq(v["ключ"], "значение")
  t.eq(v.stream, "Ventes – Été")
  t.eq(v.emoji, "😀 ok")
  t.eq(v["café"], "é")
  t.eq(yaml.position(pos, v, "emoji"), 3)
end)

T.test("anchors, aliases and merge keys (explicit keys win)", function()
  local v, pos = decode([[
defaults: &defaults
  type: managed
  publish: true
  owner: sa
extra: &extra
  owner: jane
  tags: [a]
finance:
  <<: *defaults
  publish: false
both:
  owner: explicit
  <<: [*extra, *defaults]
list: &l [1, 2]
again: *l
scalar: &s hello
copy: *s
]])
  same(v.finance, { type = "managed", publish = false, owner = "sa" })
  same(v.both, { owner = "explicit", tags = A { "a" }, type = "managed", publish = true })
  t.eq(v.copy, "hello")
  t.truthy(rawequal(v.again, v.list), "an alias is the same table")
  t.eq(pos[v.finance].keys.publish, 10, "explicit key position")
  t.eq(pos[v.finance].keys.type, 2, "merged key points where it is written")
  t.eq(v.finance["<<"], nil)
  local msg = decode_error("a: &x {b: 1}\nc:\n  <<: 5\n", "m.yaml")
  t.match(msg, "^m%.yaml:3:3: '<<' merges a mapping")
  local quoted = decode("'<<': literal\n")
  t.eq(quoted["<<"], "literal")
end)

T.test("alias errors: undefined, recursive, and alias bombs", function()
  t.match(decode_error("a: 1\nb: *missing\n", "job.yaml"), "^job%.yaml:2:4: alias '%*missing' has no anchor")
  t.match(decode_error("a: &a [1, *a]\n"), "^<string>:1:11: alias '%*a' refers to a node that contains it")
  local lines = { 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]' }
  for i = 1, 9 do
    local prev = "*l" .. (i - 1)
    lines[#lines + 1] = string.format("l%d: &l%d [%s]", i, i, (prev .. ", "):rep(10):sub(1, -3))
  end
  local started = qmig.monotonic()
  local msg = decode_error(table.concat(lines, "\n") .. "\n", "bomb.yaml")
  t.match(msg, "^bomb%.yaml:%d+:%d+: more than 1000000 values")
  if os.getenv("QMIG_SANITIZED") == nil then t.truthy(qmig.monotonic() - started < 2, "stops early") end
end)

T.test("syntax errors point at file:line:column", function()
  local tab = decode_error("source:\n  type: qrs\n\turl: x\n", "job.yaml")
  t.match(tab, "^job%.yaml:3:1: ")
  t.match(tab, "tab")
  local quote = decode_error("a: 1\nb: 'unclosed\nc: 2\n", "job.yaml")
  t.match(quote, "^job%.yaml:4:1: found unexpected end of stream")
  t.match(quote, "quoted scalar at line 2, column 4")
  local dquote = decode_error('name: "abc\n', "q.yaml")
  t.match(dquote, "^q%.yaml:2:1: ")
  local indent = decode_error("a:\n  b: 1\n c: 2\n", "i.yaml")
  t.match(indent, "^i%.yaml:3:")
  t.match(decode_error("a: 1\nb: caf\233\n", "latin1.yaml"), "^latin1%.yaml:2:7: .*UTF%-8")
  local flow = decode_error("a: [1, 2\nb: 3\n")
  t.match(flow, "^<string>:%d+:%d+: ")
end)

T.test("duplicate keys are an error with both lines", function()
  local msg = decode_error("plan:\n  apps: 1\n  users: 2\n  apps: 3\n", "job.yaml")
  t.eq(msg, "job.yaml:4:3: duplicate key 'apps' (first at line 2)")
  t.match(decode_error("{a: 1, a: 2}"), "duplicate key 'a'")
  -- the same key in different mappings is fine
  decode("a: {x: 1}\nb: {x: 2}\n")
end)

T.test("documents: decode wants one, decode_all returns them all", function()
  local msg = decode_error("a: 1\n---\nb: 2\n", "multi.yaml")
  t.match(msg, "^multi%.yaml:2:1: a second document")
  t.match(msg, "decode_all")
  local docs, pos = yaml.decode_all("--- \na: 1\n---\n- x\n...\n--- 3\n", "multi.yaml")
  same(docs, A { { a = 1 }, A { "x" }, 3 })
  t.eq(pos[docs[2]].line, 4)
  same(yaml.decode_all(""), A {})
  t.eq((yaml.decode("")), yaml.null)
  t.eq((yaml.decode("# only a comment\n")), yaml.null)
  t.eq((yaml.decode("--- 42\n")), 42)
  local v, m, code = yaml.decode_all("a: [\n", "x.yaml")
  t.eq(v, nil); t.eq(code, "yaml"); t.match(m, "^x%.yaml:")
end)

T.test("unsupported tags and complex keys are errors, not guesses", function()
  t.match(decode_error("a: !!binary aGk=\n"), "^<string>:1:4: unsupported tag")
  t.match(decode_error("a: !custom x\n"), "unsupported tag '!custom'")
  t.match(decode_error("a: !!int abc\n"), "'abc' is not a valid !!int")
  t.match(decode_error("? [a, b]\n: 1\n"), "mapping key must be a plain value")
  t.raises("bad argument #1 to '[%w.]*decode'", yaml.decode, nil)
  t.match(decode_error(("["):rep(600) .. ("]"):rep(600), "deep.yaml"), "^deep%.yaml:1:%d+: nested more than")
end)

-- Values whose encoding must read back identically.
local ROUND = {
  { codes = A { "0012", "007", "12", "-5", "0x1F", "1.5", "1e3", ".inf", "true", "True", "yes", "no",
              "on", "null", "~", "", " lead", "trail ", "a: b", "# not a comment", "x #y", "- dash",
              "[flow]", "{map}", "*alias", "&anchor", "!tag", "%dir", "@at", "`tick", "'single'",
              '"double"', "|", ">", "<<", "?", ":", "-", "---", "...", "tab\there", "bell\a", "nul\0byte",
              "é😀", "ключ", "C:\\data\\", "line\nbreak", "two\n\nblank\n", "keep\n\n", "\n lead nl",
              "trailing space \nx", "crlf\r\nx" } },
  { ints = A { 0, 12, -5, math.maxinteger, math.mininteger },
    floats = A { 1.5, 1.0, -0.5, 1e300, 0.1 + 0.2, math.huge, -math.huge } },
  { empty_list = A {}, empty_map = {}, nested = A { A {}, {}, A { A {} } }, null = yaml.null, t = true, f = false },
  { ["ключ"] = { ["1"] = "one", ["true"] = "t", ["a b"] = "c", [""] = "empty key" } },
  A { "x", A { 1, { y = A {} } } },
  "just a string", 42, 2.5, true, yaml.null, A {}, {},
}

T.test("encode -> decode gives the same value", function()
  for i, v in ipairs(ROUND) do
    local text = yaml.encode(v)
    local back, err = yaml.decode(text, "round" .. i)
    t.truthy(back ~= nil, err)
    same(back, v, "round" .. i)
  end
  -- and the SPEC job file survives a decode -> encode -> decode
  local job = decode(JOB)
  same(decode(yaml.encode(job)), job)
end)

T.test("encode output: sorted keys, block lists, quoting where plain would lie", function()
  local text = yaml.encode({ zeta = 1, alpha = A { "0012", "true", "", "plain", 12 },
                             mid = { n = yaml.null, e = A {} } })
  t.eq(text, table.concat({
    "alpha:",
    "- '0012'",
    "- 'true'",
    "- ''",
    "- plain",
    "- 12",
    "mid:",
    "  e: []",
    "  n: null",
    "zeta: 1",
    "" }, "\n"))
  t.match(yaml.encode({ s = "a\nb\n" }), "^s: |\n  a\n  b\n$")
  t.match(yaml.encode({ s = "a\nb" }), "^s: |%-\n")
  t.match(yaml.encode({ s = "a: b" }), "^s: 'a: b'\n$")
  t.match(yaml.encode({ f = 1.0 }), "^f: 1%.0\n$")
  t.eq(yaml.encode({ u = "é ключ" }), "u: é ключ\n")
  -- libyaml 0.2.5 escapes characters beyond the BMP; they still read back
  t.eq(yaml.encode({ u = "😀" }), 'u: "\\U0001F600"\n')
  t.eq(decode(yaml.encode({ u = "😀" })).u, "😀")
end)

T.test("encode errors name the path", function()
  t.raises("^yaml%.encode: cannot encode function at %.a%.b%[2%]$", yaml.encode, { a = { b = A { 1, print } } })
  t.raises("cannot encode a sparse array at %.x", yaml.encode, { x = { 1, nil, 3 } })
  t.raises("cannot encode a table with mixed keys", yaml.encode, { 1, k = 2 })
  t.raises("cannot encode userdata", yaml.encode, io.stdout)
  t.raises("cannot encode a string that is not valid UTF%-8 at %.s$", yaml.encode, { s = "caf\233" })
  local c = {}
  c.self = c
  t.raises("cannot encode a cycle at %.self$", yaml.encode, c)
end)

return T
