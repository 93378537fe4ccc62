"""`gossamer run`: a process joins the running mesh as one more instance of a service,
sidecar first, and leaves without failing a request."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from meshkit import ECHO, get_via, workload

from gossamer.sidecar import process_argv


def _run(mesh: Any, *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gossamer", "run", "--api", mesh.api, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )


def _served_by(proxy: int) -> set[str]:
    """The orders instances that answered 10 calls through ``proxy``; each must succeed."""
    seen = set()
    for _ in range(10):
        status, body = get_via(proxy, "http://orders/who")
        assert status == 200, body
        seen.add(body["instance"])  # type: ignore[index]
    return seen


def _mesh() -> str:
    echo = [sys.executable, str(ECHO)]
    return "\n---\n".join(
        [
            workload("client", port=None, command=["sleep", "100000"]),
            workload("orders", command=echo),
        ]
    )


def test_a_joined_instance_serves_and_leaves_without_a_failed_request(
    mesh_factory: Any, tmp_path: Path
) -> None:
    mesh = mesh_factory(_mesh())
    proxy = mesh.instance("client-0")["outbound_http_port"]
    joined = _run(mesh, "--service", "orders", "--", sys.executable, str(ECHO), cwd=tmp_path)
    try:
        mesh.wait_for(
            lambda _s: _served_by(proxy) == {"orders-0", "orders-run1"}, what="both serve"
        )
        status = subprocess.run(
            [sys.executable, "-m", "gossamer", "proxy-status", "--api", mesh.api],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0 and "orders-run1" in status.stdout, status.stdout

        # Steady load while it leaves: not one request may fail.
        failures: list[object] = []
        sent = [0]
        stop = threading.Event()

        def load() -> None:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                code, body = get_via(proxy, "http://orders/load")
                sent[0] += 1
                if code != 200:
                    failures.append((code, body))
                time.sleep(0.01)

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(0.5)
        joined.send_signal(signal.SIGTERM)
        out, _ = joined.communicate(timeout=30)
        time.sleep(0.5)
        stop.set()
        loader.join(timeout=35)
        assert joined.returncode == 0, out
        assert "leaving" in out
        assert failures == [] and sent[0] > 50, (failures, sent)
        assert _served_by(proxy) == {"orders-0"}
    finally:
        if joined.poll() is None:
            joined.kill()


def test_run_refuses_an_unknown_service_and_never_starts_without_config(
    mesh_factory: Any, tmp_path: Path
) -> None:
    mesh = mesh_factory(_mesh())
    marker = tmp_path / "started"
    cmd = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    unknown = _run(mesh, "--service", "nosuch", "--", *cmd, cwd=tmp_path)
    out, _ = unknown.communicate(timeout=30)
    assert unknown.returncode == 1 and "no workload backs service `nosuch`" in out
    # A config deadline no sidecar can meet: the command must never run.
    hurried = _run(
        mesh, "--service", "orders", "--config-timeout", "0.001", "--", *cmd, cwd=tmp_path
    )
    out, _ = hurried.communicate(timeout=30)
    assert hurried.returncode == 1, out
    assert "did not apply its configuration" in out and not marker.exists()
    assert (
        "orders-run"
        not in subprocess.run(
            [sys.executable, "-m", "gossamer", "proxy-status", "--api", mesh.api],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    )


def test_a_joined_instance_survives_a_restart_of_up(mesh_factory: Any, tmp_path: Path) -> None:
    mesh = mesh_factory(_mesh())
    proxy = mesh.instance("client-0")["outbound_http_port"]
    joined = _run(mesh, "--service", "orders", "--", sys.executable, str(ECHO), cwd=tmp_path)
    try:
        mesh.wait_for(
            lambda _s: _served_by(proxy) == {"orders-0", "orders-run1"}, what="both serve"
        )
        mesh.proc.kill()
        mesh.proc.wait()
        mesh.restart()
        # The restarted `up` knew it from its record: it serves on, same name, same ports.
        assert _served_by(proxy) == {"orders-0", "orders-run1"}
        mesh.wait_for(
            lambda _s: (
                mesh.cli("proxy-status").returncode == 0
                and "orders-run1" in mesh.cli("proxy-status").stdout
            ),
            what="every proxy, orders-run1 too, in sync with the new `up`",
        )
        time.sleep(2.5)  # a heartbeat to the new `up`: still known, no rejoin needed
        assert _served_by(proxy) == {"orders-0", "orders-run1"}
        joined.send_signal(signal.SIGTERM)
        out, _ = joined.communicate(timeout=30)
        assert joined.returncode == 0, out
        assert "could not rejoin" not in out
        assert _served_by(proxy) == {"orders-0"}
    finally:
        if joined.poll() is None:
            joined.kill()


def test_a_killed_run_takes_its_sidecar_and_command_with_it(
    mesh_factory: Any, tmp_path: Path
) -> None:
    """Nobody else would ever stop them: the kernel kills them with `run` (and `up`
    drops the instance once it stops calling in)."""
    mesh = mesh_factory(_mesh())
    proxy = mesh.instance("client-0")["outbound_http_port"]
    joined = _run(mesh, "--service", "orders", "--", sys.executable, str(ECHO), cwd=tmp_path)
    try:
        mesh.wait_for(
            lambda _s: any(
                get_via(proxy, "http://orders/who")[1]["instance"] == "orders-run1"  # type: ignore[index]
                for _ in range(6)
            ),
            what="orders-run1 serving",
        )
        admin = json.loads((mesh.state_dir / "envoy" / "orders-run1.json").read_text())["admin"][
            "address"
        ]["socket_address"]["port_value"]
        children = [
            pid
            for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
            if pid != joined.pid and _parent(pid) == joined.pid
        ]
        assert len(children) == 2, children  # its Envoy and its app
        joined.kill()
        joined.wait(timeout=10)
        mesh.wait_for(
            lambda _s: all(process_argv(p) is None for p in children), 10, "children gone"
        )
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", admin), timeout=1).close()
            raise AssertionError("its Envoy still answers")
    finally:
        if joined.poll() is None:
            joined.kill()


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])
