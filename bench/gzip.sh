#!/usr/bin/env bash
# Compressed downloads (release build, 127.0.0.1 only):
#   a. gzip cat of a file of log lines: payload MB/s, against GNU `gzip -1` compressing the
#      same file in the same run;
#   b. isolation: /v1/client/stats latency (wrk, p50/p99) idle, then while two clients keep
#      downloading that file with gzip.
# The body is checked first: decompressed, it must equal the file. See bench/README.md.
# Writes bench/results/gzip-latest.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

LOG_MIB="${LOG_MIB:-256}"
RUNS="${RUNS:-3}"

# Targets.
T_GZIP_RATIO=2.0        # allocd gzip cat / gzip -1, payload throughput
T_P99_MS=10             # /v1/client/stats p99 while two gzip downloads run
T_P50_FACTOR=2.0        # ... and p50 within this factor of idle

ensure_tools curl wrk gzip python3
build_release host-metrics local-disk

make_tmp
ALLOC_ID="$(cat /proc/sys/kernel/random/uuid)"
ALLOC="$TMP/alloc/$ALLOC_ID"
mkdir -p "$TMP/data" "$ALLOC/alloc/logs" "$ALLOC/web/local"
LOGFILE="$ALLOC/alloc/logs/web.stdout.0"
log "writing $LOG_MIB MiB of log lines to $LOGFILE"
python3 - "$LOGFILE" "$LOG_MIB" <<'PY'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
paths = ["/api/v1/items", "/api/v1/users", "/healthz", "/api/v1/orders", "/static/app.js"]
with open(path, "w") as out:
    written, n = 0, 0
    while written < mib << 20:
        n += 1
        line = (f"2026-12-01T14:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z INFO "
                f"request id={rng.getrandbits(64):016x} path={rng.choice(paths)} status={rng.choice((200, 200, 200, 404, 500))} "
                f"bytes={rng.randrange(100, 90000)} duration={rng.randrange(1, 900)}ms\n")
        out.write(line)
        written += len(line)
PY
SIZE="$(stat -c %s "$LOGFILE")"
cat "$LOGFILE" >/dev/null

write_config "$TMP/allocd.hcl"
start_agent allocd "$TMP/allocd.hcl"
URL="$BASE/v1/client/fs/cat/$ALLOC_ID?path=/alloc/logs/web.stdout.0"

# --------------------------------------------------------------------------- correctness
if ! curl -s --compressed --max-time 300 "$URL" | cmp -s - "$LOGFILE"; then
    ODD+=("gzip cat body, decompressed, differs from the file")
fi

# --------------------------------------------------------------------------- a. throughput
best_time() { # command...: the best wall time of RUNS runs, in seconds
    local best="" t0 t i
    for ((i = 0; i < RUNS; i++)); do
        t0="$(date +%s.%N)"
        "$@" >/dev/null 2>&1 || log "warning: $1 exited non-zero"
        t="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
        best="$(awk -v a="$t" -v b="$best" 'BEGIN { print (b == "" || a < b) ? a : b }')"
    done
    echo "$best"
}
log "gzip -1 on the same file ($RUNS runs)"
GZIP_S="$(best_time gzip -1 -c "$LOGFILE")"
log "allocd gzip cat ($RUNS runs)"
ALLOCD_S="$(best_time curl -s -H 'Accept-Encoding: gzip' -o /dev/null --max-time 300 "$URL")"
GZIP_MBPS="$(awk -v b="$SIZE" -v s="$GZIP_S" 'BEGIN { printf "%.0f", b / s / 1e6 }')"
ALLOCD_MBPS="$(awk -v b="$SIZE" -v s="$ALLOCD_S" 'BEGIN { printf "%.0f", b / s / 1e6 }')"
GZIP_RATIO="$(ratio "$ALLOCD_MBPS" "$GZIP_MBPS")"
WIRE="$(curl -s -H 'Accept-Encoding: gzip' --max-time 300 "$URL" | wc -c)"

# --------------------------------------------------------------------------- b. isolation
latency_ms() { # file label: wrk's latency percentile in ms
    awk -v want="$2" '$1 == want { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.2f", v }' "$1"
}
STATS_URL="$BASE/v1/client/stats"
WRK_CONNS=4 WRK_THREADS=1 run_wrk idle "$STATS_URL"
IDLE_P50="$(latency_ms "$TMP/wrk-idle.txt" 50%)"
IDLE_P99="$(latency_ms "$TMP/wrk-idle.txt" 99%)"
for _ in 1 2; do
    (while :; do curl -s -H 'Accept-Encoding: gzip' -o /dev/null --max-time 300 "$URL" || true; done) &
    BG_PIDS+=("$!")
done
sleep 1
WRK_CONNS=4 WRK_THREADS=1 run_wrk loaded "$STATS_URL"
LOADED_P50="$(latency_ms "$TMP/wrk-loaded.txt" 50%)"
LOADED_P99="$(latency_ms "$TMP/wrk-loaded.txt" 99%)"
for p in "${BG_PIDS[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
P50_FACTOR="$(ratio "$LOADED_P50" "$IDLE_P50")"
agent_log_notes allocd

# --------------------------------------------------------------------------- summary
mkdir -p "$RESULTS_DIR"
{
    summary_header "gzip.sh" "$((SIZE >> 20)) MiB of log lines, best of $RUNS"
    row "gzip cat, payload MB/s" "$ALLOCD_MBPS" "" "wire $((WIRE >> 20)) MiB"
    row "GNU gzip -1, MB/s (baseline)" "$GZIP_MBPS" "" ""
    row "gzip cat / gzip -1" "$GZIP_RATIO" ">= $T_GZIP_RATIO" "$(pass_if ge "$GZIP_RATIO" "$T_GZIP_RATIO")"
    row "stats p50 idle / loaded (ms)" "$IDLE_P50 / $LOADED_P50" "" ""
    row "stats p50 loaded / idle" "$P50_FACTOR" "<= $T_P50_FACTOR" "$(pass_if le "$P50_FACTOR" "$T_P50_FACTOR")"
    row "stats p99 idle / loaded (ms)" "$IDLE_P99 / $LOADED_P99" "<= $T_P99_MS" "$(pass_if le "$LOADED_P99" "$T_P99_MS")"
    print_notes
} | tee "$RESULTS_DIR/gzip-latest.txt"
