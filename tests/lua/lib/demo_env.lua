-- The environment examples/demo/job.yaml reads (QMIG_DEMO_*), for the
-- simulator `sim` and a folder of the test's own: the data connections'
-- credentials file written there (mode 0600: qmig-lua refuses a file
-- others can read), the project in <dir>/project.  A suite adds its own
-- variables to the table it gets.
local fs = require "qmig.fs"
local t = require "testing"

local M = {}

-- M.new(sim, dir, secrets_yaml) -> env
function M.new(sim, dir, secrets)
  t.write(dir .. "/secrets.yaml", secrets)
  fs.chmod(dir .. "/secrets.yaml", 384)
  return { QMIG_DEMO_QRS_URL = sim.info.qrs_url, QMIG_DEMO_CLOUD_URL = sim.info.cloud_url,
    QMIG_DEMO_API_KEY = sim.info.api_key, QMIG_DEMO_CERTS = fs.dirname(sim.info.certs.ca),
    QMIG_DEMO_PROJECT = dir .. "/project", QMIG_DEMO_DIR = dir }
end

return M
