#!/usr/bin/env bash
# Does throughput grow with `serve --workers`? On a machine with few cores the echo scenarios
# cannot show it: the load generator needs as much CPU per message as the server. TLS
# handshakes with an RSA-2048 certificate can: signing costs the server about three times
# what the client's side of the handshake costs it, so the server is the limit.
#
# Runs `wsduplex bench connect wss://... -c 50` against `serve --workers 1` pinned to core 0
# (the load on core 1), then against `--workers 2` sharing cores 0 and 1 with the load,
# interleaved, RUNS times (default 5), and prints each run and the medians.
#
# Usage: bench/workers.sh [RUNS]          (needs openssl for the RSA certificate)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "workers.sh: RUNS must be a positive number" >&2; exit 2; }
command -v openssl >/dev/null || { echo "workers.sh: needs openssl (apt-get install openssl)" >&2; exit 2; }
cores=$(nproc)
((cores >= 2)) || { echo "workers.sh: needs at least 2 cores" >&2; exit 2; }

cargo build --release --locked -q -p wsduplex-cli
bin=$PWD/target/release/wsduplex
dir=$(mktemp -d)
server=
trap '[[ -n $server ]] && kill $server 2>/dev/null; rm -rf "$dir"' EXIT
# A leaf certificate signed by a throwaway CA (webpki refuses a CA certificate as a leaf).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" \
    -days 1 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$dir/leaf.csr" \
    -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/ext"
openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -days 1 -extfile "$dir/ext" -out "$dir/cert.pem" 2>/dev/null

# one WORKERS SERVER_CPUS LOAD_CPUS: one run, one JSON line on stdout.
one() {
    taskset -c "$2" "$bin" serve --listen 127.0.0.1:0 --workers "$1" \
        --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" >"$dir/serve.out" 2>&1 &
    server=$!
    local addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's#^listening on https://##p' "$dir/serve.out")
        [[ -n $addr ]] && break
        sleep 0.1
    done
    [[ -n $addr ]] || { echo "workers.sh: serve did not start: $(cat "$dir/serve.out")" >&2; exit 1; }
    taskset -c "$3" "$bin" bench connect "wss://$addr/echo" --cacert "$dir/ca.pem" -c 50 \
        --threads 1 --warmup 1s --duration 4s --server-pid "$server" --json -q |
        sed "s/^{/{\"workers\":$1,/"
    kill -TERM "$server"
    wait "$server" 2>/dev/null || true
    server=
}

for run in $(seq "$runs"); do
    echo "run $run of $runs" >&2
    one 1 0 1
    one 2 0,1 0,1
done >"$dir/runs.jsonl"

python3 - "$dir/runs.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
bad = [r for r in runs if r["errors"] or not r["handshakes"]]
if bad:
    sys.exit(f"workers.sh: a run failed: {bad[0].get('first_error')}")
print("| workers | handshakes/s | server CPU per handshake | load CPU per handshake |")
print("|---|---|---|---|")
rate = {}
for w in (1, 2):
    rs = [r for r in runs if r["workers"] == w]
    rate[w] = [r["handshakes_per_sec"] for r in rs]
    cell = lambda xs, f: f"{f(statistics.median(xs))} ({f(min(xs))}–{f(max(xs))})"
    hs = cell(rate[w], lambda x: f"{x:,.0f}")
    srv = cell([r["server"]["cpu_ns_per_op"] / 1000 for r in rs], lambda x: f"{x:,.0f} µs")
    load = cell([r["load"]["cpu_ns_per_op"] / 1000 for r in rs], lambda x: f"{x:,.0f} µs")
    print(f"| {w} | {hs} | {srv} | {load} |")
pairs = [b / a for a, b in zip(rate[1], rate[2])]
print(f"\n2 workers ÷ 1, run by run: {', '.join(f'{p:.2f}×' for p in pairs)}; "
      f"median {statistics.median(pairs):.2f}×")
EOF
