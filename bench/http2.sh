#!/usr/bin/env bash
# Scenario A's shape (bench echo -c 100 -d 8 -s 32, see README.md) over HTTP/1.1 and over
# HTTP/2 (RFC 8441) against `wsduplex serve`: messages/s and the server's CPU per message.
# Like run.sh, each measurement gets a fresh server pinned to one core and the load
# generator (one thread) pinned to another; one run of each, in this order:
#   http1          the hand-written frame pipeline over HTTP/1.1 (run.sh's scenario A)
#   http1-socket   --via-socket: the library's WebSocket as the client, over HTTP/1.1
#   http2          --http2: the same client, the 100 WebSockets as streams of one h2c connection
#   http2-x10      --http2 --http2-streams 10: ten h2c connections of 10 streams
# The ratio printed at the end compares http2 with http1 (scenario A as run.sh measures it).
#
#   cargo build --release -p wsduplex-cli && bench/http2.sh [--duration 5s] [--warmup 1s]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
wsduplex=${WSDUPLEX:-$root/target/release/wsduplex}
server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
duration=5s
warmup=1s
while [ $# -gt 0 ]; do
    case $1 in
        --duration) duration=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        *) echo "http2.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$wsduplex" ] || { echo "http2.sh: build $wsduplex first" >&2; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

measure() {
    local label=$1
    shift
    # Emptied here: the server's redirection may come after the first look at the file.
    : >"$scratch/server.out"
    taskset -c "$server_cpu" "$wsduplex" serve --listen 127.0.0.1:0 --workers 1 \
        --max-connections 0 --max-connections-per-client 0 >"$scratch/server.out" 2>/dev/null &
    local pid=$! addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's#^listening on http://\([^ ]*\).*#\1#p' "$scratch/server.out")
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "http2.sh: the server did not start" >&2; exit 1; }
    taskset -c "$load_cpu" "$wsduplex" bench echo "ws://$addr/echo" -c 100 -d 8 -s 32 \
        --threads 1 --warmup "$warmup" --duration "$duration" --json --server-pid "$pid" "$@" \
        >"$scratch/$label.json" || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    jq -r --arg l "$label" \
        '"\($l)\t\(.messages_per_sec | round) msg/s\t\(.server.cpu_ns_per_op | round) ns server CPU/msg\t\(.errors) errors"' \
        "$scratch/$label.json"
}

printf 'label\tthroughput\tserver CPU\terrors\n'
measure http1
measure http1-socket --via-socket
measure http2 --http2
measure http2-x10 --http2 --http2-streams 10
ratio() {
    jq -n --slurpfile a "$scratch/$1.json" --slurpfile b "$scratch/$2.json" \
        '$b[0].server.cpu_ns_per_op / $a[0].server.cpu_ns_per_op * 100 | round / 100'
}
echo "server CPU per message, http2 / http1: $(ratio http1 http2); http2 / http1-socket: $(ratio http1-socket http2)"
