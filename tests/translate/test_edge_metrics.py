"""Mesh ``telemetry.edgeMetrics``: on (the default), callers stamp the source-workload
header and receivers keep one virtual cluster per (caller, service); off, neither, and
nothing else in any proxy's config changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.api import Source, load_config
from gossamer.model import MeshConfig, MeshState, place, place_gateways, sequential_ports
from gossamer.translate import (
    EDGE_SEPARATOR,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SOURCE_HEADER,
    Snapshot,
    effective_routes,
    translate,
    translate_gateway,
)

CASE = Path(__file__).parent / "testdata" / "in" / "edge-metrics-off.yaml"
GATEWAY_NODE = "ingress.gateway"


def _config(edge_metrics: bool) -> MeshConfig:
    """The golden case (edge metrics off), or the same mesh with them on."""
    config, problems = load_config([Source(CASE.name, CASE.read_text(), str(CASE.parent))])
    assert config is not None, "\n".join(map(str, problems))
    assert config.settings.telemetry.edge_metrics is False
    settings = config.settings
    telemetry = dataclasses.replace(settings.telemetry, edge_metrics=edge_metrics)
    return dataclasses.replace(config, settings=dataclasses.replace(settings, telemetry=telemetry))


def _snapshots(edge_metrics: bool) -> dict[str, Snapshot]:
    config = _config(edge_metrics)
    allocate = sequential_ports(20000)
    state = MeshState(
        config,
        place(config, None, allocate),
        gateway_admin_ports=place_gateways(config, None, allocate),
    )
    out = {i.name: translate(state, i.name) for i in state.instances}
    out |= {g.node_id: translate_gateway(state, g.name) for g in config.gateways}
    return out


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping nested in ``value``, outermost first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dicts(item)


def _stamps(snapshot: Snapshot) -> dict[str, list[Any]]:
    """``request_headers_to_add`` of every route configuration, by its name."""
    return {
        name: r.body["request_headers_to_add"]
        for name, r in snapshot.of(ROUTE).items()
        if "request_headers_to_add" in r.body
    }


def _virtual_clusters(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Every virtual cluster in the listeners' inline route configurations."""
    return [
        vc
        for listener in snapshot.of(LISTENER).values()
        for d in _dicts(listener.body)
        for vc in d.get("virtual_clusters", [])
    ]


def _without_edge_metrics(value: Any) -> Any:
    """``value`` without the keys that carry edge metrics."""
    if isinstance(value, dict):
        return {
            k: _without_edge_metrics(v)
            for k, v in value.items()
            if k not in ("request_headers_to_add", "virtual_clusters")
        }
    if isinstance(value, list):
        return [_without_edge_metrics(v) for v in value]
    return value


def test_on_callers_stamp_their_name_and_receivers_count_per_caller() -> None:
    snapshots = _snapshots(edge_metrics=True)
    for proxy in ("web-0", "catalog-0", GATEWAY_NODE):
        stamps = _stamps(snapshots[proxy])
        assert stamps, f"{proxy} stamps no source header"
        source = proxy.removesuffix("-0")
        for headers in stamps.values():
            assert {"key": SOURCE_HEADER, "value": source} in [h["header"] for h in headers]
    catalog = {vc["name"]: vc for vc in _virtual_clusters(snapshots["catalog-0"])}
    callers = [GATEWAY_NODE, "catalog", "web"]
    assert set(catalog) == {
        f"{c}{EDGE_SEPARATOR}{s}" for c in callers for s in ("catalog", "catalog-v1")
    }
    assert catalog[f"web{EDGE_SEPARATOR}catalog"]["headers"][0] == {
        "name": SOURCE_HEADER,
        "string_match": {"exact": "web"},
    }
    assert {vc["name"] for vc in _virtual_clusters(snapshots["web-0"])} == {
        f"{c}{EDGE_SEPARATOR}web" for c in callers
    }


def test_off_no_header_and_no_virtual_clusters() -> None:
    snapshots = _snapshots(edge_metrics=False)
    assert set(snapshots) == {"web-0", "catalog-0", GATEWAY_NODE}
    for proxy, snapshot in snapshots.items():
        assert _stamps(snapshot) == {}, proxy
        assert _virtual_clusters(snapshot) == [], proxy
        for route in snapshot.of(ROUTE).values():
            assert SOURCE_HEADER not in str(route.body), proxy


@pytest.mark.parametrize("proxy", ["web-0", "catalog-0", GATEWAY_NODE])
def test_off_changes_nothing_else(proxy: str) -> None:
    on, off = _snapshots(edge_metrics=True)[proxy], _snapshots(edge_metrics=False)[proxy]
    for type_url in PUSH_ORDER:
        on_bodies = {n: _without_edge_metrics(r.body) for n, r in on.of(type_url).items()}
        off_bodies = {n: r.body for n, r in off.of(type_url).items()}
        assert on_bodies == off_bodies, type_url


def test_effective_shows_the_setting() -> None:
    assert effective_routes(_config(edge_metrics=False), "web")["edge_metrics"] is False
    assert effective_routes(_config(edge_metrics=True), "web")["edge_metrics"] is True
