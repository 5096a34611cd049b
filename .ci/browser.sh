#!/usr/bin/env bash
# Debian's Chromium for the web catalog's end-to-end tests (tests/web/e2e), installed when missing.
# Playwright drives it as /usr/bin/chromium; `playwright install` (an online download) is never used.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y chromium
fi
