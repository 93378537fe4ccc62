"""Cross-resource checks on a declared mesh. Pure: config in, problems out.

Per-document schema errors are found by the loader (``gossamer.api``); what needs the
whole mesh (references, conflicts, duplicates) is found here.
"""

from __future__ import annotations

import difflib

from gossamer.model._mesh import MeshConfig, Protocol, Service
from gossamer.model._policy import PolicyTargetKind, TrafficPolicy
from gossamer.model._problems import Problem, Severity
from gossamer.model._routing import (
    BackendRef,
    HTTPRoute,
    ParentKind,
    ParentRef,
    RouteMatch,
    RouteRule,
)


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    if choices:
        return "known: " + ", ".join(sorted(choices)[:10])
    return ""


def _ports_hint(svc: Service) -> str:
    return f"ports of `{svc.name}`: " + ", ".join(str(p.port) for p in svc.ports)


def validate(config: MeshConfig) -> list[Problem]:
    """Every problem in ``config``; an empty list means it can be applied."""
    problems: list[Problem] = []
    problems += _check_duplicates(config)
    services = {s.name: s for s in config.services()}
    problems += _check_service_ports(config)
    problems += _check_routes(config, services)
    problems += _check_external(config, services)
    problems += _check_gateways(config)
    problems += _check_policies(config, services)
    return problems


def _kind(route: HTTPRoute) -> str:
    return route.origin.kind if route.origin else "HTTPRoute"


def _check_duplicates(config: MeshConfig) -> list[Problem]:
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for kind, items in (
        ("Workload", [(w.name, w.origin) for w in config.workloads]),
        ("HTTPRoute", [(r.name, r.origin) for r in config.routes if _kind(r) == "HTTPRoute"]),
        ("GRPCRoute", [(r.name, r.origin) for r in config.routes if _kind(r) == "GRPCRoute"]),
        ("Gateway", [(g.name, g.origin) for g in config.gateways]),
        ("ExternalService", [(e.name, e.origin) for e in config.external_services]),
        ("TrafficPolicy", [(p.name, p.origin) for p in config.policies]),
    ):
        for name, origin in items:
            key = (kind, name)
            if key in seen:
                problems.append(
                    Problem.at(
                        origin,
                        "GSM0020",
                        f"a {kind} named `{name}` is already declared in {seen[key]}",
                        field="metadata.name",
                        hint="names are unique per kind; rename one of them",
                    )
                )
            else:
                seen[key] = str(origin) if origin else "another document"
    return problems


def _check_service_ports(config: MeshConfig) -> list[Problem]:
    problems = []
    declared: dict[tuple[str, int], tuple[Protocol, str]] = {}
    for w in config.workloads:
        for i, port in enumerate(w.ports):
            for svc in w.services:
                key = (svc, port.port)
                if key in declared and declared[key][0] is not port.protocol:
                    proto, other = declared[key]
                    problems.append(
                        Problem.at(
                            w.origin,
                            "GSM0022",
                            f"service `{svc}` port {port.port} is `{port.protocol.value}` here "
                            f"but `{proto.value}` in workload `{other}`",
                            field=f"spec.ports[{i}].protocol",
                            hint="every workload backing a service must agree on each port's "
                            "protocol",
                        )
                    )
                declared.setdefault(key, (port.protocol, w.name))
    return problems


def _check_routes(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
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
    problems += _check_shadowing(config)
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
                hint=_did_you_mean(parent.service, list(services)),
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
                    hint=_ports_hint(svc),
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
                hint=_did_you_mean(parent.name, [g.name for g in config.gateways]),
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
                hint=_did_you_mean(backend.service, list(services)),
            )
        ]
    if svc.port(backend.port) is None:
        return [
            Problem.at(
                o,
                "GSM0105",
                f"backend service `{svc.name}` has no port {backend.port}",
                field=f"{field}.port",
                hint=_ports_hint(svc),
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


def _match_key(match: RouteMatch) -> tuple[object, ...]:
    return (
        match.path,
        frozenset(match.headers),
        frozenset(match.query_params),
        match.method,
    )


def _check_shadowing(config: MeshConfig) -> list[Problem]:
    """A match identical to one that Envoy tries first can never be selected."""
    problems = []
    seen: dict[tuple[object, ...], tuple[HTTPRoute, int]] = {}
    for route in config.routes:
        for parent in route.parents:
            hosts = frozenset(route.hostnames) if parent.kind is ParentKind.GATEWAY else None
            for r, rule in enumerate(route.rules):
                for m, match in enumerate(rule.matches):
                    key: tuple[object, ...] = (
                        parent.kind,
                        parent.name,
                        parent.port,
                        parent.section,
                        hosts,
                        *_match_key(match),
                    )
                    first = seen.get(key)
                    if first is None:
                        seen[key] = (route, r)
                        continue
                    other, other_rule = first
                    if other is route and other_rule == r:
                        continue
                    where = (
                        f"rule {other_rule} of this route"
                        if other is route
                        else f"{other.origin or other.name} rule {other_rule}"
                    )
                    problems.append(
                        Problem.at(
                            route.origin,
                            "GSM0110",
                            f"this match is identical to one in {where}, which takes "
                            "precedence: it never selects this rule",
                            field=f"spec.rules[{r}].matches[{m}]",
                            hint="remove one of them, or make this match more specific",
                            severity=Severity.WARNING,
                        )
                    )
    return problems


def _check_external(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
    problems = []
    claimed: dict[tuple[str, int], str] = {}
    for ext in config.external_services:
        if ext.name in services:
            problems.append(
                Problem.at(
                    ext.origin,
                    "GSM0111",
                    f"`{ext.name}` is also the name of a mesh service",
                    field="metadata.name",
                    hint="an ExternalService needs a name of its own; rename it",
                )
            )
        for h, host in enumerate(ext.hosts):
            if host in services:
                problems.append(
                    Problem.at(
                        ext.origin,
                        "GSM0111",
                        f"host `{host}` is also the name of a mesh service",
                        field=f"spec.hosts[{h}]",
                        hint="calls to that name would be ambiguous; rename one of them",
                    )
                )
            for port in ext.ports:
                owner = claimed.setdefault((host, port.port), ext.name)
                if owner != ext.name:
                    problems.append(
                        Problem.at(
                            ext.origin,
                            "GSM0111",
                            f"`{host}:{port.port}` is already declared by ExternalService "
                            f"`{owner}`",
                            field=f"spec.hosts[{h}]",
                            hint="declare each external host and port once",
                        )
                    )
    return problems


def _check_gateways(config: MeshConfig) -> list[Problem]:
    problems = []
    owner: dict[int, str] = {}
    for gateway in config.gateways:
        for i, lst in enumerate(gateway.listeners):
            first = owner.setdefault(lst.port, gateway.name)
            if first != gateway.name:
                problems.append(
                    Problem.at(
                        gateway.origin,
                        "GSM0112",
                        f"port {lst.port} is already a listener port of gateway `{first}`",
                        field=f"spec.listeners[{i}].port",
                        hint="each gateway needs its own ports on this machine",
                    )
                )
    return problems


def _check_shared_compression(config: MeshConfig, policy: TrafficPolicy) -> list[Problem]:
    """Compression happens in a workload's sidecar, for every service it backs: they must
    agree, or one service's setting would silently apply to another."""
    problems = []
    for target in policy.targets:
        for w in config.workloads:
            if target not in w.services:
                continue
            for other in w.services:
                other_policy = config.policy_for(other)
                theirs = other_policy.compression if other_policy else None
                if theirs != policy.compression:
                    problems.append(
                        Problem.at(
                            policy.origin,
                            "GSM0121",
                            f"workload `{w.name}` backs `{target}` and `{other}`, whose "
                            "compression settings differ; one sidecar compresses for both",
                            field="spec.compression",
                            hint=f"give `{other}` the same compression (e.g. add it to this "
                            "policy's targetRefs)",
                        )
                    )
                    return problems
    return problems


_COMPRESSED_TYPES = (
    "image/",
    "video/",
    "audio/",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "font/woff2",
)


def _check_policies(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
    problems: list[Problem] = []
    owner: dict[tuple[PolicyTargetKind, str], str] = {}
    for policy in config.policies:
        o = policy.origin
        for i, target in enumerate(policy.targets):
            field = f"spec.targetRefs[{i}].name"
            if policy.target_kind is PolicyTargetKind.GATEWAY:
                known = [g.name for g in config.gateways]
            else:
                known = list(services)
            if target not in known:
                problems.append(
                    Problem.at(
                        o,
                        "GSM0115",
                        f"target {policy.target_kind.value.lower()} `{target}` does not exist",
                        field=field,
                        hint=_did_you_mean(target, known),
                    )
                )
                continue
            first = owner.setdefault((policy.target_kind, target), policy.name)
            if first != policy.name:
                problems.append(
                    Problem.at(
                        o,
                        "GSM0116",
                        f"{policy.target_kind.value} `{target}` already has TrafficPolicy "
                        f"`{first}`; two policies would disagree",
                        field=field,
                        hint="merge them into one TrafficPolicy",
                    )
                )
            svc = services.get(target)
            hc = policy.health_check
            http_check = hc is not None and hc.http_path is not None
            if svc is not None and http_check and not any(p.protocol.is_http for p in svc.ports):
                problems.append(
                    Problem.at(
                        o,
                        "GSM0120",
                        f"an HTTP health check on `{target}`, which has only tcp ports",
                        field="spec.healthCheck.http",
                        hint="use `tcp: {}` for tcp services",
                    )
                )
            if svc is not None and policy.locality is not None:
                zoneless = [
                    w
                    for w in svc.workloads
                    if (wl := config.workload(w)) is not None and not wl.zone
                ]
                if zoneless:
                    problems.append(
                        Problem.at(
                            o,
                            "GSM0118",
                            f"locality routing for `{target}`, but workload(s) "
                            f"{', '.join(zoneless)} declare no zone",
                            field="spec.locality",
                            hint="set spec.zone on every workload backing the service",
                            severity=Severity.WARNING,
                        )
                    )
        od = policy.outlier_detection
        if od is not None and od.max_ejection_percent == 100:
            problems.append(
                Problem.at(
                    o,
                    "GSM0117",
                    "outlier detection may eject every endpoint (maxEjectionPercent 100), "
                    "leaving callers with none",
                    field="spec.outlierDetection.maxEjectionPercent",
                    hint="keep some endpoints in rotation, e.g. 50",
                    severity=Severity.WARNING,
                )
            )
        comp = policy.compression
        if comp is not None and policy.target_kind is PolicyTargetKind.SERVICE:
            problems += _check_shared_compression(config, policy)
        if comp is not None:
            already = [t for t in comp.content_types if t.startswith(_COMPRESSED_TYPES)]
            if already:
                problems.append(
                    Problem.at(
                        o,
                        "GSM0119",
                        f"compressing content that is already compressed: {already}",
                        field="spec.compression.contentTypes",
                        hint="compression helps text, JSON, XML and JavaScript; remove these",
                        severity=Severity.WARNING,
                    )
                )
    return problems


__all__ = ["Severity", "validate"]
