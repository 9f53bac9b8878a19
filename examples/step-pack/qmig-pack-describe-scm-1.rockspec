-- An example qmig-lua step pack: one new step, installed as a rock.
rockspec_format = "3.0"
package = "qmig-pack-describe"
version = "scm-1"
source = { url = "git+https://example.invalid/qmig-pack-describe.git" }
description = {
  summary = "qmig-lua step pack: describe each migrated space with where it came from",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
build = {
  type = "builtin",
  modules = {
    ["qmig.steps.spaces.describe"] = "qmig/steps/spaces/describe.lua",
  },
}
