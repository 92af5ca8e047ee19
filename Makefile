# SPDX-License-Identifier: MIT
#
# pitcopy build.  `make` builds the library, the benchmark and the tests;
# `make test` installs what is missing, builds, and runs every test (plain and
# ASan+UBSan); `make asan` / `make tsan` build sanitized trees beside build/.
#
# Every *.c in a library folder is part of libpitcopy; every
# tests/unit/test-*.c and tests/model/test-*.c is one test program.  New files
# need no edit here.

BUILD    ?= build
SAN      ?=
CC       ?= gcc
OPT      ?= -O2
CFLAGS   := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -pthread -D_GNU_SOURCE \
            -Iinclude -I. $(EXTRA_CFLAGS)
LDLIBS   := -luring -laio -lxxhash -pthread -lm

ifeq ($(SAN),asan)
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -DPC_NO_JEMALLOC
  LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SAN),tsan)
  CFLAGS += -fsanitize=thread -DPC_NO_JEMALLOC
  LDFLAGS += -fsanitize=thread
else
  LDLIBS += -ljemalloc
endif

LIB_DIRS  := bitmap io engine nbd
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

BENCH_SRC := $(wildcard bench/*.c)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
BENCH     := $(BUILD)/pitcopy-bench

HEADERS   := $(wildcard include/*.h $(addsuffix /*.h,$(LIB_DIRS)) cli/*.h ctl/*.h tests/common/*.h bench/*.h)

.SECONDARY: $(TEST_COMMON_OBJ)

.PHONY: all deps test test-build unit model asan tsan soak bench bench-quick demo clean help
.DEFAULT_GOAL := all

all: $(LIB) $(if $(CLI_SRC),$(PITCOPY)) $(if $(BENCH_SRC),$(BENCH)) $(TEST_BIN)

help:
	@echo "make            build library, benchmark and tests into build/"
	@echo "make test       install deps, build, run every test (plain and ASan+UBSan)"
	@echo "make asan|tsan  sanitized builds in build-asan/ build-tsan/"
	@echo "make soak       the model test with 10 million operations per backend"
	@echo "make bench      full benchmark run, JSON lines + bench/results/*.png"
	@echo "make bench-quick  the benchmarks in under a minute"
	@echo "make demo       the nightly-batch demo"

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

$(BENCH): $(BENCH_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(LIB) $(LDLIBS)

asan:
	$(MAKE) BUILD=build-asan SAN=asan OPT=-O1 all

tsan:
	$(MAKE) BUILD=build-tsan SAN=tsan OPT=-O1 all

# The test runner prints one line per test and closes with
# "N passed, N failed, N skipped"; it exits non-zero if anything failed.
test: deps
	$(MAKE) all
	$(MAKE) asan
	tests/run-tests.sh build build-asan

soak: deps all
	PITCOPY_MODEL_OPS=10000000 PITCOPY_TEST_TIMEOUT=0 tests/run-tests.sh build -- model

bench: deps all
	$(BENCH) --out bench/results
	@bench/plot.sh bench/results

bench-quick: deps all
	$(BENCH) --quick

demo: deps all
	@echo "make demo: the nightly-batch demo arrives with 'pitcopy serve' (issue 4)."
	@echo "Until then, 'make test' and 'make bench-quick' exercise the engine end to end."

clean:
	rm -rf build build-asan build-tsan
