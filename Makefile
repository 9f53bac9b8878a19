# qmig-lua — build, test, install.  See README.md.
PREFIX    ?= /usr/local
PKGS      := lua5.4 libcurl sqlite3 yaml-0.1 lua5.4-cjson libcrypto
CC        ?= cc
CSTD      := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
OPT       ?= -O2 -g
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS    += $(CSTD) $(WARN) $(OPT) $(PKG_CFLAGS) -DQMIG_PREFIX='"$(PREFIX)"'
LDLIBS    += $(PKG_LIBS) -lm

BUILD     ?= build
SRCS      := $(wildcard src/*.c)
OBJS      := $(SRCS:src/%.c=$(BUILD)/%.o)
BIN       := qmig-lua

.PHONY: all deps test asan test-asan install clean lint demo
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

# Debian packages the build and the tests need; installs only what is missing.
DEB_PKGS := build-essential pkg-config liblua5.4-dev lua5.4 libcurl4-openssl-dev \
            libsqlite3-dev libyaml-dev lua-cjson-dev libssl-dev openssl python3 lua-check
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

test: $(BIN) $(TEST_C)
	tests/run

# The demo migration against the bundled simulator (see examples/demo/).
demo: deps $(BIN)
	examples/demo/run.sh

# ASan + UBSan build in its own folder so it never mixes with the normal objects.
asan:
	$(MAKE) BUILD=build-asan BIN=qmig-lua-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined"

test-asan: asan
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined" build-asan/test_host
	QMIG_BIN=./qmig-lua-asan QMIG_TEST_C=build-asan/test_host QMIG_SANITIZED=1 tests/run

install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/qmig-lua
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/$(BIN)
	cp -R lua $(DESTDIR)$(PREFIX)/share/qmig-lua/
	if [ -d steps ]; then cp -R steps $(DESTDIR)$(PREFIX)/share/qmig-lua/; fi

lint:
	luacheck -q lua tests/lua

clean:
	rm -rf build build-asan $(BIN) qmig-lua-asan
