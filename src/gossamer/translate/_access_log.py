"""Access logs: one JSON line per request (or TCP connection), written by each proxy to a
file of its own, ``access/<node>.log`` relative to the proxy's working directory. Never
mixed into the app's output. Field names are documented in docs/observability.md.

With the ``grpc`` sink, proxies stream entries to the control plane over Envoy's access
log service (ALS) instead, and the control plane writes the same files. Independently of
the sink, every HTTP request that ends with a response flag (UF, UO, NR, ...) is sent over
ALS: Envoy's statistics carry no flags, so this is where ``istio_requests_total``'s
``response_flags`` label comes from."""

from __future__ import annotations

from typing import Any

from gossamer.model import AccessLogSettings
from gossamer.translate import names
from gossamer.translate._telemetry import SOURCE_HEADER

_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
_HTTP_GRPC_LOG = (
    "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig"
)
_TCP_GRPC_LOG = "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig"
ACCESS_LOG_NAME = "gossamer-access"
"""ALS log name of full access-log entries (the ``grpc`` sink)."""
FLAGS_LOG_NAME = "gossamer-flags"
"""ALS log name of the entries of requests that ended with a response flag."""

TCP_FIELDS = {
    "start_time": "%START_TIME%",
    "response_flags": "%RESPONSE_FLAGS%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
}
HTTP_FIELDS = {
    **TCP_FIELDS,
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "authority": "%REQ(:AUTHORITY)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "user_agent": "%REQ(USER-AGENT)%",
}


def access_log_path(node: str) -> str:
    return f"access/{node}.log"


def access_logs(
    settings: AccessLogSettings, node: str, direction: str, *, tcp: bool = False
) -> list[dict[str, Any]]:
    """The ``access_log`` list for a connection manager or TCP proxy."""
    out = [] if tcp else [_grpc_log(f"{FLAGS_LOG_NAME}/{direction}", tcp=False, flagged=True)]
    if not settings.enabled:
        return out
    entry: dict[str, Any]
    if settings.sink == "grpc":
        entry = _grpc_log(f"{ACCESS_LOG_NAME}/{direction}", tcp=tcp, flagged=False)
    else:
        fields: dict[str, Any] = dict(TCP_FIELDS if tcp else HTTP_FIELDS)
        fields.update({"node": node, "direction": direction, "kind": "tcp" if tcp else "http"})
        entry = {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": _FILE_LOG,
                "path": access_log_path(node),
                "log_format": {"json_format": fields},
            },
        }
    if settings.sample_percent < 100 and not tcp:
        entry["filter"] = {
            "or_filter": {
                "filters": [
                    {
                        "status_code_filter": {
                            "comparison": {
                                "op": "GE",
                                "value": {
                                    "default_value": 400,
                                    "runtime_key": "gossamer.access_log.always_from_status",
                                },
                            }
                        }
                    },
                    {
                        "runtime_filter": {
                            "runtime_key": "gossamer.access_log.sample",
                            "percent_sampled": {
                                "numerator": round(settings.sample_percent * 10_000),
                                "denominator": "MILLION",
                            },
                        }
                    },
                ]
            }
        }
    return [*out, entry]


def _grpc_log(log_name: str, *, tcp: bool, flagged: bool) -> dict[str, Any]:
    """An ALS logger to the control plane (over the xDS cluster)."""
    config: dict[str, Any] = {
        "@type": _TCP_GRPC_LOG if tcp else _HTTP_GRPC_LOG,
        "common_config": {
            "log_name": log_name,
            "grpc_service": {"envoy_grpc": {"cluster_name": names.XDS_CLUSTER}},
            "transport_api_version": "V3",
            "buffer_flush_interval": "0.5s",
        },
    }
    if not tcp:
        config["additional_request_headers_to_log"] = [SOURCE_HEADER]
    entry: dict[str, Any] = {
        "name": "envoy.access_loggers.tcp_grpc" if tcp else "envoy.access_loggers.http_grpc",
        "typed_config": config,
    }
    if flagged:
        entry["filter"] = {"response_flag_filter": {}}
    return entry
