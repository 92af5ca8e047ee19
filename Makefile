# SPDX-License-Identifier: MIT
#
# pitcopy build.  `make` builds the library, the benchmark and the tests;
# `make test` installs what is missing, builds, and runs every test (plain and
# ASan+UBSan); `make asan` / `make tsan` build sanitized trees beside build/;
# `make coverage` builds a gcov tree in build-cov/, runs the tests in it and
# reports line and branch coverage per folder.
#
# Every *.c in a library folder is part of libpitcopy; every
# tests/unit/test-*.c and tests/model/test-*.c is one test program.  New files
# need no edit here.

BUILD    ?= build
SAN      ?=
COV      ?=
CC       ?= gcc
OPT      ?= -O2
CFLAGS   := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -pthread -D_GNU_SOURCE \
            -Iinclude -I. $(EXTRA_CFLAGS)
LDLIBS   := -luring -laio -lxxhash -lgnutls -lsqlite3 -ljansson -lcurl -pthread -lm

ifeq ($(SAN),asan)
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -DPC_NO_JEMALLOC
  LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SAN),tsan)
  CFLAGS += -fsanitize=thread -DPC_NO_JEMALLOC
  LDFLAGS += -fsanitize=thread
else ifeq ($(SAN),fuzz)
  # clang only.  Coverage everywhere, libFuzzer's main only where a harness
  # is linked; UB aborts like any other finding instead of printing on.
  CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer -DPC_NO_JEMALLOC
  LDFLAGS += -fsanitize=fuzzer,address,undefined
else
  LDLIBS += -ljemalloc
endif

# COV=1: gcov instrumentation (`make coverage` sets it, with -O0).  With
# -pthread gcc updates the counters atomically.  PC_COVERAGE lets a test's
# forked child flush its counters before _exit.
ifeq ($(COV),1)
  CFLAGS += --coverage -DPC_COVERAGE
  LDFLAGS += --coverage
endif

LIB_DIRS  := bitmap io engine nbd mgmt
LIB_SRC   := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))

# The pitcopy command: the CLI and the daemon it becomes with `serve`
# (control protocol in ctl/, JSON by jansson).
CLI_SRC   := $(wildcard cli/*.c ctl/*.c)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
PITCOPY   := $(BUILD)/pitcopy
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/libpitcopy.a

TEST_SRC  := $(wildcard tests/unit/test-*.c tests/model/test-*.c)
TEST_BIN  := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_COMMON := $(wildcard tests/common/*.c)
TEST_COMMON_OBJ := $(TEST_COMMON:%.c=$(BUILD)/obj/%.o)

# The demo's bank ledger: a libnbd client (demo/nightly.sh drives it).
LEDGER    := $(BUILD)/pitcopy-ledger
# Crash points against a real daemon (tests/crash/test-*.sh drive it).
CRASHTEST := $(BUILD)/pitcopy-crashtest
# Sustained load with mappings changing (tests/nbd/test-load.sh drives it).
LOADTEST  := $(BUILD)/pitcopy-loadtest

BENCH_SRC := $(wildcard bench/*.c)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
BENCH     := $(BUILD)/pitcopy-bench

# libFuzzer harnesses (make fuzz): tests/fuzz/fuzz-*.c, built only in build-fuzz/.
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,$(BUILD)/%,$(FUZZ_SRC))
FUZZ_UTIL := $(BUILD)/obj/tests/fuzz/fuzzutil.o
CTL_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard ctl/*.c))
FUZZ_TIME ?= 300

HEADERS   := $(wildcard include/*.h $(addsuffix /*.h,$(LIB_DIRS)) cli/*.h ctl/*.h tests/common/*.h \
                        tests/fuzz/*.h bench/*.h)

.SECONDARY: $(TEST_COMMON_OBJ)

.PHONY: all deps test test-build unit model asan tsan coverage crashtest fuzz fuzz-build fuzz-bin \
        soak bench bench-quick demo clean help install uninstall
.DEFAULT_GOAL := all

all: $(LIB) $(if $(CLI_SRC),$(PITCOPY)) $(LEDGER) $(CRASHTEST) $(LOADTEST) $(if $(BENCH_SRC),$(BENCH)) $(TEST_BIN)

help:
	@echo "make            build library, benchmark and tests into build/"
	@echo "make test       install deps, build, run every test (plain and ASan+UBSan)"
	@echo "make asan|tsan  sanitized builds in build-asan/ build-tsan/"
	@echo "make coverage   gcov build in build-cov/, every test run in it, line and branch"
	@echo "                coverage per folder (gcovr); HTML in build-cov/coverage/index.html"
	@echo "make fuzz       build the libFuzzer harnesses (clang) in build-fuzz/, run each"
	@echo "                FUZZ_TIME seconds (default 300); make fuzz-build only builds"
	@echo "make soak       the model test with 10 million operations per backend"
	@echo "make crashtest  1000 kill -9 and 300 power-cut crash points against a real daemon"
	@echo "make bench      full benchmark run, JSON lines + bench/results/*.png"
	@echo "make bench-quick  the benchmarks in under a minute"
	@echo "make demo       the nightly-batch demo"
	@echo "make install PREFIX=/usr/local  binary, library, header, pkg-config file, systemd unit"

deps:
	@scripts/install-deps

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/%: tests/%.c $(LIB) $(TEST_COMMON_OBJ) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/common $(LDFLAGS) -o $@ $< $(TEST_COMMON_OBJ) $(LIB) -lcmocka $(LDLIBS)

$(PITCOPY): $(CLI_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) -ljansson $(LDLIBS)

$(LEDGER): demo/ledger.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lnbd -lxxhash

$(CRASHTEST): tests/crash/crashtest.c tests/common/sector_tags.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lnbd -ljansson -pthread

$(LOADTEST): tests/nbd/loadtest.c tests/common/sector_tags.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lnbd -ljansson -pthread

$(BENCH): $(BENCH_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(LIB) $(LDLIBS)

# fuzz-ctl runs the real control methods; the wraps fence them in (see the
# harness's header): volume files stay in its tmpfs directory, waits do not
# wait, rates run faster.
$(BUILD)/fuzz-ctl: $(CTL_OBJ)
$(BUILD)/fuzz-ctl: FUZZ_LINK = $(CTL_OBJ) -ljansson \
    -Wl,--wrap=pc_volume_open,--wrap=pc_map_wait,--wrap=ctl_server_stopping \
    -Wl,--wrap=pc_rate_bytes_per_sec

$(BUILD)/fuzz-%: tests/fuzz/fuzz-%.c $(FUZZ_UTIL) $(LIB) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz $(LDFLAGS) -o $@ $< $(FUZZ_UTIL) $(FUZZ_LINK) $(LIB) $(LDLIBS)

fuzz-bin: $(FUZZ_BIN)

asan:
	$(MAKE) BUILD=build-asan SAN=asan OPT=-O1 all

fuzz-build:
	$(MAKE) BUILD=build-fuzz SAN=fuzz CC=clang OPT=-O1 fuzz-bin

# Each harness FUZZ_TIME seconds from its seeds (tests/fuzz/corpus-*), the
# corpus it grows kept in build-fuzz/; prints executions and crashes.
fuzz: deps fuzz-build
	tests/fuzz/run-fuzz.sh build-fuzz $(FUZZ_TIME)

tsan:
	$(MAKE) BUILD=build-tsan SAN=tsan OPT=-O1 all

# The test runner prints one line per test and closes with
# "N passed, N failed, N skipped"; it exits non-zero if anything failed.
test: deps
	$(MAKE) all
	$(MAKE) asan
	PITCOPY_TEST_TIMEOUT=$${PITCOPY_TEST_TIMEOUT:-600} tests/run-tests.sh build build-asan

# Long crash runs (`make test` runs 200 kill and 60 power-cut points).
crashtest: all
	$(CRASHTEST) --pitcopy $(PITCOPY) --mode kill --points $${POINTS:-1000}
	$(CRASHTEST) --pitcopy $(PITCOPY) --mode power --points $${POWER_POINTS:-300}

# Not part of `make test`.  Counters start from zero on every run; the report
# is written even when a test fails, and then make fails after it.
COV_BUILD := build-cov
coverage: deps
	$(MAKE) BUILD=$(COV_BUILD) COV=1 OPT=-O0 all
	find $(COV_BUILD) -name '*.gcda' -delete
	@rc=0; PITCOPY_TEST_TIMEOUT=$${PITCOPY_TEST_TIMEOUT:-600} \
	    tests/run-tests.sh $(COV_BUILD) || rc=$$?; \
	scripts/coverage-report $(COV_BUILD) && exit $$rc

soak: deps all
	PITCOPY_MODEL_OPS=10000000 PITCOPY_TEST_TIMEOUT=0 tests/run-tests.sh build -- model

bench: deps all
	$(BENCH) --out bench/results
	@bench/plot.sh bench/results

bench-quick: deps all
	$(BENCH) --quick

demo: deps all
	demo/nightly.sh $(BUILD)

# The CLI unit tests compile cli/args.c whole: rebuild them when it changes.
$(BUILD)/tests/unit/test-cli-%: cli/args.c

# ------------------------------------------------------------------ install
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
UNITDIR      ?= $(PREFIX)/lib/systemd/system
VERSION      := $(shell sed -n 's/^\#define PITCOPY_VERSION "\(.*\)"/\1/p' ctl/protocol.h)

install: $(LIB) $(PITCOPY)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(UNITDIR)
	install -m 0755 $(PITCOPY) $(DESTDIR)$(BINDIR)/pitcopy
	install -m 0644 $(LIB) $(DESTDIR)$(LIBDIR)/libpitcopy.a
	install -m 0644 include/pitcopy.h $(DESTDIR)$(INCLUDEDIR)/pitcopy.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    contrib/pitcopy.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/pitcopy.pc
	sed -e 's|/usr/local/bin/pitcopy|$(BINDIR)/pitcopy|g' \
	    contrib/pitcopy.service >$(DESTDIR)$(UNITDIR)/pitcopy.service
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/pitcopy.pc $(DESTDIR)$(UNITDIR)/pitcopy.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pitcopy $(DESTDIR)$(LIBDIR)/libpitcopy.a \
	    $(DESTDIR)$(INCLUDEDIR)/pitcopy.h $(DESTDIR)$(PKGCONFIGDIR)/pitcopy.pc \
	    $(DESTDIR)$(UNITDIR)/pitcopy.service

clean:
	rm -rf build build-asan build-tsan build-cov build-fuzz
