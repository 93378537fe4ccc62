"""Snapshots per proxy, the one narrow seam between mesh state and the xDS protocol,
and the book of what each proxy was sent, acknowledged and rejected.

Like go-control-plane's ``CreateWatch``: a stream asks to be told when its proxy's
snapshot changes and gets back a cancel function. Setting a snapshot whose version equals
the current one notifies nobody, so only proxies whose resources changed get a push.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gossamer.translate import PUSH_ORDER, SHORT_NAMES, Snapshot
from gossamer.xds._stream import Event, Report


class SnapshotCache:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, set[Callable[[Snapshot], None]]] = {}

    def get(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id)

    def set(self, node_id: str, snapshot: Snapshot) -> bool:
        """Store and notify; returns whether anything changed for this proxy."""
        current = self._snapshots.get(node_id)
        if current is not None and current.version == snapshot.version:
            return False
        self._snapshots[node_id] = snapshot
        for notify in list(self._watchers.get(node_id, ())):
            notify(snapshot)
        return True

    def clear(self, node_id: str) -> None:
        self._snapshots.pop(node_id, None)

    def nodes(self) -> list[str]:
        return sorted(self._snapshots)

    def watch(self, node_id: str, notify: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._watchers.setdefault(node_id, set()).add(notify)

        def cancel() -> None:
            watchers = self._watchers.get(node_id)
            if watchers is not None:
                watchers.discard(notify)
                if not watchers:
                    del self._watchers[node_id]

        return cancel


@dataclass(slots=True)
class TypeStatus:
    sent_version: str = ""
    acked_version: str = ""
    nacked_version: str = ""
    error: str = ""
    rejected_resources: tuple[str, ...] = ()
    nacks: int = 0
    sends: int = 0
    acked_at: float = 0.0

    def state(self, desired: str) -> str:
        """SYNCED, STALE (sent or pending, not yet applied) or NACKED."""
        if self.nacked_version and self.nacked_version == desired:
            return "NACKED"
        if desired and self.acked_version == desired:
            return "SYNCED"
        return "STALE"


@dataclass(slots=True)
class ProxyStatus:
    node_id: str
    streams: int = 0
    api: str = ""
    """``sotw`` or ``delta``."""
    connected_at: float = 0.0
    types: dict[str, TypeStatus] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.streams > 0


class StatusBook:
    """What every proxy holds, as reported by the streams; read by status and ``up``."""

    def __init__(self, cache: SnapshotCache, clock: Callable[[], float] = time.time) -> None:
        self._cache = cache
        self._clock = clock
        self._proxies: dict[str, ProxyStatus] = {}
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self, node_id: str) -> None:
        for listener in list(self._listeners):
            listener(node_id)

    def connected(self, node_id: str, api: str) -> None:
        status = self._proxies.setdefault(node_id, ProxyStatus(node_id))
        status.streams += 1
        status.api, status.connected_at = api, self._clock()
        self._notify(node_id)

    def disconnected(self, node_id: str) -> None:
        status = self._proxies.get(node_id)
        if status is not None:
            status.streams = max(0, status.streams - 1)
            self._notify(node_id)

    def record(self, node_id: str, reports: list[Report]) -> None:
        if not reports:
            return
        status = self._proxies.setdefault(node_id, ProxyStatus(node_id))
        for r in reports:
            ts = status.types.setdefault(r.type_url, TypeStatus())
            if r.event is Event.SENT:
                ts.sent_version = r.version
                ts.sends += 1
            elif r.event is Event.ACK:
                if ts.acked_version != r.version:
                    ts.acked_at = self._clock()
                ts.acked_version = r.version
                if ts.nacked_version:
                    ts.nacked_version, ts.error, ts.rejected_resources = "", "", ()
            else:
                ts.nacked_version, ts.error = r.version, r.error
                # Envoy names the resources it rejected in its message; a state-of-the-world
                # response carries every resource of the type, so narrow it down.
                named = tuple(n for n in r.resource_names if n in r.error)
                ts.rejected_resources = named or r.resource_names
                ts.nacks += 1
        self._notify(node_id)

    def proxy(self, node_id: str) -> ProxyStatus | None:
        return self._proxies.get(node_id)

    def synced(self, node_id: str) -> bool:
        """Whether the proxy applied every type of its current snapshot."""
        snapshot = self._cache.get(node_id)
        status = self._proxies.get(node_id)
        if snapshot is None or status is None or not status.connected:
            return False
        return all(
            status.types.get(t, TypeStatus()).state(snapshot.versions[t]) == "SYNCED"
            for t in PUSH_ORDER
            if snapshot.of(t) or t in status.types
        )

    def summary(self, node_id: str) -> dict[str, object]:
        """A JSON-friendly view: per type SYNCED / STALE / NACKED, and any NACK message."""
        snapshot = self._cache.get(node_id)
        status = self._proxies.get(node_id) or ProxyStatus(node_id)
        types: dict[str, object] = {}
        for t in PUSH_ORDER:
            ts = status.types.get(t, TypeStatus())
            desired = snapshot.versions[t] if snapshot else ""
            entry: dict[str, object] = {
                "state": ts.state(desired) if status.connected else "DISCONNECTED",
                "desired_version": desired,
                "acked_version": ts.acked_version,
                "acked_at": ts.acked_at,
                "sends": ts.sends,
            }
            if ts.error:
                entry["error"] = ts.error
                entry["rejected_resources"] = list(ts.rejected_resources)
                entry["nacks"] = ts.nacks
            types[SHORT_NAMES[t]] = entry
        return {
            "node": node_id,
            "connected": status.connected,
            "api": status.api,
            "synced": self.synced(node_id),
            "types": types,
        }
