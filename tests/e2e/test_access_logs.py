"""Access logs: their own sink per proxy (never the app's output), the documented fields,
`gossamer logs` filters, and rotation that keeps the size bound and loses no line."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

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
