std = "lua54"
max_line_length = 120
files["tests/"] = { read_globals = { "qmig" } }
exclude_files = { "tests/tmp/", "tests/conformance/node_modules/" }
-- A deliberately broken step module for the loader's error tests.
exclude_files[#exclude_files + 1] = "tests/lua/fixtures/broken/test/syntax.lua"
-- The bad-input corpus: broken on purpose.
exclude_files[#exclude_files + 1] = "tests/lua/fixtures/bad/"
