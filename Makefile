# modelgate — build, test, demo, bench.
# SPDX-License-Identifier: Apache-2.0

CC       ?= cc
PKGS     := openssl libcurl libcjson yaml-0.1 libpcre2-8 libhs libpq liboauth2
CFLAGS   ?= -O2 -g
SAN      ?=
# Warnings are errors; these flags are not overridable from the command line.
MG_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
            -fno-strict-aliasing -D_GNU_SOURCE -Igateway -I. \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(CFLAGS) $(SAN) $(MG_CFLAGS)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
# The gateway binary allocates through mimalloc (README, "Dependencies"):
# linked first and kept even though no symbol of it is named, so its
# malloc/free interpose libc's for every library in the process. Sanitizer
# builds keep the sanitizer's own allocator.
ALLOC_LIBS := $(if $(SAN),,-Wl,--push-state,--no-as-needed -lmimalloc -Wl,--pop-state)

SRC      := $(wildcard gateway/*.c auth/*.c policy/*.c adapters/*.c usage/*.c)
LIB_SRC  := $(filter-out gateway/main.c,$(SRC))
UNIT_SRC := $(wildcard tests/unit/test_*.c)

B        := build
OBJ      := $(SRC:%.c=$(B)/obj/%.o)
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/unit/%)


.PHONY: all deps test test-unit test-integration test-asan demo bench fuzz clean corpus

all: $(B)/modelgate

$(B)/modelgate: $(OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(ALLOC_LIBS) $(LDLIBS)

$(B)/obj/%.o: %.c $(wildcard gateway/*.h auth/*.h policy/*.h adapters/*.h usage/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/unit/%: tests/unit/%.c $(LIB_OBJ) tests/unit/t.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -o $@ $< $(LIB_OBJ) $(LDLIBS)

# Replays the committed fuzz corpora through the parsers (no clang needed).
$(B)/fuzz-replay-%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

deps:
	@scripts/deps.sh

unit: $(UNIT_BIN)

test: deps
	@scripts/test.sh

test-asan: deps
	@MG_SANITIZE=1 scripts/test.sh

demo: deps $(B)/modelgate
	@scripts/demo.sh

bench: deps $(B)/modelgate
	@bench/run.sh
	@bench/idle_tls.sh 10000

fuzz: deps
	@scripts/fuzz.sh

clean:
	rm -rf $(B)
