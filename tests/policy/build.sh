#!/usr/bin/env bash
# Builds tests/policy/store_driver against the policy module (without the
# lead's stage file policy/policy.c), the usage module's migrate command and
# the few gateway objects they need, so an unrelated broken file elsewhere
# does not stop these tests. Output: $1 (default build/policy/store_driver).
# Extra CFLAGS via $MG_TEST_CFLAGS (e.g. sanitizers).
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/policy/store_driver}
mkdir -p "$(dirname "$out")"
src=$(ls policy/*.c | grep -v '^policy/policy\.c$')
# shellcheck disable=SC2086
cc -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -fno-strict-aliasing \
   -D_GNU_SOURCE -Igateway -I. $(pkg-config --cflags libpq libcjson libpcre2-8 libhs openssl) ${MG_TEST_CFLAGS:-} \
   -o "$out" tests/policy/store_driver.c $src usage/*.c gateway/core.c gateway/log.c gateway/json.c \
   $(pkg-config --libs libpq libcjson libpcre2-8 libhs openssl) -lpthread -lm
