-- An independent reader of a small subset of XML, to check qmig.xml
-- (libexpat) against: documents of printable ASCII, tabs and newlines
-- only, with no markup declarations, processing instructions, comments,
-- CDATA, entity or character references (no '<!', '<?', '&').  For such
-- an input the subset reader decides well-formedness by XML 1.0's rules
-- alone (one root; names; quoted attributes without '<' and unique per
-- element; matching end tags; no "]]>" in text; nothing but whitespace
-- outside the root), so expat must agree: accept with the same tree, or
-- refuse.  Used by tests/fuzz/fuzz_xml.c and tests/lua/test_xml.lua.
local M = {}

-- Is s in the subset?  (Outside it the reader has no opinion.)
function M.in_subset(s)
  if s:find("[^\t\n\32-\126]") then return false end
  return not (s:find("<!", 1, true) or s:find("<?", 1, true) or s:find("&", 1, true))
end

local NAME = "^[A-Za-z_:][A-Za-z0-9_:.%-]*"

-- parse(s, max_depth) -> tree | nil, why
function M.parse(s, max_depth)
  local pos, n = 1, #s
  local function skip_ws()
    local _, e = s:find("^[ \t\n]*", pos)
    pos = e + 1
  end
  local function name()
    local a, e = s:find(NAME, pos)
    if not a then return nil end
    pos = e + 1
    return s:sub(a, e)
  end
  local function fail(why) return nil, why .. " at " .. pos end
  local root = { children = {} }
  local stack = { root }
  local seen_root = false
  skip_ws()
  while pos <= n do
    local top = stack[#stack]
    if s:sub(pos, pos) == "<" then
      if s:sub(pos + 1, pos + 1) == "/" then
        pos = pos + 2
        local nm = name()
        if not nm or #stack == 1 then return fail("bad end tag") end
        if nm ~= top.name then return fail("mismatched end tag") end
        skip_ws()
        if s:sub(pos, pos) ~= ">" then return fail("unclosed end tag") end
        pos = pos + 1
        stack[#stack] = nil
        if #stack == 1 then skip_ws() end
      else
        if #stack == 1 and seen_root then return fail("second root") end
        pos = pos + 1
        local nm = name()
        if not nm then return fail("bad element name") end
        if #stack > max_depth then return fail("too deep") end
        local el = { name = nm, attrs = {}, children = {} }
        while true do
          local had_ws = s:find("^[ \t\n]", pos)
          skip_ws()
          local c = s:sub(pos, pos)
          if c == ">" then pos = pos + 1 break end
          if c == "/" then
            if s:sub(pos + 1, pos + 1) ~= ">" then return fail("bad empty tag") end
            pos = pos + 2
            el.empty = true
            break
          end
          if not had_ws then return fail("attribute without space") end
          local an = name()
          if not an then return fail("bad attribute name") end
          if el.attrs[an] then return fail("duplicate attribute") end
          skip_ws()
          if s:sub(pos, pos) ~= "=" then return fail("no =") end
          pos = pos + 1
          skip_ws()
          local q = s:sub(pos, pos)
          if q ~= '"' and q ~= "'" then return fail("unquoted attribute") end
          local e = s:find(q, pos + 1, true)
          if not e then return fail("unclosed attribute") end
          local v = s:sub(pos + 1, e - 1)
          if v:find("<", 1, true) then return fail("< in attribute") end
          el.attrs[an] = v:gsub("[\t\n]", " ")
          pos = e + 1
        end
        seen_root = true
        top.children[#top.children + 1] = el
        if not el.empty then
          stack[#stack + 1] = el
        elseif #stack == 1 then
          skip_ws()
        end
      end
    else
      if #stack == 1 then return fail("text outside the root") end
      local e = s:find("<", pos, true) or (n + 1)
      local text = s:sub(pos, e - 1)
      if text:find("]]>", 1, true) then return fail("]]> in text") end
      if text:find("[^ \t\n]") then top.children[#top.children + 1] = text end
      pos = e
    end
  end
  if #stack > 1 then return fail("unclosed element") end
  if not seen_root then return fail("no root") end
  return root.children[1]
end

-- Do the oracle's tree and qmig.xml's agree?  -> true | false, where
local function same(a, b, path)
  path = path or ""
  if type(a) == "string" or type(b) == "string" then
    if a ~= b then return false, path .. ": text " .. tostring(a) .. " vs " .. tostring(b) end
    return true
  end
  if a.name ~= b.name then return false, path .. ": name " .. a.name .. " vs " .. b.name end
  for k, v in pairs(a.attrs) do
    if b.attrs[k] ~= v then return false, path .. ": attribute " .. k end
  end
  for k in pairs(b.attrs) do
    if a.attrs[k] == nil then return false, path .. ": extra attribute " .. k end
  end
  if #a.children ~= #b then return false, path .. ": " .. #a.children .. " children vs " .. #b end
  for i, c in ipairs(a.children) do
    local ok, why = same(c, b[i], path .. "/" .. i)
    if not ok then return false, why end
  end
  return true
end
M.same = same

-- Serialises a qmig.xml tree (for the round trip check).
local function esc(v, attr)
  v = v:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")
  if attr then v = v:gsub('"', "&quot;"):gsub("\t", "&#9;"):gsub("\n", "&#10;"):gsub("\r", "&#13;") end
  return (v:gsub("\r", "&#13;"))
end
function M.encode(el, out)
  out = out or {}
  out[#out + 1] = "<" .. el.name
  local keys = {}
  for k in pairs(el.attrs) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = " " .. k .. '="' .. esc(el.attrs[k], true) .. '"' end
  out[#out + 1] = ">"
  for _, c in ipairs(el) do
    if type(c) == "string" then out[#out + 1] = esc(c) else M.encode(c, out) end
  end
  out[#out + 1] = "</" .. el.name .. ">"
  return out
end

-- The fuzz invariants, for one input.
function M.check(xml, s)
  local ok, tree, msg, code = pcall(xml.decode, s, "fuzz.xml")
  if not ok then error("xml.decode raised: " .. tostring(tree)) end
  if tree == nil then
    assert(type(msg) == "string" and code == "xml", "soft failure without message")
    assert(msg:find("^fuzz%.xml:%d+:%d+: ."), "message without file:line:col: " .. msg)
  else
    assert(type(tree) == "table" and type(tree.name) == "string", "no root element")
    -- a tree written back out reads back the same (character data and
    -- attributes exactly: the writer escapes what expat normalises)
    local again, err = xml.decode(table.concat(M.encode(tree)), "again.xml", { keep_space = true })
    assert(again, "re-encoded tree does not parse: " .. tostring(err))
    local function strip(el)
      local t = { name = el.name, attrs = el.attrs, children = {} }
      for _, c in ipairs(el) do t.children[#t.children + 1] = type(c) == "string" and c or strip(c) end
      return t
    end
    local same_ok, where = same(strip(tree), again, "")
    assert(same_ok, "round trip differs " .. tostring(where))
  end
  if M.in_subset(s) then
    local want, why = M.parse(s, xml.limits.max_depth)
    if want then
      assert(tree, "subset reader accepts, expat refuses: " .. tostring(msg))
      local same_ok, where = same(want, tree, "")
      assert(same_ok, "trees differ " .. tostring(where))
    else
      assert(tree == nil, "subset reader refuses (" .. why .. "), expat accepts")
    end
  end
end

return M
