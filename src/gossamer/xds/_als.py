"""Envoy's access log service (ALS): proxies stream access-log entries to the control plane
over the same gRPC connection target as xDS. Entries become plain dicts with the field
names of the file access logs (docs/observability.md), so every consumer reads one shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

log = logging.getLogger("gossamer.als")

EntrySink = Callable[[str, str, list[dict[str, Any]]], None]
"""Called with (node id, log name, entries) for each message a proxy streams."""

# Envoy's short response flag codes, in the order Envoy prints them.
_FLAGS = {
    "failed_local_healthcheck": "LH",
    "no_healthy_upstream": "UH",
    "upstream_request_timeout": "UT",
    "local_reset": "LR",
    "upstream_remote_reset": "UR",
    "upstream_connection_failure": "UF",
    "upstream_connection_termination": "UC",
    "upstream_overflow": "UO",
    "no_route_found": "NR",
    "delay_injected": "DI",
    "fault_injected": "FI",
    "rate_limited": "RL",
    "unauthorized_details": "UAEX",
    "rate_limit_service_error": "RLSE",
    "downstream_connection_termination": "DC",
    "upstream_retry_limit_exceeded": "URX",
    "stream_idle_timeout": "SI",
    "invalid_envoy_request_headers": "IH",
    "downstream_protocol_error": "DPE",
    "upstream_max_stream_duration_reached": "UMSDR",
    "response_from_cache_filter": "RFCF",
    "no_filter_config_found": "NFCF",
    "duration_timeout": "DT",
    "upstream_protocol_error": "UPE",
    "no_cluster_found": "NC",
    "overload_manager": "OM",
    "dns_resolution_failure": "DF",
    "downstream_remote_reset": "DRR",
}
_PROTOCOLS = {1: "HTTP/1.0", 2: "HTTP/1.1", 3: "HTTP/2", 4: "HTTP/3"}


def response_flags(flags: Any) -> str:
    """Envoy's ``%RESPONSE_FLAGS%`` form: ``UF,URX``, or ``-`` for none."""
    codes = []
    for name, code in _FLAGS.items():
        value = getattr(flags, name)
        if name == "unauthorized_details":
            value = flags.HasField(name)
        if value:
            codes.append(code)
    return ",".join(codes) or "-"


def _address(address: Any) -> str | None:
    if not address.HasField("socket_address"):
        return None
    socket = address.socket_address
    return f"{socket.address}:{socket.port_value}"


def _common(common: Any, node: str, direction: str, kind: str) -> dict[str, Any]:
    start = None
    if common.HasField("start_time"):
        moment = common.start_time.ToDatetime(tzinfo=UTC)
        start = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    duration = None
    if common.HasField("duration"):
        duration = common.duration.ToMilliseconds()
    elif common.HasField("time_to_last_downstream_tx_byte"):
        duration = common.time_to_last_downstream_tx_byte.ToMilliseconds()
    return {
        "start_time": start,
        "response_flags": response_flags(common.response_flags),
        "duration_ms": duration,
        "upstream_cluster": common.upstream_cluster or None,
        "upstream_host": _address(common.upstream_remote_address),
        "downstream_remote_address": _address(common.downstream_remote_address),
        "node": node,
        "direction": direction,
        "kind": kind,
    }


def http_entry(entry: Any, node: str, direction: str) -> dict[str, Any]:
    """One HTTP ALS entry in the file access log's shape, plus the headers logged."""
    request, response = entry.request, entry.response
    out = _common(entry.common_properties, node, direction, "http")
    out.update(
        {
            "bytes_received": request.request_body_bytes,
            "bytes_sent": response.response_body_bytes,
            "method": base_pb2.RequestMethod.Name(request.request_method)
            if request.request_method
            else None,
            "path": request.original_path or request.path or None,
            "authority": request.authority or None,
            "protocol": _PROTOCOLS.get(entry.protocol_version),
            "response_code": response.response_code.value
            if response.HasField("response_code")
            else 0,
            "response_code_details": response.response_code_details or None,
            "request_id": request.request_id or None,
            "user_agent": request.user_agent or None,
            "request_headers": dict(request.request_headers),
        }
    )
    return out


def tcp_entry(entry: Any, node: str, direction: str) -> dict[str, Any]:
    out = _common(entry.common_properties, node, direction, "tcp")
    out.update(
        {
            "bytes_received": entry.connection_properties.received_bytes,
            "bytes_sent": entry.connection_properties.sent_bytes,
        }
    )
    return out


def entries(message: Any, node: str, log_name: str) -> list[dict[str, Any]]:
    """A StreamAccessLogsMessage's entries. The log name is ``<name>/<direction>``."""
    direction = log_name.partition("/")[2]
    if message.HasField("http_logs"):
        return [http_entry(e, node, direction) for e in message.http_logs.log_entry]
    if message.HasField("tcp_logs"):
        return [tcp_entry(e, node, direction) for e in message.tcp_logs.log_entry]
    return []


class AccessLogServicer(als_pb2_grpc.AccessLogServiceServicer):  # type: ignore[misc]
    """Receives every proxy's ALS stream and hands the entries to ``sink``. Only the
    first message of a stream names the proxy and the log."""

    def __init__(self, sink: EntrySink) -> None:
        self._sink = sink

    async def StreamAccessLogs(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        node, log_name = "", ""
        async for message in request_iterator:
            if message.HasField("identifier"):
                node = message.identifier.node.id
                log_name = message.identifier.log_name
            if not node:
                log.warning("access log stream without node id; closing it")
                break
            try:
                self._sink(node, log_name, entries(message, node, log_name))
            except Exception:  # a consumer's bug must not end the proxy's stream
                log.exception("access log entries from %s were dropped", node)
        return als_pb2.StreamAccessLogsResponse()


__all__ = ["AccessLogServicer", "EntrySink", "entries", "response_flags"]
