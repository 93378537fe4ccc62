"""Per-edge request telemetry from Envoy's own statistics.

Envoy's stats cannot name the peer by themselves. So each caller's sidecar stamps its
workload on outbound requests (``x-gossamer-source-workload``, overwriting whatever the
app sent), and each receiving sidecar's inbound route has one virtual cluster per
possible caller (and per destination service when the workload backs several). Envoy then
keeps request counters by status code and a latency histogram per (source, destination)
edge: ``vhost.inbound.vcluster.<source>~<service>.upstream_rq_*``. The collector turns
those into Istio's ``istio_requests_total`` and ``istio_request_duration_milliseconds``
(reporter ``destination``).

The Mesh resource's ``telemetry.edgeMetrics: false`` turns both halves off: no header is
stamped and no sidecar keeps per-caller counters (nothing else in the config changes).
"""

from __future__ import annotations

import re
from typing import Any

from gossamer.model import MeshState, Workload

SOURCE_HEADER = "x-gossamer-source-workload"
EDGE_SEPARATOR = "~"
"""Between source and destination service in a virtual cluster's name (not in any name)."""

ISTIO_BUCKETS_MS = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
"""Istio's default request duration buckets, in milliseconds."""


def source_stamp(state: MeshState, source: str) -> dict[str, Any]:
    """The route-config fields with which a caller stamps ``source`` on every outbound
    request (to merge into its route configuration); none when edge metrics are off."""
    if not state.config.settings.telemetry.edge_metrics:
        return {}
    return {
        "request_headers_to_add": [
            {
                "header": {"key": SOURCE_HEADER, "value": source},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ]
    }


def sources(state: MeshState) -> list[str]:
    """Every possible caller: each workload, and each gateway (by its node id)."""
    return sorted(
        [w.name for w in state.config.workloads] + [g.node_id for g in state.config.gateways]
    )


def edge_name(source: str, service: str) -> str:
    return f"{source}{EDGE_SEPARATOR}{service}"


def inbound_virtual_clusters(state: MeshState, workload: Workload) -> list[dict[str, Any]]:
    """One virtual cluster per (caller, service of this workload). The authority tells
    services apart only when the workload backs more than one. None when edge metrics
    are off."""
    if not state.config.settings.telemetry.edge_metrics:
        return []
    services = list(workload.services)
    out = []
    for source in sources(state):
        for service in services:
            headers: list[dict[str, Any]] = [
                {"name": SOURCE_HEADER, "string_match": {"exact": source}}
            ]
            if len(services) > 1:
                headers.append(
                    {
                        "name": ":authority",
                        "string_match": {
                            "safe_regex": {"regex": f"^{re.escape(service)}(:[0-9]+)?$"}
                        },
                    }
                )
            out.append({"name": edge_name(source, service), "headers": headers})
    return out
