#!/usr/bin/env bash
# Benchmark harness for allocd: idle RSS, /v1/client/stats throughput (against nginx and a
# minimal warp server answering the same bytes, bench/warp_stats.rs) and 1 GiB fs/cat
# throughput (against nginx sendfile), baselines measured in the same run on 127.0.0.1.
# See bench/README.md. Writes the summary to bench/results/latest.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# Tunables (environment; WRK_* are read by lib.sh).
CAT_RUNS="${CAT_RUNS:-3}"
STATS_ROUNDS="${STATS_ROUNDS:-3}"  # interleaved wrk rounds, medians of
BIG_SIZE="${BIG_SIZE:-1G}"          # passed to `head -c`
IDLE_WAIT="${IDLE_WAIT:-3}"         # seconds before reading idle RSS

# Targets.
T_IDLE_RSS_MIB=8
T_STATS_RPS=20000
T_STATS_WARP_RATIO=0.8
T_CAT_GBPS=1.0
T_CAT_RATIO=0.9
T_CAT_RSS_MIB=30

# --------------------------------------------------------------------------- build
ensure_tools curl wrk nginx
build_release host-metrics local-disk
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "cargo build --release -p allocd --example warp-stats"
    cargo build --release -p allocd --example warp-stats
fi
WARP_BIN="$ROOT/target/release/examples/warp-stats"
[[ -x "$WARP_BIN" ]] || die "$WARP_BIN not built (cargo build --release -p allocd --example warp-stats)"

# --------------------------------------------------------------------------- fixture
make_tmp
ALLOC_ID="$(cat /proc/sys/kernel/random/uuid)"
ALLOC="$TMP/alloc/$ALLOC_ID"
mkdir -p "$TMP/data" "$ALLOC/alloc/data" "$ALLOC/alloc/logs" "$ALLOC/alloc/tmp" \
    "$ALLOC/web/local" "$ALLOC/web/secrets" "$ALLOC/web/tmp" "$ALLOC/web/private" \
    "$TMP/www"
printf 'hello from web\n' >"$ALLOC/alloc/logs/web.stdout.0"
: >"$ALLOC/alloc/logs/web.stderr.0"
BIG="$ALLOC/alloc/data/big.bin"
log "writing $BIG_SIZE of /dev/urandom to $BIG"
head -c "$BIG_SIZE" /dev/urandom >"$BIG"
BIG_BYTES="$(stat -c %s "$BIG")"
cat "$BIG" >/dev/null   # page cache warm for both servers

CFG="$TMP/allocd.hcl"
write_config "$CFG"

# --------------------------------------------------------------------------- start allocd
start_agent allocd "$CFG"
PORT="${BASE##*:}"

# --------------------------------------------------------------------------- a. idle RSS
sleep "$IDLE_WAIT"
IDLE_RSS_MIB="$(kib_to_mib "$(rss_kib "$AGENT_PID")")"
log "idle RSS: $IDLE_RSS_MIB MiB"

# --------------------------------------------------------------------------- start nginx
STATS_URL="$BASE/v1/client/stats"
code="$(curl -s -o "$TMP/www/stats.json" -w '%{http_code}' --max-time 5 "$STATS_URL" || true)"
[[ "$code" == 200 ]] || ODD+=("GET /v1/client/stats returned $code: $(head -c 300 "$TMP/www/stats.json")")
STATS_BYTES="$(stat -c %s "$TMP/www/stats.json")"
ln -s "$BIG" "$TMP/www/big.bin"

NPORT="$(free_port)"
while [[ "$NPORT" == "$PORT" ]]; do NPORT="$(free_port)"; done
NBASE="http://127.0.0.1:$NPORT"
start_nginx "$NBASE/stats.json" "
    sendfile on;
    tcp_nopush on;
    types { application/json json; application/octet-stream bin; }
    server {
        listen 127.0.0.1:$NPORT;
        root $TMP/www;
        location / { }
    }"

# --------------------------------------------------------------------------- b. stats throughput
WPORT="$(free_port)"
while [[ "$WPORT" == "$PORT" || "$WPORT" == "$NPORT" ]]; do WPORT="$(free_port)"; done
"$WARP_BIN" "$WPORT" "$TMP/www/stats.json" >"$TMP/warp.out" 2>&1 &
BG_PIDS+=("$!")
wait_http "http://127.0.0.1:$WPORT/v1/client/stats" 10 || { cat "$TMP/warp.out" >&2; die "warp-stats did not start"; }
if ! curl -s "http://127.0.0.1:$WPORT/v1/client/stats" | cmp -s - "$TMP/www/stats.json"; then
    ODD+=("warp-stats answers other bytes than allocd's stats")
fi
# Interleaved rounds, medians: the machine's speed drifts by a fifth between minutes.
allocd_rps=() nginx_rps=() warp_rps=()
for ((r = 1; r <= STATS_ROUNDS; r++)); do
    log "stats round $r: wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION on allocd, warp-stats, nginx (body $STATS_BYTES B)"
    run_wrk "allocd-stats-$r" "$STATS_URL"
    allocd_rps+=("$RPS")
    run_wrk "warp-stats-$r" "http://127.0.0.1:$WPORT/v1/client/stats"
    warp_rps+=("$RPS")
    run_wrk "nginx-stats-$r" "$NBASE/stats.json"
    nginx_rps+=("$RPS")
    log "  $(printf '%.0f' "${allocd_rps[-1]}") / $(printf '%.0f' "${warp_rps[-1]}") / $(printf '%.0f' "${nginx_rps[-1]}") req/s"
done
STATS_RPS="$(median "${allocd_rps[@]}")"
WARP_STATS_RPS="$(median "${warp_rps[@]}")"
NGINX_STATS_RPS="$(median "${nginx_rps[@]}")"
STATS_RATIO="$(ratio "$STATS_RPS" "$NGINX_STATS_RPS")"
STATS_WARP_RATIO="$(ratio "$STATS_RPS" "$WARP_STATS_RPS")"

# --------------------------------------------------------------------------- c. 1 GiB cat
CAT_URL="$BASE/v1/client/fs/cat/$ALLOC_ID?path=/alloc/data/big.bin"

# Correctness first (untimed): the bytes must match the file.
if ! curl -s --max-time 120 "$CAT_URL" | cmp -s - "$BIG"; then
    ODD+=("fs/cat body differs from $BIG")
fi

# Alternating runs of allocd and nginx, medians.
cat_speeds=() ncat_speeds=()
peak_kib=0
for ((r = 1; r <= CAT_RUNS; r++)); do
    curl_speed "$CAT_URL" >"$TMP/cat-$r.txt" &
    cpid=$!
    run_peak=0
    while kill -0 "$cpid" 2>/dev/null; do
        k="$(rss_kib "$AGENT_PID")"
        if ((k > run_peak)); then run_peak=$k; fi
        sleep 0.1
    done
    wait "$cpid" || true
    read -r speed code size _time <"$TMP/cat-$r.txt" || true
    speed="${speed:-0}"
    if [[ "${code:-}" != 200 || "${size:-0}" != "$BIG_BYTES" ]]; then
        ODD+=("allocd cat run $r: HTTP ${code:-?}, ${size:-0} of $BIG_BYTES bytes")
        speed=0
    fi
    log "  allocd cat run $r: $(gbps "$speed") GB/s, peak RSS $(kib_to_mib "$run_peak") MiB"
    cat_speeds+=("$speed")
    if ((run_peak > peak_kib)); then peak_kib=$run_peak; fi

    read -r speed code size _time < <(curl_speed "$NBASE/big.bin") || true
    speed="${speed:-0}"
    if [[ "${code:-}" != 200 || "${size:-0}" != "$BIG_BYTES" ]]; then
        ODD+=("nginx cat run $r: HTTP ${code:-?}, ${size:-0} of $BIG_BYTES bytes")
        speed=0
    fi
    log "  nginx  cat run $r: $(gbps "$speed") GB/s"
    ncat_speeds+=("$speed")
done

median_cat="$(median "${cat_speeds[@]}")"
median_ncat="$(median "${ncat_speeds[@]}")"
CAT_GBPS="$(gbps "$median_cat")"
NGINX_CAT_GBPS="$(gbps "$median_ncat")"
CAT_RATIO="$(ratio "$median_cat" "$median_ncat")"
CAT_RSS_MIB="$(kib_to_mib "$peak_kib")"
END_RSS_MIB="$(kib_to_mib "$(rss_kib "$AGENT_PID")")"

kill -0 "$AGENT_PID" 2>/dev/null || ODD+=("allocd exited during the run")

# --------------------------------------------------------------------------- d. summary
agent_log_notes allocd
{
    summary_header "run.sh (idle RSS, stats, cat vs nginx)" \
        "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION, medians of $STATS_ROUNDS rounds; stats body $STATS_BYTES B; cat $BIG_BYTES B x$CAT_RUNS (median)"
    row "idle RSS (MiB)" "$IDLE_RSS_MIB" "<= $T_IDLE_RSS_MIB" "$(pass_if le "$IDLE_RSS_MIB" "$T_IDLE_RSS_MIB")"
    row "stats req/s (allocd)" "$(printf '%.0f' "$STATS_RPS")" ">= $T_STATS_RPS" "$(pass_if ge "$STATS_RPS" "$T_STATS_RPS")"
    row "stats req/s (nginx baseline)" "$(printf '%.0f' "$NGINX_STATS_RPS")" "-" "info"
    row "stats ratio allocd/nginx" "$STATS_RATIO" "-" "info"
    row "stats req/s (minimal warp baseline)" "$(printf '%.0f' "$WARP_STATS_RPS")" "-" "info"
    row "stats ratio allocd/warp" "$STATS_WARP_RATIO" ">= $T_STATS_WARP_RATIO" "$(pass_if ge "$STATS_WARP_RATIO" "$T_STATS_WARP_RATIO")"
    row "cat 1 GiB GB/s (allocd)" "$CAT_GBPS" ">= $T_CAT_GBPS" "$(pass_if ge "$CAT_GBPS" "$T_CAT_GBPS")"
    row "cat 1 GiB GB/s (nginx sendfile)" "$NGINX_CAT_GBPS" "-" "info"
    row "cat ratio allocd/nginx" "$CAT_RATIO" ">= $T_CAT_RATIO" "$(pass_if ge "$CAT_RATIO" "$T_CAT_RATIO")"
    row "peak RSS during cat (MiB)" "$CAT_RSS_MIB" "< $T_CAT_RSS_MIB" "$(pass_if lt "$CAT_RSS_MIB" "$T_CAT_RSS_MIB")"
    row "RSS after run (MiB)" "$END_RSS_MIB" "-" "info"
    print_notes
} | tee "$TMP/summary.txt"
mkdir -p "$RESULTS_DIR"
cp "$TMP/summary.txt" "$RESULTS_DIR/latest.txt"
cp "$TMP/allocd.log" "$RESULTS_DIR/allocd-latest.log"
cat "$TMP"/wrk-*.txt >"$RESULTS_DIR/wrk-latest.txt"
log "summary written to $RESULTS_DIR/latest.txt"
