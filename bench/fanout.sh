#!/usr/bin/env bash
# The hub's fan-out (issue 16 §5, issue 18 §2), measured with `wsduplex bench fanout`. Like
# run.sh, each measurement gets a fresh server pinned to one core and the load generator (one
# thread) pinned to another, and servers are interleaved run by run (the order rotated):
#
#   rooms   wsduplex serve alone: one connection following 100 rooms against 100
#           connections in one room each, one publisher in all 100 rooms, the same rate
#           (--rooms-rate); server CPU per delivery and the ratio of the two, run by run
#   room    a room of --members (10,000) members and one publisher sending `data` at
#           --rate: wsduplex serve against uWebSockets' room server (room-server.cpp, its
#           own publish/subscribe, built by uws.sh --room); server CPU per delivery and the
#           ratio wsduplex / uWebSockets, run by run. The rate is low (5 messages/s, 50,000
#           deliveries/s) so that both servers keep up: one that falls behind sends several
#           messages per sendto, and its figure then follows the machine's load
#           (bench/results/fanout.md)
#
# wsduplex runs as `serve --workers 1 --max-connections 0 --max-connections-per-client 0
# --send-queue 65536` (a member queue long enough for every `joined` of 10,000 joins).
# Prints a markdown table and the ratios; the raw reports go to --out (JSON lines).
#
#   cargo build --release -p wsduplex-cli && bench/fanout.sh [--runs 3] [--quick]
#       [--scenarios rooms,room] [--members 10000] [--rate 5] [--rooms-rate 10000]
#       [--duration 5s] [--warmup 1s] [--out FILE] [--no-wait] [--serve-arg ARG ...]
#   --serve-arg ARG: one more argument for `wsduplex serve` (repeat it: --serve-arg
#   --park-idle --serve-arg 0)
#   --quick: one run, 1 s after 0.2 s of warm-up, 1,000 members (a check that it all works)
#   As run.sh, each measurement first waits (10 s at most, 3 minutes in all; --no-wait: not
#   at all) for the CPUs to be 80% idle, and records the idle share it saw.
set -euo pipefail
bench_dir=$(cd "$(dirname "$0")" && pwd)
# idle_percent, wait_for_quiet
. "$bench_dir/lib.sh"
root=$(cd "$bench_dir/.." && pwd)
wsduplex=${WSDUPLEX:-$root/target/release/wsduplex}
server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
runs=3 duration=5s warmup=1s members=10000 rate=5 rooms_rate=10000 scenarios=rooms,room
quiet_wait=10 quiet_budget=180 quiet_idle=80
out=$bench_dir/results/fanout.jsonl
serve_args=()
die() { printf 'fanout.sh: %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift ;;
        --duration) duration=$2; shift ;;
        --warmup) warmup=$2; shift ;;
        --members) members=$2; shift ;;
        --rate) rate=$2; shift ;;
        --rooms-rate) rooms_rate=$2; shift ;;
        --scenarios) scenarios=$2; shift ;;
        --out) out=$2; shift ;;
        --quick) runs=1 duration=1s warmup=200ms members=1000 ;;
        --no-wait) quiet_budget=0 ;;
        --serve-arg) serve_args+=("$2"); shift ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fanout.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number"
[ -x "$wsduplex" ] || die "build $wsduplex first (cargo build --release -p wsduplex-cli)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
command -v jq >/dev/null || die "jq not found"
# Every member is a descriptor in the load generator and one in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((members + 100)) ] ||
    die "--members $members needs ulimit -n of at least $((members + 100)) (hard limit: $(ulimit -Hn))"

servers=(wsduplex)
if [[ ,$scenarios, == *,room,* ]]; then
    code=0
    bash "$bench_dir/uws.sh" "$bench_dir/target/bin/uws-room" --room || code=$?
    if [ "$code" = 0 ]; then
        servers=(wsduplex uwebsockets)
    elif [ "$code" = 3 ]; then
        echo "fanout.sh: WARNING: no uWebSockets sources: the room scenario runs wsduplex alone" >&2
    else
        die "cannot build uWebSockets' room server (uws.sh --room exit $code)"
    fi
fi

scratch=$(mktemp -d)
server_pid=
stop_server() {
    [ -n "$server_pid" ] || return 0
    # A hub of 10,000 members announces every leave to the rest: do not wait for that.
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
trap 'stop_server; rm -rf "$scratch"' EXIT

free_port() {
    if [ -x "$bench_dir/target/release/free-port" ]; then
        "$bench_dir/target/release/free-port"
    else
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    fi
}

# Starts server $1 on the server core; sets server_pid and base (the rooms' URL base).
start_server() {
    : >"$scratch/server.out"
    case $1 in
        wsduplex)
            taskset -c "$server_cpu" "$wsduplex" serve --listen 127.0.0.1:0 --workers 1 \
                --max-connections 0 --max-connections-per-client 0 --send-queue 65536 \
                "${serve_args[@]}" >"$scratch/server.out" 2>"$scratch/server.err" &
            server_pid=$!
            local addr=
            for _ in $(seq 100); do
                addr=$(sed -n 's#^listening on http://\([^ ]*\).*#\1#p' "$scratch/server.out")
                [ -n "$addr" ] && break
                sleep 0.05
            done
            [ -n "$addr" ] || { cat "$scratch/server.err" >&2; die "wsduplex serve did not start"; }
            base=ws://$addr/chat
            ;;
        uwebsockets)
            local attempt port
            for attempt in 1 2 3 4 5; do
                port=$(free_port)
                taskset -c "$server_cpu" "$bench_dir/target/bin/uws-room" "$port" \
                    >"$scratch/server.out" 2>"$scratch/server.err" &
                server_pid=$!
                for _ in $(seq 100); do
                    grep -qx "Listening on port $port" "$scratch/server.out" && { base=ws://127.0.0.1:$port; return 0; }
                    kill -0 "$server_pid" 2>/dev/null || break
                    sleep 0.05
                done
                echo "fanout.sh: uws-room did not listen on port $port (attempt $attempt of 5)" >&2
                stop_server
            done
            die "uws-room did not start"
            ;;
    esac
}

# measure LABEL SERVER BENCH-ARGS...: one measurement, its report appended to $out.
measure() {
    local label=$1 server=$2
    shift 2
    wait_for_quiet
    start_server "$server"
    local protocol=hub
    [ "$server" = uwebsockets ] && protocol=relay
    local code=0
    taskset -c "$load_cpu" "$wsduplex" bench fanout "$base" --protocol "$protocol" "$@" \
        --threads 1 --warmup "$warmup" --duration "$duration" --json --quiet \
        --server-pid "$server_pid" >"$scratch/result.json" 2>"$scratch/bench.err" || code=$?
    stop_server
    local result
    result=$(tail -n 1 "$scratch/result.json")
    [ -n "$result" ] || result=null
    jq -cn --arg lab "$label" --arg srv "$server" --argjson run "$run" --argjson exit "$code" \
        --argjson idle "$quiet" --argjson result "$result" \
        '{"label": $lab, "server": $srv, "run": $run, "exit": $exit, "idle_before": $idle, "result": $result}' >>"$out"
    if [ "$code" != 0 ]; then
        echo "fanout.sh: FAILED ($label on $server, run $run, exit $code):" >&2
        sed 's/^/    /' "$scratch/bench.err" >&2
        failures=$((failures + 1))
    fi
    jq -r --arg l "$label" --arg s "$server" --arg r "$run" --arg q "$quiet" 'select(. != null) |
        "| \($r) | \($l) | \($s) | \($q)% | \(.messages_per_sec | round) | \(.deliveries_per_sec | round) | \(.server.cpu_ns_per_op // 0 | round) | \(.latency.p50_us // 0 | round) | \(.latency.p99_us // 0 | round) | \(.lost + .duplicated + .out_of_order + .mismatches) | \(.load.busy * 100 | round)% |"' \
        "$scratch/result.json" 2>/dev/null || echo "| $run | $label | $server | $quiet% | failed |"
}

mkdir -p "$(dirname "$out")"
: >"$out"
failures=0
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "fanout.sh at $rev, $(date -u +%Y-%m-%dT%H:%MZ), $runs run(s), ${duration} after ${warmup} warm-up, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | scenario | server | idle before | messages/s | deliveries/s | server ns CPU per delivery | p50 µs | p99 µs | lost+dup+ooo | load busy |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for run in $(seq "$runs"); do
    if [[ ,$scenarios, == *,rooms,* ]]; then
        # Alternate which shape goes first.
        if [ $((run % 2)) = 1 ]; then order=(one many); else order=(many one); fi
        for shape in "${order[@]}"; do
            case $shape in
                one) measure 1x100-rooms wsduplex -c 1 --rooms-per-connection 100 --rate "$rooms_rate" ;;
                many) measure 100x1-room wsduplex -c 100 --rooms 100 --rate "$rooms_rate" ;;
            esac
        done
    fi
    if [[ ,$scenarios, == *,room,* ]]; then
        n=${#servers[@]}
        for i in $(seq 0 $((n - 1))); do
            s=${servers[$(((i + run - 1) % n))]}
            measure "room-$members" "$s" -c "$members" --rate "$rate"
        done
    fi
done
echo
# The ratios, run by run (server CPU per delivery).
jq -rs --arg m "room-$members" '
  def cpu(l; s; r): [.[] | select(.label == l and .server == s and .run == r and .exit == 0) | .result.server.cpu_ns_per_op][0];
  (map(.run) | unique) as $runs
  | ([$runs[] as $r | (cpu("1x100-rooms"; "wsduplex"; $r) as $a | cpu("100x1-room"; "wsduplex"; $r) as $b
       | select($a != null and $b != null) | "run \($r): 1 connection × 100 rooms / 100 connections × 1 room = \($a / $b * 100 | round / 100)")]
     + [$runs[] as $r | (cpu($m; "wsduplex"; $r) as $a | cpu($m; "uwebsockets"; $r) as $b
       | select($a != null and $b != null) | "run \($r): \($m) wsduplex / uWebSockets = \($a / $b * 100 | round / 100)")])[]' "$out"
[ "$failures" = 0 ] || die "$failures measurement(s) failed (recorded in $out)"
