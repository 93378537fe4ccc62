"""Routes: what requests a rule selects, where it sends them, and what it does on the way.

The shape follows Gateway API's HTTPRoute (and GRPCRoute, which converts into it), so a
route here says exactly what the user wrote, in milliseconds and plain values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gossamer.model._origin import Origin


class PathMatchType(enum.Enum):
    """Gateway API path match types."""

    EXACT = "Exact"
    """The whole path equals the value."""
    PATH_PREFIX = "PathPrefix"
    """The path starts with the value, on a ``/`` boundary."""
    REGULAR_EXPRESSION = "RegularExpression"
    """The whole path matches the RE2 expression."""


class ValueMatchType(enum.Enum):
    """How a header or query parameter value is compared."""

    EXACT = "Exact"
    """Equal, case-sensitive."""
    REGULAR_EXPRESSION = "RegularExpression"
    """The whole value matches the RE2 expression."""


@dataclass(frozen=True, slots=True)
class PathMatch:
    type: PathMatchType
    value: str


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """A match on one request header's value; the name is compared case-insensitively."""

    name: str
    value: str
    type: ValueMatchType = ValueMatchType.EXACT


@dataclass(frozen=True, slots=True)
class QueryParamMatch:
    name: str
    value: str
    type: ValueMatchType = ValueMatchType.EXACT


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """All of its conditions must hold (AND)."""

    path: PathMatch = PathMatch(PathMatchType.PATH_PREFIX, "/")
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: str | None = None


Precedence = tuple[int, int, int, int, int, str, int]


def precedence(match: RouteMatch, route: str, rule: int) -> Precedence:
    """The order matches are tried in (lowest first), for translation and analysis alike:
    exact paths, then regular expressions, then prefixes (the Gateway API leaves regex
    precedence to implementations; Envoy Gateway also puts it before prefixes, so a ``/``
    catch-all never hides it); longer values first; then a method, most headers, most
    query params; ties go to the route name (creation time is not known locally), then
    rule order."""
    path = match.path
    kind = {PathMatchType.EXACT: 0, PathMatchType.REGULAR_EXPRESSION: 1}.get(path.type, 2)
    return (
        kind,
        -len(path.value),
        0 if match.method else 1,
        -len(match.headers),
        -len(match.query_params),
        route,
        rule,
    )


@dataclass(frozen=True, slots=True)
class BackendRef:
    service: str
    port: int
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-rule timeouts in milliseconds. ``None`` means the mesh default applies;
    0 disables the timeout (Gateway API semantics for ``0s``)."""

    request_ms: int | None = None
    backend_request_ms: int | None = None


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    """Headers to set (replace), add (append) and remove."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


class PathModifierType(enum.Enum):
    """How a redirect or rewrite changes the path."""

    REPLACE_FULL_PATH = "ReplaceFullPath"
    """The whole path becomes the value."""
    REPLACE_PREFIX_MATCH = "ReplacePrefixMatch"
    """The part matched by the rule's PathPrefix becomes the value."""


@dataclass(frozen=True, slots=True)
class PathModifier:
    type: PathModifierType
    value: str


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer with a redirect instead of forwarding. Unset parts keep the request's."""

    scheme: str | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302


@dataclass(frozen=True, slots=True)
class Rewrite:
    """Change the request's host and/or path before forwarding it."""

    hostname: str | None = None
    path: PathModifier | None = None


@dataclass(frozen=True, slots=True)
class Mirror:
    """Send a copy of a share of requests to another backend; its answers are dropped."""

    backend: BackendRef
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class Fault:
    """Injected delay and/or abort, each for a percentage of requests (resilience tests)."""

    delay_ms: int | None = None
    delay_percent: float = 100.0
    abort_status: int | None = None
    abort_percent: float = 100.0


class RetryOn(enum.Enum):
    """Conditions that make a request eligible for another attempt (Envoy's names)."""

    SERVER_ERROR = "5xx"
    """Any 5xx answer, or no answer at all (reset, timeout)."""
    GATEWAY_ERROR = "gateway-error"
    """502, 503 or 504."""
    RESET = "reset"
    """The upstream reset the connection, or did not answer."""
    CONNECT_FAILURE = "connect-failure"
    """The connection to the upstream could not be made."""
    RETRIABLE_STATUS_CODES = "retriable-status-codes"
    """One of the listed status codes."""


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int
    """Retries after the first try (0 disables)."""
    on: tuple[RetryOn, ...] = (RetryOn.CONNECT_FAILURE, RetryOn.RESET)
    status_codes: tuple[int, ...] = ()
    per_try_timeout_ms: int | None = None
    backoff_base_ms: int = 25
    backoff_max_ms: int = 250


@dataclass(frozen=True, slots=True)
class RouteRule:
    """Any of its matches selects the rule (OR); traffic is split over backends by weight.

    A rule with a redirect has no backends. Filters apply in Gateway API order: header
    changes and rewrite on the request, mirror copies, the forwarded request, then
    response header changes.
    """

    matches: tuple[RouteMatch, ...]
    backends: tuple[BackendRef, ...]
    timeouts: Timeouts = Timeouts()
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    mirrors: tuple[Mirror, ...] = ()
    fault: Fault | None = None
    retry: Retry | None = None
    name: str = ""


class ParentKind(enum.Enum):
    """What a route attaches to."""

    SERVICE = "Service"
    """A mesh service (GAMMA): the route applies to calls made to it from inside the mesh."""
    GATEWAY = "Gateway"
    """An ingress gateway: the route applies to requests arriving at its listeners."""


@dataclass(frozen=True, slots=True)
class ParentRef:
    """The service (optionally one port) or gateway (optionally one listener) a route
    attaches to."""

    service: str
    port: int | None = None
    kind: ParentKind = ParentKind.SERVICE
    section: str | None = None
    """A gateway listener's name."""

    @property
    def name(self) -> str:
        return self.service


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    name: str
    parents: tuple[ParentRef, ...]
    rules: tuple[RouteRule, ...]
    hostnames: tuple[str, ...] = ()
    """For gateway parents: the hosts the route serves (empty: all). Ignored for services,
    as GAMMA specifies."""
    origin: Origin | None = field(default=None, compare=False)
