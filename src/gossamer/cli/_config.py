"""Config commands: ``validate`` and ``analyze`` (offline on files), ``analyze`` and
``config effective`` (also against the running mesh)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gossamer.api import load_config
from gossamer.cli._client import NotRunning, api_base, ask, call
from gossamer.model import Problem, Severity
from gossamer.model import analyze as analyze_config
from gossamer.sources import load_sources
from gossamer.translate import UnknownService, effective_routes


def validate(args: argparse.Namespace) -> int:
    """The same loading and checks as ``up`` and a live edit, minus what needs this machine
    (whether each command exists), so it can run in a CI pipeline."""
    sources, problems = load_sources(Path(args.path))
    config = None
    if sources:
        config, problems = load_config(sources)
    if args.output == "json":
        valid = config is not None
        print(json.dumps({"valid": valid, "problems": [p.to_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p, file=sys.stderr)
        if config is not None:
            print(
                f"valid: {len(config.workloads)} workloads, {len(config.services())} services, "
                f"{len(config.routes)} routes"
            )
    return 0 if config is not None else 1


def analyze(args: argparse.Namespace) -> int:
    """Every finding, with its code: offline on files (for CI: exit 1 on errors), or the
    running mesh's current revision through the admin API."""
    if args.path:
        sources, problems = load_sources(Path(args.path))
        config = None
        if sources:
            config, problems = load_config(sources)
        if config is not None:
            problems += [p for p in analyze_config(config) if p not in problems]
        where = args.path
        head: dict[str, object] = {"path": args.path}
    else:
        data = ask(args, "/api/v1/analyze", hint="; or pass PATH to analyze config files")
        if isinstance(data, int):
            return data
        problems = [Problem.from_dict(p) for p in data["problems"]]
        where = f"revision {data['revision']} of the running mesh"
        head = {"revision": data["revision"]}
    problems.sort(key=lambda p: (p.file, p.document, p.resource, p.field, p.code))
    n_errors = sum(p.severity is Severity.ERROR for p in problems)
    n_warnings = len(problems) - n_errors
    if args.output == "json":
        body = {**head, "errors": n_errors, "warnings": n_warnings}
        print(json.dumps({**body, "problems": [p.to_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p)
        print(f"{where}: {_count(n_errors, 'error')}, {_count(n_warnings, 'warning')}")
    return 1 if n_errors else 0


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def effective(args: argparse.Namespace) -> int:
    """The routes callers of a service get, with every timeout and where it comes from."""
    if args.file:
        sources, problems = load_sources(Path(args.file))
        config = None
        if sources:
            config, problems = load_config(sources)
        if config is None:
            for p in problems:
                print(p, file=sys.stderr)
            return 1
        try:
            data = effective_routes(config, args.service)
        except UnknownService:
            known = ", ".join(s.name for s in config.services())
            print(f"error: no service `{args.service}` (services: {known})", file=sys.stderr)
            return 1
    else:
        try:
            data = call(api_base(args.state_dir, args.api), f"/api/v1/effective/{args.service}")
        except NotRunning as exc:
            print(f"error: {exc}; or pass -f PATH to read config files", file=sys.stderr)
            return 3
        if "error" in data:
            print(
                f"error: {data['error']} (services: {', '.join(data.get('services', []))})",
                file=sys.stderr,
            )
            return 1
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"service {data['service']}: default request timeout {data['default_request_timeout']} "
        f"({data['default_request_timeout_source']}); outbound policy "
        f"{data['outbound_traffic_policy']}"
    )
    for port in data["ports"]:
        print(f"port {port['port']} ({port['protocol']}):")
        if not port["routes"]:
            print("  tcp: proxied per connection, no HTTP routes")
        for n, r in enumerate(port["routes"], 1):
            print(f"  {n}. {r['match']}")
            print(f"     from {r['route']}")
            if "redirect" in r:
                print(f"     redirect {r['redirect']}")
                continue
            print(f"     to {', '.join(r['backends'])}")
            line = f"     timeout {r['timeout']} ({r['timeout_source']})"
            if "per_try_timeout" in r:
                line += f", per try {r['per_try_timeout']}"
            print(line)
            if "retries" in r:
                print(f"     retries {r['retries']}")
            if "filters" in r:
                print(f"     filters {', '.join(r['filters'])}")
    return 0
