"""Access log files: size-based rotation, write-failure tracking, and reading them back
for ``gossamer logs``.

Rotation loses no line: the file is renamed first (Envoy keeps writing to the renamed
file through its open descriptor), then Envoy is told to reopen its logs
(``POST /reopen_logs``), which flushes and continues in a new file.

A full disk breaks no request: Envoy buffers each line and its flush thread drops what it
cannot write, counting it in ``filesystem.write_failed`` (``filesystem.reopen_failed`` when
it cannot reopen the file). Those counters are Envoy-wide, and a proxy's only files are its
access log, so they are read from each proxy's admin port on every rotation round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger("gossamer.up")

COUNTERS_PATH = "/stats?filter=" + quote(
    r"^filesystem\.(write_failed|write_completed|reopen_failed)$"
)
"""Envoy's file counters: failed and completed writes of buffered lines, failed reopens."""


def log_file(state_dir: Path, node: str) -> Path:
    # Matches gossamer.translate.access_log_path, relative to the proxy's working directory.
    return state_dir / "access" / f"{node}.log"


def rotate_files(path: Path, keep: int) -> None:
    """``x.log`` -> ``x.log.1`` -> ... -> ``x.log.<keep>``; the oldest beyond ``keep`` goes."""
    with contextlib.suppress(FileNotFoundError):
        path.with_name(f"{path.name}.{keep}").unlink()
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.rename(path.with_name(f"{path.name}.{i + 1}"))
    path.rename(path.with_name(f"{path.name}.1"))


async def reopen_logs(admin_port: int, session: aiohttp.ClientSession | None = None) -> bool:
    """Ask an Envoy to flush and reopen its access log files."""
    url = f"http://127.0.0.1:{admin_port}/reopen_logs"
    try:
        if session is not None:
            async with session.post(url) as reply:
                return reply.status == 200
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as own, own.post(url) as reply:
            return reply.status == 200
    except (OSError, TimeoutError, aiohttp.ClientError):
        return False


def parse_counters(text: str) -> dict[str, int]:
    """``name: value`` lines of Envoy's ``/stats`` as a dict; other lines are skipped."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[name.strip()] = int(value)
    return out


async def file_counters(session: aiohttp.ClientSession, admin_port: int) -> dict[str, int] | None:
    """An Envoy's ``filesystem.*`` counters, or None if its admin did not answer."""
    try:
        async with session.get(f"http://127.0.0.1:{admin_port}{COUNTERS_PATH}") as reply:
            if reply.status != 200:
                return None
            return parse_counters(await reply.text())
    except (OSError, TimeoutError, ValueError, aiohttp.ClientError):
        return None


@dataclass(slots=True)
class ProxyLogHealth:
    """One proxy's access log trouble, over every Envoy process it has had."""

    write_failures: int = 0
    """Failed writes (each drops the lines buffered for it; the last may be cut short)."""
    reopen_failures: int = 0
    rotation_failures: int = 0
    failing: bool = False
    """Writes failed, and none has completed since."""
    last_failure_at: float | None = None
    last_error: str = ""
    """The latest rotation error or failed-write summary."""
    rotation_error: str = ""
    """The error of the latest rotation, if it failed."""
    epoch: int = 0
    raw: dict[str, int] = field(default_factory=dict)
    """The counters last read from the current Envoy process (``epoch``, its pid)."""

    def to_dict(self) -> dict[str, object]:
        return {
            "write_failures": self.write_failures,
            "reopen_failures": self.reopen_failures,
            "rotation_failures": self.rotation_failures,
            "failing": self.failing,
            "last_failure_at": self.last_failure_at,
            "last_error": self.last_error,
            "rotation_error": self.rotation_error,
        }


@dataclass(frozen=True, slots=True)
class Notice:
    node: str
    recovered: bool
    """False: something failed; True: the log is written again."""
    message: str


class AccessLogHealth:
    """Turns Envoy's cumulative file counters and rotation errors into per-proxy totals,
    and into one message when a proxy starts failing and one when it recovers (never one
    per round, so a disk that stays full does not flood the events or the log)."""

    def __init__(self) -> None:
        self.proxies: dict[str, ProxyLogHealth] = {}

    def describe(self, node: str) -> dict[str, object]:
        return (self.proxies.get(node) or ProxyLogHealth()).to_dict()

    def keep_only(self, nodes: Iterable[str]) -> None:
        wanted = set(nodes)
        for node in [n for n in self.proxies if n not in wanted]:
            del self.proxies[node]

    def observe(self, node: str, epoch: int, counters: dict[str, int], now: float) -> Notice | None:
        """Record one reading of ``counters``; returns a notice if the proxy started
        failing or recovered."""
        h = self.proxies.setdefault(node, ProxyLogHealth())
        if epoch != h.epoch:  # a new Envoy process counts from zero
            h.epoch, h.raw = epoch, {}
        delta = {k: v - h.raw.get(k, 0) for k, v in counters.items()}
        delta = {k: (v if v >= 0 else counters[k]) for k, v in delta.items()}
        h.raw = dict(counters)
        failed = delta.get("filesystem.write_failed", 0)
        reopen = delta.get("filesystem.reopen_failed", 0)
        h.write_failures += failed
        h.reopen_failures += reopen
        if failed or reopen:
            h.last_failure_at = now
            h.last_error = (
                f"{h.write_failures} write(s) and {h.reopen_failures} reopen(s) of the "
                "access log failed (is the disk full?)"
            )
            if not h.failing:
                h.failing = True
                return Notice(
                    node, False, f"access log of {node}: {h.last_error}; lines are being dropped"
                )
        elif h.failing and delta.get("filesystem.write_completed", 0) > 0:
            h.failing = False
            return Notice(
                node,
                True,
                f"access log of {node} is written again ({h.write_failures} write(s) "
                "failed in all)",
            )
        return None

    def sink_write(self, node: str, lines: int, error: str | None, now: float) -> Notice | None:
        """Record the control plane's own write of ``lines`` entries a proxy streamed (the
        ``grpc`` sink); returns a notice if writing started failing or recovered."""
        h = self.proxies.setdefault(node, ProxyLogHealth())
        if error is None:
            if not h.failing:
                return None
            h.failing = False
            return Notice(node, True, f"access log of {node} is written again")
        h.write_failures += lines
        h.last_failure_at = now
        h.last_error = f"{h.write_failures} streamed entries could not be written: {error}"
        if h.failing:
            return None
        h.failing = True
        return Notice(node, False, f"access log of {node}: {h.last_error}; lines are being dropped")

    def rotation_failed(self, node: str, error: str, now: float) -> Notice | None:
        """Record a rotation error; returns a notice unless the previous rotation failed
        the same way (a rotation is retried every round)."""
        h = self.proxies.setdefault(node, ProxyLogHealth())
        h.rotation_failures += 1
        h.last_failure_at = now
        repeated = h.rotation_error == error
        h.rotation_error = h.last_error = error
        if repeated:
            return None
        return Notice(node, False, f"access log rotation of {node} failed: {error}")

    def rotated(self, node: str) -> None:
        if node in self.proxies:
            self.proxies[node].rotation_error = ""


@dataclass(frozen=True, slots=True)
class RoundResult:
    rotated: list[str]
    notices: list[Notice]
    """One for every proxy whose access log started or stopped failing this round."""


async def check_access_logs(
    state_dir: Path,
    proxies: dict[str, tuple[int, int]],
    max_bytes: int,
    keep: int,
    health: AccessLogHealth,
) -> RoundResult:
    """One round: rotate every proxy's log that grew past ``max_bytes``, then read every
    proxy's file counters. ``proxies``: node -> (admin port, Envoy pid). An error with one
    proxy's files or admin never stops the others'."""
    now = time.time()
    rotated: list[str] = []
    notices: list[Notice] = []
    health.keep_only(proxies)
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for node, (admin_port, _) in proxies.items():
            path = log_file(state_dir, node)
            error = ""
            try:
                if path.stat().st_size <= max_bytes:
                    continue
                rotate_files(path, keep)
            except FileNotFoundError:
                continue
            except OSError as exc:
                error = f"{path}: {exc}"
            else:
                rotated.append(node)
                if not await reopen_logs(admin_port, session):
                    error = f"Envoy (admin port {admin_port}) did not reopen {path}"
            if not error:
                health.rotated(node)
            else:
                notice = health.rotation_failed(node, error, now)
                if notice:
                    notices.append(notice)
        readings = await asyncio.gather(
            *(file_counters(session, port) for port, _ in proxies.values())
        )
    for (node, (_, epoch)), counters in zip(proxies.items(), readings, strict=True):
        if counters is None:
            continue  # the admin did not answer this round; try again next one
        notice = health.observe(node, epoch, counters, now)
        if notice:
            notices.append(notice)
    return RoundResult(rotated, notices)


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which entries ``gossamer logs`` shows."""

    status: str = ""
    """``503``, or a class like ``5xx``."""
    path_prefix: str = ""
    flags: str = ""
    """Entries whose response flags contain this (e.g. ``UF``, ``UO``, ``NR``)."""
    since_s: float | None = None
    limit: int = 100

    def matches(self, entry: dict[str, Any], now: float) -> bool:
        code = str(entry.get("response_code", ""))
        if self.status:
            if self.status.endswith("xx"):
                if not code.startswith(self.status[0]):
                    return False
            elif code != self.status:
                return False
        if self.path_prefix and not str(entry.get("path") or "").startswith(self.path_prefix):
            return False
        if self.flags and self.flags not in str(entry.get("response_flags") or ""):
            return False
        if self.since_s is not None:
            started = _timestamp(str(entry.get("start_time", "")))
            if started is None or started < now - self.since_s:
                return False
        return True


def _timestamp(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _lines(path: Path, keep: int) -> Iterator[str]:
    """Oldest first, across the rotated files. A file that vanished (rotated meanwhile)
    or cannot be read is skipped."""
    files = [path.with_name(f"{path.name}.{i}") for i in range(keep, 0, -1)] + [path]
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot read access log %s: %s", f, exc)
            continue
        yield from text.splitlines()


def parse_line(line: str) -> tuple[dict[str, Any] | None, bool]:
    """An access log line as (entry or None, whether some of it was unreadable).

    A write cut short by a full disk leaves a partial line, and the first entry written
    once there is space again continues on it: that entry is still recovered (entries are
    flat JSON objects, so a literal ``{"`` only starts one)."""
    with contextlib.suppress(ValueError):
        entry = json.loads(line)
        if isinstance(entry, dict):
            return entry, False
    start = line.find('{"', 1)
    while start != -1:
        with contextlib.suppress(ValueError):
            entry = json.loads(line[start:])
            if isinstance(entry, dict):
                return entry, True
        start = line.find('{"', start + 1)
    return None, True


def read_entries(
    state_dir: Path,
    nodes: Iterable[str],
    keep: int,
    service_clusters_suffix: str,
    service_nodes: set[str],
    query: LogQuery,
) -> tuple[list[dict[str, Any]], int]:
    """Entries about a service: inbound ones logged by its own instances, and those any
    proxy logged toward one of its clusters. Returns (entries, unreadable lines)."""
    now = time.time()
    found: list[dict[str, Any]] = []
    bad = 0
    for node in nodes:
        for line in _lines(log_file(state_dir, node), keep):
            entry, unreadable = parse_line(line)
            bad += unreadable
            if entry is None:
                continue
            inbound = entry.get("direction") == "inbound" and node in service_nodes
            # Toward the service: addressed to it, or routed to one of its clusters.
            host = str(entry.get("authority") or "").split(":")[0]
            toward = host == service_clusters_suffix.removeprefix("||") or str(
                entry.get("upstream_cluster", "")
            ).endswith(service_clusters_suffix)
            if (inbound or (toward and entry.get("direction") != "inbound")) and query.matches(
                entry, now
            ):
                found.append(entry)
    found.sort(key=lambda e: str(e.get("start_time", "")))
    return found[-query.limit :], bad
