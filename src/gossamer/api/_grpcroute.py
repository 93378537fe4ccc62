"""Gateway API ``GRPCRoute`` (gateway.networking.k8s.io/v1), converted into the same route
model as HTTPRoute: a gRPC call is an HTTP/2 POST to ``/<service>/<method>``.

``timeouts`` on a rule is a Gossamer extension (GRPCRoute has none yet); it means what it
means on an HTTPRoute."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gossamer.api._common import Hostname, Metadata, Name, Strict, check_regex
from gossamer.api._extensions import ExtensionRefs
from gossamer.api._httproute import (
    BackendRefSpec,
    FilterSpec,
    ParentRefSpec,
    RuleSpec,
    TimeoutsSpec,
    ValueMatchSpec,
    route_to_model,
    unique_parents,
)
from gossamer.model import HTTPRoute, Origin, Problem

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class MethodMatchSpec(Strict):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: str | None = Field(default=None, max_length=1024)
    method: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _valid(self) -> MethodMatchSpec:
        if self.service is None and self.method is None:
            raise ValueError("give a service, a method, or both")
        for part in (self.service, self.method):
            if part is None:
                continue
            if self.type == "RegularExpression":
                check_regex(part)
            elif not _NAME.match(part) or (part is self.method and "." in part):
                raise ValueError(f"`{part}` is not a gRPC service or method name")
        return self

    def path(self) -> tuple[str, str]:
        """(HTTPRoute path match type, value) selecting these calls."""
        if self.type == "RegularExpression":
            # Group each part, so an alternation stays inside its own path segment.
            service, method = self.service or "[^/]+", self.method or "[^/]+"
            return "RegularExpression", f"/(?:{service})/(?:{method})"
        if self.service and self.method:
            return "Exact", f"/{self.service}/{self.method}"
        if self.service:
            return "PathPrefix", f"/{self.service}"
        return "RegularExpression", f"/[^/]+/{re.escape(self.method or '')}"


class GRPCMatchSpec(Strict):
    method: MethodMatchSpec | None = None
    headers: list[ValueMatchSpec] = Field(default_factory=list, max_length=16)


_GRPC_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef")


class GRPCRuleSpec(Strict):
    name: Name | None = None
    matches: list[GRPCMatchSpec] = Field(
        default_factory=lambda: [GRPCMatchSpec()], min_length=1, max_length=64
    )
    filters: list[FilterSpec] = Field(default_factory=list, max_length=16)
    backendRefs: list[BackendRefSpec] = Field(min_length=1, max_length=16)
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec)

    @model_validator(mode="after")
    def _grpc_filters(self) -> GRPCRuleSpec:
        bad = [f.type for f in self.filters if f.type not in _GRPC_FILTERS]
        if bad:
            raise ValueError(f"GRPCRoute does not support {bad} filters")
        return self

    def as_http_rule(self) -> RuleSpec:
        matches = []
        for m in self.matches:
            match: dict[str, object] = {"headers": [h.model_dump() for h in m.headers]}
            if m.method is not None:
                kind, value = m.method.path()
                match["path"] = {"type": kind, "value": value}
            matches.append(match)
        return RuleSpec.model_validate(
            {
                "name": self.name,
                "matches": matches,
                "filters": [f.model_dump(exclude_none=True) for f in self.filters],
                "backendRefs": [b.model_dump() for b in self.backendRefs],
                "timeouts": self.timeouts.model_dump(exclude_none=True),
            }
        )


class GRPCRouteSpec(Strict):
    parentRefs: list[ParentRefSpec] = Field(min_length=1, max_length=32)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[GRPCRuleSpec] = Field(min_length=1, max_length=64)

    _unique_parents = field_validator("parentRefs")(unique_parents)


class GRPCRouteDoc(Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["GRPCRoute"]
    metadata: Metadata
    spec: GRPCRouteSpec

    def to_model(
        self, origin: Origin, base_dir: str, refs: ExtensionRefs
    ) -> tuple[HTTPRoute | None, list[Problem]]:
        del base_dir
        rules = [r.as_http_rule() for r in self.spec.rules]
        return route_to_model(
            self.metadata.name, self.spec.parentRefs, self.spec.hostnames, rules, origin, refs
        )
