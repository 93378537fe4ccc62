"""A crashed sidecar or app is restarted and traffic recovers."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

from meshkit import SHOP, canary_mesh, get_via, workload


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


def _hosts(admin_port: int, cluster: str) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return {
        line.split("::")[1]
        for line in lines
        if line.startswith(cluster + "::") and "::cx_active::" in line
    }


def test_crashed_app_leaves_callers_endpoints_until_it_listens_again(
    mesh_factory: Any, tmp_path: Any
) -> None:
    marker = tmp_path / "restarted"
    slow_restart = [
        "sh",
        "-c",
        # First start: serve at once. Any restart: create nothing, wait 4 s, then serve.
        f'if [ -e {marker} ]; then sleep 4; fi; touch {marker}; exec "$0" "$@"',
        sys.executable,
        str(SHOP),
        "--name",
        "orders",
    ]
    text = "\n---\n".join(
        [
            workload("client", port=None, command=["sleep", "100000"]),
            workload(
                "orders-v2",
                services=["orders", "orders-v2"],
                version="v2",
                replicas=2,
                command=slow_restart,
            ),
        ]
    )
    mesh = mesh_factory(text)
    client = mesh.instance("client-0")
    victim, survivor = mesh.instance("orders-v2-0"), mesh.instance("orders-v2-1")
    assert len(_hosts(client["admin_port"], "outbound|80||orders-v2")) == 2
    os.kill(victim["app_pid"], signal.SIGKILL)
    mesh.wait_for(
        lambda s: any(
            i["name"] == "orders-v2-0" and i["state"] == "restarting" for i in s["instances"]
        ),
        what="victim restarting",
    )
    mesh.wait_for(lambda s: s["instances"][0]["proxy"]["synced"], what="client synced")
    survivor_host = f"127.0.0.1:{survivor['inbound_ports']['80']}"
    assert _hosts(client["admin_port"], "outbound|80||orders-v2") == {survivor_host}
    port = client["outbound_http_port"]
    served = Counter(
        (status, body["instance"] if isinstance(body, dict) else body)
        for status, body in (get_via(port, "http://orders/") for _ in range(20))
    )
    assert served == Counter({(200, "orders-v2-1"): 20})
    # Once it listens again it is back in rotation.
    mesh.wait_for(
        lambda s: any(
            i["name"] == "orders-v2-0" and i["state"] == "running" for i in s["instances"]
        ),
        within_s=20,
        what="victim running again",
    )
    mesh.wait_for(lambda s: all(i["proxy"]["synced"] for i in s["instances"]), what="synced")
    assert len(_hosts(client["admin_port"], "outbound|80||orders-v2")) == 2


def test_changing_a_workload_restarts_it_rolling_with_no_failed_request(
    mesh_factory: Any,
) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 1, "orders-v2": 0}))
    port = mesh.instance("client-0")["outbound_http_port"]
    before = {i["name"]: i["app_pid"] for i in mesh.status()["instances"]}
    results: Counter[object] = Counter()
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            status, body = get_via(port, "http://orders/")
            results[status if status != 200 else body["instance"]] += 1  # type: ignore[index]

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(0.3)
        revision = mesh.edit(
            canary_mesh({"orders-v1": 1, "orders-v2": 0}).replace(
                '"version": "v1"', '"version": "v1", "env": {"RELEASE": "2"}'
            )
        )
        mesh.wait_for(lambda s: s["revision"] > revision, what="new revision")
        mesh.wait_for(
            lambda s: (
                all(
                    i["app_pid"] != before[i["name"]]
                    for i in s["instances"]
                    if i["workload"] == "orders-v1"
                )
                and all(i["state"] == "running" for i in s["instances"])
            ),
            within_s=30,
            what="both orders-v1 instances restarted",
        )
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    failures = {k: v for k, v in results.items() if isinstance(k, int)}
    assert failures == {}, results
    assert results["orders-v1-0"] > 0 and results["orders-v1-1"] > 0
    # The other workloads were not touched.
    after = {i["name"]: i["app_pid"] for i in mesh.status()["instances"]}
    assert after["orders-v2-0"] == before["orders-v2-0"]
    assert after["client-0"] == before["client-0"]
