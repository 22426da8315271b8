#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, default 600; CI runs
# `fuzz/run.sh 20`. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz --locked`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Seeds are fuzz/corpus/<target> (checked in, never written to). What the fuzzer finds is
# kept in fuzz/work/<target> (not in git) and reused by the next run; a crash, hang or
# memory blow-up leaves its input in fuzz/artifacts/<target>/ and fails the run after every
# target has had its turn. Reproduce one with
# `WSDUPLEX_FUZZ_TRACE=1 cargo +nightly fuzz run <target> <file>`. Finding no target, or a
# target that executes no input, fails the run too: a gate that fuzzed nothing must not pass.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
seconds=${1:-600}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz/run.sh: SECONDS must be a whole number above 0, not '$seconds'" >&2
  exit 2
fi
[ $# -gt 0 ] && shift
targets=()
if [ $# -gt 0 ]; then
  targets=("$@")
else
  # Into a variable first: a failing `cargo fuzz list` then stops the run (set -e), which
  # it would not inside a process substitution.
  list=$(cargo +nightly fuzz list)
  while IFS= read -r t; do [ -n "$t" ] && targets+=("$t"); done <<<"$list"
fi
# Zero targets would print an empty table and pass: a gate that checked nothing.
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz/run.sh: no fuzz targets found (cargo fuzz list printed none): nothing was fuzzed" >&2
  exit 1
fi

# cargo fuzz has no --locked: refuse a stale fuzz/Cargo.lock the way --locked would, so the
# build below resolves nothing new.
cargo +nightly fetch --locked --quiet --manifest-path fuzz/Cargo.toml
cargo +nightly fuzz build >/dev/null

failed=()
printf '%-26s %8s %12s %10s %8s %8s  %s\n' target seconds execs execs/s corpus rss result
for t in "${targets[@]}"; do
  work=fuzz/work/$t
  mkdir -p "$work"
  log=fuzz/work/$t.log
  # Handshake heads may be up to 16 KiB: let inputs grow past the limits.
  case $t in handshake_*) max_len=20000 ;; *) max_len=8192 ;; esac
  result=ok
  # -timeout: one input running longer is a hang; -malloc_limit_mb: one allocation larger
  # is a failed size limit (the targets allow at most a few MiB).
  if ! cargo +nightly fuzz run "$t" "$work" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
      -max_len=$max_len -print_final_stats=1 >"$log" 2>&1; then
    result="FAILED (see $log and fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  # A run that exits 0 without executing any input (no stats, or zero) tested nothing.
  execs=$(stat number_of_executed_units)
  if [ "$result" = ok ] && ! [[ $execs =~ ^[1-9][0-9]*$ ]]; then
    result="FAILED (no input executed; see $log)"
    failed+=("$t")
  fi
  printf '%-26s %8s %12s %10s %8s %8s  %s\n' "$t" "$seconds" "$execs" \
    "$(stat average_exec_per_sec)" "$(find "$work" -type f | wc -l)" "$(stat peak_rss_mb)MB" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found failures in: ${failed[*]}" >&2
  for t in "${failed[@]}"; do grep -m1 -B2 -A12 "panicked\|ERROR: libFuzzer\|SUMMARY" "fuzz/work/$t.log" >&2 || tail -20 "fuzz/work/$t.log" >&2; done
  exit 1
fi
echo "fuzzed ${#targets[@]} target(s) for $seconds s each: no failures"
