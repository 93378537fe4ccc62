"""``(MeshState, proxy) -> Snapshot``: the whole of translation, as a pure function.

A sidecar gets:
- an inbound listener per port of its workload, forwarding to the local app;
- one outbound HTTP listener that the app uses as its HTTP proxy (``HTTP_PROXY``), whose
  virtual hosts are the mesh's services (``http://orders/`` or ``http://orders:8080/``);
- an outbound local port per TCP service port;
- an EDS cluster per service port and the endpoints behind it (sidecar inbound ports).

Every route carries an explicit timeout: the route's own, or the mesh default, never
Envoy's hidden 15 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gossamer.model import (
    BackendRef,
    HTTPRoute,
    Instance,
    MeshState,
    PathMatchType,
    Port,
    RouteMatch,
    RouteRule,
    Service,
)
from gossamer.translate import names
from gossamer.translate._snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    Resource,
    Snapshot,
)

_HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
_TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


class UnknownProxy(LookupError):
    """The proxy's node id names no instance in the mesh."""


def translate(state: MeshState, proxy: str) -> Snapshot:
    """Everything the sidecar of instance ``proxy`` needs, as one consistent snapshot."""
    instance = state.instance(proxy)
    if instance is None:
        raise UnknownProxy(proxy)
    workload = state.config.workload(instance.workload)
    if workload is None:
        raise UnknownProxy(proxy)
    services = state.config.services()
    by_type: dict[str, list[Resource]] = {CLUSTER: [], ENDPOINT: [], LISTENER: [], ROUTE: []}

    connect = _duration(state.config.settings.connect_timeout_ms)
    for svc in services:
        for port in svc.ports:
            name = names.outbound_cluster(svc.name, port.port)
            by_type[CLUSTER].append(Resource(name, _eds_cluster(name, port, connect)))
            by_type[ENDPOINT].append(Resource(name, _load_assignment(name, state, svc, port)))

    for port in workload.ports:
        by_type[CLUSTER].append(_inbound_cluster(instance, port, connect))
        by_type[LISTENER].append(_inbound_listener(instance, port))

    by_type[LISTENER].append(_outbound_http_listener(instance))
    by_type[ROUTE].append(_outbound_routes(state, services))
    for service, service_port, local_port in instance.outbound_tcp_ports:
        by_type[LISTENER].append(
            _outbound_tcp_listener(instance, service, service_port, local_port)
        )
    return Snapshot.build(by_type)


def _duration(ms: int) -> str:
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms / 1000:.3f}s"


def _address(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


def _http2_options() -> dict[str, Any]:
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _HTTP_OPTIONS,
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def _eds_cluster(name: str, port: Port, connect_timeout: str) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
        "connect_timeout": connect_timeout,
        "lb_policy": "ROUND_ROBIN",
    }
    if port.protocol.upstream_http2:
        cluster["typed_extension_protocol_options"] = _http2_options()
    return cluster


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
                {"endpoint": {"address": _address(inst.address, inbound)}}
            )
    endpoints = []
    for zone, lb_endpoints in sorted(by_zone.items()):
        group: dict[str, Any] = {"lb_endpoints": lb_endpoints}
        if zone:
            group["locality"] = {"zone": zone}
        endpoints.append(group)
    return {"cluster_name": name, "endpoints": endpoints}


def _inbound_cluster(instance: Instance, port: Port, connect_timeout: str) -> Resource:
    name = names.inbound_cluster(port.port)
    app_port = instance.app_port(port.port)
    assert app_port is not None, f"placement gave {instance.name} no app port {port.port}"
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _address("127.0.0.1", app_port)}}]}
            ],
        },
    }
    if port.protocol.upstream_http2:
        cluster["typed_extension_protocol_options"] = _http2_options()
    return Resource(name, cluster)


def _listener(name: str, ip: str, port: int, network_filter: dict[str, Any]) -> Resource:
    return Resource(
        name,
        {
            "name": name,
            "address": _address(ip, port),
            # Never share a port silently with another process (ENVOY-FACTS: SO_REUSEPORT).
            "enable_reuse_port": False,
            "filter_chains": [{"filters": [network_filter]}],
        },
    )


def _hcm(stat_prefix: str, routing: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _HCM,
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            **routing,
            "http_filters": [
                {"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}
            ],
        },
    }


def _tcp_proxy(stat_prefix: str, cluster: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {"@type": _TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster},
    }


def _inbound_listener(instance: Instance, port: Port) -> Resource:
    listen = instance.inbound_port(port.port)
    assert listen is not None, f"placement gave {instance.name} no inbound port {port.port}"
    name = names.inbound_listener(port.port)
    cluster = names.inbound_cluster(port.port)
    if not port.protocol.is_http:
        return _listener(name, instance.address, listen, _tcp_proxy(name, cluster))
    route_config = {
        "name": name,
        "virtual_hosts": [
            {
                "name": "inbound",
                "domains": ["*"],
                # The caller's sidecar enforces the route's timeout; the inbound hop adds none.
                "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}
                ],
            }
        ],
    }
    return _listener(name, instance.address, listen, _hcm(name, {"route_config": route_config}))


def _outbound_http_listener(instance: Instance) -> Resource:
    rds = {
        "rds": {
            "route_config_name": names.OUTBOUND_HTTP,
            "config_source": {"ads": {}, "resource_api_version": "V3"},
        }
    }
    return _listener(
        names.OUTBOUND_HTTP,
        instance.address,
        instance.outbound_http_port,
        _hcm("outbound_http", rds),
    )


def _outbound_tcp_listener(instance: Instance, service: str, port: int, local: int) -> Resource:
    name = names.outbound_tcp_listener(service, port)
    return _listener(
        name,
        instance.address,
        local,
        _tcp_proxy(name, names.outbound_cluster(service, port)),
    )


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One (route, rule, match) triple, sortable by Gateway API precedence."""

    route: HTTPRoute
    rule_index: int
    rule: RouteRule
    match: RouteMatch

    def key(self) -> tuple[int, int, int, str, int]:
        path = self.match.path
        return (
            0 if path.type is PathMatchType.EXACT else 1,
            -len(path.value),
            -len(self.match.headers),
            self.route.name,
            self.rule_index,
        )


def _outbound_routes(state: MeshState, services: tuple[Service, ...]) -> Resource:
    default_timeout = state.config.settings.default_request_timeout_ms
    virtual_hosts = []
    for svc in services:
        for port in svc.ports:
            if not port.protocol.is_http:
                continue
            candidates = sorted(
                (
                    _Candidate(route, i, rule, match)
                    for route in state.config.routes
                    if any(
                        p.service == svc.name and p.port in (None, port.port) for p in route.parents
                    )
                    for i, rule in enumerate(route.rules)
                    for match in rule.matches
                ),
                key=_Candidate.key,
            )
            if candidates:
                routes = [_route(c, default_timeout) for c in candidates]
            else:
                routes = [
                    {
                        "name": f"{svc.name}:{port.port}/default",
                        "match": {"prefix": "/"},
                        "route": {
                            "cluster": names.outbound_cluster(svc.name, port.port),
                            "timeout": _duration(default_timeout),
                        },
                    }
                ]
            domains = [f"{svc.name}:{port.port}"]
            if port.port == 80:
                domains.append(svc.name)
            virtual_hosts.append(
                {
                    "name": names.virtual_host(svc.name, port.port),
                    "domains": domains,
                    "routes": routes,
                }
            )
    virtual_hosts.append(
        {
            "name": "unknown",
            "domains": ["*"],
            "routes": [
                {
                    "match": {"prefix": "/"},
                    "direct_response": {
                        "status": 404,
                        "body": {
                            "inline_string": "gossamer: no service in the mesh serves this host\n"
                        },
                    },
                }
            ],
        }
    )
    body = {"name": names.OUTBOUND_HTTP, "virtual_hosts": virtual_hosts}
    return Resource(names.OUTBOUND_HTTP, body)


def _route(c: _Candidate, default_timeout_ms: int) -> dict[str, Any]:
    path = c.match.path
    match: dict[str, Any]
    if path.type is PathMatchType.EXACT:
        match = {"path": path.value}
    elif path.value.rstrip("/") == "":
        match = {"prefix": "/"}
    else:
        # Gateway API prefixes match whole path elements: /api matches /api/x, not /apix.
        match = {"path_separated_prefix": path.value.rstrip("/")}
    if c.match.headers:
        match["headers"] = [
            {"name": h.name, "string_match": {"exact": h.value}} for h in c.match.headers
        ]
    timeouts = c.rule.timeouts
    request_ms = default_timeout_ms if timeouts.request_ms is None else timeouts.request_ms
    action: dict[str, Any] = _backends(c.rule.backends)
    action["timeout"] = _duration(request_ms)
    if timeouts.backend_request_ms is not None:
        action["retry_policy"] = {
            "num_retries": 0,
            "per_try_timeout": _duration(timeouts.backend_request_ms),
        }
    return {"name": f"{c.route.name}/rule-{c.rule_index}", "match": match, "route": action}


def _backends(backends: tuple[BackendRef, ...]) -> dict[str, Any]:
    live = [b for b in backends if b.weight > 0]
    if len(backends) == 1:
        return {"cluster": names.outbound_cluster(backends[0].service, backends[0].port)}
    return {
        "weighted_clusters": {
            "clusters": [
                {"name": names.outbound_cluster(b.service, b.port), "weight": b.weight}
                for b in live
            ]
        }
    }


__all__ = ["UnknownProxy", "translate"]
