-- qmig-lua's Lua engine and built-in steps as a rock.  The qmig-lua host
-- (src/, `make install`) provides the C library `qmig`; this rock carries
-- the Lua side, e.g. to put a checked-out engine on a LuaRocks tree beside
-- step packs.  Install from the repository root:
--   luarocks --lua-version 5.4 make --tree TREE rockspec/qmig-lua-scm-1.rockspec
-- LuaRocks cannot list files by pattern: every file under lua/ and steps/
-- must be named below (tests/lua/test_rockspec.lua fails when one is not).
rockspec_format = "3.0"
package = "qmig-lua"
version = "scm-1"
source = { url = "git+https://example.invalid/qmig-lua.git" }
description = {
  summary = "Migrates Qlik Sense Enterprise on Windows to Qlik Cloud: the Lua engine and built-in steps",
  detailed = [[
The engine (job files, steps, cache, API clients, retries, rate limits,
report, undo) as modules qmig.*, and the built-in migration steps as
modules qmig.steps.<category>.<action>.  It runs inside the qmig-lua host,
which provides the C library `qmig` (HTTP, JSON, YAML, SQLite).
]],
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
build = {
  type = "builtin",
  modules = {
    -- the engine: lua/qmig/**
    ["qmig.apps.scope"] = "lua/qmig/apps/scope.lua",
    ["qmig.apps2.common"] = "lua/qmig/apps2/common.lua",
    ["qmig.apps2.conns"] = "lua/qmig/apps2/conns.lua",
    ["qmig.apps2.script"] = "lua/qmig/apps2/script.lua",
    ["qmig.assets.common"] = "lua/qmig/assets/common.lua",
    ["qmig.assets.extsteps"] = "lua/qmig/assets/extsteps.lua",
    ["qmig.assets.zip"] = "lua/qmig/assets/zip.lua",
    ["qmig.breaker"] = "lua/qmig/breaker.lua",
    ["qmig.cache"] = "lua/qmig/cache.lua",
    ["qmig.catalogue"] = "lua/qmig/catalogue.lua",
    ["qmig.cli"] = "lua/qmig/cli.lua",
    ["qmig.connect"] = "lua/qmig/connect.lua",
    ["qmig.clock"] = "lua/qmig/clock.lua",
    ["qmig.cloud"] = "lua/qmig/cloud.lua",
    ["qmig.cloudtasks"] = "lua/qmig/cloudtasks.lua",
    ["qmig.durable"] = "lua/qmig/durable.lua",
    ["qmig.engine"] = "lua/qmig/engine.lua",
    ["qmig.ensure"] = "lua/qmig/ensure.lua",
    ["qmig.errors"] = "lua/qmig/errors.lua",
    ["qmig.glob"] = "lua/qmig/glob.lua",
    ["qmig.identity.rules"] = "lua/qmig/identity/rules.lua",
    ["qmig.identity.scope"] = "lua/qmig/identity/scope.lua",
    ["qmig.identity.spaces"] = "lua/qmig/identity/spaces.lua",
    ["qmig.identity.users"] = "lua/qmig/identity/users.lua",
    ["qmig.job"] = "lua/qmig/job.lua",
    ["qmig.budget"] = "lua/qmig/budget.lua",
    ["qmig.limiter"] = "lua/qmig/limiter.lua",
    ["qmig.log"] = "lua/qmig/log.lua",
    ["qmig.names"] = "lua/qmig/names.lua",
    ["qmig.oauth"] = "lua/qmig/oauth.lua",
    ["qmig.overlay"] = "lua/qmig/overlay.lua",
    ["qmig.planview"] = "lua/qmig/planview.lua",
    ["qmig.preflight"] = "lua/qmig/preflight.lua",
    ["qmig.progress"] = "lua/qmig/progress.lua",
    ["qmig.project"] = "lua/qmig/project.lua",
    ["qmig.qix"] = "lua/qmig/qix.lua",
    ["qmig.qlikview.conversion"] = "lua/qmig/qlikview/conversion.lua",
    ["qmig.qlikview.engine"] = "lua/qmig/qlikview/engine.lua",
    ["qmig.qlikview.prj"] = "lua/qmig/qlikview/prj.lua",
    ["qmig.qlikview.variant"] = "lua/qmig/qlikview/variant.lua",
    ["qmig.qrs"] = "lua/qmig/qrs.lua",
    ["qmig.report"] = "lua/qmig/report.lua",
    ["qmig.retrieve"] = "lua/qmig/retrieve.lua",
    ["qmig.retry"] = "lua/qmig/retry.lua",
    ["qmig.rrule"] = "lua/qmig/rrule.lua",
    ["qmig.sched"] = "lua/qmig/sched.lua",
    ["qmig.schema"] = "lua/qmig/schema.lua",
    ["qmig.steps"] = "lua/qmig/steps.lua",
    ["qmig.undo"] = "lua/qmig/undo.lua",
    -- the built-in steps: steps/<category>/<action>.lua
    ["qmig.steps.apps.delete"] = "steps/apps/delete.lua",
    ["qmig.steps.apps.export"] = "steps/apps/export.lua",
    ["qmig.steps.apps.import"] = "steps/apps/import.lua",
    ["qmig.steps.apps.object_owners"] = "steps/apps/object_owners.lua",
    ["qmig.steps.apps.owners"] = "steps/apps/owners.lua",
    ["qmig.steps.apps.publish"] = "steps/apps/publish.lua",
    ["qmig.steps.apps.reload"] = "steps/apps/reload.lua",
    ["qmig.steps.apps.schedules"] = "steps/apps/schedules.lua",
    ["qmig.steps.apps.scripts"] = "steps/apps/scripts.lua",
    ["qmig.steps.apps.shares"] = "steps/apps/shares.lua",
    ["qmig.steps.apps.validate"] = "steps/apps/validate.lua",
    ["qmig.steps.dataconnections.delete"] = "steps/dataconnections/delete.lua",
    ["qmig.steps.dataconnections.migrate"] = "steps/dataconnections/migrate.lua",
    ["qmig.steps.extensions.export"] = "steps/extensions/export.lua",
    ["qmig.steps.extensions.import"] = "steps/extensions/import.lua",
    ["qmig.steps.post.reset_descriptions"] = "steps/post/reset_descriptions.lua",
    ["qmig.steps.post.reset_qv_descriptions"] = "steps/post/reset_qv_descriptions.lua",
    ["qmig.steps.qvapps.convert"] = "steps/qvapps/convert.lua",
    ["qmig.steps.qvapps.delete"] = "steps/qvapps/delete.lua",
    ["qmig.steps.qvapps.import"] = "steps/qvapps/import.lua",
    ["qmig.steps.qvapps.owners"] = "steps/qvapps/owners.lua",
    ["qmig.steps.qvapps.publish"] = "steps/qvapps/publish.lua",
    ["qmig.steps.qvapps.reload"] = "steps/qvapps/reload.lua",
    ["qmig.steps.qvapps.scripts"] = "steps/qvapps/scripts.lua",
    ["qmig.steps.spaces.assign"] = "steps/spaces/assign.lua",
    ["qmig.steps.spaces.create"] = "steps/spaces/create.lua",
    ["qmig.steps.spaces.delete"] = "steps/spaces/delete.lua",
    ["qmig.steps.spaces.owners"] = "steps/spaces/owners.lua",
    ["qmig.steps.tags.migrate"] = "steps/tags/migrate.lua",
    ["qmig.steps.themes.export"] = "steps/themes/export.lua",
    ["qmig.steps.themes.import"] = "steps/themes/import.lua",
    ["qmig.steps.users.delete"] = "steps/users/delete.lua",
    ["qmig.steps.users.export"] = "steps/users/export.lua",
    ["qmig.steps.users.import"] = "steps/users/import.lua",
  },
}
