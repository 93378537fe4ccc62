"""Gateway API ``HTTPRoute`` (gateway.networking.k8s.io/v1), mesh (GAMMA) profile."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gossamer.api._common import Metadata, Name, Strict, check_duration, parse_duration_ms
from gossamer.model import (
    BackendRef,
    HeaderMatch,
    HTTPRoute,
    Origin,
    ParentRef,
    PathMatch,
    PathMatchType,
    RouteMatch,
    RouteRule,
    Timeouts,
)

API_VERSION = "gateway.networking.k8s.io/v1"
KIND = "HTTPRoute"
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"


class ParentRefSpec(Strict):
    group: Literal["", "core"] = ""
    kind: Literal["Service"] = "Service"
    name: Name
    port: int | None = Field(default=None, ge=1, le=65535)


class PathMatchSpec(Strict):
    type: Literal["Exact", "PathPrefix"] = "PathPrefix"
    value: str = Field(default="/", max_length=1024)

    @field_validator("value")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path `{v}` must start with `/`")
        return v


class HeaderMatchSpec(Strict):
    type: Literal["Exact"] = "Exact"
    name: str = Field(pattern=_HEADER_NAME, max_length=256)
    value: str = Field(max_length=4096)


class MatchSpec(Strict):
    path: PathMatchSpec = Field(default_factory=PathMatchSpec)
    headers: list[HeaderMatchSpec] = Field(default_factory=list, max_length=16)


class BackendRefSpec(Strict):
    group: Literal["", "core"] = ""
    kind: Literal["Service"] = "Service"
    name: Name
    port: int = Field(ge=1, le=65535)
    weight: int = Field(default=1, ge=0, le=1_000_000)


class TimeoutsSpec(Strict):
    request: str | None = None
    backendRequest: str | None = None

    _durations = field_validator("request", "backendRequest")(check_duration)


class RuleSpec(Strict):
    matches: list[MatchSpec] = Field(
        default_factory=lambda: [MatchSpec()], min_length=1, max_length=64
    )
    backendRefs: list[BackendRefSpec] = Field(min_length=1, max_length=16)
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec)


class HTTPRouteSpec(Strict):
    parentRefs: list[ParentRefSpec] = Field(min_length=1, max_length=32)
    rules: list[RuleSpec] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _unique_parents(self) -> HTTPRouteSpec:
        keys = [(p.name, p.port) for p in self.parentRefs]
        if len(set(keys)) != len(keys):
            raise ValueError("the same parentRef is listed twice")
        return self


class HTTPRouteDoc(Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: Metadata
    spec: HTTPRouteSpec

    def to_model(self, origin: Origin, base_dir: str) -> HTTPRoute:
        del base_dir
        return HTTPRoute(
            name=self.metadata.name,
            parents=tuple(ParentRef(p.name, p.port) for p in self.spec.parentRefs),
            rules=tuple(_rule(r) for r in self.spec.rules),
            origin=origin,
        )


def _ms(value: str | None) -> int | None:
    return None if value is None else parse_duration_ms(value)


def _rule(rule: RuleSpec) -> RouteRule:
    return RouteRule(
        matches=tuple(
            RouteMatch(
                path=PathMatch(PathMatchType(m.path.type), m.path.value),
                headers=tuple(HeaderMatch(h.name.lower(), h.value) for h in m.headers),
            )
            for m in rule.matches
        ),
        backends=tuple(BackendRef(b.name, b.port, b.weight) for b in rule.backendRefs),
        timeouts=Timeouts(_ms(rule.timeouts.request), _ms(rule.timeouts.backendRequest)),
    )
