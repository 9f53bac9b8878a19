/*
** fuzz_job.c — bytes as a job.yaml -> require("qmig.job.file").load.
** Whatever the file holds, load returns a job or nil + a message naming
** the file + "config"; it never raises and never crashes.  Step names
** are resolved by a stub (known catalogue names resolve, others do not)
** so no step module runs inside the fuzzer; ${VARS}: only FUZZ_SET is set.
*/
#define FUZZ_NAME "fuzz_job"
#define FUZZ_LUA \
  "local job = require 'qmig.job.file'\n" \
  "local catalogue = require 'qmig.job.catalogue'\n" \
  "local dir = os.getenv('QMIG_FUZZ_TMP') or ('/tmp/qmig-fuzz-job-' .. qmig.getpid())\n" \
  "os.execute('mkdir -p ' .. dir)\n" \
  "local path = dir .. '/job.yaml'\n" \
  "local env = function(n) if n == 'FUZZ_SET' then return 'value' end end\n" \
  "local function resolve(name)\n" \
  "  if catalogue.by_name[name] then return {name = name}, '<stub>' end\n" \
  "  return nil, \"unknown step '\" .. name .. \"'\"\n" \
  "end\n" \
  "return function(s)\n" \
  "  local f = assert(io.open(path, 'wb'))\n" \
  "  f:write(s)\n" \
  "  f:close()\n" \
  "  local ok, j, msg, code = pcall(job.load, path, {env = env, resolve = resolve})\n" \
  "  if not ok then error('job.load raised: ' .. tostring(j)) end\n" \
  "  if j == nil then\n" \
  "    assert(type(msg) == 'string' and code == 'config', 'soft failure without message')\n" \
  "    assert(msg:find(path, 1, true), 'message does not name the file: ' .. msg)\n" \
  "    return\n" \
  "  end\n" \
  "  assert(type(j) == 'table' and j.file == path and type(j.jobs) == 'table', 'odd job table')\n" \
  "  assert(type(j.project) == 'table' and type(j.project.dir) == 'string', 'project without folder')\n" \
  "end\n"
#include "driver.h"
