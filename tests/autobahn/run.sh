#!/usr/bin/env bash
# Autobahn|Testsuite against wsduplex, both directions, compared with expected.json.
#
#   tests/autobahn/run.sh [server|client|both|server-axum] [--update]
#
# server-axum: the server suite against the axum echo example (crates/wsduplex/examples/
# axum_echo.rs, built with --features axum), compared with the same expectations as
# `wsduplex serve` (never updated from this mode: they are the binary's).
#
# env: WSDUPLEX_BIN (default target/release/wsduplex, built if missing),
#      AUTOBAHN_EXCLUDE (default none: all 517 cases, permessage-deflate included; the
#      server runs with --deflate and the client driver passes --deflate),
#      AUTOBAHN_REPORT_DIR (default target/autobahn).
# Installs wstest on first use (tool/setup.sh, needs root). Reports: $AUTOBAHN_REPORT_DIR/*/index.html
# Fails (never passes on an old report) when a direction's run writes no index.json: the
# previous one is removed first, and compare.py refuses one older than this run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
which=${1:-both}
update=${2:-}
case $which in
  server | client | both | server-axum) ;;
  *) echo "usage: tests/autobahn/run.sh [server|client|both|server-axum] [--update]" >&2; exit 2 ;;
esac
bin=${WSDUPLEX_BIN:-$root/target/release/wsduplex}
reports=${AUTOBAHN_REPORT_DIR:-$root/target/autobahn}
export AUTOBAHN_EXCLUDE=${AUTOBAHN_EXCLUDE-}
if [ "$which" = server-axum ]; then
  # Always built: a stale example must not stand in for the current code.
  (cd "$root" && cargo build --release --locked --quiet -p wsduplex --features axum --example axum_echo)
  bin=$root/target/release/examples/axum_echo
  update=
else
  [ -x "$bin" ] || (cd "$root" && cargo build --release --locked -p wsduplex-cli)
fi
bash "$here/tool/setup.sh"
rc=0

# Only a report this run wrote counts. The index.json an earlier run left must not pass for
# this one when this run writes none (wstest never started, or died first): remove it now,
# and compare.py refuses an index older than this stamp.
mkdir -p "$reports"
stamp=$(mktemp "$reports/.run-started.XXXXXX")
for d in server client server-axum; do
  if [ "$which" = "$d" ] || [ "$which" = both ]; then rm -f "$reports/$d/index.json"; fi
done
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -f "$stamp"
}
trap cleanup EXIT

# Each direction's wstest is one single-threaded Python process: run both at once (the
# 12.*/13.* compression cases take minutes each way), then compare one after the other.
# run_server REPORT COMMAND...: COMMAND listens on a free port, prints "listening on
# http://ADDR" and echoes at /echo with permessage-deflate.
run_server() {
  local name=$1 out pid addr
  shift
  out=$(mktemp); "$@" > "$out" & pid=$!
  for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
  addr=$(sed -n 's|^listening on http://||p' "$out")
  if [ -z "$addr" ]; then echo "$* did not start" >&2; kill $pid 2>/dev/null; return 1; fi
  AUTOBAHN_REPORT_DIR=$reports/$name bash "$here/tool/run-server-tests.sh" "ws://$addr/echo" >/dev/null || true
  kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -f "$out"
}
run_client() {
  WSDUPLEX_BIN=$bin AUTOBAHN_REPORT_DIR=$reports/client \
    bash "$here/tool/run-client-tests.sh" "$here/client-driver.sh" >/dev/null || true
}

if [ "$which" = server ] || [ "$which" = both ]; then
  run_server server "$bin" serve --deflate --listen 127.0.0.1:0 & server_pid=$!
fi
if [ "$which" = server-axum ]; then
  run_server server-axum "$bin" 127.0.0.1:0 & server_pid=$!
fi
if [ "$which" = client ] || [ "$which" = both ]; then
  run_client
fi
if [ -n "$server_pid" ]; then
  wait $server_pid || rc=1
  server_pid=
  report=server
  if [ "$which" = server-axum ]; then report=server-axum; fi
  python3 "$here/compare.py" server "$reports/$report" "$here/expected.json" --newer-than "$stamp" $update || rc=1
fi
if [ "$which" = client ] || [ "$which" = both ]; then
  python3 "$here/compare.py" client "$reports/client" "$here/expected.json" --newer-than "$stamp" $update || rc=1
fi
exit $rc
