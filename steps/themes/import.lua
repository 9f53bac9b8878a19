-- Import Themes: uploads the zips of themes.export to Qlik
-- Cloud; a theme of the same name is adopted, never replaced.  See
-- docs/assets.md.
return require("qmig.domain.extensions").import("theme", {
  name = "themes.import",
  export = "themes.export",
})
