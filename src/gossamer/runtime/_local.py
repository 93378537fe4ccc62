"""Local mode: one process runs the control plane and supervises every instance.

``gossamer up PATH`` builds a ``LocalMesh``: it loads PATH, starts the xDS server and the
admin API, starts each instance (sidecar first, app once the sidecar has its config),
then watches PATH and applies edits live. Only instances whose definition changed are
restarted; a route or weight edit restarts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gossamer.api import Source, config_diff, load_config
from gossamer.model import Instance, MeshConfig, MeshState, Problem, Workload
from gossamer.runtime._access import (
    AccessLogHealth,
    LogQuery,
    Notice,
    check_access_logs,
    log_file,
    read_entries,
)
from gossamer.runtime._controlplane import ControlPlane, Proposal
from gossamer.runtime._leftovers import Leftovers, read_leftovers, write_leftovers
from gossamer.runtime._ports import PortAllocator, port_free
from gossamer.runtime._store import ConfigStore, Conflict, digest
from gossamer.sidecar import (
    GatewayRunner,
    InstanceRunner,
    ManagedProcess,
    StartError,
    XdsApi,
    app_path,
    process_argv,
)
from gossamer.sources import load_sources, watch
from gossamer.telemetry import (
    PrometheusError,
    Store,
    Totals,
    collect_once,
    flagged_counts,
    graph,
    window_increases,
)
from gossamer.translate import ACCESS_LOG_NAME, FLAGS_LOG_NAME, snapshot_changes

log = logging.getLogger("gossamer.up")

DEPENDENCY_WAIT_S = 10.0
"""The longest an app whose workload declares ``calls`` waits for them to serve."""

FLAG_SETTLE_S = 1.0
"""A scrape round is added this long after it was taken, once the flags of the requests
it counted have arrived (proxies flush flagged entries every 0.5 s)."""


@dataclass(slots=True)
class LocalOptions:
    config_path: Path
    state_dir: Path
    xds_port: int = 15010
    api_port: int = 15080
    host: str = "127.0.0.1"
    xds_api: XdsApi = "sotw"
    config_timeout_s: float = 30.0
    watch: bool = True
    first_port: int = 20000
    telemetry_interval_s: float = 5.0
    replica_xds_port: int = 0
    """A standby control plane's xDS port (``gossamer replica``); 0: none."""
    replica_api_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ChangeResult:
    """The outcome of a proposed change: refused (``problems`` or ``conflict``), a dry
    run or no-op (``changes`` only), or applied as ``revision``."""

    problems: list[Problem] = field(default_factory=list)
    conflict: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    revision: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.revision > 0,
            "revision": self.revision,
            "problems": [p.to_dict() for p in self.problems],
            "conflict": self.conflict,
            "warnings": [p.to_dict() for p in self.warnings],
            "changes": self.changes,
        }


def file_key(source: Source) -> Path:
    """Where a config file lives: what tells two sources apart across applies."""
    return Path(source.base_dir, Path(source.name).name).resolve()


def _source(path: Path, text: str) -> Source:
    """A config file sent by the CLI, named as ``read_sources`` names files."""
    try:
        name = str(path.relative_to(Path.cwd()))
    except ValueError:
        name = str(path)
    return Source(name=name, text=text, base_dir=str(path.parent))


def whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class StartupFailed(RuntimeError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def preflight(config: MeshConfig) -> list[Problem]:
    """Checks that need this machine: can each workload's command run at all?"""
    problems = []
    for w in config.workloads:
        cwd = Path(w.working_dir or ".")
        field = "spec.workingDir"
        if not cwd.is_dir():
            problems.append(
                Problem.at(
                    w.origin, "GSM0201", f"working directory `{cwd}` does not exist", field=field
                )
            )
            continue
        program = w.command[0]
        path = app_path(w, os.environ)
        found = (
            (cwd / program).exists() and os.access(cwd / program, os.X_OK)
            if "/" in program
            else shutil.which(program, path=path) is not None
        )
        if not found:
            problems.append(
                Problem.at(
                    w.origin,
                    "GSM0202",
                    f"command `{program}` is not an executable file (looked in "
                    f"{'the working directory' if '/' in program else 'PATH'})",
                    field="spec.command[0]",
                    hint="give a program on PATH (e.g. python3) or a path relative to the "
                    "config file",
                )
            )
    return problems


def gateway_preflight(config: MeshConfig, running: MeshConfig | None) -> list[Problem]:
    """Gateway listener ports must be free (unless a running gateway already holds them),
    and TLS certificate files must exist."""
    held = {lst.port for g in (running.gateways if running else ()) for lst in g.listeners}
    problems = []
    for gateway in config.gateways:
        for i, lst in enumerate(gateway.listeners):
            field = f"spec.listeners[{i}]"
            if lst.port not in held and not port_free(lst.port, gateway.address):
                problems.append(
                    Problem.at(
                        gateway.origin,
                        "GSM0206",
                        f"port {lst.port} is already in use on {gateway.address}",
                        field=f"{field}.port",
                        hint="choose a free port for this listener, or stop what listens there",
                    )
                )
            for what, path in (
                ("certificate", lst.certificate_file),
                ("key", lst.private_key_file),
            ):
                if path and not Path(path).is_file():
                    problems.append(
                        Problem.at(
                            gateway.origin,
                            "GSM0207",
                            f"TLS {what} file `{path}` does not exist",
                            field=f"{field}.tls.options",
                            hint="paths are relative to the file that declares the Gateway",
                        )
                    )
    return problems


class LocalMesh:
    def __init__(self, options: LocalOptions) -> None:
        self.options = options
        self.control = ControlPlane(PortAllocator(options.first_port), self._preflight)
        self.runners: dict[str, InstanceRunner] = {}
        self.gateways: dict[str, GatewayRunner] = {}
        self.telemetry = Totals()
        self.store = Store(options.state_dir / "telemetry.db")
        """Mesh-wide series after each collection round: every round for an hour, then
        one point a minute for a day."""
        self.config_store = ConfigStore(options.state_dir / "config.db")
        """Every applied revision of the config files, across runs."""
        self.sources: list[Source] = []
        """The config files of the running revision."""
        self._attached_seq = 0
        self._heartbeats: dict[str, float] = {}
        """When each ``gossamer run`` instance last called in."""
        self.replica: ManagedProcess | None = None
        """The standby control plane this ``up`` runs (``--replica-xds-port``)."""
        self._leftovers: Leftovers | None = None
        """What a killed ``up`` left running, while this one starts and takes it over."""
        self._rounds = 0
        self.access_health = AccessLogHealth()
        """Each proxy's failed access log writes, reopens and rotations."""
        self.started_at = time.time()
        self._apply_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.events: list[dict[str, object]] = []
        """Recent notable events (rejections, start failures), newest last, bounded."""

    def _preflight(self, config: MeshConfig) -> list[Problem]:
        running = self.control.state.config if self.control.state else None
        return preflight(config) + gateway_preflight(config, running)

    # -- events ---------------------------------------------------------------------------

    def note(self, kind: str, message: str, **extra: object) -> None:
        self.events.append({"at": time.time(), "kind": kind, "message": message, **extra})
        del self.events[:-100]

    # -- applying config ------------------------------------------------------------------

    def _under_path(self, source: Source) -> bool:
        root = self.options.config_path.resolve()
        path = file_key(source)
        return path == root or root in path.parents

    def _resume_point(self) -> tuple[list[Source], MeshState] | None:
        """If an earlier ``up`` here was killed and left its instances running: the
        revision it ran and where its instances are, so this start takes them over and
        serves proxies exactly the config they already have."""
        leftovers = read_leftovers(self.options.state_dir)
        head = self.config_store.head()
        if leftovers is None or head is None or leftovers.revision != head.number:
            return None
        config, _problems = load_config(list(head.sources))
        if config is None:
            return None
        self._leftovers = leftovers
        # Instances run by `gossamer run` go on calling in; until they do, they keep
        # their place (and are dropped like any that stops calling in).
        self.control.attached = leftovers.attached()
        self._heartbeats = dict.fromkeys(leftovers.joined, time.monotonic())
        self._attached_seq = max(
            (
                int(n.rsplit("-run", 1)[1])
                for n in leftovers.joined
                if n.rsplit("-run", 1)[1].isdigit()
            ),
            default=0,
        )
        return list(head.sources), leftovers.placed(config)

    async def start(self) -> None:
        """Initial apply. Raises StartupFailed, having stopped whatever it started."""
        resume = self._resume_point()
        if resume is not None:
            sources, self.control.state = resume
            log.info(
                "resuming revision %d: taking over the instances the last `up` left running",
                self._leftovers.revision if self._leftovers else 0,
            )
        else:
            sources, problems = load_sources(self.options.config_path)
            if problems:
                raise StartupFailed(problems)
        proposal = self.control.propose(sources)
        if not isinstance(proposal, Proposal):
            raise StartupFailed(proposal)
        await self._start_replica()
        head = self.config_store.head()
        if head is not None and resume is None:
            elsewhere = sorted(s.name for s in head.sources if not self._under_path(s))
            if elsewhere:
                log.warning(
                    "revision %d also ran files applied from elsewhere (%s); this start "
                    "loads only %s (`gossamer rollback %d` brings them back)",
                    head.number,
                    ", ".join(elsewhere),
                    self.options.config_path,
                    head.number,
                )
        if head is not None and head.digest == digest(sources):
            number = head.number
        else:
            revision = self.config_store.commit(
                sources,
                author=whoami(),
                message=f"gossamer up {self.options.config_path}",
                changes=self._changes(head.sources if head else (), sources, proposal),
            )
            number = revision.number
        self.control.publish(proposal, number)
        self.sources = list(sources)
        for p in proposal.warnings:
            log.warning("%s", p)
        try:
            await self._reconcile(proposal.state, initial=True)
        except StartupFailed:
            await self.stop()
            raise
        finally:
            self._stop_leftovers()
        if not await self.wait_all_synced(self.options.config_timeout_s):
            log.warning("not every proxy applied the latest config yet; see `gossamer status`")
        if resume is not None:
            await self.reload()  # edits made under PATH while no `up` ran

    async def _start_replica(self) -> None:
        """The standby control plane, in a session of its own: it outlives this process."""
        o = self.options
        if not o.replica_xds_port:
            return
        argv = [
            sys.executable,
            "-m",
            "gossamer",
            "replica",
            "--state-dir",
            str(o.state_dir.resolve()),
            "--xds-port",
            str(o.replica_xds_port),
            "--api-port",
            str(o.replica_api_port or o.replica_xds_port + 1),
            "--primary-xds-port",
            str(o.xds_port),
        ]
        self.replica = ManagedProcess(
            "replica", argv, env=os.environ, cwd=".", log_path=o.state_dir / "logs" / "replica.log"
        )
        pid = self._leftovers.replica_pid if self._leftovers else 0
        if pid and self.replica.adopt(pid):
            log.info("took over the running standby control plane (pid %d)", pid)
            return
        if not port_free(o.replica_xds_port, o.host):
            log.warning(
                "port %d is in use, and not by a standby this `up` can take over; running "
                "without one",
                o.replica_xds_port,
            )
            self.replica = None
            return
        await self.replica.start()

    async def _dependencies_serving(self, node: str, workload: Workload) -> None:
        """With ``calls``, an app starts once every mesh service it calls has an instance
        that serves and its own sidecar has that endpoint (waiting at most
        ``DEPENDENCY_WAIT_S``), so its first requests find an instance to answer."""
        if not workload.calls:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEPENDENCY_WAIT_S
        while True:
            state = self.control.state
            missing = _not_serving_yet(state, workload.calls) if state else []
            if not missing:
                await self.control.wait_synced(node, 2.0)
                return
            if loop.time() > deadline:
                log.warning(
                    "%s: starting its app although %s serve(s) no traffic yet",
                    node,
                    ", ".join(missing),
                )
                return
            await asyncio.sleep(0.05)

    async def _release(self, name: str) -> None:
        """What ``name`` left running and could not be taken over goes, ports and all,
        before its replacement starts."""
        assert self._leftovers is not None
        killed = self._leftovers.release(name, self.options.state_dir)
        for _ in range(100):  # at most 5 s
            if not any(process_argv(pid) for pid in killed):
                break
            await asyncio.sleep(0.05)
        if killed:
            log.warning("%s: stopped the processes the last `up` left (%s)", name, killed)

    def _stop_leftovers(self) -> None:
        """Kill what the killed ``up`` left running that this one did not take over."""
        leftovers, self._leftovers = self._leftovers, None
        if leftovers is None:
            return
        for pid in leftovers.unadopted(self.options.state_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                log.warning("stopped process %d left by the last `up`", pid)

    async def reload(self) -> bool:
        """Apply the files under the config path as they are now (files applied from
        elsewhere stay). A rejected change leaves the mesh untouched."""
        read, problems = load_sources(self.options.config_path)
        if problems:
            self._rejected(problems)
            return False
        sources = [s for s in self.sources if not self._under_path(s)] + read
        result = await self.change(
            sources, author=whoami(), message=f"edit under {self.options.config_path}"
        )
        return not result.problems

    async def change(
        self,
        sources: list[Source],
        *,
        author: str,
        message: str,
        dry_run: bool = False,
        expect_revision: int | None = None,
        force: bool = False,
    ) -> ChangeResult:
        """Validate, translate and (unless ``dry_run``) apply a complete new set of config
        files as one revision. Refused changes leave the mesh and the store untouched."""
        async with self._apply_lock:
            current = self.control.revision.number
            if expect_revision is not None and expect_revision != current:
                return ChangeResult(conflict=str(Conflict(expect_revision, current)))
            proposal = self.control.propose(sources, force=force)
            if not isinstance(proposal, Proposal):
                if not dry_run:
                    self._rejected(proposal)
                return ChangeResult(problems=proposal)
            changes = self._changes(self.sources, sources, proposal)
            if dry_run or self.control.unchanged(proposal):
                if not dry_run:
                    log.info("no change: the mesh stays on revision %d", current)
                    self.control.rejection = None
                return ChangeResult(changes=changes, warnings=list(proposal.warnings))
            try:
                revision = self.config_store.commit(
                    sources,
                    author=author,
                    message=message,
                    changes=changes,
                    expect_head=current,
                )
            except (Conflict, sqlite3.Error) as exc:
                log.error("the change was not applied: %s", exc)
                return ChangeResult(conflict=str(exc))
            previous = self.control.state
            changed = self.control.publish(proposal, revision.number)
            self.sources = list(sources)
            log.info(
                "applied revision %d (%s): %d proxies got new config",
                revision.number,
                message,
                len(changed),
            )
            for p in proposal.warnings:
                log.warning("%s", p)
            await self._reconcile(proposal.state, initial=False, previous=previous)
            return ChangeResult(
                changes=changes, warnings=list(proposal.warnings), revision=revision.number
            )

    async def apply_files(
        self,
        files: dict[str, str],
        *,
        root: str = "",
        prune: bool = False,
        author: str,
        message: str,
        dry_run: bool = False,
        expect_revision: int | None = None,
        force: bool = False,
    ) -> ChangeResult:
        """``gossamer apply``: ``files`` (absolute path -> text) are added to the running
        config or replace the files at the same paths; with ``prune``, running files under
        ``root`` that are not in ``files`` are removed."""
        given = [_source(Path(path), text) for path, text in sorted(files.items())]
        keys = {file_key(s) for s in given}
        root_path = Path(root) if root else None  # the CLI sends it resolved

        def dropped(s: Source) -> bool:
            key = file_key(s)
            if key in keys:
                return True
            return (
                prune and root_path is not None and (key == root_path or root_path in key.parents)
            )

        sources = [s for s in self.sources if not dropped(s)] + given
        return await self.change(
            sources,
            author=author,
            message=message,
            dry_run=dry_run,
            expect_revision=expect_revision,
            force=force,
        )

    async def rollback(self, number: int, *, author: str, dry_run: bool = False) -> ChangeResult:
        """Apply revision ``number``'s files again, as a new revision."""
        revision = self.config_store.get(number)
        if revision is None:
            return ChangeResult(conflict=f"there is no revision {number} (see gossamer history)")
        return await self.change(
            list(revision.sources),
            author=author,
            message=f"rollback to revision {number}",
            dry_run=dry_run,
        )

    def _changes(
        self, old: Sequence[Source], new: Sequence[Source], proposal: Proposal
    ) -> dict[str, Any]:
        """What ``proposal`` changes: resources, and per proxy the Envoy resources."""
        proxies = snapshot_changes(self.control.snapshots(), proposal.snapshots)
        state = proposal.state
        reaches = sorted(
            {
                f"workload/{i.workload}"
                for node in proxies
                if (i := state.instance(node) or self._old_instance(node)) is not None
            }
            | {f"gateway/{g.name}" for g in state.config.gateways if g.node_id in proxies}
        )
        return {"resources": config_diff(old, new), "proxies": proxies, "reaches": reaches}

    def _old_instance(self, node: str) -> Instance | None:
        return self.control.state.instance(node) if self.control.state else None

    def _rejected(self, problems: list[Problem]) -> None:
        self.control.reject(problems)
        self.note("rejected", f"config change rejected: {len(problems)} problem(s)")
        for p in problems:
            log.error("%s", p)
        log.error("the mesh keeps running on revision %d", self.control.revision.number)

    async def _reconcile(
        self, state: MeshState, *, initial: bool, previous: MeshState | None = None
    ) -> None:
        # Instances that joined with `gossamer run` are supervised by their own process.
        wanted = {i.name: i for i in state.instances if i.name not in self.control.attached}
        prev_workloads = {w.name: w for w in previous.config.workloads} if previous else {}
        to_stop = [r for n, r in self.runners.items() if n not in wanted]
        to_restart = [
            r
            for n, r in self.runners.items()
            if n in wanted and _needs_restart(r, wanted[n], state, prev_workloads)
        ]
        to_start = [i for n, i in wanted.items() if n not in self.runners]
        for runner in self.runners.values():
            workload = state.config.workload(runner.instance.workload)
            if workload is not None and runner not in to_restart:
                runner.update_workload(workload)  # e.g. shutdown settings: no restart
        for runner in to_stop:
            del self.runners[runner.instance.name]
        # Removed instances are already out of every caller's endpoints (published above);
        # each stop waits until the callers applied that and its requests in flight ended.
        stops = [r.stop() for r in to_stop]
        starts = [self._start_instance(i, state) for i in to_start]
        by_workload: dict[str, list[InstanceRunner]] = {}
        for runner in to_restart:
            by_workload.setdefault(runner.instance.workload, []).append(runner)
        rolling = [self._roll(runners, wanted, state) for runners in by_workload.values()]
        results = await asyncio.gather(*starts, *rolling, *stops)
        problems = [p for p in results if isinstance(p, Problem)]
        problems += await self._reconcile_gateways(state)
        if problems and initial:
            raise StartupFailed(problems)

    async def _reconcile_gateways(self, state: MeshState) -> list[Problem]:
        """Start declared gateways, stop removed ones. Listener and route changes arrive
        over xDS, so a running gateway is never restarted."""
        wanted = {g.name: g for g in state.config.gateways}
        admin = dict(state.gateway_admin_ports)
        for name in [n for n in self.gateways if n not in wanted]:
            await self.gateways.pop(name).stop()
        problems = []
        for name, gateway in wanted.items():
            if name in self.gateways:
                continue
            runner = GatewayRunner(
                name,
                gateway.node_id,
                admin[name],
                state_dir=self.options.state_dir,
                xds_host=self.options.host,
                xds_port=self.options.xds_port,
                xds_api=self.options.xds_api,
                xds_replica_port=self.options.replica_xds_port,
                wait_synced=self.control.wait_synced,
                config_timeout_s=self.options.config_timeout_s,
                base_env={**os.environ, **self.options.extra_env},
            )
            self.gateways[name] = runner
            left = self._leftovers.take_gateway(name, gateway.node_id) if self._leftovers else None
            if left is not None and runner.adopt(left):
                log.info("gateway %s: took over its running Envoy", name)
                continue
            try:
                await runner.start()
            except (StartError, RuntimeError) as exc:
                self.note("start-failed", str(exc), gateway=name)
                log.error("%s", exc)
                problems.append(Problem.at(gateway.origin, "GSM0203", str(exc), field="spec"))
        return problems

    async def _roll(
        self, runners: list[InstanceRunner], wanted: dict[str, Instance], state: MeshState
    ) -> Problem | None:
        """Restart a workload's changed instances one at a time, so it always serves."""
        for runner in runners:
            await runner.stop()
            del self.runners[runner.instance.name]
            problem = await self._start_instance(wanted[runner.instance.name], state)
            if problem is not None:
                return problem
        return None

    async def _start_instance(self, instance: Instance, state: MeshState) -> Problem | None:
        workload = state.config.workload(instance.workload)
        assert workload is not None
        runner = InstanceRunner(
            instance,
            workload,
            state_dir=self.options.state_dir,
            xds_host=self.options.host,
            xds_port=self.options.xds_port,
            xds_api=self.options.xds_api,
            xds_replica_port=self.options.replica_xds_port,
            wait_synced=self.control.wait_synced,
            set_serving=self.set_serving,
            leave=self.leave,
            before_app=lambda: self._dependencies_serving(instance.name, workload),
            config_timeout_s=self.options.config_timeout_s,
            base_env={**os.environ, **self.options.extra_env},
        )
        self.runners[instance.name] = runner
        left = self._leftovers.take_instance(instance) if self._leftovers else None
        if left is not None and await runner.adopt(*left):
            log.info("%s: took over its running sidecar and app", instance.name)
            return None
        if self._leftovers is not None:
            await self._release(instance.name)
        try:
            await runner.start()
        except (StartError, RuntimeError) as exc:
            self.note("start-failed", str(exc), instance=instance.name)
            log.error("%s", exc)
            return Problem.at(workload.origin, "GSM0203", str(exc), field="spec.command")
        return None

    # -- instances that join with `gossamer run` ----------------------------------------

    async def attach(
        self, service: str, workload: str = "", rejoin: Instance | None = None
    ) -> dict[str, Any]:
        """A new instance of the workload behind ``service`` (or of ``workload``), run by
        the caller: placed, given its sidecar config, kept out of every caller's endpoints
        until it reports serving. ``{"error": ...}`` if there is no such workload.

        ``rejoin``: an instance that joined an earlier ``up`` here and kept running; it
        keeps its name and ports and is serving at once (it was, and its app listens)."""
        async with self._apply_lock:
            state = self.control.state
            if state is None:
                return {"error": "the mesh has not started"}
            backing = [
                w.name
                for w in state.config.workloads
                if service in w.services and (not workload or w.name == workload)
            ]
            if len(backing) != 1:
                known = sorted(s.name for s in state.config.services())
                return {
                    "error": f"no workload backs service `{service}`"
                    + (f" as `{workload}`" if workload else "")
                    if not backing
                    else f"service `{service}` is backed by {', '.join(backing)}; pass --workload",
                    "services": known,
                }
            if rejoin is not None and (
                rejoin.workload != backing[0]
                or rejoin.name in self.control.attached
                or state.instance(rejoin.name) is not None
            ):
                return {"error": f"`{rejoin.name}` cannot rejoin as an instance of {backing[0]}"}
            if rejoin is None:
                self._attached_seq += 1
                name = f"{backing[0]}-run{self._attached_seq}"
            else:
                name = rejoin.name
                # Its placement, as if this `up` had made it: place() keeps known ports.
                self.control.state = dataclasses.replace(
                    state, instances=(*state.instances, rejoin)
                )
            self.control.attached[name] = backing[0]
            if not self._republish():
                del self.control.attached[name]
                self.control.state = state
                return {"error": "the current config no longer applies; see gossamer status"}
            self._heartbeats[name] = time.monotonic()
            self.write_pids()
            new = self.control.state
            assert new is not None
            instance = new.instance(name)
            found = new.config.workload(backing[0])
            assert instance is not None and found is not None
            log.info("%s %s (gossamer run)", name, "rejoined" if rejoin else "joined")
            return {
                "instance": dataclasses.asdict(instance),
                "workload": {
                    "name": found.name,
                    "services": list(found.services),
                    "ports": [[p.name, p.port, p.protocol.value] for p in found.ports],
                    "version": found.version,
                    "zone": found.zone,
                    "env": [list(kv) for kv in found.env],
                    "drain_timeout_ms": found.drain_timeout_ms,
                    "grace_period_ms": found.grace_period_ms,
                },
                "xds": {
                    "port": self.options.xds_port,
                    "api": self.options.xds_api,
                    "replica_port": self.options.replica_xds_port,
                },
                "state_dir": str(self.options.state_dir.resolve()),
            }

    async def detach(self, name: str) -> bool:
        async with self._apply_lock:
            if self.control.attached.pop(name, None) is None:
                return False
            self._heartbeats.pop(name, None)
            self._republish()
            self.write_pids()
            log.info("%s left (gossamer run)", name)
            return True

    def heartbeat(self, name: str) -> bool:
        if name not in self.control.attached:
            return False
        self._heartbeats[name] = time.monotonic()
        return True

    async def prune_attached(self, stale_s: float = 10.0) -> None:
        """Forget instances whose ``gossamer run`` stopped calling in (killed, say)."""
        now = time.monotonic()
        for name in [n for n, t in self._heartbeats.items() if now - t > stale_s]:
            log.warning("%s stopped calling in for %.0fs; removing it", name, stale_s)
            self.note("run-lost", f"{name} stopped calling in; removed", instance=name)
            await self.detach(name)

    def _republish(self) -> bool:
        """The running revision again, with the joined instances as they are now."""
        proposal = self.control.propose(self.sources)
        if not isinstance(proposal, Proposal):
            return False
        self.control.publish(proposal, self.control.revision.number)
        return True

    def set_serving(self, instance: str, serving: bool) -> None:
        self.control.set_serving(instance, serving)
        self.write_pids()  # a restarted `up` must know who gets traffic, to the moment

    async def leave(self, instance: str, timeout_s: float) -> tuple[list[str], list[str]]:
        """Take ``instance`` out of every caller's endpoints and wait until each caller
        whose config that changed has applied it; the callers waited for, and those that
        had not applied it in time."""
        changed = self.control.set_serving(instance, False)
        self.write_pids()
        if self.control.state is None or self.control.state.instance(instance) is None:
            # Removed from the config: it left with the revision that removed it.
            changed = self.control.lagging()
        # Its own sidecar is stopping with it.
        return await self.control.wait_applied([n for n in changed if n != instance], timeout_s)

    async def wait_all_synced(self, timeout_s: float) -> bool:
        """Whether every proxy applied its current config within ``timeout_s``."""
        nodes = [*self.runners, *(g.node_id for g in self.gateways.values())]
        results = await asyncio.gather(
            *(self.control.wait_synced(node, timeout_s) for node in nodes)
        )
        return all(results)

    # -- lifecycle ------------------------------------------------------------------------

    async def run_watch(self) -> None:
        async for _ in watch(self.options.config_path):
            await self.reload()

    async def stop(self) -> None:
        """Stop every instance: apps first (their sidecars still carry their calls)."""
        runners = list(self.runners.values())
        gateways = list(self.gateways.values())
        self.runners.clear()
        self.gateways.clear()
        await asyncio.gather(
            *(g.stop() for g in gateways),
            *(r.stop(drain=False) for r in runners),
            return_exceptions=True,
        )
        if self.replica is not None:
            await self.replica.stop(2.0)
        self.store.close()
        self.config_store.close()

    def joined(self) -> dict[str, Instance]:
        """The instances that joined with ``gossamer run``, by name."""
        state = self.control.state
        return {
            name: i
            for name in self.control.attached
            if state is not None and (i := state.instance(name)) is not None
        }

    def proxies(self) -> dict[str, int]:
        """Every running proxy's node id and Envoy admin port."""
        out = {name: r.instance.admin_port for name, r in self.runners.items()}
        out.update({name: i.admin_port for name, i in self.joined().items()})
        out.update({g.node_id: g.admin_port for g in self.gateways.values()})
        return out

    def proxy_processes(self) -> dict[str, tuple[int, int]]:
        """Every running proxy's node id, admin port and Envoy pid (its counters' epoch:
        a restarted Envoy has a new pid and counts from zero again; a joined instance's
        pid is not known here, so a restart of it shows as counters going down)."""
        out = {name: (r.instance.admin_port, r.envoy.pid or 0) for name, r in self.runners.items()}
        out.update({name: (i.admin_port, 0) for name, i in self.joined().items()})
        out.update({g.node_id: (g.admin_port, g.envoy.pid or 0) for g in self.gateways.values()})
        return out

    def on_access_log(self, node: str, log_name: str, entries: list[dict[str, Any]]) -> None:
        """Entries a proxy streamed over the access log service: flagged requests feed
        the metrics' ``response_flags``; with the ``grpc`` sink, every entry is written
        to the proxy's access log file, as the proxy itself would have."""
        state = self.control.state
        if state is None or not entries:
            return
        if log_name.startswith(FLAGS_LOG_NAME):
            self.telemetry.add_flagged(flagged_counts(state, entries))
        elif log_name.startswith(ACCESS_LOG_NAME):
            lines = "".join(
                json.dumps({k: v for k, v in e.items() if k != "request_headers"}) + "\n"
                for e in entries
            )
            error = None
            try:
                with log_file(self.options.state_dir, node).open("a") as f:
                    f.write(lines)
            except OSError as exc:
                error = str(exc)
            notice = self.access_health.sink_write(node, len(entries), error, time.time())
            if notice is not None:
                self._announce(notice)

    async def collect_telemetry(self) -> None:
        state = self.control.state
        if state is not None:
            await collect_once(state, self.proxy_processes(), self.telemetry, FLAG_SETTLE_S)
            now = time.time()
            await asyncio.to_thread(self.store.record, now, dict(self.telemetry.series))
            self._rounds += 1
            if self._rounds % 60 == 0:
                await asyncio.to_thread(self.store.compact, now)

    async def graph(self, window_s: float) -> dict[str, Any]:
        """The service graph over the last ``window_s`` seconds: from the Mesh's Prometheus
        when one is set (whole seconds), else, or when it fails, from the embedded store.
        ``source`` says which; ``warning`` says why Prometheus was not used."""
        state = self.control.state
        url = state.config.settings.telemetry.prometheus_url if state else ""
        warning = ""
        if state is not None and url:
            seconds = max(1, round(window_s))
            try:
                increases = await window_increases(url, seconds)
            except PrometheusError as exc:
                warning = f"{exc}; showing the embedded store"
                log.debug("graph: %s", warning)
            else:
                return {**graph(state.config, {}, increases, seconds), "source": "prometheus"}
        first = self.store.oldest()
        now = time.time()
        newest = dict(self.telemetry.series)
        if state is None or first is None:
            data: dict[str, Any] = {"window_seconds": 0, "nodes": [], "edges": []}
        elif first > now - window_s:
            # The window reaches back before the first round: everything since the start.
            data = graph(state.config, {}, newest, now - self.started_at)
        else:
            data = graph(state.config, self.store.at(now - window_s), newest, window_s)
        return {**data, "source": "embedded", **({"warning": warning} if warning else {})}

    async def rotate_access_logs(self) -> list[str]:
        state = self.control.state
        if state is None:
            return []
        settings = state.config.settings.access_log
        result = await check_access_logs(
            self.options.state_dir,
            self.proxy_processes(),
            settings.max_bytes,
            settings.max_files,
            self.access_health,
        )
        for notice in result.notices:
            self._announce(notice)
        return result.rotated

    def _announce(self, n: Notice) -> None:
        if n.recovered:
            self.note("access-log-recovered", n.message, proxy=n.node)
            log.warning("%s", n.message)
        else:
            self.note("access-log-failed", n.message, proxy=n.node)
            log.error("%s", n.message)

    def logs(self, service: str, query: LogQuery) -> dict[str, object]:
        state = self.control.state
        if state is None:
            return {"entries": [], "unreadable_lines": 0}
        workloads = {s.name: s.workloads for s in state.config.services()}.get(service)
        if workloads is None:
            return {"error": f"no service `{service}`"}
        own = {i.name for i in state.instances if i.workload in workloads}
        entries, bad = read_entries(
            self.options.state_dir,
            self.proxies(),
            state.config.settings.access_log.max_files,
            f"||{service}",
            own,
            query,
        )
        return {"entries": entries, "unreadable_lines": bad}

    def write_state_file(self) -> None:
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        (self.options.state_dir / "up.json").write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "api": f"http://{self.options.host}:{self.options.api_port}",
                    "xds_port": self.options.xds_port,
                    "config_path": str(self.options.config_path),
                    "started_at": self.started_at,
                },
                indent=2,
            )
        )
        self.write_pids()

    def write_pids(self) -> None:
        """Every child pid, so ``gossamer down`` can clean up even after ``up`` was killed;
        and, for a restarted ``up`` to take them over, where each instance runs."""
        pids = [
            pid
            for r in self.runners.values()
            for pid in (r.app.pid, r.envoy.pid)
            if pid is not None
        ] + [g.envoy.pid for g in self.gateways.values() if g.envoy.pid is not None]
        state = self.control.state
        with contextlib.suppress(OSError):
            (self.options.state_dir / "pids").write_text("\n".join(map(str, pids)))
            if state is not None:
                write_leftovers(
                    self.options.state_dir,
                    Leftovers(
                        pid=os.getpid(),
                        revision=self.control.revision.number,
                        instances={n: r.instance for n, r in self.runners.items()},
                        pids={
                            n: (r.envoy.pid, r.app.pid)
                            for n, r in self.runners.items()
                            if r.envoy.pid and r.app.pid
                        },
                        not_serving=sorted(state.not_serving),
                        gateways={
                            g.name: (g.node_id, g.admin_port, g.envoy.pid or 0)
                            for g in self.gateways.values()
                        },
                        replica_pid=(self.replica.pid or 0) if self.replica else 0,
                        joined=self.joined(),
                    ),
                )

    def remove_state_file(self) -> None:
        for name in ("up.json", "pids", "processes.json"):
            with contextlib.suppress(FileNotFoundError):
                (self.options.state_dir / name).unlink()

    def check_ports(self) -> list[Problem]:
        problems = []
        for what, port, flag in (
            ("xDS", self.options.xds_port, "--xds-port"),
            ("admin API", self.options.api_port, "--api-port"),
        ):
            if not port_free(port, self.options.host):
                problems.append(
                    Problem(
                        "GSM0204",
                        f"the {what} port {self.options.host}:{port} is already in use",
                        hint=f"is another `gossamer up` running? stop it with `gossamer down`, "
                        f"or pass {flag}",
                    )
                )
        return problems

    def status(self) -> dict[str, object]:
        control = self.control
        rejection = control.rejection
        instances = []
        for name in sorted(self.runners):
            runner = self.runners[name]
            entry = runner.describe()
            entry["proxy"] = control.proxy_summary(name)
            entry["access_log"] = self.access_health.describe(name)
            instances.append(entry)
        state = control.state
        return {
            "config_path": str(self.options.config_path),
            "state_dir": str(self.options.state_dir),
            "log_dir": str(self.options.state_dir / "logs"),
            "access_log_dir": str(self.options.state_dir / "access"),
            "xds": f"{self.options.host}:{self.options.xds_port} ({self.options.xds_api})",
            "revision": control.revision.number,
            "applied_at": control.revision.applied_at,
            "warnings": [p.to_dict() for p in control.revision.warnings],
            "rejected": None
            if rejection is None
            else {"at": rejection.at, "problems": [p.to_dict() for p in rejection.problems]},
            "services": [
                {
                    "name": s.name,
                    "ports": [{"port": p.port, "protocol": p.protocol.value} for p in s.ports],
                    "workloads": list(s.workloads),
                }
                for s in (state.config.services() if state else ())
            ],
            "routes": [r.name for r in state.config.routes] if state else [],
            "gateways": [
                {
                    **g.describe(),
                    "listeners": [
                        {"name": lst.name, "port": lst.port, "protocol": lst.protocol.value}
                        for lst in (
                            state.config.gateway(g.name).listeners  # type: ignore[union-attr]
                            if state and state.config.gateway(g.name)
                            else ()
                        )
                    ],
                    "proxy": control.proxy_summary(g.node_id),
                    "access_log": self.access_health.describe(g.node_id),
                }
                for g in self.gateways.values()
            ],
            "instances": instances,
            "events": self.events[-20:],
        }


def _not_serving_yet(state: MeshState, names: Sequence[str]) -> list[str]:
    """The services among ``names`` whose instances exist but none serves yet (a service
    with no instance at all has nothing to wait for)."""
    missing = []
    for svc in state.config.services():
        if svc.name not in names:
            continue
        instances = [i for i in state.instances if i.workload in svc.workloads]
        if instances and all(i.name in state.not_serving for i in instances):
            missing.append(svc.name)
    return missing


def _needs_restart(
    runner: InstanceRunner,
    instance: Instance,
    state: MeshState,
    previous: dict[str, Workload],
) -> bool:
    """Only a change to what the process itself sees restarts it."""
    workload = state.config.workload(instance.workload)
    old = previous.get(instance.workload, runner.workload)
    if workload is None:
        return True
    process_view = (
        workload.command,
        workload.env,
        workload.working_dir,
        workload.ports,
        workload.services,
        workload.version,
        workload.zone,
    )
    old_view = (
        old.command,
        old.env,
        old.working_dir,
        old.ports,
        old.services,
        old.version,
        old.zone,
    )
    return process_view != old_view or runner.instance != instance
