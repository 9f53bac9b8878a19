-- Runs the qmig-lua binary as a child process, as a user would.
local t = require "testing"
local M = {}

M.bin = os.getenv("QMIG_BIN") or "./qmig-lua"

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = shell_quote

-- M.run({args...}, {env = {K = V}}) -> exit status, stdout, stderr
function M.run(args, opts)
  opts = opts or {}
  local dir = t.tmpdir()
  local parts = {}
  for k, v in pairs(opts.env or {}) do parts[#parts + 1] = k .. "=" .. shell_quote(v) end
  parts[#parts + 1] = M.bin
  for _, a in ipairs(args) do parts[#parts + 1] = shell_quote(a) end
  local cmd = table.concat(parts, " ") .. " >" .. dir .. "/out 2>" .. dir .. "/err"
  local _, _, code = os.execute(cmd)
  return code, t.read(dir .. "/out"), t.read(dir .. "/err")
end

-- Starts the binary held at a barrier so a test can learn its pid first:
-- returns pid, release() (lets it run and waits for it, -> exit status).
function M.spawn_held(args, opts)
  local dir = t.tmpdir()
  local quoted = {}
  for _, a in ipairs(args) do quoted[#quoted + 1] = shell_quote(a) end
  -- `exec env K=V bin`: env execs the binary in turn, so the pid stays
  local vars = {}
  for k, v in pairs(opts and opts.env or {}) do vars[#vars + 1] = k .. "=" .. shell_quote(v) end
  local inner = string.format("echo $$ > %s/pid; read go; exec env %s %s %s >%s/out 2>%s/err", dir,
    table.concat(vars, " "), M.bin, table.concat(quoted, " "), dir, dir)
  local p = io.popen("sh -c " .. shell_quote(inner) .. "; echo $? > " .. dir .. "/status", "w")
  local pid
  repeat
    qmig.sleep(0.02)
    local f = io.open(dir .. "/pid")
    if f then pid = f:read("n"); f:close() end
  until pid
  return pid, function()
    p:write("go\n")
    p:close()
    return tonumber(t.read(dir .. "/status")), t.read(dir .. "/out"), t.read(dir .. "/err")
  end
end

return M
