#!/usr/bin/env bash
# Runs every bench script after one release build: run.sh (idle RSS, stats vs nginx and a
# minimal warp server, cat vs nginx), follow.sh (follow latency, 1,000 followers: fan-out and
# memory given back, 1 GiB stream), stats.sh (alloc stats with the cgroup plugin, sampling
# cost), gzip.sh (gzip cat vs gzip -1), isolation.sh (stats latency under gzip downloads and
# followers), metrics.sh (/v1/metrics with 500 task cgroups), fleet.sh (forwarding between two
# agents in fleet mode vs asking the holder). Ports: free ones from
# BENCH_PORTS (LOW-HIGH, see lib.sh); missing tools stop a script with the command that
# installs them (BENCH_INSTALL=1 lets the scripts run apt-get, saying so). Each writes its own bench/results/*-latest.txt; this concatenates
# them into bench/results/all-latest.txt. Exit status: non-zero if a script failed to run
# (a FAIL against a target is reported in the tables, not in the exit status).
set -uo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS_DIR="$BENCH_DIR/results"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "==> cargo build --release --workspace" >&2
    (cd "$ROOT" && unset CARGO_TARGET_DIR && cargo build --release --workspace \
        && cargo build --release -p allocd --example warp-stats --example fanout) || exit 1
    export BENCH_BUILT=1
fi
export SKIP_BUILD=1

rc=0
start=$SECONDS
mkdir -p "$RESULTS_DIR"
: >"$RESULTS_DIR/all-latest.txt"
for script in run.sh follow.sh stats.sh gzip.sh isolation.sh metrics.sh fleet.sh; do
    t0=$SECONDS
    echo "==> bench/$script" >&2
    "$BENCH_DIR/$script"
    status=$?
    if ((status != 0)); then
        echo "bench/$script FAILED to run (exit status $status)" | tee -a "$RESULTS_DIR/all-latest.txt" >&2
        rc=1
        continue
    fi
    case "$script" in
        run.sh) out="$RESULTS_DIR/latest.txt" ;;
        *) out="$RESULTS_DIR/${script%.sh}-latest.txt" ;;
    esac
    { cat "$out"; echo "($script took $((SECONDS - t0)) s)"; echo; } >>"$RESULTS_DIR/all-latest.txt"
done
echo "(all: $((SECONDS - start)) s after the build)" >>"$RESULTS_DIR/all-latest.txt"
echo "==> all summaries in $RESULTS_DIR/all-latest.txt" >&2
exit "$rc"
