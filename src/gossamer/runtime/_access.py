"""Access log files: size-based rotation and reading them back for ``gossamer logs``.

Rotation loses no line: the file is renamed first (Envoy keeps writing to the renamed
file through its open descriptor), then Envoy is told to reopen its logs
(``POST /reopen_logs``), which flushes and continues in a new file.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp


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


async def reopen_logs(admin_port: int) -> bool:
    """Ask an Envoy to flush and reopen its access log files."""
    url = f"http://127.0.0.1:{admin_port}/reopen_logs"
    try:
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url) as reply:
            return reply.status == 200
    except (OSError, TimeoutError, aiohttp.ClientError):
        return False


async def rotate_if_needed(
    state_dir: Path, proxies: dict[str, int], max_bytes: int, keep: int
) -> list[str]:
    """Rotate every proxy's log that grew past ``max_bytes``; returns those rotated."""
    rotated = []
    for node, admin_port in proxies.items():
        path = log_file(state_dir, node)
        try:
            if path.stat().st_size <= max_bytes:
                continue
        except FileNotFoundError:
            continue
        rotate_files(path, keep)
        await reopen_logs(admin_port)
        rotated.append(node)
    return rotated


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
    """Oldest first, across the rotated files."""
    for i in range(keep, 0, -1):
        rotated = path.with_name(f"{path.name}.{i}")
        if rotated.exists():
            yield from rotated.read_text(errors="replace").splitlines()
    if path.exists():
        yield from path.read_text(errors="replace").splitlines()


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
            try:
                entry = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if not isinstance(entry, dict):
                bad += 1
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
