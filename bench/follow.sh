#!/usr/bin/env bash
# Follow benchmarks for allocd (release build, 127.0.0.1 only):
#   a. follow latency: append -> decoded at the client, fs/stream (JSON frames) and
#      fs/logs?plain=true, 1,000 lines ~5 ms apart; p50 vs Nomad's 250 ms poll interval;
#   b. 1,000 concurrent idle followers: RSS growth per follower, agent CPU over an idle window;
#      then 1,000 followers again (bench/fanout.rs, a compiled one-thread client) and each of
#      5 appended lines must reach all of them (fan-out time), through fs/stream and fs/logs;
#   c. 1 GiB through fs/stream?follow=false (payload MB/s) vs fs/cat of the same file.
# See bench/README.md. Writes bench/results/follow-latest.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# Tunables (environment).
FOLLOW_LINES="${FOLLOW_LINES:-1000}"        # appends per latency run
FOLLOW_INTERVAL="${FOLLOW_INTERVAL:-0.005}" # seconds between appends
FOLLOWERS="${FOLLOWERS:-1000}"              # concurrent idle followers
FANOUT_ROUNDS="${FANOUT_ROUNDS:-5}"         # appends timed one by one (median of their p50s)
FANOUT_GAP="${FANOUT_GAP:-2}"               # seconds between them
IDLE_SETTLE="${IDLE_SETTLE:-5}"             # seconds after opening them before reading RSS
IDLE_WINDOW="${IDLE_WINDOW:-10}"            # CPU measurement window
STREAM_SIZE="${STREAM_SIZE:-1G}"            # passed to `head -c`
STREAM_RUNS="${STREAM_RUNS:-3}"             # median of
VERIFY_STREAM="${VERIFY_STREAM:-1}"         # decode one follow=false body and compare (~10 s)
AFTER_CLOSE_WAIT="${AFTER_CLOSE_WAIT:-15}"  # seconds after the followers leave before RSS again

# Targets.
T_P50_MS=1
T_P99_MS=50
T_RSS_PER_FOLLOWER_KIB=64
T_IDLE_CPU_PCT=10
T_STREAM_MBPS=1000
T_STREAM_RATIO=0.5
T_FANOUT_P50_MS=10
T_FANOUT_MAX_MS=50
T_RSS_BACK_FACTOR=2.0   # RSS after the followers left / RSS before they came
NOMAD_POLL_MS=250

PY="$BENCH_DIR/followbench.py"

# --------------------------------------------------------------------------- build
ensure_tools curl python3
build_release local-disk host-metrics
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "cargo build --release -p allocd --example fanout"
    cargo build --release -p allocd --example fanout
fi
FANOUT_BIN="$ROOT/target/release/examples/fanout"
[[ -x "$FANOUT_BIN" ]] || die "$FANOUT_BIN not built (cargo build --release -p allocd --example fanout)"
# Two sockets per follower in the client, a socket and the file in the agent.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 2 * FOLLOWERS + 100)); then
    ODD+=("ulimit -n is $(ulimit -n): too low for $FOLLOWERS followers")
fi

# --------------------------------------------------------------------------- fixture
make_tmp
ALLOC_ID="$(cat /proc/sys/kernel/random/uuid)"
ALLOC="$TMP/alloc/$ALLOC_ID"
mkdir -p "$TMP/data" "$ALLOC/alloc/data" "$ALLOC/alloc/logs" "$ALLOC/alloc/tmp" \
    "$ALLOC/web/local" "$ALLOC/web/secrets" "$ALLOC/web/tmp" "$ALLOC/web/private"
LOGFILE="$ALLOC/alloc/logs/web.stdout.0"
printf 'hello from web\n' >"$LOGFILE"
: >"$ALLOC/alloc/logs/web.stderr.0"
BIG="$ALLOC/alloc/data/big.bin"
log "writing $STREAM_SIZE of /dev/urandom to $BIG"
head -c "$STREAM_SIZE" /dev/urandom >"$BIG"
BIG_BYTES="$(stat -c %s "$BIG")"
cat "$BIG" >/dev/null   # page cache warm

CFG="$TMP/allocd.hcl"
write_config "$CFG"
cat >>"$CFG" <<EOF
limits {
  http_max_conns_per_client = 0
  max_streams = 4096
}
EOF


# --------------------------------------------------------------------------- a. latency
start_agent follow "$CFG"
PORT="${BASE##*:}"
A1_PID="$AGENT_PID"

STREAM_TARGET="/v1/client/fs/stream/$ALLOC_ID?path=alloc/logs/web.stdout.0&origin=end&offset=0"
LOGS_TARGET="/v1/client/fs/logs/$ALLOC_ID?task=web&type=stdout&follow=true&plain=true&origin=end&offset=0"
LOGS_JSON_TARGET="/v1/client/fs/logs/$ALLOC_ID?task=web&type=stdout&follow=true&origin=end&offset=0"

log "latency: $FOLLOW_LINES appends ${FOLLOW_INTERVAL}s apart, GET $STREAM_TARGET"
python3 "$PY" latency --port "$PORT" --target "$STREAM_TARGET" --file "$LOGFILE" --mode frames \
    --count "$FOLLOW_LINES" --interval "$FOLLOW_INTERVAL" >"$TMP/lat-stream.json" \
    || ODD+=("latency client (fs/stream) failed: $(cat "$TMP/lat-stream.json")")
log "  $(cat "$TMP/lat-stream.json")"
log "latency: GET $LOGS_TARGET"
python3 "$PY" latency --port "$PORT" --target "$LOGS_TARGET" --file "$LOGFILE" --mode plain \
    --count "$FOLLOW_LINES" --interval "$FOLLOW_INTERVAL" >"$TMP/lat-logs.json" \
    || ODD+=("latency client (fs/logs) failed: $(cat "$TMP/lat-logs.json")")
log "  $(cat "$TMP/lat-logs.json")"
for f in stream logs; do
    err="$(jget "$TMP/lat-$f.json" error)"
    [[ "$err" == n/a ]] || ODD+=("latency ($f): $err")
    recv="$(jget "$TMP/lat-$f.json" received)"
    [[ "$recv" == "$FOLLOW_LINES" ]] || ODD+=("latency ($f): only $recv of $FOLLOW_LINES lines arrived")
done

# --------------------------------------------------------------------------- c. 1 GiB stream
STREAM_URL="$BASE/v1/client/fs/stream/$ALLOC_ID?path=alloc/data/big.bin&follow=false"
CAT_URL="$BASE/v1/client/fs/cat/$ALLOC_ID?path=alloc/data/big.bin"
if [[ "$VERIFY_STREAM" == 1 ]]; then
    log "verifying one fs/stream?follow=false body against $BIG (untimed)"
    curl -s --max-time 120 "$STREAM_URL" | python3 "$PY" verify --file "$BIG" >"$TMP/verify.json" \
        || ODD+=("fs/stream follow=false body does not match $BIG: $(cat "$TMP/verify.json")")
    log "  $(cat "$TMP/verify.json")"
fi

# Stream and cat (the baseline) alternate, medians: the machine's speed drifts between minutes.
log "1 GiB: GET $STREAM_URL and $CAT_URL, alternating (median of $STREAM_RUNS each)"
runs="$STREAM_RUNS" stream_rates=() cat_rates=() stream_peak=0 stream_wire=0
for ((round = 1; round <= runs; round++)); do
    STREAM_RUNS=1 median_of "stream-$round" "$STREAM_URL"
    stream_rates+=("$MEDIAN_PAYLOAD") stream_wire="$WIRE"
    ((PEAK_KIB > stream_peak)) && stream_peak=$PEAK_KIB
    STREAM_RUNS=1 median_of "cat-$round" "$CAT_URL"
    cat_rates+=("$MEDIAN_PAYLOAD")
done
STREAM_MBPS="$(mbps "$(median "${stream_rates[@]}")")"
STREAM_INFLATE="$(ratio3 "$stream_wire" "$BIG_BYTES")"
STREAM_PEAK_MIB="$(kib_to_mib "$stream_peak")"
CAT_MBPS="$(mbps "$(median "${cat_rates[@]}")")"
STREAM_RATIO="$(ratio "$STREAM_MBPS" "$CAT_MBPS")"
A1_RSS_MIB="$(kib_to_mib "$(rss_kib "$A1_PID")")"
kill -0 "$A1_PID" 2>/dev/null || ODD+=("allocd (follow) exited during the run")
stop_agent "$A1_PID"

# --------------------------------------------------------------------------- b. idle followers
# A fresh agent, so that the RSS baseline is not the high-water mark of the 1 GiB streams.
start_agent followers "$CFG"
PORT="${BASE##*:}"
A2_PID="$AGENT_PID"
log "idle: $FOLLOWERS followers of GET $STREAM_TARGET; RSS after ${IDLE_SETTLE}s, CPU over ${IDLE_WINDOW}s"
python3 "$PY" idle --port "$PORT" --target "$STREAM_TARGET" --pid "$A2_PID" \
    --n "$FOLLOWERS" --settle "$IDLE_SETTLE" --window "$IDLE_WINDOW" >"$TMP/idle.json" \
    || ODD+=("idle client failed: $(cat "$TMP/idle.json")")
log "  $(cat "$TMP/idle.json")"
ok="$(jget "$TMP/idle.json" ok)"
[[ "$ok" == "$FOLLOWERS" ]] || ODD+=("idle: only $ok of $FOLLOWERS followers got 200: statuses $(jget "$TMP/idle.json" statuses); e.g. $(jget "$TMP/idle.json" bad_example)")
closed="$(jget "$TMP/idle.json" closed_during_idle)"
[[ "$closed" == 0 ]] || ODD+=("idle: $closed followers were closed by the agent during the idle window")
log "fan-out: $FOLLOWERS followers again, $FANOUT_ROUNDS lines appended ${FANOUT_GAP}s apart"
"$FANOUT_BIN" "$PORT" "$STREAM_TARGET" "$LOGFILE" "$FOLLOWERS" "$FANOUT_ROUNDS" "$FANOUT_GAP" >"$TMP/fanout.json" \
    || ODD+=("fan-out client failed: $(cat "$TMP/fanout.json")")
log "  $(cat "$TMP/fanout.json")"
log "fan-out through fs/logs: $FOLLOWERS followers, $FANOUT_ROUNDS lines appended ${FANOUT_GAP}s apart"
"$FANOUT_BIN" "$PORT" "$LOGS_JSON_TARGET" "$LOGFILE" "$FOLLOWERS" "$FANOUT_ROUNDS" "$FANOUT_GAP" >"$TMP/fanout-logs.json" \
    || ODD+=("fan-out client (fs/logs) failed: $(cat "$TMP/fanout-logs.json")")
log "  $(cat "$TMP/fanout-logs.json")"
# Memory and threads given back once they are gone (tokio's blocking-pool threads idle out
# after 10 s).
sleep "$AFTER_CLOSE_WAIT"
A2_RSS_AFTER_CLOSE_MIB="$(kib_to_mib "$(rss_kib "$A2_PID")")"
A2_THREADS_AFTER_CLOSE="$(awk '/^Threads:/ { print $2 }' "/proc/$A2_PID/status" 2>/dev/null || echo n/a)"
kill -0 "$A2_PID" 2>/dev/null || ODD+=("allocd (followers) exited during the run")
stop_agent "$A2_PID"

# --------------------------------------------------------------------------- summary
agent_log_notes follow
agent_log_notes followers
S_P50="$(jget "$TMP/lat-stream.json" p50_ms)"
S_P99="$(jget "$TMP/lat-stream.json" p99_ms)"
L_P50="$(jget "$TMP/lat-logs.json" p50_ms)"
PER_FOLLOWER="$(jget "$TMP/idle.json" rss_per_follower_kib)"
IDLE_CPU="$(jget "$TMP/idle.json" cpu_pct)"
FANOUT_P50="$(jget "$TMP/fanout.json" fanout_p50_ms)"
FANOUT_MAX="$(jget "$TMP/fanout.json" fanout_max_ms)"
RSS_BACK="$(ratio "$A2_RSS_AFTER_CLOSE_MIB" "$(kib_to_mib "$(jget "$TMP/idle.json" rss_before_kib)")")"
{
    summary_header "follow.sh (follow latency, idle followers, 1 GiB stream)" \
        "$FOLLOW_LINES appends ${FOLLOW_INTERVAL}s apart; $FOLLOWERS followers, RSS after ${IDLE_SETTLE}s, CPU over ${IDLE_WINDOW}s; stream $BIG_BYTES B x$STREAM_RUNS (median)"
    row "stream follow p50 (ms)" "$S_P50" "<= $T_P50_MS" "$(pass_if le "$S_P50" "$T_P50_MS")"
    row "stream follow p90 (ms)" "$(jget "$TMP/lat-stream.json" p90_ms)" "-" "info"
    row "stream follow p99 (ms)" "$S_P99" "<= $T_P99_MS" "$(pass_if le "$S_P99" "$T_P99_MS")"
    row "stream follow max (ms)" "$(jget "$TMP/lat-stream.json" max_ms)" "-" "info"
    row "stream lines received" "$(jget "$TMP/lat-stream.json" received)/$FOLLOW_LINES" "all" \
        "$([[ "$(jget "$TMP/lat-stream.json" received)" == "$FOLLOW_LINES" ]] && echo PASS || echo FAIL)"
    row "stream p50 / Nomad 250 ms poll" "$(ratio3 "$S_P50" "$NOMAD_POLL_MS")" "-" "info"
    row "logs plain follow p50 (ms)" "$L_P50" "-" "info"
    row "logs plain follow p90 (ms)" "$(jget "$TMP/lat-logs.json" p90_ms)" "-" "info"
    row "logs plain follow p99 (ms)" "$(jget "$TMP/lat-logs.json" p99_ms)" "-" "info"
    row "logs plain follow max (ms)" "$(jget "$TMP/lat-logs.json" max_ms)" "-" "info"
    row "logs lines received" "$(jget "$TMP/lat-logs.json" received)/$FOLLOW_LINES" "all" \
        "$([[ "$(jget "$TMP/lat-logs.json" received)" == "$FOLLOW_LINES" ]] && echo PASS || echo FAIL)"
    row "logs p50 / Nomad 250 ms poll" "$(ratio3 "$L_P50" "$NOMAD_POLL_MS")" "-" "info"
    row "followers open (HTTP 200)" "$(jget "$TMP/idle.json" ok)/$FOLLOWERS" "all" \
        "$([[ "$(jget "$TMP/idle.json" ok)" == "$FOLLOWERS" ]] && echo PASS || echo FAIL)"
    row "RSS before followers (MiB)" "$(kib_to_mib "$(jget "$TMP/idle.json" rss_before_kib)")" "-" "info"
    row "RSS with followers (MiB)" "$(kib_to_mib "$(jget "$TMP/idle.json" rss_after_kib)")" "-" "info"
    row "RSS growth per follower (KiB)" "$PER_FOLLOWER" "<= $T_RSS_PER_FOLLOWER_KIB" "$(pass_if le "$PER_FOLLOWER" "$T_RSS_PER_FOLLOWER_KIB")"
    row "idle CPU, followers open (% core)" "$IDLE_CPU" "<= $T_IDLE_CPU_PCT" "$(pass_if le "$IDLE_CPU" "$T_IDLE_CPU_PCT")"
    row "agent threads / fds, followers open" "$(jget "$TMP/idle.json" threads) / $(jget "$TMP/idle.json" fds_after)" "-" "info"
    row "fan-out: 1 line, first follower (ms)" "$(jget "$TMP/fanout.json" fanout_first_ms)" "-" "info"
    row "fan-out: 1 line to all, p50 (ms)" "$FANOUT_P50" "<= $T_FANOUT_P50_MS" "$(pass_if le "$FANOUT_P50" "$T_FANOUT_P50_MS")"
    row "fan-out: p50 of each append, in order (ms)" "$(jget "$TMP/fanout.json" fanout_round_p50s_ms | tr -d '[] ')" "-" "info"
    row "fan-out: 1 line to all, max (ms)" "$FANOUT_MAX" "<= $T_FANOUT_MAX_MS" "$(pass_if le "$FANOUT_MAX" "$T_FANOUT_MAX_MS")"
    row "fan-out: followers reached" "$(jget "$TMP/fanout.json" fanout_received)/$(jget "$TMP/fanout.json" fanout_live)" "-" "info"
    row "fan-out through fs/logs, p50 / max (ms)" "$(jget "$TMP/fanout-logs.json" fanout_p50_ms) / $(jget "$TMP/fanout-logs.json" fanout_max_ms)" "-" "info"
    row "fan-out through fs/logs, followers reached" "$(jget "$TMP/fanout-logs.json" fanout_received)/$(jget "$TMP/fanout-logs.json" fanout_live)" "-" "info"
    row "RSS ${AFTER_CLOSE_WAIT} s after followers left (MiB)" "$A2_RSS_AFTER_CLOSE_MIB" "-" "info"
    row "RSS after they left / before" "$RSS_BACK" "<= $T_RSS_BACK_FACTOR" "$(pass_if le "$RSS_BACK" "$T_RSS_BACK_FACTOR")"
    row "threads ${AFTER_CLOSE_WAIT} s after followers left" "$A2_THREADS_AFTER_CLOSE" "-" "info"
    row "stream 1 GiB payload MB/s" "$STREAM_MBPS" ">= $T_STREAM_MBPS" "$(pass_if ge "$STREAM_MBPS" "$T_STREAM_MBPS")"
    row "cat 1 GiB MB/s (baseline)" "$CAT_MBPS" "-" "info"
    row "stream/cat ratio" "$STREAM_RATIO" ">= $T_STREAM_RATIO" "$(pass_if ge "$STREAM_RATIO" "$T_STREAM_RATIO")"
    row "stream wire bytes / payload" "$STREAM_INFLATE" "-" "info"
    row "peak RSS during stream (MiB)" "$STREAM_PEAK_MIB" "-" "info"
    row "RSS after latency + stream runs (MiB)" "$A1_RSS_MIB" "-" "info"
    [[ "$VERIFY_STREAM" == 1 ]] && row "stream body verified (sha256, Offsets)" "$(jget "$TMP/verify.json" ok)" "true" \
        "$([[ "$(jget "$TMP/verify.json" ok)" == True ]] && echo PASS || echo FAIL)"
    print_notes
} | tee "$TMP/summary.txt"
mkdir -p "$RESULTS_DIR"
cp "$TMP/summary.txt" "$RESULTS_DIR/follow-latest.txt"
cat "$TMP/follow.log" "$TMP/followers.log" >"$RESULTS_DIR/follow-allocd-latest.log" 2>/dev/null || true
for f in lat-stream lat-logs idle fanout fanout-logs verify; do
    [[ -f "$TMP/$f.json" ]] && printf '%s: %s\n' "$f" "$(cat "$TMP/$f.json")"
done >"$RESULTS_DIR/follow-latest.json.txt"
log "summary written to $RESULTS_DIR/follow-latest.txt"
