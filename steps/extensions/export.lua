-- Export Extensions: every non-bundled extension of the QSEoW site
-- becomes a zip in <project>/exports/extensions/, built from the files the QRS
-- serves at /extensions/<name>/<file>.  See docs/assets.md.
return require("qmig.domain.extensions").export("extension", {
  name = "extensions.export",
})
