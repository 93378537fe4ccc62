"""Control-plane restart: ``gossamer up`` killed with ``kill -9`` and started again, until
every proxy is in sync with the new control plane.

For meshes of 10 and 50 sidecars (one ``server`` workload, a Python HTTP server, plus
N-1 idle clients running ``sleep``), ``gossamer up`` runs the mesh; each round:

1. waits until the mesh is settled (every instance running, every proxy synced) and the
   running ``up`` has recorded every instance's pids in ``processes.json``, which a
   restarted ``up`` reads to take them over;
2. notes each instance's Envoy and app pids (``/api/v1/status``), each proxy's ACKed
   version per xDS type (``/api/v1/proxies``) and, from each sidecar's own admin port, the
   ``version_info`` of its config dump and the counters Envoy bumps only when its config
   really changes (clusters and listeners added, modified or removed, route configs
   reloaded, cluster membership changes);
3. ``kill -9`` the ``up`` process, waits a fixed outage (1 s), and starts ``up`` again with
   the same arguments and state directory;
4. polls ``GET /api/v1/proxies`` (every 50 ms; every 10 ms while the API refuses
   connections) until every proxy of the mesh has every xDS type SYNCED or NOT_SENT.

Figures per round, from the restart (just before the new ``up`` is spawned):

- restart -> API: the first answer of ``GET /api/v1/proxies``;
- restart -> all SYNCED: the poll that saw every proxy in sync (up to one poll late);
- restart -> last ACK: the latest ``acked_at`` over every proxy and type, the control
  plane's own stamp (so the polling interval does not add to it);
- restart -> running: when ``up`` logged that it runs (its start is over, including the
  re-read of the files under PATH).

And checks: (c) no instance was restarted (the same Envoy and app pids, still running);
(d) nothing was pushed that changed a proxy's config (the same ACKed versions, the same
config dump versions, Envoy's change counters unchanged, and no ``applied revision`` in
the new ``up``'s log). At the end ``gossamer down`` stops the mesh, and the benchmark
checks that none of its processes is left.

``python -m bench.restart`` (``--help`` for the knobs); about 1 minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    LOOPBACK,
    REPO_DIR,
    BenchError,
    cpu_use,
    exit_on_signals,
    gossamer_cli,
    http_get,
    load_cores,
    machine_at_start,
    pids_running,
    proc_cmdline,
    proc_stat,
    raise_nofile_limit,
    write_results,
)
from bench.push_latency import Mesh, nearest_rank, no_nan

NAME = "restart"
SIZES = (10, 50)
ROUNDS = 6
OUTAGE_S = 1.0
POLL_S = 0.050
REFUSED_POLL_S = 0.010
"""While the API refuses connections (``up`` is still starting), poll this often."""
SETTLE_TIMEOUT_S = 30.0
CONVERGE_TIMEOUT_S = 20.0
ROUNDS_BUDGET_S = 60.0
"""Rounds of one mesh size that would start after this much time are skipped."""
TOTAL_BUDGET_S = 150.0
"""Sizes that would start after this much time are skipped (and reported as such)."""
DOWN_TIMEOUT_S = 40.0
ENVOY = Path(sys.executable).parent / "envoy"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
APPLIED = re.compile(r"applied revision \d+.*")
WORKDIR_PREFIX = "gossamer-restart-"
"""The start of each mesh's temporary folder, in every one of its Envoys' command lines."""
RESUMED = "resuming revision"
TOOK_OVER = re.compile(r"(\S+): took over its running sidecar and app")
IN_SYNC = ("SYNCED", "NOT_SENT")
CHANGE_STATS = (
    r"^(cluster_manager\.cluster_(added|modified|removed)"
    r"|listener_manager\.listener_(added|modified|removed)"
    r"|http\..*\.rds\..*\.config_reload"
    r"|cluster\..*\.membership_change)$"
)
"""Envoy counters that move only when its config really changes: a resource received again
unchanged is skipped (clusters, listeners) or does not reload (routes, endpoints)."""
DUMP_SECTIONS = {
    "ClustersConfigDump": "clusters",
    "ListenersConfigDump": "listeners",
    "RoutesConfigDump": "routes",
}


# --- the mesh ----------------------------------------------------------------------------

# A plain command line: what the restart is measured with does not depend on a shell.
_SERVER = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: server}
spec:
  ports: [{port: 80, protocol: http}]
  command:
  - python3
  - -c
  - |
    import http.server as h, os
    h.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])),
                          h.SimpleHTTPRequestHandler).serve_forever()
"""

_CLIENT = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: client-{index}}}
spec:
  command: [sleep, "100000"]
"""


def mesh_yaml(sidecars: int) -> str:
    """One ``server`` workload and ``sidecars - 1`` idle clients, as one YAML stream."""
    return "---\n".join([_SERVER] + [_CLIENT.format(index=i) for i in range(1, sidecars)])


# --- reading the mesh --------------------------------------------------------------------


def api_proxies(api_port: int) -> list[dict[str, Any]] | None:
    """``GET /api/v1/proxies``'s list, or None while the admin API has no good answer."""
    code, body = http_get(f"http://{LOOPBACK}:{api_port}/api/v1/proxies", timeout_s=5)
    if code != 200:
        return None
    with contextlib.suppress(ValueError):
        data = json.loads(body)
        proxies = data.get("proxies") if isinstance(data, dict) else None
        if isinstance(proxies, list):
            return proxies
    return None


def in_sync(proxies: list[dict[str, Any]], nodes: set[str]) -> bool:
    """Every proxy of ``nodes`` is known and has every xDS type SYNCED or NOT_SENT (as
    `gossamer proxy-status` exits 0)."""
    known = {p.get("node") for p in proxies}
    return known >= nodes and all(
        t.get("state") in IN_SYNC
        for p in proxies
        if p.get("node") in nodes
        for t in p.get("types", {}).values()
    )


def acked(proxies: list[dict[str, Any]]) -> dict[str, str]:
    """``node/type`` -> the ACKed version."""
    return {
        f"{p['node']}/{name}": str(t.get("acked_version", ""))
        for p in proxies
        for name, t in p.get("types", {}).items()
    }


def last_ack(proxies: list[dict[str, Any]]) -> float:
    return max(
        (float(t.get("acked_at") or 0) for p in proxies for t in p.get("types", {}).values()),
        default=0.0,
    )


def instance_pids(status: dict[str, Any]) -> dict[str, list[Any]]:
    """Instance -> [Envoy pid, app pid, state]."""
    return {
        i["name"]: [i.get("envoy_pid"), i.get("app_pid"), i.get("state")]
        for i in status.get("instances", [])
    }


def settled(status: dict[str, Any] | None, sidecars: int) -> bool:
    if status is None:
        return False
    instances = status.get("instances", [])
    return len(instances) == sidecars and all(
        i["state"] == "running" and i["proxy"]["synced"] and i.get("envoy_pid") and i.get("app_pid")
        for i in instances
    )


def recorded_for_takeover(mesh: Mesh, status: dict[str, Any]) -> bool:
    """Whether the running ``up`` wrote ``processes.json`` (it does once a second) with
    every instance at the pids ``status`` shows: what a restarted ``up`` takes over."""
    try:
        data = json.loads((mesh.state_dir / "processes.json").read_text())
    except (OSError, ValueError):
        return False
    if mesh.proc is None or data.get("pid") != mesh.proc.pid:
        return False
    pids = data.get("pids", {})
    return all(pids.get(i["name"]) == [i["envoy_pid"], i["app_pid"]] for i in status["instances"])


def envoy_view(admin_port: int) -> dict[str, Any]:
    """What one sidecar's Envoy says of its config: the ``version_info`` of its config dump
    sections (and of each route config), and the counters that move on a real change."""
    view: dict[str, Any] = {"versions": {}, "changes": {}}
    base = f"http://{LOOPBACK}:{admin_port}"
    code, body = http_get(f"{base}/config_dump", timeout_s=5)
    if code != 200:
        raise BenchError(f"the Envoy admin on port {admin_port} answered {code} to /config_dump")
    for config in json.loads(body).get("configs", []):
        section = DUMP_SECTIONS.get(str(config.get("@type", "")).rsplit(".", 1)[-1])
        if section is None:
            continue
        if config.get("version_info") is not None:  # RoutesConfigDump has none of its own
            view["versions"][section] = config["version_info"]
        for route in config.get("dynamic_route_configs", []):
            name = route.get("route_config", {}).get("name", "?")
            view["versions"][f"routes/{name}"] = route.get("version_info")
    query = urllib.parse.urlencode({"filter": CHANGE_STATS})
    code, body = http_get(f"{base}/stats?{query}", timeout_s=5)
    if code != 200:
        raise BenchError(f"the Envoy admin on port {admin_port} answered {code} to /stats")
    for line in body.decode(errors="replace").splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            view["changes"][name] = int(value)
    return view


def envoy_views(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: envoy_view(int(i["admin_port"])) for i in status["instances"]}


def differences(before: dict[str, Any], after: dict[str, Any], what: str) -> list[str]:
    """``what key: before -> after`` for every key whose value differs."""
    return [
        f"{what} {key}: {before.get(key)} -> {after.get(key)}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def other_envoys() -> int:
    """Envoys running that no mesh of this benchmark started (other sessions' load).

    Exited ones are left out: a taken-over Envoy is no child of the ``up`` that stops it,
    so it stays a zombie until init reaps it (a second or two here).
    """
    return sum(
        not _zombie(pid) and WORKDIR_PREFIX not in proc_cmdline(pid)
        for pid in pids_running("envoy")
    )


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and awaits its parent (or is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave other guests while this VM wanted to run
    (``steal`` in /proc/stat; 0 on bare metal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / CLOCK_TICKS if len(fields) > 8 else 0.0


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def total_cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and of its reaped children, 0 when it is gone."""
    st = proc_stat(pid)
    return sum(st.get(k, 0) for k in ("utime", "stime", "cutime", "cstime")) / CLOCK_TICKS


# --- results -----------------------------------------------------------------------------


@dataclass
class Round:
    index: int
    ok: bool = False
    error: str = ""
    outage_s: float = math.nan
    """From the kill until the new ``up`` was spawned."""
    api_s: float = math.nan
    synced_s: float = math.nan
    last_ack_s: float = math.nan
    api_to_synced_s: float = math.nan
    """From the API's first answer until every proxy was in sync: loading the state and
    the sidecars' reconnect (their xDS retry backoff)."""
    running_s: float = math.nan
    polls: int = 0
    took_over: int = 0
    """Instances the new ``up`` logged it took over."""
    restarted: list[str] = field(default_factory=list)
    """(c) instances whose Envoy or app pid changed, or that are not running."""
    config_changes: list[str] = field(default_factory=list)
    """(d) ACKed versions, dump versions or Envoy change counters that moved."""
    applied: list[str] = field(default_factory=list)
    """(d) ``applied revision`` lines of the new ``up``."""
    busy_cores: float = math.nan
    """The whole machine, from the restart until every proxy was in sync and ``up`` ran."""
    other_cores: float = math.nan
    """The same, less the new ``up``, the mesh's Envoys and apps, and this benchmark."""
    up_cpu_s: float = math.nan
    """CPU the new ``up`` spent until then."""
    steal_cores: float = math.nan
    """The same window: cores the hypervisor took from this VM (``steal``)."""
    other_envoys: int = 0
    """Envoys of other sessions running at the kill."""
    notes: str = ""


@dataclass
class SizeResult:
    sidecars: int
    rounds: list[Round] = field(default_factory=list)
    startup_s: float = math.nan
    failed: str = ""
    down: str = ""
    """What ``gossamer down`` said."""
    leftover_processes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        good = [r for r in self.rounds if r.ok]

        def stats(key: str) -> dict[str, float]:
            values = [float(getattr(r, key)) for r in good]
            values = [v for v in values if not math.isnan(v)]
            if not values:
                return {"n": 0}
            return {
                "n": len(values),
                "p50": round(statistics.median(values), 3),
                "p90": round(nearest_rank(values, 90), 3),
                "max": round(max(values), 3),
            }

        return {
            "sidecars": self.sidecars,
            "rounds": len(self.rounds),
            "rounds_ok": len(good),
            "startup_s": round(self.startup_s, 2),
            "outage_s": stats("outage_s"),
            "api_s": stats("api_s"),
            "synced_s": stats("synced_s"),
            "last_ack_s": stats("last_ack_s"),
            "api_to_synced_s": stats("api_to_synced_s"),
            "running_s": stats("running_s"),
            "up_cpu_s": stats("up_cpu_s"),
            "busy_cores": stats("busy_cores"),
            "other_cores": stats("other_cores"),
            "steal_cores": stats("steal_cores"),
            "other_envoys": sorted({r.other_envoys for r in self.rounds}),
            "instances_restarted": sorted({n for r in self.rounds for n in r.restarted}),
            "config_changes": sum(len(r.config_changes) for r in self.rounds),
            "applied_lines": sum(len(r.applied) for r in self.rounds),
            "failed": self.failed,
            "down": self.down,
            "leftover_processes": self.leftover_processes,
            "notes": self.notes,
            "per_round": [
                {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(r).items()}
                for r in self.rounds
            ],
        }


# --- one round ---------------------------------------------------------------------------


def wait_settled(mesh: Mesh) -> dict[str, Any]:
    """The status once every instance runs with its proxy synced and ``processes.json``
    records them all."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        status = mesh.status.get()
        if status is not None and settled(status, mesh.sidecars):
            mesh.remember_children(status)
            if recorded_for_takeover(mesh, status):
                return status
        if mesh.proc is not None and mesh.proc.poll() is not None:
            raise BenchError(f"`gossamer up` exited {mesh.proc.returncode}:\n{mesh.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(
                f"the mesh did not settle within {SETTLE_TIMEOUT_S:.0f}s:\n{mesh.tail()}"
            )
        time.sleep(0.1)


def restart_and_converge(mesh: Mesh, result: Round, nodes: set[str], poll_s: float) -> bool:
    """Start ``up`` again and poll until every proxy of ``nodes`` is in sync and ``up``
    logged that it runs; the times go into ``result``. False (``result.error`` says why)
    if that takes longer than CONVERGE_TIMEOUT_S."""
    t0_wall, t0 = time.time(), time.monotonic()
    mesh.spawn()
    deadline = t0 + CONVERGE_TIMEOUT_S
    while True:
        now = time.monotonic()
        if math.isnan(result.running_s) and mesh.ready():
            result.running_s = now - t0
        found = api_proxies(mesh.api_port)
        result.polls += 1
        if found is not None and math.isnan(result.api_s):
            result.api_s = time.monotonic() - t0
        if found is not None and math.isnan(result.synced_s) and in_sync(found, nodes):
            result.synced_s = time.monotonic() - t0
            result.last_ack_s = last_ack(found) - t0_wall
            result.api_to_synced_s = result.synced_s - result.api_s
        if not math.isnan(result.synced_s) and not math.isnan(result.running_s):
            return True
        if now > deadline:
            result.error = (
                f"not converged within {CONVERGE_TIMEOUT_S:.0f}s of the restart (API "
                f"{'answering' if found is not None else 'not answering'}, all synced: "
                f"{not math.isnan(result.synced_s)}, running: "
                f"{not math.isnan(result.running_s)})"
            )
            return False
        time.sleep(poll_s if found is not None else REFUSED_POLL_S)


def run_round(mesh: Mesh, index: int, outage_s: float, poll_s: float) -> Round:
    result = Round(index)
    status = wait_settled(mesh)
    proxies = api_proxies(mesh.api_port)
    if proxies is None:
        raise BenchError("GET /api/v1/proxies did not answer before the kill")
    nodes = {str(p["node"]) for p in proxies}
    pids_before = instance_pids(status)
    acked_before = acked(proxies)
    views_before = envoy_views(status)
    assert mesh.proc is not None
    result.other_envoys = other_envoys()

    killed_at = time.monotonic()
    mesh.proc.kill()  # SIGKILL: `up` gets no chance to stop anything
    mesh.proc.wait(timeout=10)
    time.sleep(max(0.0, outage_s - (time.monotonic() - killed_at)))

    pids = [p for envoy, app, _ in pids_before.values() for p in (envoy, app) if proc_stat(p)]
    own_before, steal_before = own_cpu_seconds(), steal_seconds()
    converged: bool | None = None
    try:
        with cpu_use(pids) as use:
            t0 = time.monotonic()
            result.outage_s = t0 - killed_at
            converged = restart_and_converge(mesh, result, nodes, poll_s)
            elapsed = time.monotonic() - t0
            assert mesh.proc is not None
            result.up_cpu_s = total_cpu_seconds(mesh.proc.pid)
    except OSError:
        if converged is None:
            raise BenchError("a process of the mesh exited before the restart") from None
        result.notes = "a process of the mesh exited during the round: no CPU figures"
    else:
        own_s = own_cpu_seconds() - own_before
        result.busy_cores = load_cores(use.host_s, elapsed)
        result.other_cores = load_cores(use.other_s(result.up_cpu_s, own_s), elapsed)
        result.steal_cores = load_cores(steal_seconds() - steal_before, elapsed)
    if not converged:
        return result

    # (c) and (d), once `up` is running (its start, re-reading PATH included, is over).
    after = mesh.status.get()
    after_proxies = api_proxies(mesh.api_port)
    if after is None or after_proxies is None:
        raise BenchError("the admin API stopped answering after the restart")
    mesh.remember_children(after)
    pids_after = instance_pids(after)
    result.restarted = sorted(
        name
        for name, before in pids_before.items()
        if pids_after.get(name) != before or before[2] != "running"
    )
    result.config_changes = differences(acked_before, acked(after_proxies), "ACKed version")
    views_after = envoy_views(after)
    for name, view in views_before.items():
        result.config_changes += differences(
            view["versions"], views_after[name]["versions"], f"{name} config dump version"
        )
        result.config_changes += differences(
            view["changes"], views_after[name]["changes"], f"{name} Envoy counter"
        )
    log = mesh.log.read_text(errors="replace")
    result.applied = APPLIED.findall(log)
    result.took_over = len(TOOK_OVER.findall(log))
    if RESUMED not in log:
        result.error = "the new `up` did not log that it resumed the revision"
    elif result.restarted or result.config_changes or result.applied:
        result.error = "instances restarted or config changed (see the checks)"
    result.ok = not result.error
    return result


def stop_mesh(mesh: Mesh, result: SizeResult) -> None:
    """``gossamer down``, then wait for ``up`` to exit and check that nothing is left."""
    with contextlib.suppress(BenchError):
        status = mesh.status.get()
        if status is not None:
            mesh.remember_children(status)
    try:
        down = subprocess.run(
            [gossamer_cli(), "down", "--state-dir", str(mesh.state_dir)],
            capture_output=True,
            text=True,
            timeout=DOWN_TIMEOUT_S,
            check=False,
            cwd=mesh.workdir,
        )
        result.down = f"exit {down.returncode}: {(down.stdout + down.stderr).strip()}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        result.down = f"failed: {exc}"
    if mesh.proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            mesh.proc.wait(timeout=DOWN_TIMEOUT_S)
    # Mesh.stop: SIGTERM to an `up` that still runs; leftovers reported, then killed by pid.
    _took, result.leftover_processes = mesh.stop()


def measure(
    sidecars: int, rounds: int, first_port: int, outage_s: float, poll_s: float
) -> SizeResult:
    result = SizeResult(sidecars)
    mesh = Mesh(sidecars, first_port, text=mesh_yaml(sidecars), prefix=WORKDIR_PREFIX.rstrip("-"))
    started = time.monotonic()
    try:
        mesh.start()
        wait_settled(mesh)
        result.startup_s = time.monotonic() - started
        print(f"  up with {sidecars} sidecars in {result.startup_s:.1f}s", flush=True)
        budget_end = time.monotonic() + ROUNDS_BUDGET_S
        for index in range(1, rounds + 1):
            if time.monotonic() > budget_end:
                result.notes.append(
                    f"stopped after {index - 1} rounds: {ROUNDS_BUDGET_S:.0f}s budget per size"
                )
                break
            r = run_round(mesh, index, outage_s, poll_s)
            result.rounds.append(r)
            print(
                f"  round {index}: outage {r.outage_s:.2f}s; restart -> API {r.api_s:.2f}s, "
                f"all SYNCED {r.synced_s:.2f}s (last ACK {r.last_ack_s:.2f}s), running "
                f"{r.running_s:.2f}s; took over {r.took_over}, restarted "
                f"{len(r.restarted)}, config changes {len(r.config_changes)}, applied "
                f"{len(r.applied)}; busy {r.busy_cores:.2f} cores (other "
                f"{r.other_cores:.2f})" + (f"; FAILED: {r.error}" if r.error else ""),
                flush=True,
            )
            if math.isnan(r.synced_s) or math.isnan(r.running_s):
                break  # the mesh is stuck; later rounds would only wait too
    except BenchError as exc:
        result.failed = str(exc)
        print(f"  FAILED: {exc}", flush=True)
    finally:
        stop_mesh(mesh, result)
        print(f"  gossamer down: {result.down}", flush=True)
        if result.leftover_processes:
            result.notes.append("processes were left after `gossamer down` (killed by pid)")
            print(f"  LEFTOVER processes: {result.leftover_processes}", flush=True)
        if result.failed or result.leftover_processes or not all(r.ok for r in result.rounds):
            print(f"  kept {mesh.workdir} for inspection", flush=True)
        else:
            mesh.remove()
    return result


# --- report ------------------------------------------------------------------------------


def _s(stats: dict[str, Any], key: str) -> str:
    value = stats.get(key)
    return "-" if value is None else f"{value:.2f}"


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# Control-plane restart: `gossamer up` killed and started again",
        "",
        "Generated by `python -m bench.restart`; do not edit by hand.",
        "",
        f"- Date (UTC): {m['date_utc']}; commit {m['git_commit']}; {data['duration_s']} s",
        f"- Machine: nproc {m['nproc']}, {m['cpu_model']}, Linux {m['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}, "
        f"at end {', '.join(f'{x:.2f}' for x in m['loadavg_at_end'])}; Envoys of other "
        f"processes at start {m['other_envoys_at_start']}, at end {m['other_envoys_at_end']}",
        f"- Envoy {m.get('envoy_version', '?')}; Python {m['python']}",
        "- Mesh: one `server` workload (a Python HTTP server) plus N-1 idle clients "
        "(`sleep`), one sidecar each; every sidecar reconnects with an xDS retry backoff of "
        "0.25 s to 2 s.",
        f"- Each of up to {data['rounds']} rounds per size: wait until the mesh is settled "
        "and `processes.json` records every instance; `kill -9` the `up` process; wait "
        f"{data['outage_s']:.1f} s; start `up` again with the same arguments and state "
        f"directory; poll `GET /api/v1/proxies` every {data['poll_ms']:.0f} ms (every "
        f"{REFUSED_POLL_S * 1000:.0f} ms while it refuses connections).",
        "- Times are from the restart (the new `up` spawned). **API**: first answer. **all "
        "SYNCED**: the poll that saw every proxy with every xDS type SYNCED or NOT_SENT. "
        "**last ACK**: the control plane's latest `acked_at` then. **running**: `up` "
        "logged that it runs (start over, files under PATH re-read).",
        "- Checks per round: **instances taken over**: as the new `up` logged them; "
        "**restarted**: instances whose Envoy or app pid changed "
        "(`/api/v1/status`); **config changes**: ACKed versions per proxy and type, each "
        "sidecar's config dump `version_info` (clusters, listeners, each route config) and "
        "Envoy's change counters (`cluster_added/modified/removed`, "
        "`listener_added/modified/removed`, RDS `config_reload`, `membership_change`) that "
        "moved; **applied**: `applied revision` lines in the new `up`'s log. These three "
        "should be 0.",
        "- **new `up` CPU**: what the new `up` spent from its start to convergence. "
        "**busy**: cores the whole machine kept busy from the restart to convergence; "
        "**other**: the same less the new `up`, the mesh's Envoys and apps and the "
        "benchmark itself (load from other sessions on this shared machine). **other "
        "sessions' Envoys**: Envoy processes of no mesh of this benchmark, at the kills. "
        "**steal**: cores the hypervisor gave to other guests meanwhile (`steal` in "
        "/proc/stat). The load average also counts tasks waiting on I/O.",
        "",
        "## Times from the restart (s)",
        "",
        "| sidecars | rounds ok | outage | API p50 | p90 | max | all SYNCED p50 | p90 | max "
        "| last ACK p50 | max | API -> all SYNCED p50 | running p50 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    checks = [
        "",
        "## Checks and load",
        "",
        "| sidecars | instances taken over | restarted | config changes | applied "
        "| new `up` CPU p50 (s) | busy cores p50 | other p50 / max | steal p50 / max "
        "| other sessions' Envoys | processes left after `down` |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in data["sizes"]:
        if not s["per_round"]:
            lines.append(
                f"| {s['sidecars']} | 0 | {(s['failed'] or 'no rounds')[:200]} |||||||||||"
            )
            continue
        a, b, c = s["api_s"], s["synced_s"], s["last_ack_s"]
        lines.append(
            f"| {s['sidecars']} | {s['rounds_ok']}/{s['rounds']} | {_s(s['outage_s'], 'p50')} "
            f"| {_s(a, 'p50')} | {_s(a, 'p90')} | {_s(a, 'max')} | {_s(b, 'p50')} "
            f"| {_s(b, 'p90')} | {_s(b, 'max')} | {_s(c, 'p50')} | {_s(c, 'max')} "
            f"| {_s(s['api_to_synced_s'], 'p50')} | {_s(s['running_s'], 'p50')} |"
        )
        took = sorted({r["took_over"] for r in s["per_round"]})
        envoys = s["other_envoys"]
        checks.append(
            f"| {s['sidecars']} | {', '.join(map(str, took))} of {s['sidecars']} "
            f"| {len(s['instances_restarted'])} | {s['config_changes']} | {s['applied_lines']} "
            f"| {_s(s['up_cpu_s'], 'p50')} | {_s(s['busy_cores'], 'p50')} "
            f"| {_s(s['other_cores'], 'p50')} / {_s(s['other_cores'], 'max')} "
            f"| {_s(s['steal_cores'], 'p50')} / {_s(s['steal_cores'], 'max')} "
            f"| {'-'.join(str(n) for n in sorted({min(envoys), max(envoys)}))} "
            f"| {len(s['leftover_processes'])} |"
        )
    lines += checks
    lines += ["", "## Notes", ""]
    for s in data["sizes"]:
        prefix = f"- {s['sidecars']} sidecars: "
        lines.append(
            f"{prefix}`up` first ready in {s['startup_s']} s; `gossamer down`: {s['down']}"
        )
        for r in s["per_round"]:
            if r["notes"]:
                lines.append(f"{prefix}round {r['index']}: {r['notes']}")
            if not r["ok"]:
                lines.append(f"{prefix}round {r['index']} failed: {r['error']}")
                lines += [f"{prefix}  {c}" for c in r["config_changes"][:10]]
                lines += [f"{prefix}  applied: {a}" for a in r["applied"][:5]]
                if r["restarted"]:
                    lines.append(f"{prefix}  restarted: {', '.join(r['restarted'])}")
        if s["failed"]:
            lines.append(f"{prefix}failed: {s['failed'][:500]}")
        if s["leftover_processes"]:
            lines.append(f"{prefix}leftover processes: {s['leftover_processes']}")
        lines += [prefix + n for n in s["notes"]]
    lines.append("")
    return "\n".join(lines)


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.restart", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(SIZES),
        help="sidecar counts, comma-separated (default 10,50)",
    )
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds per size ({ROUNDS})")
    ap.add_argument(
        "--outage-s",
        type=float,
        default=OUTAGE_S,
        help=f"seconds from the kill to the restart ({OUTAGE_S:g})",
    )
    ap.add_argument(
        "--poll-ms",
        type=float,
        default=POLL_S * 1000,
        help=f"proxy status polling interval ({POLL_S * 1000:.0f})",
    )
    ap.add_argument(
        "--first-port", type=int, default=30000, help="first port for sidecars and apps"
    )
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    args = ap.parse_args(list(argv))
    if not all(2 <= n <= 200 for n in args.sizes) or not 1 <= args.rounds <= 50:
        ap.error("sizes must be within 2..200 and rounds within 1..50")
    if not 0 <= args.outage_s <= 10 or not 5 <= args.poll_ms <= 1000:
        ap.error("--outage-s must be within 0..10 and --poll-ms within 5..1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    exit_on_signals()
    raise_nofile_limit()
    started = time.monotonic()
    machine = machine_at_start(str(ENVOY))
    machine["other_envoys_at_start"] = other_envoys()
    for key in ("wrk_version", "nginx_version"):
        machine.pop(key, None)  # not used here
    sizes: list[SizeResult] = []
    for i, n in enumerate(args.sizes):
        if time.monotonic() - started > TOTAL_BUDGET_S:
            skipped = SizeResult(n, failed=f"skipped: total budget {TOTAL_BUDGET_S:.0f}s spent")
            sizes.append(skipped)
            print(f"{n} sidecars: {skipped.failed}", flush=True)
            continue
        print(f"{n} sidecars:", flush=True)
        # A fresh port range per size: the previous mesh's ports may still be in TIME_WAIT.
        sizes.append(
            measure(n, args.rounds, args.first_port + 1000 * i, args.outage_s, args.poll_ms / 1000)
        )
    machine["other_envoys_at_end"] = other_envoys()
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine,
        "rounds": args.rounds,
        "outage_s": args.outage_s,
        "poll_ms": args.poll_ms,
        "duration_s": round(time.monotonic() - started, 1),
        "sizes": [no_nan(s.summary()) for s in sizes],
    }
    text = markdown(data)
    if not args.no_write:
        json_path, md_path = write_results(NAME, data, text)
        print(
            f"wrote {json_path.relative_to(REPO_DIR)} and {md_path.relative_to(REPO_DIR)}",
            flush=True,
        )
    print(text)
    ok = all(
        s.rounds and all(r.ok for r in s.rounds) and not s.failed and not s.leftover_processes
        for s in sizes
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
