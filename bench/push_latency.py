"""Push latency: a config file edit until every proxy has ACKed the new config.

For meshes of 1, 10 and 50 sidecars (one ``server`` workload plus N-1 idle clients),
``gossamer up`` runs the mesh; each round rewrites the request timeout of the one
HTTPRoute and polls the admin API (``GET /api/v1/status``, every 10 ms) until the revision
went up and every proxy reports ``synced``. Two figures per round, both from the control
plane's own wall-clock stamps, so the polling interval does not add to them:

- edit -> all ACKed: the latest ``acked_at`` of a new version, over every proxy and xDS
  type that changed, minus the time the benchmark wrote the file. Includes the file
  watch (mtime poll every 50 ms, then 100 ms of quiet; ``gossamer.sources.watch``),
  loading, validation and translation.
- apply -> all ACKed: the same latest ACK minus the revision's ``applied_at``, which the
  control plane stamps after every new snapshot is in the cache and before any is sent.

``python -m bench.push_latency`` (``--help`` for the knobs); about 25 seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    REPO_DIR,
    BenchError,
    api_status,
    free_port,
    log_tail,
    machine_info,
    note_pids,
    pids_running,
    proc_cmdline,
    raise_nofile_limit,
    write_results,
)

NAME = "push_latency"
SIZES = (1, 10, 50)
ROUNDS = 10
FIRST_TIMEOUT_S = 5
"""The route's request timeout in the initial config; round k writes FIRST_TIMEOUT_S + k."""
POLL_INTERVAL_S = 0.010
IDLE_STATUS_CALLS = 20
"""Status calls timed on the settled mesh before the rounds, to compare with those during."""
STARTUP_TIMEOUT_S = 60.0
ROUND_TIMEOUT_S = 15.0
ROUNDS_BUDGET_S = 25.0
"""Time allowed for the edit rounds of one mesh size."""
TOTAL_BUDGET_S = 140.0
"""Sizes that would start after this much time are skipped (and reported as such)."""
STOP_TIMEOUT_S = 30.0
PAUSE_S = (0.1, 0.3)
"""A random pause before each edit, so edits do not keep one phase of the watch's poll."""
WATCH_NOTE = (
    "file watch (gossamer.sources.watch): mtime/size poll every 50 ms, then the change must "
    "stay quiet for a 100 ms debounce before it is applied"
)
ENVOY = Path(sys.executable).parent / "envoy"
READY_MARK = "running; watching"


# --- the mesh files ----------------------------------------------------------------------

_SERVER = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: server}
spec:
  ports: [{port: 80, protocol: http}]
  command: [sh, -c, 'exec python3 -m http.server --bind 127.0.0.1 $PORT']
"""

_CLIENT = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: client-{index}}}
spec:
  command: [sleep, "100000"]
"""

_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: server}}
spec:
  parentRefs: [{{kind: Service, name: server, port: 80}}]
  rules:
  - backendRefs: [{{name: server, port: 80}}]
    timeouts: {{request: {timeout_s}s}}
"""


def mesh_yaml(sidecars: int, timeout_s: int) -> str:
    """One ``server`` workload, ``sidecars - 1`` clients and the route, as one YAML stream."""
    docs = [_SERVER]
    docs += [_CLIENT.format(index=i) for i in range(1, sidecars)]
    docs.append(_ROUTE.format(timeout_s=timeout_s))
    return "---\n".join(docs)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step; the temporary name is hidden from the watcher."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --- results -----------------------------------------------------------------------------


@dataclass
class Round:
    index: int
    timeout_written_s: int
    ok: bool
    error: str = ""
    revision: int = 0
    edit_to_acked_ms: float = math.nan
    apply_to_acked_ms: float = math.nan
    edit_to_apply_ms: float = math.nan
    seen_synced_ms: float = math.nan
    """When the polling loop saw every proxy synced, after the write (includes polling)."""
    proxies_updated: int = 0
    types_updated: list[str] = field(default_factory=list)
    polls: int = 0


@dataclass
class SizeResult:
    sidecars: int
    rounds: list[Round] = field(default_factory=list)
    skipped: str = ""
    startup_s: float = math.nan
    stop_s: float = math.nan
    status_call_ms: dict[str, float] = field(default_factory=dict)
    """Status calls during the rounds (the polling loop)."""
    status_idle_ms: dict[str, float] = field(default_factory=dict)
    """Status calls on the settled mesh, before the rounds."""
    status_bytes: int = 0
    leftover_processes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        good = [r for r in self.rounds if r.ok]

        def stats(values: list[float]) -> dict[str, float]:
            return {
                "p50": round(nearest_rank(values, 50), 2),
                "p90": round(nearest_rank(values, 90), 2),
                "max": round(max(values), 2) if values else math.nan,
            }

        return {
            "sidecars": self.sidecars,
            "rounds": len(self.rounds),
            "rounds_ok": len(good),
            "edit_to_acked_ms": stats([r.edit_to_acked_ms for r in good]),
            "apply_to_acked_ms": stats([r.apply_to_acked_ms for r in good]),
            "edit_to_apply_ms": stats([r.edit_to_apply_ms for r in good]),
            "startup_s": round(self.startup_s, 2),
            "stop_s": round(self.stop_s, 2),
            "status_call_ms": self.status_call_ms,
            "status_idle_ms": self.status_idle_ms,
            "status_bytes": self.status_bytes,
            "leftover_processes": self.leftover_processes,
            "skipped": self.skipped,
            "notes": self.notes,
            "per_round": [asdict(r) for r in self.rounds],
        }


def nearest_rank(values: Sequence[float], p: float) -> float:
    """The smallest value with at least p% of the values at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


# --- talking to `gossamer up` ------------------------------------------------------------


class StatusClient:
    """The admin API's status, with the time each call took."""

    def __init__(self, api_port: int) -> None:
        self.api_port = api_port
        self.durations_ms: list[float] = []
        self.last_bytes = 0

    def get(self) -> dict[str, Any] | None:
        started = time.perf_counter()
        data, size = api_status(self.api_port)
        self.durations_ms.append((time.perf_counter() - started) * 1000)
        if size is not None:
            self.last_bytes = size
        return data

    def timing(self) -> dict[str, float]:
        d = self.durations_ms
        if not d:
            return {}
        return {
            "calls": len(d),
            "p50": round(statistics.median(d), 2),
            "p90": round(nearest_rank(d, 90), 2),
            "max": round(max(d), 2),
        }


def acked_versions(status: dict[str, Any]) -> dict[tuple[str, str], tuple[str, float]]:
    """(instance, xDS type) -> (acked version, acked_at)."""
    out: dict[tuple[str, str], tuple[str, float]] = {}
    for inst in status.get("instances", []):
        for type_name, t in inst["proxy"]["types"].items():
            out[(inst["name"], type_name)] = (str(t["acked_version"]), float(t["acked_at"]))
    return out


def all_synced(status: dict[str, Any], sidecars: int) -> bool:
    instances = status.get("instances", [])
    return len(instances) == sidecars and all(i["proxy"]["synced"] for i in instances)


class Mesh:
    """One ``gossamer up`` in a temporary directory; ``stop()`` stops it and checks.

    ``text``: the mesh's YAML (default: this benchmark's, see :func:`mesh_yaml`).
    ``spawn()`` may start ``up`` again, with the same arguments and state directory (as
    bench.restart does after killing it).
    """

    def __init__(
        self,
        sidecars: int,
        first_port: int,
        *,
        text: str | None = None,
        prefix: str = "gossamer-push",
    ) -> None:
        self.sidecars = sidecars
        self.text = mesh_yaml(sidecars, FIRST_TIMEOUT_S) if text is None else text
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-{sidecars}-"))
        self.mesh_dir = self.workdir / "mesh"
        self.mesh_dir.mkdir()
        self.mesh_file = self.mesh_dir / "mesh.yaml"
        self.state_dir = self.workdir / "state"
        self.log = self.workdir / "up.log"
        self.api_port = free_port()
        self.xds_port = free_port()
        while self.xds_port == self.api_port:
            self.xds_port = free_port()
        self.first_port = first_port
        self.status = StatusClient(self.api_port)
        self.proc: subprocess.Popen[bytes] | None = None
        self.launches = 0
        self.children: dict[int, str] = {}
        """Envoy and app pids seen in the status, with their command lines."""

    def args(self) -> list[str]:
        """The ``gossamer up`` command line, the same for every start."""
        return [
            sys.executable,
            "-m",
            "gossamer",
            "up",
            str(self.mesh_dir),
            "--state-dir",
            str(self.state_dir),
            "--api-port",
            str(self.api_port),
            "--xds-port",
            str(self.xds_port),
            "--first-port",
            str(self.first_port),
        ]

    def spawn(self) -> None:
        """Start ``gossamer up`` without waiting; each start logs to a file of its own
        (``up.log``, then ``up-2.log``...)."""
        self.launches += 1
        if self.launches > 1:
            self.log = self.workdir / f"up-{self.launches}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.args(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )

    def ready(self) -> bool:
        """Whether the running ``up`` has logged that it runs; BenchError if it exited."""
        if self.proc is None:
            raise BenchError("`gossamer up` was not started")
        if READY_MARK in self.log.read_text(errors="replace"):
            return True
        if self.proc.poll() is not None:
            raise BenchError(f"`gossamer up` exited {self.proc.returncode}:\n{self.tail()}")
        return False

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() > deadline:
                raise BenchError(
                    f"no {READY_MARK!r} from `gossamer up` within {timeout_s:.0f}s:\n{self.tail()}"
                )
            time.sleep(0.05)

    def start(self) -> None:
        write_atomically(self.mesh_file, self.text)
        self.spawn()
        self.wait_ready()
        status = self.status.get()
        if status is None:
            raise BenchError("the admin API did not answer after startup")
        self.remember_children(status)

    def remember_children(self, status: dict[str, Any]) -> None:
        note_pids(status, self.children)

    def tail(self, lines: int = 20) -> str:
        return log_tail(self.log, lines)

    def leftovers(self) -> list[tuple[int, str]]:
        """Processes still running that this mesh started: by state dir, and by pid."""
        found: dict[int, str] = {}
        proc = subprocess.run(
            ["pgrep", "-f", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        for line in proc.stdout.split():
            pid = int(line)
            if pid != os.getpid():
                found[pid] = proc_cmdline(pid)
        for pid, cmdline in self.children.items():
            if cmdline and proc_cmdline(pid) == cmdline:
                found[pid] = cmdline
        return sorted((p, c) for p, c in found.items() if c)

    def stop(self) -> tuple[float, list[str]]:
        """SIGTERM ``up`` and wait; (seconds it took, descriptions of leftover processes).

        Leftovers are reported, then killed by pid (their command line is checked first).
        """
        started = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        took = time.monotonic() - started
        leftovers = self.leftovers()
        for pid, cmdline in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if proc_cmdline(pid) == cmdline:
                    os.kill(pid, signal.SIGKILL)
        return took, [f"{pid} {cmdline}" for pid, cmdline in leftovers]

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- the measurement ---------------------------------------------------------------------


def run_round(mesh: Mesh, index: int, rng: random.Random, poll_s: float) -> Round:
    time.sleep(rng.uniform(*PAUSE_S))
    timeout_s = FIRST_TIMEOUT_S + index
    result = Round(index=index, timeout_written_s=timeout_s, ok=False)
    before = mesh.status.get()
    if before is None or not all_synced(before, mesh.sidecars):
        result.error = "mesh not synced before the edit"
        return result
    revision_before = int(before["revision"])
    acked_before = acked_versions(before)

    write_atomically(mesh.mesh_file, mesh_yaml(mesh.sidecars, timeout_s))
    t0 = time.time()

    deadline = time.monotonic() + ROUND_TIMEOUT_S
    status: dict[str, Any] | None = None
    while True:
        time.sleep(poll_s)
        status = mesh.status.get()
        result.polls += 1
        if (
            status is not None
            and int(status["revision"]) > revision_before
            and all_synced(status, mesh.sidecars)
        ):
            break
        if time.monotonic() > deadline:
            revision = status["revision"] if status else "?"
            result.error = (
                f"timed out after {ROUND_TIMEOUT_S:.0f}s (revision {revision}, "
                f"was {revision_before})"
            )
            return result
    seen = time.time()
    if status.get("rejected"):
        result.error = f"the edit was rejected: {status['rejected']}"
        return result

    acks = [
        (key, at)
        for key, (version, at) in acked_versions(status).items()
        if acked_before.get(key, ("", 0.0))[0] != version
    ]
    result.revision = int(status["revision"])
    result.proxies_updated = len({name for (name, _), _ in acks})
    result.types_updated = sorted({t for (_, t), _ in acks})
    if not acks:
        result.error = "no proxy ACKed a new version"
        return result
    last_ack = max(at for _, at in acks)
    applied_at = float(status["applied_at"])
    result.edit_to_acked_ms = (last_ack - t0) * 1000
    result.apply_to_acked_ms = (last_ack - applied_at) * 1000
    result.edit_to_apply_ms = (applied_at - t0) * 1000
    result.seen_synced_ms = (seen - t0) * 1000
    result.ok = True
    return result


def measure(sidecars: int, rounds: int, first_port: int, poll_s: float) -> SizeResult:
    result = SizeResult(sidecars)
    mesh = Mesh(sidecars, first_port)
    rng = random.Random(sidecars)
    failed = True
    try:
        started = time.monotonic()
        mesh.start()
        result.startup_s = time.monotonic() - started
        print(f"  up with {sidecars} sidecars in {result.startup_s:.1f}s", flush=True)
        idle = StatusClient(mesh.api_port)
        for _ in range(IDLE_STATUS_CALLS):
            idle.get()
            time.sleep(poll_s)
        result.status_idle_ms = idle.timing()
        mesh.status.durations_ms.clear()
        budget_end = time.monotonic() + ROUNDS_BUDGET_S
        for index in range(1, rounds + 1):
            if time.monotonic() > budget_end:
                result.notes.append(
                    f"stopped after {len(result.rounds)} rounds: {ROUNDS_BUDGET_S:.0f}s budget"
                )
                break
            r = run_round(mesh, index, rng, poll_s)
            result.rounds.append(r)
            if r.ok:
                print(
                    f"  round {index}: edit->acked {r.edit_to_acked_ms:.1f} ms, "
                    f"apply->acked {r.apply_to_acked_ms:.1f} ms "
                    f"({r.proxies_updated} proxies, {'+'.join(r.types_updated)}, "
                    f"{r.polls} polls)",
                    flush=True,
                )
            else:
                print(f"  round {index}: FAILED: {r.error}", flush=True)
                if "timed out" in r.error:
                    break  # the mesh is stuck; later rounds would only wait too
        status = mesh.status.get()
        if status is not None:
            mesh.remember_children(status)
        failed = not any(r.ok for r in result.rounds)
    except BenchError as exc:
        result.skipped = f"failed: {exc}"
        print(f"  FAILED: {exc}", flush=True)
    finally:
        result.status_call_ms = mesh.status.timing()
        result.status_bytes = mesh.status.last_bytes
        result.stop_s, result.leftover_processes = mesh.stop()
        if result.leftover_processes:
            failed = True
            result.notes.append("processes were left after `up` stopped (killed by pid)")
            print(f"  LEFTOVER processes: {result.leftover_processes}", flush=True)
        if failed:
            print(f"  kept {mesh.workdir} for inspection", flush=True)
        else:
            mesh.remove()
    return result


# --- report ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def no_nan(value: Any) -> Any:
    """``value`` with every NaN replaced by None, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# Push latency",
        "",
        "Generated by `python -m bench.push_latency`; do not edit by hand.",
        "",
        f"- Date (UTC): {m['date_utc']}; commit {m['git_commit']}",
        f"- Machine: nproc {m['nproc']}, {m['cpu_model']}, Linux {m['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}, "
        f"at end {', '.join(f'{x:.2f}' for x in m['loadavg_at_end'])}",
        "- Other processes running at start: "
        + ", ".join(f"{k} {v}" for k, v in m["other_processes_at_start"].items()),
        f"- Envoy {m.get('envoy_version', '?')}; Python {m['python']}",
        f"- Mesh: one `server` workload (http.server) plus N-1 idle clients, one sidecar "
        f"each, one HTTPRoute on `server`. Each round rewrites the route's request timeout "
        f"and polls `GET /api/v1/status` every {data['poll_interval_ms']:.0f} ms until the "
        f"revision went up and every proxy is synced. Up to {data['rounds_per_size']} rounds "
        f"per size.",
        f"- **edit -> ACKed**: last ACK of a new version (the control plane's `acked_at`, "
        f"over every proxy and xDS type that changed) minus the time of the file write. "
        f"Includes the {data['watch']}.",
        "- **apply -> ACKed**: the same last ACK minus the revision's `applied_at` (stamped "
        "once the new snapshots are in the cache, before anything is sent): the xDS push "
        "alone.",
        "",
        "## Results (ms)",
        "",
        "| sidecars | rounds ok | edit->ACKed p50 | p90 | max | apply->ACKed p50 | p90 | max "
        "| edit->apply p50 | proxies updated | status call idle p50 | polling p50 / max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in data["sizes"]:
        if s["skipped"] and not s["rounds"]:
            lines.append(f"| {s['sidecars']} | 0 | {s['skipped']} |||||||||")
            continue
        a, b = s["edit_to_acked_ms"], s["apply_to_acked_ms"]
        updated = sorted({r["proxies_updated"] for r in s["per_round"] if r["ok"]})
        call, idle = s["status_call_ms"], s["status_idle_ms"]
        lines.append(
            f"| {s['sidecars']} | {s['rounds_ok']}/{s['rounds']} | {_ms(a['p50'])} | "
            f"{_ms(a['p90'])} | {_ms(a['max'])} | {_ms(b['p50'])} | {_ms(b['p90'])} | "
            f"{_ms(b['max'])} | {_ms(s['edit_to_apply_ms']['p50'])} | "
            f"{', '.join(map(str, updated)) or '-'} | "
            f"{idle.get('p50', '-')} | {call.get('p50', '-')} / {call.get('max', '-')} |"
        )
    lines += ["", "## Notes", ""]
    notes = []
    for s in data["sizes"]:
        prefix = f"- {s['sidecars']} sidecars: "
        notes.append(
            f"{prefix}`up` ready in {_ms(s['startup_s'])} s, stopped in {_ms(s['stop_s'])} s; "
            f"status response {s['status_bytes'] / 1024:.0f} KiB"
        )
        for r in s["per_round"]:
            if not r["ok"]:
                notes.append(f"{prefix}round {r['index']} failed: {r['error']}")
        notes += [prefix + n for n in s["notes"]]
        if s["skipped"]:
            notes.append(prefix + s["skipped"])
        if s["leftover_processes"]:
            notes.append(f"{prefix}leftover processes: {s['leftover_processes']}")
    lines += notes
    lines.append("")
    return "\n".join(lines)


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.push_latency", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(SIZES),
        help="sidecar counts, comma-separated (default 1,10,50)",
    )
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="edit rounds per size (10)")
    ap.add_argument(
        "--first-port", type=int, default=26000, help="first port for sidecars and apps"
    )
    ap.add_argument(
        "--poll-ms",
        type=float,
        default=POLL_INTERVAL_S * 1000,
        help="status polling interval during a round (10)",
    )
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    return ap.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if any(n < 1 for n in args.sizes) or args.rounds < 1:
        print("sizes and rounds must be at least 1", file=sys.stderr)
        return 2
    raise_nofile_limit()
    started = time.monotonic()
    machine = machine_info(str(ENVOY))
    for key in ("wrk_version", "nginx_version"):
        machine.pop(key, None)  # not used here
    # This box may be shared: note any other load that could skew the figures.
    machine["other_processes_at_start"] = {
        name: len(pids_running(name)) for name in ("envoy", "wrk", "nginx")
    }
    sizes: list[SizeResult] = []
    for i, n in enumerate(args.sizes):
        if time.monotonic() - started > TOTAL_BUDGET_S:
            skipped = SizeResult(n, skipped=f"skipped: total budget {TOTAL_BUDGET_S:.0f}s spent")
            sizes.append(skipped)
            print(f"{n} sidecars: {skipped.skipped}", flush=True)
            continue
        print(f"{n} sidecars:", flush=True)
        # A fresh port range per size: the previous mesh's ports may still be in TIME_WAIT.
        sizes.append(measure(n, args.rounds, args.first_port + 1000 * i, args.poll_ms / 1000))
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine,
        "rounds_per_size": args.rounds,
        "poll_interval_ms": args.poll_ms,
        "watch": WATCH_NOTE,
        "duration_s": round(time.monotonic() - started, 1),
        "sizes": [no_nan(s.summary()) for s in sizes],
    }
    machine["loadavg_at_end"] = list(os.getloadavg())
    text = markdown(data)
    if not args.no_write:
        json_path, md_path = write_results(NAME, data, text)
        print(
            f"wrote {json_path.relative_to(REPO_DIR)} and {md_path.relative_to(REPO_DIR)}",
            flush=True,
        )
    print(text)
    ok = all(s.rounds and all(r.ok for r in s.rounds) and not s.leftover_processes for s in sizes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
