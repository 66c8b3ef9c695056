# hero: one hand-written GNU Makefile.
#   make            build build/hero and build/hero-init
#   make deps       install every Debian package the build and the tests need
#   make check      run every test; ends with "N passed, M failed"
#   make demo       run the offline example playbook
#   make fuzz       run the libFuzzer targets (HeroScript front end, HTTP client) for FUZZ_SECONDS each
#   make install    PREFIX=/usr/local DESTDIR=
#
# Generated files policy: the lexer (re2c) and the parser (lemon) are generated at
# build time into build/gen and never committed. re2c and lemon come from `make deps`.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
CFLAGS  ?= -O2 -g
BUILD   ?= build
GEN     := $(BUILD)/gen
VERSION := 0.1.0

HERO_CFLAGS := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -I. -I$(GEN) \
               -DHERO_VERSION='"$(VERSION)"'
# libcurl, libarchive's writer and libnftables are not linked: hero loads them when
# it first calls them (runtime/lazylib.c), which spares every run some 40 shared
# libraries. The rest is linked statically where Debian ships the archive (libmnl
# has none): loading and relocating six shared libraries cost every hero process
# ~2 ms, a third of `hero --version` (6.4 -> 4.2 ms). libarchive.a gives hero its tar
# reader and gzip and zstd decompressors alone (what layer.c calls), so that a pull
# does not open the shared libarchive and its 15 libraries. Their symbols are not
# exported, so a library loaded later (libcurl -> libssl -> libcrypto.so, or
# libarchive.so for an export) binds to its own copies.
LIBS := -Wl,-Bstatic -luv_a -lsqlite3 -ljansson -lyaml -larchive -lzstd -lz -lcrypto \
        -Wl,-Bdynamic -lmnl -lm -ldl -lpthread
# The unit tests build tars with libarchive's writer: they link the shared libarchive
# (reader and all) instead.
TEST_LIBS := $(filter-out -larchive,$(LIBS)) -larchive

LEMPAR := /usr/share/lemon/lempar.c

GRAMMAR_SRCS := grammar/source.c grammar/diag.c grammar/parse.c grammar/load.c grammar/format.c
RUNTIME_SRCS := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
ACTION_SRCS  := $(wildcard actions/*.c actions/core/*.c actions/heropods/*.c)
# (actions/heropods/init/ is hero-init, a program of its own, not part of libhero)
LIB_SRCS     := $(GRAMMAR_SRCS) $(RUNTIME_SRCS) $(ACTION_SRCS)
GEN_SRCS     := $(GEN)/lexer.c $(GEN)/parser.c

LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) \
            $(BUILD)/obj/gen/lexer.o $(BUILD)/obj/gen/parser.o

# Every Debian 12 package the build, the tests and the benchmarks need, now and for
# the modules that come next (registry client, state store, netlink, overlay).
DEPS_PKGS := build-essential pkg-config re2c lemon clang libclang-rt-14-dev \
  libuv1-dev libcurl4-openssl-dev libyaml-dev libsqlite3-dev libjansson-dev \
  libarchive-dev libssl-dev libzstd-dev zlib1g-dev libmnl-dev libnftables-dev \
  crun busybox-static docker-registry umoci skopeo podman yggdrasil \
  iproute2 nftables iptables bats man-db groff-base valgrind hyperfine sqlite3

FUZZ_SECONDS ?= 60

.PHONY: all deps check demo fuzz install clean unit golden integration bench bench-parse \
        bench-lifecycle bench-net bench-pull man cgroup-fix
all: $(BUILD)/hero $(BUILD)/hero-init $(BUILD)/man/hero.1 $(BUILD)/man/hero-pods.1 \
     $(BUILD)/man/heroscript.5

$(GEN)/parser.c $(GEN)/parser.h: grammar/parser.y
	@mkdir -p $(GEN)
	lemon -q -d$(GEN) -T$(LEMPAR) $<
	@touch $(GEN)/parser.c $(GEN)/parser.h

$(GEN)/lexer.c: grammar/lexer.re $(GEN)/parser.h
	@mkdir -p $(GEN)
	re2c -W -Werror --no-generation-date --no-version -o $@ $<

$(BUILD)/obj/gen/%.o: $(GEN)/%.c grammar/parse_int.h grammar/heroscript.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(HERO_CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.c $(GEN)/parser.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(HERO_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libhero.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/hero: $(BUILD)/obj/runtime/main.o $(BUILD)/libhero.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)
	@# libarchive's writer and disk reader come from the shared library (hero_ar_*,
	@# runtime/lazylib.c); a direct call would link libarchive.a's copy instead
	@if nm $@ | grep -qE ' T (archive_write_new|archive_read_disk_new)$$'; then \
	    echo "$@: calls libarchive's writer or disk reader directly; use hero_ar_* (runtime/lazylib.h)" >&2; \
	    rm -f $@; exit 1; fi

# ---- manual pages: the ACTIONS section of heroscript(5) comes from the table ----
$(BUILD)/man/%.1: man/%.1
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/man/heroscript.5: man/heroscript.5.in $(BUILD)/hero
	@mkdir -p $(dir $@)
	$(BUILD)/hero actions --roff > $@.actions
	awk -v f=$@.actions '/^\.\\" @ACTIONS@$$/ { while ((getline l < f) > 0) print l; next } { print }' $< > $@
	rm -f $@.actions

man: $(BUILD)/man/hero.1 $(BUILD)/man/hero-pods.1 $(BUILD)/man/heroscript.5

# ---- set-up: idempotent; apt-get update only when something is missing ----
deps:
	@missing=$$(for p in $(DEPS_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all packages present"; fi

# ---- tests ----
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libhero.a tests/unit/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(HERO_CFLAGS) -o $@ $< $(BUILD)/libhero.a $(TEST_LIBS)

# Test fixtures: small programs the tests run (servers on loopback, builders).
FIXTURE_SRCS := $(wildcard tests/fixtures/*.c)
FIXTURE_BINS := $(patsubst tests/fixtures/%.c,$(BUILD)/fixtures/%,$(FIXTURE_SRCS))

$(BUILD)/fixtures/%: tests/fixtures/%.c $(BUILD)/libhero.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(HERO_CFLAGS) -o $@ $< $(BUILD)/libhero.a $(LIBS)

unit: $(UNIT_BINS) $(FIXTURE_BINS)

$(BUILD)/fuzz_parse: $(LIB_SRCS) $(GEN_SRCS) tests/fuzz/fuzz_parse.c tests/fuzz/build.sh
	tests/fuzz/build.sh $@

$(BUILD)/fuzz_http: $(LIB_SRCS) $(GEN_SRCS) tests/fuzz/fuzz_http.c tests/fuzz/build.sh
	tests/fuzz/build.sh $@

check: deps all unit $(BUILD)/fuzz_parse $(BUILD)/fuzz_http cgroup-fix
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SEED=$${FUZZ_SEED:-20261122} tests/run $(BUILD)

fuzz: $(BUILD)/fuzz_parse $(BUILD)/fuzz_http
	tests/fuzz/run $(BUILD)/fuzz_parse $(FUZZ_SECONDS)
	tests/in-netns tests/fuzz/run $(BUILD)/fuzz_http $(FUZZ_SECONDS)

demo: deps all cgroup-fix
	$(BUILD)/hero run examples/hello.heroscript

# crun refuses cgroup v1/v2 hybrid machines where a controller is left on the v2
# side (these Debian VMs leave hugetlb there): mount it on v1, once per boot. Does
# nothing on pure cgroup v2 or when already done. See ../shared/testing.md.
cgroup-fix:
	@c=/sys/fs/cgroup/unified/cgroup.controllers; \
	if [ -s $$c ] && [ "$$(id -u)" = 0 ]; then \
	  for ctl in $$(cat $$c); do \
	    echo "make cgroup-fix: moving the $$ctl controller to cgroup v1 (crun refuses hybrid mode otherwise)"; \
	    mkdir -p /sys/fs/cgroup/$$ctl && mount -t cgroup -o $$ctl cgroup /sys/fs/cgroup/$$ctl || exit 1; \
	  done; \
	fi

# ---- benchmarks (not tests: they print figures and ratios) ----
$(BUILD)/bench_parse: bench/parse/bench_parse.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o $@ $<

bench-parse: all $(BUILD)/bench_parse
	$(BUILD)/bench_parse --hero $(BUILD)/hero

bench-lifecycle: all
	bench/lifecycle/run --hero $(BUILD)/hero

$(BUILD)/bench_net: bench/net/bench_net.c $(BUILD)/libhero.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(HERO_CFLAGS) -o $@ $< $(BUILD)/libhero.a $(LIBS)

bench-net: $(BUILD)/bench_net
	$(BUILD)/bench_net

bench-pull: all
	bench/pull/run --hero $(BUILD)/hero

bench: bench-parse bench-lifecycle bench-net bench-pull

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0755 $(BUILD)/hero $(DESTDIR)$(PREFIX)/bin/hero
	install -d $(DESTDIR)$(PREFIX)/libexec/hero
	install -m 0755 $(BUILD)/hero-init $(DESTDIR)$(PREFIX)/libexec/hero/hero-init
	install -m 0644 $(BUILD)/man/hero.1 $(DESTDIR)$(PREFIX)/share/man/man1/hero.1
	install -m 0644 $(BUILD)/man/hero-pods.1 $(DESTDIR)$(PREFIX)/share/man/man1/hero-pods.1
	install -m 0644 $(BUILD)/man/heroscript.5 $(DESTDIR)$(PREFIX)/share/man/man5/heroscript.5

# hero-init is PID 1 inside every container: static, so it runs in any image
$(BUILD)/hero-init: actions/heropods/init/hero_init.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -Os -Wall -Wextra -Werror -static -o $@ $<

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
