"""Pure translation of the mesh model into Envoy resources, and the snapshot they form."""

from gossamer.translate import names
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
)
from gossamer.translate._static import static_bootstrap
from gossamer.translate._translate import UnknownProxy, translate

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "SHORT_NAMES",
    "InconsistentSnapshot",
    "Resource",
    "Snapshot",
    "UnknownProxy",
    "names",
    "static_bootstrap",
    "translate",
]
