"""Run every benchmark in bench/: ``python -m bench.run [NAME ...]``.

A benchmark is a public module of this package (not this one) with ``main(argv) -> int``;
each writes its own results to ``bench/results/``. Names given on the command line pick
a subset.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import cast

import bench


def benchmarks() -> list[str]:
    """The names of the benchmark modules, sorted."""
    names = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_") or info.name == "run" or info.ispkg:
            continue
        names.append(info.name)
    return sorted(names)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    available = benchmarks()
    unknown = [a for a in args if a not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for name in args or available:
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if not callable(entry):
            print(f"bench.{name} has no main(); skipped", file=sys.stderr)
            continue
        print(f"=== bench.{name}", flush=True)
        started = time.monotonic()
        code = cast(Callable[[Sequence[str]], int], entry)([])
        print(f"=== bench.{name}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
