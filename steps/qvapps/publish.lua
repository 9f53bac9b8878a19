-- Publish QlikView Applications: apps.publish (moved into its managed
-- space, found again there) for the documents whose folder
-- plan.qlikview.publish maps to a managed space (qvapps.import resolved
-- it: the app's record has bound_for); the others stay where qvapps.import
-- put them (qmig.domain.qlikview.variant).
local variant = require "qmig.domain.qlikview.variant"

return variant.of(require "qmig.steps.apps.publish", {
  name = "qvapps.publish", object = "qvapp.published",
  requires = { "qvapps.import" },
})
