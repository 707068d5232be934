#!/usr/bin/env python3
"""Follow benchmarks for allocd over raw loopback sockets (stdlib only).

  followbench.py latency --port P --target /v1/client/fs/stream/... --file F --mode frames|plain
      Opens one follow stream, then --count times appends a unique line to F (one write(2),
      --interval apart) and measures, per line, the time from just before the write to the
      moment the line's bytes are decoded at the client. Prints one JSON object.

  followbench.py loglines --file F --mib N
      Writes N MiB of access-log-like lines to F (gzip.sh, isolation.sh).

  followbench.py verify --file F < body
      Checks a follow=false frames body against F: payload sha256, contiguous Offsets.

  followbench.py idle --port P --target ... --n 1000 --pid AGENT_PID
      Opens --n concurrent follow streams, reads the agent's VmRSS before and --settle s after,
      and its CPU (utime+stime from /proc/PID/stat) over a --window s idle window. Prints one
      JSON object. (The fan-out of an append to them all is timed by bench/fanout.rs, compiled.)

Responses are parsed incrementally: HTTP/1.1 head, chunked (or close-delimited) body, then
either Nomad's concatenated JSON frames ({"Data":"<base64>",...} objects and {} heartbeats)
or plain bytes.
"""

import argparse
import base64
import json
import os
import re
import secrets
import selectors
import socket
import sys
import threading
import time


class StreamParser:
    """Incremental HTTP/1.1 response parser yielding the decoded payload bytes."""

    def __init__(self, mode):
        self.mode = mode  # "frames" or "plain"
        self.head = b""
        self.status = None
        self.head_text = ""
        self.chunked = False
        self.raw = b""  # undecoded transfer bytes
        self.chunk_left = 0  # bytes left in the current chunk (+2 for CRLF handled separately)
        self.need_crlf = False
        self.frames_buf = ""  # undecoded JSON text
        self.decoder = json.JSONDecoder()
        self.frames = 0
        self.heartbeats = 0
        self.events = []
        self.done = False
        self.wire_bytes = 0

    def feed(self, data):
        """Feeds received bytes; returns the payload bytes decoded from them."""
        self.wire_bytes += len(data)
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return b""
            self.head_text = self.head[:end].decode("latin-1")
            first = self.head_text.split("\r\n", 1)[0]
            parts = first.split(" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
            self.chunked = bool(re.search(r"(?im)^transfer-encoding:\s*chunked", self.head_text))
            data = self.head[end + 4 :]
            self.head = b""
        body = self._dechunk(data) if self.chunked else data
        if self.mode == "plain" or self.status != 200:
            return body
        return self._deframe(body)

    def _dechunk(self, data):
        self.raw += data
        out = []
        while True:
            if self.need_crlf:
                if len(self.raw) < 2:
                    break
                self.raw = self.raw[2:]
                self.need_crlf = False
            if self.chunk_left == 0:
                nl = self.raw.find(b"\r\n")
                if nl < 0:
                    break
                size = int(self.raw[:nl].split(b";")[0], 16)
                self.raw = self.raw[nl + 2 :]
                if size == 0:
                    self.done = True
                    self.raw = b""
                    break
                self.chunk_left = size
            take = self.raw[: self.chunk_left]
            if not take:
                break
            out.append(take)
            self.raw = self.raw[len(take) :]
            self.chunk_left -= len(take)
            if self.chunk_left == 0:
                self.need_crlf = True
        return b"".join(out)

    def _deframe(self, body):
        if body:
            self.frames_buf += body.decode("utf-8")
        out = []
        buf = self.frames_buf
        pos = 0
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos >= len(buf):
                break
            try:
                obj, end = self.decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                break  # incomplete frame: wait for more
            pos = end
            if not obj:
                self.heartbeats += 1
                continue
            self.frames += 1
            if obj.get("FileEvent"):
                self.events.append(obj["FileEvent"])
            data = obj.get("Data")
            if data:
                out.append(base64.b64decode(data))
        self.frames_buf = buf[pos:]
        return b"".join(out)


def request(target, port):
    return (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: allocd-followbench\r\n"
        "Accept: */*\r\n\r\n"
    ).encode()


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(-(-p * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


# --------------------------------------------------------------------------- latency
def cmd_latency(args):
    nonce = secrets.token_hex(4)
    pattern = re.compile(rb"L(\d{6})-" + nonce.encode())
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(request(args.target, args.port))
    parser = StreamParser(args.mode)
    arrived = {}
    ready = threading.Event()
    stop = threading.Event()
    state = {"error": None, "tail": b""}

    def reader():
        try:
            sock.settimeout(0.5)
            while not stop.is_set():
                try:
                    data = sock.recv(1 << 16)
                except socket.timeout:
                    continue
                now = time.monotonic()
                if not data:
                    state["error"] = state["error"] or "server closed the stream"
                    break
                payload = parser.feed(data)
                if parser.status is not None:
                    ready.set()
                    if parser.status != 200:
                        state["error"] = f"HTTP {parser.status}: {(parser.head_text + payload.decode('latin-1'))[:400]}"
                        break
                if payload:
                    text = state["tail"] + payload
                    cut = text.rfind(b"\n")
                    complete, state["tail"] = (text[: cut + 1], text[cut + 1 :]) if cut >= 0 else (b"", text)
                    for m in pattern.finditer(complete):
                        arrived.setdefault(int(m.group(1)), now)
                if parser.done:
                    state["error"] = state["error"] or "stream ended"
                    break
        except Exception as exc:  # noqa: BLE001 - reported in the JSON
            state["error"] = f"reader: {exc!r}"
        finally:
            ready.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    if not ready.wait(10) or parser.status != 200:
        print(json.dumps({"error": state["error"] or "no response head within 10 s", "status": parser.status}))
        return 1
    time.sleep(args.settle)  # let the initial bytes (if any) drain and the follower park

    sent = {}
    fd = os.open(args.file, os.O_WRONLY | os.O_APPEND)
    start = time.monotonic()
    try:
        for i in range(args.count):
            due = start + i * args.interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            line = b"L%06d-%s\n" % (i, nonce.encode())
            sent[i] = time.monotonic()
            os.write(fd, line)
            if state["error"]:
                break
    finally:
        os.close(fd)
    deadline = time.monotonic() + args.timeout
    while len(arrived) < len(sent) and time.monotonic() < deadline and not state["error"]:
        time.sleep(0.01)
    stop.set()
    t.join(2)
    sock.close()

    lat = sorted((arrived[i] - sent[i]) * 1000 for i in sent if i in arrived)
    out = {
        "mode": args.mode,
        "sent": len(sent),
        "received": len(lat),
        "status": parser.status,
        "chunked": parser.chunked,
        "frames": parser.frames,
        "heartbeats": parser.heartbeats,
        "events": parser.events,
        "error": state["error"],
        "duration_s": round(time.monotonic() - start, 2),
    }
    if lat:
        out.update(
            {
                "p50_ms": round(percentile(lat, 50), 3),
                "p90_ms": round(percentile(lat, 90), 3),
                "p99_ms": round(percentile(lat, 99), 3),
                "max_ms": round(lat[-1], 3),
                "min_ms": round(lat[0], 3),
                "mean_ms": round(sum(lat) / len(lat), 3),
            }
        )
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------- idle followers
def cmd_idle(args):
    pid = args.pid
    hz = os.sysconf("SC_CLK_TCK")
    time.sleep(args.pre)
    rss_before = rss_kib(pid)
    fds_before = fd_count(pid)

    sel = selectors.DefaultSelector()
    conns = []
    open_start = time.monotonic()
    connect_errors = []
    for _ in range(args.n):
        try:
            s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
        except OSError as exc:
            connect_errors.append(repr(exc))
            continue
        s.setblocking(False)
        p = StreamParser("frames")
        c = {"sock": s, "parser": p, "closed": False}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
        s.sendall(request(args.target, args.port))

    def pump(timeout):
        for key, _ in sel.select(timeout):
            c = key.data
            try:
                data = c["sock"].recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                c["closed"] = True
                sel.unregister(c["sock"])
                continue
            c["parser"].feed(data)

    # Wait for every response head.
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and any(c["parser"].status is None and not c["closed"] for c in conns):
        pump(0.1)
    open_s = time.monotonic() - open_start
    statuses = {}
    bad_example = None
    for c in conns:
        st = c["parser"].status
        statuses[str(st)] = statuses.get(str(st), 0) + 1
        if st != 200 and bad_example is None:
            bad_example = (c["parser"].head_text + c["parser"].frames_buf)[:400] or "(no response)"
    ok = statuses.get("200", 0)

    # Settle, then RSS; then the CPU window. Keep draining (heartbeats) all along.
    end = time.monotonic() + args.settle
    while time.monotonic() < end:
        pump(max(0.0, min(0.5, end - time.monotonic())))
    rss_after = rss_kib(pid)
    fds_after = fd_count(pid)
    threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    end = t0 + args.window
    while time.monotonic() < end:
        pump(max(0.0, min(0.5, end - time.monotonic())))
    t1, c1 = time.monotonic(), cpu_ticks(pid)
    cpu_pct = (c1 - c0) / hz / (t1 - t0) * 100
    closed_idle = sum(1 for c in conns if c["closed"])
    heartbeats = sum(c["parser"].heartbeats for c in conns)

    for c in conns:
        try:
            c["sock"].close()
        except OSError:
            pass
    out = {
        "n": args.n,
        "connected": len(conns),
        "connect_errors": connect_errors[:3],
        "ok": ok,
        "statuses": statuses,
        "bad_example": bad_example,
        "open_s": round(open_s, 2),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_per_follower_kib": round((rss_after - rss_before) / ok, 2) if ok else None,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "threads": threads,
        "cpu_window_s": round(t1 - t0, 2),
        "cpu_pct": round(cpu_pct, 2),
        "closed_during_idle": closed_idle,
        "heartbeats": heartbeats,
    }
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------- verify
def cmd_verify(args):
    """Reads a frames body on stdin; checks its payload against --file (size, sha256, offsets)."""
    import hashlib

    want = hashlib.sha256()
    with open(args.file, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            want.update(block)
    got = hashlib.sha256()
    decoder = json.JSONDecoder()
    buf = ""
    total = 0
    frames = 0
    bad_offset = None
    stdin = sys.stdin.buffer
    while True:
        block = stdin.read(1 << 22)
        if block:
            buf += block.decode("utf-8")
        pos = 0
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                break
            pos = end
            if obj.get("Data"):
                data = base64.b64decode(obj["Data"])
                got.update(data)
                total += len(data)
                frames += 1
                if obj.get("Offset") != total and bad_offset is None:
                    bad_offset = {"frame": frames, "Offset": obj.get("Offset"), "expected": total}
        buf = buf[pos:]
        if not block:
            break
    ok = got.hexdigest() == want.hexdigest() and bad_offset is None and not buf.strip()
    print(json.dumps({"ok": ok, "bytes": total, "frames": frames, "sha256_match": got.hexdigest() == want.hexdigest(),
                      "bad_offset": bad_offset, "trailing": buf.strip()[:200]}))
    return 0 if ok else 1


# --------------------------------------------------------------------------- loglines
def cmd_loglines(args):
    """Writes --mib MiB of access-log-like lines (seeded, so every run writes the same)."""
    import random
    rng = random.Random(7)
    paths = ["/api/v1/items", "/api/v1/users", "/healthz", "/api/v1/orders", "/static/app.js"]
    with open(args.file, "w") as out:
        written, n = 0, 0
        while written < args.mib << 20:
            n += 1
            line = (f"2026-12-01T14:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z INFO "
                    f"request id={rng.getrandbits(64):016x} path={rng.choice(paths)} "
                    f"status={rng.choice((200, 200, 200, 404, 500))} "
                    f"bytes={rng.randrange(100, 90000)} duration={rng.randrange(1, 900)}ms\n")
            out.write(line)
            written += len(line)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--port", type=int, required=True)
    lat.add_argument("--target", required=True, help="request target, e.g. /v1/client/fs/stream/<id>?...")
    lat.add_argument("--file", required=True, help="the file to append to")
    lat.add_argument("--mode", choices=["frames", "plain"], default="frames")
    lat.add_argument("--count", type=int, default=1000)
    lat.add_argument("--interval", type=float, default=0.005)
    lat.add_argument("--settle", type=float, default=0.5)
    lat.add_argument("--timeout", type=float, default=5.0, help="wait for stragglers after the last append")
    idle = sub.add_parser("idle")
    idle.add_argument("--port", type=int, required=True)
    idle.add_argument("--target", required=True)
    idle.add_argument("--pid", type=int, required=True)
    idle.add_argument("--n", type=int, default=1000)
    idle.add_argument("--pre", type=float, default=1.0, help="seconds before the RSS baseline")
    idle.add_argument("--settle", type=float, default=5.0)
    idle.add_argument("--window", type=float, default=10.0)
    idle.add_argument("--timeout", type=float, default=20.0)
    ver = sub.add_parser("verify")
    ver.add_argument("--file", required=True)
    lines = sub.add_parser("loglines")
    lines.add_argument("--file", required=True)
    lines.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    return {"latency": cmd_latency, "idle": cmd_idle, "verify": cmd_verify, "loglines": cmd_loglines}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
