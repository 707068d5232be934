"""Fixtures: one Nomad-layout allocation on disk, the real allocd binary serving it, clients."""

import contextlib
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

import nomad
import pytest

ALLOC_ID = "5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11"
LOG_TEXT = "Hello from the other side"
XSS_TEXT = "<script>alert(document.domain);</script>"
REPO = Path(__file__).resolve().parents[2]
READY_PREFIX = "==> allocd listening on "
READY_TIMEOUT_S = 30
CLIENT_TIMEOUT_S = 10


def _write_allocation(alloc_dir: Path) -> None:
    root = alloc_dir / ALLOC_ID
    for sub in ("alloc/logs", "alloc/data", "alloc/tmp", "web/local", "web/secrets", "web/tmp", "web/private"):
        (root / sub).mkdir(parents=True)
    (root / "alloc/logs/web.stdout.0").write_text(LOG_TEXT)
    (root / "web/local/xss.html").write_text(XSS_TEXT)
    (root / "web/secrets/token").write_text("s3cr3t")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class TaskCgroups:
    """A cgroup v2 tree read by the real cgroup plugin, so tests decide what the GC evidence
    says: a running task lists a live pid (this process), an exited one lists none."""

    def __init__(self, root: Path):
        self.root = root
        (root / "nomad.slice/share.slice").mkdir(parents=True)
        (root / "cgroup.controllers").write_text("cpu memory pids\n")

    def _write(self, alloc_id: str, task: str, procs: str) -> None:
        scope = self.root / f"nomad.slice/share.slice/{alloc_id}.{task}.scope"
        scope.mkdir(parents=True, exist_ok=True)
        (scope / "memory.stat").write_text("anon 4096\nfile 0\n")
        (scope / "memory.current").write_text("4096\n")
        (scope / "cpu.stat").write_text("usage_usec 1\nuser_usec 1\nsystem_usec 0\n")
        (scope / "cgroup.procs").write_text(procs)

    def running(self, alloc_id: str, task: str) -> None:
        self._write(alloc_id, task, f"{os.getpid()}\n")

    def exited(self, alloc_id: str, task: str) -> None:
        self._write(alloc_id, task, "")


@pytest.fixture(scope="session")
def cgroups(tmp_path_factory):
    return TaskCgroups(tmp_path_factory.mktemp("cgroup"))


@pytest.fixture(scope="session")
def alloc_dir(tmp_path_factory):
    """The agent's allocation directory, holding the fixture allocation."""
    path = tmp_path_factory.mktemp("alloc")
    _write_allocation(path)
    return path


def allocd_binary() -> Path:
    binary = Path(os.environ.get("ALLOCD_BIN", REPO / "target/debug/allocd"))
    if not binary.is_file():
        pytest.fail(f"allocd binary not found at {binary}: run `cargo build --workspace` or set ALLOCD_BIN")
    return binary


@contextlib.contextmanager
def running_allocd(tmp: Path, config_text: str, port: int = 0):
    """Runs the real agent with `config_text` (HCL) written under `tmp` on `port` (0: the kernel
    picks one); yields its base URL ("http://127.0.0.1:PORT" or "https://..." when TLS is on)
    and stops it afterwards."""
    config = tmp / "allocd.hcl"
    config.write_text(config_text)
    stderr_path = tmp / "allocd.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [str(allocd_binary()), "agent", "-config", str(config), "-http-port", str(port)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )

    # A reader thread drains stdout for the whole session so the agent never blocks on a full pipe.
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()

    base = None
    try:
        while base is None:
            line = lines.get(timeout=READY_TIMEOUT_S)
            if line is None:
                raise RuntimeError(f"exited with {proc.wait()}")
            if line.startswith(READY_PREFIX):
                base = line[len(READY_PREFIX):].strip()
    except (queue.Empty, RuntimeError) as err:
        _stop(proc)
        reason = err if isinstance(err, RuntimeError) else f"no listening line within {READY_TIMEOUT_S}s"
        pytest.fail(f"allocd did not start ({reason}); stderr:\n{stderr_path.read_text()}")

    try:
        yield base
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def allocd(tmp_path_factory, alloc_dir, cgroups):
    """Starts allocd over a fresh allocation; yields its base URL ("http://127.0.0.1:PORT")."""
    tmp = tmp_path_factory.mktemp("allocd")
    config = (
        f'data_dir = "{tmp / "data"}"\n'
        'bind_addr = "127.0.0.1"\n'
        'plugin "host-metrics" {}\n'
        'plugin "local-disk" {\n'
        f'  config {{ alloc_dir = "{alloc_dir}" }}\n'
        '}\n'
        'plugin "cgroup" {\n'
        f'  config {{ root = "{cgroups.root}" \n mode = "v2" }}\n'
        '}\n'
        'telemetry { collection_interval = "100ms" }\n'
        'client { gc_exit_grace = "0s" }\n'
    )
    with running_allocd(tmp, config) as base:
        assert base.startswith("http://127.0.0.1:"), base
        yield base


@pytest.fixture(scope="session")
def client(allocd):
    """The real python-nomad client pointed at allocd, immune to NOMAD_* variables in the environment."""
    port = int(allocd.rsplit(":", 1)[1])
    with pytest.MonkeyPatch.context() as mp:
        for var in ("NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_NAMESPACE", "NOMAD_REGION", "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY"):
            mp.delenv(var, raising=False)
        return nomad.Nomad(host="127.0.0.1", port=port, timeout=CLIENT_TIMEOUT_S)
