-- What the NPrinting steps work on: the NPrinting apps plan.nprinting.apps
-- names (globs; none = all), and how an NPrinting app reaches the Cloud.
-- An NPrinting app reads QSEoW apps through its Qlik Sense connections
-- (each names one QSEoW app); the Cloud app for a QSEoW app is the one
-- apps.import (and apps.publish) recorded: ctx.app_for.
local client = require "qmig.domain.nprinting.client"
local glob = require "qmig.job.glob"

local M = {}

function M.client(ctx) return client.for_job(ctx.job) end

local function plan(ctx)
  return ctx.plan and ctx.plan.nprinting or {}
end

-- The NPrinting apps in scope, sorted by name.
function M.apps(ctx)
  local out = {}
  for _, app in ipairs(M.client(ctx):list("apps")) do
    if glob.any(plan(ctx).apps, app.name, true) then out[#out + 1] = app end
  end
  table.sort(out, function(a, b) return a.name < b.name or (a.name == b.name and a.id < b.id) end)
  return out
end

-- connection id -> {connection, qs_app (QSEoW app id), target (Cloud app id or nil)}.
function M.connections(ctx, app)
  local out = {}
  for _, c in ipairs(M.client(ctx):list("connections", { appId = app.id })) do
    if c.appId == app.id then
      local qs = type(c.qlikSenseAppId) == "string" and c.qlikSenseAppId ~= "" and c.qlikSenseAppId or nil
      out[c.id] = { connection = c, qs_app = qs, target = qs and ctx.app_for(qs) or nil }
    end
  end
  return out
end

-- Does a report pass plan.nprinting.reports (globs on titles) and .tags?
function M.report_in_scope(ctx, report)
  local p = plan(ctx)
  if not glob.any(p.reports, report.title, true) then return false end
  if p.tags and #p.tags > 0 then
    for _, tag in ipairs(report.tags or {}) do
      local name = type(tag) == "table" and tag.name or tag
      if glob.any(p.tags, name, false) then return true end
    end
    return false
  end
  return true
end

return M
