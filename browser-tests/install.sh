#!/usr/bin/env bash
# Installs what the browser test needs: Debian's Chromium (only when /usr/bin/chromium is
# missing) and the pinned playwright-core from package-lock.json. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y chromium
fi
/usr/bin/chromium --version 2>/dev/null | tail -n 1

# playwright-core only drives the browser above; it downloads none of its own.
npm ci --no-audit --no-fund
