"""``up``, ``status`` and ``down``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import urllib.parse
from pathlib import Path

from gossamer.api import parse_duration_ms
from gossamer.cli._client import NotRunning, api_base, ask, call
from gossamer.model import Problem
from gossamer.runtime import LocalOptions, ReplicaOptions, instance_table, run_replica, run_up


def up(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    options = LocalOptions(
        config_path=Path(args.path).resolve(),
        state_dir=Path(args.state_dir).resolve(),
        xds_port=args.xds_port,
        api_port=args.api_port,
        xds_api=args.xds_api,
        watch=not args.no_watch,
        first_port=args.first_port,
        config_timeout_s=args.config_timeout,
        telemetry_interval_s=args.telemetry_interval,
        replica_xds_port=args.replica_xds_port,
        replica_api_port=args.replica_api_port,
    )
    return asyncio.run(run_up(options))


def replica(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    options = ReplicaOptions(
        state_dir=Path(args.state_dir).resolve(),
        xds_port=args.xds_port,
        api_port=args.api_port,
        primary_xds_port=args.primary_xds_port,
    )
    return asyncio.run(run_replica(options))


def status(args: argparse.Namespace) -> int:
    data = ask(args, "/api/v1/status")
    if isinstance(data, int):
        return data
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    print(f"revision {data['revision']} of {data['config_path']}; logs in {data['log_dir']}")
    print(instance_table(data))
    proxies = [(i["name"], i["proxy"]) for i in data["instances"]]
    proxies += [(g["node"], g["proxy"]) for g in data.get("gateways", [])]
    for node, proxy in proxies:
        for type_name, t in proxy["types"].items():
            if t["state"] == "NACKED":
                print(f"NACK {node} {type_name}: {t.get('error', '')[:300]}")
                for origin in t.get("user_resources", []):
                    print(f"  from {origin}")
    if data.get("warnings"):
        print(f"\nrevision {data['revision']} applied with warnings:")
        for p in data["warnings"]:
            print("  " + str(Problem.from_dict(p)).replace("\n", "\n  "))
    rejected = data.get("rejected")
    if rejected:
        when = time.strftime("%H:%M:%S", time.localtime(rejected["at"]))
        print(f"\nlast change REJECTED at {when}; the mesh runs revision {data['revision']}:")
        for p in rejected["problems"]:
            print("  " + str(Problem.from_dict(p)).replace("\n", "\n  "))
        return 1
    return 0


def down(args: argparse.Namespace) -> int:
    state_file = Path(args.state_dir) / "up.json"
    if (
        args.api is None
        and not state_file.exists()
        and not (Path(args.state_dir) / "pids").exists()
    ):
        # Never guess which mesh to stop.
        print(
            f"error: no running mesh recorded in {args.state_dir}/; run `down` where `up` runs, "
            "or pass --state-dir DIR or --api URL",
            file=sys.stderr,
        )
        return 3
    if args.api is None and not state_file.exists():
        return _kill_leftovers(Path(args.state_dir), "`up` left no up.json")
    base = api_base(args.state_dir, args.api)
    try:
        call(base, "/api/v1/shutdown", method="POST")
    except NotRunning as exc:
        return _kill_leftovers(Path(args.state_dir), str(exc))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            call(base, "/healthz", timeout=1)
        except NotRunning:
            print("gossamer: mesh stopped")
            return 0
        time.sleep(0.2)
    if state_file.exists():
        pid = json.loads(state_file.read_text()).get("pid")
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    print("error: the mesh did not stop within 30s", file=sys.stderr)
    return 1


def _kill_leftovers(state_dir: Path, why: str) -> int:
    """``up`` is gone (e.g. killed with -9): stop the children it left, from its pid file."""
    pid_file = state_dir / "pids"
    if not pid_file.exists():
        print(f"error: {why}", file=sys.stderr)
        return 3
    killed = 0
    for line in pid_file.read_text().split():
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.killpg(int(line), signal.SIGTERM)
            killed += 1
    for name in ("pids", "up.json", "processes.json"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    print(f"gossamer: `up` was not running; stopped {killed} leftover process group(s)")
    return 0


def logs(args: argparse.Namespace) -> int:
    params = {"status": args.status, "path": args.path, "flags": args.flags, "limit": args.limit}
    if args.since:
        try:
            params["since"] = parse_duration_ms(args.since) / 1000
        except ValueError as exc:
            print(f"error: --since: {exc}", file=sys.stderr)
            return 2
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v not in ("", None)})
    data = ask(args, f"/api/v1/logs/{args.service}?{query}")
    if isinstance(data, int):
        return data
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    for e in data["entries"]:
        if e.get("kind") == "tcp":
            print(
                f"{e['start_time']} {e['node']} {e['direction']} tcp "
                f"{e.get('upstream_cluster', '')} sent={e['bytes_sent']} "
                f"received={e['bytes_received']} {e['duration_ms']}ms {e.get('response_flags')}"
            )
            continue
        print(
            f"{e['start_time']} {e['node']} {e['direction']} {e['method']} "
            f"{e['authority']}{e['path']} {e['response_code']} {e.get('response_flags')} "
            f"{e['duration_ms']}ms -> {e.get('upstream_host') or '-'}"
        )
    if data.get("unreadable_lines"):
        print(f"({data['unreadable_lines']} unreadable lines skipped)", file=sys.stderr)
    return 0
