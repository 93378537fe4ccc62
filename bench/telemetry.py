"""Telemetry's cost: to the control plane (scraping), and to the data plane (access logs).

1. Control plane. For meshes of 10 and 50 sidecars (one ``server`` workload running the
   nginx app, N-1 clients running ``sleep``), two copies of the same mesh run side by
   side: one with ``--telemetry-interval 5`` (the default) and one with
   ``--telemetry-interval 3600`` (no collection round within the run). A paced loop in
   this process sends the same light load through every client's sidecar to
   ``http://server/`` in both meshes (100 rps per mesh by default), so that every edge has
   series. Over a window of 50 s the benchmark reads utime+stime of each ``gossamer up``
   process from /proc/<pid>/stat; the difference is the CPU telemetry costs. Collection
   rounds are counted on the server sidecar's admin counter
   (``http.admin.downstream_rq_total``: one request per scrape), which gives the CPU per
   round. After the window: the series on ``/metrics`` and its size, the CPU and time
   ``up`` takes to render it, and the bytes of every sidecar's filtered stats (what one
   round reads). The goal: under 5% of one core for 50 sidecars.
2. Data plane. Two meshes of a client and a server sidecar in front of nginx, one with
   access logs on (the default) and one with ``Mesh`` ``spec: {accessLog: {enabled:
   false}}``; wrk through the client sidecar at a paced 2000 rps and at saturation, in
   interleaved rounds, measured as ``bench.dataplane`` does: p50/p99 and CPU us per request
   per Envoy, logs-on / logs-off ratios. A second logs-off mesh gives an A/A ratio, the
   benchmark's own noise (``--no-calibrate`` skips it). Every path keeps the per-edge
   metrics on (the receiving sidecar's virtual clusters and the source-workload header the
   calling sidecar stamps); ``bench.edge_metrics`` measures those on vs off with the same
   meshes (the data-plane helpers below are shared with it).

Run from the repo root: ``python -m bench.telemetry`` (``--help`` for the knobs); about
3.5 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import dataplane as dp
from bench._common import (
    BENCH_DIR,
    LOOPBACK,
    BenchError,
    GossamerUp,
    add_int_options,
    busy_machine_notes,
    check_limits,
    dig,
    finish_results,
    fmt,
    gossamer_cli,
    host_busy_seconds,
    http_get,
    kill_pid,
    load_cores,
    machine_at_start,
    notes_lines,
    other_envoys,
    proc_cmdline,
    proc_cpu_seconds,
    proc_memory_kib,
    raise_nofile_limit,
    run_benchmark,
    run_line,
    wrk_binary,
)
from bench._nginx_app import nginx_binary

NAME = "telemetry"
APP_SCRIPT = BENCH_DIR / "_nginx_app.py"
ON_INTERVAL_S = 5
OFF_INTERVAL_S = 3600
"""An interval longer than the run: no collection round happens (the first one waits a
whole interval after startup)."""
GOAL_CORE_PERCENT = 5.0
GOAL_SIDECARS = 50
STARTUP_TIMEOUT_S = 90.0
METRICS_FETCHES = 3
"""/metrics requests whose CPU in ``up`` is read (after the window) for the render cost."""
QUIET_CORES = dp.QUIET_CORES
ADMIN_RQ_STAT = "http.admin.downstream_rq_total"
SERVER_HOST = "server"
DP_HOST = "upstream"


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (10, 50)
    window_seconds: int = 50
    load_rps: int = 100
    """Per mesh, spread over all its clients."""
    first_port: int = 22000
    """Sidecar and app ports of the i-th mesh started start at first_port + 1000 * i."""
    control_plane: bool = True
    dataplane: bool = True
    rate: int = 2000
    paced_connections: int = 8
    saturation_connections: int = 32
    rounds: int = 4
    paced_seconds: int = 3
    saturation_seconds: int = 3
    warmup_seconds: int = 1
    calibrate: bool = True
    """Also measure a second logs-off mesh: logs_off_aa / logs_off is an A/A test."""

    def dataplane_settings(self) -> dp.Settings:
        return dp.Settings(**dp.load_options(self))


# --- mesh files ----------------------------------------------------------------------------

_SERVER = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: {name}}}
spec:
  ports: [{{port: 80, protocol: http}}]
  command: {command}
"""

_CLIENT = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: {name}}}
spec:
  command: [sleep, "100000"]
"""

_MESH = """\
apiVersion: gossamer.dev/v1alpha1
kind: Mesh
metadata: {{name: mesh}}
spec: {spec}
"""


def _app_command(workdir: Path) -> str:
    return json.dumps([sys.executable, str(APP_SCRIPT), str(workdir / "app")])


def cp_mesh_yaml(sidecars: int) -> Callable[[Path], str]:
    """One ``server`` (nginx) and ``sidecars - 1`` idle clients ``client-1``..."""

    def text(workdir: Path) -> str:
        docs = [_SERVER.format(name=SERVER_HOST, command=_app_command(workdir))]
        docs += [_CLIENT.format(name=f"client-{i}") for i in range(1, sidecars)]
        return "---\n".join(docs)

    return text


@dataclass(frozen=True)
class DpVariant:
    """One mesh of the data-plane part: its path name and the telemetry it runs with."""

    label: str
    access_log: bool = True
    edge_metrics: bool = True

    def mesh_spec(self) -> str:
        """The ``Mesh`` resource's spec (flow style); empty with the defaults."""
        parts = []
        if not self.access_log:
            parts.append("accessLog: {enabled: false}")
        if not self.edge_metrics:
            parts.append("telemetry: {edgeMetrics: false}")
        return "{" + ", ".join(parts) + "}" if parts else ""

    def describe(self) -> str:
        settings = self.mesh_spec()
        return "wrk -> client sidecar -> server sidecar -> nginx, " + (
            f"Mesh spec {settings}" if settings else "no Mesh resource (the defaults)"
        )


def dp_mesh_yaml(variant: DpVariant) -> Callable[[Path], str]:
    """``upstream`` (nginx) and ``client``, with the variant's ``Mesh`` resource, if any."""

    def text(workdir: Path) -> str:
        docs = [
            _SERVER.format(name=DP_HOST, command=_app_command(workdir)),
            _CLIENT.format(name="client"),
        ]
        if spec := variant.mesh_spec():
            docs.append(_MESH.format(spec=spec))
        return "---\n".join(docs)

    return text


# --- small readings --------------------------------------------------------------------------


def self_cpu_seconds() -> float:
    """utime+stime of this process (all threads): the load loop's cost."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_or_none(pid: int) -> float | None:
    try:
        return proc_cpu_seconds(pid)
    except (OSError, ValueError):
        return None


def sum_cpu(pids: Sequence[int]) -> tuple[float, int]:
    """utime+stime summed over ``pids`` that still run; (seconds, how many were read)."""
    values = [v for pid in pids if (v := cpu_or_none(pid)) is not None]
    return sum(values), len(values)


def admin_counter(admin_port: int, stat: str) -> int | None:
    """One counter from an Envoy's admin ``/stats`` (None when it cannot be read)."""
    pattern = quote("^" + stat.replace(".", r"\.") + "$")
    code, body = http_get(f"http://{LOOPBACK}:{admin_port}/stats?filter={pattern}", timeout_s=5)
    if code != 200:
        return None
    for line in body.decode(errors="replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == stat and value.strip().isdigit():
            return int(value.strip())
    return None


def series_by_family(text: str) -> dict[str, int]:
    """Sample lines of a Prometheus exposition, per metric name."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        out[name] = out.get(name, 0) + 1
    return out


def stats_scrape_path() -> str | None:
    """The control plane's filtered stats path, or None when gossamer is not importable."""
    try:
        from gossamer.telemetry._collect import STATS_PATH
    except ImportError:
        return None
    return str(STATS_PATH)


def leftover_processes(workdirs: Sequence[Path]) -> list[str]:
    """Processes whose command line names one of ``workdirs`` (``pgrep -f``)."""
    found: list[str] = []
    for workdir in workdirs:
        proc = subprocess.run(
            ["pgrep", "-f", str(workdir)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        for word in proc.stdout.split():
            pid = int(word)
            if pid != os.getpid() and (cmdline := proc_cmdline(pid)):
                found.append(f"{pid} {cmdline}")
    return found


# --- the light load ------------------------------------------------------------------------


@dataclass
class LoadTarget:
    mesh: str
    port: int


class PacedLoad:
    """A thread that sends GET / with ``Host: server`` to each target in turn (keep-alive,
    one connection per target), paced to ``rate`` requests per second on an absolute
    schedule; a slot missed by more than a second is skipped, not caught up.

    Bounded: it stops on ``stop()``, after ``max_seconds`` and after ``max_requests``.
    """

    def __init__(
        self, targets: Sequence[LoadTarget], rate: int, max_seconds: float, host: str
    ) -> None:
        self.targets = list(targets)
        self.rate = rate
        self.max_seconds = max_seconds
        self.max_requests = int(rate * max_seconds * 1.1) + 10
        self.host = host
        self.ok: dict[str, int] = {t.mesh: 0 for t in self.targets}
        self.failed: dict[str, int] = {t.mesh: 0 for t in self.targets}
        self.errors: dict[str, int] = {}
        self._stop = threading.Event()
        self._conns: dict[int, http.client.HTTPConnection] = {}
        self._thread = threading.Thread(target=self._run, name="paced-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def counts(self) -> dict[str, int]:
        """Requests sent so far per mesh (answered 200 or not)."""
        return {m: self.ok[m] + self.failed[m] for m in self.ok}

    def _run(self) -> None:
        start = time.monotonic()
        interval = 1.0 / self.rate
        sent = 0
        try:
            while not self._stop.is_set() and sent < self.max_requests:
                due = start + sent * interval
                now = time.monotonic()
                if now - start > self.max_seconds:
                    break
                if due > now:
                    self._stop.wait(due - now)
                    continue
                if now - due > 1.0:  # far behind: skip the missed slots
                    sent += int((now - due) / interval)
                    continue
                target = self.targets[sent % len(self.targets)]
                sent += 1
                self._one(target)
        finally:
            for conn in self._conns.values():
                conn.close()

    def _one(self, target: LoadTarget) -> None:
        conn = self._conns.get(target.port)
        if conn is None:
            conn = http.client.HTTPConnection(LOOPBACK, target.port, timeout=2)
            self._conns[target.port] = conn
        try:
            conn.request("GET", "/", headers={"Host": self.host})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                self.ok[target.mesh] += 1
                return
            key = f"status {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            key = type(exc).__name__
            conn.close()
            del self._conns[target.port]
        self.failed[target.mesh] += 1
        self.errors[key] = self.errors.get(key, 0) + 1


# --- 1. the control plane's cost -----------------------------------------------------------


@dataclass
class CpMesh:
    """One running mesh of the control-plane part."""

    label: str
    interval_s: int
    up: GossamerUp
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def up_pid(self) -> int:
        return self.up.up.pid

    @property
    def instances(self) -> list[dict[str, Any]]:
        return [i for i in self.status.get("instances", []) if isinstance(i, dict)]

    @property
    def envoy_pids(self) -> list[int]:
        return [int(i["envoy_pid"]) for i in self.instances if isinstance(i.get("envoy_pid"), int)]

    def server_admin_port(self) -> int:
        server = self.up.instance(self.status, SERVER_HOST)
        if server is None or not isinstance(server.get("admin_port"), int):
            raise BenchError(f"mesh {self.label}: no admin port for the server sidecar")
        return int(server["admin_port"])

    def client_ports(self) -> list[int]:
        return [
            int(i["outbound_http_port"])
            for i in self.instances
            if str(i.get("workload", "")).startswith("client-")
            and isinstance(i.get("outbound_http_port"), int)
        ]


def start_cp_mesh(sidecars: int, interval_s: int, first_port: int, workdirs: list[Path]) -> CpMesh:
    up = GossamerUp(
        cp_mesh_yaml(sidecars),
        cli=gossamer_cli(),
        extra_args=[
            "--first-port",
            str(first_port),
            "--telemetry-interval",
            str(interval_s),
        ],
    )
    workdirs.append(up.workdir)
    label = f"{sidecars} sidecars, interval {interval_s} s"
    return CpMesh(label, interval_s, up)


def wait_cp_mesh(mesh: CpMesh, sidecars: int) -> None:
    """Until every proxy is synced and the server answers through the first client."""

    def ready(status: dict[str, Any]) -> bool:
        instances = status.get("instances", [])
        if len(instances) != sidecars or not all(
            i["proxy"]["synced"] and isinstance(i.get("envoy_pid"), int) for i in instances
        ):
            return False
        mesh.status = status
        ports = mesh.client_ports()
        if len(ports) != sidecars - 1:
            return False
        code, body = http_get(f"http://{LOOPBACK}:{ports[0]}/", SERVER_HOST)
        return code == 200 and body == b"ok"

    mesh.status = mesh.up.wait(f"the mesh of {mesh.label} to serve", ready, STARTUP_TIMEOUT_S)


@dataclass
class Window:
    """What one mesh spent over the measurement window."""

    up_cpu_s: float
    envoy_cpu_s: float
    envoys_read: int
    admin_requests: int | None
    """Admin requests the server sidecar counted (scrapes, plus the benchmark's one read)."""


def measure_cp_window(
    meshes: Sequence[CpMesh], seconds: int, load: PacedLoad
) -> tuple[list[Window], dict[str, Any]]:
    """Sleep through the window (polling that the meshes still run) and read the CPU of
    each ``up`` and its Envoys, and the server sidecar's admin counter, around it."""
    admin_ports = [m.server_admin_port() for m in meshes]
    counters_before = [admin_counter(p, ADMIN_RQ_STAT) for p in admin_ports]
    envoys_before = [sum_cpu(m.envoy_pids)[0] for m in meshes]
    sent_before = load.counts()
    host_before, self_before = host_busy_seconds(), self_cpu_seconds()
    started = time.monotonic()
    up_before = [proc_cpu_seconds(m.up_pid) for m in meshes]
    deadline = started + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        for m in meshes:
            if not m.up.up.alive():
                raise BenchError(f"`gossamer up` ({m.label}) exited:\n{m.up.log_tail()}")
    up_after = [proc_cpu_seconds(m.up_pid) for m in meshes]
    elapsed = time.monotonic() - started
    host_s, self_s = host_busy_seconds() - host_before, self_cpu_seconds() - self_before
    sent_after = load.counts()
    envoys_after = [sum_cpu(m.envoy_pids) for m in meshes]
    counters_after = [admin_counter(p, ADMIN_RQ_STAT) for p in admin_ports]
    windows = []
    for i, _ in enumerate(meshes):
        before, after = counters_before[i], counters_after[i]
        windows.append(
            Window(
                up_cpu_s=up_after[i] - up_before[i],
                envoy_cpu_s=envoys_after[i][0] - envoys_before[i],
                envoys_read=envoys_after[i][1],
                admin_requests=None if before is None or after is None else after - before,
            )
        )
    ours = sum(w.up_cpu_s + w.envoy_cpu_s for w in windows) + self_s
    machine = {
        "window_s": round(elapsed, 2),
        "host_busy_cores": round(load_cores(host_s, elapsed), 3),
        "load_loop_cores": round(load_cores(self_s, elapsed), 3),
        "other_load_cores": round(load_cores(max(0.0, host_s - ours), elapsed), 3),
        "load_sent": {m: sent_after[m] - sent_before.get(m, 0) for m in sent_after},
    }
    return windows, machine


def metrics_figures(mesh: CpMesh) -> dict[str, Any]:
    """/metrics of ``mesh``: series, bytes, and the CPU and time ``up`` takes to render it."""
    url = f"http://{LOOPBACK}:{mesh.up.api_port}/metrics"
    sizes: list[int] = []
    wall_ms: list[float] = []
    text = ""
    cpu_before = proc_cpu_seconds(mesh.up_pid)
    for _ in range(METRICS_FETCHES):
        t0 = time.perf_counter()
        code, body = http_get(url, timeout_s=10)
        wall_ms.append((time.perf_counter() - t0) * 1000)
        if code != 200:
            raise BenchError(f"GET /metrics answered {code} ({mesh.label})")
        sizes.append(len(body))
        text = body.decode(errors="replace")
    cpu_ms = (proc_cpu_seconds(mesh.up_pid) - cpu_before) * 1000
    families = series_by_family(text)
    gossamer_own = {k: v for k, v in families.items() if k.startswith("gossamer_")}
    istio = sum(v for k, v in families.items() if k not in gossamer_own)
    failed = next(
        (
            int(float(line.split()[-1]))
            for line in text.splitlines()
            if line.startswith("gossamer_telemetry_failed_scrapes_total ")
        ),
        None,
    )
    return {
        "bytes": sizes[-1],
        "series": istio,
        "series_by_metric": families,
        "failed_scrapes_total": failed,
        "render_cpu_ms_per_request": round(cpu_ms / METRICS_FETCHES, 2),
        "request_ms": [round(x, 2) for x in wall_ms],
    }


def scrape_bytes(mesh: CpMesh) -> dict[str, Any] | None:
    """Bytes of each sidecar's filtered stats, as one collection round reads them."""
    path = stats_scrape_path()
    if path is None:
        return None
    sizes: dict[str, int] = {}
    for inst in mesh.instances:
        port = inst.get("admin_port")
        if isinstance(port, int):
            code, body = http_get(f"http://{LOOPBACK}:{port}{path}", timeout_s=5)
            if code == 200:
                sizes[str(inst.get("workload"))] = len(body)
    clients = [v for k, v in sizes.items() if k.startswith("client-")]
    return {
        "total_bytes": sum(sizes.values()),
        "sidecars_read": len(sizes),
        "server_bytes": sizes.get(SERVER_HOST),
        "client_bytes_mean": round(sum(clients) / len(clients)) if clients else None,
    }


def run_size(
    sidecars: int, settings: Settings, first_port: int, workdirs: list[Path]
) -> dict[str, Any]:
    """Both meshes of one size, side by side; the figures of the control-plane part."""
    print(f"control plane, {sidecars} sidecars:", flush=True)
    meshes: list[CpMesh] = []
    load: PacedLoad | None = None
    started = time.monotonic()
    try:
        for k, interval in enumerate((ON_INTERVAL_S, OFF_INTERVAL_S)):
            meshes.append(start_cp_mesh(sidecars, interval, first_port + 1000 * k, workdirs))
        for m in meshes:
            wait_cp_mesh(m, sidecars)
        startup_s = time.monotonic() - started
        print(f"  both meshes up in {startup_s:.1f} s", flush=True)
        on, off = meshes
        # Interleave the meshes, so that both get the same load at the same moments.
        targets = [
            LoadTarget(m.label, port)
            for pair in zip(on.client_ports(), off.client_ports(), strict=True)
            for m, port in zip(meshes, pair, strict=True)
        ]
        budget = settings.window_seconds + ON_INTERVAL_S + 60
        load = PacedLoad(targets, settings.load_rps * len(meshes), budget, SERVER_HOST)
        load.start()
        # Let at least one collection round see the load, so the series exist before.
        time.sleep(ON_INTERVAL_S + 2)
        windows, machine = measure_cp_window(meshes, settings.window_seconds, load)
        metrics = {m.label: metrics_figures(m) for m in meshes}
        scraped = scrape_bytes(on)
        load.stop()
        # The collected history (an hour of rounds) lives in `up`: its memory, for both.
        memory = {m.label: proc_memory_kib(m.up_pid) for m in meshes}
        return cp_summary(
            sidecars, meshes, windows, machine, metrics, scraped, memory, load, startup_s
        )
    finally:
        if load is not None:
            load.stop()
        for m in meshes:
            m.up.stop()


def cp_summary(
    sidecars: int,
    meshes: Sequence[CpMesh],
    windows: Sequence[Window],
    machine: dict[str, Any],
    metrics: dict[str, dict[str, Any]],
    scraped: dict[str, Any] | None,
    memory: dict[str, dict[str, int]],
    load: PacedLoad | None,
    startup_s: float,
) -> dict[str, Any]:
    on, off = meshes
    w_on, w_off = windows
    seconds = machine["window_s"]
    diff_s = w_on.up_cpu_s - w_off.up_cpu_s
    rounds = (
        w_on.admin_requests - w_off.admin_requests
        if w_on.admin_requests is not None and w_off.admin_requests is not None
        else None
    )
    m_on = metrics[on.label]
    core_percent = 100 * diff_s / seconds
    out: dict[str, Any] = {
        "sidecars": sidecars,
        "startup_s": round(startup_s, 1),
        "meshes": {
            "on": {
                "telemetry_interval_s": on.interval_s,
                "up_cpu_s": round(w_on.up_cpu_s, 3),
                "up_core_percent": round(100 * w_on.up_cpu_s / seconds, 2),
                "envoys_cpu_s": round(w_on.envoy_cpu_s, 3),
                "envoys_read": w_on.envoys_read,
                "server_admin_requests": w_on.admin_requests,
                "up_memory_kib": memory.get(on.label),
                "metrics": m_on,
            },
            "off": {
                "telemetry_interval_s": off.interval_s,
                "up_cpu_s": round(w_off.up_cpu_s, 3),
                "up_core_percent": round(100 * w_off.up_cpu_s / seconds, 2),
                "envoys_cpu_s": round(w_off.envoy_cpu_s, 3),
                "envoys_read": w_off.envoys_read,
                "server_admin_requests": w_off.admin_requests,
                "up_memory_kib": memory.get(off.label),
                "metrics": metrics[off.label],
            },
        },
        "window": machine,
        "telemetry": {
            "cpu_s": round(diff_s, 3),
            "core_percent": round(core_percent, 2),
            "rounds": rounds,
            "rounds_expected": round(seconds / on.interval_s, 1),
            "cpu_ms_per_round": round(1000 * diff_s / rounds, 1) if rounds else None,
            "cpu_ms_per_round_per_sidecar": (
                round(1000 * diff_s / rounds / sidecars, 2) if rounds else None
            ),
            "envoys_cpu_s_difference": round(w_on.envoy_cpu_s - w_off.envoy_cpu_s, 3),
            "series": m_on["series"],
            "series_per_sidecar": round(m_on["series"] / sidecars, 1),
            "metrics_bytes": m_on["bytes"],
            "metrics_bytes_per_sidecar": round(m_on["bytes"] / sidecars),
            "metrics_render_cpu_ms": m_on["render_cpu_ms_per_request"],
            "scraped_per_round": scraped,
        },
    }
    if load is not None:
        out["load"] = {
            "rps_per_mesh": load.rate / len(meshes),
            "clients_per_mesh": sidecars - 1,
            "ok": load.ok,
            "failed": load.failed,
            "errors": load.errors,
        }
    print(
        f"  telemetry: {core_percent:.2f}% of a core ({diff_s:.2f} s of CPU in "
        f"{seconds:.0f} s, {rounds} rounds), {m_on['series']} series, "
        f"{m_on['bytes'] / 1024:.0f} KiB /metrics",
        flush=True,
    )
    return out


# --- 2. the data plane's cost: access logs ---------------------------------------------------


@dataclass
class DpMesh:
    variant: DpVariant
    up: GossamerUp
    handle: dp.PathHandle
    server_admin_port: int | None

    @property
    def label(self) -> str:
        return self.variant.label


def start_dp_mesh(variant: DpVariant, first_port: int, workdirs: list[Path]) -> DpMesh:
    label = variant.label
    up = GossamerUp(
        dp_mesh_yaml(variant), cli=gossamer_cli(), extra_args=["--first-port", str(first_port)]
    )
    workdirs.append(up.workdir)
    try:
        found: list[dp.PathHandle] = []

        def ready(status: dict[str, Any]) -> bool:
            client, server = up.instance(status, "client"), up.instance(status, DP_HOST)
            if client is None or server is None:
                return False
            port = client.get("outbound_http_port")
            pids = [client.get("envoy_pid"), server.get("envoy_pid")]
            if not isinstance(port, int) or not all(isinstance(p, int) for p in pids):
                return False
            url = f"http://{LOOPBACK}:{port}/"
            code, body = http_get(url, DP_HOST)
            if code != 200 or body != b"ok":
                return False
            app_pid = server.get("app_pid")
            admin = server.get("admin_port")
            found.append(
                dp.PathHandle(
                    label,
                    url,
                    DP_HOST,
                    [int(p) for p in pids if isinstance(p, int)],
                    app_pid if isinstance(app_pid, int) else None,
                    variant.describe(),
                )
            )
            admin_ports.append(admin if isinstance(admin, int) else None)
            return True

        admin_ports: list[int | None] = []
        up.wait(f"the {label} mesh to serve", ready, STARTUP_TIMEOUT_S)
        return DpMesh(variant, up, found[0], admin_ports[0])
    except BaseException:
        up.stop()
        raise


def access_log_files(up: GossamerUp) -> dict[str, Any]:
    """What the sidecars wrote to their access logs (files left at the end of the run)."""
    folder = up.workdir / "state" / "access"
    files = sorted(folder.glob("*.log*")) if folder.is_dir() else []
    total = 0
    line_bytes: list[int] = []
    for f in files:
        with contextlib.suppress(OSError):
            total += f.stat().st_size
            if not line_bytes:
                with f.open("rb") as fh:
                    line_bytes = [len(line) for _, line in zip(range(100), fh, strict=False)]
    return {
        "files": [f.name for f in files],
        "bytes": total,
        "mean_line_bytes": round(sum(line_bytes) / len(line_bytes)) if line_bytes else None,
    }


def measure_dp_variants(
    dps: dp.Settings,
    variants: Sequence[DpVariant],
    first_port: int,
    workdirs: list[Path],
    inspect: Callable[[DpMesh], dict[str, Any]] | None = None,
) -> tuple[dict[str, dp.PathRuns], dict[str, dict[str, Any]]]:
    """Start one mesh per variant (port ranges from ``first_port``, 1000 apart), measure
    them in interleaved rounds (:func:`bench.dataplane.measure_paths`), then stop them.
    Returns the runs and, per path, the figures to add to its entry: its settings, its
    access log files and what ``inspect(mesh)`` (called before the meshes stop) adds."""
    meshes: list[DpMesh] = []
    runs: dict[str, dp.PathRuns] = {}
    extra: dict[str, dict[str, Any]] = {}
    try:
        for k, variant in enumerate(variants):
            meshes.append(start_dp_mesh(variant, first_port + 1000 * k, workdirs))
        handles = [m.handle for m in meshes]

        def progress(round_index: int, runs: dict[str, dp.PathRuns]) -> None:
            p50 = [
                f"{h.name} {fmt(dp.summarize([runs[h.name].paced[-1]], 2)['latency_us']['p50'])}"
                for h in handles
            ]
            print(f"  round {round_index + 1}: paced p50 (us) {', '.join(p50)}", flush=True)

        runs = dp.measure_paths(handles, dps, progress)
        for m in meshes:
            extra[m.label] = {
                "access_log": m.variant.access_log,
                "edge_metrics": m.variant.edge_metrics,
                "access_log_files": access_log_files(m.up),
                **(inspect(m) if inspect is not None else {}),
            }
    finally:
        for m in meshes:
            m.up.stop()
    return runs, extra


def dp_settings_figures(settings: dp.Settings, calibrate: bool) -> dict[str, Any]:
    """The ``settings`` of a data-plane part's results."""
    return {
        "rate_rps": settings.rate,
        "paced_connections": settings.paced_connections,
        "saturation_connections": settings.saturation_connections,
        "rounds": settings.rounds,
        "calibrate": calibrate,
        "paced_seconds_per_round": settings.paced_seconds,
        "saturation_seconds_per_round": settings.saturation_seconds,
        "warmup_seconds": settings.warmup_seconds,
        "load_generator": "wrk -t1 with bench/_wrk.lua (paced: absolute schedule)",
        "telemetry_interval_s": ON_INTERVAL_S,
    }


def run_dataplane(settings: Settings, first_port: int, workdirs: list[Path]) -> dict[str, Any]:
    print("data plane, access logs on vs off:", flush=True)
    variants = [DpVariant("logs_on"), DpVariant("logs_off", access_log=False)]
    if settings.calibrate:
        variants.append(DpVariant("logs_off_aa", access_log=False))
    dps = settings.dataplane_settings()
    runs, extra = measure_dp_variants(dps, variants, first_port, workdirs)
    paths = {name: dp.path_figures(pr, **extra[name]) for name, pr in runs.items()}
    ratios: dict[str, Any] = {}
    if "logs_on" in runs and "logs_off" in runs:
        ratios["logs_on_vs_off"] = dp.compare_runs(runs["logs_on"], runs["logs_off"])
    if "logs_off_aa" in runs and "logs_off" in runs:
        ratios["logs_off_aa_vs_logs_off"] = dp.compare_runs(runs["logs_off_aa"], runs["logs_off"])
    return {
        "settings": dp_settings_figures(dps, settings.calibrate),
        "paths": paths,
        "ratios": ratios,
    }


# --- the benchmark -------------------------------------------------------------------------


def run(settings: Settings) -> dict[str, Any]:
    raise_nofile_limit()
    if nginx_binary() is None:
        raise BenchError("nginx is not installed (see bench/README.md)")
    if settings.dataplane:
        wrk_binary()
    gossamer_cli()
    envoy = dp.envoy_binary()
    started = time.monotonic()
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine_at_start(envoy),
        "settings": {
            "sizes": list(settings.sizes),
            "window_seconds": settings.window_seconds,
            "load_rps_per_mesh": settings.load_rps,
            "telemetry_interval_on_s": ON_INTERVAL_S,
            "telemetry_interval_off_s": OFF_INTERVAL_S,
            "first_port": settings.first_port,
        },
        "control_plane": [],
        "notes": [],
    }
    workdirs: list[Path] = []
    try:
        slot = 0  # each mesh gets a port range of its own: meshes run side by side
        if settings.control_plane:
            for n in settings.sizes:
                data["control_plane"].append(
                    run_size(n, settings, settings.first_port + 1000 * slot, workdirs)
                )
                slot += 2
        if settings.dataplane:
            data["dataplane"] = run_dataplane(settings, settings.first_port + 1000 * slot, workdirs)
    finally:
        # Every mesh has stopped: nothing that names one of their folders may still run.
        leftovers = leftover_processes(workdirs)
        for line in leftovers:
            pid, _, cmdline = line.partition(" ")
            kill_pid(int(pid), cmdline)
    data["leftover_processes"] = leftovers
    if leftovers:
        data["notes"].append(f"processes were left after the meshes stopped (killed): {leftovers}")
    data["machine"]["other_envoys_at_end"] = other_envoys([])
    data["goal"] = goal(data)
    data["notes"].extend(warnings(data, settings))
    finish_results(data, started)
    return data


def goal(data: dict[str, Any]) -> dict[str, Any]:
    size = next((s for s in data["control_plane"] if s["sidecars"] == GOAL_SIDECARS), None)
    share = None if size is None else size["telemetry"]["core_percent"]
    return {
        "rule": f"telemetry costs `gossamer up` under {GOAL_CORE_PERCENT:g}% of one core with "
        f"{GOAL_SIDECARS} sidecars (interval {ON_INTERVAL_S} s)",
        "core_percent": share,
        "met": None if share is None else bool(share < GOAL_CORE_PERCENT),
    }


def warnings(data: dict[str, Any], settings: Settings) -> list[str]:
    out = busy_machine_notes(data["machine"])
    for s in data["control_plane"]:
        n = s["sidecars"]
        other = s["window"]["other_load_cores"]
        if other >= QUIET_CORES:
            out.append(
                f"{n} sidecars: other processes kept {other:.2f} cores busy during the window"
            )
        t = s["telemetry"]
        if t["rounds"] is not None and abs(t["rounds"] - t["rounds_expected"]) > 1.5:
            out.append(
                f"{n} sidecars: {t['rounds']} collection rounds counted, "
                f"{t['rounds_expected']} expected"
            )
        failed = sum(s.get("load", {}).get("failed", {}).values())
        if failed:
            out.append(f"{n} sidecars: {failed} requests of the light load failed")
        scrapes = s["meshes"]["on"]["metrics"]["failed_scrapes_total"]
        if scrapes:
            out.append(f"{n} sidecars: {scrapes} scrapes failed")
    d = data.get("dataplane")
    if d:
        out += dp_warnings(d, settings.rate)
    return out


def dp_warnings(d: dict[str, Any], rate: int) -> list[str]:
    """What in a data-plane part's results makes its figures doubtful."""
    out = []
    for name, p in d["paths"].items():
        other = max(p[mode].get("other_load_cores", 0.0) for mode in ("paced", "saturation"))
        if other >= 0.25:
            out.append(f"{name}: other processes kept {other:.2f} cores busy in its runs")
        for mode in ("paced", "saturation"):
            errors = sum(p[mode]["errors"].values())
            if errors:
                out.append(f"{name} {mode}: {errors} errors {p[mode]['errors']}")
        if (p["paced"]["rps"] or 0.0) < 0.95 * rate:
            out.append(f"{name}: paced runs fell short of {rate} rps")
        for cmdline in p["envoy_cmdlines"]:
            if "--concurrency 1" not in cmdline:
                out.append(f"{name}: a sidecar runs without --concurrency 1: {cmdline}")
        written = dig(p, "access_log_files", "bytes")
        if "access_log" in p and bool(written) != p["access_log"]:
            out.append(
                f"{name}: access logs {'on' if p['access_log'] else 'off'}, yet {written} bytes "
                "in the access log files: the setting did not take effect as expected"
            )
    return out


# --- report --------------------------------------------------------------------------------


def _kib(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value / 1024:,.1f}"


def _ms(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value / 1000:.3f}"


def cp_lines(data: dict[str, Any]) -> list[str]:
    st = data["settings"]
    lines = [
        "## Control plane: scraping every sidecar",
        "",
        f"Per size, two copies of the same mesh ran side by side: `gossamer up "
        f"--telemetry-interval {st['telemetry_interval_on_s']}` (the default) and "
        f"`--telemetry-interval {st['telemetry_interval_off_s']}` (no round within the run). "
        "Mesh: one `server` workload (nginx) and N-1 clients (`sleep`), one sidecar each. "
        f"Load: {st['load_rps_per_mesh']} rps per mesh, paced, spread over every client's "
        "sidecar to `http://server/`, so every client-server edge has series. Over a window "
        f"of {st['window_seconds']} s: utime+stime of each `up` process; the difference is "
        "telemetry's. Rounds are counted on the server sidecar's admin request counter "
        "(one request per scrape). Series: the Istio series on `/metrics` (not counting "
        "Gossamer's own two counters). Stats read per round: the filtered Envoy statistics "
        "of every sidecar, as one round fetches them. With the interval at 3600 s, `up` "
        "does all it does without telemetry (the admin API is not called during the window; "
        "the pid file and the access-log rotation check run once a second), so the "
        "difference is the rounds: scraping, parsing, aggregating and writing the round "
        "to the embedded store. The store's compaction (every 60th round) falls outside "
        "the window.",
        "",
        "| sidecars | `up` % of a core, interval 5 s | interval 3600 s | **telemetry, % of a "
        "core** | rounds | CPU per round (ms) | per round per sidecar (ms) | series on "
        "/metrics | per sidecar | /metrics KiB | KiB per sidecar | CPU to render /metrics "
        "once (ms) | stats read per round (KiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in data["control_plane"]:
        t, on, off = s["telemetry"], s["meshes"]["on"], s["meshes"]["off"]
        scraped = t["scraped_per_round"] or {}
        lines.append(
            f"| {s['sidecars']} | {fmt(on['up_core_percent'], 2)} | "
            f"{fmt(off['up_core_percent'], 2)} | **{fmt(t['core_percent'], 2)}** | "
            f"{fmt(t['rounds'])} | {fmt(t['cpu_ms_per_round'], 1)} | "
            f"{fmt(t['cpu_ms_per_round_per_sidecar'], 2)} | {fmt(t['series'])} | "
            f"{fmt(t['series_per_sidecar'], 1)} | {_kib(t['metrics_bytes'])} | "
            f"{_kib(t['metrics_bytes_per_sidecar'])} | {fmt(t['metrics_render_cpu_ms'], 1)} | "
            f"{_kib(scraped.get('total_bytes'))} |"
        )
    g = data["goal"]
    verdict = {True: "**met**", False: "**missed**", None: "not measured"}[g["met"]]
    lines += [
        "",
        f"Goal: {g['rule']}: {verdict}"
        + (f" ({g['core_percent']:.2f}%)." if g["core_percent"] is not None else "."),
        "",
        "Also measured, per size:",
        "",
    ]
    for s in data["control_plane"]:
        t, on, off, w = s["telemetry"], s["meshes"]["on"], s["meshes"]["off"], s["window"]
        mem_on = (on["up_memory_kib"] or {}).get("rss_anon_kib")
        mem_off = (off["up_memory_kib"] or {}).get("rss_anon_kib")
        scraped = t["scraped_per_round"] or {}
        lines.append(
            f"- {s['sidecars']} sidecars: the sidecars' Envoys, all together, spent "
            f"{fmt(t['envoys_cpu_s_difference'], 2)} s of CPU more with telemetry on than off "
            f"over {w['window_s']:.0f} s "
            f"({fmt(100 * t['envoys_cpu_s_difference'] / w['window_s'], 2)}% of a core: "
            "answering the scrapes, within the noise of the load they carry); "
            f"`up` private memory {_kib(mem_on)} MiB with telemetry on, {_kib(mem_off)} off "
            f"(RssAnon, at the end); stats read per round: server sidecar "
            f"{_kib(scraped.get('server_bytes'))} KiB, a client "
            f"{_kib(scraped.get('client_bytes_mean'))} KiB; /metrics with telemetry off: "
            f"{fmt(off['metrics']['bytes'])} bytes; machine busy {w['host_busy_cores']:.2f} "
            f"cores (load loop {w['load_loop_cores']:.2f}, other processes "
            f"{w['other_load_cores']:.2f}); `up` ready in {s['startup_s']} s (both meshes)."
        )
    return lines


def dp_lines(d: dict[str, Any]) -> list[str]:
    st = d["settings"]
    copy = (
        " and `logs_off_aa`, a copy of `logs_off` (an A/A test: its ratio to `logs_off` is "
        "the benchmark's own noise)"
        if st.get("calibrate")
        else ""
    )
    titles = {
        "logs_on_vs_off": "logs on / logs off",
        "logs_off_aa_vs_logs_off": "logs off copy / logs off (A/A: the noise)",
    }
    return [
        "",
        "## Data plane: access logs on vs off",
        "",
        f"Meshes of a client and a server sidecar in front of nginx: `logs_on` with access "
        f"logs on (the default), `logs_off` with `Mesh` `spec: {{accessLog: {{enabled: "
        f"false}}}}`{copy}; all with telemetry every {st['telemetry_interval_s']} s. "
        + dp_load_text(st)
        + " The per-edge virtual clusters of the receiving sidecar and the "
        "`x-gossamer-source-workload` header of the calling one are on in every path "
        "(`bench.edge_metrics` measures them on vs off), so this compares access logging "
        "alone.",
        "",
        *dp_path_table(d),
        *dp_ratio_table(d, titles),
        "",
        "Access log bytes left: what the files held at the end; rotation (10 MiB, 3 files "
        "kept) drops older lines, so this is not all that was written.",
    ]


def dp_load_text(st: dict[str, Any]) -> str:
    """How a data-plane part loads its paths, from its ``settings``."""
    return (
        f"wrk through the client sidecar (`Host: upstream`): {st['rate_rps']} rps paced over "
        f"{st['paced_connections']} connections, and saturation over "
        f"{st['saturation_connections']}, in {st['rounds']} interleaved rounds of "
        f"{st['paced_seconds_per_round']} s + {st['saturation_seconds_per_round']} s, as "
        "`bench.dataplane` measures."
    )


def dp_path_table(d: dict[str, Any]) -> list[str]:
    """A data-plane part's figures per path, as a Markdown table."""
    lines = [
        "| path | sat. rps | paced rps | p50 ms | p99 ms | CPU us/req/Envoy @rate | "
        "CPU us/req/Envoy @sat | access log bytes left | bytes per line | other load (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in d["paths"].items():
        paced, sat, logs = p["paced"], p["saturation"], p["access_log_files"] or {}
        other = max(paced.get("other_load_cores", 0.0), sat.get("other_load_cores", 0.0))
        lines.append(
            f"| {name} | {fmt(sat['rps'])} | {fmt(paced['rps'])} | "
            f"{_ms(paced['latency_us']['p50'])} | {_ms(paced['latency_us']['p99'])} | "
            f"{fmt(paced['cpu_us_per_request_per_envoy'], 1)} | "
            f"{fmt(sat['cpu_us_per_request_per_envoy'], 1)} | {fmt(logs.get('bytes'))} | "
            f"{fmt(logs.get('mean_line_bytes'))} | {other:.2f} |"
        )
    return lines


def dp_ratio_table(d: dict[str, Any], titles: dict[str, str]) -> list[str]:
    """A data-plane part's ratios (``titles`` names them), as a Markdown table."""
    if not d["ratios"]:
        return []
    keys = list(dp.RATIO_KEYS)
    lines = [
        "",
        "Ratios: the median of per-round ratios (over the quiet rounds when at least two "
        "were quiet), the ratio of the figures pooled over all rounds, and the range "
        "over rounds.",
        "",
        "| ratio | paced p50 | paced p99 | CPU/req/Envoy @rate | CPU/req/Envoy @sat | "
        "sat. rps | RssAnon | Pss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in d["ratios"].items():
        title = titles.get(key, key)
        med, pooled, rng = r["median_of_rounds"], r["pooled"], r["round_range"]
        rounds = ",".join(map(str, r["rounds_in_median"]))
        bold = [f"**{fmt(med.get(k), 2)}**" for k in keys]
        ranges = [
            f"{v[0]:.2f}-{v[1]:.2f}" if isinstance(v := rng.get(k), list) else "-" for k in keys
        ]
        lines += [
            f"| **{title}** (rounds {rounds}) | " + " | ".join(bold) + " |",
            f"| {title}, pooled | " + " | ".join(fmt(pooled.get(k), 2) for k in keys) + " |",
            f"| {title}, range | " + " | ".join(ranges) + " |",
        ]
    return lines


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "# Telemetry",
        "",
        "Generated by `python -m bench.telemetry`; do not edit by hand.",
        "",
        run_line(data),
        "",
    ]
    if data["control_plane"]:
        lines += cp_lines(data)
    if data.get("dataplane"):
        lines += dp_lines(data["dataplane"])
    left = data.get("leftover_processes") or []
    lines += [
        "",
        f"Processes left after the meshes stopped (pgrep -f on their folders): "
        f"{len(left) or 'none'}.",
    ]
    lines += notes_lines(data["notes"])
    return "\n".join(lines) + "\n"


# --- entry point ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Settings:
    ap = argparse.ArgumentParser(
        prog="python -m bench.telemetry",
        description="Telemetry's cost: the control plane's CPU for scraping (10 and 50 "
        "sidecars), and the data plane's for access logs.",
    )
    defaults = Settings()
    limits = {
        "window_seconds": (5, 600),
        "load_rps": (1, 1000),
        "first_port": (1024, 60000),
        **dp.LIMITS,
    }
    add_int_options(
        ap,
        defaults,
        limits,
        {
            "window_seconds": "CPU measurement window per mesh size (50)",
            "load_rps": "light load per mesh, over all its clients (100)",
            "first_port": "first sidecar/app port; 1000 more per mesh (22000)",
            "rate": "paced rate of the data-plane part, requests/s (2000)",
        },
    )
    ap.add_argument(
        "--sizes",
        default=",".join(map(str, defaults.sizes)),
        help="sidecar counts, comma-separated (10,50)",
    )
    ap.add_argument("--no-control-plane", action="store_true", help="skip part 1")
    ap.add_argument("--no-dataplane", action="store_true", help="skip part 2")
    ap.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip the second logs-off mesh (the A/A test that shows the noise)",
    )
    ns = ap.parse_args(list(argv))
    check_limits(ap, ns, limits)
    try:
        sizes = tuple(int(x) for x in ns.sizes.split(",") if x.strip())
    except ValueError:
        ap.error("--sizes takes integers, comma-separated")
    if not sizes or not all(2 <= n <= 200 for n in sizes):
        ap.error("--sizes must be within 2..200")
    if ns.first_port + 1000 * (2 * len(sizes) + 3) > 65000:
        ap.error("--first-port leaves no room for a port range per mesh")
    return Settings(
        sizes=sizes,
        window_seconds=ns.window_seconds,
        load_rps=ns.load_rps,
        first_port=ns.first_port,
        control_plane=not ns.no_control_plane,
        dataplane=not ns.no_dataplane,
        **dp.load_options(ns),
        calibrate=not ns.no_calibrate,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(NAME, argv, parse_args, run, markdown)


if __name__ == "__main__":
    sys.exit(main())
