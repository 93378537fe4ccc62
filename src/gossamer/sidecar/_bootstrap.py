"""The static bootstrap every sidecar starts from: who it is, where its admin listens
(loopback only), and how to reach the control plane over ADS."""

from __future__ import annotations

from typing import Any, Literal

from gossamer.translate import ISTIO_BUCKETS_MS, names

XdsApi = Literal["sotw", "delta"]


def bootstrap(
    *,
    node_id: str,
    cluster: str,
    admin_port: int,
    xds_host: str,
    xds_port: int,
    zone: str = "",
    api: XdsApi = "sotw",
    max_downstream_connections: int = 10_000,
    replica_port: int = 0,
) -> dict[str, Any]:
    """With ``replica_port``, xDS goes to a standby control plane while the primary's
    port does not answer (priority failover on a TCP health check every second).

    ``max_downstream_connections`` must fit the process's file-descriptor limit: Envoy
    does not raise RLIMIT_NOFILE, and at the limit every request fails."""
    node: dict[str, Any] = {"id": node_id, "cluster": cluster}
    if zone:
        node["locality"] = {"zone": zone}
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": node,
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if api == "delta" else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": names.XDS_CLUSTER,
                            # Reconnect within 2 s of a control plane coming back.
                            "retry_policy": {
                                "retry_back_off": {
                                    "base_interval": "0.25s",
                                    "max_interval": "2s",
                                }
                            },
                        }
                    }
                ],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "stats_config": {
            # Istio's request duration buckets, so dashboards and queries work unchanged.
            "histogram_bucket_settings": [
                {"match": {"prefix": "vhost."}, "buckets": list(ISTIO_BUCKETS_MS)},
                {"match": {"prefix": "cluster.outbound|"}, "buckets": list(ISTIO_BUCKETS_MS)},
            ]
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": max_downstream_connections,
                    },
                }
            ]
        },
        "static_resources": {
            "clusters": [
                {
                    "name": names.XDS_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    # ADS is gRPC: without HTTP/2 here Envoy never opens the stream.
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {
                                "http2_protocol_options": {
                                    "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                                }
                            },
                        }
                    },
                    "load_assignment": {
                        "cluster_name": names.XDS_CLUSTER,
                        "endpoints": [
                            {
                                "priority": priority,
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": xds_host,
                                                    "port_value": port,
                                                }
                                            }
                                        }
                                    }
                                ],
                            }
                            for priority, port in enumerate(
                                [xds_port, *([replica_port] if replica_port else [])]
                            )
                        ],
                    },
                    **(_failover() if replica_port else {}),
                }
            ]
        },
    }


def _failover() -> dict[str, Any]:
    """Health checks that move the xDS stream to the standby within about a second."""
    return {
        "health_checks": [
            {
                "timeout": "0.5s",
                "interval": "1s",
                "no_traffic_interval": "1s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "tcp_health_check": {},
            }
        ],
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }
