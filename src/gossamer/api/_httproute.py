"""Gateway API ``HTTPRoute`` (gateway.networking.k8s.io/v1): mesh (GAMMA) and gateway
parents, every match type, the standard filters, retries, and Gossamer's ExtensionRef
filters (``FaultInjection``, ``RetryPolicy``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gossamer.api._common import (
    Hostname,
    Metadata,
    Name,
    Percent,
    Strict,
    check_duration,
    check_regex,
    ms,
)
from gossamer.api._extensions import ExtensionRefs
from gossamer.model import (
    BackendRef,
    Fault,
    HeaderMatch,
    HeaderModifier,
    HTTPRoute,
    Mirror,
    Origin,
    ParentKind,
    ParentRef,
    PathMatch,
    PathMatchType,
    PathModifier,
    PathModifierType,
    Problem,
    QueryParamMatch,
    Redirect,
    Retry,
    RetryOn,
    Rewrite,
    RouteMatch,
    RouteRule,
    Timeouts,
    ValueMatchType,
)

API_VERSION = "gateway.networking.k8s.io/v1"
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"
HeaderName = str
Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


class ParentRefSpec(Strict):
    group: Literal["", "core", "gateway.networking.k8s.io"] = ""
    kind: Literal["Service", "Gateway"] = "Service"
    name: Name
    port: int | None = Field(default=None, ge=1, le=65535)
    sectionName: Name | None = None

    @model_validator(mode="after")
    def _group_fits_kind(self) -> ParentRefSpec:
        if self.kind == "Gateway" and self.group not in ("gateway.networking.k8s.io",):
            raise ValueError("a Gateway parent needs group: gateway.networking.k8s.io")
        if self.kind == "Service" and self.group == "gateway.networking.k8s.io":
            raise ValueError('a Service parent has group "" (the core API group)')
        if self.kind == "Service" and self.sectionName is not None:
            raise ValueError("sectionName selects a Gateway listener; use port for a Service")
        return self

    def to_model(self) -> ParentRef:
        return ParentRef(self.name, self.port, ParentKind(self.kind), self.sectionName)


class PathMatchSpec(Strict):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = Field(default="/", max_length=1024)

    @field_validator("value")
    @classmethod
    def _valid_value(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("type") == "RegularExpression":
            return check_regex(value)
        if not value.startswith("/"):
            raise ValueError(f"path `{value}` must start with `/`")
        if "//" in value or any(c in value for c in "?#"):
            raise ValueError(f"path `{value}` may not contain `//`, `?` or `#`")
        return value


class ValueMatchSpec(Strict):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str = Field(pattern=HEADER_NAME, max_length=256)
    value: str = Field(max_length=4096)

    @field_validator("value")
    @classmethod
    def _valid_regex(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("type") == "RegularExpression":
            return check_regex(value)
        return value


class MatchSpec(Strict):
    path: PathMatchSpec = Field(default_factory=PathMatchSpec)
    headers: list[ValueMatchSpec] = Field(default_factory=list, max_length=16)
    queryParams: list[ValueMatchSpec] = Field(default_factory=list, max_length=16)
    method: Method | None = None

    @field_validator("headers", "queryParams")
    @classmethod
    def _unique_names(cls, items: list[ValueMatchSpec]) -> list[ValueMatchSpec]:
        names = [m.name.lower() for m in items]
        if len(set(names)) != len(names):
            raise ValueError("each name may appear once per match (they are ANDed)")
        return items

    def to_model(self) -> RouteMatch:
        return RouteMatch(
            path=PathMatch(PathMatchType(self.path.type), self.path.value),
            headers=tuple(
                HeaderMatch(h.name.lower(), h.value, ValueMatchType(h.type)) for h in self.headers
            ),
            query_params=tuple(
                QueryParamMatch(q.name, q.value, ValueMatchType(q.type)) for q in self.queryParams
            ),
            method=self.method,
        )


class BackendRefSpec(Strict):
    group: Literal["", "core"] = ""
    kind: Literal["Service"] = "Service"
    name: Name
    port: int = Field(ge=1, le=65535)
    weight: int = Field(default=1, ge=0, le=1_000_000)

    def to_model(self) -> BackendRef:
        return BackendRef(self.name, self.port, self.weight)


class HeaderSpec(Strict):
    name: str = Field(pattern=HEADER_NAME, max_length=256)
    value: str = Field(max_length=4096)


class HeaderFilterSpec(Strict):
    set: list[HeaderSpec] = Field(default_factory=list, max_length=16)
    add: list[HeaderSpec] = Field(default_factory=list, max_length=16)
    remove: list[str] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _something_and_no_conflict(self) -> HeaderFilterSpec:
        if not (self.set or self.add or self.remove):
            raise ValueError("set, add or remove at least one header")
        names = [h.name.lower() for h in self.set + self.add] + [n.lower() for n in self.remove]
        if len(set(names)) != len(names):
            raise ValueError("a header may appear once across set, add and remove")
        return self

    def to_model(self) -> HeaderModifier:
        return HeaderModifier(
            set=tuple((h.name.lower(), h.value) for h in self.set),
            add=tuple((h.name.lower(), h.value) for h in self.add),
            remove=tuple(n.lower() for n in self.remove),
        )


class PathModifierSpec(Strict):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replaceFullPath: str | None = None
    replacePrefixMatch: str | None = None

    @model_validator(mode="after")
    def _value_for_type(self) -> PathModifierSpec:
        value = self.value
        other = self.replacePrefixMatch if self.type == "ReplaceFullPath" else self.replaceFullPath
        if value is None:
            field = "replaceFullPath" if self.type == "ReplaceFullPath" else "replacePrefixMatch"
            raise ValueError(f"type {self.type} needs `{field}`")
        if other is not None:
            raise ValueError(f"type {self.type} takes only its own field")
        if not value.startswith("/"):
            raise ValueError(f"path `{value}` must start with `/`")
        return self

    @property
    def value(self) -> str | None:
        return self.replaceFullPath if self.type == "ReplaceFullPath" else self.replacePrefixMatch

    def to_model(self) -> PathModifier:
        assert self.value is not None
        return PathModifier(PathModifierType(self.type), self.value)


class RedirectSpec(Strict):
    scheme: Literal["http", "https"] | None = None
    hostname: Hostname | None = None
    path: PathModifierSpec | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    statusCode: Literal[301, 302, 303, 307, 308] = 302

    def to_model(self) -> Redirect:
        return Redirect(
            scheme=self.scheme,
            hostname=self.hostname,
            path=self.path.to_model() if self.path else None,
            port=self.port,
            status_code=self.statusCode,
        )


class URLRewriteSpec(Strict):
    hostname: Hostname | None = None
    path: PathModifierSpec | None = None

    @model_validator(mode="after")
    def _something(self) -> URLRewriteSpec:
        if self.hostname is None and self.path is None:
            raise ValueError("rewrite the hostname, the path, or both")
        return self

    def to_model(self) -> Rewrite:
        return Rewrite(self.hostname, self.path.to_model() if self.path else None)


class FractionSpec(Strict):
    numerator: int = Field(ge=0)
    denominator: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> FractionSpec:
        if self.numerator > self.denominator:
            raise ValueError("numerator must not exceed denominator")
        return self


class MirrorSpec(Strict):
    backendRef: BackendRefSpec
    percent: int | None = Field(default=None, ge=0, le=100)
    fraction: FractionSpec | None = None

    @model_validator(mode="after")
    def _one_share(self) -> MirrorSpec:
        if self.percent is not None and self.fraction is not None:
            raise ValueError("give percent or fraction, not both")
        if self.backendRef.weight != 1:
            raise ValueError("a mirror's backendRef takes no weight")
        return self

    def to_model(self) -> Mirror:
        if self.fraction is not None:
            share = 100.0 * self.fraction.numerator / self.fraction.denominator
        else:
            share = 100.0 if self.percent is None else float(self.percent)
        return Mirror(self.backendRef.to_model(), share)


class ExtensionRefSpec(Strict):
    group: Literal["gossamer.dev"]
    kind: Literal["FaultInjection", "RetryPolicy"]
    name: Name


FilterType = Literal[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
    "RequestMirror",
    "ExtensionRef",
]
_FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "RequestMirror": "requestMirror",
    "ExtensionRef": "extensionRef",
}


class FilterSpec(Strict):
    type: FilterType
    requestHeaderModifier: HeaderFilterSpec | None = None
    responseHeaderModifier: HeaderFilterSpec | None = None
    requestRedirect: RedirectSpec | None = None
    urlRewrite: URLRewriteSpec | None = None
    requestMirror: MirrorSpec | None = None
    extensionRef: ExtensionRefSpec | None = None

    @model_validator(mode="after")
    def _field_for_type(self) -> FilterSpec:
        wanted = _FILTER_FIELDS[self.type]
        present = [f for f in _FILTER_FIELDS.values() if getattr(self, f) is not None]
        if present != [wanted]:
            extra = [f for f in present if f != wanted]
            if extra:
                raise ValueError(f"a {self.type} filter takes `{wanted}` only, not {extra}")
            raise ValueError(f"a {self.type} filter needs `{wanted}`")
        return self


class RetrySpec(Strict):
    """Gateway API's HTTPRouteRetry: which status codes, how many attempts, backoff."""

    codes: list[int] = Field(default_factory=list, max_length=16)
    attempts: int = Field(default=1, ge=0, le=10)
    backoff: str | None = None

    _backoff = field_validator("backoff")(check_duration)

    @field_validator("codes")
    @classmethod
    def _codes(cls, codes: list[int]) -> list[int]:
        bad = [c for c in codes if not 400 <= c <= 599]
        if bad:
            raise ValueError(f"retry codes must be 400-599, got {bad}")
        return codes


class TimeoutsSpec(Strict):
    request: str | None = None
    backendRequest: str | None = None

    _durations = field_validator("request", "backendRequest")(check_duration)

    def to_model(self) -> Timeouts:
        return Timeouts(ms(self.request), ms(self.backendRequest))


_SINGLE_FILTERS = (
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
)


class RuleSpec(Strict):
    name: Name | None = None
    matches: list[MatchSpec] = Field(
        default_factory=lambda: [MatchSpec()], min_length=1, max_length=64
    )
    filters: list[FilterSpec] = Field(default_factory=list, max_length=16)
    backendRefs: list[BackendRefSpec] = Field(default_factory=list, max_length=16)
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec)
    retry: RetrySpec | None = None

    @model_validator(mode="after")
    def _coherent(self) -> RuleSpec:
        types: list[str] = [f.type for f in self.filters]
        for t in _SINGLE_FILTERS:
            if types.count(t) > 1:
                raise ValueError(f"a rule may have one {t} filter")
        extension_kinds = [f.extensionRef.kind for f in self.filters if f.extensionRef]
        for kind in set(extension_kinds):
            if extension_kinds.count(kind) > 1:
                raise ValueError(f"a rule may reference one {kind}")
        if "RequestRedirect" in types and "URLRewrite" in types:
            raise ValueError(
                "RequestRedirect and URLRewrite cannot be combined on one rule (Gateway API): "
                "a redirect sends the client elsewhere, a rewrite forwards the request"
            )
        if "RequestRedirect" in types and self.backendRefs:
            raise ValueError("a rule with RequestRedirect forwards nothing; remove its backendRefs")
        if "RequestRedirect" not in types and not self.backendRefs:
            raise ValueError("a rule needs backendRefs, or a RequestRedirect filter")
        prefix_rewrites = [
            f
            for f in self.filters
            for mod in ((f.urlRewrite or f.requestRedirect),)
            if mod is not None and mod.path is not None and mod.path.type == "ReplacePrefixMatch"
        ]
        if prefix_rewrites and any(m.path.type != "PathPrefix" for m in self.matches):
            raise ValueError("ReplacePrefixMatch needs every match of the rule to be a PathPrefix")
        return self


class HTTPRouteSpec(Strict):
    parentRefs: list[ParentRefSpec] = Field(min_length=1, max_length=32)
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16)
    rules: list[RuleSpec] = Field(min_length=1, max_length=64)

    @field_validator("parentRefs")
    @classmethod
    def _unique_parents(cls, parents: list[ParentRefSpec]) -> list[ParentRefSpec]:
        return unique_parents(parents)


def unique_parents(parents: list[ParentRefSpec]) -> list[ParentRefSpec]:
    keys = [(p.kind, p.name, p.port, p.sectionName) for p in parents]
    if len(set(keys)) != len(keys):
        raise ValueError("the same parentRef is listed twice")
    return parents


class HTTPRouteDoc(Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: Metadata
    spec: HTTPRouteSpec

    def to_model(
        self, origin: Origin, base_dir: str, refs: ExtensionRefs
    ) -> tuple[HTTPRoute | None, list[Problem]]:
        del base_dir
        return route_to_model(
            self.metadata.name,
            self.spec.parentRefs,
            self.spec.hostnames,
            self.spec.rules,
            origin,
            refs,
        )


def route_to_model(
    name: str,
    parents: list[ParentRefSpec],
    hostnames: list[str],
    rules: list[RuleSpec],
    origin: Origin,
    refs: ExtensionRefs,
) -> tuple[HTTPRoute | None, list[Problem]]:
    """A route (HTTPRoute, or a GRPCRoute already in HTTPRoute terms), or its problems."""
    problems: list[Problem] = []
    converted = tuple(
        rule_to_model(r, f"spec.rules[{i}]", origin, refs, problems) for i, r in enumerate(rules)
    )
    route = HTTPRoute(
        name=name,
        parents=tuple(p.to_model() for p in parents),
        rules=converted,
        hostnames=tuple(hostnames),
        origin=origin,
    )
    return (None if problems else route), problems


def rule_to_model(
    rule: RuleSpec, where: str, origin: Origin, refs: ExtensionRefs, problems: list[Problem]
) -> RouteRule:
    """One rule, with its filters resolved (ExtensionRefs looked up by name)."""
    by_type: dict[str, FilterSpec] = {f.type: f for f in rule.filters}
    fault: Fault | None = None
    retry: Retry | None = None
    for j, f in enumerate(rule.filters):
        ref = f.extensionRef
        if ref is None:
            continue
        field = f"{where}.filters[{j}].extensionRef.name"
        if ref.kind == "FaultInjection" and ref.name in refs.faults:
            fault = refs.faults[ref.name]
        elif ref.kind == "RetryPolicy" and ref.name in refs.retries:
            retry = refs.retries[ref.name]
        else:
            problems.append(refs.missing(origin, ref.kind, ref.name, field))
    if rule.retry is not None:
        if retry is not None:
            problems.append(
                Problem.at(
                    origin,
                    "GSM0005",
                    "both `retry` and a RetryPolicy filter are set; they would disagree",
                    field=f"{where}.retry",
                    hint="use `retry` for codes and attempts, or a RetryPolicy for everything",
                )
            )
        retry = Retry(
            attempts=rule.retry.attempts,
            # GEP-1731: connection errors are always retried; codes add status codes.
            on=(RetryOn.CONNECT_FAILURE, RetryOn.RESET)
            + ((RetryOn.RETRIABLE_STATUS_CODES,) if rule.retry.codes else ()),
            status_codes=tuple(rule.retry.codes),
            backoff_base_ms=ms(rule.retry.backoff) or 25,
            backoff_max_ms=10 * (ms(rule.retry.backoff) or 25),
        )

    def header(kind: str) -> HeaderModifier | None:
        f = by_type.get(kind)
        spec = f.requestHeaderModifier or f.responseHeaderModifier if f is not None else None
        return spec.to_model() if spec is not None else None

    redirect = by_type.get("RequestRedirect")
    rewrite = by_type.get("URLRewrite")
    return RouteRule(
        matches=tuple(m.to_model() for m in rule.matches),
        backends=tuple(b.to_model() for b in rule.backendRefs),
        timeouts=rule.timeouts.to_model(),
        request_headers=header("RequestHeaderModifier"),
        response_headers=header("ResponseHeaderModifier"),
        redirect=redirect.requestRedirect.to_model()
        if redirect and redirect.requestRedirect
        else None,
        rewrite=rewrite.urlRewrite.to_model() if rewrite and rewrite.urlRewrite else None,
        mirrors=tuple(
            f.requestMirror.to_model() for f in rule.filters if f.requestMirror is not None
        ),
        fault=fault,
        retry=retry,
        name=rule.name or "",
    )


__all__ = ["API_VERSION", "HTTPRouteDoc", "Percent"]
