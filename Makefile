# switchyard - one non-recursive Makefile (Debian 12, gcc).
#
#   make            build build/default/switchyard
#   make test       deps, ASan+UBSan build, unit + integration tests, short fuzz runs
#   make run        deps, build, switchyard localserve
#   make deps       install missing Debian packages (packaging/deps.sh)
#   make analyze    cppcheck + clang-tidy + layering check
#   make fuzz       libFuzzer targets under build/fuzz/
#   make bench      benchmarks (bench/)
#   make install    switchyard and its man page under $(PREFIX) (/usr/local)

# Plain "=": "?=" does nothing for CC, because make already defines CC=cc.
CC       = gcc
# BUILD and FUZZBUILD may be overridden (parallel builds in one tree).
BUILD    ?= build/$(if $(SAN),asan,default)
FUZZBUILD ?= build/fuzz
CSTD     := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
WARN     := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wvla \
            -Wstrict-prototypes -Wmissing-prototypes -Wcast-qual \
            -Wpointer-arith -Wimplicit-fallthrough -Wnull-dereference
HARDEN   := -fno-common -fstack-protector-strong
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
# FORTIFY needs optimisation and clashes with ASan: use it only without SAN.
MODE     := $(if $(SAN),$(SANFLAGS) -O1 -g,-O2 -g -D_FORTIFY_SOURCE=2)
ALL_CFLAGS = $(CSTD) $(WARN) $(HARDEN) -I. $(CFLAGS) $(MODE) -MMD -MP
LDLIBS   := -lhiredis -lcyaml -lyaml -lcjson -lgsasl -lmilter -lssl -lcrypto -lpthread
LDFLAGS_ALL = $(if $(SAN),$(SANFLAGS)) $(LDFLAGS)

# One line per module: every .c in these directories goes into the library,
# except the program's entry point.
LIB_SRCS := $(wildcard gateway/util/*.c) \
            $(filter-out gateway/main.c,$(wildcard gateway/*.c)) \
            $(wildcard gateway/transport/*.c) \
            $(wildcard gateway/smtp/*.c) \
            $(wildcard lmtp/*.c) \
            $(wildcard milter/*.c) \
            $(wildcard rules/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libswitchyard.a
BIN      := $(BUILD)/switchyard

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS  := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZBUILD)/%)
PYTHON     := /usr/bin/python3

# Keep test objects: make deletes "intermediate" files otherwise.
.SECONDARY:
.PHONY: all test unit integration fuzz fuzz-smoke run deps analyze bench clean install

PREFIX  = /usr/local
DESTDIR =

all: $(BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/gateway/main.o $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS)

# GMime parses our output back in tests (DSNs); its headers are system headers.
GMIME_CFLAGS = $(patsubst -I%,-isystem %,$(shell pkg-config --cflags gmime-3.0 2>/dev/null))
GMIME_LIBS   = $(shell pkg-config --libs gmime-3.0 2>/dev/null)

$(BUILD)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(GMIME_CFLAGS) -c $< -o $@

# Helpers shared by unit tests (a private redis-server, ...).
TEST_SUPPORT_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/unit/support/*.c))

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(TEST_SUPPORT_OBJS) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS) $(GMIME_LIBS) -lcmocka

# Test drivers for integration tests (tests/tools/): relay_send runs the
# SMTP client (relay_deliver) against real servers.
TOOL_BINS := $(BUILD)/tests/relay_send
$(BUILD)/tests/tools/%.o: tests/tools/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/tests/relay_send: $(BUILD)/tests/tools/relay_send.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS)

deps:
	bash packaging/deps.sh

# The test suite always runs the ASan+UBSan build.
test: deps
	$(MAKE) SAN=1 unit integration
	$(MAKE) fuzz-smoke

unit: $(UNIT_BINS) $(BIN)
	@set -e; for t in $(UNIT_BINS); do \
	    echo "== $$t"; \
	    (cd tests/unit && ../../$$t); \
	done

integration: $(BIN) $(TOOL_BINS)
	SWITCHYARD_BIN=$(CURDIR)/$(BIN) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

run: deps $(BIN)
	$(BIN) localserve

# libFuzzer targets: clang, sanitizers; the library is compiled once for
# all targets (fuzzer-no-link) and each target links against it.
FUZZ_CFLAGS := $(CSTD) -I. -g -O1 -fsanitize=fuzzer-no-link,address,undefined -MMD -MP
FUZZ_OBJS   := $(LIB_SRCS:%.c=$(FUZZBUILD)/obj/%.o)
fuzz: $(FUZZ_BINS)
$(FUZZBUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZBUILD)/libswitchyard.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^
$(FUZZBUILD)/%: tests/fuzz/%.c $(FUZZBUILD)/libswitchyard.a
	@mkdir -p $(@D)
	clang $(CSTD) -I. -g -O1 -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

# A short run of every fuzz target over its seed corpus (part of make test).
fuzz-smoke: $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do \
	    n=$$(basename $$f); \
	    mkdir -p $(FUZZBUILD)/corpus-$$n; \
	    echo "== $$f (20 s)"; \
	    $$f -max_total_time=20 -max_len=8192 $(FUZZBUILD)/corpus-$$n tests/fuzz/seeds/$$n >$(FUZZBUILD)/$$n.log 2>&1 || { tail -40 $(FUZZBUILD)/$$n.log; exit 1; }; \
	done

TIDY_CHECKS := clang-analyzer-*,bugprone-*,cert-*,misc-*,-bugprone-easily-swappable-parameters,-cert-err33-c,-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling,-misc-unused-parameters,-bugprone-reserved-identifier,-cert-dcl37-c,-cert-dcl51-cpp
analyze:
	cppcheck --quiet --enable=warning,style,performance,portability --error-exitcode=1 \
	    --suppress=missingIncludeSystem --inline-suppr -I. $(LIB_SRCS) gateway/main.c
	@set -e; for f in $(LIB_SRCS) gateway/main.c; do \
	    clang-tidy --quiet --warnings-as-errors='*' --checks='$(TIDY_CHECKS)' $$f -- $(CSTD) -I. ; \
	done
	@# Layering: rules/ sees only gateway/util; lmtp/ and milter/ never include transports.
	@! grep -n '#include "gateway/' rules/*.c rules/*.h 2>/dev/null | grep -v 'gateway/util/'
	@! grep -n '#include "gateway/\(transport\|smtp\)' lmtp/*.[ch] milter/*.[ch] 2>/dev/null
	@for h in $$(git ls-files '*.h'); do $(CC) $(CSTD) -I. -fsyntax-only -x c $$h || exit 1; done

bench:
	$(MAKE) -C . all
	SWITCHYARD_BIN=$(abspath $(BIN)) bench/run $(if $(QUICK),--quick)

install: $(BIN)
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/switchyard
	install -D -m 0644 docs/switchyard.8 $(DESTDIR)$(PREFIX)/share/man/man8/switchyard.8

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(BUILD)/gateway/main.d $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%.d)
-include $(FUZZ_OBJS:.o=.d)
