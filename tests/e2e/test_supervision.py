"""A crashed sidecar or app is restarted and traffic recovers."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

from meshkit import canary_mesh, get_via


def _all_v2(mesh: Any, n: int) -> bool:
    port = mesh.instance("client-0")["outbound_http_port"]
    seen: Counter[object] = Counter()
    for _ in range(n):
        status, body = get_via(port, "http://orders/")
        seen[(status, body.get("version") if isinstance(body, dict) else None)] += 1
    return seen == Counter({(200, "v2"): n})


def _recover(mesh: Any, within_s: float = 20.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        try:
            if _all_v2(mesh, 5):
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"traffic did not recover in {within_s}s:\n{mesh.output()}")


def test_killed_envoy_is_restarted_and_traffic_recovers(mesh_factory: Any) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 0, "orders-v2": 1}))
    assert _all_v2(mesh, 5)
    before = mesh.instance("orders-v2-0")
    os.kill(before["envoy_pid"], signal.SIGKILL)
    after = mesh.wait_for(
        lambda s: next(
            (
                i
                for i in s["instances"]
                if i["name"] == "orders-v2-0"
                and i["envoy_restarts"] == 1
                and i["envoy_pid"]
                and i["proxy"]["synced"]
            ),
            None,
        ),
        what="envoy restarted and synced",
    )
    assert after["envoy_pid"] != before["envoy_pid"]
    assert after["app_pid"] == before["app_pid"]  # the app was not touched
    _recover(mesh)


def test_killed_app_is_restarted_and_traffic_recovers(mesh_factory: Any) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 0, "orders-v2": 1}))
    before = mesh.instance("orders-v2-0")
    os.kill(before["app_pid"], signal.SIGKILL)
    mesh.wait_for(
        lambda s: any(
            i["name"] == "orders-v2-0" and i["app_restarts"] == 1 and i["app_pid"]
            for i in s["instances"]
        ),
        what="app restarted",
    )
    after = mesh.instance("orders-v2-0")
    assert after["app_last_exit"] == -signal.SIGKILL
    assert after["envoy_pid"] == before["envoy_pid"]
    _recover(mesh)
