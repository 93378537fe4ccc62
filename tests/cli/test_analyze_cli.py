"""`gossamer analyze`: offline on files for CI (exit 1 on errors only), and against the
running mesh's current revision through the admin API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gossamer.api import Source
from gossamer.runtime import LocalMesh, LocalOptions, Proposal
from gossamer.runtime._api import make_app

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "model" / "testdata" / "analyze"


GATEWAY_ROUTE = (FIXTURES / "GSM0127" / "fail.yaml").read_text().split("---\n", 1)[1]
"""GSM0127's gateway and route (serving no host), on GSM0124's workload `web`."""


def gossamer(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gossamer", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_warnings_and_advisories_are_printed_and_exit_0(tmp_path: Path) -> None:
    (tmp_path / "GSM0124.yaml").write_text((FIXTURES / "GSM0124" / "fail.yaml").read_text())
    (tmp_path / "GSM0127.yaml").write_text(GATEWAY_ROUTE)
    out = gossamer("analyze", ".", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(
        "warning GSM0124: GSM0124.yaml, document 2, HTTPRoute/r: spec.rules[0].timeouts.request: "
    )
    assert any(line.startswith("warning GSM0127: GSM0127.yaml, document 2") for line in lines)
    assert lines[-1] == ".: 0 errors, 2 warnings"
    # `validate` applies the same checks as an apply: the advisory is not among them.
    checked = gossamer("validate", ".", cwd=tmp_path)
    assert "GSM0127" in checked.stderr and "GSM0124" not in checked.stderr


def test_errors_exit_1_and_json_carries_every_field(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text((FIXTURES / "GSM0104" / "fail.yaml").read_text())
    out = gossamer("analyze", "mesh.yaml", "-o", "json", cwd=tmp_path)
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert (data["path"], data["errors"], data["warnings"]) == ("mesh.yaml", 1, 0)
    [problem] = data["problems"]
    assert problem == {
        "code": "GSM0104",
        "severity": "error",
        "message": "backend service `wbe` does not exist",
        "file": "mesh.yaml",
        "document": 2,
        "resource": "HTTPRoute/r",
        "field": "spec.rules[0].backendRefs[0].name",
        "hint": "did you mean `web`?",
    }
    missing = gossamer("analyze", "nowhere", cwd=tmp_path)
    assert missing.returncode == 1 and "error GSM0010" in missing.stdout


def test_the_demo_shop_is_clean() -> None:
    out = gossamer("analyze", "examples/shop")
    assert out.returncode == 0, out.stdout
    assert out.stdout == "examples/shop: 0 errors, 0 warnings\n"


def test_without_a_path_or_a_mesh_it_says_so() -> None:
    out = gossamer("analyze", "--api", "http://127.0.0.1:1")
    assert out.returncode == 3
    assert "no mesh answers at http://127.0.0.1:1" in out.stderr
    assert "or pass PATH to analyze config files" in out.stderr


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], LocalMesh]]:
    """The admin API of a mesh whose config was published, with no processes running."""
    text = (FIXTURES / "GSM0124" / "fail.yaml").read_text() + "---\n" + GATEWAY_ROUTE
    (tmp_path / "mesh.yaml").write_text(text)
    mesh = LocalMesh(LocalOptions(config_path=tmp_path / "mesh.yaml", state_dir=tmp_path / "st"))
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(mesh)))
    await client.start_server()
    reply = await client.get("/api/v1/analyze")
    assert reply.status == 503 and "has not started" in (await reply.json())["error"]
    proposal = mesh.control.propose([Source("mesh.yaml", text)])
    assert isinstance(proposal, Proposal), proposal
    mesh.control.publish(proposal)
    yield client, mesh
    await client.close()
    for store in ("store", "config_store"):
        closer = getattr(getattr(mesh, store, None), "close", None)
        if closer is not None:
            closer()


async def test_the_running_mesh_is_analyzed_through_the_api(
    running: tuple[TestClient[Any, Any], LocalMesh],
) -> None:
    client, mesh = running
    reply = await client.get("/api/v1/analyze")
    assert reply.status == 200
    data = await reply.json()
    assert data["revision"] == mesh.control.revision.number == 1
    assert [p["code"] for p in data["problems"]] == ["GSM0127", "GSM0124"]
    # The CLI asks the same route; a subprocess, so this loop keeps serving meanwhile.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gossamer",
        "analyze",
        "--api",
        str(client.make_url("")).rstrip("/"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("warning")] == [
        "warning GSM0124",
        "warning GSM0127",
    ]
    assert lines[-1] == "revision 1 of the running mesh: 0 errors, 2 warnings"
