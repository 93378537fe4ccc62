"""Changing a running mesh through the config store: apply, diff, history, rollback.
Each change is a revision; a refused or conflicting one leaves the mesh and the store
exactly as they were."""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from meshkit import ECHO, config_dump, workload

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders}
spec:
  parentRefs: [{kind: Service, group: "", name: orders, port: 80}]
  rules:
  - backendRefs: [{name: orders, port: 80}]
    timeouts: {request: TIMEOUT}
"""


def _mesh() -> str:
    echo = [sys.executable, str(ECHO)]
    return "\n---\n".join(
        [
            workload("client", port=None, command=["sleep", "100000"]),
            workload("orders", command=echo),
        ]
    )


def _routes(admin_port: int) -> list[dict[str, Any]]:
    """The proxy's dynamic route configurations, without Envoy's bookkeeping."""
    dump = config_dump(admin_port, "dynamic_route_configs")
    return sorted((c["route_config"] for c in dump["configs"]), key=lambda r: str(r.get("name")))


def _timeout(admin_port: int) -> str:
    for config in _routes(admin_port):
        for host in config.get("virtual_hosts", []):
            if "orders" in host.get("domains", []):
                return str(host["routes"][0]["route"]["timeout"])
    raise AssertionError("no route to orders")


def _history(mesh: Any) -> dict[str, Any]:
    out = mesh.cli("history", "-o", "json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_apply_diff_history_and_rollback_converge_proxies(
    mesh_factory: Any, tmp_path: Path
) -> None:
    mesh = mesh_factory(_mesh())
    admin = mesh.instance("client-0")["admin_port"]
    before = _routes(admin)
    route = tmp_path / "route.yaml"
    route.write_text(ROUTE.replace("TIMEOUT", "3s"))

    diff = mesh.cli("diff", "-f", str(route))
    assert diff.returncode == 1, diff.stderr  # something would change
    assert "+ HTTPRoute/orders" in diff.stdout and "client-0  routes +0 ~1 -0" in diff.stdout
    assert _history(mesh)["current"] == 1  # a diff applies nothing

    applied = mesh.cli("apply", "-f", str(route), "-m", "orders: 3s timeout")
    assert applied.returncode == 0, applied.stderr
    assert "applied as revision 2" in applied.stdout
    mesh.wait_for(lambda _s: _timeout(admin) == "3s", what="3s timeout on client-0")
    after_first = _routes(admin)

    route.write_text(ROUTE.replace("TIMEOUT", "5s"))
    assert mesh.cli("diff", "-f", str(route)).stdout.count("-      request: 3s") == 1
    assert mesh.cli("apply", "-f", str(route)).returncode == 0
    mesh.wait_for(lambda _s: _timeout(admin) == "5s", what="5s timeout on client-0")
    assert mesh.cli("diff", "-f", str(route)).returncode == 0  # nothing left to change

    history = _history(mesh)
    assert [r["revision"] for r in history["revisions"]] == [3, 2, 1]
    assert history["revisions"][1]["message"] == "orders: 3s timeout"
    shown = mesh.cli("history", "3")
    assert "-      request: 3s" in shown.stdout and "+      request: 5s" in shown.stdout

    # Rolling back restores the exact earlier model; the proxy converges to the same config.
    assert mesh.cli("rollback", "2").returncode == 0
    mesh.wait_for(lambda _s: _routes(admin) == after_first, what="revision 2's routes")
    assert _history(mesh)["revisions"][0]["message"] == "rollback to revision 2"
    assert mesh.cli("rollback", "1").returncode == 0
    mesh.wait_for(lambda _s: _routes(admin) == before, what="revision 1's routes")
    assert mesh.cli("rollback", "99").returncode == 1


def test_a_refused_change_leaves_mesh_and_store_untouched(
    mesh_factory: Any, tmp_path: Path
) -> None:
    mesh = mesh_factory(_mesh())
    admin = mesh.instance("client-0")["admin_port"]
    before, history = _routes(admin), _history(mesh)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        ROUTE.replace("TIMEOUT", "3s").replace(
            "name: orders, port: 80}]\n    ", "name: ordrs, port: 80}]\n    "
        )
    )
    out = mesh.cli("apply", "-f", str(bad))
    assert out.returncode == 1
    assert "GSM0104" in out.stderr and "ordrs" in out.stderr and "nothing was applied" in out.stderr
    bad.write_text("kind: [\n")
    out = mesh.cli("apply", "-f", str(bad))
    assert out.returncode == 1 and "GSM0001" in out.stderr
    assert _history(mesh) == history
    assert _routes(admin) == before


def test_concurrent_applies_on_the_same_revision_one_wins_one_is_refused(
    mesh_factory: Any, tmp_path: Path
) -> None:
    mesh = mesh_factory(_mesh())
    answers: list[tuple[int, dict[str, Any]]] = []

    def apply(timeout: str) -> None:
        path = str(tmp_path / f"route-{timeout}.yaml")
        body = {"files": {path: ROUTE.replace("TIMEOUT", timeout)}, "expect_revision": 1}
        request = urllib.request.Request(
            mesh.api + "/api/v1/apply",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                answers.append((r.status, json.loads(r.read())))
        except urllib.error.HTTPError as exc:
            answers.append((exc.code, json.loads(exc.read())))

    threads = [threading.Thread(target=apply, args=(t,)) for t in ("3s", "4s")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert sorted(status for status, _ in answers) == [200, 409], answers
    [refused] = [a for status, a in answers if status == 409]
    assert "moved from revision 1 to 2" in refused["conflict"]
    assert [r["revision"] for r in _history(mesh)["revisions"]] == [2, 1]


CANARY = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: orders-v2}
spec:
  ports: [{port: 80}]
  command: [sleep, "100000"]
  services: [orders-v2]
  replicas: 0
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders}
spec:
  parentRefs: [{kind: Service, group: "", name: orders, port: 80}]
  rules:
  - backendRefs: [{name: orders, port: 80, weight: 90}, {name: orders-v2, port: 80, weight: 10}]
    timeouts: {request: 3s}
"""


def test_an_error_envoy_could_run_is_refused_unless_forced(
    mesh_factory: Any, tmp_path: Path
) -> None:
    """10 % to a version with no instances is refused (GSM0126); --force applies it after
    review, and the finding is kept as a warning."""
    mesh = mesh_factory(_mesh())
    canary = tmp_path / "canary.yaml"
    canary.write_text(CANARY)
    refused = mesh.cli("apply", "-f", str(canary))
    assert refused.returncode == 1
    assert "GSM0126" in refused.stderr and "--force" in refused.stderr
    assert _history(mesh)["current"] == 1
    forced = mesh.cli("apply", "-f", str(canary), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "applied as revision 2" in forced.stdout
    assert "GSM0126" in forced.stderr and "applied with --force" in forced.stderr
    # Invalid config that cannot be built is never forced.
    canary.write_text(CANARY.replace("name: orders-v2, port: 80", "name: nosuch, port: 80"))
    out = mesh.cli("apply", "-f", str(canary), "--force")
    assert out.returncode == 1 and "GSM0104" in out.stderr
    assert _history(mesh)["current"] == 2
