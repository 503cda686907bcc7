#!/usr/bin/env bash
# Browser tests of the web client: Playwright (playwright-core) driving Debian's Chromium against
# the release binary (built before this runs) on a fresh database. Screenshots of every page at
# 375 px and 1280 px land in ci-artifacts/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${AURAVITA_BIN:-$PWD/target/release/auravita}"
if [ ! -x "$BIN" ]; then
  echo "e2e: $BIN is missing; build it first with: cargo build --release" >&2
  exit 1
fi

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "e2e: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "e2e: installing node and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi

mkdir -p ci-artifacts/screenshots
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)
cd e2e
AURAVITA_BIN="$BIN" CHROMIUM="$CHROMIUM" node --test --test-concurrency=1 --test-reporter=spec tests/
