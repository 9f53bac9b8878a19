-- Update QlikView Application Scripts: apps.scripts (connection mapping,
-- plan.scripts.replace, the script hook, backups in backups/scripts/,
-- restore on undo) on the apps qvapps.import made (qmig.domain.qlikview.variant).
local variant = require "qmig.domain.qlikview.variant"

return variant.of(require "qmig.steps.apps.scripts", {
  name = "qvapps.scripts", object = "qvapp.script",
  requires = { "qvapps.import" },
})
