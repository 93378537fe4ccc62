"""What per-edge request metrics and access logs add to the data plane, against the same
mesh with them off.

Per-edge metrics (``Mesh`` ``spec.telemetry.edgeMetrics``, on by default): the calling
sidecar stamps ``x-gossamer-source-workload`` on every request, and the receiving sidecar's
inbound route has one virtual cluster per possible caller, so Envoy keeps request counters
and a latency histogram per (caller, service). Access logs (``spec.accessLog.enabled``,
on by default): one JSON line per request in each sidecar.

Five meshes of a client and a server sidecar in front of nginx, the same but for their
``Mesh`` resource, run side by side (a 2x2 of the two settings, plus a copy of the
all-off mesh whose ratio to its twin is the benchmark's own noise; ``--no-calibrate``
skips it). wrk goes through the client sidecar at a paced 2000 rps and at saturation, in
interleaved rounds, measured as ``bench.dataplane`` does (latency percentiles, CPU per
request per Envoy, saturation throughput, memory); the meshes are started and measured
by ``bench.telemetry``'s data-plane helpers. Each setting's cost is given twice, with
the other setting on and off, and both together against both off. After the rounds the
server sidecar's virtual-cluster statistics are read, to check that the setting took
effect.

Run from the repo root: ``python -m bench.edge_metrics`` (``--help`` for the knobs);
about 3 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import dataplane as dp
from bench import telemetry as tm
from bench._common import (
    LOOPBACK,
    BenchError,
    add_int_options,
    busy_machine_notes,
    check_limits,
    finish_results,
    fmt,
    gossamer_cli,
    http_get,
    kill_pid,
    machine_at_start,
    notes_lines,
    other_envoys,
    raise_nofile_limit,
    run_benchmark,
    run_line,
    wrk_binary,
)
from bench._nginx_app import nginx_binary

NAME = "edge_metrics"
VCLUSTER_PREFIX = "vhost.inbound.vcluster."
"""Where the receiving sidecar's per-edge statistics live."""

DEFAULT = tm.DpVariant("default")
NO_EDGES = tm.DpVariant("no_edges", edge_metrics=False)
NO_LOGS = tm.DpVariant("no_logs", access_log=False)
BARE = tm.DpVariant("bare", access_log=False, edge_metrics=False)
BARE_AA = tm.DpVariant("bare_aa", access_log=False, edge_metrics=False)

RATIOS = (
    ("edges_on_vs_off", DEFAULT, NO_EDGES, "edge metrics on / off (access logs on)"),
    ("edges_on_vs_off_no_logs", NO_LOGS, BARE, "edge metrics on / off (access logs off)"),
    ("logs_on_vs_off", DEFAULT, NO_LOGS, "access logs on / off (edge metrics on)"),
    ("logs_on_vs_off_no_edges", NO_EDGES, BARE, "access logs on / off (edge metrics off)"),
    ("all_on_vs_off", DEFAULT, BARE, "both on (the default) / both off"),
    ("bare_aa_vs_bare", BARE_AA, BARE, "both off, copy / both off (A/A: the noise)"),
)
"""(key, top, base, title): the ratios top/base the report gives."""


@dataclass(frozen=True)
class Settings:
    first_port: int = 24000
    """Sidecar and app ports of the i-th mesh start at first_port + 1000 * i (``gossamer
    up`` hands out ports below 32000 only)."""
    rate: int = 2000
    paced_connections: int = 8
    saturation_connections: int = 32
    rounds: int = 5
    paced_seconds: int = 3
    saturation_seconds: int = 3
    warmup_seconds: int = 1
    calibrate: bool = True
    """Also measure a copy of the all-off mesh: bare_aa / bare is an A/A test."""

    def dataplane_settings(self) -> dp.Settings:
        return dp.Settings(**dp.load_options(self))

    def variants(self) -> list[tm.DpVariant]:
        return [DEFAULT, NO_EDGES, NO_LOGS, BARE] + ([BARE_AA] if self.calibrate else [])


def edge_stats(mesh: tm.DpMesh) -> dict[str, Any]:
    """The server sidecar's per-edge statistics: how many there are (of all its stats)
    and the requests they counted."""
    port = mesh.server_admin_port
    if port is None:
        return {"edge_stats": None}
    pattern = quote("^" + VCLUSTER_PREFIX.replace(".", r"\."))
    code, body = http_get(f"http://{LOOPBACK}:{port}/stats?filter={pattern}", timeout_s=5)
    all_code, all_body = http_get(f"http://{LOOPBACK}:{port}/stats", timeout_s=5)
    if code != 200 or all_code != 200:
        return {"edge_stats": None}
    lines = [line for line in body.decode(errors="replace").splitlines() if line.strip()]
    requests = 0
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().endswith(".upstream_rq_total") and value.strip().isdigit():
            requests += int(value.strip())
    return {
        "edge_stats": {
            "stats": len(lines),
            "requests_counted": requests,
            "server_sidecar_stats": len(all_body.splitlines()),
        }
    }


def run(settings: Settings) -> dict[str, Any]:
    raise_nofile_limit()
    if nginx_binary() is None:
        raise BenchError("nginx is not installed (see bench/README.md)")
    wrk_binary()
    gossamer_cli()
    envoy = dp.envoy_binary()
    started = time.monotonic()
    dps = settings.dataplane_settings()
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine_at_start(envoy),
        "settings": {
            **tm.dp_settings_figures(dps, settings.calibrate),
            "first_port": settings.first_port,
            "meshes": {v.label: v.mesh_spec() or "(defaults)" for v in settings.variants()},
        },
        "notes": [],
    }
    if pythonpath := os.environ.get("PYTHONPATH"):
        data["notes"].append(
            f"PYTHONPATH={pythonpath}: the meshes ran the gossamer package found there"
        )
    workdirs: list[Path] = []
    print("edge metrics and access logs on vs off:", flush=True)
    try:
        runs, extra = tm.measure_dp_variants(
            dps, settings.variants(), settings.first_port, workdirs, edge_stats
        )
    finally:
        # Every mesh has stopped: nothing that names one of their folders may still run.
        leftovers = tm.leftover_processes(workdirs)
        for line in leftovers:
            pid, _, cmdline = line.partition(" ")
            kill_pid(int(pid), cmdline)
    data["paths"] = {name: dp.path_figures(pr, **extra[name]) for name, pr in runs.items()}
    data["ratios"] = {
        key: dp.compare_runs(runs[top.label], runs[base.label])
        for key, top, base, _ in RATIOS
        if top.label in runs and base.label in runs
    }
    data["leftover_processes"] = leftovers
    if leftovers:
        data["notes"].append(f"processes were left after the meshes stopped (killed): {leftovers}")
    data["machine"]["other_envoys_at_end"] = other_envoys([])
    data["notes"].extend(warnings(data, settings))
    finish_results(data, started)
    return data


def warnings(data: dict[str, Any], settings: Settings) -> list[str]:
    out = busy_machine_notes(data["machine"]) + tm.dp_warnings(data, settings.rate)
    for name, p in data["paths"].items():
        edges = p.get("edge_stats")
        if edges is None:
            out.append(f"{name}: the server sidecar's statistics could not be read")
        elif bool(edges["requests_counted"]) != p["edge_metrics"]:
            out.append(
                f"{name}: edge metrics {'on' if p['edge_metrics'] else 'off'}, yet the server "
                f"sidecar counted {edges['requests_counted']} requests per edge: the setting "
                "did not take effect as expected"
            )
    return out


# --- report --------------------------------------------------------------------------------


def markdown(data: dict[str, Any]) -> str:
    st = data["settings"]
    meshes = ", ".join(f"`{label}` {spec}" for label, spec in st["meshes"].items())
    lines = [
        "# Edge metrics and access logs: their cost in the data plane",
        "",
        "Generated by `python -m bench.edge_metrics`; do not edit by hand.",
        "",
        run_line(data),
        "",
        "Meshes of a client and a server sidecar in front of nginx, identical but for their "
        f"`Mesh` spec: {meshes}. Edge metrics: the client sidecar stamps "
        "`x-gossamer-source-workload`, and the server sidecar's inbound route has one "
        "virtual cluster per possible caller (here 2: `client` and `upstream`), with request "
        "counters and a latency histogram each. All meshes collect telemetry every "
        f"{st['telemetry_interval_s']} s (the default). " + tm.dp_load_text(st),
        "",
        *tm.dp_path_table(data),
        *tm.dp_ratio_table(data, {key: title for key, _, _, title in RATIOS}),
        "",
        "The server sidecar's per-edge statistics after the rounds (`vhost.inbound.vcluster.*`): "
        "how many, the requests they counted, and all the statistics that Envoy keeps.",
        "",
        "| path | edge metrics | access logs | per-edge stats | requests counted per edge "
        "| all stats of the server sidecar |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, p in data["paths"].items():
        edges = p.get("edge_stats") or {}
        lines.append(
            f"| {name} | {'on' if p['edge_metrics'] else 'off'} | "
            f"{'on' if p['access_log'] else 'off'} | {fmt(edges.get('stats'))} | "
            f"{fmt(edges.get('requests_counted'))} | {fmt(edges.get('server_sidecar_stats'))} |"
        )
    left = data.get("leftover_processes") or []
    lines += [
        "",
        "Access log bytes left: what the files held at the end; rotation (10 MiB, 3 files "
        "kept) drops older lines, so this is not all that was written.",
        "",
        f"Processes left after the meshes stopped (pgrep -f on their folders): "
        f"{len(left) or 'none'}.",
    ]
    lines += notes_lines(data["notes"])
    return "\n".join(lines) + "\n"


# --- entry point ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Settings:
    ap = argparse.ArgumentParser(
        prog="python -m bench.edge_metrics",
        description="The data-plane cost of per-edge metrics and access logs: the same "
        "mesh with each on and off.",
    )
    limits = {"first_port": (1024, 32000 - 1000 * len(Settings().variants())), **dp.LIMITS}
    add_int_options(
        ap,
        Settings(),
        limits,
        {
            "first_port": "first sidecar/app port; 1000 more per mesh (24000)",
            "rate": "paced rate, requests/s (2000)",
        },
    )
    ap.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip the copy of the all-off mesh (the A/A test that shows the noise)",
    )
    ns = ap.parse_args(list(argv))
    check_limits(ap, ns, limits)
    return Settings(first_port=ns.first_port, **dp.load_options(ns), calibrate=not ns.no_calibrate)


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(NAME, argv, parse_args, run, markdown)


if __name__ == "__main__":
    sys.exit(main())
