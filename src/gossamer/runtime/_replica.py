"""A standby control plane (``gossamer replica``): serves the same mesh's xDS from the
durable state ``up`` writes in its state directory (the config store's head revision and
``processes.json``: where every instance runs and which get traffic), so the snapshots are
the very ones ``up`` serves. Sidecars started with ``up --replica-xds-port`` fail over to
it when ``up``'s xDS port stops answering, and stay in sync with the last state ``up``
recorded. It changes nothing itself: no processes, no config, no revisions.

When ``up`` answers again, the replica closes its streams, so proxies go back to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gossamer.api import load_config
from gossamer.runtime._controlplane import ControlPlane, Proposal
from gossamer.runtime._leftovers import read_processes
from gossamer.runtime._ports import port_free
from gossamer.runtime._store import ConfigStore
from gossamer.xds import XdsServer

log = logging.getLogger("gossamer.replica")

HANDBACK_AFTER_S = 3.0
"""The primary must answer this long (the sidecars' health checks run every second)
before the replica closes its streams to send proxies back; it retries as often."""


@dataclass(slots=True)
class ReplicaOptions:
    state_dir: Path
    xds_port: int
    api_port: int
    primary_xds_port: int
    host: str = "127.0.0.1"
    poll_s: float = 0.5


class _NoNewPorts(RuntimeError):
    pass


def _no_new_ports() -> int:
    """The replica only serves instances ``up`` has placed; until ``up`` records a new
    one, that state is not served."""
    raise _NoNewPorts


class Replica:
    def __init__(self, options: ReplicaOptions) -> None:
        self.options = options
        self.control = ControlPlane(_no_new_ports)
        self.store = ConfigStore(options.state_dir / "config.db")
        self._seen: tuple[object, ...] = ()

    def refresh(self) -> bool:
        """Serve the state ``up`` recorded last, if it changed; whether it did."""
        number = self.store.head_number()
        processes = read_processes(self.options.state_dir)
        if not number or processes is None or processes.revision != number:
            return False  # `up` has not recorded a consistent state (yet)
        seen: tuple[object, ...] = (
            number,
            processes.instances,
            processes.joined,
            sorted(processes.not_serving),
            processes.gateways,
        )
        if seen == self._seen:
            return False  # checked before loading the revision: this runs twice a second
        head = self.store.get(number)
        if head is None:
            return False
        config, _problems = load_config(list(head.sources))
        if config is None:
            return False
        self.control.attached = processes.attached()
        self.control.state = processes.placed(config)
        try:
            proposal = self.control.propose(list(head.sources))
        except _NoNewPorts:
            return False
        if not isinstance(proposal, Proposal):
            return False
        changed = self.control.publish(proposal, head.number)
        self._seen = seen
        log.info("serving revision %d (%d proxies updated)", head.number, len(changed))
        return True


async def run_replica(options: ReplicaOptions) -> int:
    replica = Replica(options)
    xds = XdsServer(replica.control.cache, replica.control.book, access_logs=_drop)
    await xds.start(options.host, options.xds_port)
    app = web.Application()

    async def proxies(_request: web.Request) -> web.Response:
        nodes = sorted(replica.control.cache.nodes())
        return web.json_response(
            {
                "revision": replica.control.revision.number,
                "proxies": [replica.control.book.summary(n) for n in nodes],
            }
        )

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "revision": replica.control.revision.number})

    app.add_routes([web.get("/api/v1/proxies", proxies), web.get("/healthz", healthz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, options.host, options.api_port).start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    log.info(
        "standby for the mesh in %s: xDS on %s:%d, API on %s:%d",
        options.state_dir,
        options.host,
        options.xds_port,
        options.host,
        options.api_port,
    )
    loop_time = asyncio.get_running_loop().time
    primary_up_since: float | None = None
    handed_back_at = 0.0
    try:
        while not stopping.is_set():
            with contextlib.suppress(Exception):
                replica.refresh()
            now = loop_time()
            if port_free(options.primary_xds_port, options.host):
                primary_up_since = None
            elif primary_up_since is None:
                primary_up_since = now
            connected = any(
                replica.control.book.summary(n)["connected"] for n in replica.control.cache.nodes()
            )
            if (
                connected
                and primary_up_since is not None
                and now - primary_up_since > HANDBACK_AFTER_S
                and now - handed_back_at > HANDBACK_AFTER_S
            ):
                # `up` answers again, and the sidecars' health checks have seen it: close
                # our streams so they reconnect to it.
                log.info("the primary answers again; handing proxies back")
                handed_back_at = now
                await xds.stop(0.2)
                xds = XdsServer(replica.control.cache, replica.control.book, access_logs=_drop)
                await xds.start(options.host, options.xds_port)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), options.poll_s)
    finally:
        await runner.cleanup()
        await xds.stop(0.2)
        replica.store.close()
    return 0


def _drop(_node: str, _log_name: str, _entries: list[dict[str, object]]) -> None:
    """Access-log entries sent to the standby are not kept (its telemetry is ``up``'s)."""
