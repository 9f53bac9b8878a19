-- Import Extensions: uploads the zips of extensions.export to Qlik
-- Cloud; a extension of the same name is adopted, never replaced.  See
-- docs/assets.md.
return require("qmig.domain.extensions").import("extension", {
  name = "extensions.import",
  export = "extensions.export",
})
