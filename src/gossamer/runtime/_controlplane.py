"""The control plane proper: turns a declared config into published snapshots.

A change is all-or-nothing. It is loaded, validated, placed, translated for every proxy
and checked for consistency before any proxy sees it; if any step fails the running mesh
keeps its current config and the rejection is recorded for ``status``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gossamer.api import Source, load_config
from gossamer.model import (
    MeshConfig,
    MeshState,
    Origin,
    ParentKind,
    Problem,
    errors,
    place,
    place_gateways,
)
from gossamer.runtime._ports import PortsExhausted
from gossamer.translate import (
    InconsistentSnapshot,
    Snapshot,
    names,
    translate,
    translate_gateway,
)
from gossamer.xds import SnapshotCache, StatusBook


@dataclass(frozen=True, slots=True)
class Rejection:
    at: float
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class Proposal:
    """A fully translated next state, not yet visible to any proxy."""

    state: MeshState
    snapshots: dict[str, Snapshot]
    warnings: tuple[Problem, ...] = ()


@dataclass(slots=True)
class Revision:
    number: int = 0
    applied_at: float = 0.0
    warnings: tuple[Problem, ...] = field(default_factory=tuple)


Preflight = Callable[[MeshConfig], list[Problem]]


class ControlPlane:
    def __init__(self, allocate: Callable[[], int], preflight: Preflight | None = None) -> None:
        self.cache = SnapshotCache()
        self.book = StatusBook(self.cache)
        self.state: MeshState | None = None
        self.revision = Revision()
        self.rejection: Rejection | None = None
        self._allocate = allocate
        self.attached: dict[str, str] = {}
        """Instances that joined with ``gossamer run`` (instance name -> workload)."""
        self._preflight = preflight

    def propose(self, sources: list[Source], force: bool = False) -> Proposal | list[Problem]:
        """``force``: apply despite forceable errors (see ``gossamer.model.FORCEABLE``)."""
        config, problems = load_config(sources, force=force)
        if config is None:
            return problems
        if self._preflight is not None:
            problems += self._preflight(config)
            if errors(problems):
                return problems
        try:
            instances = place(config, self.state, self._allocate, self.attached)
            gateway_ports = place_gateways(config, self.state, self._allocate)
        except PortsExhausted as exc:
            return [Problem("GSM0205", str(exc), hint="free some ports or pass --first-port")]
        # New instances get traffic only once their app is ready (``set_serving``).
        known = {i.name for i in self.state.instances} if self.state else set()
        previous = self.state.not_serving if self.state else frozenset()
        names_now = {i.name for i in instances}
        not_serving = (previous & names_now) | (names_now - known)
        state = MeshState(config, instances, frozenset(not_serving), gateway_ports)
        try:
            snapshots = self._translate_all(state)
        except InconsistentSnapshot as exc:
            return [
                Problem("GSM0900", f"internal translation error: {exc}", hint="please report this")
            ]
        return Proposal(state, snapshots, tuple(problems))

    @staticmethod
    def _translate_all(state: MeshState) -> dict[str, Snapshot]:
        """A snapshot for every sidecar and every gateway, by node id."""
        snapshots = {i.name: translate(state, i.name) for i in state.instances}
        for gateway in state.config.gateways:
            snapshots[gateway.node_id] = translate_gateway(state, gateway.name)
        return snapshots

    def unchanged(self, proposal: Proposal) -> bool:
        """Whether applying ``proposal`` would change nothing, not even where things came from."""
        if self.state is None:
            return False
        old, new = self.state.config, proposal.state.config

        def origins(c: MeshConfig) -> list[Origin | None]:
            return [
                *(w.origin for w in c.workloads),
                *(r.origin for r in c.routes),
                *(g.origin for g in c.gateways),
                *(e.origin for e in c.external_services),
                c.settings.origin,
            ]

        return (
            old == new
            and origins(old) == origins(new)
            and self.state.gateway_admin_ports == proposal.state.gateway_admin_ports
        )

    def reject(self, problems: list[Problem]) -> None:
        self.rejection = Rejection(time.time(), tuple(problems))

    def snapshots(self) -> dict[str, Snapshot]:
        """Every proxy's current snapshot, by node id."""
        return {n: s for n in self.cache.nodes() if (s := self.cache.get(n)) is not None}

    def publish(self, proposal: Proposal, number: int | None = None) -> list[str]:
        """Make ``proposal`` current as revision ``number`` (default: the next one);
        returns the proxies whose config changed."""
        changed = [n for n, snap in proposal.snapshots.items() if self.cache.set(n, snap)]
        for gone in set(self.cache.nodes()) - set(proposal.snapshots):
            self.cache.clear(gone)
        self.state = proposal.state
        self.rejection = None
        number = self.revision.number + 1 if number is None else number
        self.revision = Revision(number, time.time(), proposal.warnings)
        return changed

    def set_serving(self, instance: str, serving: bool) -> list[str]:
        """Add an instance to, or remove it from, every caller's endpoints.

        Returns the proxies whose config changed (callers of its services)."""
        if self.state is None or self.state.instance(instance) is None:
            return []
        current = set(self.state.not_serving)
        if serving:
            current.discard(instance)
        else:
            current.add(instance)
        if frozenset(current) == self.state.not_serving:
            return []
        state = dataclasses.replace(self.state, not_serving=frozenset(current))
        self.state = state
        snapshots = self._translate_all(state)
        return [node for node, snapshot in snapshots.items() if self.cache.set(node, snapshot)]

    async def wait_synced(self, node_id: str, timeout_s: float) -> bool:
        """Whether the proxy applies its current snapshot within ``timeout_s``."""
        if self.book.synced(node_id):
            return True
        done = asyncio.Event()

        def check(changed: str) -> None:
            if changed == node_id and self.book.synced(node_id):
                done.set()

        cancel = self.book.on_change(check)
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            cancel()

    def lagging(self) -> list[str]:
        """Proxies that applied some config before but not their current snapshot yet:
        those that may still route by an older one."""
        return [n for n in self.cache.nodes() if self._applied_any(n) and not self.book.synced(n)]

    async def wait_applied(self, nodes: list[str], timeout_s: float) -> tuple[list[str], list[str]]:
        """Wait until each of ``nodes`` has applied its current snapshot; returns the
        proxies waited for and those of them that had not within ``timeout_s``. A proxy
        that never applied any config is not waited for: with no listener yet, it routes
        nothing."""
        nodes = [n for n in nodes if self._applied_any(n)]
        done = await asyncio.gather(*(self.wait_synced(n, timeout_s) for n in nodes))
        return nodes, [n for n, ok in zip(nodes, done, strict=True) if not ok]

    def _applied_any(self, node_id: str) -> bool:
        status = self.book.proxy(node_id)
        return status is not None and any(t.acked_version for t in status.types.values())

    def proxy_summary(self, node: str) -> dict[str, object]:
        """The status book's summary of ``node``, each NACK with the user resources behind
        it (``user_resources``)."""
        summary = self.book.summary(node)
        for t in summary["types"].values():  # type: ignore[attr-defined]
            if "rejected_resources" in t:
                t["user_resources"] = self.nack_origins(t["rejected_resources"], node)
        return summary

    def nack_origins(self, resource_names: list[str], node: str = "") -> list[str]:
        """The user resources behind rejected Envoy resources: ``file (document N, Kind/name)``.
        A gateway's resources name the gateway, not a service: for ``node`` a gateway, its
        Gateway and the routes attached to it."""
        if self.state is None:
            return []
        gateway = next((g for g in self.state.config.gateways if g.node_id == node), None)
        if gateway is not None:
            found = [
                str(r.origin)
                for r in self.state.config.routes
                if r.origin
                and any(
                    p.kind is ParentKind.GATEWAY and p.service == gateway.name for p in r.parents
                )
            ]
            return sorted({*found, *([str(gateway.origin)] if gateway.origin else [])})
        services = {names.service_of(n) for n in resource_names} - {None}
        found = []
        for route in self.state.config.routes:
            if route.origin and any(p.service in services for p in route.parents) | any(
                b.service in services for r in route.rules for b in r.backends
            ):
                found.append(str(route.origin))
        for w in self.state.config.workloads:
            if w.origin and services & set(w.services):
                found.append(str(w.origin))
        return sorted(set(found))
