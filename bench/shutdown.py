"""Shutdown: from the start of an instance's stop until its endpoint is gone from every
caller (every caller's sidecar has ACKed the config without it).

For meshes of 10 and 50 caller sidecars (workloads running ``sleep``) and one ``server``
workload with 2 replicas (``python3 -m http.server``), ``gossamer up`` runs the mesh and
each round does two things:

- **roll**: a new ``env`` value for ``server``, so both its instances are replaced one at
  a time. Each stop takes the instance out of the endpoints itself (re-translating every
  proxy's config), then waits for the ACKs: two samples per round.
- **remove**: ``replicas: 1``, so ``server-1`` is removed; the revision that removes it
  already leaves its endpoint out, and its stop waits for the ACKs. Then ``replicas: 2``
  again, for the next round.

Each sample is the stop's own figure from the ``up`` log (``<instance>: out of every
caller's endpoints after X ms (N applied it)``): from the start of the stop to the last
ACK of a caller whose config changed, as the control plane saw it. For removals it is
checked against the control plane's stamps in ``/api/v1/status`` (the last ``acked_at``
of a changed xDS type, minus the revision's ``applied_at``), and every remaining sidecar's
``/clusters`` is read to check that the endpoint really is gone from it.

``python -m bench.shutdown`` (``--help`` for the knobs); about 45 seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    LOOPBACK,
    BenchError,
    GossamerUp,
    http_get,
    machine_at_start,
    other_envoys,
    raise_nofile_limit,
    write_results,
)
from bench.push_latency import acked_versions, nearest_rank, no_nan, write_atomically

NAME = "shutdown"
SIZES = (10, 50)
ROUNDS = 8
STARTUP_TIMEOUT_S = 90.0
STEP_TIMEOUT_S = 30.0
SIZE_BUDGET_S = 70.0
"""Rounds of one mesh size that would start after this much time are skipped."""
POLL_S = 0.05
ENVOY = Path(sys.executable).parent / "envoy"
LEFT = re.compile(
    r"(?P<instance>server-\d+): out of every caller's endpoints after (?P<ms>[\d.]+) ms "
    r"\((?P<applied>\d+) applied it\), then (?P<drain>[\d.]+) ms"
)


# --- the mesh ----------------------------------------------------------------------------

_SERVER = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: server}}
spec:
  replicas: {replicas}
  ports: [{{port: 80, protocol: http}}]
  command: [sh, -c, 'exec python3 -m http.server --bind 127.0.0.1 $PORT']
  env: {{RELEASE: "{release}"}}
"""

_CALLER = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: caller-{index}}}
spec:
  command: [sleep, "100000"]
"""


def mesh_yaml(callers: int, replicas: int, release: int) -> str:
    docs = [_SERVER.format(replicas=replicas, release=release)]
    docs += [_CALLER.format(index=i) for i in range(callers)]
    return "---\n".join(docs)


# --- results -----------------------------------------------------------------------------


@dataclass
class Sample:
    round: int
    kind: str
    """``roll`` or ``remove``."""
    instance: str
    leave_ms: float
    """The stop's own figure: start of the stop -> every changed caller ACKed."""
    applied: int
    """How many sidecars' config changed and ACKed it."""
    drain_ms: float
    """Then: until no inbound request was in flight (two looks 50 ms apart)."""
    apply_to_acked_ms: float = math.nan
    """Removals: the revision's ``applied_at`` -> the last ACK of a changed type."""
    gone_from: int = 0
    """Removals: sidecars whose ``/clusters`` no longer lists the endpoint."""
    still_in: list[str] = field(default_factory=list)
    """Removals: sidecars whose ``/clusters`` still listed it (should be none)."""


@dataclass
class SizeResult:
    callers: int
    samples: list[Sample] = field(default_factory=list)
    startup_s: float = math.nan
    failed: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float]:
            values = [v for v in values if not math.isnan(v)]
            if not values:
                return {"n": 0}
            return {
                "n": len(values),
                "p50": round(statistics.median(values), 1),
                "p90": round(nearest_rank(values, 90), 1),
                "max": round(max(values), 1),
            }

        leave = [s.leave_ms for s in self.samples]
        return {
            "callers": self.callers,
            "sidecars": self.callers + 2,
            "startup_s": round(self.startup_s, 2),
            "leave_ms": stats(leave),
            "leave_ms_roll": stats([s.leave_ms for s in self.samples if s.kind == "roll"]),
            "leave_ms_remove": stats([s.leave_ms for s in self.samples if s.kind == "remove"]),
            "apply_to_acked_ms_remove": stats(
                [s.apply_to_acked_ms for s in self.samples if s.kind == "remove"]
            ),
            "drain_ms": stats([s.drain_ms for s in self.samples]),
            "applied": sorted({s.applied for s in self.samples}),
            "still_in": sorted({n for s in self.samples for n in s.still_in}),
            "failed": self.failed,
            "notes": self.notes,
            "per_sample": [asdict(s) for s in self.samples],
        }


# --- one mesh size -----------------------------------------------------------------------


class Mesh:
    def __init__(self, callers: int, first_port: int) -> None:
        self.callers = callers
        self.release = 0
        self.up = GossamerUp(
            mesh_yaml(callers, 2, 0), watch=True, extra_args=["--first-port", str(first_port)]
        )
        self.file = self.up.workdir / "mesh" / "mesh.yaml"
        self.log = self.up.up.log

    def write(self, replicas: int) -> None:
        write_atomically(self.file, mesh_yaml(self.callers, replicas, self.release))

    def settled(self, replicas: int, revision: int) -> dict[str, Any]:
        """The status once the revision is past ``revision`` and every instance (callers
        plus ``replicas`` servers) runs with its proxy synced."""

        def ready(status: dict[str, Any]) -> bool:
            instances = status.get("instances", [])
            return (
                int(status.get("revision", 0)) > revision
                and len(instances) == self.callers + replicas
                and all(i["state"] == "running" and i["proxy"]["synced"] for i in instances)
            )

        return self.up.wait("the mesh to settle", ready, timeout_s=STEP_TIMEOUT_S)

    def left_lines(self) -> list[re.Match[str]]:
        text = self.log.read_text(errors="replace")
        return list(LEFT.finditer(text))

    def wait_left(self, seen: int, count: int) -> list[re.Match[str]]:
        """The ``count`` stop lines logged after the first ``seen``."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            lines = self.left_lines()
            if len(lines) >= seen + count:
                return lines[seen : seen + count]
            if not self.up.up.alive() or time.monotonic() > deadline:
                raise BenchError(
                    f"no stop line from `gossamer up` within {STEP_TIMEOUT_S:.0f}s:\n"
                    f"{self.up.log_tail()}"
                )
            time.sleep(POLL_S)


def _sample(match: re.Match[str], round_: int, kind: str) -> Sample:
    return Sample(
        round=round_,
        kind=kind,
        instance=match["instance"],
        leave_ms=float(match["ms"]),
        applied=int(match["applied"]),
        drain_ms=float(match["drain"]),
    )


def _clusters_list(admin_port: int, address: str) -> bool | None:
    """Whether a sidecar's ``/clusters`` lists ``address`` as a host (None: no answer)."""
    code, body = http_get(f"http://{LOOPBACK}:{admin_port}/clusters", timeout_s=5)
    if code != 200:
        return None
    return f"::{address}::" in body.decode(errors="replace")


def roll(mesh: Mesh, round_: int, status: dict[str, Any]) -> tuple[list[Sample], dict[str, Any]]:
    seen = len(mesh.left_lines())
    mesh.release = round_
    mesh.write(2)
    lines = mesh.wait_left(seen, 2)
    status = mesh.settled(2, int(status["revision"]))
    return [_sample(m, round_, "roll") for m in lines], status


def remove(mesh: Mesh, round_: int, status: dict[str, Any]) -> tuple[Sample, dict[str, Any]]:
    victim = next(i for i in status["instances"] if i["name"] == "server-1")
    address = f"{LOOPBACK}:{victim['inbound_ports']['80']}"
    before = acked_versions(status)
    seen = len(mesh.left_lines())
    mesh.write(1)
    (line,) = mesh.wait_left(seen, 1)
    after = mesh.settled(1, int(status["revision"]))
    sample = _sample(line, round_, "remove")
    acks = [
        at
        for key, (version, at) in acked_versions(after).items()
        if key[0] != "server-1" and before.get(key, ("", 0.0))[0] != version
    ]
    if acks:
        sample.apply_to_acked_ms = (max(acks) - float(after["applied_at"])) * 1000
    for inst in after["instances"]:
        listed = _clusters_list(inst["admin_port"], address)
        if listed is False:
            sample.gone_from += 1
        else:
            sample.still_in.append(inst["name"])
    mesh.write(2)
    return sample, mesh.settled(2, int(after["revision"]))


def measure(callers: int, rounds: int, first_port: int) -> SizeResult:
    result = SizeResult(callers)
    started = time.monotonic()
    mesh = Mesh(callers, first_port)
    try:
        status = mesh.up.wait(
            "the mesh to start",
            lambda s: (
                len(s.get("instances", [])) == callers + 2
                and all(i["state"] == "running" and i["proxy"]["synced"] for i in s["instances"])
            ),
            timeout_s=STARTUP_TIMEOUT_S,
        )
        result.startup_s = time.monotonic() - started
        print(f"  up with {callers} callers in {result.startup_s:.1f}s", flush=True)
        for k in range(1, rounds + 1):
            if time.monotonic() - started > SIZE_BUDGET_S:
                result.notes.append(
                    f"stopped after {k - 1} rounds: {SIZE_BUDGET_S:.0f}s budget per size"
                )
                break
            rolled, status = roll(mesh, k, status)
            removed, status = remove(mesh, k, status)
            result.samples += [*rolled, removed]
            print(
                f"  round {k}: roll "
                + ", ".join(f"{s.instance} {s.leave_ms:.1f} ms" for s in rolled)
                + f"; remove {removed.leave_ms:.1f} ms (apply->ACKed "
                f"{removed.apply_to_acked_ms:.1f} ms, {removed.applied} sidecars, gone from "
                f"{removed.gone_from}, still in {removed.still_in or 'none'})",
                flush=True,
            )
    except BenchError as exc:
        result.failed = str(exc)
        print(f"  FAILED: {exc}", flush=True)
    finally:
        mesh.up.stop()
    return result


# --- report ------------------------------------------------------------------------------


def _cell(stats: dict[str, Any], key: str) -> str:
    value = stats.get(key)
    return "-" if value is None else f"{value:.1f}"


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# Shutdown: an instance's stop until its endpoint is gone from every caller",
        "",
        "Generated by `python -m bench.shutdown`; do not edit by hand.",
        "",
        f"- Date (UTC): {m['date_utc']}; commit {m['git_commit']}",
        f"- Machine: nproc {m['nproc']}, {m['cpu_model']}, Linux {m['kernel']}, "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}, "
        f"at end {', '.join(f'{x:.2f}' for x in m['loadavg_at_end'])}; Envoys of other "
        f"processes at start {m['other_envoys_at_start']}, at end {m['other_envoys_at_end']}",
        f"- Envoy {m.get('envoy_version', '?')}; Python {m['python']}",
        "- Mesh: N caller workloads (`sleep`, a sidecar each) and one `server` workload with "
        "2 replicas (`python3 -m http.server`); every sidecar gets every service, so the "
        "sidecars whose config changes are the N callers and the other server instance "
        "(and, for a roll, the stopping instance itself).",
        f"- Each of up to {data['rounds']} rounds per size: a **roll** of `server` (new "
        "`env`: both instances replaced one at a time, each leaving the endpoints itself) "
        "and a **remove** (`replicas: 1`, then back to 2).",
        "- **stop -> all ACKed**: the stop's own figure from the `up` log: from the start of "
        "the stop until every sidecar whose config changed has ACKed it (the control "
        "plane's view). **apply -> ACKed** (removals): the control plane's stamps, the last "
        "`acked_at` of a changed type minus the revision's `applied_at`. After each removal "
        "every remaining sidecar's `/clusters` was read: the endpoint was gone from all of "
        "them unless noted.",
        "",
        "## Results (ms)",
        "",
        "| callers | sidecars changed | samples | stop -> all ACKed p50 | p90 | max "
        "| roll p50 | remove p50 | remove: apply -> ACKed p50 | p90 | then drain p50 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in data["sizes"]:
        if not s["per_sample"]:
            lines.append(f"| {s['callers']} | - | 0 | {s['failed'] or 'no samples'} |||||||")
            continue
        a = s["leave_ms"]
        r = s["apply_to_acked_ms_remove"]
        lines.append(
            f"| {s['callers']} | {', '.join(map(str, s['applied']))} | {a['n']} | "
            f"{_cell(a, 'p50')} | {_cell(a, 'p90')} | {_cell(a, 'max')} | "
            f"{_cell(s['leave_ms_roll'], 'p50')} | {_cell(s['leave_ms_remove'], 'p50')} | "
            f"{_cell(r, 'p50')} | {_cell(r, 'p90')} | {_cell(s['drain_ms'], 'p50')} |"
        )
    lines += ["", "## Notes", ""]
    for s in data["sizes"]:
        prefix = f"- {s['callers']} callers: "
        lines.append(f"{prefix}`up` ready in {s['startup_s']} s")
        if s["still_in"]:
            lines.append(f"{prefix}**endpoint still listed by** {', '.join(s['still_in'])}")
        if s["failed"]:
            lines.append(f"{prefix}failed: {s['failed'][:500]}")
        lines += [prefix + n for n in s["notes"]]
    lines += [
        "- The drain figure is the wait for in-flight inbound requests that follows; the "
        "server is idle here, so it is the two looks 50 ms apart that the drain needs.",
        "",
    ]
    return "\n".join(lines)


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.shutdown", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(SIZES),
        help="caller counts, comma-separated (default 10,50)",
    )
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds per size ({ROUNDS})")
    ap.add_argument(
        "--first-port", type=int, default=28000, help="first port for sidecars and apps"
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
    machine = machine_at_start(str(ENVOY))
    for key in ("wrk_version", "nginx_version"):
        machine.pop(key, None)  # not used here
    sizes = []
    for i, n in enumerate(args.sizes):
        print(f"{n} callers:", flush=True)
        # A fresh port range per size: the previous mesh's ports may still be in TIME_WAIT.
        sizes.append(measure(n, args.rounds, args.first_port + 1000 * i))
    machine["other_envoys_at_end"] = other_envoys([])
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine,
        "rounds": args.rounds,
        "duration_s": round(time.monotonic() - started, 1),
        "sizes": [no_nan(s.summary()) for s in sizes],
    }
    text = markdown(data)
    if not args.no_write:
        json_path, md_path = write_results(NAME, data, text)
        print(f"wrote {json_path} and {md_path}", flush=True)
    print(text)
    ok = all(s.samples and not s.failed and not any(x.still_in for x in s.samples) for s in sizes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
