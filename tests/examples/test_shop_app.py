"""The demo shop's apps on their own: no mesh, no proxy, real processes on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SHOP_DIR = Path(__file__).resolve().parents[2] / "examples" / "shop"
SHOP = SHOP_DIR / "shop.py"
LOADGEN = SHOP_DIR / "loadgen.py"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

# The test's own requests go straight to 127.0.0.1, whatever proxy the environment sets.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_env(port: int | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_VARS}
    if port is not None:
        env["PORT"] = str(port)
    env.update(extra)
    return env


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


def get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with DIRECT.open(request, timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_healthy(proc: subprocess.Popen[str], port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"shop.py exited early with {proc.returncode}"
        try:
            if get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"shop.py on port {port} not healthy within {timeout} s")


@contextmanager
def shop(*args: str, **env: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SHOP), *args],
        env=app_env(port, **env),
        cwd=SHOP_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(proc, port)
        yield port, proc
    finally:
        stop(proc)


def get_json(url: str, **headers: str) -> tuple[int, dict[str, Any]]:
    status, body = get(url, **headers)
    return status, json.loads(body)


def test_healthz_and_fields() -> None:
    env = {
        "GOSSAMER_INSTANCE": "orders-v2-1",
        "GOSSAMER_WORKLOAD": "orders-v2",
        "GOSSAMER_VERSION": "v2",
        "GOSSAMER_ZONE": "zone-a",
    }
    with shop("--name", "orders", **env) as (port, _):
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, b"ok")
        status, body = get_json(f"http://127.0.0.1:{port}/orders?x=1")
    assert status == 200
    assert body["service"] == "orders"
    assert body["instance"] == "orders-v2-1"
    assert body["workload"] == "orders-v2"
    assert body["version"] == "v2"
    assert body["path"] == "/orders?x=1"
    assert body["calls"] == []
    assert body["orders"]


def test_catalog_lists_items_and_post_echoes_length() -> None:
    with shop("--name", "catalog") as (port, _):
        status, body = get_json(f"http://127.0.0.1:{port}/items")
        assert status == 200
        assert body["items"]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/items", data=b"x" * 42)
        with DIRECT.open(request, timeout=10) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["request_bytes"] == 42


def test_error_rate_one_always_fails() -> None:
    with shop("--name", "catalog", "--error-rate", "1.0") as (port, _):
        for _ in range(3):
            status, body = get_json(f"http://127.0.0.1:{port}/items")
            assert status == 503
            assert body["service"] == "catalog"
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, b"ok")


def test_calls_downstream_and_forwards_trace_headers() -> None:
    with shop("--name", "catalog", GOSSAMER_INSTANCE="catalog-1") as (down, _):
        url = f"http://127.0.0.1:{down}/items"
        with shop("--name", "web", "--calls", url) as (port, _):
            status, body = get_json(
                f"http://127.0.0.1:{port}/", **{"x-request-id": "req-123", "b3": "abc-def-1"}
            )
    assert status == 200
    [called] = body["calls"]
    assert called["url"] == url
    assert called["status"] == 200
    assert called["body"]["instance"] == "catalog-1"
    assert called["body"]["items"]
    assert called["body"]["trace"] == {"x-request-id": "req-123", "b3": "abc-def-1"}


def test_failed_downstream_call_gives_502() -> None:
    dead = f"http://127.0.0.1:{free_port()}/items"  # nothing listens there
    with shop("--name", "web", "--calls", dead) as (port, _):
        status, body = get_json(f"http://127.0.0.1:{port}/")
    assert status == 502
    [called] = body["calls"]
    assert called["url"] == dead
    assert called["status"] is None
    assert isinstance(called["body"], str)


def test_sigterm_exits_cleanly() -> None:
    with shop("--name", "catalog") as (_, proc):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def run_loadgen(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LOADGEN), *args],
        env=app_env(),
        cwd=SHOP_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_loadgen_sends_bounded_requests() -> None:
    with shop("--name", "web") as (port, _):
        result = run_loadgen(
            "--target", f"http://127.0.0.1:{port}/", "--max-requests", "5", "--rps", "50"
        )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert "sent=5 ok=5 errors=none" in last, result.stdout


def test_loadgen_counts_errors_by_status() -> None:
    with shop("--name", "web", "--error-rate", "1.0") as (port, _):
        result = run_loadgen(
            "--target", f"http://127.0.0.1:{port}/", "--max-requests", "3", "--rps", "50"
        )
    assert result.returncode == 0, result.stderr
    assert "sent=3 ok=0 errors=503:3" in result.stdout.strip().splitlines()[-1]


def test_loadgen_stops_on_sigterm() -> None:
    with shop("--name", "web") as (port, _):
        proc = subprocess.Popen(
            [sys.executable, str(LOADGEN), "--target", f"http://127.0.0.1:{port}/", "--rps", "20"],
            env=app_env(),
            cwd=SHOP_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
        finally:
            stop(proc)
    assert proc.returncode == 0, err
    assert "loadgen done" in out.strip().splitlines()[-1]


def test_mesh_yaml_loads() -> None:
    from gossamer.api import Source, load_config

    path = SHOP_DIR / "mesh.yaml"
    config, problems = load_config([Source(str(path), path.read_text(), str(SHOP_DIR))])
    assert config is not None, problems
    assert problems == []
    assert {w.name for w in config.workloads} == {
        "web",
        "catalog",
        "cart",
        "orders-v1",
        "orders-v2",
        "loadgen",
    }
