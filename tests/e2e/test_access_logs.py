"""Access logs: their own sink per proxy (never the app's output), the documented fields,
`gossamer logs` filters, rotation that keeps the size bound and loses no line, and a full
disk that loses only log lines, is reported, and is recovered from."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from meshkit import ECHO, get_via, workload

ACCESS_FIELDS = {
    "start_time",
    "method",
    "path",
    "authority",
    "protocol",
    "response_code",
    "response_flags",
    "response_code_details",
    "duration_ms",
    "bytes_received",
    "bytes_sent",
    "upstream_cluster",
    "upstream_host",
    "downstream_remote_address",
    "request_id",
    "user_agent",
    "node",
    "direction",
    "kind",
}


def _mesh(max_kb: int = 10240, max_files: int = 3) -> str:
    """client -> orders (two echo-app instances), and the access log settings."""
    echo = [sys.executable, str(ECHO)]
    docs = [
        workload("client", port=None, command=["sleep", "100000"]),
        workload("orders", replicas=2, command=echo),
    ]
    access = {
        "apiVersion": "gossamer.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "mesh"},
        "spec": {"accessLog": {"maxSizeKB": max_kb, "maxFiles": max_files}},
    }
    return "\n---\n".join([*docs, json.dumps(access)]) + "\n"


def _entries(state_dir: Path, node: str) -> list[dict[str, Any]]:
    base = state_dir / "access" / f"{node}.log"
    files = [*sorted(base.parent.glob(f"{node}.log.*"), reverse=True), base]
    return [json.loads(line) for f in files if f.exists() for line in f.read_text().splitlines()]


def _wait_for(predicate: Any, within_s: float = 10.0) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_each_request_is_logged_by_both_sidecars_in_their_own_files(mesh_factory: Any) -> None:
    mesh = mesh_factory(_mesh())
    proxy = mesh.instance("client-0")["outbound_http_port"]
    request_id = str(uuid.uuid4())
    status, body = get_via(proxy, "http://orders/ship?x=1", headers={"x-request-id": request_id})
    assert status == 200 and isinstance(body, dict)
    server = body["instance"]

    def find(node: str) -> dict[str, Any] | None:
        return next(
            (e for e in _entries(mesh.state_dir, node) if e["request_id"] == request_id), None
        )

    outbound = _wait_for(lambda: find("client-0"))  # Envoy flushes logs every second
    inbound = _wait_for(lambda: find(server))
    assert set(outbound) == ACCESS_FIELDS and set(inbound) == ACCESS_FIELDS
    assert outbound["direction"] == "outbound" and inbound["direction"] == "inbound"
    assert outbound["method"] == "GET" and outbound["path"] == "/ship?x=1"
    assert outbound["authority"] == "orders"
    assert outbound["response_code"] == 200 and inbound["response_code"] == 200
    assert outbound["upstream_cluster"] == "outbound|80||orders"
    inbound_port = mesh.instance(server)["inbound_ports"]["80"]
    assert outbound["upstream_host"] == f"127.0.0.1:{inbound_port}"
    assert inbound["upstream_cluster"] == "inbound|80||"
    assert outbound["bytes_sent"] == inbound["bytes_sent"] > 0
    # Nothing of it in the app's own output.
    assert request_id not in (mesh.state_dir / "logs" / f"{server}.log").read_text()


def test_gossamer_logs_filters_a_services_entries(mesh_factory: Any) -> None:
    mesh = mesh_factory(_mesh())
    proxy = mesh.instance("client-0")["outbound_http_port"]
    for path in ("/a", "/status/503", "/b", "/status/503"):
        get_via(proxy, f"http://orders{path}")

    def five_hundreds() -> list[dict[str, Any]] | None:
        out = mesh.cli("logs", "orders", "--status", "5xx", "-o", "json")
        assert out.returncode == 0, out.stderr
        found: list[dict[str, Any]] = json.loads(out.stdout)["entries"]
        return found if len(found) >= 4 else None

    entries = _wait_for(five_hundreds)  # Envoy flushes access logs every second
    # Two 503s, each logged on the way out (client) and on the way in (server).
    assert len(entries) == 4
    assert {e["response_code"] for e in entries} == {503}
    assert sorted(e["direction"] for e in entries) == ["inbound", "inbound", "outbound", "outbound"]
    text = mesh.cli("logs", "orders", "--path", "/a", "--since", "5m")
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and all("orders/a 200" in line for line in lines)
    assert mesh.cli("logs", "nosuch").returncode == 1


def test_rotation_keeps_the_size_bound_and_loses_no_line(mesh_factory: Any) -> None:
    max_kb = 64
    mesh = mesh_factory(_mesh(max_kb=max_kb, max_files=20))
    proxy = mesh.instance("client-0")["outbound_http_port"]
    ids = [f"rot-{i}-{uuid.uuid4()}" for i in range(600)]
    deadline = time.monotonic() + 60
    for request_id in ids:  # paced over ~5 s, so the log rotates several times under load
        assert time.monotonic() < deadline
        assert get_via(proxy, "http://orders/r", headers={"x-request-id": request_id})[0] == 200
        time.sleep(0.006)
    elapsed = 60 - (deadline - time.monotonic())
    access = mesh.state_dir / "access"

    def settled() -> bool:
        seen = [e["request_id"] for e in _entries(mesh.state_dir, "client-0")]
        return len(seen) >= len(ids)

    _wait_for(settled, within_s=15)
    time.sleep(2.5)  # one more rotation check and flush
    rotated = sorted(access.glob("client-0.log.*"))
    # Several rotations: each needs Envoy to reopen its log after the rename.
    assert len(rotated) >= 2, rotated
    logged = [e["request_id"] for e in _entries(mesh.state_dir, "client-0")]
    assert sorted(logged) == sorted(ids)  # every line, exactly once
    # The bound: rotation is checked every second and Envoy flushes every second, so a
    # file may exceed it by what two seconds of this traffic write, and by no more.
    files = [f for f in [*rotated, access / "client-0.log"] if f.exists()]
    per_second = sum(f.stat().st_size for f in files) / elapsed
    for f in files:
        assert f.stat().st_size <= max_kb * 1024 + 2 * per_second, (f, f.stat().st_size)


# -- a full disk under the access logs -------------------------------------------------


def _fill(directory: Path) -> Path:
    """A file that takes every free block of ``directory``'s file system."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for _ in range(100_000):  # 400 MB at most; a 512 KiB tmpfs fills in ~128
            try:
                if os.write(fd, b"\0" * 4096) < 4096:
                    break
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
        else:
            raise AssertionError(f"{directory} never filled up")
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def small_access_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs where the mesh ``mesh_factory`` starts next keeps its access logs
    (meshkit's state dir is ``<tmp_path>/<name>/state``). Request it before
    ``mesh_factory``, so that the mesh is stopped before this unmounts it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    access = tmp_path / "mesh" / "state" / "access"
    access.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(access)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield access
    finally:
        done = subprocess.run(["umount", str(access)], capture_output=True, timeout=30)
        if done.returncode != 0:  # still busy: detach it now, it goes once unused
            subprocess.run(["umount", "-l", str(access)], check=True, timeout=30)


def _metric(api: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` on /metrics whose labels include ``labels``."""
    with urllib.request.urlopen(api + "/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match:
            have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
    return total


def test_a_full_disk_loses_only_log_lines_says_so_and_logging_resumes(
    small_access_disk: Path, mesh_factory: Any
) -> None:
    access = small_access_disk
    mesh = mesh_factory(_mesh(max_kb=64), "--telemetry-interval", "1")
    assert mesh.state_dir / "access" == access and os.path.ismount(access)
    proxy = mesh.instance("client-0")["outbound_http_port"]
    loggers = {"client-0", "orders-0", "orders-1"}
    # First a few logged requests, to both instances: each file then ends inside a
    # partly used page, so the first failed write is a short one that cuts a line.
    warm: list[str] = []
    served: set[str] = set()
    while served != {"orders-0", "orders-1"}:
        assert len(warm) < 20, served
        warm.append(f"warm-{uuid.uuid4()}")
        status, body = get_via(proxy, "http://orders/warm", headers={"x-request-id": warm[-1]})
        assert status == 200 and isinstance(body, dict)
        served.add(body["instance"])
    _wait_for(
        lambda: (
            {e["request_id"] for n in loggers for e in _entries(mesh.state_dir, n)} >= set(warm)
        ),
        within_s=30,
    )
    filler = _fill(access)
    assert shutil.disk_usage(access).free == 0

    # Long paths: each line is over 1 KiB, more than a page's leftover holds.
    pad = "x" * 1000
    full = 300
    served.clear()
    deadline = time.monotonic() + 60
    for i in range(full):
        assert time.monotonic() < deadline, f"only {i} requests in 60 s"
        status, body = get_via(proxy, f"http://orders/full/{i}?pad={pad}")
        assert status == 200, (i, status, body)
        assert isinstance(body, dict)
        served.add(body["instance"])
    assert served == {"orders-0", "orders-1"}  # every proxy logged (or tried to)
    sent = len(warm) + full

    # Metrics come from Envoy's statistics, not the logs: exact.
    edge = {"source_workload": "client", "destination_workload": "orders", "response_code": "200"}

    def counted(expected: int) -> None:
        deadline = time.monotonic() + 20
        while True:
            seen = [
                _metric(mesh.api, "istio_requests_total", reporter=reporter, **edge)
                for reporter in ("destination", "source")
            ]
            if seen == [expected, expected]:
                return
            assert time.monotonic() < deadline, (seen, expected)
            time.sleep(0.5)

    counted(sent)

    # It says what failed: per proxy in the status, and as an event each.
    def failing(status: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        logs = {i["name"]: i["access_log"] for i in status["instances"]}
        bad = {n: a for n, a in logs.items() if a["write_failures"] > 0 and a["failing"]}
        return logs if set(bad) >= loggers else None

    logs = mesh.wait_for(failing, within_s=40, what="the failed writes in the status")
    for name in loggers:
        assert logs[name]["last_error"] and logs[name]["last_failure_at"], logs[name]
    events = mesh.status()["events"]
    assert {e["proxy"] for e in events if e["kind"] == "access-log-failed"} >= loggers, events
    assert "access log of client-0" in mesh.output()  # and a line in up's own log
    # `gossamer logs` still answers: cut-short lines are unreadable lines, not errors.
    out = mesh.cli("logs", "orders", "-n", "1000", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["unreadable_lines"] >= 1
    assert mesh.proc.poll() is None

    # Space is back: new requests are logged again, by both sidecars of each.
    filler.unlink()
    ids = [f"after-{i}-{uuid.uuid4()}" for i in range(20)]
    for request_id in ids:
        status, _ = get_via(proxy, "http://orders/after", headers={"x-request-id": request_id})
        assert status == 200

    def logged() -> dict[str, Any] | None:
        out = mesh.cli("logs", "orders", "--path", "/after", "-n", "1000", "-o", "json")
        assert out.returncode == 0, out.stderr
        data: dict[str, Any] = json.loads(out.stdout)
        seen = [(e["request_id"], e["direction"]) for e in data["entries"]]
        return data if len(seen) >= 2 * len(ids) else None

    data = _wait_for(logged, within_s=40)  # Envoy flushes its log buffer on a timer
    seen = sorted((e["request_id"], e["direction"]) for e in data["entries"])
    assert seen == sorted((i, d) for i in ids for d in ("inbound", "outbound"))

    def recovered(status: dict[str, Any]) -> bool:
        kinds = {(e["kind"], e.get("proxy")) for e in status["events"]}
        return all(
            not i["access_log"]["failing"] and ("access-log-recovered", i["name"]) in kinds
            for i in status["instances"]
            if i["name"] in loggers
        )

    mesh.wait_for(recovered, within_s=20, what="the recovery in the status")
    counted(sent + len(ids))
    assert mesh.proc.poll() is None


def test_the_grpc_sink_streams_entries_to_the_control_plane(mesh_factory: Any) -> None:
    """With `sink: Grpc`, proxies send entries over Envoy's access log service and the
    control plane writes the same files, with the same fields."""
    text = _mesh().replace('"maxFiles": 3}', '"maxFiles": 3, "sink": "Grpc"}')
    assert '"sink": "Grpc"' in text
    mesh = mesh_factory(text)
    proxy = mesh.instance("client-0")["outbound_http_port"]
    request_id = str(uuid.uuid4())
    status, body = get_via(proxy, "http://orders/via-als", headers={"x-request-id": request_id})
    assert status == 200 and isinstance(body, dict)
    server = body["instance"]

    def find(node: str) -> dict[str, Any] | None:
        return next(
            (e for e in _entries(mesh.state_dir, node) if e["request_id"] == request_id), None
        )

    outbound = _wait_for(lambda: find("client-0"))
    inbound = _wait_for(lambda: find(server))
    assert set(outbound) == ACCESS_FIELDS and set(inbound) == ACCESS_FIELDS
    assert (outbound["direction"], inbound["direction"]) == ("outbound", "inbound")
    assert outbound["path"] == "/via-als" and outbound["method"] == "GET"
    assert outbound["response_code"] == inbound["response_code"] == 200
    assert outbound["response_flags"] == "-"
    assert outbound["upstream_cluster"] == "outbound|80||orders"
    assert outbound["bytes_sent"] == inbound["bytes_sent"] > 0
    assert request_id not in (mesh.state_dir / "logs" / f"{server}.log").read_text()
    shown = mesh.cli("logs", "orders", "--path", "/via-als", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["entries"]) == 2
