"""The command line without a running mesh: validate, and refusing to guess in `down`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GOOD = """
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: web}
spec:
  ports: [{port: 80}]
  command: [python3, app.py]
"""


def gossamer(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gossamer", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_validate_accepts_a_good_mesh(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(GOOD)
    out = gossamer("validate", "mesh.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "valid: 1 workloads, 1 services, 0 routes"


def test_validate_reports_problems_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(GOOD.replace("ports:", "prots:"))
    out = gossamer("validate", "mesh.yaml", cwd=tmp_path)
    assert out.returncode == 1
    assert "error GSM0005: mesh.yaml, document 1, Workload/web: spec.prots" in out.stderr
    assert "did you mean `ports`?" in out.stderr
    data = json.loads(gossamer("validate", "mesh.yaml", "-o", "json", cwd=tmp_path).stdout)
    assert data["valid"] is False
    assert data["problems"][0]["field"] == "spec.prots"


def test_validate_of_an_empty_directory_is_an_error_like_up(tmp_path: Path) -> None:
    out = gossamer("validate", ".", cwd=tmp_path)
    assert out.returncode == 1
    assert "GSM0011" in out.stderr


def test_down_without_a_recorded_mesh_does_not_guess(tmp_path: Path) -> None:
    out = gossamer("down", cwd=tmp_path)
    assert out.returncode == 3
    assert "no running mesh recorded" in out.stderr


def test_status_without_a_mesh_says_so(tmp_path: Path) -> None:
    out = gossamer("status", "--api", "http://127.0.0.1:1", cwd=tmp_path)
    assert out.returncode == 3
    assert "no mesh answers at http://127.0.0.1:1" in out.stderr


ROUTED = (
    GOOD
    + """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web, port: 80}]
  rules:
    - matches: [{path: {type: Exact, value: /slow}}]
      backendRefs: [{name: web, port: 80}]
      timeouts: {request: 60s}
    - backendRefs: [{name: web, port: 80}]
"""
)


def test_config_effective_shows_every_timeout_and_its_source(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(ROUTED)
    out = gossamer("config", "effective", "web", "-f", "mesh.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "timeout 60s (timeouts.request)" in out.stdout
    assert "timeout 15s (built-in default, no Mesh resource)" in out.stdout
    data = json.loads(
        gossamer("config", "effective", "web", "-f", "mesh.yaml", "-o", "json", cwd=tmp_path).stdout
    )
    [port] = data["ports"]
    assert [r["timeout"] for r in port["routes"]] == ["60s", "15s"]
    missing = gossamer("config", "effective", "nope", "-f", "mesh.yaml", cwd=tmp_path)
    assert missing.returncode == 1 and "no service `nope` (services: web)" in missing.stderr
