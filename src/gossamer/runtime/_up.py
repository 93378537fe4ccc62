"""``gossamer up``: run a whole local mesh in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any, TextIO

from gossamer.runtime._api import serve
from gossamer.runtime._local import LocalMesh, LocalOptions, StartupFailed
from gossamer.sidecar import EnvoyNotFound, envoy_path, raise_fd_limit
from gossamer.xds import XdsServer

log = logging.getLogger("gossamer.up")


def instance_table(status: dict[str, object]) -> str:
    """Service, instance, app port, sidecar ports and admin port, one row per instance;
    then one row per gateway with its listeners."""
    rows = [("SERVICES", "INSTANCE", "APP PORT", "SIDECAR PORTS", "ADMIN", "STATE")]
    for inst in status["instances"]:  # type: ignore[attr-defined]
        sidecar = [f"in {p}" for p in inst["inbound_ports"].values()]
        sidecar.append(f"http-proxy {inst['outbound_http_port']}")
        sidecar += [
            f"{t['service']}:{t['port']}→{t['local_port']}" for t in inst["outbound_tcp_ports"]
        ]
        rows.append(
            (
                ",".join(inst["services"]) or "-",
                inst["name"],
                ",".join(str(p) for p in inst["app_ports"].values()) or "-",
                " ".join(sidecar),
                str(inst["admin_port"]),
                inst["state"],
            )
        )
    for gw in status.get("gateways", ()):  # type: ignore[attr-defined]
        listeners = " ".join(f"{lst['protocol'].lower()} {lst['port']}" for lst in gw["listeners"])
        rows.append(("(gateway)", gw["node"], "-", listeners, str(gw["admin_port"]), gw["state"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


async def run_up(options: LocalOptions, out: TextIO = sys.stdout) -> int:
    try:
        envoy_path()
    except EnvoyNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    raise_fd_limit()
    mesh = LocalMesh(options)
    port_problems = mesh.check_ports()
    if port_problems:
        for p in port_problems:
            print(p, file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, mesh.stopping.set)
    xds = XdsServer(mesh.control.cache, mesh.control.book, access_logs=mesh.on_access_log)
    await xds.start(options.host, options.xds_port)
    api = await serve(mesh)
    watcher: asyncio.Task[None] | None = None
    # Written before instances start, so `status` and `down` find a mesh that is starting.
    mesh.write_state_file()
    try:
        print(
            f"gossamer: xDS on {options.host}:{options.xds_port} ({options.xds_api}), "
            f"admin API on http://{options.host}:{options.api_port}",
            file=out,
        )
        try:
            await mesh.start()
        except StartupFailed as exc:
            print("gossamer: the mesh could not start:", file=sys.stderr)
            for p in exc.problems:
                print(p, file=sys.stderr)
            return 1
        status = mesh.status()
        print(instance_table(status), file=out)
        print(_where_to_look(status, options), file=out)
        print(
            f"gossamer: revision {mesh.control.revision.number} running; watching "
            f"{options.config_path} for changes. Ctrl-C stops everything.",
            file=out,
            flush=True,
        )
        if options.watch:
            watcher = asyncio.create_task(mesh.run_watch())
        pid_writer = asyncio.create_task(_refresh_pids(mesh))
        collector = asyncio.create_task(_collect(mesh))
        await mesh.stopping.wait()
        pid_writer.cancel()
        collector.cancel()
        print("gossamer: stopping…", file=out, flush=True)
        return 0
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await mesh.stop()
        await api.cleanup()
        await xds.stop(0.5)
        mesh.remove_state_file()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _where_to_look(status: dict[str, Any], options: LocalOptions) -> str:
    lines = [
        f"  status:  gossamer status        (admin API http://{options.host}:{options.api_port})",
        f"  logs:    {options.state_dir / 'logs'}/<instance>.log (app), <instance>.envoy.log",
        f"  access:  {options.state_dir / 'access'}/<node>.log, or: gossamer logs SERVICE",
    ]
    for gw in status.get("gateways", ()):
        for lst in gw["listeners"]:
            scheme = "https" if lst["protocol"] == "HTTPS" else "http"
            lines.append(f"  gateway: {scheme}://127.0.0.1:{lst['port']}/   ({gw['name']})")
    instances = status["instances"]
    hosts = [
        s["name"] if p["port"] == 80 else f"{s['name']}:{p['port']}"
        for s in status["services"]
        for p in s["ports"]
        if p["protocol"] != "tcp"
    ]
    if instances and hosts:
        proxy = instances[0]["outbound_http_port"]
        lines.append(
            f"  call:    curl -x http://127.0.0.1:{proxy} http://{hosts[0]}/   "
            f"(through {instances[0]['name']}'s sidecar)"
        )
    return "\n".join(lines)


async def _collect(mesh: LocalMesh) -> None:
    """Scrape every proxy's statistics for /metrics; a failure skips one round only."""
    while True:
        await asyncio.sleep(mesh.options.telemetry_interval_s)
        try:
            await mesh.collect_telemetry()
        except Exception:
            log.exception("telemetry collection failed; trying again next round")


async def _refresh_pids(mesh: LocalMesh) -> None:
    """Once a second: the pid file, and access log rotation."""
    while True:
        mesh.write_pids()
        await mesh.prune_attached()
        try:
            for node in await mesh.rotate_access_logs():
                log.info("rotated the access log of %s", node)
        except OSError as exc:
            # A full disk or a vanished file must not stop the mesh; say it and go on.
            log.error("access log rotation failed: %s", exc)
        await asyncio.sleep(1.0)
