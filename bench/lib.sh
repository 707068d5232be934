# Shared helpers for the bench scripts (run.sh, follow.sh, stats.sh, all.sh). Sourced, not run.
# Sets BENCH_DIR, ROOT, RESULTS_DIR, BIN; installs an EXIT trap that stops everything the
# script started (agents, nginx, helper processes — each by its own pid) and removes $TMP.
# shellcheck shell=bash disable=SC2034

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS_DIR="$BENCH_DIR/results"
BIN="${ALLOCD_BIN:-$ROOT/target/release/allocd}"

SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_TMP="${KEEP_TMP:-0}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ODD=()   # anything unexpected, reported at the end of the summary

# --------------------------------------------------------------------------- prerequisites
NGINX_BIN=""
find_nginx() {
    NGINX_BIN="$(command -v nginx || true)"
    if [[ -z "$NGINX_BIN" && -x /usr/sbin/nginx ]]; then
        NGINX_BIN=/usr/sbin/nginx
    fi
}

# find_nginx_stream: NGINX_STREAM is what nginx.conf needs for a `stream { }` block: "built in"
# when nginx has the module compiled in, the `load_module` line of its dynamic module when that
# is installed (Debian's libnginx-mod-stream), else empty.
find_nginx_stream() {
    local built modules
    find_nginx
    NGINX_STREAM=""
    [[ -n "$NGINX_BIN" ]] || return 0
    built="$("$NGINX_BIN" -V 2>&1)"
    if [[ " $built " == *" --with-stream "* ]]; then
        NGINX_STREAM="built in"
        return 0
    fi
    modules="$(sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p' <<<"$built")"
    if [[ -n "$modules" && -f "$modules/ngx_stream_module.so" ]]; then
        NGINX_STREAM="load_module $modules/ngx_stream_module.so;"
    fi
}

# ensure_tools TOOL... (curl, wrk, nginx, nginx-stream, python3, gzip, etcd): stops with what is missing and the
# command that installs it; installs it (saying so) only when BENCH_INSTALL=1.
ensure_tools() {
    local missing=() t
    for t in "$@"; do
        case "$t" in
            nginx) find_nginx; [[ -n "$NGINX_BIN" ]] || missing+=(nginx) ;;
            nginx-stream) find_nginx_stream; [[ -n "$NGINX_STREAM" ]] || missing+=(libnginx-mod-stream) ;;
            etcd) command -v etcd >/dev/null || missing+=(etcd-server) ;;
            *) command -v "$t" >/dev/null || missing+=("$t") ;;
        esac
    done
    if ((${#missing[@]} > 0)); then
        local install="apt-get install -y --no-install-recommends ${missing[*]}"
        if [[ "${BENCH_INSTALL:-0}" != 1 ]]; then
            die "missing: ${missing[*]}; install with \`$install\` (as root), or rerun with BENCH_INSTALL=1 to let the script do it"
        fi
        log "BENCH_INSTALL=1: installing ${missing[*]} with apt-get"
        local sudo=()
        if [[ "$(id -u)" -ne 0 ]]; then
            command -v sudo >/dev/null || die "need root or sudo to install ${missing[*]}"
            sudo=(sudo)
        fi
        # RUNLEVEL=1 keeps invoke-rc.d from starting the packaged nginx service.
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
    for t in "$@"; do
        case "$t" in
            nginx) find_nginx; [[ -n "$NGINX_BIN" ]] || die "nginx not available" ;;
            nginx-stream) find_nginx_stream; [[ -n "$NGINX_STREAM" ]] || die "nginx's stream module not available" ;;
            *) command -v "$t" >/dev/null || die "$t not available" ;;
        esac
    done
}

# --------------------------------------------------------------------------- build
# build_release [PLUGIN...]: cargo build --release --workspace (unless SKIP_BUILD=1), then
# checks the binary and liballocd_plugin_<name>.so for each named plugin.
build_release() {
    cd "$ROOT" || die "cannot cd to $ROOT"
    unset CARGO_TARGET_DIR
    if [[ "$SKIP_BUILD" != 1 ]]; then
        log "cargo build --release --workspace"
        cargo build --release --workspace
    fi
    [[ -x "$BIN" ]] || die "$BIN not built"
    compgen -G "$ROOT/target/release/liballocd_plugin_*.so" >/dev/null \
        || die "no liballocd_plugin_*.so beside $BIN"
    local p
    for p in "$@"; do
        [[ -f "$ROOT/target/release/liballocd_plugin_${p//-/_}.so" ]] \
            || die "target/release/liballocd_plugin_${p//-/_}.so not built"
    done
}

# --------------------------------------------------------------------------- measuring
# Any TCP socket on the port, listening or connected (a client's local port cannot be bound).
port_in_use() {
    [[ -n "$(ss -Htan "sport = :$1" 2>/dev/null)" ]]
}

# free_port: a port that no socket uses, from BENCH_PORTS (a range "LOW-HIGH"; default from
# 20000 up to just below the kernel's ephemeral ports, which wrk's and curl's connections take:
# 20000-32767 with Linux's default range).
ephemeral_low="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
((ephemeral_low > 21000)) || ephemeral_low=60000
BENCH_PORTS="${BENCH_PORTS:-20000-$((ephemeral_low - 1))}"
free_port() {
    local p i low="${BENCH_PORTS%-*}" high="${BENCH_PORTS#*-}"
    [[ "$low" =~ ^[0-9]+$ && "$high" =~ ^[0-9]+$ ]] && ((low <= high)) || die "BENCH_PORTS=$BENCH_PORTS: want LOW-HIGH"
    for ((i = 0; i < 200; i++)); do
        p=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found in $BENCH_PORTS"
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

# utime+stime of a pid in clock ticks (fields 14 and 15 of /proc/PID/stat, counted after
# the parenthesised comm, which may contain spaces).
cpu_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return 0; }
    stat="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"

# cpu_pct PID SECONDS -> prints the pid's CPU use over SECONDS as % of one core.
cpu_pct() {
    local t0 t1 s0 s1
    t0="$(cpu_ticks "$1")"
    s0="$(date +%s.%N)"
    sleep "$2"
    t1="$(cpu_ticks "$1")"
    s1="$(date +%s.%N)"
    awk -v a="$t0" -v b="$t1" -v s0="$s0" -v s1="$s1" -v hz="$CLK_TCK" \
        'BEGIN { printf "%.2f", (b - a) / hz / (s1 - s0) * 100 }'
}

kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b != "n/a" && a != "n/a" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { if (b != "n/a" && a != "n/a" && b > 0) printf "%.3f", a / b; else print "n/a" }'; }
gbps() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e9 }'; }
# median VALUE...: the middle value (the lower middle for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mbps() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1e6 }'; }
# pass_if OP VALUE TARGET  (OP: ge | lt | le)
pass_if() {
    awk -v op="$1" -v v="$2" -v t="$3" 'BEGIN {
        ok = 0
        if (v != "n/a" && v != "") {
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

# run_wrk NAME URL -> sets RPS; keeps wrk output in $TMP/wrk-NAME.txt
# (not called in $(...) so that notes appended to ODD survive). With CPU_PIDS set (pids,
# space-separated), also sets CPU_US_PER_REQ: each pid's CPU time (user + system) over the
# measured run divided by the requests wrk completed, in microseconds, in the same order.
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-32}"
WRK_DURATION="${WRK_DURATION:-10s}"
WRK_WARMUP="${WRK_WARMUP:-2s}"
RPS=0
CPU_PIDS=""
CPU_US_PER_REQ=()
run_wrk() {
    local name="$1" url="$2" out="$TMP/wrk-$1.txt" rps reqs pid before=() i=0
    wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_WARMUP" "$url" >/dev/null 2>&1 || true
    for pid in $CPU_PIDS; do before+=("$(cpu_ticks "$pid")"); done
    timeout 60 wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency "$url" >"$out" 2>&1 \
        || ODD+=("wrk $name exited non-zero (see $out)")
    reqs="$(awk '/ requests in / { print $1 }' "$out")"
    CPU_US_PER_REQ=()
    for pid in $CPU_PIDS; do
        CPU_US_PER_REQ+=("$(awk -v a="${before[i]}" -v b="$(cpu_ticks "$pid")" -v n="${reqs:-0}" -v hz="$CLK_TCK" \
            'BEGIN { if (n > 0) printf "%.1f", (b - a) / hz * 1e6 / n; else print "n/a" }')")
        i=$((i + 1))
    done
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
    if grep -q 'Non-2xx or 3xx responses' "$out"; then
        ODD+=("wrk $name: $(grep 'Non-2xx or 3xx responses' "$out" | tr -s ' ')")
    fi
    if grep -q 'Socket errors' "$out"; then
        ODD+=("wrk $name: $(grep 'Socket errors' "$out" | tr -s ' ')")
    fi
    RPS="${rps:-0}"
}

# curl_speed URL -> prints "speed_bytes_per_s http_code size time_total"
curl_speed() {
    curl -s -o /dev/null --max-time 120 -w '%{speed_download} %{http_code} %{size_download} %{time_total}' "$1" || true
}

# jget FILE KEY: a field of the one JSON object in FILE ("n/a" when absent or null).
jget() {
    python3 -c 'import json,sys
d = json.load(open(sys.argv[1])); v = d.get(sys.argv[2])
print("n/a" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else v))' "$1" "$2" 2>/dev/null || echo n/a
}

# median_of NAME URL: downloads URL STREAM_RUNS times with curl; a run is good when it answers
# 200 with at least BIG_BYTES bytes. Sets MEDIAN_PAYLOAD (bytes/s, BIG_BYTES / time, median of
# the good runs), WIRE (size_download) and PEAK_KIB (AGENT_PID's RSS peak over the runs).
median_of() {
    local name="$1" url="$2" r cpid k _speed code size secs rate rates=()
    MEDIAN_PAYLOAD=0 WIRE=0 PEAK_KIB=0
    for ((r = 1; r <= STREAM_RUNS; r++)); do
        curl_speed "$url" >"$TMP/$name-$r.txt" &
        cpid=$!
        while kill -0 "$cpid" 2>/dev/null; do
            k="$(rss_kib "$AGENT_PID")"
            ((k > PEAK_KIB)) && PEAK_KIB=$k
            sleep 0.1
        done
        wait "$cpid" || true
        read -r _speed code size secs <"$TMP/$name-$r.txt" || true
        if [[ "${code:-}" != 200 || -z "${secs:-}" ]] || ((${size:-0} < BIG_BYTES)); then
            ODD+=("$name run $r: HTTP ${code:-?}, ${size:-0} bytes on the wire for a $BIG_BYTES-byte file")
            continue
        fi
        rate="$(awk -v b="$BIG_BYTES" -v t="$secs" 'BEGIN { printf "%.0f", (t > 0 ? b / t : 0) }')"
        log "  $name run $r: payload $(mbps "$rate") MB/s (wire $size B in ${secs}s)"
        rates+=("$rate")
        WIRE=$size
    done
    if ((${#rates[@]} > 0)); then
        MEDIAN_PAYLOAD="$(median "${rates[@]}")"
    fi
}
# --------------------------------------------------------------------------- processes
TMP=""
AGENT_PID=""
BASE=""
AGENT_PIDS=()   # every agent started (stopped at exit)
NGINX_PID=""
NGINX_PIDS=()   # every nginx started (stopped at exit)
BG_PIDS=()      # other helpers started by the script (stopped at exit)

# write_config FILE: the agent config every script starts from (host-metrics and local-disk
# over $TMP/alloc, data in $TMP/data, loopback only).
write_config() {
    cat >"$1" <<EOF
data_dir  = "$TMP/data"
bind_addr = "127.0.0.1"
plugin "host-metrics" {}
plugin "local-disk" {
  config {
    alloc_dir = "$TMP/alloc"
  }
}
EOF
}

make_tmp() {
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/allocd-bench.XXXXXX")"
}

# start_nginx PROBE_URL HTTP_BLOCK [MAIN_BLOCK]: writes a config of its own under $TMP (root,
# workers, no access log, temporary files under $TMP, MAIN_BLOCK in the main context and
# HTTP_BLOCK inside `http { }`), starts nginx in the foreground (NGINX_PID; every one is stopped at exit) and
# waits for PROBE_URL to answer. Each call starts another nginx.
NGINX_STARTED=0
start_nginx() {
    local conf
    NGINX_STARTED=$((NGINX_STARTED + 1))
    conf="$TMP/nginx-$NGINX_STARTED"
    mkdir -p "$conf-tmp"
    cat >"$conf.conf" <<EOF
${3:-}
user root;
worker_processes auto;
daemon off;
pid $conf.pid;
error_log $conf-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $conf-tmp/body;
    proxy_temp_path $conf-tmp/proxy;
    fastcgi_temp_path $conf-tmp/fastcgi;
    uwsgi_temp_path $conf-tmp/uwsgi;
    scgi_temp_path $conf-tmp/scgi;
$2
}
EOF
    log "starting nginx for $1"
    "$NGINX_BIN" -p "$TMP" -c "$conf.conf" -e "$conf-error.log" >"$conf.out" 2>&1 &
    NGINX_PID=$!
    NGINX_PIDS+=("$NGINX_PID")
    wait_http "$1" 10 || { cat "$conf.out" "$conf-error.log" >&2 || true; die "nginx did not start"; }
}

# start_agent NAME CFG [PORT]: starts `allocd agent -config CFG -http-port PORT` (default 0: the
# kernel picks), waits for its
# "==> allocd listening on http://127.0.0.1:PORT" line; sets AGENT_PID and BASE.
# stdout/stderr go to $TMP/NAME.out / $TMP/NAME.err.
start_agent() {
    local name="$1" cfg="$2" i url=""
    "$BIN" agent -config "$cfg" -http-port "${3:-0}" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    for ((i = 0; i < 300; i++)); do
        # (|| true: the background shell may not have created the file yet, and sed's failure
        # would end the script under pipefail and errexit)
        url="$(sed -n 's|^==> allocd listening on \(http://127\.0\.0\.1:[0-9]*\).*|\1|p' "$TMP/$name.out" 2>/dev/null | head -1 || true)"
        [[ -n "$url" ]] && break
        kill -0 "$AGENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$url" ]]; then
        cat "$TMP/$name.out" "$TMP/$name.err" >&2 || true
        die "allocd ($name) did not become ready"
    fi
    BASE="$url"
    log "allocd ($name) pid $AGENT_PID listening on $BASE"
}

# stop_agent PID: SIGTERM, then wait for it.
stop_agent() {
    if [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}

# agent_log_notes NAME: strips colours from $TMP/NAME.{err,out} into $TMP/NAME.log and adds
# notes about error/warn/panic lines to ODD. wrk drops connections with requests in flight
# when a run ends, which the server logs as IncompleteMessage errors: counted apart as benign.
agent_log_notes() {
    local name="$1" incomplete errs line
    sed 's/\x1b\[[0-9;]*m//g' "$TMP/$name.err" "$TMP/$name.out" >"$TMP/$name.log" 2>/dev/null || true
    incomplete="$(grep -c 'IncompleteMessage' "$TMP/$name.log" || true)"
    if ((incomplete > 0)); then
        ODD+=("allocd ($name) logged $incomplete 'server connection error: hyper::Error(IncompleteMessage)' (clients closing mid-request at the end of wrk runs; benign)")
    fi
    errs="$(grep -iE 'error|warn|panic' "$TMP/$name.log" | grep -vc 'IncompleteMessage' || true)"
    if ((errs > 0)); then
        ODD+=("allocd ($name) logged $errs other error/warn/panic line(s), first ones:")
        while IFS= read -r line; do ODD+=("  $line"); done \
            < <(grep -iE 'error|warn|panic' "$TMP/$name.log" | grep -v 'IncompleteMessage' | head -5 || true)
    fi
}

cleanup() {
    local rc=$? p
    for p in "${BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${AGENT_PIDS[@]}"; do
        stop_agent "$p"
    done
    for p in "${NGINX_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -QUIT "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    for p in "${BG_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
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

# --------------------------------------------------------------------------- summary
row() { printf '%-40s %14s %14s  %s\n' "$@"; }

# summary_header TITLE EXTRA: the first lines of a summary (date, revision, host).
summary_header() {
    echo "allocd bench: $1  $(date -u +%Y-%m-%dT%H:%M:%SZ)  rev $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')$([[ "$SKIP_BUILD" == 1 && "${BENCH_BUILT:-0}" != 1 ]] && echo ' (SKIP_BUILD: binary may be older)')"
    echo "host: $(uname -r), $(nproc) cpus; $2"
    echo
    row "metric" "value" "target" "result"
}

print_notes() {
    if ((${#ODD[@]} > 0)); then
        echo
        echo "notes:"
        printf '  %s\n' "${ODD[@]}"
    fi
}

# Fixture allocations and their task cgroups (a fake cgroup v2 tree the cgroup plugin reads);
# the cgroups' process is "$SLEEP_PID", which the caller starts.

# make_alloc ID NTASKS: an allocation directory with task directories task0..task<N-1>.
make_alloc() {
    local a="$TMP/alloc/$1" n
    mkdir -p "$a/alloc/data" "$a/alloc/logs" "$a/alloc/tmp"
    for ((n = 0; n < $2; n++)); do
        mkdir -p "$a/task$n/local" "$a/task$n/secrets" "$a/task$n/tmp" "$a/task$n/private"
        : >"$a/alloc/logs/task$n.stdout.0"
    done
}

# make_cgroups ROOT ID NTASKS: Nomad's v2 scopes <ROOT>/nomad.slice/share.slice/<ID>.task<N>.scope.
make_cgroups() {
    local root="$1" n d
    mkdir -p "$root/nomad.slice/share.slice"
    printf 'cpuset cpu io memory pids\n' >"$root/cgroup.controllers"
    for ((n = 0; n < $3; n++)); do
        d="$root/nomad.slice/share.slice/$2.task$n.scope"
        mkdir -p "$d"
        printf '%s\n' "$SLEEP_PID" >"$d/cgroup.procs"
        printf '1048576\n' >"$d/memory.current"
        printf 'anon 1000\nfile 2000\n' >"$d/memory.stat"
        printf '0\n' >"$d/memory.swap.current"
        printf 'usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_throttled 0\nthrottled_usec 0\n' >"$d/cpu.stat"
    done
}
