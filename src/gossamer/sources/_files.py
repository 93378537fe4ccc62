"""Mesh config from YAML files: one file or a directory tree of ``*.yaml``/``*.yml``.

Polls modification times every 50 ms: portable and no extra dependency. A change is
reported once the tree has been quiet for 100 ms (Istio debounces pushes by 100 ms too),
so an editor's save-in-several-writes is one change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from gossamer.api import Source
from gossamer.model import Problem

SUFFIXES = (".yaml", ".yml")


class ConfigPathError(OSError):
    pass


def config_files(path: Path) -> list[Path]:
    if not path.exists():
        raise ConfigPathError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.suffix in SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.parts[len(path.parts) :])
    )


def read_sources(path: Path) -> list[Source]:
    """Every config file's text, named relative to the current directory when possible."""
    sources = []
    for file in config_files(path):
        try:
            name = str(file.relative_to(Path.cwd()))
        except ValueError:
            name = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigPathError(
                f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        sources.append(Source(name=name, text=text, base_dir=str(file.parent.resolve())))
    return sources


def load_sources(path: Path) -> tuple[list[Source], list[Problem]]:
    """The sources under ``path``, or the problem that prevents reading them."""
    try:
        sources = read_sources(path)
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem("GSM0010", str(exc), hint="check the path and the file's encoding")]
    if not sources:
        return [], [
            Problem(
                "GSM0011",
                f"no *.yaml or *.yml files under {path}",
                hint="point at a mesh file or a directory of them",
            )
        ]
    return sources, []


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = config_files(path)
    except ConfigPathError:
        return ()
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


async def watch(
    path: Path, interval_s: float = 0.05, debounce_s: float = 0.1
) -> AsyncIterator[None]:
    """Yields once per settled change of the files under ``path``."""
    last = _fingerprint(path)
    while True:
        await asyncio.sleep(interval_s)
        current = _fingerprint(path)
        if current == last:
            continue
        while True:  # wait until the tree is quiet
            await asyncio.sleep(debounce_s)
            settled = _fingerprint(path)
            if settled == current:
                break
            current = settled
        last = current
        yield
