-- What a run of the demo job ends with.  The demo site makes one app's
-- reload in Qlik Cloud load other data (examples/demo/site.json: Accounts
-- Payable's script moves from the ERP OLE DB connection to Finance DB, a
-- changed connection), so apps.validate finds it different, fails that
-- item and the run exits 1; everything else succeeds.
local t = require "testing"

local M = {}

M.DIFFERS = "Accounts Payable"
M.NO_DATA = "Forecast Draft"   -- its forecast table is empty at the source

-- demo_outcome.ran(code, out, err [, msg]): exit 1, and the only failure
-- is apps.validate's of Accounts Payable (a re-run validates it again).
function M.ran(code, out, err, msg)
  local text = (msg and (msg .. ": ") or "") .. tostring(out) .. tostring(err or "")
  t.eq(code, 1, text)
  local item, step = false, false
  for line in tostring(out):gmatch("[^\n]+") do
    if line:find("fail", 1, true) then
      if line:find("^    apps%.validate '" .. M.DIFFERS .. "' %(") and line:find("validation differs: chart ") then
        item = true
      elseif line:match("^  apps%.validate%s+[%w ,]-1 failed$") then
        step = true
      elseif not line:match("^%s*apps%.validate%s+%d+/%d+%s+1 failed") then  -- not its progress line
        error("an unexpected failure in the demo run: " .. line .. "\n" .. text, 2)
      end
    end
  end
  t.truthy(item and step, "apps.validate fails Accounts Payable, and only it: " .. text)
end

return M
