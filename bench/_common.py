"""What the benchmarks share: ports, child processes, /proc readings, wrk, results files.

Every load generated here goes to 127.0.0.1 only, and every load run is bounded in time
(wrk's -d plus a subprocess timeout) and in count (a request cap inside the wrk script).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_DIR = BENCH_DIR.parent
WRK_SCRIPT = BENCH_DIR / "_wrk.lua"
LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not run (a missing tool, a process that would not start)."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def raise_nofile_limit() -> None:
    """Raise RLIMIT_NOFILE to its hard limit; children (Envoy, nginx, wrk) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- child processes ---------------------------------------------------------------------


@dataclass
class Child:
    """A process this benchmark started, in a session (and process group) of its own."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it outlives ``grace_s``."""
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace_s)
        # The group may hold children that outlive their leader: kill whatever is left.
        _signal_group(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace_s)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_pid(pid: int, expect_in_cmdline: str, grace_s: float = 5.0) -> None:
    """Stop ``pid`` if it still runs a command containing ``expect_in_cmdline``.

    The check guards against killing an unrelated process that reused the pid.
    """
    if expect_in_cmdline not in proc_cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if expect_in_cmdline not in proc_cmdline(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


class Processes:
    """Starts children and stops every one of them, newest first, on ``close()``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._cleanups: list[Callable[[], None]] = []

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` on ``close()``, before the children started so far are stopped."""
        self._cleanups.append(cleanup)

    def close(self) -> None:
        errors: list[BaseException] = []
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception as exc:  # keep stopping the rest
                errors.append(exc)
        self._cleanups.clear()
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as exc:
                errors.append(exc)
        self.children.clear()
        if errors:
            raise BenchError(f"cleanup failed: {errors!r}")

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exit_on_signals() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, so ``finally`` blocks stop the children.

    Python's default for SIGTERM ends the process on the spot; the Envoys and apps run
    in sessions of their own and would outlive it.
    """

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)


def wait_until(
    what: str, check: Callable[[], bool], timeout_s: float, *, interval_s: float = 0.05
) -> None:
    """Poll ``check`` until it is true; raise BenchError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, host: str | None = None, timeout_s: float = 1.0) -> tuple[int, bytes]:
    """GET ``url`` directly (never via $HTTP_PROXY); (status, body), or (0, b"") on failure."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"benchmarks only talk to {LOOPBACK}: {url}")
    headers = {"Host": host} if host else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with _NO_PROXY_OPENER.open(request, timeout=timeout_s) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (OSError, ValueError):
        return 0, b""


# --- /proc -------------------------------------------------------------------------------


def host_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (wrk runs, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def pids_running(name: str) -> list[int]:
    """Pids of processes whose executable's base name is ``name`` (like ``pgrep -x``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == name[:15]:
                out.append(int(entry.name))
    return sorted(out)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def proc_memory_kib(pid: int) -> dict[str, int]:
    """Private memory of ``pid``: RssAnon (status) and Pss (smaps_rollup), plus VmRSS."""
    out: dict[str, int] = {}
    status = _kib_fields(Path(f"/proc/{pid}/status"), ("VmRSS", "RssAnon"))
    out["rss_kib"] = status.get("VmRSS", -1)
    out["rss_anon_kib"] = status.get("RssAnon", -1)
    rollup = _kib_fields(Path(f"/proc/{pid}/smaps_rollup"), ("Pss", "Pss_Anon"))
    out["pss_kib"] = rollup.get("Pss", -1)
    out["pss_anon_kib"] = rollup.get("Pss_Anon", -1)
    return out


def _kib_fields(path: Path, names: Iterable[str]) -> dict[str, int]:
    wanted = set(names)
    found: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        key, _, rest = line.partition(":")
        if key in wanted and rest.strip().endswith("kB"):
            found[key] = int(rest.split()[0])
    return found


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class WrkResult:
    """One wrk run: counts, errors and the latency histogram (microseconds -> count)."""

    requests: int
    duration_s: float
    errors: dict[str, int]
    histogram: dict[int, int] = field(default_factory=dict)
    bytes_read: int = 0
    """Bytes wrk read, headers and framing included (wrk's summary.bytes)."""

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not installed (see bench/README.md)")
    return found


def run_wrk(
    url: str,
    *,
    connections: int,
    duration_s: int,
    rate: int = 0,
    max_requests: int,
    host: str | None = None,
    headers: Sequence[str] = (),
) -> WrkResult:
    """Run wrk (one thread) against ``url``, paced to ``rate`` rps when rate > 0.

    Bounded in time by ``duration_s`` (and a hard subprocess timeout) and in count by
    ``max_requests``, which the Lua script enforces. ``headers`` are extra request
    headers (``"Name: value"``), passed to wrk's ``-H``.
    """
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"benchmarks only send load to {LOOPBACK}: {url}")
    args = [
        wrk_binary(),
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "2s",
        "-s",
        str(WRK_SCRIPT),
    ]
    if host:
        args += ["-H", f"Host: {host}"]
    for header in headers:
        args += ["-H", header]
    args += [url, "--", str(rate), str(max_requests)]
    proc = subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        check=False,
    )
    line = next(
        (ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")),
        None,
    )
    if proc.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout[-500:]}"
        )
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        errors={k: int(v) for k, v in data["errors"].items()},
        histogram={int(v): int(c) for v, c in data["histogram"]},
        bytes_read=int(data.get("bytes", 0)),
    )


def merge_histograms(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for value, count in histogram.items():
            merged[value] = merged.get(value, 0) + count
    return merged


def percentile(histogram: Mapping[int, int], p: float) -> float:
    """The smallest value with at least p% of the samples at or below it (nearest rank)."""
    total = sum(histogram.values())
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return float(max(histogram))


# --- machine info and results ------------------------------------------------------------


def _first_line(args: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (proc.stdout + proc.stderr).strip()
    return text.splitlines()[0] if text else ""


def machine_info(envoy: str | None = None) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _first_line(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"]),
    }
    if envoy is not None:
        version = _first_line([envoy, "--version"])
        match = re.search(r"version:\s*(\S+)", version)
        info["envoy_version"] = match.group(1) if match else version
    if shutil.which("wrk"):
        info["wrk_version"] = _first_line(["wrk", "--version"]).split(" [")[0]
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if Path(nginx).exists():
        info["nginx_version"] = _first_line([nginx, "-v"])
    return info


def write_results(name: str, data: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{name}.json"
    md_path = RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


# --- gossamer up -------------------------------------------------------------------------


def gossamer_cli() -> str:
    """The ``gossamer`` CLI of the project's venv (or on $PATH)."""
    beside = Path(sys.executable).parent / "gossamer"
    found = str(beside) if beside.exists() else shutil.which("gossamer")
    if found is None:
        raise BenchError("the gossamer CLI is not installed: run `make install`")
    return found


class GossamerUp:
    """A ``gossamer up`` of a mesh that a benchmark wrote, on free ports, with its state
    in a temporary folder. Its status comes from the admin API (``/api/v1/status``).

    Gossamer starts sidecars and apps in sessions of their own, so stopping ``gossamer up``
    may not reach them: every Envoy and app pid seen in a status is remembered with its
    command line and stopped on ``stop()`` if it still runs that command.
    """

    def __init__(self, mesh_yaml: str, *, watch: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-gossamer-"))
        self.api_port = free_port()
        self._procs = Processes(self.workdir)
        self._seen: dict[int, str] = {}
        mesh_dir = self.workdir / "mesh"
        mesh_dir.mkdir()
        (mesh_dir / "mesh.yaml").write_text(mesh_yaml)
        args = [
            gossamer_cli(),
            "up",
            str(mesh_dir),
            "--xds-port",
            str(free_port()),
            "--api-port",
            str(self.api_port),
            "--state-dir",
            str(self.workdir / "state"),
        ]
        if not watch:
            args.append("--no-watch")
        self.up = self._procs.start("gossamer-up", args, cwd=self.workdir)

    def status(self) -> dict[str, Any] | None:
        """The mesh's status document, or None while the admin API has no answer."""
        code, body = http_get(f"http://{LOOPBACK}:{self.api_port}/api/v1/status", timeout_s=5)
        if code != 200:
            return None
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        # A pid the status reports is Gossamer's process now: (re)record its command line,
        # which changes when an app's command execs another program.
        for inst in data.get("instances", []):
            for key in ("envoy_pid", "app_pid"):
                pid = inst.get(key) if isinstance(inst, dict) else None
                if isinstance(pid, int) and pid > 0:
                    cmdline = proc_cmdline(pid)
                    if cmdline:
                        self._seen[pid] = cmdline
        return data

    @staticmethod
    def instance(status: Mapping[str, Any], workload: str) -> dict[str, Any] | None:
        """The first instance of ``workload`` in ``status``."""
        for inst in status.get("instances", []):
            if isinstance(inst, dict) and inst.get("workload") == workload:
                return inst
        return None

    def wait(
        self, what: str, ready: Callable[[dict[str, Any]], bool], timeout_s: float = 60
    ) -> dict[str, Any]:
        """Poll the status until ``ready(status)``; the status that was ready."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            if not self.up.alive():
                raise BenchError(
                    f"`gossamer up` exited {self.up.popen.returncode}:\n{self.up.log_tail()}"
                )
            status = self.status()
            if status is not None and ready(status):
                found.append(status)
                return True
            return False

        try:
            wait_until(what, check, timeout_s, interval_s=0.2)
        except BenchError as exc:
            raise BenchError(f"{exc}\ngossamer up log:\n{self.up.log_tail()}") from None
        return found[0]

    def log_tail(self, lines: int = 20) -> str:
        return self.up.log_tail(lines)

    def stop(self) -> None:
        """Stop ``gossamer up``, then whatever it started that still runs; remove the
        temporary folder."""
        try:
            if self.up.alive():
                self.status()  # note pids of sidecars or apps restarted since the last look
            self._procs.close()
        finally:
            for pid, cmdline in self._seen.items():
                kill_pid(pid, cmdline)
            shutil.rmtree(self.workdir, ignore_errors=True)


def envoy_version_of(pid: int) -> str | None:
    """The version (``1.40.0``) of the Envoy binary that process ``pid`` runs."""
    try:
        binary = str(Path(f"/proc/{pid}/exe").readlink())
    except OSError:
        return None
    text = _first_line([binary, "--version"])
    match = re.search(r"/(\d+\.\d+\.\d+)/", text) or re.search(r"version:\s*(\S+)", text)
    return match.group(1) if match else None
