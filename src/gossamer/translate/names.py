"""The single source of xDS resource names. Nothing else formats a resource name.

Names follow Istio's ``direction|port|subset|host`` shape so that people who read Istio
config dumps feel at home, and so a name can be mapped back to the user's service.
"""

from __future__ import annotations

XDS_CLUSTER = "gossamer-xds"
"""The static cluster in every bootstrap that points at the control plane."""

OUTBOUND_HTTP = "outbound|http"
"""The listener and route configuration an app uses as its HTTP proxy."""


def outbound_cluster(service: str, port: int) -> str:
    return f"outbound|{port}||{service}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def inbound_listener(port: int) -> str:
    return f"inbound|{port}"


def outbound_tcp_listener(service: str, port: int) -> str:
    return f"outbound|{port}|tcp|{service}"


def virtual_host(service: str, port: int) -> str:
    return f"{service}:{port}"


def service_of(resource_name: str) -> str | None:
    """The user's service a resource name belongs to, if any (for mapping NACKs back)."""
    parts = resource_name.split("|")
    if parts[0] == "outbound" and len(parts) == 4 and parts[3]:
        return parts[3]
    if ":" in resource_name and "|" not in resource_name:
        return resource_name.split(":", 1)[0]
    return None


PASSTHROUGH = "outbound|passthrough"
"""The dynamic forward proxy cluster for hosts outside the mesh (AllowAny policy)."""


def gateway_route_config(gateway: str, port: int) -> str:
    return f"gateway|{gateway}|{port}"


def gateway_listener(gateway: str, port: int) -> str:
    return f"gateway|{gateway}|{port}"
