#!/usr/bin/env bash
# The soak test (issue 6, section 4; not part of CI). One `wsduplex serve` holds 10,000
# WebSocket connections for N minutes while they churn and steady traffic flows:
#
#   - the connections: 10 groups of 1,000 (`wsduplex bench idle`, which answers the server's
#     keepalive pings), each closed and reopened in turn, one group every 6 s;
#   - a chat room: one member says 20 messages a second, 4 others receive them;
#   - an /echo client round-trips 20 messages a second.
#
# Every 5 s it records the server's RSS, its open file descriptors (/proc/PID/fd), the
# connections it counts open (/metrics), its CPU time, the messages delivered so far and the
# connections opened so far (churn included), in bench/results/NAME.csv. At the end it draws
# bench/results/NAME.svg (by itself: no gnuplot or matplotlib needed) and checks: memory flat
# once every group has churned, the descriptors back to where they started, every chat
# message delivered to every member once and in order, every echo back, no held connection
# dropped or refused.
#
#   bench/soak.sh                  # 10 minutes, the committed HEAD (built in bench/target/soak)
#   bench/soak.sh --minutes 2      # the run in docs/evidence.md
#   bench/soak.sh --worktree       # the working tree's wsduplex instead
#   bench/soak.sh --bin PATH       # a wsduplex binary already built
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/soak.sh [--minutes N] [--connections N] [--groups N] [--cycle SECONDS]
                     [--every SECONDS] [--rate N] [--worktree | --bin PATH] [--out NAME]

  --minutes N       how long to hold the connections (default 10)
  --connections N   connections held (default 10000)
  --groups N        churn groups: each closes and reopens its share in turn (default 10)
  --cycle SECONDS   how long a group holds its connections before reopening them; a group
                    churns every CYCLE/GROUPS seconds (default 60)
  --every SECONDS   sampling interval (default 5)
  --rate N          chat messages and echoes per second, each (default 20)
  --worktree        build the working tree's wsduplex instead of the committed HEAD
  --bin PATH        use this wsduplex binary (release build advised)
  --out NAME        write bench/results/NAME.{csv,svg} (default soak)
EOF
}

minutes=10 connections=10000 groups=10 cycle=60 every=5 rate=20 worktree=false bin='' out=soak
while [ $# -gt 0 ]; do
    case $1 in
        --minutes) minutes=${2:?}; shift ;;
        --connections) connections=${2:?}; shift ;;
        --groups) groups=${2:?}; shift ;;
        --cycle) cycle=${2:?}; shift ;;
        --every) every=${2:?}; shift ;;
        --rate) rate=${2:?}; shift ;;
        --worktree) worktree=true ;;
        --bin) bin=${2:?}; shift ;;
        --out) out=${2:?}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "soak.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for v in minutes connections groups cycle every rate; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: --$v must be a positive number" >&2; exit 2; }
done
[ $((connections % groups)) = 0 ] || { echo "soak.sh: --groups must divide --connections" >&2; exit 2; }
per_group=$((connections / groups))

bench_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench_dir/.." && pwd)
cd "$repo"
results=$bench_dir/results
mkdir -p "$results"
csv=$results/$out.csv
svg=$results/$out.svg
step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'soak.sh: %s\n' "$*" >&2; exit 1; }

# The server needs a descriptor per connection; each load process holds one group.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((connections + 1000)) ] ||
    die "needs ulimit -n of at least $((connections + 1000)) (hard limit: $(ulimit -Hn))"

# --- build ---------------------------------------------------------------------------------
rev=$(git rev-parse --short HEAD)
if [ -n "$bin" ]; then
    wsduplex=$bin
    rev="($(basename "$bin") given)"
elif $worktree; then
    step "build wsduplex from the working tree"
    cargo build --release --locked -p wsduplex-cli --quiet
    wsduplex=$repo/target/release/wsduplex
    [ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock)" ] || rev="$rev (dirty)"
else
    # Others may be editing the server while this runs: build exactly the committed tree, in
    # a copy of its own (bench/run.sh uses bench/target/head).
    step "build wsduplex $rev (committed HEAD, exported to bench/target/soak)"
    head=$bench_dir/target/soak
    if [ "$(cat "$head/rev" 2>/dev/null)" != "$rev" ]; then
        rm -rf "$head/src"
        mkdir -p "$head/src"
        git archive HEAD | tar -x -C "$head/src"
        echo "$rev" >"$head/rev"
    fi
    CARGO_TARGET_DIR=$head/target cargo build --release --locked --quiet \
        --manifest-path "$head/src/Cargo.toml" -p wsduplex-cli
    wsduplex=$head/target/release/wsduplex
fi
[ -x "$wsduplex" ] || die "no wsduplex binary at $wsduplex"

# --- processes -----------------------------------------------------------------------------
scratch=$(mktemp -d)
server_pid=
pids=()
cleanup() {
    rm -f "$scratch/run"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "start wsduplex serve"
# No per-client limit: every load process connects from 127.0.0.1. Keepalive on, so that
# 10,000 connections are also pinged.
"$wsduplex" serve --listen 127.0.0.1:0 --max-connections 0 --max-connections-per-client 0 \
    --ping-interval 20s >"$scratch/server.out" 2>"$scratch/server.err" &
server_pid=$!
addr=
for _ in $(seq 100); do
    addr=$(sed -n 's#^listening on http://\([^ ]*\).*#\1#p' "$scratch/server.out")
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
done
[ -n "$addr" ] || { cat "$scratch/server.err" >&2; die "the server did not start"; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }
fds() { find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# The request asking is itself an open connection: it is not counted.
open_connections() {
    curl -s --max-time 5 "http://$addr/metrics" |
        awk '$1 == "wsduplex_connections_open" { print $2 - 1; found = 1 } END { if (!found) print "" }'
}
ticks=$(getconf CLK_TCK)
cpu_s() { awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$server_pid/stat"; }
# Messages delivered so far: chat messages received by the 4 members, echoes received.
chat_delivered() { cat "$scratch"/member*.out 2>/dev/null | grep -c '"type":"message"' || true; }
echo_delivered() { wc -l <"$scratch/echo.out" 2>/dev/null || echo 0; }
# Connections opened so far: a group's share each time one of its runs starts.
: >"$scratch/starts"
opened_so_far() { echo $(($(wc -l <"$scratch/starts") * per_group)); }

fds_before=$(fds)
rss_before=$(rss_kib)
start=$(date +%s.%N)
elapsed() { awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f", n - s }'; }
echo "t_s,rss_kib,fds,connections_open,server_cpu_s,chat_delivered,echo_delivered,connections_opened" >"$csv"
sample() {
    printf '%s,%s,%s,%s,%s,%s,%s,%s\n' "$(elapsed)" "$(rss_kib)" "$(fds)" "$(open_connections)" \
        "$(cpu_s)" "$(chat_delivered)" "$(echo_delivered)" "$(opened_so_far)" >>"$csv"
}
sample

# A client whose stdin is a FIFO held open by this script: closing it ends the client cleanly.
fifo_client() { # name url
    mkfifo "$scratch/$1.in"
    "$wsduplex" client --no-deflate "$2" <"$scratch/$1.in" >"$scratch/$1.out" 2>"$scratch/$1.err" &
    pids+=($!)
}
# Writes a line every 1/rate s while the run lasts; its count goes to NAME.sent at the end.
touch "$scratch/run"
pause=$(awk -v r="$rate" 'BEGIN { printf "%.3f", 1 / r }')
feed() { # name format
    local i=0
    while [ -e "$scratch/run" ]; do
        i=$((i + 1))
        # shellcheck disable=SC2059 # the format is ours
        printf "$2\n" "$i"
        sleep "$pause"
    done >"$scratch/$1.in"
    echo "$i" >"$scratch/$1.sent"
}

step "open the chat room and the echo client"
member_fds=()
for m in 1 2 3 4; do
    fifo_client "member$m" "ws://$addr/chat/soak?name=member$m"
    exec {fd}>"$scratch/member$m.in"
    member_fds+=("$fd")
done
for m in 1 2 3 4; do # each member is in the room before anyone speaks
    for _ in $(seq 100); do
        grep -q '"type":"welcome"' "$scratch/member$m.out" 2>/dev/null && break
        sleep 0.05
    done
    grep -q '"type":"welcome"' "$scratch/member$m.out" || die "member$m was not welcomed"
done
fifo_client sender "ws://$addr/chat/soak?name=sender"
fifo_client echo "ws://$addr/echo"
feed sender '{"type":"message","text":"soak %d"}' &
pids+=($!)
feed echo 'echo %d' &
pids+=($!)

step "hold $connections connections in $groups groups of $per_group, churning every $((cycle / groups)) s, for $minutes min"
end=$(($(date +%s) + minutes * 60))
# Group g first holds for (g+1)/groups of a cycle, then a whole cycle each time: the groups
# reopen in turn. Each run's JSON report (opened, failed, dropped) is kept.
group() {
    local g=$1 hold=$((cycle * ($1 + 1) / groups)) remaining
    while :; do
        remaining=$((end - $(date +%s)))
        [ "$remaining" -ge 3 ] || break
        [ "$hold" -le "$remaining" ] || hold=$remaining
        echo "$g" >>"$scratch/starts"
        "$wsduplex" bench idle -c "$per_group" --duration "${hold}s" --threads 1 --json --quiet \
            "ws://$addr/echo" >>"$scratch/idle$g.jsonl" 2>>"$scratch/idle$g.err" ||
            echo "group $g" >>"$scratch/idle.failures"
        hold=$cycle
    done
}
group_pids=()
for g in $(seq 0 $((groups - 1))); do
    group "$g" &
    group_pids+=($!)
done
pids+=("${group_pids[@]}")

while [ "$(date +%s)" -lt "$end" ]; do
    sleep "$every"
    sample
    tail -n 1 "$csv" | awk -F, '{ printf "  %6.0f s  RSS %6.1f MiB  fds %6d  open %6s  opened %7d  chat %7d  echo %6d\n", $1, $2 / 1024, $3, $4, $8, $6, $7 }' >&2
done

step "stop the traffic, let everything close"
rm -f "$scratch/run"
for p in "${group_pids[@]}"; do wait "$p" || true; done
sent=0 echo_sent=0
for _ in $(seq 100); do
    [ -s "$scratch/sender.sent" ] && [ -s "$scratch/echo.sent" ] && break
    sleep 0.1
done
sent=$(cat "$scratch/sender.sent")
echo_sent=$(cat "$scratch/echo.sent")
# Members see the last messages within a moment; then they leave.
for _ in $(seq 100); do
    [ "$(chat_delivered)" -ge $((4 * sent)) ] && [ "$(echo_delivered)" -ge "$echo_sent" ] && break
    sleep 0.1
done
for fd in "${member_fds[@]}"; do
    exec {fd}>&-
done
# Every client gone, every descriptor closed: sampled until the server is back where it began.
drained=false
for _ in $(seq 60); do
    sample
    last=$(tail -n 1 "$csv")
    if [ "$(cut -d, -f3 <<<"$last")" -le "$fds_before" ] && [ "$(cut -d, -f4 <<<"$last")" = 0 ]; then
        drained=true
        break
    fi
    sleep 0.5
done

# --- verdict -------------------------------------------------------------------------------
failures=()
read -r runs opened < <(cat "$scratch"/idle*.jsonl | grep -o '"opened":[0-9]*' |
    awk -F: '{ n++; s += $2 } END { print n + 0, s + 0 }')
[ ! -s "$scratch/idle.failures" ] ||
    failures+=("$(wc -l <"$scratch/idle.failures") group runs failed: $(head -c 300 "$scratch"/idle*.err | tr '\n' ' ')")
for m in 1 2 3 4; do
    # Ids 1..sent, each once, in order: nothing lost, nothing repeated.
    bad=$(grep -o '"type":"message","id":[0-9]*' "$scratch/member$m.out" |
        awk -F: -v n="$sent" '$3 != NR { print "id " $3 " at " NR; exit } END { if (NR != n) print NR " of " n }')
    [ -z "$bad" ] || failures+=("member$m: $bad")
done
got_echo=$(echo_delivered)
[ "$got_echo" = "$echo_sent" ] || failures+=("echo: $got_echo of $echo_sent back")
$drained || failures+=("the server did not drain: $(tail -n 1 "$csv")")
# Memory flat: the steady state is reached once every group has reopened once.
read -r rss_steady rss_max rss_end held_min held_max < <(awk -F, -v c="$cycle" -v w="$((minutes * 60))" '
    NR > 1 && $1 >= c + 5 && $1 <= w { if (!s) s = $2; if ($2 > m) m = $2; e = $2
        if (h == "" || $4 < h) h = $4; if ($4 > H) H = $4 }
    END { print s + 0, m + 0, e + 0, h + 0, H + 0 }' "$csv")
if [ "$rss_steady" -gt 0 ] && [ "$rss_max" -gt $((rss_steady + rss_steady / 10 + 8192)) ]; then
    failures+=("RSS grew from $rss_steady KiB to $rss_max KiB after the first cycle")
fi
fds_after=$(tail -n 1 "$csv" | cut -d, -f3)
kill -TERM "$server_pid"
code=0
wait "$server_pid" || code=$?
server_pid=
[ "$code" = 0 ] || failures+=("the server exited with $code: $(tail -n 3 "$scratch/server.err")")

# --- plot ----------------------------------------------------------------------------------
awk -F, -v rev="$rev" -v minutes="$minutes" -v conns="$connections" '
function x(t) { return 70 + (t / tmax) * 700 }
function panel(top, title, unit, a, b, la, lb,    i, pts, ymax, y) {
    ymax = 0
    for (i = 1; i <= n; i++) { if (a[i] > ymax) ymax = a[i]; if (lb != "" && b[i] > ymax) ymax = b[i] }
    ymax = ymax > 0 ? ymax * 1.15 : 1
    printf "<text x=\"70\" y=\"%d\" font-size=\"13\">%s</text>\n", top - 6, title
    printf "<rect x=\"70\" y=\"%d\" width=\"700\" height=\"120\" fill=\"none\" stroke=\"#999\"/>\n", top
    printf "<text x=\"64\" y=\"%d\" text-anchor=\"end\" font-size=\"11\">%s</text>\n", top + 10, fmt(ymax, unit)
    printf "<text x=\"64\" y=\"%d\" text-anchor=\"end\" font-size=\"11\">0</text>\n", top + 120
    pts = ""
    for (i = 1; i <= n; i++) pts = pts sprintf("%.1f,%.1f ", x(t[i]), top + 120 - a[i] / ymax * 120)
    printf "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"%s\"/>\n", pts
    printf "<text x=\"776\" y=\"%d\" font-size=\"11\" fill=\"#1f77b4\">%s</text>\n", top + 20, la
    if (lb != "") {
        pts = ""
        for (i = 1; i <= n; i++) pts = pts sprintf("%.1f,%.1f ", x(t[i]), top + 120 - b[i] / ymax * 120)
        printf "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\" points=\"%s\"/>\n", pts
        printf "<text x=\"776\" y=\"%d\" font-size=\"11\" fill=\"#d62728\">%s</text>\n", top + 36, lb
    }
    # The end of the hold.
    printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#999\" stroke-dasharray=\"2 3\"/>\n", x(minutes * 60), top, x(minutes * 60), top + 120
}
function fmt(v, unit) { return (v >= 100 ? sprintf("%.0f", v) : sprintf("%.1f", v)) unit }
NR > 1 {
    n++; t[n] = $1; rss[n] = $2 / 1024; fd[n] = $3; open[n] = $4
    d = $6 + $7
    rate[n] = n > 1 && $1 > pt ? (d - pd) / ($1 - pt) : 0
    pt = $1; pd = d
}
END {
    tmax = t[n] > 0 ? t[n] : 1
    print "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"560\" viewBox=\"0 0 900 560\" font-family=\"sans-serif\">"
    print "<rect width=\"900\" height=\"560\" fill=\"#fff\"/>"
    printf "<text x=\"450\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">wsduplex %s: %d connections for %d min, with churn and chat traffic</text>\n", rev, conns, minutes
    panel(60, "server RSS", " MiB", rss, rss, "RSS", "")
    panel(220, "server file descriptors and connections open", "", fd, open, "descriptors", "connections")
    panel(380, "messages delivered per second (chat members + echo)", "/s", rate, rate, "delivered", "")
    for (s = 0; s <= 4; s++) {
        printf "<text x=\"%.1f\" y=\"518\" text-anchor=\"middle\" font-size=\"11\">%.0f s</text>\n", x(tmax * s / 4), tmax * s / 4
    }
    print "<text x=\"420\" y=\"540\" text-anchor=\"middle\" font-size=\"11\">time since the server started (dotted: the end of the hold, then everything closes)</text>"
    print "</svg>"
}' "$csv" >"$svg"

step "result"
cat <<EOF
wsduplex $rev, $minutes min, $connections connections in $groups groups (one reopened every $((cycle / groups)) s)
  connections open after the first cycle: $held_min to $held_max; $opened opened in $runs group runs
  server RSS: $rss_before KiB before, $rss_steady KiB after the first cycle, at most $rss_max KiB after it, $rss_end KiB at the end of the hold
  descriptors: $fds_before before, $fds_after once everything had closed
  chat: $sent messages sent, $(chat_delivered) delivered to 4 members
  echo: $echo_sent sent, $got_echo back
  server CPU: $(tail -n 1 "$csv" | cut -d, -f5) s
  $csv
  $svg
EOF
if [ ${#failures[@]} -gt 0 ]; then
    printf 'soak.sh: FAILED: %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "ok: memory flat, no descriptor leaked, every chat message delivered once and in order, every echo back, no connection dropped"
