#!/usr/bin/env bash
# Fleet mode (release build, 127.0.0.1 only): a one-member etcd and two agents, A holding an
# allocation and B holding none. Every figure compares B forwarding to A with A answering
# directly, in the same run:
#   a. /v1/client/stats?node_id=<A> through B vs /v1/client/stats on A (wrk req/s, medians of
#      interleaved rounds), with two baselines in front of A on the same cores: nginx as a
#      keep-alive HTTP reverse proxy (what a forwarder written in C reaches), and nginx's
#      `stream` module relaying TCP bytes without reading them (no HTTP work at all: the most
#      any forwarder can reach on this machine);
#   b. fs/cat of a 1 GiB file through B vs on A (curl, median of runs);
#   c. follow latency (append -> frame decoded at the client) through B vs on A: added p50.
# See bench/README.md. Writes bench/results/fleet-latest.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

STREAM_SIZE="${STREAM_SIZE:-1G}"            # passed to `head -c`
STREAM_RUNS="${STREAM_RUNS:-5}"             # rounds (through B, then direct), median of
FOLLOW_LINES="${FOLLOW_LINES:-500}"         # appends per latency run
FOLLOW_INTERVAL="${FOLLOW_INTERVAL:-0.005}" # seconds between appends
STATS_ROUNDS="${STATS_ROUNDS:-3}"           # interleaved wrk rounds, medians of

# Targets.
T_STATS_RATIO=0.5
T_CAT_RATIO=0.5
T_FOLLOW_ADDED_MS=2

ensure_tools curl wrk python3 etcd nginx nginx-stream
build_release host-metrics local-disk
PY="$BENCH_DIR/followbench.py"

make_tmp
# --------------------------------------------------------------------------- etcd
ETCD_CLIENT="$(free_port)"
ETCD_PEER="$(free_port)"
etcd --name m0 --data-dir "$TMP/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "m0=http://127.0.0.1:$ETCD_PEER" --log-level error >"$TMP/etcd.log" 2>&1 &
BG_PIDS+=("$!")
wait_http "http://127.0.0.1:$ETCD_CLIENT/health" 30 || die "etcd did not start (see $TMP/etcd.log)"
log "etcd on 127.0.0.1:$ETCD_CLIENT"

# --------------------------------------------------------------------------- agents
ALLOC_ID="$(cat /proc/sys/kernel/random/uuid)"
# agent_config NAME PORT: a config of its own (data, allocations) in fleet mode.
agent_config() {
    local dir="$TMP/$1"
    mkdir -p "$dir/data" "$dir/alloc"
    TMP="$dir" write_config "$dir/allocd.hcl"
    cat >>"$dir/allocd.hcl" <<EOF
limits {
  http_max_conns_per_client = 0
}
cluster {
  etcd_endpoints = ["http://127.0.0.1:$ETCD_CLIENT"]
  advertise      = "http://127.0.0.1:$2"
  lease_ttl      = "10s"
}
EOF
}
A_PORT="$(free_port)"
B_PORT="$(free_port)"
agent_config a "$A_PORT"
agent_config b "$B_PORT"
ALLOC="$TMP/a/alloc/$ALLOC_ID"
mkdir -p "$ALLOC/alloc/data" "$ALLOC/alloc/logs" "$ALLOC/web/local"
LOGFILE="$ALLOC/alloc/logs/web.stdout.0"
printf 'hello from web\n' >"$LOGFILE"
BIG="$ALLOC/alloc/data/big.bin"
log "writing $STREAM_SIZE of /dev/urandom to $BIG"
head -c "$STREAM_SIZE" /dev/urandom >"$BIG"
BIG_BYTES="$(stat -c %s "$BIG")"
cat "$BIG" >/dev/null # page cache warm

start_agent a "$TMP/a/allocd.hcl" "$A_PORT"
A_PID="$AGENT_PID" A_BASE="$BASE"
start_agent b "$TMP/b/allocd.hcl" "$B_PORT"
B_PID="$AGENT_PID" B_BASE="$BASE"
A_NODE="$(cat "$TMP/a/data/client/node-id")"
CAT_PATH="/v1/client/fs/cat/$ALLOC_ID?path=alloc/data/big.bin"
for ((i = 0; i < 100; i++)); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$B_BASE/v1/client/fs/stat/$ALLOC_ID?path=alloc")" == 200 ]] && break
    sleep 0.1
done
((i < 100)) || die "B never routed to A's allocation"

# --------------------------------------------------------------------------- a. stats
# The baseline forwarder: nginx relaying to A over kept-alive connections.
N_PORT="$(free_port)"
N_BASE="http://127.0.0.1:$N_PORT"
start_nginx "$N_BASE/v1/client/stats" "
    upstream holder { server 127.0.0.1:$A_PORT; keepalive 64; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$N_PORT;
        location / { proxy_pass http://holder; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }"
NGINX_WORKERS="$(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
# The ceiling: a byte relay, one connection to A per caller's connection.
R_PORT="$(free_port)"
R_BASE="http://127.0.0.1:$R_PORT"
[[ "$NGINX_STREAM" == "built in" ]] && NGINX_STREAM=""
start_nginx "$R_BASE/v1/client/stats" "" "$NGINX_STREAM
stream { server { listen 127.0.0.1:$R_PORT; proxy_pass 127.0.0.1:$A_PORT; } }"
RELAY_WORKERS="$(pgrep -P "$NGINX_PID" | tr '\n' ' ')"

# Rounds of direct, through B and through nginx, interleaved: the machine's speed drifts by
# a fifth between minutes, more than the differences measured. CPU per request as well: the
# processes share the machine's cores, so req/s alone says as much about the neighbours as
# about the forwarder.
direct=() forwarded=() proxied=() relayed=() cpu_direct_a=() cpu_forwarded_a=() cpu_forwarded_b=() cpu_nginx=() cpu_relay=()
for ((round = 1; round <= STATS_ROUNDS; round++)); do
    log "stats round $round: direct on A, ?node_id=A through B, through nginx, through a byte relay"
    CPU_PIDS="$A_PID"
    run_wrk "stats-direct-$round" "$A_BASE/v1/client/stats"
    direct+=("$RPS") cpu_direct_a+=("${CPU_US_PER_REQ[0]}")
    CPU_PIDS="$A_PID $B_PID"
    run_wrk "stats-forwarded-$round" "$B_BASE/v1/client/stats?node_id=$A_NODE"
    forwarded+=("$RPS") cpu_forwarded_a+=("${CPU_US_PER_REQ[0]}") cpu_forwarded_b+=("${CPU_US_PER_REQ[1]}")
    CPU_PIDS="$NGINX_WORKERS"
    run_wrk "stats-nginx-$round" "$N_BASE/v1/client/stats"
    proxied+=("$RPS") cpu_nginx+=("$(printf '%s\n' "${CPU_US_PER_REQ[@]}" | awk '{ t += $1 } END { printf "%.1f", t }')")
    CPU_PIDS="$RELAY_WORKERS"
    run_wrk "stats-relay-$round" "$R_BASE/v1/client/stats"
    relayed+=("$RPS") cpu_relay+=("$(printf '%s\n' "${CPU_US_PER_REQ[@]}" | awk '{ t += $1 } END { printf "%.1f", t }')")
    CPU_PIDS=""
    log "  $(printf '%.0f' "${direct[-1]}") / $(printf '%.0f' "${forwarded[-1]}") / $(printf '%.0f' "${proxied[-1]}") / $(printf '%.0f' "${relayed[-1]}") req/s"
done
STATS_DIRECT="$(median "${direct[@]}")" STATS_FORWARDED="$(median "${forwarded[@]}")"
STATS_NGINX="$(median "${proxied[@]}")" STATS_RELAY="$(median "${relayed[@]}")"
CPU_DIRECT_A="$(median "${cpu_direct_a[@]}")" CPU_FORWARDED_A="$(median "${cpu_forwarded_a[@]}")"
CPU_FORWARDED_B="$(median "${cpu_forwarded_b[@]}")" CPU_NGINX="$(median "${cpu_nginx[@]}")"
CPU_RELAY="$(median "${cpu_relay[@]}")"

# --------------------------------------------------------------------------- b. cat
# Rounds of through B then direct, back to back: the machine's speed drifts between runs (direct
# runs alone spread from 1.4 to 2.9 GB/s on one machine), so the ratio is each round's, then
# their median.
log "cat 1 GiB: through B (checked byte for byte first, untimed), then rounds of through B and direct on A"
curl -s --max-time 120 "$B_BASE$CAT_PATH" | cmp -s - "$BIG" || ODD+=("the forwarded cat body differs from $BIG")
cat_forwarded=() cat_direct=() cat_ratios=() B_PEAK_KIB=0
for ((round = 1; round <= STREAM_RUNS; round++)); do
    AGENT_PID="$B_PID"
    STREAM_RUNS=1 median_of "cat-forwarded-$round" "$B_BASE$CAT_PATH"
    forwarded_rate="$MEDIAN_PAYLOAD"
    ((PEAK_KIB > B_PEAK_KIB)) && B_PEAK_KIB="$PEAK_KIB"
    AGENT_PID="$A_PID"
    STREAM_RUNS=1 median_of "cat-direct-$round" "$A_BASE$CAT_PATH"
    if [[ "$forwarded_rate" != 0 && "$MEDIAN_PAYLOAD" != 0 ]]; then
        cat_forwarded+=("$forwarded_rate") cat_direct+=("$MEDIAN_PAYLOAD")
        cat_ratios+=("$(ratio "$forwarded_rate" "$MEDIAN_PAYLOAD")")
    fi
done
CAT_FORWARDED=0 CAT_DIRECT=0 CAT_RATIO=n/a
if ((${#cat_ratios[@]} > 0)); then
    CAT_FORWARDED="$(median "${cat_forwarded[@]}")" CAT_DIRECT="$(median "${cat_direct[@]}")"
    CAT_RATIO="$(median "${cat_ratios[@]}")"
fi

# --------------------------------------------------------------------------- c. follow
TARGET="/v1/client/fs/stream/$ALLOC_ID?path=alloc/logs/web.stdout.0&origin=end&offset=0"
for via in a b; do
    port="$A_PORT"
    [[ "$via" == b ]] && port="$B_PORT"
    log "follow latency through $via: $FOLLOW_LINES appends ${FOLLOW_INTERVAL}s apart"
    python3 "$PY" latency --port "$port" --target "$TARGET" --file "$LOGFILE" --mode frames \
        --count "$FOLLOW_LINES" --interval "$FOLLOW_INTERVAL" >"$TMP/lat-$via.json" \
        || ODD+=("latency client through $via failed: $(cat "$TMP/lat-$via.json")")
    log "  $(cat "$TMP/lat-$via.json")"
done
P50_DIRECT="$(jget "$TMP/lat-a.json" p50_ms)"
P50_FORWARDED="$(jget "$TMP/lat-b.json" p50_ms)"
for via in a b; do
    got="$(jget "$TMP/lat-$via.json" received)"
    [[ "$got" == "$FOLLOW_LINES" ]] || ODD+=("follow through $via: $got of $FOLLOW_LINES lines arrived")
done
ADDED="$(awk -v f="$P50_FORWARDED" -v d="$P50_DIRECT" 'BEGIN { if (f == "n/a" || d == "n/a") print "n/a"; else printf "%.3f", f - d }')"

# --------------------------------------------------------------------------- summary
kill -0 "$A_PID" 2>/dev/null || ODD+=("allocd (a) exited during the run")
kill -0 "$B_PID" 2>/dev/null || ODD+=("allocd (b) exited during the run")
agent_log_notes a
agent_log_notes b
STATS_RATIO="$(ratio "$STATS_FORWARDED" "$STATS_DIRECT")"
{
    summary_header "fleet.sh (forwarding through another agent vs asking the holder)" \
        "one etcd member; wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION, medians of $STATS_ROUNDS rounds; cat $BIG_BYTES B, $STREAM_RUNS rounds (medians); $FOLLOW_LINES appends"
    row "stats req/s, direct on A" "$(printf '%.0f' "$STATS_DIRECT")" "-" "info"
    row "stats req/s, ?node_id=A through B" "$(printf '%.0f' "$STATS_FORWARDED")" "-" "info"
    row "stats forwarded / direct" "$STATS_RATIO" ">= $T_STATS_RATIO" "$(pass_if ge "$STATS_RATIO" "$T_STATS_RATIO")"
    row "stats req/s through nginx proxy (baseline)" "$(printf '%.0f' "$STATS_NGINX")" "-" "info"
    row "stats nginx proxy / direct" "$(ratio "$STATS_NGINX" "$STATS_DIRECT")" "-" "info"
    row "stats forwarded through B / nginx proxy" "$(ratio "$STATS_FORWARDED" "$STATS_NGINX")" "-" "info"
    row "stats CPU us/req direct: A" "$CPU_DIRECT_A" "-" "info"
    row "stats CPU us/req via B: A (holder)" "$CPU_FORWARDED_A" "-" "info"
    row "stats CPU us/req via B: B (forwarder)" "$CPU_FORWARDED_B" "-" "info"
    row "stats CPU via B: B / A" "$(ratio "$CPU_FORWARDED_B" "$CPU_FORWARDED_A")" "-" "info"
    row "stats CPU us/req via nginx: nginx workers" "$CPU_NGINX" "-" "info"
    row "stats req/s through a TCP byte relay (ceiling)" "$(printf '%.0f' "$STATS_RELAY")" "-" "info"
    row "stats byte relay / direct" "$(ratio "$STATS_RELAY" "$STATS_DIRECT")" "-" "info"
    row "stats forwarded through B / byte relay" "$(ratio "$STATS_FORWARDED" "$STATS_RELAY")" "-" "info"
    row "stats CPU us/req via the byte relay: nginx workers" "$CPU_RELAY" "-" "info"
    row "cat 1 GiB MB/s, direct on A" "$(mbps "$CAT_DIRECT")" "-" "info"
    row "cat 1 GiB MB/s, through B" "$(mbps "$CAT_FORWARDED")" "-" "info"
    row "cat forwarded / direct (median of rounds)" "$CAT_RATIO" ">= $T_CAT_RATIO" "$(pass_if ge "$CAT_RATIO" "$T_CAT_RATIO")"
    row "peak RSS of B while relaying (MiB)" "$(kib_to_mib "$B_PEAK_KIB")" "-" "info"
    row "follow p50 (ms), direct on A" "$P50_DIRECT" "-" "info"
    row "follow p50 (ms), through B" "$P50_FORWARDED" "-" "info"
    row "follow p50 added by forwarding (ms)" "$ADDED" "<= $T_FOLLOW_ADDED_MS" "$(pass_if le "$ADDED" "$T_FOLLOW_ADDED_MS")"
    print_notes
} | tee "$TMP/summary.txt"
mkdir -p "$RESULTS_DIR"
cp "$TMP/summary.txt" "$RESULTS_DIR/fleet-latest.txt"
