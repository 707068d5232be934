#!/usr/bin/env bash
# /v1/metrics benchmarks for allocd with the `cgroup` plugin on a FIXTURE cgroup v2 tree of 500
# task scopes (release build, 127.0.0.1 only), every Nomad metric published:
#   a. agent CPU per Prometheus scrape (?format=prometheus): the agent's CPU over 300 scrapes on
#      one keep-alive connection, minus its idle CPU over the same time (measured just before);
#   b. /v1/client/stats throughput (wrk) alone, then while a scraper fetches the Prometheus form
#      every second, in alternating rounds (medians): the ratio should stay near 1.
# See bench/README.md. Writes bench/results/metrics-latest.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

SCOPES_ALLOCS="${SCOPES_ALLOCS:-50}"  # allocations ...
SCOPES_TASKS="${SCOPES_TASKS:-10}"    # ... of this many tasks each (500 scopes)
SCRAPES="${SCRAPES:-300}"
STATS_ROUNDS="${STATS_ROUNDS:-3}"     # alternating wrk rounds alone and scraped, medians of

T_SCRAPE_CPU_MS=5
T_STATS_RATIO=0.9

ensure_tools curl wrk python3
build_release local-disk host-metrics cgroup

make_tmp
mkdir -p "$TMP/data" "$TMP/alloc"
sleep 600 &
SLEEP_PID=$!
BG_PIDS+=("$SLEEP_PID")

CG="$TMP/cgroup"
for ((i = 0; i < SCOPES_ALLOCS; i++)); do
    id="$(cat /proc/sys/kernel/random/uuid)"
    make_alloc "$id" "$SCOPES_TASKS"
    make_cgroups "$CG" "$id" "$SCOPES_TASKS"
done

cat >"$TMP/metrics.hcl" <<EOF
data_dir  = "$TMP/data"
bind_addr = "127.0.0.1"
telemetry {
  collection_interval        = "1s"
  publish_node_metrics       = true
  publish_allocation_metrics = true
  prometheus_metrics         = true
  disable_hostname           = true
}
plugin "host-metrics" {}
plugin "local-disk" {
  config {
    alloc_dir = "$TMP/alloc"
  }
}
plugin "cgroup" {
  config {
    root = "$CG"
  }
}
EOF
start_agent metrics "$TMP/metrics.hcl"
PID="$AGENT_PID"
SCRAPE_URL="$BASE/v1/metrics?format=prometheus"
sleep 3
curl -s "$SCRAPE_URL" >"$TMP/scrape.txt"
SERIES="$(grep -vc '^#' "$TMP/scrape.txt" || true)"
TASK_RSS="$(grep -c '^nomad_client_allocs_memory_rss{' "$TMP/scrape.txt" || true)"
SCRAPE_BYTES="$(stat -c %s "$TMP/scrape.txt")"

# a. CPU per scrape: idle CPU first, then the same agent while one client scrapes back to back.
IDLE_PCT="$(cpu_pct "$PID" 10)"
T0="$(cpu_ticks "$PID")"
OUT="$(python3 - "$BASE" "$SCRAPES" <<'EOF'
import http.client, sys, time
base, n = sys.argv[1], int(sys.argv[2])
host = base.split("//", 1)[1]
conn = http.client.HTTPConnection(host, timeout=30)
start = time.monotonic()
worst = 0.0
for _ in range(n):
    t = time.monotonic()
    conn.request("GET", "/v1/metrics?format=prometheus")
    body = conn.getresponse().read()
    worst = max(worst, time.monotonic() - t)
    assert body.startswith(b"# HELP"), body[:80]
elapsed = time.monotonic() - start
print(f"{elapsed:.3f} {elapsed / n * 1000:.2f} {worst * 1000:.2f}")
EOF
)"
T1="$(cpu_ticks "$PID")"
read -r ELAPSED MEAN_MS WORST_MS <<<"$OUT"
SCRAPE_CPU_MS="$(awk -v a="$T0" -v b="$T1" -v hz="$CLK_TCK" -v idle="$IDLE_PCT" -v s="$ELAPSED" -v n="$SCRAPES" \
    'BEGIN { printf "%.2f", ((b - a) / hz - idle / 100 * s) / n * 1000 }')"

# b. host stats throughput without and with a scraper every second, in alternating rounds
# (medians): the machine's speed drifts between minutes by more than a scrape costs.
alone=() scraped=()
for ((round = 1; round <= STATS_ROUNDS; round++)); do
    run_wrk "stats-alone-$round" "$BASE/v1/client/stats"
    alone+=("$RPS")
    (while true; do curl -s -o /dev/null "$SCRAPE_URL"; sleep 1; done) &
    SCRAPER_PID=$!
    BG_PIDS+=("$SCRAPER_PID")
    run_wrk "stats-scraped-$round" "$BASE/v1/client/stats"
    scraped+=("$RPS")
    kill "$SCRAPER_PID" 2>/dev/null || true
done
ALONE_RPS="$(median "${alone[@]}")"
SCRAPED_RPS="$(median "${scraped[@]}")"
STATS_RATIO="$(ratio "$SCRAPED_RPS" "$ALONE_RPS")"
kill -0 "$PID" 2>/dev/null || ODD+=("allocd (metrics) exited during the run")
stop_agent "$PID"

agent_log_notes metrics
{
    summary_header "metrics.sh (/v1/metrics with 500 task cgroups)" \
        "fixture cgroup v2, $((SCOPES_ALLOCS * SCOPES_TASKS)) scopes, collection_interval 1s; scrape body $SCRAPE_BYTES B"
    row "series in a scrape" "$SERIES" "-" "info"
    row "task rss series" "$TASK_RSS" "$((SCOPES_ALLOCS * SCOPES_TASKS))" "$([[ "$TASK_RSS" == "$((SCOPES_ALLOCS * SCOPES_TASKS))" ]] && echo PASS || echo FAIL)"
    row "agent CPU per scrape (ms)" "$SCRAPE_CPU_MS" "<= $T_SCRAPE_CPU_MS" "$(pass_if le "$SCRAPE_CPU_MS" "$T_SCRAPE_CPU_MS")"
    row "scrape latency mean / worst (ms)" "$MEAN_MS / $WORST_MS" "-" "info"
    row "idle agent CPU (% core)" "$IDLE_PCT" "-" "info"
    row "stats req/s alone" "$(printf '%.0f' "$ALONE_RPS")" "-" "info"
    row "stats req/s, scraped every 1 s" "$(printf '%.0f' "$SCRAPED_RPS")" "-" "info"
    row "ratio scraped/alone" "$STATS_RATIO" ">= $T_STATS_RATIO" "$(pass_if ge "$STATS_RATIO" "$T_STATS_RATIO")"
    print_notes
} | tee "$TMP/summary.txt"
mkdir -p "$RESULTS_DIR"
cp "$TMP/summary.txt" "$RESULTS_DIR/metrics-latest.txt"
log "summary written to $RESULTS_DIR/metrics-latest.txt"
