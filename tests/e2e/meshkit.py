"""End-to-end helpers: a real `gossamer up` process, real Envoys, real apps on loopback."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop" / "shop.py"
_next_first_port = [21000]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workload(
    name: str,
    *,
    services: list[str] | None = None,
    version: str = "",
    replicas: int = 1,
    port: int | None = 80,
    command: list[str] | None = None,
) -> str:
    """One Workload document running the shop app (or ``command``)."""
    spec: dict[str, Any] = {"replicas": replicas}
    if services is not None:
        spec["services"] = services
    if version:
        spec["version"] = version
    if port is not None:
        spec["ports"] = [{"port": port, "protocol": "http"}]
    spec["command"] = command or [sys.executable, str(SHOP), "--name", name]
    return json.dumps(
        {
            "apiVersion": "gossamer.dev/v1alpha1",
            "kind": "Workload",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def split_route(name: str, parent: str, weights: dict[str, int]) -> str:
    return json.dumps(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {
                "parentRefs": [{"kind": "Service", "name": parent, "port": 80}],
                "rules": [
                    {
                        "backendRefs": [
                            {"name": b, "port": 80, "weight": w} for b, w in weights.items()
                        ],
                        "timeouts": {"request": "5s"},
                    }
                ],
            },
        }
    )


def canary_mesh(weights: dict[str, int]) -> str:
    """client (no ports) -> orders, split between orders-v1 and orders-v2."""
    docs = [
        workload("client", port=None, command=["sleep", "100000"]),
        workload("orders-v1", services=["orders", "orders-v1"], version="v1", replicas=2),
        workload("orders-v2", services=["orders", "orders-v2"], version="v2"),
        split_route("orders-split", "orders", weights),
    ]
    return "\n---\n".join(docs) + "\n"


@dataclass
class Mesh:
    dir: Path
    proc: subprocess.Popen[str]
    api: str
    state_dir: Path
    log: Path
    pids_seen: set[int] = field(default_factory=set)
    argv: list[str] = field(default_factory=list)
    """The `gossamer up` command line, for ``restart``."""

    @property
    def config(self) -> Path:
        return self.dir / "mesh.yaml"

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.api + "/api/v1/status", timeout=10) as r:
            data: dict[str, Any] = json.loads(r.read())
        for inst in data["instances"]:
            self.pids_seen.update(p for p in (inst["envoy_pid"], inst["app_pid"]) if p)
        self.pids_seen.update(g["envoy_pid"] for g in data.get("gateways", []) if g["envoy_pid"])
        return data

    def instance(self, name: str) -> dict[str, Any]:
        return next(i for i in self.status()["instances"] if i["name"] == name)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gossamer", *args, "--api", self.api],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def wait_for(self, predicate: Any, within_s: float = 20.0, what: str = "") -> Any:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            value = predicate(self.status())
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or predicate}; log:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text()[-5000:] if self.log.exists() else ""

    def edit(self, text: str) -> int:
        """Rewrite the config; returns the revision it was at before."""
        revision = int(self.status()["revision"])
        self.config.write_text(text)
        return revision

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def restart(self) -> None:
        """Start `gossamer up` again with the same arguments, ports and state directory,
        once the last one has exited (or was killed); returns when it runs again."""
        if self.proc.poll() is None:
            raise AssertionError("gossamer up is still running")
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=self.dir
            )
        _wait_started(self, offset)


def get_via(
    proxy_port: int, url: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, Any] | str]:
    """A request as an app makes it: through its sidecar's HTTP proxy."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})
    )
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as r:
            body = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    with contextlib.suppress(ValueError):
        return status, json.loads(body)
    return status, body


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return False


def start_mesh(tmp_path: Path, text: str, *extra: str) -> Mesh:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "mesh.yaml").write_text(text)
    api_port, xds_port = free_port(), free_port()
    first = _next_first_port[0]
    _next_first_port[0] += 200
    log = tmp_path / "up.log"
    state_dir = tmp_path / "state"
    argv = [
        sys.executable,
        "-m",
        "gossamer",
        "up",
        str(tmp_path / "mesh.yaml"),
        "--state-dir",
        str(state_dir),
        "--api-port",
        str(api_port),
        "--xds-port",
        str(xds_port),
        "--first-port",
        str(first),
        *extra,
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    mesh = Mesh(tmp_path, proc, f"http://127.0.0.1:{api_port}", state_dir, log, argv=argv)
    _wait_started(mesh, 0)
    return mesh


def _wait_started(mesh: Mesh, log_offset: int) -> None:
    """Until `up` logs that it runs (after ``log_offset`` in its log)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if mesh.proc.poll() is not None:
            raise AssertionError(f"gossamer up exited {mesh.proc.returncode}:\n{mesh.output()}")
        with mesh.log.open("rb") as f:
            f.seek(log_offset)
            if b"running; watching" in f.read():
                mesh.status()
                return
        time.sleep(0.1)
    mesh.proc.kill()
    raise AssertionError(f"gossamer up did not start in 60s:\n{mesh.output()}")


# -- helpers for route tests: raw requests, the echo app's records, Envoy stats, cleanup --

ECHO = Path(__file__).resolve().with_name("echo_app.py")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    """Lower-cased names; repeated headers joined with ", "."""
    body: Any
    """Parsed JSON if the body is JSON, else the text."""
    elapsed: float


def request_via(
    proxy_port: int,
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> Reply:
    """One request through a sidecar's HTTP proxy, with any method; redirects are not
    followed, and the status, headers and time taken are returned."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=timeout)
    try:
        start = time.monotonic()
        conn.request(
            method, url, body=body, headers={"Host": urlsplit(url).netloc, **(headers or {})}
        )
        resp = conn.getresponse()
        data = resp.read().decode()
        elapsed = time.monotonic() - start
        merged: dict[str, str] = {}
        for k, v in resp.getheaders():
            k = k.lower()
            merged[k] = f"{merged[k]}, {v}" if k in merged else v
    finally:
        conn.close()
    parsed: Any = data
    with contextlib.suppress(ValueError):
        parsed = json.loads(data)
    return Reply(resp.status, merged, parsed, elapsed)


def app_requests(app_port: int, path: str) -> dict[str, Any]:
    """What an echo app recorded for ``path``: ``{"count": n, "requests": [last few]}``."""
    conn = http.client.HTTPConnection("127.0.0.1", app_port, timeout=5)
    try:
        conn.request("GET", "/_requests?path=" + quote(path, safe=""))
        data: dict[str, Any] = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return data


def config_dump(admin_port: int, resource: str = "") -> dict[str, Any]:
    """An Envoy's /config_dump (one resource type with ``resource``)."""
    query = f"?resource={resource}" if resource else ""
    url = f"http://127.0.0.1:{admin_port}/config_dump{query}"
    with urllib.request.urlopen(url, timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


def admin_stats(admin_port: int) -> dict[str, int]:
    """An Envoy's counters and gauges, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=5) as r:
        lines = r.read().decode().splitlines()
    out = {}
    for line in lines:
        name, _, value = line.partition(": ")
        if value.isdigit():
            out[name] = int(value)
    return out


def shutdown(mesh: Mesh) -> None:
    """Stop a mesh and kill anything it started that is still alive (as ``mesh_factory``)."""
    with contextlib.suppress(Exception):
        mesh.stop(signal.SIGTERM)
    for pid in mesh.pids_seen:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
