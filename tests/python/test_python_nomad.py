"""The real python-nomad client (and plain requests) against the real allocd binary.

Covers /v1/client/stats, /v1/client/allocation/:id/{stats,gc}, /v1/client/gc and
/v1/client/fs/{ls,stat,cat,readat,stream,logs}, and that allocd's error statuses surface as
python-nomad's exception types.
"""

import time

import pytest
import requests
from nomad.api.exceptions import BadRequestNomadException, BaseNomadException, URLNotFoundNomadException

from conftest import ALLOC_ID, LOG_TEXT, XSS_TEXT

LOG_PATH = "alloc/logs/web.stdout.0"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
LS_KEYS = {"FileMode", "IsDir", "ModTime", "Name", "Size"}


def test_read_stats(client):
    stats = client.client.stats.read_stats()

    for key in ("Memory", "CPU", "DiskStats", "AllocDirStats", "Uptime", "Timestamp", "CPUTicksConsumed"):
        assert key in stats, key
    memory = stats["Memory"]
    assert memory["Total"] > 0
    assert 0 <= memory["Used"] <= memory["Total"]
    assert 0 <= memory["Available"] <= memory["Total"]
    assert 0 <= memory["Free"] <= memory["Total"]

    assert stats["CPU"], "no CPU entries"
    for cpu in stats["CPU"]:
        assert cpu["CPU"].startswith("cpu")
        for field in ("User", "System", "Idle", "TotalPercent"):
            assert 0.0 <= cpu[field] <= 100.0, (cpu["CPU"], field, cpu[field])
        assert cpu["TotalTicks"] >= 0.0
    assert stats["CPUTicksConsumed"] == pytest.approx(sum(c["TotalTicks"] for c in stats["CPU"]))

    assert stats["DiskStats"] is None or isinstance(stats["DiskStats"], list)
    alloc_dir = stats["AllocDirStats"]
    assert (alloc_dir["Device"], alloc_dir["Mountpoint"]) == ("", "")
    assert alloc_dir["Size"] > 0
    assert 0.0 <= alloc_dir["UsedPercent"] <= 100.0

    assert stats["Uptime"] > 0
    assert abs(stats["Timestamp"] - time.time_ns()) < 120 * 10**9, "Timestamp is not Unix nanoseconds near now"


@pytest.mark.parametrize(
    ("path", "names"),
    [("/", ["alloc", "web"]), ("web", ["local", "private", "secrets", "tmp"]), ("alloc/logs", ["web.stdout.0"])],
)
def test_list_files(client, path, names):
    entries = client.client.ls.list_files(ALLOC_ID, path=path)

    assert isinstance(entries, list)
    assert [e["Name"] for e in entries] == names
    for entry in entries:
        assert set(entry) == LS_KEYS, entry  # no ContentType in ls
    log = next((e for e in entries if e["Name"] == "web.stdout.0"), None)
    if log is not None:
        assert (log["IsDir"], log["Size"], log["FileMode"]) == (False, len(LOG_TEXT), "-rw-r--r--")


def test_stat_file(client):
    info = client.client.stat.stat_file(ALLOC_ID, path=LOG_PATH)
    assert info["ContentType"] == "text/plain; charset=utf-8"
    assert (info["Name"], info["IsDir"], info["Size"]) == ("web.stdout.0", False, len(LOG_TEXT))

    root = client.client.stat.stat_file(ALLOC_ID)  # python-nomad's default path "/"
    assert (root["Name"], root["IsDir"]) == (ALLOC_ID, True)
    assert "ContentType" in root


def test_cat(client):
    assert client.client.cat.read_file(ALLOC_ID, path=LOG_PATH) == LOG_TEXT


def test_read_at(client):
    assert client.client.read_at.read_file_offset(ALLOC_ID, 1, 3, LOG_PATH) == "ell"


@pytest.mark.parametrize(
    ("call", "exc", "status"),
    [
        (lambda c: c.client.ls.list_files(UNKNOWN_ID, path="/"), URLNotFoundNomadException, 404),
        (lambda c: c.client.cat.read_file(UNKNOWN_ID, path=LOG_PATH), URLNotFoundNomadException, 404),
        (lambda c: c.client.stat.stat_file("foo", path="/"), BadRequestNomadException, 400),
        (lambda c: c.client.cat.read_file(ALLOC_ID), BadRequestNomadException, 400),  # "/" is a directory
        (lambda c: c.client.cat.read_file(ALLOC_ID, path="web/secrets/token"), BaseNomadException, 500),
    ],
    ids=["ls-unknown-alloc", "cat-unknown-alloc", "stat-short-id", "cat-directory", "cat-secret"],
)
def test_errors_map_to_exceptions(client, call, exc, status):
    with pytest.raises(exc) as info:
        call(client)
    assert info.value.nomad_resp.status_code == status, info.value.nomad_resp.text


def test_cat_xss_headers(allocd):
    resp = requests.get(
        f"{allocd}/v1/client/fs/cat/{ALLOC_ID}", params={"path": "web/local/xss.html"}, timeout=10
    )

    assert resp.status_code == 200, resp.text
    assert resp.text == XSS_TEXT
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-XSS-Protection"] == "1; mode=block"
    assert resp.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def test_stream_logs(client):
    plain = client.client.stream_logs.stream(ALLOC_ID, "web", "stdout", plain=True)
    assert plain == LOG_TEXT
    frames = client.client.stream_logs.stream(ALLOC_ID, "web", "stdout", origin="end", offset=4)
    assert frames.startswith('{"Data":"c2lkZQ==","File":"alloc/logs/web.stdout.0"'), frames
    with pytest.raises(BadRequestNomadException):
        client.client.stream_logs.stream(ALLOC_ID, "nope", "stdout")


def test_read_allocation_stats(client):
    stats = client.client.allocation.read_allocation_stats(ALLOC_ID)
    assert set(stats) == {"ResourceUsage", "Tasks", "Timestamp"}
    assert stats["ResourceUsage"]["DeviceStats"] == []
    assert stats["Tasks"] == {}, "no metric provider reports this allocation's tasks"
    with pytest.raises(URLNotFoundNomadException):
        client.client.allocation.read_allocation_stats(UNKNOWN_ID)


def _finished_allocation(client, alloc_dir, cgroups, victim):
    """An allocation whose task the agent saw running and then exit."""
    (alloc_dir / victim / "alloc/logs").mkdir(parents=True)
    (alloc_dir / victim / "web").mkdir()
    cgroups.running(victim, "web")
    _eventually(lambda: "web" in client.client.allocation.read_allocation_stats(victim)["Tasks"])
    with pytest.raises(BaseNomadException):
        client.client.gc_allocation.garbage_collect(victim)  # running: not eligible
    cgroups.exited(victim, "web")


def _eventually(probe, seconds=60):
    deadline = time.monotonic() + seconds
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_garbage_collect(client, alloc_dir, cgroups):
    victim = "9fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e19"
    _finished_allocation(client, alloc_dir, cgroups, victim)

    def collected():
        try:
            client.client.gc_allocation.garbage_collect(victim)
            return True
        except BaseNomadException:
            return False

    _eventually(collected)
    assert not (alloc_dir / victim).exists()
    with pytest.raises(BaseNomadException):
        client.client.gc_allocation.garbage_collect(victim)


def test_gc_all_allocations(client, alloc_dir, cgroups):
    victim = "8fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e18"
    _finished_allocation(client, alloc_dir, cgroups, victim)

    def collected():
        client.client.gc_all_allocations.garbage_collect()
        time.sleep(0.1)
        return not (alloc_dir / victim).exists()

    _eventually(collected)
    assert (alloc_dir / ALLOC_ID).exists(), "an allocation with no evidence is never collected"
