"""A restarted `gossamer up` takes over what a killed one left running: apps whose command
line changed (a shell that exec'd the app) too; what cannot be taken over is replaced."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from meshkit import ECHO, get_via, workload

from gossamer.sidecar import process_argv


def test_exec_wrapped_apps_are_taken_over_and_dead_ones_replaced(mesh_factory: Any) -> None:
    wrapped = ["sh", "-c", f"exec {sys.executable} {ECHO}"]
    text = "\n---\n".join(
        [
            workload("client", port=None, command=["sleep", "100000"]),
            workload("orders", command=wrapped),
            workload("stock", command=[sys.executable, str(ECHO)]),
        ]
    )
    mesh = mesh_factory(text + "\n")
    before = {i["name"]: (i["envoy_pid"], i["app_pid"]) for i in mesh.status()["instances"]}
    proxy = mesh.instance("client-0")["outbound_http_port"]
    mesh.proc.kill()
    mesh.proc.wait()
    os.killpg(before["stock-0"][1], signal.SIGKILL)  # this app dies while no `up` runs
    mesh.restart()
    after = {i["name"]: i for i in mesh.status()["instances"]}
    # The exec-wrapped app and every sidecar were taken over, not restarted.
    assert (after["orders-0"]["envoy_pid"], after["orders-0"]["app_pid"]) == before["orders-0"]
    assert after["client-0"]["envoy_pid"] == before["client-0"][0]
    # The dead one's instance was replaced whole, on the same ports.
    assert after["stock-0"]["app_pid"] != before["stock-0"][1]
    mesh.wait_for(
        lambda s: {i["name"]: i["state"] for i in s["instances"]}["stock-0"] == "running",
        20,
        "stock-0 running",
    )
    for host in ("orders", "stock"):
        status, body = get_via(proxy, f"http://{host}/after-restart")
        assert status == 200, body
    # Its old sidecar was stopped, not left holding the ports.
    assert after["stock-0"]["envoy_pid"] != before["stock-0"][0]
    assert process_argv(before["stock-0"][0]) is None  # gone (or a zombie to reap)
