"""A workload instance: its Envoy sidecar and its app, started and stopped in order.

Start: Envoy first; the app only once the control plane reports that this proxy has
applied its whole configuration (not merely Envoy's ``/ready``). Stop: out of every
caller's endpoints (and every caller has applied that), then the inbound requests in flight
finish, then the app stops while the sidecar still carries its outbound calls; then Envoy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp

from gossamer.model import Instance, Workload
from gossamer.sidecar._bootstrap import XdsApi, bootstrap
from gossamer.sidecar._envoy import envoy_command
from gossamer.sidecar._process import ManagedProcess
from gossamer.translate import names

log = logging.getLogger("gossamer.sidecar")

WaitSynced = Callable[[str, float], Awaitable[bool]]
"""(node id, timeout in seconds) -> whether the proxy applied its config in time."""

SetServing = Callable[[str, bool], None]
"""(node id, serving) -> add the instance to, or remove it from, every caller's endpoints."""

Leave = Callable[[str, float], Awaitable[tuple[list[str], list[str]]]]
"""(node id, timeout in seconds) -> take the instance out of every caller's endpoints and
wait until each caller whose config that changed has applied it; returns the callers
waited for, and those of them that had not applied it within the timeout."""

LEAVE_TIMEOUT_S = 5.0
"""The longest a stopping instance waits for its callers to apply its removal; a caller
still lagging then is logged, and the stop goes on."""

DRAIN_POLL_S = 0.05
"""How often a stopping instance's sidecar is asked what is still in flight to the app."""


class AppNotReady(RuntimeError):
    """The app exited, or never listened on its port, after it was started."""


class ConfigTimeout(RuntimeError):
    """The sidecar did not receive and apply its config in time; the app was not started."""


def downstream_connection_budget() -> int:
    """Two descriptors per proxied connection, plus headroom for Envoy itself."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 100_000
    return max(64, (soft - 64) // 2)


def raise_fd_limit() -> int:
    """Raise our soft descriptor limit to the hard one; children (Envoy) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def env_key(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def app_path(workload: Workload, base: Mapping[str, str]) -> str:
    """The PATH an app runs with: the workload's own if it sets one; otherwise the
    inherited one with Gossamer's interpreter first, so ``python3`` means the same Python."""
    explicit = dict(workload.env).get("PATH")
    if explicit is not None:
        return explicit
    return os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])


def app_environment(
    instance: Instance, workload: Workload, base: Mapping[str, str]
) -> dict[str, str]:
    """What an app sees: its ports, its proxy, who it is, where TCP services are.

    Precedence: the inherited environment, then the mesh's variables, then the workload's
    own ``env`` (an explicit setting always wins)."""
    env = dict(base)
    proxy = f"http://127.0.0.1:{instance.outbound_http_port}"
    env.update(
        {
            "HTTP_PROXY": proxy,
            "http_proxy": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "GOSSAMER_INSTANCE": instance.name,
            "GOSSAMER_WORKLOAD": workload.name,
            "GOSSAMER_SERVICES": ",".join(workload.services),
            "GOSSAMER_VERSION": workload.version,
            "GOSSAMER_ZONE": workload.zone,
            "PYTHONUNBUFFERED": "1",
        }
    )
    for i, (service_port, app_port) in enumerate(instance.app_ports):
        port = workload.port(service_port)
        if i == 0:
            env["PORT"] = str(app_port)
        if port is not None:
            env[f"GOSSAMER_PORT_{env_key(port.name)}"] = str(app_port)
    first_port_of: set[str] = set()
    for service, service_port, local in instance.outbound_tcp_ports:
        # Kubernetes' own convention for finding a service from inside a pod.
        prefix = env_key(service)
        if prefix not in first_port_of:
            first_port_of.add(prefix)
            env[f"{prefix}_SERVICE_HOST"] = instance.address
            env[f"{prefix}_SERVICE_PORT"] = str(local)
        env[f"{prefix}_SERVICE_PORT_{service_port}"] = str(local)
    env.update(dict(workload.env))
    env["PATH"] = app_path(workload, base)
    return env


class InstanceRunner:
    def __init__(
        self,
        instance: Instance,
        workload: Workload,
        *,
        state_dir: Path,
        xds_host: str,
        xds_port: int,
        xds_api: XdsApi,
        xds_replica_port: int = 0,
        wait_synced: WaitSynced,
        set_serving: SetServing,
        leave: Leave,
        before_app: Callable[[], Awaitable[None]] | None = None,
        dies_with_parent: bool = False,
        config_timeout_s: float = 30.0,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.instance = instance
        self.workload = workload
        self._wait_synced = wait_synced
        self._set_serving = set_serving
        self._leave = leave
        self._before_app = before_app
        """Awaited between the sidecar's config and the app's start (dependencies)."""
        self._ready_task: asyncio.Task[None] | None = None
        self._config_timeout = config_timeout_s
        logs = state_dir / "logs"
        # Envoy runs in state_dir and writes access logs to access/<node>.log.
        (state_dir / "access").mkdir(parents=True, exist_ok=True)
        config_path = state_dir / "envoy" / f"{instance.name}.json"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(
            json.dumps(
                bootstrap(
                    node_id=instance.name,
                    cluster=workload.name,
                    admin_port=instance.admin_port,
                    xds_host=xds_host,
                    xds_port=xds_port,
                    zone=workload.zone,
                    api=xds_api,
                    replica_port=xds_replica_port,
                    max_downstream_connections=downstream_connection_budget(),
                ),
                indent=2,
            )
        )
        env = dict(base_env if base_env is not None else os.environ)
        self.envoy = ManagedProcess(
            f"{instance.name}/envoy",
            envoy_command(str(config_path)),
            env=env,
            cwd=str(state_dir),
            log_path=logs / f"{instance.name}.envoy.log",
            on_exit=self._sidecar_exited,
            on_restart=self._sidecar_restarted,
            dies_with_parent=dies_with_parent,
        )
        self._sidecar_down_at: float | None = None
        self.sidecar_gaps_s: list[float] = []
        """For each sidecar crash: from the crash until the instance served again."""
        self.app = ManagedProcess(
            f"{instance.name}/app",
            list(workload.command),
            env=app_environment(instance, workload, env),
            cwd=workload.working_dir or ".",
            log_path=logs / f"{instance.name}.log",
            on_exit=self._app_exited,
            on_restart=self._app_restarted,
            dies_with_parent=dies_with_parent,
        )
        self.state = "created"

    async def start(self) -> None:
        """Sidecar, then (once its config is applied) the app. Raises on failure,
        leaving nothing running."""
        self.state = "starting"
        await self.envoy.start()
        if not await self._wait_synced(self.instance.name, self._config_timeout):
            await self.envoy.stop()
            self.state = "failed"
            raise ConfigTimeout(
                f"{self.instance.name}: the sidecar did not apply its configuration within "
                f"{self._config_timeout:.0f}s; the app was not started (see "
                f"{self.envoy.log_path})"
            )
        if self._before_app is not None:
            await self._before_app()
        try:
            await self.app.start()
            await self._wait_app_listening()
        except Exception:
            await self.app.stop(1.0)
            await self.envoy.stop()
            self.state = "failed"
            raise
        self.state = "running"
        self._set_serving(self.instance.name, True)

    async def adopt(self, envoy_pid: int, app_pid: int) -> bool:
        """Take over this instance's sidecar and app, left running by an ``up`` that was
        killed: they kept serving with the sidecar's last config meanwhile. False (with
        nothing left running) unless both still run our commands."""
        if not self.envoy.adopt(envoy_pid):
            return False
        if not self.app.adopt(app_pid, env_marker=f"GOSSAMER_INSTANCE={self.instance.name}"):
            await self.envoy.stop(2.0)
            return False
        self.state = "running"
        return True

    def _app_exited(self, _proc: ManagedProcess, _code: int) -> None:
        """A crashed app leaves callers' endpoints until it listens again."""
        if self.state == "running":
            self.state = "restarting"
            self._set_serving(self.instance.name, False)

    def _sidecar_exited(self, _proc: ManagedProcess, code: int) -> None:
        """A crashed sidecar refuses every call to the app: out of callers' endpoints
        until it is back with its config (the supervisor restarts it)."""
        if self.state != "running":
            return
        self.state = "sidecar-restarting"
        self._sidecar_down_at = asyncio.get_running_loop().time()
        self._set_serving(self.instance.name, False)
        log.warning(
            "%s: its sidecar exited (code %s); out of callers' endpoints", self.instance.name, code
        )

    def _sidecar_restarted(self, _proc: ManagedProcess) -> None:
        self._ready_task = asyncio.create_task(self._serve_when_synced())

    async def _serve_when_synced(self) -> None:
        """The restarted sidecar has its config and the app still listens: back in
        rotation, and the gap (crash to serving again) is reported."""
        if not await self._wait_synced(self.instance.name, self._config_timeout):
            log.error("%s: its restarted sidecar got no config in time", self.instance.name)
            return
        try:
            await self._wait_app_listening(patient=True)
        except AppNotReady:
            return
        if self.state != "sidecar-restarting":
            return
        self.state = "running"
        self._set_serving(self.instance.name, True)
        if self._sidecar_down_at is not None:
            gap = asyncio.get_running_loop().time() - self._sidecar_down_at
            self.sidecar_gaps_s.append(round(gap, 3))
            log.warning(
                "%s: its sidecar is back; the instance served no traffic for %.2fs",
                self.instance.name,
                gap,
            )

    def _app_restarted(self, _proc: ManagedProcess) -> None:
        self._ready_task = asyncio.create_task(self._serve_when_listening())

    async def _serve_when_listening(self) -> None:
        try:
            await self._wait_app_listening(patient=True)
        except AppNotReady:
            return  # it exited again; the supervisor restarts it and we wait again
        if self.state == "restarting":
            self.state = "running"
            self._set_serving(self.instance.name, True)

    async def _wait_app_listening(self, patient: bool = False) -> None:
        """The app is ready once every port it serves accepts connections. At start it
        gets ``config_timeout``; after a crash (``patient``) it may take as long as it
        runs, since its callers already route around it."""
        loop = asyncio.get_running_loop()
        deadline = float("inf") if patient else loop.time() + self._config_timeout
        pending = [port for _service_port, port in self.instance.app_ports]
        while pending:
            if not self.app.running:
                raise AppNotReady(
                    f"{self.instance.name}: the app exited with code {self.app.last_exit} "
                    f"before listening on port {pending[0]} (see {self.app.log_path})"
                )
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", pending[0])
            except OSError:
                if loop.time() > deadline:
                    raise AppNotReady(
                        f"{self.instance.name}: the app did not listen on $PORT "
                        f"({pending[0]}) within {self._config_timeout:.0f}s "
                        f"(see {self.app.log_path})"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            pending.pop(0)

    def update_workload(self, workload: Workload) -> None:
        """A new definition of this instance's workload that needs no restart (only what
        the processes do not see changed, such as the shutdown settings): the next stop
        follows it."""
        self.workload = workload

    async def stop(self, drain: bool = True) -> None:
        """Stop without failing a request (docs/concepts.md#readiness-and-ordering).

        With ``drain``: leave every caller's endpoints and wait (at most
        ``LEAVE_TIMEOUT_S``) until each caller has applied that, then wait (at most the
        workload's drain timeout) until no inbound request is in flight. Without (the
        whole mesh stops, callers included): neither. Then SIGTERM to the app, SIGKILL
        after the workload's grace period, while the sidecar still carries the app's
        outbound calls; then the sidecar."""
        serving = self.state == "running"
        self.state = "stopping"  # a crash from here on does not put it back in rotation
        if self._ready_task is not None:
            self._ready_task.cancel()
        if drain and serving:
            await self._leave_and_drain()
        elif drain:
            self._set_serving(self.instance.name, False)
        await self.app.stop(self.workload.grace_period_ms / 1000)
        await self.envoy.stop(2.0)
        self.state = "stopped"

    async def _leave_and_drain(self) -> None:
        name = self.instance.name
        loop = asyncio.get_running_loop()
        started = loop.time()
        callers, lagging = await self._leave(name, LEAVE_TIMEOUT_S)
        left = loop.time()
        if lagging:
            log.warning(
                "%s: %d caller(s) had not applied its removal from their endpoints after "
                "%.1fs: %s (see `gossamer status`); stopping it anyway",
                name,
                len(lagging),
                LEAVE_TIMEOUT_S,
                ", ".join(sorted(lagging)),
            )
        drain_s = self.workload.drain_timeout_ms / 1000
        in_flight = await self._drain_inbound(drain_s)
        if in_flight:
            log.warning(
                "%s: %d inbound request(s) or connection(s) still in flight after the "
                "drain timeout (%.1fs); stopping its app anyway",
                name,
                in_flight,
                drain_s,
            )
        log.info(
            "%s: out of every caller's endpoints after %.1f ms (%d applied it), then "
            "%.0f ms for the inbound requests in flight; stopping its app",
            name,
            (left - started) * 1000,
            len(callers) - len(lagging),
            (loop.time() - left) * 1000,
        )

    def inbound_gauges(self) -> list[str]:
        """The sidecar's statistics that count what is in flight to the app: active
        requests of each HTTP inbound listener, open connections to the app of each TCP
        one (a TCP connection is in flight for as long as it is open)."""
        gauges = []
        for port in self.workload.ports:
            if port.protocol.is_http:
                gauges.append(f"http.{names.inbound_listener(port.port)}.downstream_rq_active")
            else:
                gauges.append(f"cluster.{names.inbound_cluster(port.port)}.upstream_cx_active")
        return gauges

    async def _drain_inbound(self, timeout_s: float) -> int:
        """Wait until nothing is in flight to the app, at most ``timeout_s``; returns what
        still was then (0: drained). Nothing must be in flight at two polls in a row, so
        that a request routed here just before its caller applied the removal, still on
        its way, is waited for too."""
        gauges = self.inbound_gauges()
        if not gauges or timeout_s <= 0:
            return 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        url = f"http://127.0.0.1:{self.instance.admin_port}/stats"
        query = {"filter": "^(" + "|".join(re.escape(g) for g in gauges) + ")$"}
        quiet, in_flight = 0, 0
        # aiohttp: Envoy's admin refuses HTTP/1.0 clients.
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    async with session.get(url, params=query) as reply:
                        text = await reply.text()
                    in_flight = sum(
                        int(value)
                        for line in text.splitlines()
                        if (value := line.partition(": ")[2].strip()).isdigit()
                    )
                    quiet = quiet + 1 if in_flight == 0 else 0
                except (OSError, TimeoutError, aiohttp.ClientError):
                    if not self.envoy.running:
                        return 0  # no sidecar: nothing can be in flight through it
                    quiet = 0
                if quiet >= 2:
                    return 0
                if loop.time() >= deadline:
                    return in_flight
                await asyncio.sleep(min(DRAIN_POLL_S, max(0.0, deadline - loop.time())))

    def describe(self) -> dict[str, object]:
        inst = self.instance
        return {
            "name": inst.name,
            "workload": inst.workload,
            "services": list(self.workload.services),
            "version": self.workload.version,
            "zone": self.workload.zone,
            "state": self.state,
            "app_ports": {str(k): v for k, v in inst.app_ports},
            "inbound_ports": {str(k): v for k, v in inst.inbound_ports},
            "outbound_http_port": inst.outbound_http_port,
            "outbound_tcp_ports": [
                {"service": s, "port": p, "local_port": lp} for s, p, lp in inst.outbound_tcp_ports
            ],
            "admin_port": inst.admin_port,
            "envoy_pid": self.envoy.pid,
            "app_pid": self.app.pid,
            "envoy_restarts": self.envoy.restarts,
            "sidecar_gaps_s": list(self.sidecar_gaps_s),
            "app_restarts": self.app.restarts,
            "app_last_exit": self.app.last_exit,
            "log": str(self.app.log_path),
        }


class GatewayRunner:
    """An ingress gateway: one Envoy, no app. Its listeners come over xDS like a sidecar's,
    so a listener or route change never restarts it."""

    def __init__(
        self,
        name: str,
        node_id: str,
        admin_port: int,
        *,
        state_dir: Path,
        xds_host: str,
        xds_port: int,
        xds_api: XdsApi,
        xds_replica_port: int = 0,
        wait_synced: WaitSynced,
        config_timeout_s: float = 30.0,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.node_id = node_id
        self.admin_port = admin_port
        self._wait_synced = wait_synced
        self._config_timeout = config_timeout_s
        config_path = state_dir / "envoy" / f"{node_id}.json"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        (state_dir / "access").mkdir(parents=True, exist_ok=True)
        config_path.write_text(
            json.dumps(
                bootstrap(
                    node_id=node_id,
                    cluster=name,
                    admin_port=admin_port,
                    xds_host=xds_host,
                    xds_port=xds_port,
                    api=xds_api,
                    replica_port=xds_replica_port,
                    max_downstream_connections=downstream_connection_budget(),
                ),
                indent=2,
            )
        )
        self.envoy = ManagedProcess(
            f"{node_id}/envoy",
            envoy_command(str(config_path)),
            env=dict(base_env if base_env is not None else os.environ),
            cwd=str(state_dir),
            log_path=state_dir / "logs" / f"{node_id}.envoy.log",
        )
        self.state = "created"

    async def start(self) -> None:
        self.state = "starting"
        await self.envoy.start()
        if not await self._wait_synced(self.node_id, self._config_timeout):
            await self.envoy.stop()
            self.state = "failed"
            raise ConfigTimeout(
                f"gateway {self.name}: its Envoy did not apply its configuration within "
                f"{self._config_timeout:.0f}s (see {self.envoy.log_path})"
            )
        self.state = "running"

    def adopt(self, envoy_pid: int) -> bool:
        """Take over this gateway's Envoy, left running by an ``up`` that was killed."""
        if not self.envoy.adopt(envoy_pid):
            return False
        self.state = "running"
        return True

    async def stop(self) -> None:
        self.state = "stopping"
        await self.envoy.stop(2.0)
        self.state = "stopped"

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "node": self.node_id,
            "state": self.state,
            "admin_port": self.admin_port,
            "envoy_pid": self.envoy.pid,
            "envoy_restarts": self.envoy.restarts,
            "log": str(self.envoy.log_path),
        }
