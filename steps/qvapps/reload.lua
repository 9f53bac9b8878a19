-- Reload QlikView Applications: apps.reload (POST /reloads, followed to
-- its end; a lost attempt's reload is found again) on the app of each
-- imported QlikView document (qmig.domain.qlikview.variant): its published copy
-- once qvapps.publish made one.
local variant = require "qmig.domain.qlikview.variant"

return variant.of(require "qmig.steps.apps.reload", {
  name = "qvapps.reload", object = "qvapp.reload",
  requires = { "qvapps.import" },
  items = function(ctx) return variant.documents(ctx) end,
})
