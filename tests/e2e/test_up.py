"""`gossamer up` with real Envoy sidecars and real app processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from typing import Any

import pytest
from meshkit import Mesh, canary_mesh, free_port, get_via, pid_alive, workload


def _proxy_port(mesh: Mesh, instance: str = "client-0") -> int:
    return int(mesh.instance(instance)["outbound_http_port"])


def _stats(admin_port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=5) as r:
        lines = r.read().decode().splitlines()
    out = {}
    for line in lines:
        name, _, value = line.partition(": ")
        if value.isdigit():
            out[name] = int(value)
    return out


def _versions(mesh: Mesh, n: int, path: str = "/") -> Counter[str]:
    port = _proxy_port(mesh)
    seen: Counter[str] = Counter()
    for _ in range(n):
        status, body = get_via(port, f"http://orders{path}")
        assert status == 200, body
        assert isinstance(body, dict)
        seen[body["version"]] += 1
    return seen


def _wait_revision(mesh: Mesh, revision: int) -> None:
    mesh.wait_for(lambda s: s["revision"] > revision, what=f"revision > {revision}")
    # Every proxy applied the new config.
    mesh.wait_for(
        lambda s: all(i["proxy"]["synced"] for i in s["instances"]), what="all proxies synced"
    )


def test_request_crosses_both_sidecars_and_names_the_instance(mesh_factory: Any) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 1, "orders-v2": 0}))
    status, body = get_via(_proxy_port(mesh), "http://orders/orders")
    assert status == 200
    assert isinstance(body, dict)
    assert body["instance"] in {"orders-v1-0", "orders-v1-1"}
    assert body["path"] == "/orders"
    # The request left through the client's sidecar and entered through the server's.
    client = _stats(mesh.instance("client-0")["admin_port"])
    assert client["cluster.outbound|80||orders-v1.upstream_rq_2xx"] >= 1
    server = mesh.instance(body["instance"])
    assert _stats(server["admin_port"])["http.inbound|80.downstream_rq_2xx"] >= 1
    # Every instance is up with an app and a sidecar, and every proxy is synced.
    st = mesh.status()
    assert {i["name"] for i in st["instances"]} == {
        "client-0",
        "orders-v1-0",
        "orders-v1-1",
        "orders-v2-0",
    }
    assert all(i["state"] == "running" and i["proxy"]["synced"] for i in st["instances"])


def test_weight_edit_reroutes_live_without_restarts(mesh_factory: Any) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 100, "orders-v2": 0}))
    assert _versions(mesh, 50) == Counter({"v1": 50})
    pids_before = {i["name"]: (i["envoy_pid"], i["app_pid"]) for i in mesh.status()["instances"]}

    revision = mesh.edit(canary_mesh({"orders-v1": 20, "orders-v2": 80}))
    _wait_revision(mesh, revision)
    n = 400
    seen = _versions(mesh, n)
    share = seen["v2"] / n
    # Binomial sd at p=0.8, n=400 is 0.02; 0.07 is 3.5 sd.
    assert abs(share - 0.8) <= 0.07, seen
    pids_after = {i["name"]: (i["envoy_pid"], i["app_pid"]) for i in mesh.status()["instances"]}
    assert pids_after == pids_before


def test_bad_edit_is_rejected_and_traffic_keeps_flowing(mesh_factory: Any) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 0, "orders-v2": 100}))
    assert _versions(mesh, 10) == Counter({"v2": 10})
    revision = mesh.status()["revision"]
    bad = canary_mesh({"orders-v1": 100, "orders-v2": 0}).replace('"timeouts"', '"timout"')
    mesh.config.write_text(bad)
    rejected = mesh.wait_for(lambda s: s["rejected"], what="rejection")
    problem = rejected["problems"][0]
    assert problem["file"].endswith("mesh.yaml")
    assert problem["document"] == 4
    assert problem["resource"] == "HTTPRoute/orders-split"
    assert problem["field"] == "spec.rules[0].timout"
    assert "did you mean `timeouts`" in problem["hint"]
    # The mesh still runs the previous revision: all traffic still goes to v2.
    assert mesh.status()["revision"] == revision
    assert _versions(mesh, 30) == Counter({"v2": 30})
    # `status` shows the rejection and exits non-zero.
    out = mesh.cli("status")
    assert out.returncode == 1
    assert "REJECTED" in out.stdout and "timout" in out.stdout and "timeouts" in out.stdout
    # A bad reference is rejected the same way; fixing the file applies it.
    mesh.config.write_text(canary_mesh({"orders-v1": 100, "orders-v3": 1}))
    rejected = mesh.wait_for(
        lambda s: s["rejected"] and s["rejected"]["problems"][0]["code"] == "GSM0104",
        what="unknown backend rejection",
    )
    # So is a new workload whose command cannot run: nothing is started or stopped.
    pids = {i["name"]: (i["envoy_pid"], i["app_pid"]) for i in mesh.status()["instances"]}
    broken = workload("audit", command=["no-such-audit-binary"])
    mesh.config.write_text(canary_mesh({"orders-v1": 0, "orders-v2": 100}) + "---\n" + broken)
    rejected = mesh.wait_for(
        lambda s: (
            (s["rejected"] or {"problems": [{}]})["problems"][0].get("code") == "GSM0202"
            and s["rejected"]
        ),
        what="command preflight rejection",
    )
    assert rejected["problems"][0]["resource"] == "Workload/audit"
    assert {i["name"]: (i["envoy_pid"], i["app_pid"]) for i in mesh.status()["instances"]} == pids
    mesh.config.write_text(canary_mesh({"orders-v1": 100, "orders-v2": 0}))
    _wait_revision(mesh, revision)
    assert mesh.status()["rejected"] is None
    assert _versions(mesh, 10) == Counter({"v1": 10})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_leaves_no_process_behind(mesh_factory: Any, sig: int) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 1, "orders-v2": 1}))
    pids = {
        p
        for i in mesh.status()["instances"]
        for p in (i["envoy_pid"], i["app_pid"])
        if p is not None
    }
    assert len(pids) == 8  # four instances, each an app and an Envoy
    assert all(pid_alive(p) for p in pids)
    assert mesh.stop(sig) == 0
    assert [p for p in pids if pid_alive(p)] == []
    assert not (mesh.state_dir / "up.json").exists()


def test_delta_ads_serves_and_updates(mesh_factory: Any) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 1, "orders-v2": 0}), "--xds-api", "delta")
    st = mesh.status()
    assert {i["proxy"]["api"] for i in st["instances"]} == {"delta"}
    assert _versions(mesh, 10) == Counter({"v1": 10})
    revision = mesh.edit(canary_mesh({"orders-v1": 0, "orders-v2": 1}))
    _wait_revision(mesh, revision)
    assert _versions(mesh, 10) == Counter({"v2": 10})
    # Scale orders-v1 from 2 to 3: only endpoints change, and the new instance serves.
    text = canary_mesh({"orders-v1": 1, "orders-v2": 0}).replace('"replicas": 2', '"replicas": 3')
    revision = mesh.edit(text)
    _wait_revision(mesh, revision)
    mesh.wait_for(lambda s: len(s["instances"]) == 5, what="third orders-v1 instance")
    served = {
        b["instance"]
        for b in (get_via(_proxy_port(mesh), "http://orders/")[1] for _ in range(30))
        if isinstance(b, dict)
    }
    assert served == {"orders-v1-0", "orders-v1-1", "orders-v1-2"}


def test_status_and_down_from_another_terminal(mesh_factory: Any) -> None:
    mesh = mesh_factory(canary_mesh({"orders-v1": 1, "orders-v2": 0}))
    out = mesh.cli("status", "-o", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {i["name"] for i in data["instances"]} >= {"client-0", "orders-v2-0"}
    table = mesh.cli("status")
    assert table.returncode == 0
    assert "orders-v1-0" in table.stdout and "ADMIN" in table.stdout
    effective = mesh.cli("config", "effective", "orders")
    assert effective.returncode == 0, effective.stderr
    assert "to orders-v1:80 100%, orders-v2:80 0%" in effective.stdout
    assert "timeout 5s (timeouts.request)" in effective.stdout
    pids = set(mesh.pids_seen)
    down = subprocess.run(
        [sys.executable, "-m", "gossamer", "down", "--state-dir", str(mesh.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 0, down.stderr
    assert mesh.proc.wait(30) == 0
    assert [p for p in pids if pid_alive(p)] == []


def test_workload_that_cannot_start_is_a_clear_error(tmp_path: Any) -> None:
    (tmp_path / "mesh.yaml").write_text(
        workload("orders", command=["no-such-program-xyz", "--serve"]) + "\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gossamer",
            "up",
            str(tmp_path / "mesh.yaml"),
            "--state-dir",
            str(tmp_path / "state"),
            "--api-port",
            str(free_port()),
            "--xds-port",
            str(free_port()),
            "--first-port",
            "23500",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "GSM0202" in proc.stderr
    assert "no-such-program-xyz" in proc.stderr
    assert "Workload/orders" in proc.stderr and "spec.command[0]" in proc.stderr
    assert subprocess.run(["pgrep", "-f", "23500"], capture_output=True).returncode == 1
