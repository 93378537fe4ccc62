"""Checks on each route: what it references, its rules' weights, timeouts and retries,
backends without instances, matches and hostnames that can match nothing, and the
advisory on rules relying on the mesh default timeout."""

from __future__ import annotations

from gossamer.model._mesh import MeshConfig, Service
from gossamer.model._problems import Problem, Severity
from gossamer.model._routing import (
    BackendRef,
    HTTPRoute,
    ParentKind,
    ParentRef,
    PathMatchType,
    RouteRule,
)
from gossamer.model._validate._common import (
    REGEX_SPECIAL,
    attaches,
    did_you_mean,
    ports_hint,
    served_hosts,
)


def check_routes(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
    problems: list[Problem] = []
    for route in config.routes:
        for i, parent in enumerate(route.parents):
            field = f"spec.parentRefs[{i}]"
            if parent.kind is ParentKind.GATEWAY:
                problems += _check_gateway_parent(config, route, parent, field)
            else:
                problems += _check_service_parent(services, route, parent, field)
        for r, rule in enumerate(route.rules):
            for b, backend in enumerate(rule.backends):
                field = f"spec.rules[{r}].backendRefs[{b}]"
                problems += _check_backend(services, route, backend, field)
            for m, mirror in enumerate(rule.mirrors):
                field = f"spec.rules[{r}].filters(RequestMirror #{m + 1}).backendRef"
                problems += _check_backend(services, route, mirror.backend, field)
            problems += _check_rule(config, route, r, rule)
            problems += _check_backend_instances(config, services, route, r, rule)
            problems += _check_regex_paths(route, r, rule)
        problems += _check_gateway_hosts(config, route)
    return problems


def _check_service_parent(
    services: dict[str, Service], route: HTTPRoute, parent: ParentRef, field: str
) -> list[Problem]:
    o = route.origin
    svc = services.get(parent.service)
    if svc is None:
        return [
            Problem.at(
                o,
                "GSM0101",
                f"parent service `{parent.service}` does not exist",
                field=f"{field}.name",
                hint=did_you_mean(parent.service, list(services)),
            )
        ]
    if parent.port is not None:
        port = svc.port(parent.port)
        if port is None:
            return [
                Problem.at(
                    o,
                    "GSM0102",
                    f"service `{svc.name}` has no port {parent.port}",
                    field=f"{field}.port",
                    hint=ports_hint(svc),
                )
            ]
        if not port.protocol.is_http:
            return [
                Problem.at(
                    o,
                    "GSM0103",
                    f"service `{svc.name}` port {parent.port} is `tcp`; "
                    "an HTTPRoute needs an http, http2 or grpc port",
                    field=f"{field}.port",
                    hint="declare the port's protocol as http, or drop the route",
                )
            ]
    elif not any(p.protocol.is_http for p in svc.ports):
        return [
            Problem.at(
                o,
                "GSM0103",
                f"service `{svc.name}` has no http, http2 or grpc port to route",
                field=f"{field}.name",
                hint="an HTTPRoute attaches to HTTP ports only",
            )
        ]
    return []


def _check_gateway_parent(
    config: MeshConfig, route: HTTPRoute, parent: ParentRef, field: str
) -> list[Problem]:
    o = route.origin
    gateway = config.gateway(parent.name)
    if gateway is None:
        return [
            Problem.at(
                o,
                "GSM0108",
                f"parent gateway `{parent.name}` does not exist",
                field=f"{field}.name",
                hint=did_you_mean(parent.name, [g.name for g in config.gateways]),
            )
        ]
    listeners = [
        lst
        for lst in gateway.listeners
        if (parent.section is None or lst.name == parent.section)
        and (parent.port is None or lst.port == parent.port)
    ]
    if not listeners:
        wanted = " ".join(
            x
            for x in (
                f"named `{parent.section}`" if parent.section else "",
                f"on port {parent.port}" if parent.port else "",
            )
            if x
        )
        return [
            Problem.at(
                o,
                "GSM0109",
                f"gateway `{gateway.name}` has no listener {wanted}",
                field=f"{field}.sectionName" if parent.section else f"{field}.port",
                hint="listeners: "
                + ", ".join(f"{lst.name} (port {lst.port})" for lst in gateway.listeners),
            )
        ]
    return []


def _check_backend(
    services: dict[str, Service], route: HTTPRoute, backend: BackendRef, field: str
) -> list[Problem]:
    o = route.origin
    svc = services.get(backend.service)
    if svc is None:
        return [
            Problem.at(
                o,
                "GSM0104",
                f"backend service `{backend.service}` does not exist",
                field=f"{field}.name",
                hint=did_you_mean(backend.service, list(services)),
            )
        ]
    if svc.port(backend.port) is None:
        return [
            Problem.at(
                o,
                "GSM0105",
                f"backend service `{svc.name}` has no port {backend.port}",
                field=f"{field}.port",
                hint=ports_hint(svc),
            )
        ]
    return []


def _check_rule(config: MeshConfig, route: HTTPRoute, r: int, rule: RouteRule) -> list[Problem]:
    o = route.origin
    problems = []
    if rule.backends and all(b.weight == 0 for b in rule.backends):
        problems.append(
            Problem.at(
                o,
                "GSM0106",
                "every backendRef of this rule has weight 0, so it would answer 500 "
                "to every request",
                field=f"spec.rules[{r}].backendRefs",
                hint="give at least one backend a positive weight",
            )
        )
    t = rule.timeouts
    default = t.request_ms is None
    request_ms = config.settings.default_request_timeout_ms if default else t.request_ms
    which = "the mesh default request timeout" if default else "timeouts.request"
    if request_ms and t.backend_request_ms and t.backend_request_ms > request_ms:
        problems.append(
            Problem.at(
                o,
                "GSM0107",
                f"timeouts.backendRequest ({t.backend_request_ms} ms) is longer than "
                f"{which} ({request_ms} ms)",
                field=f"spec.rules[{r}].timeouts.backendRequest",
                hint="Gateway API requires backendRequest <= request; set "
                "timeouts.request explicitly",
            )
        )
    retry = rule.retry
    per_try = (retry.per_try_timeout_ms if retry else None) or t.backend_request_ms
    if retry and retry.attempts and per_try and request_ms:
        total = (retry.attempts + 1) * per_try
        if total > request_ms:
            problems.append(
                Problem.at(
                    o,
                    "GSM0114",
                    f"{retry.attempts + 1} tries of up to {per_try} ms need {total} ms, but "
                    f"{which} is {request_ms} ms: the last retries can never happen",
                    field=f"spec.rules[{r}]",
                    hint="lower the attempts or the per-try timeout, or raise timeouts.request",
                    severity=Severity.WARNING,
                )
            )
    return problems


def _check_backend_instances(
    config: MeshConfig, services: dict[str, Service], route: HTTPRoute, r: int, rule: RouteRule
) -> list[Problem]:
    """A positive weight toward a service no instance backs: that share of requests fails."""
    total = sum(b.weight for b in rule.backends)
    if not total:
        return []  # every weight 0 is GSM0106
    problems = []
    for b, backend in enumerate(rule.backends):
        svc = services.get(backend.service)
        if svc is None or svc.port(backend.port) is None or not backend.weight:
            continue
        workloads = [w for name in svc.workloads if (w := config.workload(name)) is not None]
        if any(w.replicas > 0 for w in workloads):
            continue
        which = ", ".join(
            f"{w.name} (version {w.version})" if w.version else w.name for w in workloads
        )
        share = 100 * backend.weight / total
        problems.append(
            Problem.at(
                route.origin,
                "GSM0126",
                f"backend `{svc.name}` gets {share:.3g}% of this rule's requests, but no "
                f"instance backs it: replicas is 0 in workload {which}; those requests fail "
                "with 503",
                field=f"spec.rules[{r}].backendRefs[{b}].weight",
                hint="scale the workload up, or set this backend's weight to 0 until it has "
                "instances",
            )
        )
    return problems


def _regex_never_matches_a_path(regex: str) -> bool:
    """Whether a whole-path expression certainly matches nothing that starts with ``/``:
    it starts with a literal character other than ``/`` that is not optional. Cautious:
    alternatives, groups, classes and escapes are left alone."""
    body = regex.removeprefix("^")
    if not body or "|" in body:
        return False
    first, after = body[0], body[1:2]
    return first != "/" and first not in REGEX_SPECIAL and after not in ("?", "*", "{")


def _check_regex_paths(route: HTTPRoute, r: int, rule: RouteRule) -> list[Problem]:
    problems = []
    for m, match in enumerate(rule.matches):
        path = match.path
        if path.type is PathMatchType.REGULAR_EXPRESSION and _regex_never_matches_a_path(
            path.value
        ):
            problems.append(
                Problem.at(
                    route.origin,
                    "GSM0128",
                    f"the regular expression `{path.value}` matches no request: it must match "
                    "the whole path, and every path starts with `/`",
                    field=f"spec.rules[{r}].matches[{m}].path.value",
                    hint=f"start it with `/`, e.g. `/{path.value.removeprefix('^')}`",
                    severity=Severity.WARNING,
                )
            )
    return problems


def _check_gateway_hosts(config: MeshConfig, route: HTTPRoute) -> list[Problem]:
    """A gateway route whose hostnames fit none of its listeners serves nothing there."""
    problems = []
    for i, parent in enumerate(route.parents):
        gateway = config.gateway(parent.name) if parent.kind is ParentKind.GATEWAY else None
        if gateway is None:
            continue
        listeners = [lst for lst in gateway.listeners if attaches(parent, lst)]
        if not listeners or any(served_hosts(route, lst) for lst in listeners):
            continue  # no listener is GSM0109
        served = ", ".join(f"listener `{lst.name}` serves {lst.hostname}" for lst in listeners)
        problems.append(
            Problem.at(
                route.origin,
                "GSM0127",
                f"no hostname of this route fits a listener of gateway `{gateway.name}` it "
                f"attaches to ({served}): it serves no request there",
                field="spec.hostnames",
                hint="add a hostname the listener serves, or attach the route to another "
                f"listener (spec.parentRefs[{i}])",
                severity=Severity.WARNING,
            )
        )
    return problems


def advise_default_timeouts(config: MeshConfig) -> list[Problem]:
    """Rules that forward without their own ``timeouts.request`` inherit the mesh default:
    a hidden 15 s is what hurt most in production, so ``analyze`` names each one."""
    settings = config.settings
    default = settings.default_request_timeout_ms
    source = (
        f"the Mesh resource in {settings.origin}"
        if settings.origin
        else "built in; there is no Mesh resource"
    )
    value = f"{default} ms" if default else "none (0s disables it)"
    problems = []
    for route in config.routes:
        for r, rule in enumerate(route.rules):
            if rule.backends and rule.timeouts.request_ms is None:
                problems.append(
                    Problem.at(
                        route.origin,
                        "GSM0124",
                        f"this rule sets no timeouts.request, so it relies on the mesh default "
                        f"request timeout: {value} ({source})",
                        field=f"spec.rules[{r}].timeouts.request",
                        hint="set timeouts.request on the rule (0s disables it), so a change to "
                        "the default does not change this route",
                        severity=Severity.WARNING,
                    )
                )
    return problems
