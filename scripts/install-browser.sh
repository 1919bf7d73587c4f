#!/usr/bin/env bash
# Installs the browser `npm run test:browser` drives: Debian's chromium package. playwright-core
# never downloads a browser of its own; the test launches /usr/bin/chromium.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
