#!/usr/bin/env bash
# Installs the interop peers used by crates/wsduplex/tests/interop.rs:
#   Python `websockets` in target/interop/venv (from PyPI),
#   Node `ws` in tests/interop/node/node_modules (from npm, per package-lock.json).
# Idempotent: a second run with everything in place installs nothing.
# Needs python3 (with venv: Debian's python3-venv), node and npm.
set -euo pipefail

WEBSOCKETS_VERSION=17.4 # keep in step with tests/interop/python/*.py expectations

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/target/interop/venv"
node_dir="$root/tests/interop/node"

# Python websockets.
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
        echo "setup.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    }
fi
have="$("$venv/bin/python" -c 'import websockets; print(websockets.__version__)' 2>/dev/null || true)"
if [ "$have" != "$WEBSOCKETS_VERSION" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "websockets==$WEBSOCKETS_VERSION"
fi
echo "python websockets $("$venv/bin/python" -c 'import websockets; print(websockets.__version__)') in ${venv#"$root"/}"

# Node ws, exactly as locked.
want="$(node -p 'require(process.argv[1]).dependencies.ws' "$node_dir/package.json")"
have="$(node -p 'require(process.argv[1]).version' "$node_dir/node_modules/ws/package.json" 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "node ws $(node -p 'require(process.argv[1]).version' "$node_dir/node_modules/ws/package.json") in ${node_dir#"$root"/}/node_modules"
