#!/usr/bin/env bash
# Allocation-stats benchmarks for allocd with the `cgroup` metric plugin on a FIXTURE cgroup v2
# tree (release build, 127.0.0.1 only):
#   a. /v1/client/allocation/<id>/stats for an allocation of 10 tasks, wrk req/s, against
#      /v1/client/stats on the same agent in the same run;
#   b. sampling cost of 500 task cgroups at collection_interval = 1s: the agent's CPU over a
#      window, minus the same agent configured without the cgroup plugin (same run).
# See bench/README.md. Writes bench/results/stats-latest.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# Tunables (environment; WRK_* are read by lib.sh).
TASKS="${TASKS:-10}"                     # tasks of the allocation in (a)
SCOPES_ALLOCS="${SCOPES_ALLOCS:-50}"     # (b): allocations ...
SCOPES_TASKS="${SCOPES_TASKS:-10}"       # ... of this many tasks each (500 scopes)
SAMPLE_WINDOW="${SAMPLE_WINDOW:-30}"     # seconds of CPU measurement per agent in (b)
SAMPLE_WARMUP="${SAMPLE_WARMUP:-3}"      # seconds after start before measuring

# Targets.
T_ALLOC_STATS_RPS=10000
T_ALLOC_HOST_RATIO=0.7
T_SAMPLING_CPU_PCT=5

# --------------------------------------------------------------------------- build
ensure_tools curl wrk python3
build_release local-disk host-metrics cgroup

# --------------------------------------------------------------------------- fixture
make_tmp
mkdir -p "$TMP/data" "$TMP/alloc"
sleep 600 &
SLEEP_PID=$!
BG_PIDS+=("$SLEEP_PID")

# config FILE CGROUP_ROOT_OR_EMPTY: the agent config, with or without the cgroup plugin.
config() {
    {
        cat <<EOF
data_dir  = "$TMP/data"
bind_addr = "127.0.0.1"
telemetry {
  collection_interval = "1s"
}
plugin "host-metrics" {}
plugin "local-disk" {
  config {
    alloc_dir = "$TMP/alloc"
  }
}
EOF
        if [[ -n "$2" ]]; then
            cat <<EOF
plugin "cgroup" {
  config {
    root = "$2"
  }
}
EOF
        fi
    } >"$1"
}

# tasks_in FILE: number of entries in the Tasks map of an AllocResourceUsage body ("n/a" if not JSON).
tasks_in() {
    python3 -c 'import json,sys
try:
    d = json.load(open(sys.argv[1]))
    print(len(d.get("Tasks") or {}))
except Exception:
    print("n/a")' "$1"
}

# wait_tasks URL WANT OUT: polls URL (up to 10 s) until its Tasks map has WANT entries;
# leaves the last body in OUT, its status in HTTP_CODE, the count in NTASKS.
wait_tasks() {
    local i
    for ((i = 0; i < 50; i++)); do
        HTTP_CODE="$(curl -s -o "$3" -w '%{http_code}' --max-time 5 "$1" || true)"
        NTASKS="$(tasks_in "$3")"
        [[ "$HTTP_CODE" == 200 && "$NTASKS" == "$2" ]] && return 0
        sleep 0.2
    done
    return 1
}

# --------------------------------------------------------------------------- a. alloc stats
ALLOC_ID="$(cat /proc/sys/kernel/random/uuid)"
make_alloc "$ALLOC_ID" "$TASKS"
CG10="$TMP/cgroup10"
make_cgroups "$CG10" "$ALLOC_ID" "$TASKS"
config "$TMP/stats.hcl" "$CG10"
start_agent stats "$TMP/stats.hcl"
A_PID="$AGENT_PID"

ALLOC_STATS_URL="$BASE/v1/client/allocation/$ALLOC_ID/stats"
HOST_STATS_URL="$BASE/v1/client/stats"
log "checking GET $ALLOC_STATS_URL has $TASKS tasks"
if ! wait_tasks "$ALLOC_STATS_URL" "$TASKS" "$TMP/alloc-stats.json"; then
    ODD+=("GET /v1/client/allocation/<id>/stats: HTTP $HTTP_CODE, $NTASKS tasks (want $TASKS): $(head -c 400 "$TMP/alloc-stats.json")")
fi
ALLOC_TASKS="$NTASKS"
ALLOC_BYTES="$(stat -c %s "$TMP/alloc-stats.json")"
# The fixture's figures must come back through Nomad's v2 mapping.
python3 - "$TMP/alloc-stats.json" "$TASKS" >"$TMP/alloc-stats-check.txt" <<'EOF' || true
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as exc:
    print(f"alloc stats body is not JSON: {exc}")
    sys.exit()
tasks = d.get("Tasks") or {}
problems = []
for name, t in sorted(tasks.items()):
    mem = ((t.get("ResourceUsage") or {}).get("MemoryStats")) or {}
    # v2 mapping (runc imitating v1 memsw): Swap = memory.swap.current + memory.current.
    want = {"RSS": 1000, "Cache": 2000, "Usage": 1048576, "Swap": 1048576}
    got = {k: mem.get(k) for k in want}
    if got != want:
        problems.append(f"task {name}: MemoryStats {got} (fixture: {want})")
total = ((d.get("ResourceUsage") or {}).get("MemoryStats") or {}).get("RSS")
if tasks and total != 1000 * len(tasks):
    problems.append(f"alloc ResourceUsage.MemoryStats.RSS {total} (want {1000 * len(tasks)}: sum over running tasks)")
for p in problems[:4]:
    print(p)
EOF
while IFS= read -r line; do [[ -n "$line" ]] && ODD+=("alloc stats: $line"); done <"$TMP/alloc-stats-check.txt"

log "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION $ALLOC_STATS_URL (body $ALLOC_BYTES B)"
run_wrk alloc-stats "$ALLOC_STATS_URL"
ALLOC_RPS="$RPS"
log "  alloc stats: $ALLOC_RPS req/s"
curl -s -o "$TMP/host-stats.json" --max-time 5 "$HOST_STATS_URL" || true
HOST_BYTES="$(stat -c %s "$TMP/host-stats.json")"
log "wrk ... $HOST_STATS_URL (body $HOST_BYTES B)"
run_wrk host-stats "$HOST_STATS_URL"
HOST_RPS="$RPS"
log "  host stats:  $HOST_RPS req/s"
ALLOC_RATIO="$(ratio "$ALLOC_RPS" "$HOST_RPS")"
kill -0 "$A_PID" 2>/dev/null || ODD+=("allocd (stats) exited during the run")
stop_agent "$A_PID"

# --------------------------------------------------------------------------- b. sampling cost
CG500="$TMP/cgroup500"
FIRST_ID=""
for ((i = 0; i < SCOPES_ALLOCS; i++)); do
    id="$(cat /proc/sys/kernel/random/uuid)"
    [[ -n "$FIRST_ID" ]] || FIRST_ID="$id"
    make_alloc "$id" "$SCOPES_TASKS"
    make_cgroups "$CG500" "$id" "$SCOPES_TASKS"
done
SCOPES="$(find "$CG500/nomad.slice/share.slice" -mindepth 1 -maxdepth 1 -name '*.scope' | wc -l)"

config "$TMP/base.hcl" ""
start_agent sample-base "$TMP/base.hcl"
B_PID="$AGENT_PID"
sleep "$SAMPLE_WARMUP"
log "CPU of the agent without cgroup over ${SAMPLE_WINDOW}s"
BASE_CPU="$(cpu_pct "$B_PID" "$SAMPLE_WINDOW")"
BASE_RSS_MIB="$(kib_to_mib "$(rss_kib "$B_PID")")"
log "  $BASE_CPU % of one core"
kill -0 "$B_PID" 2>/dev/null || ODD+=("allocd (sample-base) exited during the run")
stop_agent "$B_PID"

config "$TMP/cg500.hcl" "$CG500"
start_agent sample-cgroup "$TMP/cg500.hcl"
C_PID="$AGENT_PID"
if ! wait_tasks "$BASE/v1/client/allocation/$FIRST_ID/stats" "$SCOPES_TASKS" "$TMP/cg500-first.json"; then
    ODD+=("500 scopes: allocation $FIRST_ID stats: HTTP $HTTP_CODE, $NTASKS tasks (want $SCOPES_TASKS)")
fi
sleep "$SAMPLE_WARMUP"
log "CPU of the agent with cgroup ($SCOPES scopes) over ${SAMPLE_WINDOW}s"
CG_CPU="$(cpu_pct "$C_PID" "$SAMPLE_WINDOW")"
CG_RSS_MIB="$(kib_to_mib "$(rss_kib "$C_PID")")"
log "  $CG_CPU % of one core"
kill -0 "$C_PID" 2>/dev/null || ODD+=("allocd (sample-cgroup) exited during the run")
stop_agent "$C_PID"
SAMPLING_COST="$(awk -v a="$CG_CPU" -v b="$BASE_CPU" 'BEGIN { printf "%.2f", a - b }')"
PER_SCOPE_US="$(awk -v c="$SAMPLING_COST" -v n="$SCOPES" 'BEGIN { if (n > 0) printf "%.1f", c / 100 * 1e6 / n; else print "n/a" }')"

# --------------------------------------------------------------------------- summary
for n in stats sample-base sample-cgroup; do agent_log_notes "$n"; done
{
    summary_header "stats.sh (alloc stats with the cgroup plugin, sampling cost)" \
        "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION; fixture cgroup v2; alloc stats body $ALLOC_BYTES B, host stats body $HOST_BYTES B; $SCOPES scopes, CPU over ${SAMPLE_WINDOW}s at collection_interval 1s"
    row "alloc stats: tasks in response" "$ALLOC_TASKS" "$TASKS" "$([[ "$ALLOC_TASKS" == "$TASKS" ]] && echo PASS || echo FAIL)"
    row "alloc stats req/s ($TASKS tasks)" "$(printf '%.0f' "$ALLOC_RPS")" ">= $T_ALLOC_STATS_RPS" "$(pass_if ge "$ALLOC_RPS" "$T_ALLOC_STATS_RPS")"
    row "host stats req/s (baseline)" "$(printf '%.0f' "$HOST_RPS")" "-" "info"
    row "ratio alloc/host stats" "$ALLOC_RATIO" ">= $T_ALLOC_HOST_RATIO" "$(pass_if ge "$ALLOC_RATIO" "$T_ALLOC_HOST_RATIO")"
    row "CPU without cgroup (% core)" "$BASE_CPU" "-" "info"
    row "CPU with cgroup, $SCOPES scopes (% core)" "$CG_CPU" "-" "info"
    row "sampling cost of $SCOPES scopes (% core)" "$SAMPLING_COST" "<= $T_SAMPLING_CPU_PCT" "$(pass_if le "$SAMPLING_COST" "$T_SAMPLING_CPU_PCT")"
    row "  per scope per sample (us CPU)" "$PER_SCOPE_US" "-" "info"
    row "ratio CPU with/without cgroup" "$(ratio "$CG_CPU" "$BASE_CPU")" "-" "info"
    row "RSS without / with cgroup (MiB)" "$BASE_RSS_MIB / $CG_RSS_MIB" "-" "info"
    print_notes
} | tee "$TMP/summary.txt"
mkdir -p "$RESULTS_DIR"
cp "$TMP/summary.txt" "$RESULTS_DIR/stats-latest.txt"
cat "$TMP/stats.log" "$TMP/sample-base.log" "$TMP/sample-cgroup.log" >"$RESULTS_DIR/stats-allocd-latest.log" 2>/dev/null || true
cat "$TMP"/wrk-*.txt >"$RESULTS_DIR/stats-wrk-latest.txt"
cp "$TMP/alloc-stats.json" "$RESULTS_DIR/stats-alloc-sample.json"
log "summary written to $RESULTS_DIR/stats-latest.txt"
