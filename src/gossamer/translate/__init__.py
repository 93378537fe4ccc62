"""Pure translation of the mesh model into Envoy resources, and the snapshot they form."""

from gossamer.translate import names
from gossamer.translate._access_log import ACCESS_LOG_NAME, FLAGS_LOG_NAME, access_log_path
from gossamer.translate._effective import UnknownService, effective_routes
from gossamer.translate._gateway import UnknownGateway, translate_gateway
from gossamer.translate._simulate import (
    HeaderToAdd,
    SimRequest,
    SimResult,
    SimulationError,
    simulate,
)
from gossamer.translate._snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    SHORT_NAMES,
    InconsistentSnapshot,
    Resource,
    Snapshot,
    snapshot_changes,
)
from gossamer.translate._static import static_bootstrap
from gossamer.translate._telemetry import EDGE_SEPARATOR, ISTIO_BUCKETS_MS, SOURCE_HEADER
from gossamer.translate._translate import EGRESS_DENIED_HEADER, UnknownProxy, translate

__all__ = [
    "ACCESS_LOG_NAME",
    "CLUSTER",
    "EDGE_SEPARATOR",
    "EGRESS_DENIED_HEADER",
    "ENDPOINT",
    "FLAGS_LOG_NAME",
    "ISTIO_BUCKETS_MS",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "SHORT_NAMES",
    "SOURCE_HEADER",
    "HeaderToAdd",
    "InconsistentSnapshot",
    "Resource",
    "SimRequest",
    "SimResult",
    "SimulationError",
    "Snapshot",
    "UnknownGateway",
    "UnknownProxy",
    "UnknownService",
    "access_log_path",
    "effective_routes",
    "names",
    "simulate",
    "snapshot_changes",
    "static_bootstrap",
    "translate",
    "translate_gateway",
]
