# hero: one hand-written GNU Makefile.
#   make            build build/hero (and build/hero-init later)
#   make deps       install every Debian package the build and the tests need
#   make check      run every test; ends with "N passed, M failed"
#   make demo       run the offline example playbook
#   make fuzz       run the libFuzzer target for FUZZ_SECONDS
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
LIBS := -luv

LEMPAR := /usr/share/lemon/lempar.c

GRAMMAR_SRCS := grammar/source.c grammar/diag.c grammar/parse.c grammar/load.c grammar/format.c
RUNTIME_SRCS := $(filter-out runtime/main.c,$(wildcard runtime/*.c))
ACTION_SRCS  := $(wildcard actions/*.c actions/core/*.c actions/heropods/*.c)
LIB_SRCS     := $(GRAMMAR_SRCS) $(RUNTIME_SRCS) $(ACTION_SRCS)
GEN_SRCS     := $(GEN)/lexer.c $(GEN)/parser.c

LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) \
            $(BUILD)/obj/gen/lexer.o $(BUILD)/obj/gen/parser.o

.PHONY: all deps check demo fuzz install clean unit golden integration
all: $(BUILD)/hero

$(GEN)/parser.c $(GEN)/parser.h: grammar/parser.y
	@mkdir -p $(GEN)
	lemon -q -d$(GEN) -T$(LEMPAR) $<

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

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
