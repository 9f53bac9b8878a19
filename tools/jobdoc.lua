-- Prints the job-file key reference (Markdown) from the schema in
-- lua/qmig/job/file.lua, so docs/job-file.md cannot drift from what the loader
-- accepts.  Usage: ./qmig-lua tools/jobdoc.lua > docs/job-file.md
local job = require "qmig.job.file"
local json = require "qmig.json"

local rows = {}

local function type_of(node)
  if node.kind == "enum" then return "one of " .. table.concat(node.values, ", ") end
  if node.kind == "list" then return "list of " .. type_of(node.of) end
  if node.kind == "map" then return "mapping of name → " .. type_of(node.of) end
  if node.kind == "record" then return "mapping" end
  if node.kind == "oneof" then return node.describe end
  if node.kind == "path" then
    return (node.folder and "folder" or "path") .. (node.exists and " (must exist)" or "")
      .. (node.private and ", mode 0600" or "")
  end
  if node.kind == "string" and node.secret then return "string (secret: redacted everywhere)" end
  return node.kind
end

local limits = require("qmig.rate.limiter").DEFAULTS

local function default_of(node, path)
  -- rate limits are on unless false: their defaults are the limiter's
  local tier = path:match("^options%.rate_limits%.(%w+)$")
  if tier and limits[tier] then return string.format("%d per minute", limits[tier]) end
  if path == "options.rate_limits" then return "on, the tiers' defaults" end
  if node.default == nil then return "" end
  if type(node.default) == "table" then return json.encode(node.default) end
  return tostring(node.default)
end

-- One row per key; the mapping inside a list or a oneof has no row of its
-- own (its parent's row already says what it is).
local function walk(node, path, own_row)
  if path ~= "" and own_row then
    rows[#rows + 1] = string.format("| `%s` | %s | %s | %s |", path, type_of(node), node.required and "yes" or "",
      default_of(node, path))
  end
  if node.kind == "record" then
    local names = {}
    for name in pairs(node.fields) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do walk(node.fields[name], path == "" and name or (path .. "." .. name), true) end
  elseif node.kind == "list" and node.of.kind == "record" then
    walk(node.of, path .. "[]", false)
  elseif node.kind == "map" and node.of.kind == "record" then
    walk(node.of, path .. ".<name>", false)
  elseif node.kind == "oneof" then
    for _, option in ipairs(node.options) do
      if option.kind == "record" then walk(option, path, false) end
    end
  end
end

walk(job.schema, "", false)
-- a step pack's sections: their schema is the pack's (lua/qmig/job/packopts.lua)
local last_plan
for i, row in ipairs(rows) do if row:find("^| `plan%.") then last_plan = i end end
table.insert(rows, last_plan + 1, "| `plan.<category>` | mapping: a step pack's own options, checked against the "
  .. "`options` its steps of that category declare (docs/steps.md) |  |  |")
print([[
# Job file reference

Generated from the schema in `lua/qmig/job/file.lua` by `tools/jobdoc.lua`; a test
checks it is current.  A job file is YAML (or a `.lua` file returning the same
table).  `${NAME}` in any string reads the environment (`$${` is a literal
`${`); an unset variable is an error.  Relative paths are relative to the job
file.  Unknown keys, wrong types and unknown steps are reported with
file:line before anything is contacted.  See `examples/demo/job.yaml`.

| key | type | required | default |
|---|---|---|---|]])
print(table.concat(rows, "\n"))
print([[

## Rate limits

Qlik Cloud limits requests per rate tier, per user, and counts them over a
5-minute window: [qlik.dev's rate limiting](https://qlik.dev/apis/rest/rate-limiting)
says tier 1 (1,000 per min) and tier 2 (100 per min) are "evaluated over a
5-minute window to support bursts of requests", and the
[reloads changelog](https://qlik.dev/changelog/108-api-ratelimit-reloads) meters
`POST /reloads` the same way ("up to 250 requests within that window" at 50
per min). So a tier allows 5 minutes' worth of requests at once, and no
more than that in any 5 minutes. qmig-lua does the same at 95 % of each
limit: a tier's first requests go out without waiting up to 95 % of its
window's worth (475 writes at tier 2's 100 per min), none goes beyond that
within any 5 minutes, and over longer runs the tier holds 95 % of its rate
per minute. A tier answering 429 waits out its `Retry-After` (Qlik blocks
the whole tier), and processes on one machine acting as the same identity
share the tiers and their windows. Unless `options.rate_limits` says
otherwise (`false`: no limiting):

| tier | requests | default per minute |
|---|---|---|
| `tier1` | reads (GET) | ]] .. limits.tier1 .. [[ |
| `tier2` | writes (POST, PUT, PATCH, DELETE) | ]] .. limits.tier2 .. [[ |
| `special` | reloads (`/reloads`, including the polls) | ]] .. limits.special .. [[ |

The progress line shows each tier's rate against its limit (`tier2 95/100 per
min`); a run that spent most of its time waiting for them ends with a hint.

## Authenticating to the target

Give exactly one of `target.api_key` and `target.oauth`.

- `api_key`: a Qlik Cloud API key, sent as `Authorization: Bearer`. It acts
  with the roles of the user who made it.
- `oauth`: an OAuth client of type web with machine-to-machine allowed
  (Administration > OAuth), as `{client_id, client_secret}`; the secret may
  come from `${VAR}` or from `client_secret_file`, a file of mode 0600.
  `scope` defaults to `admin_classic` (a migration needs admin rights); it
  must be allowed on the client.  The token comes from
  `POST <target.url>/oauth/token` (grant `client_credentials`), serves
  every request of the run, and is fetched again before it expires (its
  lifetime is `expires_in`, else `expires_at` measured against the
  tenant's own `Date` header, else Qlik's default of 6 hours) and once
  after a 401; a second 401 stops the run with exit status 3.

`qmig-lua check` says which one is used and, for OAuth, how long the token is
valid.  Keys, secrets and tokens never reach a log, the cache, a report or a
message.]])
