#!/bin/sh
# modelgate — installs the test OpenID provider's npm dependencies
# (tests/idp/node_modules) from the committed package-lock.json, once.
# scripts/test.sh calls this before the integration tests.
# SPDX-License-Identifier: Apache-2.0
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
if [ -d "$dir/node_modules/oidc-provider" ] && [ -d "$dir/node_modules/playwright-core" ]; then
    exit 0
fi
npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
