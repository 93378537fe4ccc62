"""Proto3-JSON resources to protobuf ``Any``, memoized by content version.

Importing the extension modules registers their message types, so nested ``@type``
fields (filters, protocol options) resolve.
"""

from __future__ import annotations

import importlib
from typing import Any

import envoy.config.cluster.v3.cluster_pb2 as cluster_pb2
import envoy.config.endpoint.v3.endpoint_pb2 as endpoint_pb2
import envoy.config.listener.v3.listener_pb2 as listener_pb2
import envoy.config.route.v3.route_pb2 as route_pb2
from google.protobuf import any_pb2, json_format

from gossamer.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource

EXTENSIONS = (
    "envoy.config.trace.v3.opentelemetry_pb2",
    "envoy.extensions.access_loggers.file.v3.file_pb2",
    "envoy.extensions.access_loggers.grpc.v3.als_pb2",
    "envoy.extensions.clusters.dynamic_forward_proxy.v3.cluster_pb2",
    "envoy.extensions.compression.brotli.compressor.v3.brotli_pb2",
    "envoy.extensions.compression.gzip.compressor.v3.gzip_pb2",
    "envoy.extensions.compression.gzip.decompressor.v3.gzip_pb2",
    "envoy.extensions.compression.zstd.compressor.v3.zstd_pb2",
    "envoy.extensions.filters.http.compressor.v3.compressor_pb2",
    "envoy.extensions.filters.http.decompressor.v3.decompressor_pb2",
    "envoy.extensions.filters.http.dynamic_forward_proxy.v3.dynamic_forward_proxy_pb2",
    "envoy.extensions.filters.http.fault.v3.fault_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2",
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2",
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
)
"""Every message type translation may nest under ``@type``; importing a module registers
its types. tests/xds/test_encode.py encodes every golden resource to keep this complete."""

_MESSAGES: dict[str, Any] = {
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}


class Encoder:
    """Encodes each (type, content version) once; bounded so it cannot grow forever."""

    def __init__(self, limit: int = 50_000) -> None:
        for module in EXTENSIONS:
            importlib.import_module(module)
        self._memo: dict[tuple[str, str], Any] = {}
        self._limit = limit

    def encode(self, type_url: str, resource: Resource) -> Any:
        key = (type_url, resource.version)
        packed = self._memo.get(key)
        if packed is None:
            message = json_format.ParseDict(dict(resource.body), _MESSAGES[type_url]())
            packed = any_pb2.Any()
            packed.Pack(message)
            if len(self._memo) >= self._limit:
                self._memo.clear()
            self._memo[key] = packed
        return packed
