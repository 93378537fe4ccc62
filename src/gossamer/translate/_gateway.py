"""``(MeshState, gateway) -> Snapshot`` for an ingress gateway: listeners on the declared
ports (TLS terminated with the declared certificate files), routes from the HTTPRoutes and
GRPCRoutes attached to it, and the mesh service clusters they lead to."""

from __future__ import annotations

from typing import Any

from gossamer.model import (
    Gateway,
    GatewayListener,
    HTTPRoute,
    ListenerProtocol,
    MeshState,
    ParentKind,
    PolicyTargetKind,
)
from gossamer.translate import names
from gossamer.translate._access_log import access_logs
from gossamer.translate._blocks import fault_filter, hcm, listener, rds, service_clusters
from gossamer.translate._policy import compression_filters
from gossamer.translate._routes import (
    Listener,
    candidates,
    duration,
    route_entry,
    service_cluster,
    uses_fault,
)
from gossamer.translate._snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, Snapshot
from gossamer.translate._telemetry import source_stamp
from gossamer.translate._tracing import hcm_tracing, tracing_cluster

_DOWNSTREAM_TLS = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
)


_TLS_INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3."
        "TlsInspector"
    },
}


class UnknownGateway(LookupError):
    pass


def translate_gateway(state: MeshState, name: str) -> Snapshot:
    gateway = state.config.gateway(name)
    if gateway is None:
        raise UnknownGateway(name)
    clusters, endpoints = service_clusters(state)
    by_type: dict[str, list[Resource]] = {
        CLUSTER: clusters,
        ENDPOINT: endpoints,
        LISTENER: [],
        ROUTE: [],
    }
    ports = sorted({lst.port for lst in gateway.listeners})
    attached = [
        r
        for r in state.config.routes
        if any(p.kind is ParentKind.GATEWAY and p.name == name for p in r.parents)
    ]
    extra = [fault_filter()] if uses_fault(attached) else []
    policy = state.config.policy_for(name, PolicyTargetKind.GATEWAY)
    if policy is not None and policy.compression is not None:
        extra += compression_filters(policy.compression)
    logs = access_logs(state.config.settings.access_log, gateway.node_id, "ingress")
    tracing = hcm_tracing(state.config.settings.tracing, gateway.node_id)
    if state.config.settings.tracing is not None:
        connect = duration(state.config.settings.connect_timeout_ms)
        by_type[CLUSTER].append(tracing_cluster(state.config.settings.tracing, connect))
    for port in ports:
        on_port = [lst for lst in gateway.listeners if lst.port == port]
        route_name = names.gateway_route_config(name, port)
        by_type[ROUTE].append(_route_config(state, gateway, on_port, attached, route_name))
        chains = [
            _filter_chain(lst, hcm(f"gateway_{name}_{port}", rds(route_name), extra, logs, tracing))
            for lst in on_port
        ]
        if on_port[0].protocol is ListenerProtocol.HTTP:
            chains = chains[:1]  # one HTTP chain serves every hostname on the port
        resource = listener(names.gateway_listener(name, port), gateway.address, port, chains)
        if any("filter_chain_match" in c for c in chains):
            # Choosing a chain by SNI needs the TLS inspector to read it first.
            resource = Resource(
                resource.name,
                {**resource.body, "listener_filters": [_TLS_INSPECTOR]},
            )
        by_type[LISTENER].append(resource)
    return Snapshot.build(by_type)


def _filter_chain(lst: GatewayListener, manager: dict[str, Any]) -> dict[str, Any]:
    chain: dict[str, Any] = {"filters": [manager]}
    if lst.protocol is ListenerProtocol.HTTPS:
        if lst.hostname:
            chain["filter_chain_match"] = {"server_names": [lst.hostname]}
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _DOWNSTREAM_TLS,
                "common_tls_context": {
                    "tls_certificates": [
                        {
                            "certificate_chain": {"filename": lst.certificate_file},
                            "private_key": {"filename": lst.private_key_file},
                        }
                    ],
                    "alpn_protocols": ["h2", "http/1.1"],
                },
            },
        }
    return chain


def _attaches(route: HTTPRoute, gateway: str, lst: GatewayListener) -> bool:
    return any(
        p.kind is ParentKind.GATEWAY
        and p.name == gateway
        and p.section in (None, lst.name)
        and p.port in (None, lst.port)
        for p in route.parents
    )


def _hosts(route: HTTPRoute, lst: GatewayListener) -> list[str]:
    """The hostnames a route serves on a listener (Gateway API intersection, simplified:
    a listener hostname limits routes without hostnames to it)."""
    if route.hostnames:
        if lst.hostname is None:
            return list(route.hostnames)
        return [h for h in route.hostnames if _host_matches(lst.hostname, h)]
    return [lst.hostname or "*"]


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) or host == pattern
    return host == pattern


def _route_config(
    state: MeshState,
    gateway: Gateway,
    listeners: list[GatewayListener],
    routes: list[HTTPRoute],
    name: str,
) -> Resource:
    by_host: dict[str, list[HTTPRoute]] = {}
    for lst in listeners:
        for route in routes:
            if _attaches(route, gateway.name, lst):
                for host in _hosts(route, lst):
                    if route not in by_host.setdefault(host, []):
                        by_host[host].append(route)
    port = listeners[0].port
    virtual_hosts = []
    for host in sorted(by_host, key=lambda h: (h == "*", h)):
        found = candidates(by_host[host], lambda _r: True)
        https = listeners[0].protocol is ListenerProtocol.HTTPS
        where = Listener(port, "https" if https else "http", None if "*" in host else host)
        virtual_hosts.append(
            {
                "name": f"{host}:{port}",
                "domains": ["*"] if host == "*" else [host, f"{host}:{port}"],
                "routes": [
                    route_entry(c, state.config.settings, service_cluster, where) for c in found
                ],
            }
        )
    if not any(vh["domains"] == ["*"] for vh in virtual_hosts):
        virtual_hosts.append(
            {
                "name": "no-route",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "direct_response": {
                            "status": 404,
                            "body": {
                                "inline_string": f"gossamer: gateway {gateway.name} has no "
                                "route for this host\n"
                            },
                        },
                    }
                ],
            }
        )
    body = {
        "name": name,
        "virtual_hosts": virtual_hosts,
        **source_stamp(state, gateway.node_id),
    }
    return Resource(name, body)
