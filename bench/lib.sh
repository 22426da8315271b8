# Shell functions the benchmark scripts share (run.sh, fanout.sh), sourced by them:
#   . "$bench_dir/lib.sh"
# wait_for_quiet reads $quiet_idle, $quiet_wait and $quiet_budget from the caller, spends
# from $quiet_budget, and leaves the idle share it last saw in $quiet.

# Percent of the machine's CPU time that was idle over the next half second.
idle_percent() {
    local a b
    read -r -a a < <(head -1 /proc/stat)
    sleep 0.5
    read -r -a b < <(head -1 /proc/stat)
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    echo $(((b[4] + b[5] - a[4] - a[5]) * 100 / (total > 0 ? total : 1)))
}
# On a shared machine, start each measurement once others' builds and tests leave the cores
# mostly idle: at most $quiet_wait s each and $quiet_budget s in all, so a busy machine slows
# the run by minutes, not hours. The idle share is recorded with the measurement.
wait_for_quiet() {
    quiet=$(idle_percent)
    local waited=0
    while [ "$quiet" -lt "$quiet_idle" ] && [ "$waited" -lt "$quiet_wait" ] &&
        [ "$quiet_budget" -gt 0 ]; do
        sleep 1.5
        waited=$((waited + 2))
        quiet_budget=$((quiet_budget - 2))
        quiet=$(idle_percent)
    done
}
