"""The one internal model of a mesh.

Every front-end (Gossamer YAML, Gateway API, later Kubernetes and Istio imports) converts
into these frozen dataclasses; nothing downstream knows where a fact came from. Objects
carry an ``Origin`` so that errors found later (analysis, Envoy NACKs) can point back at
the user's file and document.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.model._origin import Origin
from gossamer.model._policy import PolicyTargetKind, TrafficPolicy
from gossamer.model._routing import HTTPRoute


class Protocol(enum.Enum):
    """How the mesh treats a port's traffic. Declared, never sniffed."""

    HTTP = "http"
    """HTTP/1.1 (and HTTP/2 with prior knowledge) routed per request."""
    HTTP2 = "http2"
    """HTTP/2 end to end; the upstream connection speaks HTTP/2."""
    GRPC = "grpc"
    """gRPC over HTTP/2; routed per request like http2."""
    TCP = "tcp"
    """Opaque bytes, proxied per connection. Server-first protocols (MySQL) belong here."""

    @property
    def is_http(self) -> bool:
        return self is not Protocol.TCP

    @property
    def upstream_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC)


@dataclass(frozen=True, slots=True)
class Port:
    """A service port: the number callers use and how its traffic is treated."""

    name: str
    port: int
    protocol: Protocol


@dataclass(frozen=True, slots=True)
class Workload:
    """A set of identical local instances running one command, backing one or more services."""

    name: str
    services: tuple[str, ...]
    ports: tuple[Port, ...]
    command: tuple[str, ...]
    replicas: int = 1
    version: str = ""
    zone: str = ""
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = ""
    drain_timeout_ms: int = 5000
    """On stop, once the instance is out of every caller's endpoints: the longest wait for
    the inbound requests in flight to finish before the app gets SIGTERM."""
    grace_period_ms: int = 5000
    """On stop, after SIGTERM to the app: how long before SIGKILL."""
    calls: tuple[str, ...] | None = None
    """The services and ExternalServices the app calls; its sidecars get outbound config
    for these only. None: every service and ExternalService of the mesh."""
    origin: Origin | None = field(default=None, compare=False)

    def port(self, number: int) -> Port | None:
        return next((p for p in self.ports if p.port == number), None)

    def may_call(self, name: str) -> bool:
        """Whether this workload's sidecars carry outbound config for service ``name``."""
        return self.calls is None or name in self.calls


def instance_name(workload: str, index: int) -> str:
    """The stable name of the index-th instance of a workload; also its proxy's node id."""
    return f"{workload}-{index}"


@dataclass(frozen=True, slots=True)
class Service:
    """A name callers use, backed by the instances of every workload that lists it."""

    name: str
    ports: tuple[Port, ...]
    workloads: tuple[str, ...]

    def port(self, number: int) -> Port | None:
        return next((p for p in self.ports if p.port == number), None)


class OutboundPolicy(enum.Enum):
    """What a sidecar does with a call to a host the mesh does not know."""

    ALLOW_ANY = "AllowAny"
    """Forward it to wherever DNS says (HTTP through the sidecar's proxy)."""
    REGISTRY_ONLY = "RegistryOnly"
    """Refuse it with a 502 that says why; only services and ExternalServices are reachable."""


@dataclass(frozen=True, slots=True)
class AccessLogSettings:
    """Per-request logs, written by every sidecar and gateway to a file of its own (never
    the app's output), rotated by size."""

    enabled: bool = True
    max_bytes: int = 10 * 1024 * 1024
    """A log file is rotated when it grows past this."""
    max_files: int = 3
    """Rotated files kept besides the current one."""
    sample_percent: float = 100.0
    """Share of successful requests logged; errors (status >= 400) are always logged."""
    sink: str = "file"
    """``file``: each proxy writes its own file. ``grpc``: proxies stream entries to the
    control plane (Envoy's access log service), which writes the same files."""


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """What the mesh measures and where the graph and ``top`` read it from."""

    edge_metrics: bool = True
    """Per-edge request metrics (callers stamp their name; receivers count per caller).
    Off: no source header and no per-caller counters in any sidecar."""
    prometheus_url: str = ""
    """Empty: the graph and ``top`` read the embedded store; else this Prometheus."""


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Envoy reports a span per request to an OpenTelemetry (OTLP/gRPC) collector."""

    collector_host: str
    collector_port: int
    sample_percent: float = 100.0


@dataclass(frozen=True, slots=True)
class MeshSettings:
    """Mesh-wide settings (the ``Mesh`` resource). Every default that shapes traffic lives
    here, visible; ``gossamer config effective`` shows where each applies."""

    default_request_timeout_ms: int = 15_000
    """Applied to routes that set no ``timeouts.request``."""
    connect_timeout_ms: int = 1_000
    """Upstream TCP connect timeout for every cluster."""
    outbound_policy: OutboundPolicy = OutboundPolicy.ALLOW_ANY
    access_log: AccessLogSettings = AccessLogSettings()
    tracing: TracingSettings | None = None
    telemetry: TelemetrySettings = TelemetrySettings()
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TLSOrigination:
    """The sidecar opens TLS to the external service; the app speaks plain HTTP or TCP."""

    sni: str = ""
    ca_file: str = ""
    """PEM bundle to verify the server with; empty: the system's trust store."""


@dataclass(frozen=True, slots=True)
class ExternalPort:
    port: int
    """The port apps call."""
    protocol: Protocol
    target_port: int
    """The port the external service listens on."""
    tls: TLSOrigination | None = None


@dataclass(frozen=True, slots=True)
class ExternalService:
    """A destination outside the mesh, reachable by name through the sidecar."""

    name: str
    hosts: tuple[str, ...]
    ports: tuple[ExternalPort, ...]
    addresses: tuple[str, ...] = ()
    """Fixed addresses; empty: resolve ``hosts[0]`` through DNS."""
    origin: Origin | None = field(default=None, compare=False)


class ListenerProtocol(enum.Enum):
    """What a gateway listener accepts."""

    HTTP = "HTTP"
    """Plain HTTP."""
    HTTPS = "HTTPS"
    """TLS terminated at the gateway, then HTTP."""


@dataclass(frozen=True, slots=True)
class GatewayListener:
    name: str
    port: int
    protocol: ListenerProtocol
    hostname: str | None = None
    certificate_file: str = ""
    private_key_file: str = ""


@dataclass(frozen=True, slots=True)
class Gateway:
    """An ingress Envoy that ``gossamer up`` runs: requests from outside enter here."""

    name: str
    listeners: tuple[GatewayListener, ...]
    address: str = "127.0.0.1"
    origin: Origin | None = field(default=None, compare=False)

    @property
    def node_id(self) -> str:
        # A dot never occurs in workload names, so this cannot collide with an instance.
        return gateway_node_id(self.name)


def gateway_node_id(name: str) -> str:
    return f"{name}.gateway"


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """What the user declared: the desired state before placement on this machine."""

    workloads: tuple[Workload, ...] = ()
    routes: tuple[HTTPRoute, ...] = ()
    settings: MeshSettings = MeshSettings()
    gateways: tuple[Gateway, ...] = ()
    external_services: tuple[ExternalService, ...] = ()
    policies: tuple[TrafficPolicy, ...] = ()
    _services: tuple[Service, ...] = field(init=False, repr=False, compare=False)
    """``services()``, derived once: translation and telemetry ask for it per resource
    and per sample."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_services", self._derive_services())

    def policy_for(
        self, name: str, kind: PolicyTargetKind = PolicyTargetKind.SERVICE
    ) -> TrafficPolicy | None:
        """The policy attached to a service (or gateway); validation allows one at most."""
        return next((p for p in self.policies if p.target_kind is kind and name in p.targets), None)

    def services(self) -> tuple[Service, ...]:
        """Services derived from workloads, sorted by name; ports are the union."""
        return self._services

    def _derive_services(self) -> tuple[Service, ...]:
        by_name: dict[str, tuple[dict[int, Port], list[str]]] = {}
        for w in self.workloads:
            for svc in w.services:
                ports, owners = by_name.setdefault(svc, ({}, []))
                owners.append(w.name)
                for p in w.ports:
                    ports.setdefault(p.port, p)
        return tuple(
            Service(
                name=name,
                ports=tuple(sorted(ports.values(), key=lambda p: p.port)),
                workloads=tuple(sorted(owners)),
            )
            for name, (ports, owners) in sorted(by_name.items())
        )

    def workload(self, name: str) -> Workload | None:
        return next((w for w in self.workloads if w.name == name), None)

    def gateway(self, name: str) -> Gateway | None:
        return next((g for g in self.gateways if g.name == name), None)


@dataclass(frozen=True, slots=True)
class Instance:
    """One running copy of a workload as placed on this machine, with its ports.

    ``app_ports`` and ``inbound_ports`` map a service port number to the local port the
    app listens on and the local port its sidecar accepts mesh traffic on.
    """

    name: str
    workload: str
    index: int
    app_ports: tuple[tuple[int, int], ...]
    inbound_ports: tuple[tuple[int, int], ...]
    outbound_http_port: int
    outbound_tcp_ports: tuple[tuple[str, int, int], ...]
    """(service, service port, local port) for each TCP service this proxy can reach."""
    admin_port: int
    address: str = "127.0.0.1"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        """The inverse of ``dataclasses.asdict`` (JSON turns tuples into lists)."""
        return cls(
            name=str(data["name"]),
            workload=str(data["workload"]),
            index=int(data["index"]),
            app_ports=tuple((int(a), int(b)) for a, b in data["app_ports"]),
            inbound_ports=tuple((int(a), int(b)) for a, b in data["inbound_ports"]),
            outbound_http_port=int(data["outbound_http_port"]),
            outbound_tcp_ports=tuple(
                (str(svc), int(port), int(local)) for svc, port, local in data["outbound_tcp_ports"]
            ),
            admin_port=int(data["admin_port"]),
            address=str(data["address"]),
        )

    def inbound_port(self, service_port: int) -> int | None:
        return dict(self.inbound_ports).get(service_port)

    def app_port(self, service_port: int) -> int | None:
        return dict(self.app_ports).get(service_port)


@dataclass(frozen=True, slots=True)
class MeshState:
    """The declared config plus where each instance runs: the input to translation."""

    config: MeshConfig
    instances: tuple[Instance, ...]
    not_serving: frozenset[str] = frozenset()
    """Instances that get no traffic: starting (app not ready yet) or stopping (draining).
    They keep their own sidecar config; they are absent from every caller's endpoints."""

    gateway_admin_ports: tuple[tuple[str, int], ...] = ()
    """(gateway name, its Envoy's admin port)."""

    def instance(self, name: str) -> Instance | None:
        return next((i for i in self.instances if i.name == name), None)

    def instances_of(self, workload: str) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.workload == workload)
