"""The pure mesh model: frozen dataclasses and the checks over them. No I/O."""

from gossamer.model._mesh import (
    BackendRef,
    HeaderMatch,
    HTTPRoute,
    Instance,
    MeshConfig,
    MeshSettings,
    MeshState,
    Origin,
    ParentRef,
    PathMatch,
    PathMatchType,
    Port,
    Protocol,
    RouteMatch,
    RouteRule,
    Service,
    Timeouts,
    Workload,
    instance_name,
)
from gossamer.model._placement import place, sequential_ports
from gossamer.model._problems import Problem, Severity, errors
from gossamer.model._validate import validate

__all__ = [
    "BackendRef",
    "HTTPRoute",
    "HeaderMatch",
    "Instance",
    "MeshConfig",
    "MeshSettings",
    "MeshState",
    "Origin",
    "ParentRef",
    "PathMatch",
    "PathMatchType",
    "Port",
    "Problem",
    "Protocol",
    "RouteMatch",
    "RouteRule",
    "Service",
    "Severity",
    "Timeouts",
    "Workload",
    "errors",
    "instance_name",
    "place",
    "sequential_ports",
    "validate",
]
