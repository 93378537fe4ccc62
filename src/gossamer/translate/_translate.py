"""``(MeshState, proxy) -> Snapshot`` for a sidecar: the whole of its translation, pure.

A sidecar gets:
- an inbound listener per port of its workload, forwarding to the local app;
- one outbound HTTP listener that the app uses as its HTTP proxy (``HTTP_PROXY``), whose
  virtual hosts are the mesh's services (``http://orders/`` or ``http://orders:8080/``)
  and the declared external services; other hosts follow the mesh's outbound policy;
- an outbound local port per TCP service port (mesh or external);
- an EDS cluster per service port and the endpoints behind it (sidecar inbound ports).

A workload that declares ``calls`` gets the outbound virtual hosts, clusters, endpoints
and TCP ports of the listed services and ExternalServices only; a call to any other host
follows the outbound policy, like a host the mesh does not know.
"""

from __future__ import annotations

from typing import Any

from gossamer.model import (
    ExternalPort,
    ExternalService,
    Instance,
    MeshState,
    OutboundPolicy,
    ParentKind,
    Port,
    Workload,
)
from gossamer.translate import names
from gossamer.translate._access_log import access_logs
from gossamer.translate._blocks import (
    address,
    fault_filter,
    hcm,
    listener,
    rds,
    service_clusters,
    tcp_proxy,
)
from gossamer.translate._policy import (
    APP_IDLE_TIMEOUT_MS,
    DOWNSTREAM_IDLE_TIMEOUT_MS,
    compression_filters,
    protocol_options,
    route_hashes,
)
from gossamer.translate._routes import (
    Listener,
    candidates,
    default_route,
    duration,
    route_entry,
    service_cluster,
    uses_fault,
)
from gossamer.translate._snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, Snapshot
from gossamer.translate._telemetry import inbound_virtual_clusters, source_stamp
from gossamer.translate._tracing import hcm_tracing, tracing_cluster

DFP_FILTER = "envoy.filters.http.dynamic_forward_proxy"
_DFP_FILTER_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig"
)
_DFP_CLUSTER_TYPE = (
    "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig"
)
_DNS_CACHE = {"name": "gossamer_egress", "dns_lookup_family": "V4_PREFERRED"}
_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
EGRESS_DENIED_HEADER = "x-gossamer-egress"


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
    clusters, endpoints = service_clusters(state, workload.zone, workload)
    by_type: dict[str, list[Resource]] = {
        CLUSTER: clusters,
        ENDPOINT: endpoints,
        LISTENER: [],
        ROUTE: [],
    }
    connect = duration(state.config.settings.connect_timeout_ms)
    for ext in state.config.external_services:
        if not workload.may_call(ext.name):
            continue
        for ext_port in ext.ports:
            by_type[CLUSTER].append(_external_cluster(ext, ext_port, connect))
    if state.config.settings.outbound_policy is OutboundPolicy.ALLOW_ANY:
        by_type[CLUSTER].append(_passthrough_cluster(connect))
    if state.config.settings.tracing is not None:
        by_type[CLUSTER].append(tracing_cluster(state.config.settings.tracing, connect))
    for port in workload.ports:
        by_type[CLUSTER].append(_inbound_cluster(instance, port, connect))
        by_type[LISTENER].append(_inbound_listener(state, instance, port))
    by_type[LISTENER].append(_outbound_http_listener(state, instance))
    by_type[ROUTE].append(_outbound_routes(state, workload))
    for service, service_port, local_port in instance.outbound_tcp_ports:
        if not workload.may_call(service):
            continue
        name = names.outbound_tcp_listener(service, service_port)
        cluster = names.outbound_cluster(service, service_port)
        logs = access_logs(state.config.settings.access_log, instance.name, "outbound", tcp=True)
        chain = {"filters": [tcp_proxy(name, cluster, logs)]}
        by_type[LISTENER].append(listener(name, instance.address, local_port, [chain]))
    return Snapshot.build(by_type)


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
                {"lb_endpoints": [{"endpoint": {"address": address("127.0.0.1", app_port)}}]}
            ],
        },
    }
    if port.protocol.is_http:
        cluster["typed_extension_protocol_options"] = protocol_options(
            port.protocol.upstream_http2, APP_IDLE_TIMEOUT_MS
        )
    return Resource(name, cluster)


def _inbound_listener(state: MeshState, instance: Instance, port: Port) -> Resource:
    listen = instance.inbound_port(port.port)
    assert listen is not None, f"placement gave {instance.name} no inbound port {port.port}"
    name = names.inbound_listener(port.port)
    cluster = names.inbound_cluster(port.port)
    if not port.protocol.is_http:
        logs = access_logs(state.config.settings.access_log, instance.name, "inbound", tcp=True)
        chain = {"filters": [tcp_proxy(name, cluster, logs)]}
        return listener(name, instance.address, listen, [chain])
    workload = state.config.workload(instance.workload)
    assert workload is not None
    virtual_host: dict[str, Any] = {
        "name": "inbound",
        "domains": ["*"],
        # The caller's sidecar enforces the route's timeout; the inbound hop adds none.
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "0s"}}],
    }
    edges = inbound_virtual_clusters(state, workload)
    if edges:
        virtual_host["virtual_clusters"] = edges
    route_config = {"name": name, "virtual_hosts": [virtual_host]}
    compression = next(
        (
            policy.compression
            for svc in workload.services
            if (policy := state.config.policy_for(svc)) and policy.compression
        ),
        None,
    )
    manager = hcm(
        name,
        {
            "route_config": route_config,
            "common_http_protocol_options": {"idle_timeout": duration(DOWNSTREAM_IDLE_TIMEOUT_MS)},
        },
        compression_filters(compression) if compression else None,
        access_logs(state.config.settings.access_log, instance.name, "inbound"),
        hcm_tracing(state.config.settings.tracing, instance.workload),
    )
    return listener(name, instance.address, listen, [{"filters": [manager]}])


def _outbound_http_listener(state: MeshState, instance: Instance) -> Resource:
    filters = []
    if uses_fault(state.config.routes):
        filters.append(fault_filter())
    if state.config.settings.outbound_policy is OutboundPolicy.ALLOW_ANY:
        filters.append(
            {
                "name": DFP_FILTER,
                "typed_config": {"@type": _DFP_FILTER_TYPE, "dns_cache_config": _DNS_CACHE},
            }
        )
    logs = access_logs(state.config.settings.access_log, instance.name, "outbound")
    tracing = hcm_tracing(state.config.settings.tracing, instance.workload)
    manager = hcm("outbound_http", rds(names.OUTBOUND_HTTP), filters, logs, tracing)
    chain = {"filters": [manager]}
    return listener(names.OUTBOUND_HTTP, instance.address, instance.outbound_http_port, [chain])


def _outbound_routes(state: MeshState, workload: Workload) -> Resource:
    """Virtual hosts for the services and ExternalServices ``workload`` may call, then the
    catch-all of the outbound policy."""
    settings = state.config.settings
    mesh_routes = [
        r for r in state.config.routes if any(p.kind is ParentKind.SERVICE for p in r.parents)
    ]
    virtual_hosts = []
    hashes = route_hashes(state.config)
    for svc in state.config.services():
        if not workload.may_call(svc.name):
            continue
        for port in svc.ports:
            if not port.protocol.is_http:
                continue
            found = candidates(
                mesh_routes,
                lambda route, svc=svc, port=port: any(  # type: ignore[misc]
                    p.kind is ParentKind.SERVICE
                    and p.service == svc.name
                    and p.port in (None, port.port)
                    for p in route.parents
                ),
            )
            cluster = names.outbound_cluster(svc.name, port.port)
            where = Listener(port.port, host=svc.name, hashes=hashes)
            routes = (
                [route_entry(c, settings, service_cluster, where) for c in found]
                if found
                else [
                    default_route(
                        f"{svc.name}:{port.port}/default", cluster, settings, hashes.get(svc.name)
                    )
                ]
            )
            virtual_hosts.append(
                {
                    "name": names.virtual_host(svc.name, port.port),
                    "domains": _domains([svc.name], port.port),
                    "routes": routes,
                }
            )
    for ext in state.config.external_services:
        if not workload.may_call(ext.name):
            continue
        for ext_port in ext.ports:
            if ext_port.protocol.is_http:
                cluster = names.outbound_cluster(ext.name, ext_port.port)
                virtual_hosts.append(
                    {
                        "name": names.virtual_host(ext.name, ext_port.port),
                        "domains": _domains(list(ext.hosts), ext_port.port),
                        "routes": [
                            default_route(f"{ext.name}:{ext_port.port}/default", cluster, settings)
                        ],
                    }
                )
    virtual_hosts.append(_catch_all(state))
    body = {
        "name": names.OUTBOUND_HTTP,
        "virtual_hosts": virtual_hosts,
        **source_stamp(state, workload.name),
    }
    return Resource(names.OUTBOUND_HTTP, body)


def _domains(hosts: list[str], port: int) -> list[str]:
    out = []
    for host in hosts:
        out.append(f"{host}:{port}")
        if port == 80:
            out.append(host)
    return out


def _catch_all(state: MeshState) -> dict[str, Any]:
    """Hosts the mesh does not know: forwarded (AllowAny) or refused (RegistryOnly)."""
    settings = state.config.settings
    if settings.outbound_policy is OutboundPolicy.ALLOW_ANY:
        route = default_route("passthrough", names.PASSTHROUGH, settings)
    else:
        route = {
            "name": "egress-denied",
            "match": {"prefix": "/"},
            "direct_response": {
                "status": 502,
                "body": {
                    "inline_string": "gossamer: egress denied: the mesh's outboundTrafficPolicy "
                    "is RegistryOnly and no service or ExternalService has this host\n"
                },
            },
            "response_headers_to_add": [
                {
                    "header": {"key": EGRESS_DENIED_HEADER, "value": "denied; policy=RegistryOnly"},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
        }
    return {"name": "unknown", "domains": ["*"], "routes": [route]}


def _passthrough_cluster(connect_timeout: str) -> Resource:
    return Resource(
        names.PASSTHROUGH,
        {
            "name": names.PASSTHROUGH,
            "connect_timeout": connect_timeout,
            "lb_policy": "CLUSTER_PROVIDED",
            "cluster_type": {
                "name": "envoy.clusters.dynamic_forward_proxy",
                "typed_config": {"@type": _DFP_CLUSTER_TYPE, "dns_cache_config": _DNS_CACHE},
            },
        },
    )


def _external_cluster(ext: ExternalService, port: ExternalPort, connect_timeout: str) -> Resource:
    name = names.outbound_cluster(ext.name, port.port)
    targets = list(ext.addresses) or [ext.hosts[0]]
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if ext.addresses else "STRICT_DNS",
        "connect_timeout": connect_timeout,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": address(t, port.target_port)}} for t in targets
                    ]
                }
            ],
        },
    }
    if not ext.addresses:
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if port.tls is not None:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _TLS,
                "sni": port.tls.sni,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": port.tls.ca_file or SYSTEM_CA_FILE},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": port.tls.sni}}
                        ],
                    }
                },
            },
        }
    return Resource(name, cluster)


__all__ = ["EGRESS_DENIED_HEADER", "UnknownProxy", "translate"]
