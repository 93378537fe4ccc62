"""Stopping an instance fails no request: it leaves every caller's endpoints (and waits
until they applied that), its inbound requests in flight finish, and only then does its
app get SIGTERM."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from meshkit import ECHO, Mesh, get_via, request_via, workload

SLOW_MS = 1500
SLOW_REQUESTS = 8

# The echo app, with a shell in front that writes to the app's log when SIGTERM reaches
# the process group (the app and the shell get it together).
TERM_LOGGING_ECHO = [
    "sh",
    "-c",
    '"$0" "$1" & child=$!; '
    "trap 'echo \"SIGTERM at $(date +%s.%N)\"; wait $child; exit 0' TERM; "
    "wait $child",
    sys.executable,
    str(ECHO),
]


def _mesh(replicas: int, drain: str, grace: str = "2s") -> str:
    orders = {
        "apiVersion": "gossamer.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {"name": "orders"},
        "spec": {
            "replicas": replicas,
            "ports": [{"port": 80, "protocol": "http"}],
            "command": TERM_LOGGING_ECHO,
            "shutdown": {"drainTimeout": drain, "gracePeriod": grace},
        },
    }
    client = workload("client", port=None, command=["sleep", "100000"])
    return "\n---\n".join([client, json.dumps(orders)]) + "\n"


def _sigterm_at(mesh: Mesh, instance: str) -> float | None:
    log = mesh.state_dir / "logs" / f"{instance}.log"
    found = re.search(r"SIGTERM at (\d+\.\d+)", log.read_text()) if log.exists() else None
    return float(found.group(1)) if found else None


def _wait_sigterm(mesh: Mesh, instance: str, within_s: float) -> float:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        at = _sigterm_at(mesh, instance)
        if at is not None:
            return at
        time.sleep(0.05)
    raise AssertionError(f"{instance}'s app got no SIGTERM in {within_s}s:\n{mesh.output()}")


@dataclass
class Slow:
    sent_at: float
    done_at: float = 0.0
    status: int = 0
    instance: str = ""


class ShortStream(threading.Thread):
    """Short requests one after another through the client's sidecar, bounded in count
    and time, counting every answer that is not a 200."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.sent = 0
        self.failed: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline and self.sent < 5000:
            self.sent += 1
            try:
                status, body = get_via(self.port, "http://orders/", timeout=5)
            except OSError as exc:
                self.failed.append(repr(exc))
                continue
            if status != 200:
                self.failed.append(f"{status} {str(body)[:200]}")


def _slow_requests(port: int) -> tuple[list[Slow], list[threading.Thread]]:
    slows: list[Slow] = []
    threads = []

    def one(slow: Slow) -> None:
        try:
            status, body = get_via(port, f"http://orders/delay/{SLOW_MS}", timeout=15)
        except OSError as exc:
            status, body = -1, repr(exc)
        slow.done_at = time.time()
        slow.status = status
        slow.instance = body.get("instance", "") if isinstance(body, dict) else str(body)[:200]

    for _ in range(SLOW_REQUESTS):
        slow = Slow(sent_at=time.time())
        slows.append(slow)
        thread = threading.Thread(target=one, args=(slow,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(0.02)
    return slows, threads


def test_removed_instance_finishes_its_requests_before_its_app_is_stopped(
    mesh_factory: Any,
) -> None:
    # Start with no drain at all; the edit below gives 10 s without restarting anything.
    mesh = mesh_factory(_mesh(replicas=2, drain="0s"))
    pids = {i["name"]: i["app_pid"] for i in mesh.status()["instances"]}
    revision = mesh.edit(_mesh(replicas=2, drain="10s"))
    mesh.wait_for(lambda s: s["revision"] > revision, what="the drain timeout applied")
    assert {i["name"]: i["app_pid"] for i in mesh.status()["instances"]} == pids
    assert "0 proxies got new config" in mesh.output()

    port = mesh.instance("client-0")["outbound_http_port"]
    stream = ShortStream(port)
    stream.start()
    try:
        time.sleep(0.3)
        slows, threads = _slow_requests(port)
        time.sleep(0.2)  # all of them in flight
        revision = mesh.edit(_mesh(replicas=1, drain="10s"))
        mesh.wait_for(lambda s: s["revision"] > revision, what="orders-1 removed")
        sigterm_at = _wait_sigterm(mesh, "orders-1", within_s=15)
        for thread in threads:
            thread.join(timeout=15)
        time.sleep(0.3)  # short requests after orders-1 is gone, too
    finally:
        stream.stop.set()
        stream.join(timeout=10)

    assert [s.status for s in slows] == [200] * SLOW_REQUESTS, slows
    on_removed = [s for s in slows if s.instance == "orders-1"]
    assert on_removed, slows
    # SIGTERM came only once the requests on orders-1 were done: none could have ended
    # before its delay had passed.
    assert sigterm_at >= max(s.sent_at for s in on_removed) + SLOW_MS / 1000
    assert stream.failed == [], stream.failed
    assert stream.sent > 20
    # Both other sidecars (client-0, orders-0) had the endpoint and applied its removal.
    assert re.search(
        r"orders-1: out of every caller's endpoints after [\d.]+ ms \(2 applied", mesh.output()
    )
    mesh.wait_for(
        lambda s: [i["name"] for i in s["instances"] if i["workload"] == "orders"] == ["orders-0"],
        what="orders-1 gone",
    )


def test_drain_timeout_bounds_the_wait_for_requests_in_flight(mesh_factory: Any) -> None:
    mesh = mesh_factory(_mesh(replicas=2, drain="500ms", grace="1s"))
    victim = mesh.instance("orders-1")
    inbound = victim["inbound_ports"]["80"]
    result: list[int] = []

    def hang() -> None:
        # Straight to orders-1's inbound listener: it is in flight there for 8 s.
        try:
            result.append(request_via(inbound, "http://orders/delay/8000", timeout=15).status)
        except OSError:
            result.append(-1)

    thread = threading.Thread(target=hang, daemon=True)
    thread.start()
    time.sleep(0.3)
    revision = mesh.edit(_mesh(replicas=1, drain="500ms", grace="1s"))
    edited = time.time()
    mesh.wait_for(lambda s: s["revision"] > revision, what="orders-1 removed")
    sigterm_at = _wait_sigterm(mesh, "orders-1", within_s=10)
    thread.join(timeout=15)
    # The file watch, the callers' ACKs and 0.5 s of drain: well before the 8 s request ends.
    assert sigterm_at - edited < 4, mesh.output()
    assert result != [200]
    assert "still in flight after the drain timeout" in mesh.output()
    mesh.wait_for(
        lambda s: all(i["name"] != "orders-1" for i in s["instances"]), what="orders-1 gone"
    )
