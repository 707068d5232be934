#!/usr/bin/env bash
# Benchmark harness for allocd: idle RSS, /v1/client/stats throughput and 1 GiB fs/cat
# throughput, each against an nginx baseline measured in the same run on 127.0.0.1.
# See bench/README.md. Writes the summary to bench/results/latest.txt.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
RESULTS_DIR="$SCRIPT_DIR/results"

# Tunables (environment).
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-32}"
WRK_DURATION="${WRK_DURATION:-10s}"
WRK_WARMUP="${WRK_WARMUP:-2s}"
CAT_RUNS="${CAT_RUNS:-3}"
BIG_SIZE="${BIG_SIZE:-1G}"          # passed to `head -c`
IDLE_WAIT="${IDLE_WAIT:-3}"         # seconds before reading idle RSS
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_TMP="${KEEP_TMP:-0}"

# Targets.
T_IDLE_RSS_MIB=15
T_STATS_RPS=20000
T_CAT_GBPS=1.0
T_CAT_RATIO=0.5
T_CAT_RSS_MIB=30

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------- prerequisites
NGINX_BIN=""
find_nginx() {
    NGINX_BIN="$(command -v nginx || true)"
    if [[ -z "$NGINX_BIN" && -x /usr/sbin/nginx ]]; then
        NGINX_BIN=/usr/sbin/nginx
    fi
}

ensure_tools() {
    local missing=()
    command -v curl >/dev/null || missing+=(curl)
    command -v wrk >/dev/null || missing+=(wrk)
    find_nginx
    [[ -n "$NGINX_BIN" ]] || missing+=(nginx)
    if ((${#missing[@]} > 0)); then
        log "installing: ${missing[*]}"
        local sudo=()
        if [[ "$(id -u)" -ne 0 ]]; then
            command -v sudo >/dev/null || die "need root or sudo to install ${missing[*]}"
            sudo=(sudo)
        fi
        # RUNLEVEL=1 keeps invoke-rc.d from starting the packaged nginx service.
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        find_nginx
    fi
    command -v wrk >/dev/null || die "wrk not available"
    [[ -n "$NGINX_BIN" ]] || die "nginx not available"
}

# --------------------------------------------------------------------------- helpers
port_in_use() {
    [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]
}

free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 40000))
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# VmRSS of a pid in KiB (0 if gone).
rss_kib() {
    local key val _rest
    while read -r key val _rest; do
        if [[ "$key" == "VmRSS:" ]]; then
            echo "$val"
            return 0
        fi
    done <"/proc/$1/status" 2>/dev/null || true
    echo 0
}

kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
gbps() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e9 }'; }
# pass_if OP VALUE TARGET  (OP: ge | lt | le)
pass_if() {
    awk -v op="$1" -v v="$2" -v t="$3" 'BEGIN {
        ok = 0
        if (v != "n/a") {
            if (op == "ge") ok = (v + 0 >= t + 0)
            else if (op == "lt") ok = (v + 0 < t + 0)
            else if (op == "le") ok = (v + 0 <= t + 0)
        }
        print (ok ? "PASS" : "FAIL")
    }'
}

wait_http() { # url timeout_s
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        if curl -s -o /dev/null --max-time 1 "$1"; then return 0; fi
        sleep 0.1
    done
    return 1
}

ODD=()   # anything unexpected, reported at the end

# run_wrk NAME URL -> sets RPS; keeps wrk output in $TMP/wrk-NAME.txt
# (not called in $(...) so that notes appended to ODD survive)
RPS=0
run_wrk() {
    local name="$1" url="$2" out="$TMP/wrk-$1.txt" rps
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_WARMUP" "$url" >/dev/null 2>&1 || true
    timeout 60 wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency "$url" >"$out" 2>&1 \
        || ODD+=("wrk $name exited non-zero (see $out)")
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
    if grep -q 'Non-2xx or 3xx responses' "$out"; then
        ODD+=("wrk $name: $(grep 'Non-2xx or 3xx responses' "$out" | tr -s ' ')")
    fi
    if grep -q 'Socket errors' "$out"; then
        ODD+=("wrk $name: $(grep 'Socket errors' "$out" | tr -s ' ')")
    fi
    RPS="${rps:-0}"
}

# curl_speed URL -> prints "speed_bytes_per_s http_code size"
curl_speed() {
    curl -s -o /dev/null --max-time 120 -w '%{speed_download} %{http_code} %{size_download}' "$1" || true
}

# --------------------------------------------------------------------------- cleanup
AGENT_PID=""
NGINX_PID=""
TMP=""
cleanup() {
    local rc=$?
    if [[ -n "$AGENT_PID" ]] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
    fi
    if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "$KEEP_TMP" == 1 ]]; then
            log "kept temp dir $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------------------- build
ensure_tools
cd "$ROOT"
unset CARGO_TARGET_DIR
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "cargo build --release --workspace"
    cargo build --release --workspace
fi
BIN="$ROOT/target/release/allocd"
[[ -x "$BIN" ]] || die "$BIN not built"
compgen -G "$ROOT/target/release/liballocd_plugin_*.so" >/dev/null \
    || die "no liballocd_plugin_*.so beside $BIN"

# --------------------------------------------------------------------------- fixture
TMP="$(mktemp -d "${TMPDIR:-/tmp}/allocd-bench.XXXXXX")"
ALLOC_ID="$(cat /proc/sys/kernel/random/uuid)"
ALLOC="$TMP/alloc/$ALLOC_ID"
mkdir -p "$TMP/data" "$ALLOC/alloc/data" "$ALLOC/alloc/logs" "$ALLOC/alloc/tmp" \
    "$ALLOC/web/local" "$ALLOC/web/secrets" "$ALLOC/web/tmp" "$ALLOC/web/private" \
    "$TMP/www" "$TMP/nginx-tmp"
printf 'hello from web\n' >"$ALLOC/alloc/logs/web.stdout.0"
: >"$ALLOC/alloc/logs/web.stderr.0"
BIG="$ALLOC/alloc/data/big.bin"
log "writing $BIG_SIZE of /dev/urandom to $BIG"
head -c "$BIG_SIZE" /dev/urandom >"$BIG"
BIG_BYTES="$(stat -c %s "$BIG")"
cat "$BIG" >/dev/null   # page cache warm for both servers

CFG="$TMP/allocd.hcl"
cat >"$CFG" <<EOF
data_dir  = "$TMP/data"
bind_addr = "127.0.0.1"
plugin "host-metrics" {}
plugin "local-disk" {
  config {
    alloc_dir = "$TMP/alloc"
  }
}
EOF

# --------------------------------------------------------------------------- start allocd
PORT="$(free_port)"
log "starting allocd on 127.0.0.1:$PORT"
"$BIN" agent -config "$CFG" -http-port "$PORT" >"$TMP/allocd.out" 2>"$TMP/allocd.err" &
AGENT_PID=$!
ready=0
for ((i = 0; i < 300; i++)); do
    if grep -q "allocd listening on http://127.0.0.1:$PORT" "$TMP/allocd.out" 2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.1
done
if [[ "$ready" != 1 ]]; then
    cat "$TMP/allocd.out" "$TMP/allocd.err" >&2 || true
    die "allocd did not become ready"
fi
BASE="http://127.0.0.1:$PORT"

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
cat >"$TMP/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx-tmp/body;
    proxy_temp_path $TMP/nginx-tmp/proxy;
    fastcgi_temp_path $TMP/nginx-tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx-tmp/uwsgi;
    scgi_temp_path $TMP/nginx-tmp/scgi;
    types { application/json json; application/octet-stream bin; }
    server {
        listen 127.0.0.1:$NPORT;
        root $TMP/www;
        location / { }
    }
}
EOF
log "starting nginx on 127.0.0.1:$NPORT"
"$NGINX_BIN" -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" >"$TMP/nginx.out" 2>&1 &
NGINX_PID=$!
NBASE="http://127.0.0.1:$NPORT"
wait_http "$NBASE/stats.json" 10 || { cat "$TMP/nginx.out" "$TMP/nginx-error.log" >&2 || true; die "nginx did not start"; }

# --------------------------------------------------------------------------- b. stats throughput
log "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION $STATS_URL (body $STATS_BYTES B)"
run_wrk allocd-stats "$STATS_URL"
STATS_RPS="$RPS"
log "  allocd: $STATS_RPS req/s"
log "wrk ... $NBASE/stats.json"
run_wrk nginx-stats "$NBASE/stats.json"
NGINX_STATS_RPS="$RPS"
log "  nginx:  $NGINX_STATS_RPS req/s"
STATS_RATIO="$(ratio "$STATS_RPS" "$NGINX_STATS_RPS")"

# --------------------------------------------------------------------------- c. 1 GiB cat
CAT_URL="$BASE/v1/client/fs/cat/$ALLOC_ID?path=/alloc/data/big.bin"

# Correctness first (untimed): the bytes must match the file.
if ! curl -s --max-time 120 "$CAT_URL" | cmp -s - "$BIG"; then
    ODD+=("fs/cat body differs from $BIG")
fi

best_cat=0
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
    read -r speed code size <"$TMP/cat-$r.txt" || true
    speed="${speed:-0}"
    if [[ "${code:-}" != 200 || "${size:-0}" != "$BIG_BYTES" ]]; then
        ODD+=("allocd cat run $r: HTTP ${code:-?}, ${size:-0} of $BIG_BYTES bytes")
        speed=0
    fi
    log "  allocd cat run $r: $(gbps "$speed") GB/s, peak RSS $(kib_to_mib "$run_peak") MiB"
    best_cat="$(awk -v a="$best_cat" -v b="$speed" 'BEGIN { print (b > a ? b : a) }')"
    if ((run_peak > peak_kib)); then peak_kib=$run_peak; fi
done

best_ncat=0
for ((r = 1; r <= CAT_RUNS; r++)); do
    read -r speed code size < <(curl_speed "$NBASE/big.bin") || true
    speed="${speed:-0}"
    if [[ "${code:-}" != 200 || "${size:-0}" != "$BIG_BYTES" ]]; then
        ODD+=("nginx cat run $r: HTTP ${code:-?}, ${size:-0} of $BIG_BYTES bytes")
        speed=0
    fi
    log "  nginx  cat run $r: $(gbps "$speed") GB/s"
    best_ncat="$(awk -v a="$best_ncat" -v b="$speed" 'BEGIN { print (b > a ? b : a) }')"
done

CAT_GBPS="$(gbps "$best_cat")"
NGINX_CAT_GBPS="$(gbps "$best_ncat")"
CAT_RATIO="$(ratio "$best_cat" "$best_ncat")"
CAT_RSS_MIB="$(kib_to_mib "$peak_kib")"
END_RSS_MIB="$(kib_to_mib "$(rss_kib "$AGENT_PID")")"

kill -0 "$AGENT_PID" 2>/dev/null || ODD+=("allocd exited during the run")

# --------------------------------------------------------------------------- d. summary
row() { printf '%-34s %14s %14s  %s\n' "$@"; }
{
    echo "allocd bench $(date -u +%Y-%m-%dT%H:%M:%SZ)  rev $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')$([[ "$SKIP_BUILD" == 1 ]] && echo ' (SKIP_BUILD: binary may be older)')"
    echo "host: $(uname -r), $(nproc) cpus; wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION; stats body $STATS_BYTES B; cat $BIG_BYTES B x$CAT_RUNS (best)"
    echo
    row "metric" "value" "target" "result"
    row "idle RSS (MiB)" "$IDLE_RSS_MIB" "<= $T_IDLE_RSS_MIB" "$(pass_if le "$IDLE_RSS_MIB" "$T_IDLE_RSS_MIB")"
    row "stats req/s (allocd)" "$(printf '%.0f' "$STATS_RPS")" ">= $T_STATS_RPS" "$(pass_if ge "$STATS_RPS" "$T_STATS_RPS")"
    row "stats req/s (nginx baseline)" "$(printf '%.0f' "$NGINX_STATS_RPS")" "-" "info"
    row "stats ratio allocd/nginx" "$STATS_RATIO" "-" "info"
    row "cat 1 GiB GB/s (allocd)" "$CAT_GBPS" ">= $T_CAT_GBPS" "$(pass_if ge "$CAT_GBPS" "$T_CAT_GBPS")"
    row "cat 1 GiB GB/s (nginx sendfile)" "$NGINX_CAT_GBPS" "-" "info"
    row "cat ratio allocd/nginx" "$CAT_RATIO" ">= $T_CAT_RATIO" "$(pass_if ge "$CAT_RATIO" "$T_CAT_RATIO")"
    row "peak RSS during cat (MiB)" "$CAT_RSS_MIB" "< $T_CAT_RSS_MIB" "$(pass_if lt "$CAT_RSS_MIB" "$T_CAT_RSS_MIB")"
    row "RSS after run (MiB)" "$END_RSS_MIB" "-" "info"
    # allocd's log without ANSI colours; wrk drops connections with requests in flight when
    # a run ends, which warp logs as IncompleteMessage errors: counted apart as benign.
    sed 's/\x1b\[[0-9;]*m//g' "$TMP/allocd.err" "$TMP/allocd.out" >"$TMP/allocd.log"
    incomplete="$(grep -c 'IncompleteMessage' "$TMP/allocd.log" || true)"
    if ((incomplete > 0)); then
        ODD+=("allocd logged $incomplete 'server connection error: hyper::Error(IncompleteMessage)' (clients closing mid-request at the end of wrk runs; benign)")
    fi
    errs="$(grep -iE 'error|warn|panic' "$TMP/allocd.log" | grep -vc 'IncompleteMessage' || true)"
    if ((errs > 0)); then
        ODD+=("allocd logged $errs other error/warn/panic line(s), first ones:")
        while IFS= read -r line; do ODD+=("  $line"); done \
            < <(grep -iE 'error|warn|panic' "$TMP/allocd.log" | grep -v 'IncompleteMessage' | head -5 || true)
    fi
    if ((${#ODD[@]} > 0)); then
        echo
        echo "notes:"
        printf '  %s\n' "${ODD[@]}"
    fi
} | tee "$TMP/summary.txt"
mkdir -p "$RESULTS_DIR"
cp "$TMP/summary.txt" "$RESULTS_DIR/latest.txt"
cp "$TMP/allocd.log" "$RESULTS_DIR/allocd-latest.log"
cat "$TMP"/wrk-*.txt >"$RESULTS_DIR/wrk-latest.txt"
log "summary written to $RESULTS_DIR/latest.txt"
