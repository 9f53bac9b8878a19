-- qmig.hash: SHA-256 and HMAC-SHA-256 (known vectors from FIPS 180-2 and
-- RFC 4231), streaming file hashes, the incremental object.
local t = require "testing"
local hash = require "qmig.hash"

local T = t.suite("hash")

local EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
local ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
local MILLION_A = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

T.test("sha256 known vectors, lowercase hex", function()
  t.eq(hash.sha256(""), EMPTY)
  t.eq(hash.sha256("abc"), ABC)
  t.eq(hash.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
  t.eq(hash.sha256(("a"):rep(1000000)), MILLION_A)
  t.truthy(hash.sha256("a\0b") ~= hash.sha256("a"), "bytes after a NUL count")
  t.raises("bad argument", hash.sha256, {})
end)

T.test("hmac_sha256 (RFC 4231 cases 1, 2 and 6)", function()
  t.eq(hash.hmac_sha256(("\x0b"):rep(20), "Hi There"),
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
  t.eq(hash.hmac_sha256("Jefe", "what do ya want for nothing?"),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
  t.eq(hash.hmac_sha256(("\xaa"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First"),
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
end)

T.test("sha256_file streams and returns the size", function()
  local dir = t.tmpdir()
  local data = ("a"):rep(1000000)
  t.write(dir .. "/m", data)
  local hex, size = hash.sha256_file(dir .. "/m")
  t.eq(hex, MILLION_A)
  t.eq(size, 1000000)
  t.write(dir .. "/e", "")
  t.eq({ hash.sha256_file(dir .. "/e") }, { EMPTY, 0 })
  local ok, msg, code = hash.sha256_file(dir .. "/missing")
  t.eq(ok, nil)
  t.match(msg, "missing: No such file or directory")
  t.eq(code, 2)
  ok, msg, code = hash.sha256_file(dir)
  t.eq(ok, nil)
  t.match(msg, "Is a directory")
  t.eq(code, 21)
end)

T.test("incremental hash equals the one-shot one; hex can be read repeatedly", function()
  local h = hash.sha256_new()
  t.eq(h:hex(), EMPTY)
  t.truthy(rawequal(h:update("a"), h), "update chains")
  h:update("b"):update("c")
  t.eq(h:hex(), ABC)
  t.eq(h:hex(), ABC)
  h:update("dbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
  t.eq(h:hex(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
  local chunked = hash.sha256_new()
  for _ = 1, 1000 do chunked:update(("a"):rep(1000)) end
  t.eq(chunked:hex(), MILLION_A)
  t.eq(tostring(h), "qmig.Sha256")
  t.eq(getmetatable(h).__name, "qmig.Sha256")
  getmetatable(h).__gc(h)
  t.eq(tostring(h), "qmig.Sha256 (freed)")
  t.raises("freed hash", h.update, h, "x")
end)

return T
