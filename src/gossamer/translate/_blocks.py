"""Envoy building blocks shared by the sidecar and gateway translations: listeners,
connection managers, mesh service clusters and their endpoints."""

from __future__ import annotations

from typing import Any

from gossamer.model import MeshState, ParentKind, Port, Service, Workload
from gossamer.translate import names
from gossamer.translate._policy import localize, mesh_cluster
from gossamer.translate._routes import FAULT_FILTER, HTTP_FAULT, duration
from gossamer.translate._snapshot import Resource

HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
ADS = {"ads": {}, "resource_api_version": "V3"}


def address(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


def http2_options() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS,
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def listener(name: str, ip: str, port: int, filter_chains: list[dict[str, Any]]) -> Resource:
    return Resource(
        name,
        {
            "name": name,
            "address": address(ip, port),
            # Never share a port silently with another process (ENVOY-FACTS: SO_REUSEPORT).
            "enable_reuse_port": False,
            "filter_chains": filter_chains,
        },
    )


def hcm(
    stat_prefix: str,
    routing: dict[str, Any],
    extra_filters: list[dict[str, Any]] | None = None,
    access_log: list[dict[str, Any]] | None = None,
    tracing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An HTTP connection manager; ``extra_filters`` run before the router."""
    config: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        **routing,
        "http_filters": [
            *(extra_filters or []),
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
        ],
    }
    if access_log:
        config["access_log"] = access_log
    if tracing:
        config["tracing"] = tracing
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def rds(route_config_name: str) -> dict[str, Any]:
    return {"rds": {"route_config_name": route_config_name, "config_source": ADS}}


def fault_filter() -> dict[str, Any]:
    """Does nothing by itself; routes with a FaultInjection configure it per route."""
    return {"name": FAULT_FILTER, "typed_config": {"@type": HTTP_FAULT}}


def tcp_proxy(
    stat_prefix: str, cluster: str, access_log: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster}
    if access_log:
        config["access_log"] = access_log
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": config}


def reachable_services(state: MeshState, caller: Workload) -> frozenset[str] | None:
    """The services a caller's requests can reach: those in its ``calls``, and every
    backend (and mirror) of the routes of those services. None: no ``calls``, every one."""
    if caller.calls is None:
        return None
    called = set(caller.calls)
    reached = set(called)
    for route in state.config.routes:
        if any(p.kind is ParentKind.SERVICE and p.service in called for p in route.parents):
            for rule in route.rules:
                reached.update(b.service for b in rule.backends)
                reached.update(m.backend.service for m in rule.mirrors)
    return frozenset(reached)


def service_clusters(
    state: MeshState, caller_zone: str = "", caller: Workload | None = None
) -> tuple[list[Resource], list[Resource]]:
    """An EDS cluster and its endpoints for every port of every mesh service, with each
    service's TrafficPolicy applied, as seen from a caller in ``caller_zone``. With a
    ``caller`` that declares ``calls``, only for the services its requests can reach:
    those it calls and the backends of their routes."""
    reachable = reachable_services(state, caller) if caller is not None else None
    connect = duration(state.config.settings.connect_timeout_ms)
    clusters, endpoints = [], []
    for svc in state.config.services():
        if reachable is not None and svc.name not in reachable:
            continue
        policy = state.config.policy_for(svc.name)
        locality = policy.locality if policy else None
        for port in svc.ports:
            name = names.outbound_cluster(svc.name, port.port)
            cluster = {
                "name": name,
                "type": "EDS",
                "eds_cluster_config": {"eds_config": ADS},
                "connect_timeout": connect,
                "lb_policy": "ROUND_ROBIN",
            }
            clusters.append(Resource(name, mesh_cluster(cluster, svc.name, port, policy)))
            assignment = _load_assignment(name, state, svc, port)
            assignment["endpoints"] = localize(assignment["endpoints"], locality, caller_zone)
            endpoints.append(Resource(name, assignment))
    return clusters, endpoints


def _load_assignment(name: str, state: MeshState, svc: Service, port: Port) -> dict[str, Any]:
    by_zone: dict[str, list[dict[str, Any]]] = {}
    for workload_name in svc.workloads:
        workload = state.config.workload(workload_name)
        if workload is None or workload.port(port.port) is None:
            continue
        for inst in state.instances_of(workload_name):
            inbound = inst.inbound_port(port.port)
            if inbound is None or inst.name in state.not_serving:
                continue
            by_zone.setdefault(workload.zone, []).append(
                {"endpoint": {"address": address(inst.address, inbound)}}
            )
    endpoints = []
    for zone, lb_endpoints in sorted(by_zone.items()):
        group: dict[str, Any] = {"lb_endpoints": lb_endpoints}
        if zone:
            group["locality"] = {"zone": zone}
        endpoints.append(group)
    return {"cluster_name": name, "endpoints": endpoints}
