#!/usr/bin/env bash
# Installs the browser peer used by crates/wsduplex-cli/tests/browser.rs:
#   Debian's `chromium` at /usr/bin/chromium (apt; the tests never download a browser),
#   `playwright-core` in tests/browser/node_modules (from npm, per package-lock.json).
# Idempotent: a second run with everything in place installs nothing.
# Needs apt-get (as root) for Chromium, node and npm.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$root/tests/browser"

# Chromium from Debian's packages.
if [ ! -x /usr/bin/chromium ]; then
    if ! apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends chromium >/dev/null
    fi
fi
echo "$(/usr/bin/chromium --version 2>/dev/null | head -n 1) at /usr/bin/chromium"

# playwright-core, exactly as locked (npm install only creates the lock the first time).
want="$(node -p 'require(process.argv[1]).dependencies["playwright-core"]' "$dir/package.json")"
have="$(node -p 'require(process.argv[1]).version' "$dir/node_modules/playwright-core/package.json" 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
    if [ -f "$dir/package-lock.json" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    else
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    fi
fi
echo "playwright-core $(node -p 'require(process.argv[1]).version' "$dir/node_modules/playwright-core/package.json") in ${dir#"$root"/}/node_modules"
