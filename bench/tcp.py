"""Databases through the mesh: pgbench and redis-benchmark, direct vs through a sidecar.

Two paths to the same servers on this machine (PostgreSQL 127.0.0.1:5432, database
``test``; Redis 127.0.0.1:6379):

1. ``direct``: the tool connects to the server.
2. ``mesh``: the tool connects to the outbound TCP port of a Gossamer client sidecar
   (``gossamer up`` with one workload and two ExternalServices with ``protocol: tcp``
   ports and ``addresses: [127.0.0.1]``), whose Envoy forwards to the server: one Envoy,
   a TCP proxy, on the path.

Workloads, in interleaved rounds (the order of the paths rotates every round):

- pgbench select-only (``-S``, one query per transaction) at saturation: ``-c 4 -j 2``
  for a few seconds; throughput and latency.
- pgbench select-only paced (``-R``): latency at a fixed rate, below both paths' limits.
- redis-benchmark ``-t set`` and ``-t get`` (``-n 20000 -c 8``), run separately so that
  the CPU of each can be told apart.

pgbench's tables (``pgbench -i -s 1``) go into a schema of their own, created for the run
and dropped afterwards; redis-benchmark works in a database of its own (``--dbnum``,
9 by default) on one key (``key:__rand_int__``), which must not exist before and is
deleted afterwards. CPU: utime+stime from /proc for the sidecar's Envoy around every run,
and for the database server (Redis' process; PostgreSQL's postmaster with its children,
including the backends it reaped during the run).

Results: ``bench/results/tcp.json`` and ``.md``, with mesh/direct ratios.
Run from the repo root: ``python -m bench.tcp`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench._common import (
    CLOCK_TICKS,
    LOOPBACK,
    BenchError,
    GossamerUp,
    add_int_options,
    busy_machine_notes,
    check_limits,
    child_pids,
    cpu_use,
    envoy_version_of,
    finish_results,
    fmt,
    load_cores,
    machine_at_start,
    median_of_rounds,
    merge_histograms,
    notes_lines,
    other_envoys,
    percentile,
    proc_stat,
    raise_nofile_limit,
    ratio,
    rotated,
    round_range,
    rounds_for_median,
    run_benchmark,
    run_line,
)

NAME = "tcp"
REDIS_KEY = "key:__rand_int__"
"""The one key redis-benchmark's SET and GET use when not given -r."""
PATHS = ("direct", "mesh")


@dataclass(frozen=True)
class Settings:
    rounds: int = 4
    pg_port: int = 5432
    pg_db: str = "test"
    pg_scale: int = 1
    pg_clients: int = 4
    pg_seconds: int = 6
    pg_rate: int = 1000
    pg_paced_seconds: int = 4
    redis_port: int = 6379
    redis_db: int = 9
    redis_requests: int = 20_000
    redis_clients: int = 8


# --- tools ---------------------------------------------------------------------------------


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BenchError(
            f"{name} is not installed. Debian: pgbench comes with the server package "
            "(postgresql-contrib pulls it in), psql with postgresql-client, redis-benchmark "
            "with redis-tools"
        )
    return found


def _run(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float, what: str
) -> str:
    try:
        proc = subprocess.run(
            list(args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} timed out after {timeout_s:.0f}s") from None
    if proc.returncode != 0:
        raise BenchError(f"{what} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}")
    return proc.stdout


# --- PostgreSQL ----------------------------------------------------------------------------


class Postgres:
    """pgbench's tables in a schema of this run, and the commands that reach them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = f"gossamer_bench_tcp_{os.getpid()}"
        self.created = False
        self.env = dict(os.environ)
        self.env["PGOPTIONS"] = f"-c search_path={self.schema}"
        self.env["PGCONNECT_TIMEOUT"] = "5"
        for var in ("PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE"):
            self.env.pop(var, None)

    def psql(self, sql: str, port: int | None = None) -> str:
        return _run(
            [
                tool("psql"),
                "-h",
                LOOPBACK,
                "-p",
                str(port or self.settings.pg_port),
                "-d",
                self.settings.pg_db,
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-q",
                "-A",
                "-t",
                "-c",
                sql,
            ],
            env=self.env,
            timeout_s=30,
            what=f"psql {sql!r}",
        ).strip()

    def setup(self) -> None:
        # CREATE SCHEMA without IF NOT EXISTS: never adopt (and later drop) a schema that
        # someone else made.
        self.psql(f"CREATE SCHEMA {self.schema}")
        self.created = True
        _run(
            [
                tool("pgbench"),
                "-h",
                LOOPBACK,
                "-p",
                str(self.settings.pg_port),
                "-i",
                "-s",
                str(self.settings.pg_scale),
                "-q",
                self.settings.pg_db,
            ],
            env=self.env,
            timeout_s=120,
            what="pgbench -i",
        )

    def cleanup(self) -> None:
        if self.created:
            self.psql(f"DROP SCHEMA {self.schema} CASCADE")
            self.created = False

    def server_pid(self) -> int | None:
        """The postmaster's pid: the parent of the checkpointer (a long-lived child)."""
        out = self.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
        if not out.isdigit():
            return None
        ppid = proc_stat(int(out)).get("ppid")
        return int(ppid) if ppid else None

    def pgbench(
        self, port: int, logdir: Path, label: str, *, rate: int, seconds: int = 0
    ) -> dict[str, Any]:
        """One select-only run, paced to ``rate`` tps if rate > 0; its figures."""
        s = self.settings
        seconds = seconds or (s.pg_paced_seconds if rate else s.pg_seconds)
        prefix = logdir / label
        args = [
            tool("pgbench"),
            "-h",
            LOOPBACK,
            "-p",
            str(port),
            "-n",  # no vacuum before the run (done once, by pgbench -i)
            "-S",
            "-c",
            str(s.pg_clients),
            "-j",
            str(min(2, s.pg_clients)),
            "-T",
            str(seconds),
            "-l",
            f"--log-prefix={prefix}",
        ]
        if rate:
            args += ["-R", str(rate)]
        out = _run(
            [*args, s.pg_db], env=self.env, timeout_s=seconds + 60, what=f"pgbench ({label})"
        )
        histogram, failed = _pgbench_log_histogram(logdir.glob(f"{label}.*"))
        for f in logdir.glob(f"{label}.*"):
            f.unlink()
        figures = _pgbench_summary(out)
        return {
            "transactions": figures.get("transactions", 0),
            "tps": figures.get("tps"),
            "failed": int(figures.get("failed", 0)) + failed,
            "latency_avg_ms": figures.get("latency_avg_ms"),
            "connection_ms": figures.get("connection_ms"),
            "schedule_lag_avg_ms": figures.get("lag_avg_ms"),
            "histogram": histogram,
        }


_PGBENCH_FIELDS = {
    "transactions": r"number of transactions actually processed: (\d+)",
    "failed": r"number of failed transactions: (\d+)",
    "latency_avg_ms": r"latency average = ([\d.]+) ms",
    "connection_ms": r"initial connection time = ([\d.]+) ms",
    "tps": r"tps = ([\d.]+) \(without initial connection time\)",
    "lag_avg_ms": r"rate limit schedule lag: avg ([\d.]+)",
}


def _pgbench_summary(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, pattern in _PGBENCH_FIELDS.items():
        if match := re.search(pattern, text):
            out[key] = float(match.group(1))
    if "tps" not in out:
        raise BenchError(f"no tps in pgbench's output:\n{text[-800:]}")
    out["transactions"] = int(out.get("transactions", 0))
    return out


def _pgbench_log_histogram(files: Any) -> tuple[dict[int, int], int]:
    """Latency (us) -> count from pgbench's per-transaction logs, and the failed count.

    A line is ``client_id transaction_no time script_no time_epoch time_us [lag]``; time
    is the latency in microseconds (with -R, from the transaction's scheduled start), or
    a word for a failed or skipped transaction.
    """
    histogram: dict[int, int] = {}
    failed = 0
    for path in files:
        with Path(path).open() as lines:
            for line in lines:
                fields = line.split()
                if len(fields) < 3:
                    continue
                if fields[2].isdigit():
                    value = int(fields[2])
                    histogram[value] = histogram.get(value, 0) + 1
                else:
                    failed += 1
    return histogram, failed


# --- Redis ---------------------------------------------------------------------------------


def _resp_reply(buffer: bytes) -> tuple[bytes, bytes] | None:
    """The first complete reply in ``buffer`` (simple types and bulk strings), and the
    rest; None while it is incomplete."""
    line, sep, rest = buffer.partition(b"\r\n")
    if not sep:
        return None
    if line.startswith(b"$") and line != b"$-1":
        size = int(line[1:])
        if len(rest) < size + 2:
            return None
        return line + b"\r\n" + rest[:size], rest[size + 2 :]
    return line, rest


def redis_command(port: int, db: int, *args: str) -> bytes:
    """SELECT ``db``, then send one command; its reply (RESP, the first line of it for
    simple types). Loopback only, one connection, closed afterwards."""

    def encode(parts: Sequence[str]) -> bytes:
        out = f"*{len(parts)}\r\n".encode()
        for part in parts:
            data = part.encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
        return out

    replies: list[bytes] = []
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as conn:
            conn.sendall(encode(["SELECT", str(db)]) + encode(list(args)))
            buffer = b""
            while len(replies) < 2:
                parsed = _resp_reply(buffer)
                if parsed is not None:
                    replies.append(parsed[0])
                    buffer = parsed[1]
                    continue
                chunk = conn.recv(65536)
                if not chunk:
                    raise BenchError(f"redis closed the connection after {len(replies)} replies")
                buffer += chunk
    except OSError as exc:
        raise BenchError(f"redis on {LOOPBACK}:{port}: {exc}") from None
    if replies[0] != b"+OK":
        raise BenchError(f"redis SELECT {db} answered {replies[0]!r}")
    return replies[1]


def redis_int(port: int, db: int, *args: str) -> int:
    reply = redis_command(port, db, *args)
    if not reply.startswith(b":"):
        raise BenchError(f"redis {' '.join(args)} answered {reply[:80]!r}")
    return int(reply[1:].split(b"\r\n", 1)[0])


def redis_server_pid(port: int, db: int) -> int | None:
    reply = redis_command(port, db, "INFO", "server")
    match = re.search(rb"process_id:(\d+)", reply)
    return int(match.group(1)) if match else None


def redis_benchmark(
    port: int, settings: Settings, test: str, *, requests: int = 0
) -> dict[str, Any]:
    requests = requests or settings.redis_requests
    out = _run(
        [
            tool("redis-benchmark"),
            "-h",
            LOOPBACK,
            "-p",
            str(port),
            "--dbnum",
            str(settings.redis_db),
            "-t",
            test,
            "-n",
            str(requests),
            "-c",
            str(settings.redis_clients),
            "--csv",
            "--precision",
            "3",
        ],
        timeout_s=120,
        what=f"redis-benchmark -t {test}",
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    if len(rows) != 1 or "rps" not in rows[0]:
        raise BenchError(f"unexpected redis-benchmark output:\n{out[-800:]}")
    row = rows[0]
    return {
        "requests": requests,
        "rps": float(row["rps"]),
        "latency_ms": {
            k.removesuffix("_latency_ms"): float(v) for k, v in row.items() if k.endswith("_ms")
        },
    }


# --- /proc for the servers -----------------------------------------------------------------


def server_cpu_snapshot(pid: int | None, with_children: bool) -> dict[int, float]:
    """pid -> CPU seconds for the server and (if asked) its children. The server's entry
    includes the CPU of children it has reaped (cutime + cstime)."""
    if pid is None:
        return {}
    out: dict[int, float] = {}
    for p in [pid, *(child_pids(pid) if with_children else [])]:
        stat = proc_stat(p)
        if stat:
            ticks = stat["utime"] + stat["stime"]
            if p == pid and with_children:
                ticks += stat["cutime"] + stat["cstime"]
            out[p] = ticks / CLOCK_TICKS
    return out


def server_cpu_delta(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU between two snapshots; children that exited meanwhile show in the parent's
    reaped time, those that started meanwhile count from zero."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


# --- the mesh ------------------------------------------------------------------------------


_CLIENT = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: client}
spec:
  command: [sleep, "100000"]
"""

_EXTERNAL_SERVICE = """\
apiVersion: gossamer.dev/v1alpha1
kind: ExternalService
metadata: {{name: {name}}}
spec:
  hosts: [{name}.bench.internal]
  addresses: [{address}]
  ports: [{{port: {port}, protocol: tcp}}]
"""


def mesh_yaml(settings: Settings) -> str:
    services = (("postgres", settings.pg_port), ("redis", settings.redis_port))
    docs = [_CLIENT]
    docs += [_EXTERNAL_SERVICE.format(name=n, address=LOOPBACK, port=p) for n, p in services]
    return "---\n".join(docs)


@dataclass
class MeshPorts:
    envoy_pid: int
    postgres: int
    redis: int


def start_mesh(settings: Settings, pg: Postgres) -> tuple[GossamerUp, MeshPorts]:
    mesh = GossamerUp(mesh_yaml(settings))
    try:
        found: list[MeshPorts] = []

        def ready(status: dict[str, Any]) -> bool:
            client = mesh.instance(status, "client")
            if client is None or client.get("state") != "running":
                return False
            pid = client.get("envoy_pid")
            local = {
                t.get("service"): t.get("local_port")
                for t in client.get("outbound_tcp_ports", [])
                if isinstance(t, dict)
            }
            pg_port, redis_port = local.get("postgres"), local.get("redis")
            if not (isinstance(pid, int) and isinstance(pg_port, int)):
                return False
            if not isinstance(redis_port, int):
                return False
            try:
                if redis_command(redis_port, settings.redis_db, "PING") != b"+PONG":
                    return False
                if pg.psql("SELECT count(*) FROM pgbench_branches", port=pg_port) != "1":
                    return False
            except BenchError:
                return False
            found.append(MeshPorts(pid, pg_port, redis_port))
            return True

        mesh.wait("the TCP mesh to connect", ready, timeout_s=60)
        return mesh, found[0]
    except BaseException:
        mesh.stop()
        raise


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Sample:
    """One tool run: what it reported, and the CPU spent around it."""

    figures: dict[str, Any]
    count: int
    """transactions or requests"""
    seconds: float
    envoy_cpu_s: float | None
    server_cpu_s: float
    tool_cpu_s: float
    other_cpu_s: float


def measured(
    fn: Callable[[], dict[str, Any]],
    count_key: str,
    envoy_pid: int | None,
    server_pid: int | None,
    *,
    server_children: bool,
) -> Sample:
    with cpu_use([envoy_pid] if envoy_pid else []) as cpu:
        server0 = server_cpu_snapshot(server_pid, server_children)
        started = time.monotonic()
        figures = fn()
        seconds = time.monotonic() - started
        server = server_cpu_delta(server0, server_cpu_snapshot(server_pid, server_children))
    envoy = cpu.pids_s[0] if envoy_pid else None
    count = int(figures[count_key])
    return Sample(figures, count, seconds, envoy, server, cpu.tool_s, cpu.other_s(server))


QUIET_CORES = 0.25
"""A run is quiet when other processes kept fewer cores than this busy during it. Ratios
take the median of the rounds in which both paths' runs were quiet, when at least two
were, else of all rounds."""


def _other_cores(sample: Sample) -> float:
    return load_cores(sample.other_cpu_s, sample.seconds)


WORKLOADS = ("pgbench_select", "pgbench_select_paced", "redis_set", "redis_get")


def _per(count: int, seconds: float | None) -> float | None:
    return None if seconds is None or not count else round(seconds / count * 1e6, 2)


def summarize(workload: str, samples: Sequence[Sample]) -> dict[str, Any]:
    count = sum(s.count for s in samples)
    seconds = sum(s.seconds for s in samples)
    envoy = [s.envoy_cpu_s for s in samples]
    out: dict[str, Any] = {"runs": len(samples), "count": count}
    if workload.startswith("pgbench"):
        histogram = merge_histograms(s.figures["histogram"] for s in samples)
        out["throughput"] = round(statistics.median(s.figures["tps"] for s in samples), 1)
        out["throughput_unit"] = "tps (pgbench, median of runs)"
        out["failed"] = sum(s.figures["failed"] for s in samples)
        out["latency_ms"] = {
            "avg": round(statistics.median(s.figures["latency_avg_ms"] for s in samples), 3),
            "p50": percentile(histogram, 50) / 1000 if histogram else None,
            "p99": percentile(histogram, 99) / 1000 if histogram else None,
            "max": max(histogram) / 1000 if histogram else None,
        }
        out["latency_source"] = "pgbench per-transaction logs, pooled over runs"
    else:
        out["throughput"] = round(statistics.median(s.figures["rps"] for s in samples), 1)
        out["throughput_unit"] = "requests/s (redis-benchmark, median of runs)"
        out["latency_ms"] = {
            key: round(statistics.median(s.figures["latency_ms"][key] for s in samples), 3)
            for key in ("avg", "p50", "p99", "max")
        }
        out["latency_source"] = "redis-benchmark --csv, median of runs"
    out["cpu_us_per_op"] = {
        "envoy": None if None in envoy else _per(count, sum(e or 0.0 for e in envoy)),
        "server": _per(count, sum(s.server_cpu_s for s in samples)),
        "tool": _per(count, sum(s.tool_cpu_s for s in samples)),
    }
    out["other_load_cores"] = round(sum(s.other_cpu_s for s in samples) / seconds, 2)
    return out


def _round_figures(workload: str, sample: Sample) -> dict[str, Any]:
    s = summarize(workload, [sample])
    return {
        "throughput": s["throughput"],
        "latency_ms": s["latency_ms"],
        "cpu_us_per_op": s["cpu_us_per_op"],
        "other_load_cores": s["other_load_cores"],
    }


def compare(mesh: Mapping[str, Any], direct: Mapping[str, Any]) -> dict[str, float | None]:
    return {
        "throughput": ratio(mesh["throughput"], direct["throughput"]),
        "latency_avg": ratio(mesh["latency_ms"]["avg"], direct["latency_ms"]["avg"]),
        "latency_p50": ratio(mesh["latency_ms"]["p50"], direct["latency_ms"]["p50"]),
        "latency_p99": ratio(mesh["latency_ms"]["p99"], direct["latency_ms"]["p99"]),
        "server_cpu_per_op": ratio(
            mesh["cpu_us_per_op"]["server"], direct["cpu_us_per_op"]["server"]
        ),
    }


def run(settings: Settings) -> dict[str, Any]:
    raise_nofile_limit()
    for name in ("pgbench", "psql", "redis-benchmark"):
        tool(name)
    started = time.monotonic()
    data: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine_at_start(),
        "settings": {
            "rounds": settings.rounds,
            "postgres": f"{LOOPBACK}:{settings.pg_port}/{settings.pg_db}",
            "pgbench": f"-i -s {settings.pg_scale} into a schema of the run; runs: -n -S "
            f"-c {settings.pg_clients} -j {min(2, settings.pg_clients)} -T "
            f"{settings.pg_seconds} (saturation) and -T {settings.pg_paced_seconds} "
            f"-R {settings.pg_rate} (paced)",
            "redis": f"{LOOPBACK}:{settings.redis_port} db {settings.redis_db}",
            "redis_benchmark": f"-t set, then -t get; -n {settings.redis_requests} "
            f"-c {settings.redis_clients} --csv",
        },
        "tool_versions": {
            "pgbench": _run([tool("pgbench"), "--version"], timeout_s=10, what="pgbench").strip(),
            "redis-benchmark": _run(
                [tool("redis-benchmark"), "--version"], timeout_s=10, what="redis-benchmark"
            ).strip(),
        },
        "workloads": {},
        "notes": [],
    }
    # Checked before anything runs: the cleanup deletes the key, so it must be ours.
    if redis_int(settings.redis_port, settings.redis_db, "EXISTS", REDIS_KEY) != 0:
        raise BenchError(
            f"redis db {settings.redis_db} already holds {REDIS_KEY}: pass another "
            "--redis-db (this benchmark deletes the key when done)"
        )
    pg = Postgres(settings)
    samples: dict[str, dict[str, list[Sample]]] = {w: {p: [] for p in PATHS} for w in WORKLOADS}
    mesh: GossamerUp | None = None
    logdir = Path(tempfile.mkdtemp(prefix="bench-tcp-"))
    try:
        pg.setup()
        data["postgres_schema"] = pg.schema
        pg_pid = pg.server_pid()
        redis_pid = redis_server_pid(settings.redis_port, settings.redis_db)
        if pg_pid is None:
            data["notes"].append("PostgreSQL's postmaster not found: no server CPU")
        mesh, ports = start_mesh(settings, pg)
        data["machine"]["envoy_version"] = envoy_version_of(ports.envoy_pid)
        data["mesh_ready_s"] = round(time.monotonic() - started, 1)
        data["mesh_ports"] = {"postgres": ports.postgres, "redis": ports.redis}
        targets = {
            "direct": (settings.pg_port, settings.redis_port, None),
            "mesh": (ports.postgres, ports.redis, ports.envoy_pid),
        }
        # Warm-up, not measured: first connections through the sidecar, caches.
        for pg_port, redis_port, _ in targets.values():
            pg.pgbench(pg_port, logdir, "warmup", rate=0, seconds=1)
            redis_benchmark(redis_port, settings, "ping_mbulk", requests=2000)
        pg_rate = settings.pg_rate
        for round_index in range(settings.rounds):
            for path in rotated(PATHS, round_index):
                pg_port, redis_port, envoy_pid = targets[path]
                label = f"{path}-r{round_index + 1}"
                for workload, rate in (("pgbench_select", 0), ("pgbench_select_paced", pg_rate)):
                    bench = partial(pg.pgbench, pg_port, logdir, f"{label}-{workload}", rate=rate)
                    samples[workload][path].append(
                        measured(bench, "transactions", envoy_pid, pg_pid, server_children=True)
                    )
                for test in ("set", "get"):
                    bench = partial(redis_benchmark, redis_port, settings, test)
                    samples[f"redis_{test}"][path].append(
                        measured(bench, "requests", envoy_pid, redis_pid, server_children=False)
                    )
        data["machine"]["other_envoys_at_end"] = other_envoys([ports.envoy_pid])
    finally:
        try:
            if mesh is not None:
                mesh.stop()
        finally:
            try:
                pg.cleanup()
            finally:
                try:
                    redis_int(settings.redis_port, settings.redis_db, "DEL", REDIS_KEY)
                finally:
                    shutil.rmtree(logdir, ignore_errors=True)

    for workload in WORKLOADS:
        direct = summarize(workload, samples[workload]["direct"])
        through = summarize(workload, samples[workload]["mesh"])
        per_round = [
            compare(summarize(workload, [m]), summarize(workload, [d]))
            for m, d in zip(samples[workload]["mesh"], samples[workload]["direct"], strict=True)
        ]
        pairs = zip(samples[workload]["mesh"], samples[workload]["direct"], strict=True)
        used = rounds_for_median([list(map(_other_cores, pair)) for pair in pairs], QUIET_CORES)
        data["workloads"][workload] = {
            "direct": direct,
            "mesh": through,
            "rounds": {
                path: [_round_figures(workload, x) for x in samples[workload][path]]
                for path in PATHS
            },
            "mesh_vs_direct": {
                "median_of_rounds": median_of_rounds(per_round, used, per_round[0]),
                "rounds_in_median": [i + 1 for i in used],
                "round_range": round_range(per_round, per_round[0]),
                "pooled": compare(through, direct),
                "per_round": per_round,
            },
        }
    data["notes"].extend(_warnings(data))
    finish_results(data, started)
    return data


def _warnings(data: dict[str, Any]) -> list[str]:
    out = busy_machine_notes(data["machine"])
    for workload, w in data["workloads"].items():
        for path in PATHS:
            s = w[path]
            if s.get("failed"):
                out.append(f"{workload} {path}: {s['failed']} failed transactions")
            if s["other_load_cores"] >= 0.25:
                out.append(
                    f"{workload} {path}: other processes kept {s['other_load_cores']:.2f} "
                    "cores busy during its runs: its figures are noisy"
                )
    return out


# --- report --------------------------------------------------------------------------------


def markdown(data: dict[str, Any]) -> str:
    s = data["settings"]
    lines = [
        "# Databases through the mesh (TCP)",
        "",
        f"{run_line(data)} "
        f"{data['tool_versions']['pgbench']}; {data['tool_versions']['redis-benchmark']}.",
        "",
        "direct: tool -> server. mesh: tool -> client sidecar's outbound TCP port (Envoy "
        "tcp_proxy, ExternalService `protocol: tcp`, `addresses: [127.0.0.1]`) -> server. "
        f"{s['rounds']} interleaved rounds. pgbench: {s['pgbench']}. "
        f"redis-benchmark: {s['redis_benchmark']}.",
        "",
        "| workload | path | throughput | avg ms | p50 ms | p99 ms | Envoy us/op "
        "| server us/op | other cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, w in data["workloads"].items():
        for path in PATHS:
            x = w[path]
            lat, cpu = x["latency_ms"], x["cpu_us_per_op"]
            lines.append(
                f"| {workload} | {path} | {fmt(x['throughput'])} | {fmt(lat['avg'], 3)} "
                f"| {fmt(lat['p50'], 3)} | {fmt(lat['p99'], 3)} | {fmt(cpu['envoy'], 1)} "
                f"| {fmt(cpu['server'], 1)} | {fmt(x['other_load_cores'], 2)} |"
            )
    lines += [
        "",
        f"Mesh / direct: median of per-round ratios (rounds where both runs were quiet, "
        f"other processes below {QUIET_CORES} cores, when at least two were); range over "
        "all rounds in brackets:",
        "",
        "| workload | throughput | avg latency | p50 | p99 | server CPU/op | rounds used |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for workload, w in data["workloads"].items():
        r = w["mesh_vs_direct"]
        med, spread = r["median_of_rounds"], r["round_range"]
        cells = []
        for key in ("throughput", "latency_avg", "latency_p50", "latency_p99", "server_cpu_per_op"):
            span = spread.get(key)
            extra = f" ({span[0]:.2f}-{span[1]:.2f})" if span else ""
            cells.append(f"{fmt(med[key], 2)}{extra}")
        used = ", ".join(str(i) for i in r["rounds_in_median"])
        lines.append(f"| {workload} | " + " | ".join(cells) + f" | {used} |")
    lines += [
        "",
        "Throughput: pgbench's tps (without connection time) and redis-benchmark's "
        "requests/s, median of the runs. Latency: pgbench's per-transaction logs (paced runs: "
        "from each transaction's scheduled start, so waiting counts), pooled; redis-benchmark's "
        "own figures, median of the runs. Envoy us/op: the sidecar's utime+stime (/proc) over "
        "the run, per transaction or request. Server us/op: PostgreSQL's postmaster and its "
        "children (backends, reaped ones included) or redis-server. Other cores: CPU that "
        "neither the tool, the sidecar nor the server used during the runs.",
    ]
    lines += notes_lines(data["notes"])
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> Settings:
    d = Settings()
    ap = argparse.ArgumentParser(
        prog="python -m bench.tcp",
        description="pgbench and redis-benchmark, direct vs through a Gossamer sidecar.",
    )
    first = {"rounds": (1, 10), "pg_port": (1, 65535)}
    rest = {
        "pg_scale": (1, 10),
        "pg_clients": (1, 32),
        "pg_seconds": (1, 60),
        "pg_rate": (1, 20_000),
        "pg_paced_seconds": (1, 60),
        "redis_port": (1, 65535),
        "redis_db": (0, 15),
        "redis_requests": (100, 1_000_000),
        "redis_clients": (1, 64),
    }
    add_int_options(ap, d, first)
    ap.add_argument("--pg-db", default=d.pg_db)
    add_int_options(ap, d, rest, {"pg_seconds": "saturation runs", "pg_rate": "paced runs, tps"})
    ns = ap.parse_args(list(argv))
    check_limits(ap, ns, first | rest)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ns.pg_db):
        ap.error("--pg-db must be a plain database name")
    return Settings(
        **{k: getattr(ns, k) for k in Settings.__dataclass_fields__},
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(NAME, argv, parse_args, run, markdown)


if __name__ == "__main__":
    sys.exit(main())
