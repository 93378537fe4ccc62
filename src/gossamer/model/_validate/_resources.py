"""Checks on resources as a set: unique names, agreeing port protocols, server-first
ports, external hosts, gateway ports, the names a workload calls."""

from __future__ import annotations

from gossamer.model._mesh import MeshConfig, Protocol, Service
from gossamer.model._origin import Origin
from gossamer.model._problems import Problem
from gossamer.model._validate._common import did_you_mean, kind_of


def check_duplicates(config: MeshConfig) -> list[Problem]:
    problems = []
    seen: dict[tuple[str, str], str] = {}
    for kind, items in (
        ("Workload", [(w.name, w.origin) for w in config.workloads]),
        ("HTTPRoute", [(r.name, r.origin) for r in config.routes if kind_of(r) == "HTTPRoute"]),
        ("GRPCRoute", [(r.name, r.origin) for r in config.routes if kind_of(r) == "GRPCRoute"]),
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


def check_service_ports(config: MeshConfig) -> list[Problem]:
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


_SERVER_FIRST: dict[int, str] = {
    21: "FTP",
    22: "SSH",
    23: "Telnet",
    25: "SMTP",
    110: "POP3",
    143: "IMAP",
    587: "SMTP",
    3306: "MySQL",
    4222: "NATS",
}
"""Well-known ports of protocols where the server speaks first (a greeting or banner)."""


_SERVER_FIRST_NAMES = {
    "ftp": "FTP",
    "ssh": "SSH",
    "telnet": "Telnet",
    "smtp": "SMTP",
    "pop3": "POP3",
    "imap": "IMAP",
    "mysql": "MySQL",
    "mariadb": "MySQL",
    "nats": "NATS",
}


def _server_first(number: int, name: str = "") -> str | None:
    """The server-first protocol a port's number or name says it carries, if any."""
    for token in name.lower().split("-"):
        if token in _SERVER_FIRST_NAMES:
            return _SERVER_FIRST_NAMES[token]
    return _SERVER_FIRST.get(number)


def _server_first_problem(origin: Origin | None, field: str, port: int, what: str) -> Problem:
    return Problem.at(
        origin,
        "GSM0125",
        f"port {port} looks like {what}, where the server speaks first, but is declared "
        f"`http`: the sidecar would wait for an HTTP request the client never sends",
        field=field,
        hint="declare protocol: tcp (server-first protocols are proxied per connection)",
    )


def check_server_first(config: MeshConfig) -> list[Problem]:
    problems = []
    for w in config.workloads:
        for i, port in enumerate(w.ports):
            what = _server_first(port.port, port.name)
            if what and port.protocol.is_http:
                problems.append(
                    _server_first_problem(w.origin, f"spec.ports[{i}].protocol", port.port, what)
                )
    for ext in config.external_services:
        for i, ext_port in enumerate(ext.ports):
            what = _server_first(ext_port.port) or _server_first(ext_port.target_port)
            if what and ext_port.protocol.is_http:
                problems.append(
                    _server_first_problem(
                        ext.origin, f"spec.ports[{i}].protocol", ext_port.port, what
                    )
                )
    return problems


def check_external(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
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


def check_gateways(config: MeshConfig) -> list[Problem]:
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


def check_calls(config: MeshConfig, services: dict[str, Service]) -> list[Problem]:
    """Every name in a workload's ``calls`` is a service or an ExternalService."""
    known = [*services, *(e.name for e in config.external_services)]
    problems = []
    for w in config.workloads:
        for i, name in enumerate(w.calls or ()):
            if name not in known:
                problems.append(
                    Problem.at(
                        w.origin,
                        "GSM0130",
                        f"`{name}` in calls is neither a service nor an ExternalService: "
                        f"this workload's sidecars would have no route to it",
                        field=f"spec.calls[{i}]",
                        hint=did_you_mean(name, known)
                        or "declare the service, or remove it from calls",
                    )
                )
    return problems
