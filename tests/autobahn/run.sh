#!/usr/bin/env bash
# Autobahn|Testsuite against wsduplex, both directions, compared with expected.json.
#
#   tests/autobahn/run.sh [server|client|both] [--update]
#
# env: WSDUPLEX_BIN (default target/release/wsduplex, built if missing),
#      AUTOBAHN_EXCLUDE (default none: all 517 cases, permessage-deflate included; the
#      server runs with --deflate and the client driver passes --deflate),
#      AUTOBAHN_REPORT_DIR (default target/autobahn).
# Installs wstest on first use (tool/setup.sh, needs root). Reports: $AUTOBAHN_REPORT_DIR/*/index.html
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
which=${1:-both}
update=${2:-}
bin=${WSDUPLEX_BIN:-$root/target/release/wsduplex}
reports=${AUTOBAHN_REPORT_DIR:-$root/target/autobahn}
export AUTOBAHN_EXCLUDE=${AUTOBAHN_EXCLUDE-}
[ -x "$bin" ] || (cd "$root" && cargo build --release --locked -p wsduplex-cli)
bash "$here/tool/setup.sh"
rc=0

if [ "$which" = server ] || [ "$which" = both ]; then
  out=$(mktemp); "$bin" serve --deflate --listen 127.0.0.1:0 > "$out" & pid=$!
  trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  addr=$(sed -n 's|^listening on http://||p' "$out")
  [ -n "$addr" ] || { echo "wsduplex serve did not start" >&2; exit 1; }
  AUTOBAHN_REPORT_DIR=$reports/server bash "$here/tool/run-server-tests.sh" "ws://$addr/echo" >/dev/null || true
  kill $pid; wait $pid || true; trap - EXIT; rm -f "$out"
  python3 "$here/compare.py" server "$reports/server" "$here/expected.json" $update || rc=1
fi

if [ "$which" = client ] || [ "$which" = both ]; then
  WSDUPLEX_BIN=$bin AUTOBAHN_REPORT_DIR=$reports/client \
    bash "$here/tool/run-client-tests.sh" "$here/client-driver.sh" >/dev/null || true
  python3 "$here/compare.py" client "$reports/client" "$here/expected.json" $update || rc=1
fi
exit $rc
