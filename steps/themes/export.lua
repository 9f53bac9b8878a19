-- Export Themes: every non-bundled theme of the QSEoW site
-- becomes a zip in <project>/exports/themes/, built from the files the QRS
-- serves at /extensions/<name>/<file>.  See docs/assets.md.
return require("qmig.domain.extensions").export("theme", {
  name = "themes.export",
})
