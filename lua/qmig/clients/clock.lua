-- Times as the tenant writes them.  ISO 8601 and HTTP dates to seconds
-- since the epoch, so that times from two clocks (this machine's and the
-- tenant's) are compared as numbers, never as strings, and with the
-- difference between the clocks taken out (Cloud clients measure it from
-- each reply's Date header).
local M = {}

-- Days since 1970-01-01 of a date (proleptic Gregorian calendar).
function M.days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- "2026-12-03T10:00:00.250Z" / "...+01:00" / no zone (UTC) -> epoch
-- seconds (with the fraction), or nil.
function M.parse_iso(text)
  if type(text) ~= "string" then return nil end
  local y, mo, d, h, mi, s, rest = text:match("^(%d%d%d%d)-(%d%d)-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  local frac = rest:match("^%.(%d+)")
  rest = rest:gsub("^%.%d+", "")
  local offset = 0
  if rest ~= "" and rest ~= "Z" and rest ~= "z" then
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  return M.days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s) - offset
    + (frac and tonumber("0." .. frac) or 0)
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8, Sep = 9, Oct = 10,
  Nov = 11, Dec = 12 }

-- An HTTP Date header ("Thu, 03 Dec 2026 10:00:00 GMT") -> epoch seconds.
function M.parse_http_date(text)
  if type(text) ~= "string" then return nil end
  local d, mon, y, h, mi, s = text:match("^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not MONTHS[mon] then return nil end
  return M.days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

return M
