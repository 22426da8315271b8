#!/usr/bin/env bash
# Builds uWebSockets' echo server, the benchmark peer to beat, for bench/run.sh and CI (with
# --room: its room server on uWebSockets' publish/subscribe, for bench/fanout.sh). Its
# sources are in no registry and live outside this repository (see bench/README.md):
#
#   WSDUPLEX_UWS_DIR   the directory holding build.sh, echo-server.cpp, uWebSockets/ and
#                      uSockets/; by default the repository's ../shared/peers/uwebsockets,
#                      then /work/shared/peers/uwebsockets
#
# usage: bench/uws.sh [OUTPUT] [--room]   (default bench/target/bin/uws-echo, with --room
#        bench/target/bin/uws-room)
#
# Exit status: 0 built (or already built from the same sources, compiler and CPU), 3 the
# sources are absent (a warning says where it looked; callers leave uWebSockets out), 1 any
# other failure. Needs g++ and zlib's headers: installed with apt-get when missing and run
# as root, otherwise it says which packages to install.
set -euo pipefail
bench_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench_dir/.." && pwd)
room=false
args=()
for a in "$@"; do
    if [ "$a" = --room ]; then room=true; else args+=("$a"); fi
done
if $room; then
    out=${args[0]:-$bench_dir/target/bin/uws-room} source=room-server.cpp build_flag=--room
else
    out=${args[0]:-$bench_dir/target/bin/uws-echo} source=echo-server.cpp build_flag=
fi
die() { printf 'uws.sh: %s\n' "$*" >&2; exit 1; }

if [ -n "${WSDUPLEX_UWS_DIR:-}" ]; then
    candidates=("$WSDUPLEX_UWS_DIR")
else
    candidates=("$repo/../shared/peers/uwebsockets" /work/shared/peers/uwebsockets)
fi
dir=
for d in "${candidates[@]}"; do
    if [ -f "$d/build.sh" ] && [ -f "$d/$source" ]; then
        dir=$(cd "$d" && pwd)
        break
    fi
done
if [ -z "$dir" ]; then
    printf 'warning: uWebSockets sources not found (looked for build.sh and %s in: %s; set WSDUPLEX_UWS_DIR): uwebsockets is left out\n' \
        "$source" "${candidates[*]}" >&2
    exit 3
fi

# The compiler and zlib's headers (build.sh links with -lz).
has_toolchain() {
    command -v g++ >/dev/null && command -v gcc >/dev/null &&
        printf '#include <zlib.h>\n' | g++ -E -x c++ - >/dev/null 2>&1
}
if ! has_toolchain; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        printf 'uws.sh: installing g++ and zlib1g-dev (apt-get)\n' >&2
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends g++ zlib1g-dev >/dev/null
    fi
    has_toolchain || die "building uWebSockets needs g++ and zlib's headers: apt-get install g++ zlib1g-dev"
fi

# build.sh takes about a minute: rebuild only when the sources, the compiler or the CPU
# (-march=native) changed.
stamp=$({
    find "$dir" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.sh' \) -print0 |
        sort -z | xargs -0 sha256sum | sed "s#  $dir/#  #"
    g++ --version | head -1
    grep -m1 '^model name' /proc/cpuinfo || true
    # The room server's stamp differs from the echo server's (the echo server's is as before).
    if $room; then echo "$source"; fi
} | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    printf 'uws.sh: %s is up to date (uWebSockets %s)\n' "$out" "$(cat "$out.version" 2>/dev/null)" >&2
    exit 0
fi
mkdir -p "$(dirname "$out")"
log=$(bash "$dir/build.sh" "$out.new" ${build_flag:+"$build_flag"} 2>&1) || { printf '%s\n' "$log" >&2; die "$dir/build.sh failed"; }
mv "$out.new" "$out"
# build.sh ends with "built OUT from echo-server.cpp (uWebSockets 66dcff3, uSockets 86097c4); ..."
sed -n 's/.*(uWebSockets \([0-9a-f]*\),.*/\1/p' <<<"$log" | head -1 >"$out.version"
printf '%s\n' "$stamp" >"$out.stamp"
printf 'uws.sh: built %s from %s (uWebSockets %s)\n' "$out" "$dir" "$(cat "$out.version")" >&2
