"""Changing the running mesh and looking back: ``apply``, ``diff``, ``history``,
``rollback``. Every change goes through the admin API, which validates and translates it
for every proxy before any proxy sees it, and records it as a revision."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gossamer.cli._client import NOT_RUNNING, NotRunning, api_base, ask, call
from gossamer.model import FORCEABLE
from gossamer.sources import ConfigPathError, config_files


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _read(path: str) -> tuple[dict[str, str], str] | str:
    """The files under ``path`` (absolute path -> text) and the resolved root, or why not."""
    root = Path(path).resolve()
    try:
        files = {str(f.resolve()): f.read_text(encoding="utf-8") for f in config_files(root)}
    except (ConfigPathError, OSError, UnicodeDecodeError) as exc:
        return f"cannot read {path}: {exc}"
    if not files:
        return f"no *.yaml or *.yml files under {path}"
    return files, str(root)


def _post_change(args: argparse.Namespace, *, dry_run: bool) -> tuple[int, dict[str, Any]]:
    """Send the files to the running mesh; (exit code so far, the API's answer)."""
    read = _read(args.file)
    if isinstance(read, str):
        print(f"error: {read}", file=sys.stderr)
        return 1, {}
    files, root = read
    base = api_base(args.state_dir, args.api)
    current = call(base, "/api/v1/revisions?limit=1")
    body = {
        "files": files,
        "root": root,
        "prune": args.prune,
        "dry_run": dry_run,
        "message": getattr(args, "message", None) or f"gossamer apply -f {args.file}",
        "expect_revision": current.get("current"),
        "force": getattr(args, "force", False),
    }
    return 0, call(base, "/api/v1/apply", "POST", timeout=120, body=body)


def render_changes(changes: dict[str, Any]) -> str:
    """Resources added, removed and changed (with diffs), then per proxy the Envoy
    resources that change, and which workloads and gateways that reaches."""
    lines = []
    resources = changes.get("resources", {})
    added, removed = resources.get("added", []), resources.get("removed", [])
    changed = resources.get("changed", [])
    lines.append(f"resources: {len(added)} added, {len(changed)} changed, {len(removed)} removed")
    for item in added:
        lines.append(f"+ {item['resource']} ({item['file']})")
    for item in removed:
        lines.append(f"- {item['resource']} ({item['file']})")
    for item in changed:
        lines.append(f"~ {item['resource']} ({item['file']})")
        lines += ["    " + line for line in item["diff"].rstrip("\n").splitlines()]
    proxies: dict[str, dict[str, dict[str, int]]] = changes.get("proxies", {})
    reaches = changes.get("reaches", [])
    lines.append(
        f"proxies with new config: {len(proxies)}"
        + (f" (reaches {', '.join(reaches)})" if reaches else "")
    )
    width = max((len(n) for n in proxies), default=0)
    for node, per_type in proxies.items():
        parts = [
            f"{kind} +{c['added']} ~{c['changed']} -{c['removed']}" for kind, c in per_type.items()
        ]
        lines.append(f"  {node:<{width}}  {'  '.join(parts)}")
    return "\n".join(lines)


def _problems(data: dict[str, Any]) -> None:
    for p in data.get("problems", []):
        where = ", ".join(x for x in (p.get("file"), p.get("resource"), p.get("field")) if x)
        hint = f" (hint: {p['hint']})" if p.get("hint") else ""
        print(f"{p['severity']} {p['code']}: {where}: {p['message']}{hint}", file=sys.stderr)


def _report(data: dict[str, Any], args: argparse.Namespace, verb: str) -> int:
    if args.output == "json":
        print(json.dumps(data, indent=2))
    if data.get("problems"):
        if args.output != "json":
            _problems(data)
            print(f"refused: the mesh keeps running unchanged; nothing was {verb}", file=sys.stderr)
            codes = {p["code"] for p in data["problems"] if p["severity"] == "error"}
            if codes <= FORCEABLE:
                print(
                    "these errors describe a config Envoy can run as written; after review, "
                    "`gossamer apply --force` applies it anyway",
                    file=sys.stderr,
                )
        return 1
    if data.get("conflict"):
        if args.output != "json":
            print(f"refused: {data['conflict']}", file=sys.stderr)
        return 1
    if "error" in data:
        print(f"error: {data['error']}", file=sys.stderr)
        return 1
    if args.output != "json":
        print(render_changes(data.get("changes", {})))
        for w in data.get("warnings", []):
            print(f"warning {w['code']}: {w['resource']}: {w['message']}", file=sys.stderr)
        if data.get("applied"):
            print(f"applied as revision {data['revision']}")
        elif verb == "applied":
            print("no change: nothing to apply")
    return 0


def apply(args: argparse.Namespace) -> int:
    try:
        code, data = _post_change(args, dry_run=args.dry_run)
    except NotRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NOT_RUNNING
    if code:
        return code
    return _report(data, args, "checked" if args.dry_run else "applied")


def diff(args: argparse.Namespace) -> int:
    """Like ``kubectl diff``: exit 0 when nothing would change, 1 when something would (or
    the change would be refused), 3 when no mesh runs."""
    try:
        code, data = _post_change(args, dry_run=True)
    except NotRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return NOT_RUNNING
    if code:
        return code
    status = _report(data, args, "changed")
    changes = data.get("changes", {})
    differs = bool(changes.get("proxies")) or any(changes.get("resources", {}).values())
    return 1 if status or differs else 0


def history(args: argparse.Namespace) -> int:
    if args.revision is not None:
        data = ask(args, f"/api/v1/revisions/{args.revision}")
    else:
        data = ask(args, f"/api/v1/revisions?limit={args.limit}")
    if isinstance(data, int):
        return data
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    if args.revision is not None:
        print(
            f"revision {data['revision']}: {_when(data['at'])} by {data['author']}: "
            f"{data['message']}"
        )
        print(render_changes(data["changes"]))
        return 0
    print(f"{'':1} {'REV':>4}  {'WHEN':19}  {'AUTHOR':20}  {'CHANGES':14}  MESSAGE")
    for r in data["revisions"]:
        mark = "*" if r["revision"] == data["current"] else ""
        changes = f"+{r['added']} ~{r['changed']} -{r['removed']}"
        print(
            f"{mark:1} {r['revision']:>4}  {_when(r['at'])}  {r['author'][:20]:20}  "
            f"{changes:14}  {r['message']}"
        )
    return 0


def rollback(args: argparse.Namespace) -> int:
    data = ask(
        args,
        "/api/v1/rollback",
        "POST",
        timeout=120,
        body={"revision": args.revision, "dry_run": args.dry_run},
    )
    if isinstance(data, int):
        return data
    return _report(data, args, "checked" if args.dry_run else "applied")
