"""``Workload`` (gossamer.dev/v1alpha1): local instances of a command, backing services."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from gossamer.api._common import Metadata, Name, Strict, check_duration, parse_duration_ms
from gossamer.model import Origin, Port, Protocol, Workload

API_VERSION = "gossamer.dev/v1alpha1"
KIND = "Workload"


class PortSpec(Strict):
    name: Name | None = None
    port: int = Field(ge=1, le=65535)
    protocol: Literal["http", "http2", "grpc", "tcp"] = "http"


MAX_SHUTDOWN = "10m"
"""The longest ``drainTimeout`` or ``gracePeriod``: a stop, a rolling restart and
``gossamer down`` each wait for them."""


class ShutdownSpec(Strict):
    """How an instance stops; see docs/concepts.md#readiness-and-ordering."""

    drainTimeout: str = "5s"
    gracePeriod: str = "5s"

    _durations = field_validator("drainTimeout", "gracePeriod")(check_duration)

    @field_validator("drainTimeout", "gracePeriod")
    @classmethod
    def _bounded(cls, value: str, info: ValidationInfo) -> str:
        if parse_duration_ms(value) > parse_duration_ms(MAX_SHUTDOWN):
            raise ValueError(f"{info.field_name} must be at most {MAX_SHUTDOWN}, not {value}")
        return value


class WorkloadSpec(Strict):
    services: list[Name] | None = None
    version: str = Field(default="", max_length=63)
    zone: str = Field(default="", max_length=63)
    replicas: int = Field(default=1, ge=0, le=64)
    ports: list[PortSpec] = Field(default_factory=list)
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    workingDir: str | None = None
    shutdown: ShutdownSpec = Field(default_factory=ShutdownSpec)
    calls: list[Name] | None = None
    """Services and ExternalServices the app calls; omitted: every one of the mesh."""

    @field_validator("calls")
    @classmethod
    def _unique_calls(cls, calls: list[str] | None) -> list[str] | None:
        if calls is not None:
            twice = sorted({c for c in calls if calls.count(c) > 1})
            if twice:
                raise ValueError(f"listed more than once: {', '.join(twice)}")
        return calls

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[PortSpec]) -> list[PortSpec]:
        seen: dict[int, int] = {}
        for i, p in enumerate(ports):
            if p.port in seen:
                raise ValueError(f"port {p.port} is listed twice (entries {seen[p.port]} and {i})")
            seen[p.port] = i
        return ports


class WorkloadDoc(Strict):
    apiVersion: Literal["gossamer.dev/v1alpha1"]
    kind: Literal["Workload"]
    metadata: Metadata
    spec: WorkloadSpec

    def to_model(self, origin: Origin, base_dir: str) -> Workload:
        spec = self.spec
        ports = tuple(
            Port(
                name=p.name or f"{p.protocol}-{p.port}", port=p.port, protocol=Protocol(p.protocol)
            )
            for p in spec.ports
        )
        if spec.services is not None:
            services = tuple(spec.services)
        else:
            services = (self.metadata.name,) if ports else ()
        working_dir = spec.workingDir or "."
        if base_dir and not working_dir.startswith("/"):
            working_dir = (
                f"{base_dir.rstrip('/')}/{working_dir}" if working_dir != "." else base_dir
            )
        return Workload(
            name=self.metadata.name,
            services=services,
            ports=ports,
            command=tuple(spec.command),
            replicas=spec.replicas,
            version=spec.version,
            zone=spec.zone,
            env=tuple(sorted(spec.env.items())),
            working_dir=working_dir,
            drain_timeout_ms=parse_duration_ms(spec.shutdown.drainTimeout),
            grace_period_ms=parse_duration_ms(spec.shutdown.gracePeriod),
            calls=tuple(spec.calls) if spec.calls is not None else None,
            origin=origin,
        )
