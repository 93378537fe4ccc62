"""The ``gossamer`` command. Each group lives in its own module; this one only parses."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gossamer import __version__
from gossamer.cli import _changes, _config, _lifecycle, _observe, _proxy, _run
from gossamer.cli._client import DEFAULT_STATE_DIR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gossamer", description="Gossamer service mesh: Envoy sidecars, Python control plane."
    )
    parser.add_argument("--version", action="version", version=f"gossamer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="where `up` keeps its state")
        p.add_argument("--api", default=None, help="admin API URL (default: from the state dir)")

    up = sub.add_parser("up", help="run a local mesh from YAML files, in the foreground")
    up.add_argument("path", help="a mesh YAML file or a directory of them")
    up.add_argument(
        "--state-dir", default=DEFAULT_STATE_DIR, help="state and logs (default .gossamer)"
    )
    up.add_argument("--xds-port", type=int, default=15010, help="control plane xDS port (15010)")
    up.add_argument("--api-port", type=int, default=15080, help="admin API port (15080)")
    up.add_argument(
        "--first-port", type=int, default=20000, help="first port for sidecars and apps"
    )
    up.add_argument("--xds-api", choices=["sotw", "delta"], default="sotw", help="ADS variant")
    up.add_argument("--no-watch", action="store_true", help="do not apply file edits live")
    up.add_argument(
        "--config-timeout",
        type=float,
        default=30.0,
        help="seconds a sidecar may take to get its config",
    )
    up.add_argument(
        "--telemetry-interval", type=float, default=5.0, help="seconds between stats scrapes (5)"
    )
    up.add_argument(
        "--replica-xds-port",
        type=int,
        default=0,
        help="also run a standby control plane with xDS on this port; sidecars fail over to it",
    )
    up.add_argument(
        "--replica-api-port",
        type=int,
        default=0,
        help="the standby's status API port (default: its xDS port + 1)",
    )
    up.add_argument("-v", "--verbose", action="store_true")
    up.set_defaults(func=_lifecycle.up)

    run = sub.add_parser(
        "run",
        help="run a command as one more instance of a service, with its own sidecar",
        description="Join the running mesh as an instance of SERVICE: sidecar first, CMD once "
        "the sidecar has its whole config; on SIGTERM leave callers, drain, stop CMD, then "
        "the sidecar. Usage: gossamer run --service NAME -- CMD...",
    )
    run.add_argument("--service", required=True, help="the service this instance backs")
    run.add_argument("--workload", default="", help="which workload, if several back it")
    run.add_argument(
        "--config-timeout",
        type=float,
        default=30.0,
        help="seconds the sidecar may take to get its config before giving up (30)",
    )
    with_target(run)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    run.set_defaults(func=_run.run)

    replica = sub.add_parser(
        "replica",
        help="a standby control plane for the mesh `up` runs in STATE_DIR (up starts it)",
    )
    replica.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    replica.add_argument("--xds-port", type=int, required=True)
    replica.add_argument("--api-port", type=int, required=True)
    replica.add_argument("--primary-xds-port", type=int, default=15010)
    replica.set_defaults(func=_lifecycle.replica)

    status = sub.add_parser("status", help="instances, proxies and the last rejected change")
    with_target(status)
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.set_defaults(func=_lifecycle.status)

    down = sub.add_parser("down", help="stop a running `gossamer up`")
    with_target(down)
    down.set_defaults(func=_lifecycle.down)

    validate = sub.add_parser("validate", help="check mesh YAML offline; exit 1 on errors")
    validate.add_argument("path")
    validate.add_argument("-o", "--output", choices=["text", "json"], default="text")
    validate.set_defaults(func=_config.validate)

    analyze = sub.add_parser(
        "analyze",
        help="find mistakes, with stable codes (files or the running mesh); exit 1 on errors",
    )
    analyze.add_argument(
        "path",
        nargs="?",
        default=None,
        help="mesh YAML file or directory (default: the running mesh)",
    )
    analyze.add_argument("-o", "--output", choices=["text", "json"], default="text")
    with_target(analyze)
    analyze.set_defaults(func=_config.analyze)

    for name, helps in (
        ("apply", "apply config files to the running mesh as a new revision"),
        ("diff", "what applying config files would change; exit 1 if anything"),
    ):
        change = sub.add_parser(name, help=helps)
        change.add_argument("-f", "--file", required=True, help="a mesh YAML file or directory")
        change.add_argument(
            "--prune",
            action="store_true",
            help="also remove running files under that path that it no longer has",
        )
        change.add_argument("-o", "--output", choices=["text", "json"], default="text")
        with_target(change)
        if name == "apply":
            change.add_argument("--dry-run", action="store_true", help="check and show only")
            change.add_argument("-m", "--message", default=None, help="why (kept in history)")
            change.add_argument(
                "--force",
                action="store_true",
                help="apply despite errors Envoy can run as written (GSM0125, GSM0126)",
            )
            change.set_defaults(func=_changes.apply)
        else:
            change.set_defaults(func=_changes.diff)

    history = sub.add_parser("history", help="applied revisions, newest first; or one in full")
    history.add_argument("revision", nargs="?", type=int, default=None)
    history.add_argument("-n", "--limit", type=int, default=20)
    history.add_argument("-o", "--output", choices=["text", "json"], default="text")
    with_target(history)
    history.set_defaults(func=_changes.history)

    rollback = sub.add_parser("rollback", help="apply an earlier revision again, as a new one")
    rollback.add_argument("revision", type=int)
    rollback.add_argument("--dry-run", action="store_true", help="check and show only")
    rollback.add_argument("-o", "--output", choices=["text", "json"], default="text")
    with_target(rollback)
    rollback.set_defaults(func=_changes.rollback)

    logs = sub.add_parser("logs", help="a service's access log entries, from its own sink")
    logs.add_argument("service")
    logs.add_argument("--status", default="", help="a code (503) or a class (5xx)")
    logs.add_argument("--path", default="", help="only paths starting with this")
    logs.add_argument("--flags", default="", help="only entries whose response flags contain this")
    logs.add_argument("--since", default=None, help="only this recent, e.g. 10m, 1h, 30s")
    logs.add_argument("-n", "--limit", type=int, default=100)
    logs.add_argument("-o", "--output", choices=["text", "json"], default="text")
    with_target(logs)
    logs.set_defaults(func=_lifecycle.logs)

    graph = sub.add_parser("graph", help="the service graph: rates, errors, latency, bytes")
    graph.add_argument("-o", "--output", choices=["text", "dot", "json"], default="text")
    graph.add_argument("--window", type=float, default=60.0, help="seconds of history (60)")
    with_target(graph)
    graph.set_defaults(func=_observe.graph)

    top = sub.add_parser("top", help="a live table of the graph's edges (Ctrl-C stops)")
    top.add_argument("--window", type=float, default=30.0, help="seconds of history (30)")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="print once and exit")
    with_target(top)
    top.set_defaults(func=_observe.top)

    pstatus = sub.add_parser(
        "proxy-status",
        help="every proxy's xDS state per type, with NACKs mapped to your YAML; exit 1 if "
        "any is not synced",
    )
    pstatus.add_argument("-o", "--output", choices=["text", "json"], default="text")
    with_target(pstatus)
    pstatus.set_defaults(func=_proxy.proxy_status)

    pconfig = sub.add_parser("proxy-config", help="a proxy's config, from Envoy's config dump")
    pconfig.add_argument("proxy", help="a proxy's node id, as `proxy-status` lists it")
    pconfig.add_argument(
        "section",
        nargs="?",
        default="all",
        choices=["listeners", "routes", "clusters", "endpoints", "all"],
        help="which part of the dump (default all)",
    )
    pconfig.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    with_target(pconfig)
    pconfig.set_defaults(func=_proxy.proxy_config)

    config = sub.add_parser("config", help="inspect the mesh's config")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="WHAT")
    eff = config_sub.add_parser(
        "effective", help="a service's routes in match order, with every effective timeout"
    )
    eff.add_argument("service")
    eff.add_argument("-f", "--file", help="read config files instead of the running mesh")
    eff.add_argument("-o", "--output", choices=["text", "json"], default="text")
    with_target(eff)
    eff.set_defaults(func=_config.effective)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        # `gossamer status | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
