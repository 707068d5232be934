#!/usr/bin/env bash
# Compressed downloads (release build, 127.0.0.1 only):
#   gzip cat of a file of log lines: payload MB/s, against GNU `gzip -1` compressing the
#   same file in the same run (medians of RUNS runs each).
# (Latency of other requests during such downloads: bench/isolation.sh.)
# The body is checked first: decompressed, it must equal the file. See bench/README.md.
# Writes bench/results/gzip-latest.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

LOG_MIB="${LOG_MIB:-256}"
RUNS="${RUNS:-3}"

# Targets.
T_GZIP_RATIO=2.0        # allocd gzip cat / gzip -1, payload throughput

ensure_tools curl gzip python3
build_release host-metrics local-disk

make_tmp
ALLOC_ID="$(cat /proc/sys/kernel/random/uuid)"
ALLOC="$TMP/alloc/$ALLOC_ID"
mkdir -p "$TMP/data" "$ALLOC/alloc/logs" "$ALLOC/web/local"
LOGFILE="$ALLOC/alloc/logs/web.stdout.0"
log "writing $LOG_MIB MiB of log lines to $LOGFILE"
python3 "$BENCH_DIR/followbench.py" loglines --file "$LOGFILE" --mib "$LOG_MIB"
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
median_time() { # command...: the median wall time of RUNS runs, in seconds
    local times=() t0 i
    for ((i = 0; i < RUNS; i++)); do
        t0="$(date +%s.%N)"
        "$@" >/dev/null 2>&1 || log "warning: $1 exited non-zero"
        times+=("$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")
    done
    log "  runs (s): ${times[*]}"
    median "${times[@]}"
}
log "gzip -1 on the same file ($RUNS runs)"
GZIP_S="$(median_time gzip -1 -c "$LOGFILE")"
log "allocd gzip cat ($RUNS runs)"
ALLOCD_S="$(median_time curl -s -H 'Accept-Encoding: gzip' -o /dev/null --max-time 300 "$URL")"
GZIP_MBPS="$(awk -v b="$SIZE" -v s="$GZIP_S" 'BEGIN { printf "%.0f", b / s / 1e6 }')"
ALLOCD_MBPS="$(awk -v b="$SIZE" -v s="$ALLOCD_S" 'BEGIN { printf "%.0f", b / s / 1e6 }')"
GZIP_RATIO="$(ratio "$ALLOCD_MBPS" "$GZIP_MBPS")"
WIRE="$(curl -s -H 'Accept-Encoding: gzip' --max-time 300 "$URL" | wc -c)"

agent_log_notes allocd

# --------------------------------------------------------------------------- summary
mkdir -p "$RESULTS_DIR"
{
    summary_header "gzip.sh" "$((SIZE >> 20)) MiB of log lines, median of $RUNS"
    row "gzip cat, payload MB/s" "$ALLOCD_MBPS" "" "wire $((WIRE >> 20)) MiB"
    row "GNU gzip -1, MB/s (baseline)" "$GZIP_MBPS" "" ""
    row "gzip cat / gzip -1" "$GZIP_RATIO" ">= $T_GZIP_RATIO" "$(pass_if ge "$GZIP_RATIO" "$T_GZIP_RATIO")"
    print_notes
} | tee "$RESULTS_DIR/gzip-latest.txt"
