#!/usr/bin/env bash
# Drives `wsduplex client --echo` through the standard Autobahn client protocol
# (getCaseCount, runCase 1..N, updateReports). run-client-tests.sh sets AUTOBAHN_URL
# and AUTOBAHN_AGENT; WSDUPLEX_BIN is the binary under test.
set -euo pipefail
bin=${WSDUPLEX_BIN:?set WSDUPLEX_BIN to the wsduplex binary}
count=$("$bin" client "$AUTOBAHN_URL/getCaseCount" </dev/null)
[[ $count =~ ^[0-9]+$ ]] || { echo "getCaseCount answered: $count" >&2; exit 1; }
echo "running $count cases"
for i in $(seq 1 "$count"); do
  # A case that makes the client fail the connection exits non-zero: that is the point.
  "$bin" client --echo --deflate "$AUTOBAHN_URL/runCase?case=$i&agent=$AUTOBAHN_AGENT" </dev/null >/dev/null 2>&1 || true
done
"$bin" client "$AUTOBAHN_URL/updateReports?agent=$AUTOBAHN_AGENT" </dev/null >/dev/null
