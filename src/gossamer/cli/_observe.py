"""``graph`` and ``top``: the service graph from the running mesh's telemetry."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from gossamer.cli._client import ask
from gossamer.telemetry import dot


def _source(data: dict[str, Any]) -> str:
    """Where the numbers come from, and why not Prometheus when it failed."""
    source = str(data.get("source", "embedded"))
    return f"{source} (warning: {data['warning']})" if data.get("warning") else source


def _table(data: dict[str, Any]) -> str:
    rows = [
        (
            "SOURCE",
            "DESTINATION",
            "PROTO",
            "RPS",
            "ERR%",
            "P50ms",
            "P90ms",
            "P99ms",
            "BYTES/s OUT/IN",
            "HEALTH",
        )
    ]
    for e in data["edges"]:
        if e["protocol"] == "http":
            rows.append(
                (
                    e["source"],
                    e["destination"],
                    "http",
                    str(e["requests_per_second"]),
                    str(e["error_percent"]),
                    str(e["p50_ms"]),
                    str(e["p90_ms"]),
                    str(e["p99_ms"]),
                    "-",
                    e["health"],
                )
            )
        else:
            bytes_ = f"{e['sent_bytes_per_second']}/{e['received_bytes_per_second']}"
            rows.append(
                (e["source"], e["destination"], "tcp", "-", "-", "-", "-", "-", bytes_, e["health"])
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def graph(args: argparse.Namespace) -> int:
    data = ask(args, f"/api/v1/graph?window={args.window}")
    if isinstance(data, int):
        return data
    if args.output == "json":
        print(json.dumps(data, indent=2))
    elif args.output == "dot":
        print(dot(data), end="")
    else:
        print(f"last {data['window_seconds']} s, from {_source(data)}")
        for n in data["nodes"]:
            print(f"{n['type']:9} {n['id']:24} {n['health']}")
        print()
        print(_table(data))
    return 0


def top(args: argparse.Namespace) -> int:
    while True:
        data = ask(args, f"/api/v1/graph?window={args.window}")
        if isinstance(data, int):
            return data
        if not args.once:
            print("\x1b[2J\x1b[H", end="")
        when = time.strftime("%H:%M:%S")
        print(f"gossamer top  (last {data['window_seconds']} s, {when}, from {_source(data)})")
        print(_table(data), flush=True)
        if args.once:
            return 0
        time.sleep(args.interval)
