"""Tracing: every proxy reports a span per request to an OpenTelemetry collector (OTLP
over gRPC) and propagates W3C trace context (``traceparent``). Apps must forward the
trace headers from each request they receive to the calls it makes (docs/observability.md)."""

from __future__ import annotations

import ipaddress
from typing import Any

from gossamer.model import TracingSettings
from gossamer.translate._blocks import http2_options
from gossamer.translate._snapshot import Resource

TRACING_CLUSTER = "gossamer-tracing"
_OTEL = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"


def tracing_cluster(settings: TracingSettings, connect_timeout: str) -> Resource:
    try:
        ipaddress.ip_address(settings.collector_host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    address = {
        "socket_address": {
            "address": settings.collector_host,
            "port_value": settings.collector_port,
        }
    }
    return Resource(
        TRACING_CLUSTER,
        {
            "name": TRACING_CLUSTER,
            "type": kind,
            "connect_timeout": connect_timeout,
            "typed_extension_protocol_options": http2_options(),  # OTLP is gRPC
            "load_assignment": {
                "cluster_name": TRACING_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
            },
        },
    )


def hcm_tracing(settings: TracingSettings | None, service_name: str) -> dict[str, Any] | None:
    """The ``tracing`` block of a connection manager, naming spans after the workload."""
    if settings is None:
        return None
    return {
        "random_sampling": {"value": settings.sample_percent},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": _OTEL,
                "grpc_service": {"envoy_grpc": {"cluster_name": TRACING_CLUSTER}, "timeout": "1s"},
                "service_name": service_name,
            },
        },
    }
