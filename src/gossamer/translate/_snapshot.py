"""Immutable, versioned, internally consistent sets of Envoy resources for one proxy.

Resources are proto3-JSON-shaped mappings (``@type`` on typed configs), which keeps
translation pure and golden files readable; the xDS layer encodes them to protobuf.
A snapshot is checked for consistency before anyone can publish it (go-control-plane's
``Snapshot.Consistent``): every route configuration a listener names, every cluster a
route or listener names, and every EDS cluster's endpoints exist.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
"""The order that avoids traffic to unknown clusters (Envoy's ADS guidance)."""

SHORT_NAMES = {CLUSTER: "clusters", ENDPOINT: "endpoints", LISTENER: "listeners", ROUTE: "routes"}

Body = Mapping[str, Any]


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    body: Body
    version: str = field(default="")
    """Content hash of ``body``; filled in at construction."""

    def __post_init__(self) -> None:
        if not self.version:
            object.__setattr__(self, "version", _digest(self.body))


class InconsistentSnapshot(ValueError):
    """A translation bug: the snapshot references a resource it does not contain."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Resources per type URL, each type versioned by a hash of its content."""

    resources: Mapping[str, Mapping[str, Resource]]
    versions: Mapping[str, str]

    @classmethod
    def build(cls, by_type: Mapping[str, list[Resource]]) -> Snapshot:
        resources: dict[str, dict[str, Resource]] = {}
        for type_url in PUSH_ORDER:
            items = sorted(by_type.get(type_url, []), key=lambda r: r.name)
            named = {r.name: r for r in items}
            if len(named) != len(items):
                raise InconsistentSnapshot(f"duplicate {SHORT_NAMES[type_url]} names")
            resources[type_url] = named
        versions = {
            t: _digest([(n, r.version) for n, r in res.items()]) for t, res in resources.items()
        }
        snap = cls(resources, versions)
        snap.check_consistent()
        return snap

    @property
    def version(self) -> str:
        """One hash over every type: equal snapshots have equal versions."""
        return _digest([self.versions[t] for t in PUSH_ORDER])

    def of(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, {})

    def check_consistent(self) -> None:
        clusters = self.of(CLUSTER)
        routes = self.of(ROUTE)
        endpoints = self.of(ENDPOINT)
        for name, cluster in clusters.items():
            if cluster.body.get("type") == "EDS" and name not in endpoints:
                raise InconsistentSnapshot(f"EDS cluster {name} has no endpoints resource")
        for name in endpoints:
            if name not in clusters:
                raise InconsistentSnapshot(f"endpoints {name} belong to no cluster")
        for listener in self.of(LISTENER).values():
            for ref in _walk_key(listener.body, "route_config_name"):
                if ref not in routes:
                    raise InconsistentSnapshot(f"listener references missing route config {ref}")
            for ref in _walk_key(listener.body, "cluster"):
                if ref not in clusters:
                    raise InconsistentSnapshot(f"listener references missing cluster {ref}")
        for route in routes.values():
            for ref in _walk_key(route.body, "cluster"):
                if ref not in clusters:
                    raise InconsistentSnapshot(
                        f"route config {route.name} references missing cluster {ref}"
                    )
            for ref in _walk_key(route.body, "name", parent="clusters"):
                if ref not in clusters:
                    raise InconsistentSnapshot(
                        f"route config {route.name} references missing cluster {ref}"
                    )


def snapshot_changes(
    old: Mapping[str, Snapshot], new: Mapping[str, Snapshot]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per proxy whose config differs, per resource type that differs: how many resources
    are added, removed and changed. A proxy only in ``new`` (or ``old``) counts all its
    resources as added (or removed)."""
    empty = Snapshot({}, {})
    out: dict[str, dict[str, dict[str, int]]] = {}
    for node in sorted(old.keys() | new.keys()):
        before, after = old.get(node, empty), new.get(node, empty)
        per_type = {}
        for type_url in PUSH_ORDER:
            a, b = before.of(type_url), after.of(type_url)
            counts = {
                "added": len(b.keys() - a.keys()),
                "removed": len(a.keys() - b.keys()),
                "changed": sum(1 for n in a.keys() & b.keys() if a[n].version != b[n].version),
            }
            if any(counts.values()):
                per_type[SHORT_NAMES[type_url]] = counts
        if per_type:
            out[node] = per_type
    return out


def _walk_key(value: Any, key: str, parent: str = "") -> Iterator[str]:
    """Every string value stored under ``key`` (optionally only inside lists under ``parent``)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == key and isinstance(v, str) and not parent:
                yield v
            if k == parent and isinstance(v, list):
                for item in v:
                    if isinstance(item, Mapping) and isinstance(item.get(key), str):
                        yield item[key]
            yield from _walk_key(v, key, parent)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_key(item, key, parent)
