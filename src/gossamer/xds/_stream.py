"""The xDS stream protocol as sans-IO state machines: requests and snapshots in,
responses out. No gRPC here, so every rule below is tested without a network.

Rules both variants keep:
- nothing is sent before the proxy's snapshot exists (never a partial config);
- a request whose nonce is not the last one sent is stale and ignored (Envoy sends them
  during rapid pushes);
- after a NACK the rejected version is not sent again: the stream waits until the model
  produces a different version (go-control-plane #46, #962);
- when clusters change, their endpoints are sent again right after, because Envoy re-warms
  a changed cluster and waits for its endpoints (ENVOY-FACTS);
- types go out in the order clusters, endpoints, listeners, routes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from gossamer.translate import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, Resource, Snapshot

WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})


@dataclass(frozen=True, slots=True)
class Request:
    """What the xDS server needs of a (Delta)DiscoveryRequest."""

    type_url: str
    nonce: str = ""
    version_info: str = ""
    resource_names: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()
    initial_versions: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    type_url: str
    version: str
    nonce: str
    resources: tuple[Resource, ...]
    removed: tuple[str, ...] = ()


class Event(enum.Enum):
    """What a stream reports about a proxy's config, per type."""

    SENT = "sent"
    """A response went out and awaits ACK or NACK."""
    ACK = "ack"
    """The proxy applied the version it was sent."""
    NACK = "nack"
    """The proxy rejected the version; it keeps its last good config."""


@dataclass(frozen=True, slots=True)
class Report:
    event: Event
    type_url: str
    version: str
    resource_names: tuple[str, ...] = ()
    error: str = ""


class _Base:
    def __init__(self) -> None:
        self._nonce = 0
        self.reports: list[Report] = []
        """Events since the owner last drained this list."""

    def _next_nonce(self) -> str:
        self._nonce += 1
        return str(self._nonce)

    def drain_reports(self) -> list[Report]:
        out, self.reports = self.reports, []
        return out

    def on_snapshot(self, snapshot: Snapshot) -> list[Response]:
        """The proxy's snapshot changed: what every subscribed type needs now."""
        return self._push(snapshot, list(self._subscribed()))

    def _subscribed(self) -> list[str]:
        raise NotImplementedError

    def _push(self, snapshot: Snapshot, type_urls: list[str]) -> list[Response]:
        raise NotImplementedError


@dataclass(slots=True)
class _SotwType:
    names: frozenset[str] | None = None
    """Subscribed names; ``None`` is a wildcard subscription."""
    sent_version: str | None = None
    sent_nonce: str = ""
    sent_names: frozenset[str] | None = None
    sent_resources: tuple[str, ...] = ()
    known_version: str = ""
    """The version the proxy says it has (from a previous stream) before we sent any."""


class SotwStream(_Base):
    """State-of-the-world ADS: every response carries all subscribed resources of a type."""

    def __init__(self) -> None:
        super().__init__()
        self._types: dict[str, _SotwType] = {}

    def on_request(self, req: Request, snapshot: Snapshot | None) -> list[Response]:
        st = self._types.get(req.type_url)
        if st is None:
            st = self._types[req.type_url] = _SotwType(known_version=req.version_info)
        if req.nonce:
            if req.nonce != st.sent_nonce:
                return []  # stale: a newer response is already on its way
            version = st.sent_version or ""
            if req.error is not None:
                self.reports.append(
                    Report(Event.NACK, req.type_url, version, st.sent_resources, req.error)
                )
            else:
                self.reports.append(Report(Event.ACK, req.type_url, version, st.sent_resources))
        if req.type_url in WILDCARD_TYPES and (not req.resource_names or "*" in req.resource_names):
            st.names = None
        else:
            st.names = frozenset(req.resource_names)
        if snapshot is None:
            return []
        return self._push(snapshot, [req.type_url])

    def _subscribed(self) -> list[str]:
        return list(self._types)

    def _push(self, snapshot: Snapshot, type_urls: list[str]) -> list[Response]:
        out = []
        force_endpoints = False
        for type_url in PUSH_ORDER:
            st = self._types.get(type_url)
            forced = type_url == ENDPOINT and force_endpoints
            if st is None or (type_url not in type_urls and not forced):
                continue
            version = snapshot.versions[type_url]
            if st.sent_version is None and version == st.known_version and st.names is None:
                st.sent_version = version  # the proxy already has exactly this (reconnect)
                self.reports.append(Report(Event.ACK, type_url, version))
                continue
            if version == st.sent_version and st.names == st.sent_names and not forced:
                continue
            resources = tuple(
                r for n, r in snapshot.of(type_url).items() if st.names is None or n in st.names
            )
            nonce = self._next_nonce()
            st.sent_version, st.sent_nonce, st.sent_names = version, nonce, st.names
            st.sent_resources = tuple(r.name for r in resources)
            self.reports.append(Report(Event.SENT, type_url, version, st.sent_resources))
            out.append(Response(type_url, version, nonce, resources))
            if type_url == CLUSTER:
                force_endpoints = True
        return out


@dataclass(slots=True)
class _DeltaType:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    sent: dict[str, str] = field(default_factory=dict)
    """name -> version the proxy has or is being sent."""
    rejected: dict[str, str] = field(default_factory=dict)
    """name -> version the proxy rejected; not sent again."""
    inflight: dict[str, tuple[dict[str, str], tuple[Resource, ...], str]] = field(
        default_factory=dict
    )
    """nonce -> (``sent`` before that response, its resources, its version)."""
    answered: bool = False


class DeltaStream(_Base):
    """Incremental ADS: only changed resources and removed names go out."""

    def __init__(self) -> None:
        super().__init__()
        self._types: dict[str, _DeltaType] = {}

    def on_request(self, req: Request, snapshot: Snapshot | None) -> list[Response]:
        st = self._types.get(req.type_url)
        if st is None:
            st = self._types[req.type_url] = _DeltaType()
            st.wildcard = req.type_url in WILDCARD_TYPES and (
                not req.resource_names or "*" in req.resource_names
            )
            st.sent.update(req.initial_versions)
        if req.nonce:
            pending = st.inflight.pop(req.nonce, None)
            if pending is not None:
                before, resources, version = pending
                names = tuple(r.name for r in resources)
                if req.error is not None:
                    st.sent = before
                    for r in resources:
                        st.rejected[r.name] = r.version
                    self.reports.append(Report(Event.NACK, req.type_url, version, names, req.error))
                else:
                    self.reports.append(Report(Event.ACK, req.type_url, version, names))
        st.names.update(n for n in req.resource_names if n != "*")
        if "*" in req.resource_names:
            st.wildcard = True
        for name in req.unsubscribe:
            if name == "*":
                st.wildcard = False
            st.names.discard(name)
            st.sent.pop(name, None)
        if snapshot is None:
            return []
        return self._push(snapshot, [req.type_url])

    def _subscribed(self) -> list[str]:
        return list(self._types)

    def _push(self, snapshot: Snapshot, type_urls: list[str]) -> list[Response]:
        out = []
        changed_clusters: set[str] = set()
        for type_url in PUSH_ORDER:
            st = self._types.get(type_url)
            force = changed_clusters if type_url == ENDPOINT else set()
            if st is None or (type_url not in type_urls and not force):
                continue
            desired = {
                n: r for n, r in snapshot.of(type_url).items() if st.wildcard or n in st.names
            }
            changed = tuple(
                r
                for n, r in desired.items()
                if n in force or (st.sent.get(n) != r.version and st.rejected.get(n) != r.version)
            )
            removed = tuple(sorted(n for n in st.sent if n not in desired))
            if not changed and not removed and st.answered:
                current = all(st.sent.get(n) == r.version for n, r in desired.items())
                if current and not st.inflight:  # the proxy has exactly what it subscribes to
                    version = snapshot.versions[type_url]
                    self.reports.append(Report(Event.ACK, type_url, version))
                continue
            before = dict(st.sent)
            for r in changed:
                st.sent[r.name] = r.version
            for n in removed:
                del st.sent[n]
            st.answered = True
            nonce = self._next_nonce()
            version = snapshot.versions[type_url]
            st.inflight[nonce] = (before, changed, version)
            self.reports.append(
                Report(Event.SENT, type_url, version, tuple(r.name for r in changed))
            )
            out.append(Response(type_url, version, nonce, changed, removed))
            if type_url == CLUSTER:
                changed_clusters = {r.name for r in changed}
        return out
