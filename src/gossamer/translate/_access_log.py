"""Access logs: one JSON line per request (or TCP connection), written by each proxy to a
file of its own, ``access/<node>.log`` relative to the proxy's working directory. Never
mixed into the app's output. Field names are documented in docs/observability.md."""

from __future__ import annotations

from typing import Any

from gossamer.model import AccessLogSettings

_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"

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
    if not settings.enabled:
        return []
    fields: dict[str, Any] = dict(TCP_FIELDS if tcp else HTTP_FIELDS)
    fields.update({"node": node, "direction": direction, "kind": "tcp" if tcp else "http"})
    entry: dict[str, Any] = {
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
    return [entry]
