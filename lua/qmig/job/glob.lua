-- Globs of the plan (stream, app, connection names): `*` any run of
-- characters, `?` one UTF-8 character, everything else literal;
-- case-insensitive.  One definition for every step.
local M = {}

-- glob -> anchored, lower-case Lua pattern.
local function pattern(glob)
  local out = { "^" }
  for c in tostring(glob):lower():gmatch(utf8.charpattern) do
    if c == "*" then out[#out + 1] = ".*"
    elseif c == "?" then out[#out + 1] = utf8.charpattern
    elseif #c == 1 and c:match("%p") then out[#out + 1] = "%" .. c
    else out[#out + 1] = c end
  end
  out[#out + 1] = "$"
  return table.concat(out)
end

function M.match(glob, text)
  if type(text) ~= "string" then return false end
  return text:lower():find(pattern(glob)) ~= nil
end

-- M.any(globs, text, if_empty): text matches one of globs; an empty or
-- absent list answers if_empty (plans differ: "no filter" or "nothing").
function M.any(globs, text, if_empty)
  if globs == nil or #globs == 0 then return if_empty end
  for _, g in ipairs(globs) do
    if M.match(g, text) then return true end
  end
  return false
end

return M
