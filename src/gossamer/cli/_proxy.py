"""``proxy-status`` (what every proxy holds, per xDS type) and ``proxy-config`` (one
proxy's own Envoy config dump), through the admin API.

``proxy-status`` exits 0 only when every proxy applied its current config, so scripts
and CI can wait on it: 1 when any proxy is STALE, NACKED or DISCONNECTED, 3 when no mesh
answers. ``proxy-config`` prints YAML unless ``-o json``; it exits 1 for an unknown or
unreachable proxy (naming the known ones), 3 when no mesh answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

import yaml

from gossamer.cli._client import NotRunning, api_base, ask, call

TYPE_COLUMNS = {"clusters": "CDS", "listeners": "LDS", "routes": "RDS", "endpoints": "EDS"}
"""The column of each xDS type the control plane tracks, by Envoy's own abbreviation."""

IN_SYNC = frozenset({"SYNCED", "NOT_SENT"})
"""States that need nothing more from the proxy."""


def _column(type_name: str) -> str:
    return TYPE_COLUMNS.get(type_name, type_name.upper())


def _types(proxies: list[dict[str, Any]]) -> list[str]:
    """Every type any proxy reports, in the order the API lists them (the push order)."""
    seen: dict[str, None] = {}
    for p in proxies:
        seen.update(dict.fromkeys(p.get("types", {})))
    return list(seen)


def in_sync(proxy: dict[str, Any]) -> bool:
    return all(t.get("state") in IN_SYNC for t in proxy.get("types", {}).values())


def status_text(proxies: list[dict[str, Any]]) -> str:
    """The table, then every NACK with Envoy's message and the user's resources behind it,
    then a count of proxies out of sync."""
    if not proxies:
        return "no proxies are running"
    types = _types(proxies)
    header = ["PROXY", "KIND", *(_column(t) for t in types)]
    rows = [
        [
            p["node"],
            p.get("kind", ""),
            *(p.get("types", {}).get(t, {}).get("state", "-") for t in types),
        ]
        for p in proxies
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    for p in proxies:
        for type_name, t in p.get("types", {}).items():
            if t.get("state") != "NACKED":
                continue
            times = t.get("nacks", 1)
            lines += [
                "",
                f"NACKED {p['node']} {_column(type_name)} ({type_name}), rejected "
                f"{times} time{'' if times == 1 else 's'}; the proxy keeps its last good "
                f"config (version {t.get('acked_version') or 'none'})",
                f"  envoy: {t.get('error', '')}",
            ]
            if t.get("rejected_resources"):
                lines.append(f"  rejected: {', '.join(t['rejected_resources'])}")
            origins = t.get("user_resources") or []
            lines += [f"  from {o}" for o in origins]
            if not origins:
                lines.append("  (no resource of your config maps to these names)")
    behind = [p for p in proxies if not in_sync(p)]
    if behind:
        lines += [
            "",
            f"{len(behind)} of {len(proxies)} proxies not in sync: "
            f"{', '.join(p['node'] for p in behind)}",
        ]
        if any(t.get("state") == "STALE" for p in behind for t in p.get("types", {}).values()):
            lines.append(
                "  STALE: sent, not applied yet; if it lasts, read the proxy's "
                "<node>.envoy.log in the log directory"
            )
    return "\n".join(lines)


def proxy_status(args: argparse.Namespace) -> int:
    data = ask(args, "/api/v1/proxies")
    if isinstance(data, int):
        return data
    proxies = data.get("proxies", [])
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        print(status_text(proxies))
    return 0 if all(in_sync(p) for p in proxies) else 1


def render_config(data: dict[str, Any], output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100).rstrip()


def proxy_config(args: argparse.Namespace) -> int:
    query = urllib.parse.urlencode({"section": args.section})
    path = f"/api/v1/proxies/{urllib.parse.quote(args.proxy, safe='')}/config?{query}"
    try:
        data = call(api_base(args.state_dir, args.api), path)
    except NotRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if "error" in data:
        known = data.get("proxies")
        extra = f" (proxies: {', '.join(known) or 'none'})" if known is not None else ""
        print(f"error: {data['error']}{extra}", file=sys.stderr)
        return 1
    print(render_config(data, args.output))
    return 0
