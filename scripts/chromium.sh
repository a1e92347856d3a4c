#!/usr/bin/env bash
# The browser tests drive Debian's Chromium; Playwright never downloads a browser here.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
echo "chromium: installing Debian's chromium package"
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
