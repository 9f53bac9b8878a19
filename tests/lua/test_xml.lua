-- qmig.xml: libexpat into a Lua tree; hostile documents (entities, deep
-- nesting, huge attributes and documents) refused with file:line:col; a
-- deterministic cross-check against the independent subset reader the
-- fuzz harness uses (tests/fuzz/xml_oracle.lua).
local t = require "testing"
local xml = require "qmig.xml"
local oracle = dofile("tests/fuzz/xml_oracle.lua")

local T = t.suite("xml")

T.test("elements, attributes, text, CDATA and references into a tree", function()
  local root = assert(xml.decode('<?xml version="1.0" encoding="UTF-8"?>\n<Doc v="1&amp;2">' ..
    '<Name>Sales &lt;EU&gt;</Name>\n  <S><![CDATA[a<b]]>&#65;</S><E/></Doc>', "d.xml"))
  t.eq(root.name, "Doc")
  t.eq(root.attrs, { v = "1&2" })
  t.eq(root.line, 2)
  t.eq(#root, 3, "whitespace-only runs dropped")
  t.eq(root[1].name, "Name")
  t.eq(root[1][1], "Sales <EU>")
  t.eq(root[2][1], "a<bA", "CDATA and character references joined into one string")
  t.eq({ root[3].name, #root[3], root[3].line, root[3].col }, { "E", 0, 3, 30 })
  local kept = assert(xml.decode("<a> <b/> </a>", "k.xml", { keep_space = true }))
  t.eq({ kept[1], kept[2].name, kept[3] }, { " ", "b", " " })
end)

T.test("encodings: UTF-8 with a BOM, UTF-16, ISO-8859-1 all come out as UTF-8", function()
  t.eq(assert(xml.decode("\239\187\191<a>\195\169</a>", "bom.xml"))[1], "é")
  t.eq(assert(xml.decode('<?xml version="1.0" encoding="ISO-8859-1"?><a>\233</a>', "l1.xml"))[1], "é")
  local u16 = "\255\254" .. ("<a>\233</a>"):gsub(".", "%0\0")
  t.eq(assert(xml.decode(u16, "u16.xml"))[1], "é")
end)

T.test("malformed XML: nil, name:line:col: expat's reason, 'xml'", function()
  local v, msg, code = xml.decode("<a>\n<b></a>", "Doc-prj/QlikViewProject.xml")
  t.eq({ v, msg, code }, { nil, "Doc-prj/QlikViewProject.xml:2:6: mismatched tag", "xml" })
  t.match(select(2, xml.decode("", "e.xml")), "^e%.xml:1:1: no element found")
  t.match(select(2, xml.decode("<a/><b/>", "two.xml")), "^two%.xml:1:5: junk after document element")
  t.match(select(2, xml.decode("<a>\0</a>", "nul.xml")), "^nul%.xml:1:4: not well%-formed")
end)

T.test("entity declarations (billion laughs, external entities) refused, never expanded", function()
  local laughs = '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n' ..
    ' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n<lolz>&lol2;</lolz>'
  local v, msg, code = xml.decode(laughs, "bomb.xml")
  t.eq({ v, code }, { nil, "xml" })
  t.match(msg, "^bomb%.xml:3:%d+: DTD declares entity 'lol': entity declarations are refused$")
  msg = select(2, xml.decode('<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<a>&e;</a>', "x.xml"))
  t.match(msg, "^x%.xml:1:%d+: DTD declares entity 'e' %(external%)")
  msg = select(2, xml.decode('<!DOCTYPE a [<!ENTITY % p SYSTEM "http://evil/p.dtd"> %p;]><a/>', "p.xml"))
  t.match(msg, "^p%.xml:1:%d+: DTD declares parameter entity 'p' %(external%)")
  -- an external DTD is never fetched, so its entities are unknown: refused
  msg = select(2, xml.decode('<!DOCTYPE a SYSTEM "http://evil/a.dtd">\n<a>&secret;</a>', "s.xml"))
  t.match(msg, "^s%.xml:2:%d+: reference to undeclared entity 'secret'$")
  -- a DOCTYPE without entities is harmless and allowed
  t.eq(assert(xml.decode('<!DOCTYPE a [<!ELEMENT a ANY>]><a/>', "ok.xml")).name, "a")
end)

T.test("limits: size, depth, attribute length, element count", function()
  t.eq(xml.limits, { max_bytes = 64 * 1024 * 1024, max_depth = 256, max_attr = 1024 * 1024, max_nodes = 1000000 })
  local _, msg = xml.decode(("<a>"):rep(257) .. ("</a>"):rep(257), "deep.xml")
  t.match(msg, "^deep%.xml:1:769: elements nested deeper than 256 levels$")
  t.truthy(xml.decode(("<a>"):rep(256) .. ("</a>"):rep(256), "ok.xml"), "256 levels are fine")
  _, msg = xml.decode('<a>\n<b v="' .. ("x"):rep(2001) .. '"/></a>', "attr.xml", { max_attr = 2000 })
  t.eq(msg, "attr.xml:2:1: attribute 'v' of <b> longer than 2000 bytes")
  _, msg = xml.decode("<a>" .. ("<b/>"):rep(11) .. "</a>", "many.xml", { max_nodes = 10 })
  t.match(msg, "^many%.xml:1:%d+: more than 10 elements$")
  _, msg = xml.decode("<a>" .. ("x"):rep(100) .. "</a>", "big.xml", { max_bytes = 64 })
  t.eq(msg, "big.xml:1:1: document of 107 bytes is larger than the limit of 64 bytes")
  t.raises("option max_depth must be a positive integer", xml.decode, "<a/>", "o.xml", { max_depth = 0 })
end)

T.test("the subset reader and expat agree on generated documents; trees round-trip", function()
  local seed = 12345
  local function rnd(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n + 1
  end
  local NAMES = { "a", "B", "_c", "d.e", "f-1", "x:y", "1", "" }
  local TEXT = { "hi", " ", "\n", "x > y", "]]>", "\t", "a]]b" }
  local function gen(depth)
    local nm = NAMES[rnd(#NAMES)]
    local parts = { "<" .. nm }
    for _ = 1, rnd(3) - 1 do
      local q = rnd(2) == 1 and '"' or "'"
      parts[#parts + 1] = " " .. NAMES[rnd(4)] .. "=" .. q .. (rnd(4) == 1 and "<" or "v\tw") .. q
    end
    if depth > 3 or rnd(4) == 1 then
      parts[#parts + 1] = "/>"
    else
      parts[#parts + 1] = ">"
      for _ = 1, rnd(3) do
        parts[#parts + 1] = rnd(2) == 1 and TEXT[rnd(#TEXT)] or gen(depth + 1)
      end
      parts[#parts + 1] = "</" .. (rnd(10) == 1 and NAMES[rnd(#NAMES)] or nm) .. ">"
    end
    return table.concat(parts)
  end
  local accepted, refused = 0, 0
  for _ = 1, 600 do
    local doc = gen(1)
    if rnd(12) == 1 then doc = doc .. "<z/>" end
    t.truthy(oracle.in_subset(doc))
    oracle.check(xml, doc)   -- raises on any disagreement
    if xml.decode(doc) then accepted = accepted + 1 else refused = refused + 1 end
  end
  t.truthy(accepted > 100 and refused > 100,
    ("both kinds generated: %d accepted, %d refused"):format(accepted, refused))
end)

T.test("the subset reader does catch a wrong tree", function()
  local want = assert(oracle.parse('<a x="1">t<b/></a>', 256))
  t.eq(oracle.same(want, assert(xml.decode('<a x="1">t<b/></a>'))), true)
  t.eq((oracle.same(want, assert(xml.decode('<a x="2">t<b/></a>')))), false)
  t.eq((oracle.same(want, assert(xml.decode('<a x="1">u<b/></a>')))), false)
end)

return T
