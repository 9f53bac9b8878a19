-- The demo job names its QlikView share and the charts' exports relative
-- to examples/demo (where its job file is); a suite that copies the job
-- file elsewhere names them by absolute path instead.
local fs = require "qmig.fs"

local M = {}

M.LINE = "qlikview: {folder: qlikview, exports: qlikview-exports}"

-- absolute(job_text) -> the job text with the share's folders absolute.
function M.absolute(text)
  local line = string.format("qlikview: {folder: '%s', exports: '%s'}", fs.realpath("examples/demo/qlikview"),
    fs.realpath("examples/demo/qlikview-exports"))
  local out, n = text:gsub(M.LINE:gsub("%p", "%%%0"), (line:gsub("%%", "%%%%")))
  assert(n == 1, "the demo job's QlikView line changed: " .. M.LINE)
  return out
end

return M
