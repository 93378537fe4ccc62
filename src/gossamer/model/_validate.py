"""Cross-resource checks on a declared mesh. Pure: config in, problems out.

Per-document schema errors are found by the loader (``gossamer.api``); what needs the
whole mesh (references, conflicts, duplicates) is found here.
"""

from __future__ import annotations

import difflib

from gossamer.model._mesh import MeshConfig, Protocol, Service
from gossamer.model._problems import Problem, Severity


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
    return problems


def _check_duplicates(config: MeshConfig) -> list[Problem]:
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for kind, items in (
        ("Workload", [(w.name, w.origin) for w in config.workloads]),
        ("HTTPRoute", [(r.name, r.origin) for r in config.routes]),
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
    names = list(services)
    for route in config.routes:
        o = route.origin
        for i, parent in enumerate(route.parents):
            svc = services.get(parent.service)
            field = f"spec.parentRefs[{i}]"
            if svc is None:
                problems.append(
                    Problem.at(
                        o,
                        "GSM0101",
                        f"parent service `{parent.service}` does not exist",
                        field=f"{field}.name",
                        hint=_did_you_mean(parent.service, names),
                    )
                )
                continue
            if parent.port is not None:
                port = svc.port(parent.port)
                if port is None:
                    problems.append(
                        Problem.at(
                            o,
                            "GSM0102",
                            f"service `{svc.name}` has no port {parent.port}",
                            field=f"{field}.port",
                            hint=_ports_hint(svc),
                        )
                    )
                elif not port.protocol.is_http:
                    problems.append(
                        Problem.at(
                            o,
                            "GSM0103",
                            f"service `{svc.name}` port {parent.port} is `tcp`; "
                            "an HTTPRoute needs an http, http2 or grpc port",
                            field=f"{field}.port",
                            hint="declare the port's protocol as http, or drop the route",
                        )
                    )
            elif not any(p.protocol.is_http for p in svc.ports):
                problems.append(
                    Problem.at(
                        o,
                        "GSM0103",
                        f"service `{svc.name}` has no http, http2 or grpc port to route",
                        field=f"{field}.name",
                        hint="an HTTPRoute attaches to HTTP ports only",
                    )
                )
        for r, rule in enumerate(route.rules):
            for b, backend in enumerate(rule.backends):
                field = f"spec.rules[{r}].backendRefs[{b}]"
                svc = services.get(backend.service)
                if svc is None:
                    problems.append(
                        Problem.at(
                            o,
                            "GSM0104",
                            f"backend service `{backend.service}` does not exist",
                            field=f"{field}.name",
                            hint=_did_you_mean(backend.service, names),
                        )
                    )
                elif svc.port(backend.port) is None:
                    problems.append(
                        Problem.at(
                            o,
                            "GSM0105",
                            f"backend service `{svc.name}` has no port {backend.port}",
                            field=f"{field}.port",
                            hint=_ports_hint(svc),
                        )
                    )
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
            if request_ms and t.backend_request_ms and t.backend_request_ms > request_ms:
                which = "the mesh default request timeout" if default else "timeouts.request"
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
    return problems


__all__ = ["Severity", "validate"]
