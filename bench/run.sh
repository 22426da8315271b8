#!/usr/bin/env bash
# The side-by-side benchmark, in one command: builds wsduplex (from the committed HEAD) and
# the peers' echo servers (uWebSockets' from its sources outside the repository, see
# WSDUPLEX_UWS_DIR below), runs scenarios A–F with every server in turn, and writes
# bench/results/NAME.{jsonl,md,svg}. See bench/README.md.
#
#   bench/run.sh                 # 5 runs of everything, 16-21 min, writes results/latest.*
#   bench/run.sh --quick         # 1 short run, ~3 min, writes results/quick.*
#   bench/run.sh --runs 3 --scenarios AC --servers wsduplex,raw-tcp --worktree --out mine
#   bench/run.sh --runs 3 --servers uwebsockets,wsduplex,raw-tcp --out uws
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/run.sh [--runs N] [--quick] [--scenarios ABCDEF] [--servers LIST] [--worktree]
                    [--out NAME]

  --runs N          runs per scenario and server (default 5)
  --quick           1 run, 1 s measured after 0.2 s of warm-up (default: 5 s after 1 s)
  --scenarios S     the scenarios to run, e.g. AC (default ABCDEF): A 100 connections × 8
                    in flight, B 64 KiB messages, C one round trip, D 10,000 idle
                    connections, E handshakes, F 10,000 connections × 1 in flight
  --servers LIST    comma-separated, from: wsduplex,uwebsockets,tokio-tungstenite,
                    fastwebsockets,raw-tcp (default: all of them)
  --worktree        benchmark the working tree's wsduplex instead of the committed HEAD
  --out NAME        write bench/results/NAME.{jsonl,md,svg} (default latest; quick with --quick)
  --no-wait         start each measurement at once, even if the machine is busy (by default
                    it waits up to 10 s for the CPUs to be 80% idle, 3 minutes in all)

environment: BENCH_SERVER_CPU (default 0) and BENCH_LOAD_CPU (default 1), the cores to pin
the server and the load generator to. WSDUPLEX_UWS_DIR: uWebSockets' sources and build.sh
(default: the repository's ../shared/peers/uwebsockets, then /work/shared/peers/uwebsockets);
without them uwebsockets is left out, with a warning. Building it needs g++ and zlib1g-dev
(installed with apt-get when missing and run as root).
EOF
}

runs=5 quick=false scenarios=ABCDEF worktree=false out= quiet_wait=10 quiet_budget=180 quiet_idle=80
default_servers=wsduplex,uwebsockets,tokio-tungstenite,fastwebsockets,raw-tcp
servers=$default_servers
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --quick) quick=true ;;
        --scenarios) scenarios=${2:?--scenarios needs letters}; shift ;;
        --servers) servers=${2:?--servers needs a list}; shift ;;
        --worktree) worktree=true ;;
        --out) out=${2:?--out needs a name}; shift ;;
        --no-wait) quiet_budget=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
# D's hold is long enough for wsduplex to park its idle connections (after 1 to 2 s idle,
# serve --park-idle) and for jemalloc to return what they freed (within 1 s): the memory
# an idle connection holds, not the peak of the burst that opened them. The other servers
# hold nothing more for waiting longer.
if $quick; then
    runs=1 warmup=200ms duration=1s idle_hold=4s out=${out:-quick}
else
    warmup=1s duration=5s idle_hold=5s out=${out:-latest}
fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs must be a positive number" >&2; exit 2; }
[[ $scenarios =~ ^[A-F]+$ ]] || { echo "run.sh: --scenarios takes letters A to F" >&2; exit 2; }
IFS=, read -r -a server_list <<<"$servers"
for s in "${server_list[@]}"; do
    case $s in
        wsduplex|uwebsockets|tokio-tungstenite|fastwebsockets|raw-tcp) ;;
        *) echo "run.sh: unknown server $s" >&2; exit 2 ;;
    esac
done
# D holds this many idle connections, and F echoes on as many.
idle_connections=10000
server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}

bench_dir=$(cd "$(dirname "$0")" && pwd)
# idle_percent, wait_for_quiet
. "$bench_dir/lib.sh"
repo=$(cd "$bench_dir/.." && pwd)
cd "$repo"
results=$bench_dir/results
mkdir -p "$results"
jsonl=$results/$out.jsonl
tmp=$jsonl.tmp
step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
start=$SECONDS

command -v taskset >/dev/null || die "taskset not found (util-linux)"
cores=$(nproc --all)
[ "$server_cpu" != "$load_cpu" ] || die "server and load generator share core $server_cpu"
[ "$server_cpu" -lt "$cores" ] && [ "$load_cpu" -lt "$cores" ] ||
    die "cores $server_cpu and $load_cpu needed, this machine has $cores"
if [[ $scenarios == *[DF]* ]]; then
    # D and F hold 10,000 connections: the server and the load generator each need a
    # descriptor per connection, and both inherit this limit.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((idle_connections + 100)) ] ||
        die "scenarios D and F need ulimit -n of at least $((idle_connections + 100)) (hard limit: $(ulimit -Hn))"
fi

# --- build ---------------------------------------------------------------------------------
bin=$bench_dir/target/bin
mkdir -p "$bin"
rev=$(git rev-parse --short HEAD)
dirty=false
if $worktree; then
    step "build wsduplex from the working tree"
    cargo build --release --locked -p wsduplex-cli --quiet
    cp target/release/wsduplex "$bin/wsduplex"
    [ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock)" ] || dirty=true
else
    # Others may be editing the server while this runs: build exactly the committed tree,
    # in a copy, so the figures belong to $rev and nothing else.
    step "build wsduplex $rev (committed HEAD, exported to bench/target/head)"
    head=$bench_dir/target/head
    # The export is keyed by the trees that build the server, not by the commit: a commit
    # that only changes bench/, .ci/, docs/ or README.md reuses the last build (a fresh
    # export has fresh mtimes, and cargo would rebuild everything).
    key=$(git ls-tree HEAD | awk -F'\t' '$2 !~ /^(bench|\.ci|docs|README\.md)$/' | git hash-object --stdin)
    if [ "$(cat "$head/rev" 2>/dev/null)" != "$key" ]; then
        rm -rf "$head/src"
        mkdir -p "$head/src"
        git archive HEAD | tar -x -C "$head/src"
        echo "$key" >"$head/rev"
    fi
    # From inside the copy: its .cargo/config.toml (jemalloc's settings) applies.
    (cd "$head/src" && CARGO_TARGET_DIR=$head/target cargo build --release --locked --quiet \
        -p wsduplex-cli)
    cp "$head/target/release/wsduplex" "$bin/wsduplex"
fi
step "build the peers' echo servers and the report (bench/Cargo.toml)"
cargo build --release --locked --quiet --manifest-path "$bench_dir/Cargo.toml"
peers=$bench_dir/target/release
wsduplex=$bin/wsduplex
uws_version=
if [[ " ${server_list[*]} " == *" uwebsockets "* ]]; then
    step "build uWebSockets' echo server (bench/uws.sh)"
    code=0
    bash "$bench_dir/uws.sh" "$bin/uws-echo" || code=$?
    if [ "$code" = 3 ]; then
        # uws.sh said where it looked; say what that means for this run.
        printf 'run.sh: WARNING: running without uwebsockets, the leader: no ratios to it in this report\n' >&2
        kept=()
        for s in "${server_list[@]}"; do [ "$s" = uwebsockets ] || kept+=("$s"); done
        server_list=("${kept[@]}")
        [ ${#server_list[@]} -gt 0 ] || die "no server left to run"
    elif [ "$code" != 0 ]; then
        die "cannot build uWebSockets' echo server (bench/uws.sh exit $code)"
    else
        uws_version=$(cat "$bin/uws-echo.version" 2>/dev/null || true)
    fi
fi

# --- servers -------------------------------------------------------------------------------
scratch=$(mktemp -d)
server_pid=
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
bench_pid=
cleanup() {
    if [ -n "$bench_pid" ]; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        wait "$bench_pid" 2>/dev/null || true
    fi
    stop_server
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# uWebSockets' echo server binds the port on its command line (it cannot pick one): take a
# port that was free a moment ago and retry with another if the server does not come up
# (it exits without a word when the bind fails). Sets server_pid and server_addr.
start_uws() {
    local attempt port
    for attempt in 1 2 3 4 5; do
        port=$("$peers/free-port") || die "free-port failed"
        : >"$scratch/server.out"
        taskset -c "$server_cpu" "$bin/uws-echo" "$port" >"$scratch/server.out" 2>"$scratch/server.err" &
        server_pid=$!
        for _ in $(seq 100); do
            if grep -qx "Listening on port $port" "$scratch/server.out"; then
                server_addr=127.0.0.1:$port
                return 0
            fi
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.05
        done
        echo "run.sh: uwebsockets did not listen on port $port (attempt $attempt of 5)" >&2
        stop_server
    done
    cat "$scratch/server.err" >&2
    die "uwebsockets did not start ($bin/uws-echo PORT)"
}

# Starts server $1 pinned to the server core; sets server_pid and server_addr.
start_server() {
    local cmd
    case $1 in
        uwebsockets) start_uws; return ;;
        wsduplex) cmd=("$wsduplex" serve --listen 127.0.0.1:0 --workers 1 --max-connections 0 --max-connections-per-client 0) ;;
        tokio-tungstenite) cmd=("$peers/tungstenite-echo" 127.0.0.1:0) ;;
        fastwebsockets) cmd=("$peers/fastwebsockets-echo" 127.0.0.1:0) ;;
        raw-tcp) cmd=("$peers/raw-tcp-echo" 127.0.0.1:0) ;;
    esac
    : >"$scratch/server.out"
    taskset -c "$server_cpu" "${cmd[@]}" >"$scratch/server.out" 2>"$scratch/server.err" &
    server_pid=$! # taskset execs the server: this is the server's pid
    server_addr=
    for _ in $(seq 100); do
        server_addr=$(sed -n 's#^listening on http://\([^ ]*\).*#\1#p' "$scratch/server.out")
        [ -n "$server_addr" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "run.sh: $1 did not start (${cmd[*]}):" >&2
    cat "$scratch/server.err" >&2
    exit 1
}

scenario_args() {
    case $1 in
        A) echo "echo -c 100 -d 8 -s 32 --warmup $warmup --duration $duration" ;;
        B) echo "echo -c 10 -d 4 -s 65536 --binary --warmup $warmup --duration $duration" ;;
        C) echo "echo -c 1 -d 1 -s 32 --warmup $warmup --duration $duration" ;;
        D) echo "idle -c $idle_connections --duration $idle_hold" ;;
        E) echo "connect -c 50 --warmup $warmup --duration $duration" ;;
        # A's message on 10,000 connections: one in flight each (the least there can be),
        # so each message is a wakeup of its own and per-connection costs show.
        F) echo "echo -c $idle_connections -d 1 -s 32 --warmup $warmup --duration $duration" ;;
    esac
}

# --- run -----------------------------------------------------------------------------------
version() { # a package's version in bench/Cargo.lock
    awk -v name="$1" '$1 == "name" && $3 == "\"" name "\"" { getline; gsub(/"/, "", $3); print $3; exit }' \
        "$bench_dir/Cargo.lock"
}
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
command_line="bench/run.sh"
$quick && command_line+=" --quick"
[ "$runs" = 5 ] || $quick || command_line+=" --runs $runs"
[ "$scenarios" = ABCDEF ] || command_line+=" --scenarios $scenarios"
[ "$servers" = "$default_servers" ] || command_line+=" --servers $servers"
$worktree && command_line+=" --worktree"
[ "$out" = "$($quick && echo quick || echo latest)" ] || command_line+=" --out $out"
{
    printf '{"meta":{"rev":%s,"dirty":%s,"date":%s,"cpu":%s,"cores":%s,"kernel":%s,' \
        "$(json_str "$rev")" "$dirty" "$(json_str "$(date -u +%Y-%m-%dT%H:%MZ)")" \
        "$(json_str "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)")" \
        "$cores" "$(json_str "$(uname -r)")"
    printf '"loadavg":%s,"rustc":%s,"runs":%s,"quick":%s,"warmup":%s,"duration":%s,' \
        "$(json_str "$(cut -d' ' -f1-3 /proc/loadavg)")" "$(json_str "$(rustc --version)")" "$runs" "$quick" \
        "$(json_str "$warmup")" "$(json_str "$duration")"
    printf '"idle_connections":%s,"idle_hold":%s,"server_cpu":%s,"load_cpu":%s,"command":%s,' \
        "$(json_str "$idle_connections")" "$(json_str "$idle_hold")" \
        "$(json_str "$server_cpu")" "$(json_str "$load_cpu")" "$(json_str "$command_line")"
    printf '"peers":{"uwebsockets":%s,"tokio-tungstenite":%s,"tungstenite":%s,"fastwebsockets":%s,"hyper":%s,"tokio":%s}}}\n' \
        "$(json_str "$uws_version")" "$(json_str "$(version tokio-tungstenite)")" "$(json_str "$(version tungstenite)")" \
        "$(json_str "$(version fastwebsockets)")" "$(json_str "$(version hyper)")" \
        "$(json_str "$(version tokio)")"
} >"$tmp"

failures=0
total=0
for sc in $(grep -o . <<<"$scenarios"); do
    for s in "${server_list[@]}"; do
        [ "$sc" = D ] && [ "$s" = raw-tcp ] && continue
        total=$((total + runs))
    done
done
done_count=0
step "wsduplex $rev$($dirty && echo ' (dirty)'): scenarios $scenarios × $runs run(s), $total measurements"
for sc in $(grep -o . <<<"$scenarios"); do
    for run in $(seq "$runs"); do
        # Rotate the order each run so no server always follows the same neighbour.
        n=${#server_list[@]}
        for i in $(seq 0 $((n - 1))); do
            s=${server_list[$(((i + run - 1) % n))]}
            # The raw echo's memory says nothing about WebSocket servers (see bench/README.md).
            [ "$sc" = D ] && [ "$s" = raw-tcp ] && continue
            done_count=$((done_count + 1))
            wait_for_quiet
            start_server "$s"
            # shellcheck disable=SC2046 # word splitting of the scenario's arguments is wanted
            # In the background and waited for, so that a signal stops the run at once.
            taskset -c "$load_cpu" "$wsduplex" bench $(scenario_args "$sc") \
                "ws://$server_addr/echo" --threads 1 --json --quiet --server-pid "$server_pid" \
                >"$scratch/result.json" 2>"$scratch/bench.err" &
            bench_pid=$!
            code=0
            wait "$bench_pid" || code=$?
            bench_pid=
            alive=true
            kill -0 "$server_pid" 2>/dev/null || alive=false
            stop_server
            result=$(tail -n 1 "$scratch/result.json")
            [ -n "$result" ] || result=null
            printf '{"scenario":"%s","server":"%s","run":%s,"exit":%s,"server_alive":%s,"idle_before":%s,"result":%s}\n' \
                "$sc" "$s" "$run" "$code" "$alive" "$quiet" "$result" >>"$tmp"
            summary=$(grep -o '"\(messages_per_sec\|mb_per_sec\|handshakes_per_sec\|p50_us\|cpu_ns_per_op\|bytes_per_connection\)":[0-9.]*' \
                "$scratch/result.json" | sed 's/"//g; s/\(\.[0-9]\)[0-9]*/\1/' | awk -F: '!seen[$1]++' | tr '\n' ' ' || true)
            printf '[%3d/%d] %s run %d %-18s (idle before: %3d%%) %s\n' \
                "$done_count" "$total" "$sc" "$run" "$s" "$quiet" "$summary" >&2
            if [ "$code" != 0 ] || ! $alive; then
                failures=$((failures + 1))
                echo "run.sh: FAILED ($s, scenario $sc, run $run, exit $code, server alive: $alive):" >&2
                sed 's/^/    /' "$scratch/bench.err" >&2
            fi
        done
    done
done
printf '{"end":{"secs":%s,"failures":%s}}\n' "$((SECONDS - start))" "$failures" >>"$tmp"
mv "$tmp" "$jsonl"

step "report"
"$peers/report" "$jsonl"
step "done in $((SECONDS - start)) s: $results/$out.md"
[ "$failures" = 0 ] || die "$failures measurement(s) failed (recorded as such in $out.jsonl)"
