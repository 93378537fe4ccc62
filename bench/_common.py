"""What the benchmarks share: ports, child processes, /proc and CPU readings around a run,
wrk, machine info and results files, the median-of-quiet-rounds ratios, pieces of the
Markdown reports, and a ``gossamer up`` on free ports.

Every load generated here goes to 127.0.0.1 only, and every load run is bounded in time
(wrk's -d plus a subprocess timeout) and in count (a request cap inside the wrk script).
"""

from __future__ import annotations

import argparse
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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_DIR = BENCH_DIR.parent
WRK_SCRIPT = BENCH_DIR / "_wrk.lua"
LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

T = TypeVar("T")


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
        return log_tail(self.log, lines)

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


def log_tail(log: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


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


def _all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def pids_running(name: str) -> list[int]:
    """Pids of processes whose executable's base name is ``name`` (like ``pgrep -x``)."""
    out = []
    for pid in _all_pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == name[:15]:
            out.append(pid)
    return sorted(out)


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat from field 3 (state) on; OSError when it is gone."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/<pid>/stat."""
    fields = _stat_fields(pid)
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def proc_stat(pid: int) -> dict[str, int]:
    """ppid and CPU ticks of ``pid`` (its own, and its reaped children's); {} when gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return {}
    return {
        "ppid": int(fields[1]),
        "utime": int(fields[11]),
        "stime": int(fields[12]),
        "cutime": int(fields[13]),
        "cstime": int(fields[14]),
    }


def child_pids(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    return [p for p in _all_pids() if proc_stat(p).get("ppid") == pid]


@dataclass
class CpuUse:
    """CPU seconds spent while a run went on (see :func:`cpu_use`)."""

    pids_s: list[float] = field(default_factory=list)
    """utime+stime of each watched process, in the order given."""
    tool_s: float = 0.0
    """This process's children that finished meanwhile: the load tool (wrk, pgbench...)."""
    host_s: float = 0.0
    """All cores of the machine, busy."""

    def other_s(self, *also_ours: float) -> float:
        """CPU the machine spent on anything but the watched processes, the tool and
        ``also_ours`` (CPU of processes read some other way)."""
        ours = sum(self.pids_s) + sum(also_ours) + self.tool_s
        return max(0.0, self.host_s - ours)


@contextlib.contextmanager
def cpu_use(pids: Sequence[int]) -> Iterator[CpuUse]:
    """Read the CPU of ``pids``, of this process's children and of the host around the
    ``with`` block; the CpuUse it yields is filled in when the block ends."""
    host_before, tool_before = host_busy_seconds(), children_cpu_seconds()
    before = [proc_cpu_seconds(pid) for pid in pids]
    use = CpuUse()
    yield use
    after = [proc_cpu_seconds(pid) for pid in pids]
    host_after, tool_after = host_busy_seconds(), children_cpu_seconds()
    use.pids_s = [a - b for a, b in zip(after, before, strict=True)]
    use.tool_s = tool_after - tool_before
    use.host_s = host_after - host_before


def load_cores(cpu_s: float, seconds: float) -> float:
    """How many cores ``cpu_s`` of CPU over ``seconds`` of wall time kept busy."""
    return cpu_s / seconds if seconds > 0 else 0.0


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

    @staticmethod
    def pooled(results: Iterable[WrkResult]) -> WrkResult:
        """Runs as one: counts, times and bytes added up, errors and histograms merged."""
        results = list(results)
        errors: dict[str, int] = {}
        for r in results:
            for key, value in r.errors.items():
                errors[key] = errors.get(key, 0) + value
        return WrkResult(
            requests=sum(r.requests for r in results),
            duration_s=sum(r.duration_s for r in results),
            errors=errors,
            histogram=merge_histograms(r.histogram for r in results),
            bytes_read=sum(r.bytes_read for r in results),
        )


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


def latency_summary(
    histogram: Mapping[int, int], points: Sequence[float] = (50, 90, 99)
) -> dict[str, float | None]:
    """``p50``... (nearest rank, None without samples) and ``max`` of a latency histogram."""
    out: dict[str, float | None] = {}
    for p in points:
        value = percentile(histogram, p)
        out[f"p{p:g}"] = None if math.isnan(value) else value
    out["max"] = float(max(histogram)) if histogram else None
    return out


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


def machine_at_start(envoy: str | None = None) -> dict[str, Any]:
    """:func:`machine_info`, with the count of Envoys already running (others', as the
    benchmark has started none yet)."""
    info = machine_info(envoy)
    info["other_envoys_at_start"] = len(pids_running("envoy"))
    return info


def other_envoys(ours: Iterable[int]) -> int:
    """How many Envoys run that are not among ``ours``."""
    return len(set(pids_running("envoy")) - set(ours))


def finish_results(data: dict[str, Any], started: float) -> None:
    """Stamp the load average at the end and the time since ``started`` (monotonic)."""
    data["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    data["elapsed_s"] = round(time.monotonic() - started, 1)


def busy_machine_notes(machine: Mapping[str, Any]) -> list[str]:
    """A note when Envoys that the benchmark did not start ran at its start or end."""
    others = max(machine.get("other_envoys_at_start", 0), machine.get("other_envoys_at_end", 0))
    if not others:
        return []
    return [
        f"{others} Envoy processes that this benchmark did not start were running: "
        "the machine was not idle"
    ]


def write_results(name: str, data: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{name}.json"
    md_path = RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


def run_benchmark(
    name: str,
    argv: Sequence[str] | None,
    parse_args: Callable[[Sequence[str]], T],
    run: Callable[[T], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
) -> int:
    """A benchmark's ``main``: parse ``argv`` (default: the command line) into settings,
    run with them, print the report and write the results; exit status 1 (and nothing
    written) when it could not run."""
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    exit_on_signals()
    try:
        data = run(settings)
    except BenchError as exc:
        print(f"bench.{name}: {exc}", file=sys.stderr)
        return 1
    text = markdown(data)
    json_path, md_path = write_results(name, data, text)
    print(text)
    print(f"wrote {json_path} and {md_path}")
    return 0


def add_int_options(
    parser: argparse.ArgumentParser,
    defaults: object,
    limits: Mapping[str, tuple[int, int]],
    helps: Mapping[str, str] | None = None,
) -> None:
    """An integer option ``--some-name`` for each ``some_name`` of ``limits``, defaulting
    to that attribute of ``defaults`` (a Settings); :func:`check_limits` checks the range."""
    for name in limits:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=getattr(defaults, name),
            help=(helps or {}).get(name),
        )


def check_limits(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    limits: Mapping[str, tuple[int, int]],
) -> None:
    """Exit through ``parser.error`` when an option is out of its (low, high) range."""
    for name, (low, high) in limits.items():
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be within {low}..{high}")


# --- rounds and ratios -------------------------------------------------------------------


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """``items`` rotated by ``round_index``, so that no item always runs first or last."""
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def rounds_for_median(other_cores: Sequence[Iterable[float]], quiet_cores: float) -> list[int]:
    """The rounds a median over rounds takes: those in which every run compared was quiet
    (other processes kept fewer than ``quiet_cores`` busy), when at least two were; else
    all. ``other_cores[i]`` holds the figures of round i's runs."""
    quiet = [i for i, cores in enumerate(other_cores) if all(c < quiet_cores for c in cores)]
    return quiet if len(quiet) >= 2 else list(range(len(other_cores)))


def median_of_rounds(
    per_round: Sequence[Mapping[str, float | None]], used: Iterable[int], keys: Iterable[str]
) -> dict[str, float | None]:
    """For each key, the median of the rounds ``used`` (None where none has a figure)."""
    used = list(used)
    out: dict[str, float | None] = {}
    for key in keys:
        values = [v for i in used if (v := per_round[i][key]) is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    return out


def round_range(
    per_round: Sequence[Mapping[str, float | None]], keys: Iterable[str]
) -> dict[str, list[float] | None]:
    """For each key, [lowest, highest] over all rounds (None where none has a figure)."""
    out: dict[str, list[float] | None] = {}
    for key in keys:
        values = [v for r in per_round if (v := r[key]) is not None]
        out[key] = [min(values), max(values)] if values else None
    return out


def ratio(num: object, den: object) -> float | None:
    """``num / den`` to 3 places; None when either is not a number (or NaN) or den is 0."""
    if not isinstance(num, int | float) or not isinstance(den, int | float):
        return None
    if den == 0 or math.isnan(num) or math.isnan(den):
        return None
    return round(num / den, 3)


def dig(data: Mapping[str, Any], *keys: str) -> float | None:
    """The number at ``data[k1][k2]...``, or None when a key is missing or it is no number."""
    value: Any = data
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


# --- Markdown reports --------------------------------------------------------------------


def fmt(value: Any, digits: int = 0) -> str:
    """A number with thousands separators and ``digits`` decimals; "-" for None."""
    return "-" if value is None else f"{value:,.{digits}f}"


def run_line(data: Mapping[str, Any]) -> str:
    """The report line that says when, where and on what a run was made."""
    m = data["machine"]
    return (
        f"Run of {m['date_utc']} at commit {m['git_commit']}, {m['nproc']} vCPU "
        f"({m['cpu_model']}), Envoy {m.get('envoy_version', '?')}, in {data['elapsed_s']} s."
    )


def notes_lines(notes: Sequence[str], heading: str = "Notes:") -> list[str]:
    """The notes as a Markdown list under ``heading`` (nothing when there are none)."""
    if not notes:
        return []
    return ["", heading, ""] + [f"- {n}" for n in notes]


# --- gossamer up -------------------------------------------------------------------------


def gossamer_cli(explicit: str | None = None) -> str:
    """The ``gossamer`` CLI: ``explicit`` if that exists, else the project's venv's, else
    the one on $PATH."""
    beside = str(Path(sys.executable).parent / "gossamer")
    candidates = [explicit, beside, shutil.which("gossamer")]
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if found is None:
        raise BenchError("the gossamer CLI is not installed: run `make install`")
    return found


def api_status(api_port: int) -> tuple[dict[str, Any] | None, int | None]:
    """``GET /api/v1/status`` of the ``gossamer up`` whose admin API is on ``api_port``:
    (the document, or None without a good one; the body's size, or None without a 200)."""
    code, body = http_get(f"http://{LOOPBACK}:{api_port}/api/v1/status", timeout_s=5)
    if code != 200:
        return None, None
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None, len(body)
    return (data if isinstance(data, dict) else None), len(body)


def note_pids(status: Mapping[str, Any], seen: dict[int, str]) -> None:
    """Record in ``seen`` each Envoy and app pid of ``status`` with its command line.

    A pid the status reports is Gossamer's process now: its command line is (re)recorded,
    as it changes when an app's command execs another program.
    """
    for inst in status.get("instances", []):
        for key in ("envoy_pid", "app_pid"):
            pid = inst.get(key) if isinstance(inst, dict) else None
            if isinstance(pid, int) and pid > 0:
                cmdline = proc_cmdline(pid)
                if cmdline:
                    seen[pid] = cmdline


class GossamerUp:
    """A ``gossamer up`` of a mesh that a benchmark wrote, on free ports, with its state
    in a temporary folder. Its status comes from the admin API (``/api/v1/status``).

    ``mesh_yaml`` is the mesh, or a function of the temporary folder that returns it (for
    apps that keep their files there). ``cli``: the gossamer CLI (see :func:`gossamer_cli`).
    ``extra_args``: more options for ``gossamer up`` (``--first-port``,
    ``--telemetry-interval``...).

    Gossamer starts sidecars and apps in sessions of their own, so stopping ``gossamer up``
    may not reach them: every Envoy and app pid seen in a status is remembered with its
    command line and stopped on ``stop()`` if it still runs that command.
    """

    def __init__(
        self,
        mesh_yaml: str | Callable[[Path], str],
        *,
        watch: bool = False,
        cli: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-gossamer-"))
        self.api_port = free_port()
        self._procs = Processes(self.workdir)
        self._seen: dict[int, str] = {}
        try:
            mesh_dir = self.workdir / "mesh"
            mesh_dir.mkdir()
            text = mesh_yaml if isinstance(mesh_yaml, str) else mesh_yaml(self.workdir)
            (mesh_dir / "mesh.yaml").write_text(text)
            args = [
                gossamer_cli(cli),
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
            args += extra_args
            self.up = self._procs.start("gossamer-up", args, cwd=self.workdir)
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def status(self) -> dict[str, Any] | None:
        """The mesh's status document, or None while the admin API has no answer."""
        data, _ = api_status(self.api_port)
        if data is not None:
            note_pids(data, self._seen)
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
                return True
            status = self.status()
            if status is not None and ready(status):
                found.append(status)
                return True
            return False

        try:
            wait_until(what, check, timeout_s, interval_s=0.2)
        except BenchError as exc:
            raise BenchError(f"{exc}\ngossamer up log:\n{self.up.log_tail()}") from None
        if not found:
            raise BenchError(
                f"`gossamer up` exited {self.up.popen.returncode}:\n{self.up.log_tail()}"
            )
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
