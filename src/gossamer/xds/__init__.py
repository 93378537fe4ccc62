"""The xDS side of the control plane: snapshot cache, stream protocol, gRPC server."""

from gossamer.xds._cache import ProxyStatus, SnapshotCache, StatusBook
from gossamer.xds._server import XdsServer
from gossamer.xds._stream import DeltaStream, Event, Report, Request, Response, SotwStream

__all__ = [
    "DeltaStream",
    "Event",
    "ProxyStatus",
    "Report",
    "Request",
    "Response",
    "SnapshotCache",
    "SotwStream",
    "StatusBook",
    "XdsServer",
]
