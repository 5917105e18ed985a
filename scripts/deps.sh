#!/usr/bin/env bash
# Installs what building and testing modelgate needs, only where it is missing.
# Debian packages through apt-get; npm packages through `npm ci` (lock files committed).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config libssl-dev libcurl4-openssl-dev libcjson-dev libyaml-dev chromium
      libpcre2-dev libhyperscan-dev libmimalloc-dev libpq-dev liboauth2-dev postgresql nodejs npm openssl curl
      clang libclang-rt-14-dev nginx-light wrk)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from outside Debian (e.g. preinstalled); then skip nodejs/npm.
if command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
    missing=("${tmp[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
