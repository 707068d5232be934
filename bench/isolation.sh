#!/usr/bin/env bash
# Isolation (release build, 127.0.0.1 only): /v1/client/stats latency (wrk, p50/p99) idle, then
# while two clients keep downloading a large log file with gzip and 1,000 followers are
# attached to another file. Idle and loaded runs alternate, ROUNDS times; medians reported.
# See bench/README.md. Writes bench/results/isolation-latest.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

LOG_MIB="${LOG_MIB:-256}"
FOLLOWERS="${FOLLOWERS:-1000}"
ROUNDS="${ROUNDS:-3}"
WRK_DURATION="${WRK_DURATION:-8s}"

# Targets.
T_P99_MS=10             # stats p99 under load
T_P50_FACTOR=2.0        # stats p50 under load within this factor of idle

ensure_tools curl wrk python3
build_release host-metrics local-disk
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

make_tmp
ALLOC_ID="$(cat /proc/sys/kernel/random/uuid)"
ALLOC="$TMP/alloc/$ALLOC_ID"
mkdir -p "$TMP/data" "$ALLOC/alloc/logs" "$ALLOC/web/local"
LOGFILE="$ALLOC/alloc/logs/web.stdout.0"
printf 'hello from web\n' >"$ALLOC/alloc/logs/web.stderr.0"
log "writing $LOG_MIB MiB of log lines to $LOGFILE"
python3 "$BENCH_DIR/followbench.py" loglines --file "$LOGFILE" --mib "$LOG_MIB"

write_config "$TMP/allocd.hcl"
cat >>"$TMP/allocd.hcl" <<EOF2
limits {
  http_max_conns_per_client = 0
  max_streams = 4096
}
EOF2
start_agent allocd "$TMP/allocd.hcl"
PORT="${BASE##*:}"
CAT_URL="$BASE/v1/client/fs/cat/$ALLOC_ID?path=/alloc/logs/web.stdout.0"
STATS_URL="$BASE/v1/client/stats"
FOLLOW_TARGET="/v1/client/fs/stream/$ALLOC_ID?path=alloc/logs/web.stderr.0&origin=end&offset=0"

latency_ms() { # file label: wrk's latency percentile in ms
    awk -v want="$2" '$1 == want { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.2f", v }' "$1"
}

# Followers for the whole run (they leave when the helper's window ends).
WINDOW=$((ROUNDS * 40 + 20))
python3 "$BENCH_DIR/followbench.py" idle --port "$PORT" --target "$FOLLOW_TARGET" \
    --pid "$AGENT_PID" --n "$FOLLOWERS" --settle 1 --window "$WINDOW" --pre 0 >"$TMP/followers.json" 2>&1 &
BG_PIDS+=("$!")
FOLLOWERS_PID=$!
for ((i = 0; i < 100; i++)); do
    (($(ls "/proc/$AGENT_PID/fd" | wc -l) >= FOLLOWERS)) && break
    sleep 0.2
done

idle_p50=() idle_p99=() load_p50=() load_p99=()
for ((round = 1; round <= ROUNDS; round++)); do
    WRK_CONNS=4 WRK_THREADS=1 run_wrk "idle-$round" "$STATS_URL"
    idle_p50+=("$(latency_ms "$TMP/wrk-idle-$round.txt" 50%)")
    idle_p99+=("$(latency_ms "$TMP/wrk-idle-$round.txt" 99%)")
    downloads=()
    for _ in 1 2; do
        (while :; do curl -s -H 'Accept-Encoding: gzip' -o /dev/null --max-time 300 "$CAT_URL" || true; done) &
        downloads+=("$!")
        BG_PIDS+=("$!")
    done
    sleep 1
    WRK_CONNS=4 WRK_THREADS=1 run_wrk "loaded-$round" "$STATS_URL"
    load_p50+=("$(latency_ms "$TMP/wrk-loaded-$round.txt" 50%)")
    load_p99+=("$(latency_ms "$TMP/wrk-loaded-$round.txt" 99%)")
    for p in "${downloads[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    log "round $round: idle p50/p99 ${idle_p50[-1]}/${idle_p99[-1]} ms, loaded ${load_p50[-1]}/${load_p99[-1]} ms"
done
LIVE_FDS="$(ls "/proc/$AGENT_PID/fd" | wc -l)"
kill "$FOLLOWERS_PID" 2>/dev/null || true
IDLE_P50="$(median "${idle_p50[@]}")" IDLE_P99="$(median "${idle_p99[@]}")"
LOADED_P50="$(median "${load_p50[@]}")" LOADED_P99="$(median "${load_p99[@]}")"
P50_FACTOR="$(ratio "$LOADED_P50" "$IDLE_P50")"
kill -0 "$AGENT_PID" 2>/dev/null || ODD+=("allocd exited during the run")
agent_log_notes allocd

mkdir -p "$RESULTS_DIR"
{
    summary_header "isolation.sh" "2 gzip downloads of $LOG_MIB MiB + $FOLLOWERS followers ($LIVE_FDS agent fds); wrk -t1 -c4 -d$WRK_DURATION; medians of $ROUNDS rounds"
    row "stats p50 idle / loaded (ms)" "$IDLE_P50 / $LOADED_P50" "" "rounds: ${idle_p50[*]} / ${load_p50[*]}"
    row "stats p50 loaded / idle" "$P50_FACTOR" "<= $T_P50_FACTOR" "$(pass_if le "$P50_FACTOR" "$T_P50_FACTOR")"
    row "stats p99 idle / loaded (ms)" "$IDLE_P99 / $LOADED_P99" "<= $T_P99_MS" "$(pass_if le "$LOADED_P99" "$T_P99_MS") rounds: ${load_p99[*]}"
    print_notes
} | tee "$RESULTS_DIR/isolation-latest.txt"
