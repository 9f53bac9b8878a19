-- A small zip writer: "stored" entries (method 0, no compression) with
-- CRC-32, which every unzip tool, Python's zipfile and Qlik read.  Entry
-- dates are fixed (1980-01-01), so the same files always give the same
-- bytes (and the same sha256): a re-export of an unchanged extension is
-- recognised.  Everything is built in memory: extensions are small.
local M = {}

local CRC_TABLE = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC_TABLE[i] = c
end

function M.crc32(data)
  local crc = 0xFFFFFFFF
  for i = 1, #data do
    crc = CRC_TABLE[(crc ~ data:byte(i)) & 0xFF] ~ (crc >> 8)
  end
  return crc ~ 0xFFFFFFFF
end

local DOS_TIME, DOS_DATE = 0, (0 << 9) | (1 << 5) | 1  -- 1980-01-01 00:00
local UTF8_FLAG = 1 << 11

-- A safe entry name: relative, forward slashes, no "." or ".." segments,
-- no drive letters.  Returns the cleaned name or nil, why.
function M.entry_name(name)
  if type(name) ~= "string" or name == "" then return nil, "empty file name" end
  local clean = name:gsub("\\", "/")
  if clean:sub(1, 1) == "/" or clean:match("^%a:") then return nil, "absolute file path '" .. name .. "'" end
  for seg in clean:gmatch("[^/]*") do
    if seg == ".." or seg == "." then return nil, "file path with '" .. seg .. "' in '" .. name .. "'" end
  end
  if clean:find("//", 1, true) or clean:sub(-1) == "/" or clean:find("%z") then
    return nil, "malformed file path '" .. name .. "'"
  end
  return clean
end

-- M.build({{name = "a/b.js", data = "..."}, ...}) -> zip bytes | nil, why
function M.build(files)
  local out, central, offset = {}, {}, 0
  local seen = {}
  for _, f in ipairs(files) do
    local name, why = M.entry_name(f.name)
    if not name then return nil, why end
    if seen[name] then return nil, "duplicate file '" .. name .. "'" end
    seen[name] = true
    local data = f.data
    if #data >= 0xFFFFFFFF or offset >= 0xFFFFFFFF then return nil, "too large for a zip without zip64" end
    local crc = M.crc32(data)
    local flags = name:find("[\128-\255]") and UTF8_FLAG or 0
    local head = string.pack("<I4I2I2I2I2I2I4I4I4I2I2", 0x04034b50, 20, flags, 0, DOS_TIME, DOS_DATE,
      crc, #data, #data, #name, 0)
    out[#out + 1] = head
    out[#out + 1] = name
    out[#out + 1] = data
    central[#central + 1] = string.pack("<I4I2I2I2I2I2I2I4I4I4I2I2I2I2I2I4I4", 0x02014b50, 20, 20, flags, 0,
      DOS_TIME, DOS_DATE, crc, #data, #data, #name, 0, 0, 0, 0, 0, offset) .. name
    offset = offset + #head + #name + #data
  end
  if #files > 0xFFFF then return nil, "too many files for a zip without zip64" end
  local cd = table.concat(central)
  out[#out + 1] = cd
  out[#out + 1] = string.pack("<I4I2I2I2I2I4I4I2", 0x06054b50, 0, 0, #files, #files, #cd, offset, 0)
  return table.concat(out)
end

-- M.list(bytes) -> {name = data} of a zip made of stored entries (for tests
-- and for checking a file on disk); nil, why otherwise.
function M.read(bytes)
  local pos, files = 1, {}
  while pos + 30 <= #bytes + 1 do
    local sig = string.unpack("<I4", bytes, pos)
    if sig ~= 0x04034b50 then break end
    local _, _, method, _, _, crc, csize, _, nlen, xlen = string.unpack("<I2I2I2I2I2I4I4I4I2I2", bytes, pos + 4)
    if method ~= 0 then return nil, "compressed entry" end
    local name = bytes:sub(pos + 30, pos + 29 + nlen)
    local data = bytes:sub(pos + 30 + nlen + xlen, pos + 29 + nlen + xlen + csize)
    if M.crc32(data) ~= crc then return nil, "bad CRC for " .. name end
    files[name] = data
    pos = pos + 30 + nlen + xlen + csize
  end
  return files
end

return M
