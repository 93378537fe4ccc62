"""Route rules to Envoy routes: matches, precedence, filters, timeouts and retries.

Shared by the sidecar's outbound HTTP proxy and the ingress gateway. Every route carries
an explicit timeout (the rule's own or the mesh default), never Envoy's hidden 15 s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.model import (
    BackendRef,
    Fault,
    HeaderModifier,
    HTTPRoute,
    MeshSettings,
    PathMatchType,
    PathModifier,
    PathModifierType,
    Precedence,
    Redirect,
    Retry,
    RouteMatch,
    RouteRule,
    ValueMatchType,
    precedence,
)
from gossamer.translate import names

HTTP_FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
FAULT_FILTER = "envoy.filters.http.fault"
_REDIRECT_CODES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}

ClusterOf = Callable[[BackendRef], str]
"""The Envoy cluster that serves a backend reference."""


def duration(ms: int) -> str:
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms / 1000:.3f}s"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (route, rule, match) triple, sortable by Gateway API precedence."""

    route: HTTPRoute
    rule_index: int
    rule: RouteRule
    match: RouteMatch

    def key(self) -> Precedence:
        """The order Envoy tries candidates in (``gossamer.model.precedence``)."""
        return precedence(self.match, self.route.name, self.rule_index)


def candidates(
    routes: Iterable[HTTPRoute], rules_of: Callable[[HTTPRoute], bool]
) -> list[Candidate]:
    """Every match of every rule of the routes selected by ``rules_of``, in the order
    Envoy must try them (first match wins)."""
    found = [
        Candidate(route, i, rule, match)
        for route in routes
        if rules_of(route)
        for i, rule in enumerate(route.rules)
        for match in rule.matches
    ]
    return sorted(found, key=Candidate.key)


@dataclass(frozen=True, slots=True)
class Listener:
    """Where requests for a set of routes arrive (what a redirect keeps by default), and
    the per-service hash policies routes to those services carry."""

    port: int
    scheme: str = "http"
    host: str | None = None
    """The host name without port, when it is known for the virtual host."""
    hashes: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)


def route_entry(
    c: Candidate, settings: MeshSettings, cluster_of: ClusterOf, listener: Listener
) -> dict[str, Any]:
    """The Envoy route for one candidate."""
    entry: dict[str, Any] = {
        "name": f"{c.route.name}/{c.rule.name or f'rule-{c.rule_index}'}",
        "match": _match(c.match),
    }
    rule = c.rule
    if rule.redirect is not None:
        entry["redirect"] = _redirect(rule.redirect, c.match, listener)
    else:
        entry["route"] = _action(c, settings, cluster_of)
        hashed = next(
            (listener.hashes[b.service] for b in rule.backends if b.service in listener.hashes),
            None,
        )
        if hashed:
            entry["route"]["hash_policy"] = hashed
    _add_headers(entry, "request", rule.request_headers)
    _add_headers(entry, "response", rule.response_headers)
    if rule.fault is not None:
        entry["typed_per_filter_config"] = {FAULT_FILTER: _fault(rule.fault)}
    return entry


def default_route(
    name: str, cluster: str, settings: MeshSettings, hashed: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    action: dict[str, Any] = {
        "cluster": cluster,
        "timeout": duration(settings.default_request_timeout_ms),
        "retry_policy": _retry(None, None),
    }
    if hashed:
        action["hash_policy"] = hashed
    return {"name": name, "match": {"prefix": "/"}, "route": action}


def uses_fault(routes: Iterable[HTTPRoute]) -> bool:
    return any(rule.fault is not None for r in routes for rule in r.rules)


def _string_match(value: str, kind: ValueMatchType) -> dict[str, Any]:
    if kind is ValueMatchType.REGULAR_EXPRESSION:
        return {"safe_regex": {"regex": value}}
    return {"exact": value}


def _match(match: RouteMatch) -> dict[str, Any]:
    path = match.path
    out: dict[str, Any]
    if path.type is PathMatchType.EXACT:
        out = {"path": path.value}
    elif path.type is PathMatchType.REGULAR_EXPRESSION:
        out = {"safe_regex": {"regex": path.value}}
    elif path.value.rstrip("/") == "":
        out = {"prefix": "/"}
    else:
        # Gateway API prefixes match whole path elements: /api matches /api/x, not /apix.
        out = {"path_separated_prefix": path.value.rstrip("/")}
    headers = [
        {"name": h.name, "string_match": _string_match(h.value, h.type)} for h in match.headers
    ]
    if match.method:
        headers.append({"name": ":method", "string_match": {"exact": match.method}})
    if headers:
        out["headers"] = headers
    if match.query_params:
        out["query_parameters"] = [
            {"name": q.name, "string_match": _string_match(q.value, q.type)}
            for q in match.query_params
        ]
    return out


def _prefix_regex(match: RouteMatch, replacement: str) -> dict[str, Any]:
    """Gateway API ReplacePrefixMatch as a regex: whole path elements, so replacing /api
    with /v2 maps /api/x to /v2/x and /api to /v2, and with / maps /api/x to /x."""
    prefix = re.escape(match.path.value.rstrip("/"))
    if replacement.rstrip("/") == "":
        return {"pattern": {"regex": f"^{prefix}/?(.*)$"}, "substitution": "/\\1"}
    return {
        "pattern": {"regex": f"^{prefix}(/.*)?$"},
        "substitution": replacement.rstrip("/") + "\\1",
    }


def _path_rewrite(modifier: PathModifier, match: RouteMatch) -> dict[str, Any]:
    if modifier.type is PathModifierType.REPLACE_FULL_PATH:
        return {"pattern": {"regex": "^.*$"}, "substitution": modifier.value}
    return _prefix_regex(match, modifier.value)


_WELL_KNOWN_PORTS = {"http": 80, "https": 443}


def _redirect(redirect: Redirect, match: RouteMatch, listener: Listener) -> dict[str, Any]:
    """Gateway API's port rule: an explicit port wins; else a new scheme brings its
    well-known port; else the listener's port is kept. A well-known port for the scheme
    is left out of the Location header, which Envoy does when the host is replaced."""
    out: dict[str, Any] = {"response_code": _REDIRECT_CODES[redirect.status_code]}
    scheme = redirect.scheme or listener.scheme
    if redirect.scheme:
        out["scheme_redirect"] = redirect.scheme
    if redirect.port:
        port = redirect.port
    elif redirect.scheme:
        port = _WELL_KNOWN_PORTS[redirect.scheme]
    else:
        port = listener.port
    host = redirect.hostname or listener.host
    if host is not None:
        out["host_redirect"] = host  # replaces the Host header's host and drops its port
    if port != _WELL_KNOWN_PORTS[scheme] or host is None:
        out["port_redirect"] = port
    if redirect.path is not None:
        if redirect.path.type is PathModifierType.REPLACE_FULL_PATH:
            out["path_redirect"] = redirect.path.value
        else:
            out["regex_rewrite"] = _prefix_regex(match, redirect.path.value)
    return out


def _action(c: Candidate, settings: MeshSettings, cluster_of: ClusterOf) -> dict[str, Any]:
    rule = c.rule
    live = [b for b in rule.backends if b.weight > 0]
    action: dict[str, Any]
    if len(rule.backends) == 1:
        action = {"cluster": cluster_of(rule.backends[0])}
    else:
        action = {
            "weighted_clusters": {
                "clusters": [{"name": cluster_of(b), "weight": b.weight} for b in live]
            }
        }
    t = rule.timeouts
    request_ms = settings.default_request_timeout_ms if t.request_ms is None else t.request_ms
    action["timeout"] = duration(request_ms)
    retry = _retry(rule.retry, t.backend_request_ms)
    if retry:
        action["retry_policy"] = retry
    rewrite = rule.rewrite
    if rewrite is not None:
        if rewrite.hostname:
            action["host_rewrite_literal"] = rewrite.hostname
        if rewrite.path is not None:
            action["regex_rewrite"] = _path_rewrite(rewrite.path, c.match)
    if rule.mirrors:
        action["request_mirror_policies"] = [
            _mirror(cluster_of(m.backend), m.percent) for m in rule.mirrors
        ]
    return action


def _percent(value: float) -> dict[str, Any]:
    return {"numerator": round(value * 10_000), "denominator": "MILLION"}


def _mirror(cluster: str, percent: float) -> dict[str, Any]:
    policy: dict[str, Any] = {"cluster": cluster}
    if percent < 100:
        policy["runtime_fraction"] = {"default_value": _percent(percent)}
    return policy


DEFAULT_RETRY_ON = "connect-failure,refused-stream"
DEFAULT_RETRIES = 2
"""Without a retry policy, a request is still tried again (on another instance, when there
is one) if it was never sent: the connection could not be made, or the upstream refused
the stream. Safe for every method; it covers an instance that went away a moment before
its callers heard of it."""


def _retry(retry: Retry | None, backend_request_ms: int | None) -> dict[str, Any] | None:
    if retry is None:
        default: dict[str, Any] = {"retry_on": DEFAULT_RETRY_ON, "num_retries": DEFAULT_RETRIES}
        if backend_request_ms is not None:
            default["per_try_timeout"] = duration(backend_request_ms)
        return default
    policy: dict[str, Any] = {
        "retry_on": ",".join(c.value for c in retry.on),
        "num_retries": retry.attempts,
        "retry_back_off": {
            "base_interval": duration(retry.backoff_base_ms),
            "max_interval": duration(retry.backoff_max_ms),
        },
    }
    per_try = retry.per_try_timeout_ms or backend_request_ms
    if per_try is not None:
        policy["per_try_timeout"] = duration(per_try)
    if retry.status_codes:
        policy["retriable_status_codes"] = list(retry.status_codes)
    return policy


def _add_headers(entry: dict[str, Any], side: str, modifier: HeaderModifier | None) -> None:
    if modifier is None:
        return
    add = [
        {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for k, v in modifier.set
    ] + [
        {"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
        for k, v in modifier.add
    ]
    if add:
        entry[f"{side}_headers_to_add"] = add
    if modifier.remove:
        entry[f"{side}_headers_to_remove"] = list(modifier.remove)


def _fault(fault: Fault) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": HTTP_FAULT}
    if fault.delay_ms is not None:
        config["delay"] = {
            "fixed_delay": duration(fault.delay_ms),
            "percentage": _percent(fault.delay_percent),
        }
    if fault.abort_status is not None:
        config["abort"] = {
            "http_status": fault.abort_status,
            "percentage": _percent(fault.abort_percent),
        }
    return config


def service_cluster(backend: BackendRef) -> str:
    return names.outbound_cluster(backend.service, backend.port)
