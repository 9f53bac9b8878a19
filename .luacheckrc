std = "lua54"
max_line_length = 120
files["tests/"] = { read_globals = { "qmig" } }
exclude_files = { "tests/tmp/", "tests/conformance/node_modules/" }
