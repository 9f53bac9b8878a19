# qmig-lua — build, test, install.  See README.md.
PREFIX    ?= /usr/local
PKGS      := lua5.4 libcurl sqlite3 yaml-0.1 lua5.4-cjson libcrypto xlsxwriter expat
CC        ?= cc
CSTD      := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
OPT       ?= -O2 -g
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS    += $(CSTD) $(WARN) $(OPT) $(PKG_CFLAGS) -DQMIG_PREFIX='"$(PREFIX)"'
LDLIBS    += $(PKG_LIBS) -lm -pthread

BUILD     ?= build
SRCS      := $(wildcard src/*.c)
OBJS      := $(SRCS:src/%.c=$(BUILD)/%.o)
BIN       := qmig-lua

.PHONY: all deps demo-deps test asan test-asan install clean lint demo memcheck soak
all: $(BIN)

$(BUILD)/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD):
	mkdir -p $@

$(BIN): $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

# C-level tests, linked with every host object but main.o.
TEST_C := $(BUILD)/test_host
$(TEST_C): tests/c/test_host.c $(filter-out $(BUILD)/main.o,$(OBJS))
	$(CC) $(CFLAGS) -Isrc $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Debian packages the build, the linters and the tests need; installs only
# what is missing.  chromium (large) is for the report's browser test only.
# The demo needs only the first line (build and simulator): `make demo`
# checks those alone, so it works offline and without npm once they are in.
DEMO_PKGS := build-essential pkg-config liblua5.4-dev lua5.4 libcurl4-openssl-dev \
            libsqlite3-dev libyaml-dev lua-cjson-dev libssl-dev libxlsxwriter-dev libexpat1-dev openssl python3
DEB_PKGS := $(DEMO_PKGS) lua-check luarocks cppcheck clang-tidy shellcheck valgrind chromium
demo-deps:
	@missing=$$(for p in $(DEMO_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "all build dependencies present"; fi
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	@# The @qlik/api conformance test's pinned npm packages (from the lockfile).
	@if [ ! -d tests/conformance/node_modules ] && [ -f tests/conformance/package-lock.json ]; then \
	  npm ci --prefix tests/conformance --no-audit --no-fund; fi
	@# The report's browser test: playwright-core driving Debian's chromium.
	@if [ ! -d tests/browser/node_modules ] && [ -f tests/browser/package-lock.json ]; then \
	  npm ci --prefix tests/browser --no-audit --no-fund; fi

test: $(BIN) $(TEST_C)
	tests/run

# The demo migration against the bundled simulator (see examples/demo/).
demo: demo-deps $(BIN)
	examples/demo/run.sh

# ASan + UBSan build in its own folder so it never mixes with the normal objects.
asan:
	$(MAKE) BUILD=build-asan BIN=qmig-lua-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined"

# The sanitizers exit with their own status, SANITIZER_EXIT, never 1 (which
# is also qmig-lua's "some objects failed"): the test helpers fail any child
# that returns it, whatever status the test expected.
SANITIZER_EXIT := 86
SAN_ENV := ASAN_OPTIONS=exitcode=$(SANITIZER_EXIT):detect_leaks=1:abort_on_error=0 \
           LSAN_OPTIONS=exitcode=$(SANITIZER_EXIT) \
           UBSAN_OPTIONS=halt_on_error=1:exitcode=$(SANITIZER_EXIT):print_stacktrace=1 \
           QMIG_SANITIZER_EXIT=$(SANITIZER_EXIT)
test-asan: asan
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined" build-asan/test_host
	$(SAN_ENV) QMIG_BIN=./qmig-lua-asan QMIG_TEST_C=build-asan/test_host QMIG_SANITIZED=1 tests/run

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/qmig-lua
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/$(BIN)
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 docs/qmig-lua.1 $(DESTDIR)$(PREFIX)/share/man/man1/qmig-lua.1
	cp -R lua $(DESTDIR)$(PREFIX)/share/qmig-lua/
	if [ -d steps ]; then cp -R steps $(DESTDIR)$(PREFIX)/share/qmig-lua/; fi

# Lint: Lua, the C host (cppcheck, clang-tidy with .clang-tidy), the shell
# scripts; each must be clean.  cppcheck reads no system header (its
# --library files describe libc, Lua, curl, SQLite and OpenSSL instead), so
# the multiarch folder pkg-config gives for curl is left out, and LLONG_MAX,
# which luaconf.h takes from <limits.h>, is given.
MULTIARCH     := $(shell $(CC) -print-multiarch 2>/dev/null)
CPPCHECK_INC   = $(filter-out -I/usr/include/$(MULTIARCH),$(shell pkg-config --cflags-only-I $(PKGS) 2>/dev/null))
CPPCHECK_FLAGS = -q --error-exitcode=1 --enable=warning,performance,portability --inline-suppr --std=c11 \
                 --library=posix,gnu,lua,libcurl,sqlite3,openssl -DLLONG_MAX=9223372036854775807LL \
                 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(CPPCHECK_INC)
SHELL_SCRIPTS := tests/run .ci/run examples/demo/run.sh $(wildcard bench/*.sh) $(wildcard tools/*.sh)
lint: | $(BUILD)
	luacheck -q lua steps tools tests/lua examples
	cppcheck $(CPPCHECK_FLAGS) $(SRCS)
	@# (without clang's "N warnings generated": those are in system headers, never shown)
	@echo clang-tidy --quiet $(SRCS)
	@clang-tidy --quiet $(SRCS) -- $(CSTD) $(PKG_CFLAGS) -DQMIG_PREFIX='"$(PREFIX)"' >$(BUILD)/clang-tidy.log 2>&1; \
	  rc=$$?; grep -v -E '^[0-9]+ warnings? generated\.$$' $(BUILD)/clang-tidy.log; exit $$rc
	shellcheck $(SHELL_SCRIPTS)

clean:
	rm -rf build build-asan $(BIN) qmig-lua-asan

# {====== fuzzing (libFuzzer; tests/fuzz/README.md)
# Harnesses in tests/fuzz/ link every host object but main.o, built with
# clang -fsanitize=fuzzer-no-link,address,undefined in build-fuzz/.
# `make fuzz` runs each for FUZZ_SECONDS (60), `make fuzz-quick` (CI) for
# FUZZ_QUICK_RUNS inputs (3000), counted, not timed: 5 s on a busy CI
# machine once gave a harness 896 inputs; FUZZ_QUICK_SECONDS (120) only
# bounds a hang.  A harness that executes fewer than FUZZ_MIN_EXECS inputs
# (1000: one that hangs or stops at once) fails the target.
# New inputs go to build-fuzz/corpus/<name>, the
# seeds in tests/fuzz/corpus/<name> are only read; a crash leaves
# build-fuzz/crash-<name>-* and fails the target.
FUZZ_CC       ?= clang
FUZZ_BUILD    := build-fuzz
FUZZ_NAMES    := fuzz_yaml fuzz_json fuzz_job fuzz_qrs_filter fuzz_ws fuzz_xml
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS    = $(CSTD) $(WARN) -Wno-strict-prototypes -O1 -g $(FUZZ_SAN) $(PKG_CFLAGS) -DQMIG_PREFIX='"$(PREFIX)"'
FUZZ_OBJS     := $(filter-out $(FUZZ_BUILD)/main.o,$(SRCS:src/%.c=$(FUZZ_BUILD)/%.o))
FUZZ_BINS     := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/%)
FUZZ_SECONDS       ?= 60
FUZZ_QUICK_SECONDS ?= 120
FUZZ_QUICK_RUNS    ?= 3000
FUZZ_MIN_EXECS     ?= 1000
FUZZ_FLAGS    ?= -max_len=65536 -rss_limit_mb=2048 -timeout=20
.PHONY: fuzz fuzz-quick fuzz-build fuzz-deps
.SECONDARY: $(FUZZ_OBJS)

$(FUZZ_BUILD)/%.o: src/%.c $(wildcard src/*.h) | $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/driver.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc -DQMIG_FUZZ_HOME='"$(CURDIR)"' -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) $(PKG_LIBS) -lm -pthread

$(FUZZ_BUILD):
	mkdir -p $@

# clang and its libFuzzer runtime (Debian: clang, libclang-rt-14-dev), installed when missing.
fuzz-deps:
	@missing=$$(for p in clang libclang-rt-14-dev; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

fuzz-build: fuzz-deps
	$(MAKE) $(FUZZ_BINS)

# fuzz_run(seconds, runs): every harness in turn, until the time or the
# number of inputs (-1: no limit) is reached; stops at the first crash.
define fuzz_run
	@set -e; for n in $(FUZZ_NAMES); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	  echo "=== $$n (up to $(1) s, $(2) inputs)"; \
	  QMIG_FUZZ_TMP=$(CURDIR)/$(FUZZ_BUILD)/tmp $(FUZZ_BUILD)/$$n $(FUZZ_FLAGS) -max_total_time=$(1) -runs=$(2) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/crash-$$n- $(FUZZ_BUILD)/corpus/$$n tests/fuzz/corpus/$$n \
	    2>$(FUZZ_BUILD)/$$n.log || { tail -n 40 $(FUZZ_BUILD)/$$n.log; exit 1; }; \
	  execs=$$(sed -n -E 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' $(FUZZ_BUILD)/$$n.log | tail -n 1); \
	  echo "stat::number_of_executed_units: $${execs:-none}"; \
	  [ "$${execs:-0}" -ge $(FUZZ_MIN_EXECS) ] || { echo "$$n: fewer than $(FUZZ_MIN_EXECS) inputs executed"; \
	    tail -n 40 $(FUZZ_BUILD)/$$n.log; exit 1; }; \
	done
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS),-1)

fuzz-quick: fuzz-build
	$(call fuzz_run,$(FUZZ_QUICK_SECONDS),$(FUZZ_QUICK_RUNS))
# }======

# valgrind memcheck over the demo: check, plan, the whole migration, a second
# plan and undo, each under valgrind; any memory error or leak (definite,
# indirect or possible) fails the target (exit 9).
memcheck: $(BIN)
	rm -rf build/memcheck
	QMIG_DEMO_DIR=$(CURDIR)/build/memcheck QMIG_DEMO_COMMANDS=1 \
	QMIG_DEMO_WRAP="valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible --show-leak-kinds=definite,indirect,possible" \
	  examples/demo/run.sh

# {====== benchmark (bench/README.md): SPEC §9 "Speed" figures in one table.
# `make bench` is the full site (2000 apps...; long: the concurrency-1 run
# alone is ~70k requests at 20 ms), `make bench-quick` a small one (< 2 min).
# BENCH_ARGS passes options to bench/bench.py (--only 1,4, --curl-max N, --work DIR).
.PHONY: bench bench-quick
bench: $(BIN)
	python3 bench/bench.py --bin ./$(BIN) $(BENCH_ARGS)

bench-quick: $(BIN)
	python3 bench/bench.py --quick --bin ./$(BIN) $(BENCH_ARGS)
# }======

# The slow reliability tests: the demo job under injected faults, and killed
# (SIGKILL, SIGINT) at seeded random moments then resumed.
soak: $(BIN)
	QMIG_SOAK=1 ./$(BIN) tests/lua/runner.lua tests/lua/test_soak.lua
