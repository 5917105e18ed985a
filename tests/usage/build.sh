#!/usr/bin/env bash
# Builds tests/usage/ledger_driver against the usage module and the few
# gateway objects it needs (not the whole tree, so an unrelated broken file
# elsewhere does not stop the ledger tests). Output: $1 (default
# build/usage/ledger_driver). Extra CFLAGS via $MG_TEST_CFLAGS (e.g. sanitizers).
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/usage/ledger_driver}
mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2086
cc -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -fno-strict-aliasing \
   -D_GNU_SOURCE -Igateway -I. $(pkg-config --cflags libpq libcjson) ${MG_TEST_CFLAGS:-} \
   -o "$out" tests/usage/ledger_driver.c usage/*.c gateway/core.c gateway/log.c \
   $(pkg-config --libs libpq libcjson) -lpthread -lm
