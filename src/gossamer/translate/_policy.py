"""TrafficPolicy to Envoy: cluster settings, route hash keys, endpoint localities,
health checks, and compression filters.

Connection idle timeouts are set on purpose at every hop, each shorter than the idle
timeout of the side that would otherwise close first, so a reused keep-alive connection
is never closed under a request (Istio's classic ``503 UC``):

- sidecar -> app: 1 s idle, below the keep-alive of common app servers (gunicorn 2 s,
  Node 5 s; Go and Python keep connections until the client closes);
- sidecar -> sidecar: 60 s idle, below the receiving sidecar's 300 s downstream idle.
"""

from __future__ import annotations

from typing import Any

from gossamer.model import (
    Algorithm,
    Compression,
    HashKey,
    LoadBalancer,
    Locality,
    MeshConfig,
    PolicyTargetKind,
    Port,
    TrafficPolicy,
)
from gossamer.translate._routes import duration

APP_IDLE_TIMEOUT_MS = 1_000
MESH_IDLE_TIMEOUT_MS = 60_000
DOWNSTREAM_IDLE_TIMEOUT_MS = 300_000
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_LB = {
    LoadBalancer.ROUND_ROBIN: "ROUND_ROBIN",
    LoadBalancer.LEAST_REQUEST: "LEAST_REQUEST",
    LoadBalancer.RANDOM: "RANDOM",
    LoadBalancer.RING_HASH: "RING_HASH",
    LoadBalancer.MAGLEV: "MAGLEV",
}
_COMPRESSOR = "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor"
_DECOMPRESSOR = "type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor"
_LIBRARIES = {
    Algorithm.GZIP: ("gzip", "type.googleapis.com/envoy.extensions.compression.gzip"),
    Algorithm.BROTLI: ("brotli", "type.googleapis.com/envoy.extensions.compression.brotli"),
    Algorithm.ZSTD: ("zstd", "type.googleapis.com/envoy.extensions.compression.zstd"),
}


def protocol_options(
    http2: bool, idle_timeout_ms: int, max_requests: int | None = None
) -> dict[str, Any]:
    """Upstream HTTP settings: protocol, and the idle timeout that avoids 503 UC."""
    common: dict[str, Any] = {"idle_timeout": duration(idle_timeout_ms)}
    if max_requests:
        common["max_requests_per_connection"] = max_requests
    explicit: dict[str, Any] = (
        {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    )
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": HTTP_OPTIONS,
            "common_http_protocol_options": common,
            "explicit_http_config": explicit,
        }
    }


def mesh_cluster(
    cluster: dict[str, Any], service: str, port: Port, policy: TrafficPolicy | None
) -> dict[str, Any]:
    """A caller's cluster for a service port, with the service's policy applied."""
    pool = policy.connection_pool if policy else None
    http2 = port.protocol.upstream_http2 or bool(pool and pool.http2)
    if port.protocol.is_http:
        cluster["typed_extension_protocol_options"] = protocol_options(
            http2,
            (pool.idle_timeout_ms if pool and pool.idle_timeout_ms else MESH_IDLE_TIMEOUT_MS),
            pool.max_requests_per_connection if pool else None,
        )
    if policy is None:
        return cluster
    if pool is not None:
        limits = {
            "max_connections": pool.max_connections,
            "max_pending_requests": pool.max_pending_requests,
            "max_requests": pool.max_requests,
            "max_retries": pool.max_retries,
        }
        thresholds = {k: v for k, v in limits.items() if v is not None}
        if thresholds:
            cluster["circuit_breakers"] = {"thresholds": [thresholds]}
    od = policy.outlier_detection
    if od is not None:
        outlier: dict[str, Any] = {
            "interval": duration(od.interval_ms),
            "base_ejection_time": duration(od.base_ejection_ms),
            "max_ejection_percent": od.max_ejection_percent,
        }
        if od.consecutive_5xx is not None:
            outlier["consecutive_5xx"] = od.consecutive_5xx
        else:
            outlier["enforcing_consecutive_5xx"] = 0
        if od.consecutive_gateway_errors is not None:
            outlier["consecutive_gateway_failure"] = od.consecutive_gateway_errors
            outlier["enforcing_consecutive_gateway_failure"] = 100
        cluster["outlier_detection"] = outlier
    if policy.load_balancer is not None:
        cluster["lb_policy"] = _LB[policy.load_balancer]
    hc = policy.health_check
    if hc is not None:
        # An HTTP check probes the service's HTTP ports; its tcp ports get a connect check.
        check: dict[str, Any] = {
            "timeout": duration(hc.timeout_ms),
            "interval": duration(hc.interval_ms),
            # Without this Envoy checks a cluster that had no traffic yet once a minute.
            "no_traffic_interval": duration(hc.interval_ms),
            "unhealthy_threshold": hc.unhealthy_threshold,
            "healthy_threshold": hc.healthy_threshold,
        }
        if hc.http_path is not None and port.protocol.is_http:
            # Envoy's default Host is the cluster name, which the receiving sidecar refuses.
            check["http_health_check"] = {"path": hc.http_path, "host": service}
        else:
            check["tcp_health_check"] = {}
        cluster["health_checks"] = [check]
    if policy.locality is not None and policy.locality.distribute:
        cluster["common_lb_config"] = {"locality_weighted_lb_config": {}}
    return cluster


def route_hashes(config: MeshConfig) -> dict[str, list[dict[str, Any]]]:
    """Service name -> the hash policy its routes carry (consistent hashing)."""
    return {
        svc: hash_policy(p.hash_key)
        for p in config.policies
        if p.hash_key is not None and p.target_kind is PolicyTargetKind.SERVICE
        for svc in p.targets
    }


def hash_policy(key: HashKey) -> list[dict[str, Any]]:
    if key.header:
        return [{"header": {"header_name": key.header}}]
    if key.cookie:
        cookie: dict[str, Any] = {"name": key.cookie}
        if key.cookie_ttl_ms is not None:
            cookie["ttl"] = duration(key.cookie_ttl_ms)
        return [{"cookie": cookie}]
    return [{"connection_properties": {"source_ip": True}}]


def localize(
    groups: list[dict[str, Any]], locality: Locality | None, caller_zone: str
) -> list[dict[str, Any]]:
    """Endpoint groups (one per zone) arranged for a caller in ``caller_zone``.

    preferLocal: the caller's zone is priority 0, every other zone priority 1, so Envoy
    sends traffic elsewhere only as local endpoints become unhealthy. distribute: every
    zone at priority 0 with the configured share as its weight."""
    if locality is None or not caller_zone:
        return groups
    out = []
    if locality.distribute:
        shares = next((dict(d.to) for d in locality.distribute if d.from_zone == caller_zone), None)
        if shares is None:
            return groups
        for group in groups:
            zone = group.get("locality", {}).get("zone", "")
            weight = shares.get(zone, 0)
            if weight:
                out.append({**group, "load_balancing_weight": weight})
        return out
    for group in groups:
        zone = group.get("locality", {}).get("zone", "")
        out.append(group if zone == caller_zone else {**group, "priority": 1})
    return out


def compression_filters(compression: Compression) -> list[dict[str, Any]]:
    """Compressor filters (one per algorithm; Envoy picks by Accept-Encoding) and, if
    asked, a request decompressor. Responses that already have a Content-Encoding are
    left alone by the compressor."""
    filters = []
    if compression.decompress_requests:
        filters.append(
            {
                "name": "envoy.filters.http.decompressor",
                "typed_config": {
                    "@type": _DECOMPRESSOR,
                    "decompressor_library": _library(Algorithm.GZIP, "decompressor"),
                    "response_direction_config": {
                        "common_config": {
                            "enabled": {
                                "default_value": False,
                                "runtime_key": "gossamer.decompress_responses",
                            }
                        }
                    },
                },
            }
        )
    for algorithm in compression.algorithms:
        common: dict[str, Any] = {"min_content_length": compression.min_content_length}
        if compression.content_types:
            common["content_type"] = list(compression.content_types)
        filters.append(
            {
                "name": f"envoy.filters.http.compressor.{_LIBRARIES[algorithm][0]}",
                "typed_config": {
                    "@type": _COMPRESSOR,
                    "response_direction_config": {"common_config": common},
                    "compressor_library": _library(algorithm, "compressor"),
                },
            }
        )
    return filters


def _library(algorithm: Algorithm, side: str) -> dict[str, Any]:
    name, prefix = _LIBRARIES[algorithm]
    message = {"gzip": "Gzip", "brotli": "Brotli", "zstd": "Zstd"}[name]
    return {
        "name": f"{name}-{side}",
        "typed_config": {"@type": f"{prefix}.{side}.v3.{message}"},
    }
