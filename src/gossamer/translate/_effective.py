"""What a caller of a service actually gets: every route in the order Envoy tries it, with
the timeout that applies and where that value came from. No hidden defaults: a route
relying on the mesh default says so."""

from __future__ import annotations

from typing import Any

from gossamer.model import (
    MeshConfig,
    ParentKind,
    PathMatchType,
    RouteMatch,
    RouteRule,
    ValueMatchType,
)
from gossamer.translate._routes import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_ON,
    Candidate,
    candidates,
    duration,
)


class UnknownService(LookupError):
    pass


def effective_routes(config: MeshConfig, service: str) -> dict[str, Any]:
    """Per HTTP port of ``service``: its routes in precedence order, as plain data."""
    svc = next((s for s in config.services() if s.name == service), None)
    if svc is None:
        raise UnknownService(service)
    settings = config.settings
    default_source = (
        f"Mesh {settings.origin}" if settings.origin else "built-in default, no Mesh resource"
    )
    ports: list[dict[str, Any]] = []
    for port in svc.ports:
        if not port.protocol.is_http:
            ports.append({"port": port.port, "protocol": port.protocol.value, "routes": []})
            continue
        found = candidates(
            config.routes,
            lambda r, port=port: any(  # type: ignore[misc]
                p.kind is ParentKind.SERVICE
                and p.service == service
                and p.port in (None, port.port)
                for p in r.parents
            ),
        )
        routes = [_describe(c, settings.default_request_timeout_ms, default_source) for c in found]
        if not routes:
            routes = [
                {
                    "route": "(none: default route)",
                    "match": "any request",
                    "backends": [f"{service}:{port.port} 100%"],
                    "timeout": duration(settings.default_request_timeout_ms),
                    "timeout_source": default_source,
                    "retries": DEFAULT_RETRIES_TEXT,
                }
            ]
        ports.append({"port": port.port, "protocol": port.protocol.value, "routes": routes})
    return {
        "service": service,
        "default_request_timeout": duration(settings.default_request_timeout_ms),
        "default_request_timeout_source": default_source,
        "outbound_traffic_policy": settings.outbound_policy.value,
        # Whether callers' requests to this service are counted per caller (Mesh
        # telemetry.edgeMetrics).
        "edge_metrics": settings.telemetry.edge_metrics,
        "ports": ports,
    }


def _describe(c: Candidate, default_ms: int, default_source: str) -> dict[str, Any]:
    rule = c.rule
    t = rule.timeouts
    out: dict[str, Any] = {
        "route": f"{c.route.origin or c.route.name} rule {c.rule.name or c.rule_index}",
        "match": _match_text(c.match),
    }
    if rule.redirect is not None:
        out["redirect"] = rule.redirect.status_code
        return out
    total = sum(b.weight for b in rule.backends)
    out["backends"] = [
        f"{b.service}:{b.port} {100 * b.weight / total:.0f}%" if total else f"{b.service}:{b.port}"
        for b in rule.backends
    ]
    if t.request_ms is None:
        out["timeout"] = duration(default_ms)
        out["timeout_source"] = default_source
    else:
        out["timeout"] = duration(t.request_ms) if t.request_ms else "none (0s disables it)"
        out["timeout_source"] = "timeouts.request"
    per_try = (rule.retry.per_try_timeout_ms if rule.retry else None) or t.backend_request_ms
    if per_try is not None:
        out["per_try_timeout"] = duration(per_try)
    if rule.retry is not None:
        r = rule.retry
        out["retries"] = f"{r.attempts} on {','.join(x.value for x in r.on)}" + (
            f" codes {list(r.status_codes)}" if r.status_codes else ""
        )
    else:
        out["retries"] = (
            f"{DEFAULT_RETRIES} on {DEFAULT_RETRY_ON} (the default: never-sent requests)"
        )
    filters = _filters(rule)
    if filters:
        out["filters"] = filters
    return out


DEFAULT_RETRIES_TEXT = f"{DEFAULT_RETRIES} on {DEFAULT_RETRY_ON} (default: never-sent requests)"


def _filters(rule: RouteRule) -> list[str]:
    out = []
    if rule.request_headers:
        out.append("RequestHeaderModifier")
    if rule.response_headers:
        out.append("ResponseHeaderModifier")
    if rule.rewrite:
        out.append("URLRewrite")
    out += [f"RequestMirror {m.backend.service} {m.percent:g}%" for m in rule.mirrors]
    if rule.fault:
        out.append("FaultInjection")
    return out


def _match_text(match: RouteMatch) -> str:
    path = match.path
    kinds = {
        PathMatchType.EXACT: "path =",
        PathMatchType.PATH_PREFIX: "path prefix",
        PathMatchType.REGULAR_EXPRESSION: "path ~",
    }
    parts = [f"{kinds[path.type]} {path.value}"]
    if match.method:
        parts.append(f"method {match.method}")
    for h in match.headers:
        op = "~" if h.type is ValueMatchType.REGULAR_EXPRESSION else "="
        parts.append(f"header {h.name} {op} {h.value}")
    for q in match.query_params:
        op = "~" if q.type is ValueMatchType.REGULAR_EXPRESSION else "="
        parts.append(f"query {q.name} {op} {q.value}")
    return ", ".join(parts)
