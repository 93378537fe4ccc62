"""Gossamer's own kinds (gossamer.dev/v1alpha1) for what Gateway API lacks: mesh-wide
settings, external services, and the filters routes attach by ``ExtensionRef``."""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gossamer.api._common import (
    Hostname,
    Metadata,
    Name,
    Percent,
    Strict,
    check_duration,
    ms,
    relative_to,
)
from gossamer.model import (
    AccessLogSettings,
    ExternalPort,
    ExternalService,
    Fault,
    MeshSettings,
    Origin,
    OutboundPolicy,
    Problem,
    Protocol,
    Retry,
    RetryOn,
    TelemetrySettings,
    TLSOrigination,
    TracingSettings,
)

API_VERSION = "gossamer.dev/v1alpha1"


class DelaySpec(Strict):
    fixedDelay: str
    percent: Percent = 100.0

    _delay = field_validator("fixedDelay")(check_duration)


class AbortSpec(Strict):
    httpStatus: int = Field(ge=200, le=599)
    percent: Percent = 100.0


class FaultInjectionSpec(Strict):
    delay: DelaySpec | None = None
    abort: AbortSpec | None = None

    @model_validator(mode="after")
    def _something(self) -> FaultInjectionSpec:
        if self.delay is None and self.abort is None:
            raise ValueError("a FaultInjection needs a delay, an abort, or both")
        return self


class FaultInjectionDoc(Strict):
    """Delays and/or aborts a share of a route's requests, for resilience testing."""

    apiVersion: Literal["gossamer.dev/v1alpha1"]
    kind: Literal["FaultInjection"]
    metadata: Metadata
    spec: FaultInjectionSpec

    def to_fault(self) -> Fault:
        d, a = self.spec.delay, self.spec.abort
        return Fault(
            delay_ms=ms(d.fixedDelay) if d else None,
            delay_percent=d.percent if d else 100.0,
            abort_status=a.httpStatus if a else None,
            abort_percent=a.percent if a else 100.0,
        )


RetryCondition = Literal[
    "5xx", "gateway-error", "reset", "connect-failure", "retriable-status-codes"
]


def _default_retry_on() -> list[RetryCondition]:
    return ["connect-failure", "reset"]


class BackoffSpec(Strict):
    baseInterval: str = "25ms"
    maxInterval: str | None = None

    _durations = field_validator("baseInterval", "maxInterval")(check_duration)


class RetryPolicySpec(Strict):
    attempts: int = Field(ge=0, le=10)
    retryOn: list[RetryCondition] = Field(default_factory=_default_retry_on, min_length=1)
    retriableStatusCodes: list[int] = Field(default_factory=list, max_length=16)
    perTryTimeout: str | None = None
    backoff: BackoffSpec = Field(default_factory=BackoffSpec)

    _per_try = field_validator("perTryTimeout")(check_duration)

    @model_validator(mode="after")
    def _codes_with_condition(self) -> RetryPolicySpec:
        has_codes = bool(self.retriableStatusCodes)
        if has_codes != ("retriable-status-codes" in self.retryOn):
            raise ValueError(
                "retriableStatusCodes and the retryOn condition `retriable-status-codes` "
                "go together"
            )
        bad = [c for c in self.retriableStatusCodes if not 400 <= c <= 599]
        if bad:
            raise ValueError(f"retriableStatusCodes must be 400-599, got {bad}")
        return self


class RetryPolicyDoc(Strict):
    """Retries beyond what Gateway API's ``retry`` field says: conditions, per-try timeout."""

    apiVersion: Literal["gossamer.dev/v1alpha1"]
    kind: Literal["RetryPolicy"]
    metadata: Metadata
    spec: RetryPolicySpec

    def to_retry(self) -> Retry:
        s = self.spec
        base = ms(s.backoff.baseInterval) or 25
        return Retry(
            attempts=s.attempts,
            on=tuple(RetryOn(c) for c in s.retryOn),
            status_codes=tuple(s.retriableStatusCodes),
            per_try_timeout_ms=ms(s.perTryTimeout),
            backoff_base_ms=base,
            backoff_max_ms=ms(s.backoff.maxInterval) or 10 * base,
        )


@dataclass(slots=True)
class ExtensionRefs:
    """The extension resources a route's filters may name, by kind and name."""

    faults: dict[str, Fault] = field(default_factory=dict)
    retries: dict[str, Retry] = field(default_factory=dict)

    def missing(self, origin: Origin, kind: str, name: str, field: str) -> Problem:
        known = list(self.faults if kind == "FaultInjection" else self.retries)
        close = difflib.get_close_matches(name, known, n=1)
        return Problem.at(
            origin,
            "GSM0113",
            f"no {kind} named `{name}`",
            field=field,
            hint=f"did you mean `{close[0]}`?"
            if close
            else f"declare a {kind} (apiVersion gossamer.dev/v1alpha1) named `{name}`",
        )


class OutboundSpec(Strict):
    mode: Literal["AllowAny", "RegistryOnly"] = "AllowAny"


class AccessLogSpec(Strict):
    enabled: bool = True
    maxSizeKB: int = Field(default=10_240, ge=64, le=10_485_760)
    maxFiles: int = Field(default=3, ge=1, le=100)
    samplePercent: float = Field(default=100.0, ge=0, le=100)
    sink: Literal["File", "Grpc"] = "File"


class PrometheusSpec(Strict):
    url: str

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(
                f"`{value}` is not an http(s) URL; give Prometheus' base URL, "
                "e.g. http://127.0.0.1:9090"
            )
        return value.rstrip("/")


class TelemetrySpec(Strict):
    edgeMetrics: bool = True
    prometheus: PrometheusSpec | None = None


class CollectorSpec(Strict):
    host: Hostname
    port: int = Field(default=4317, ge=1, le=65535)


class TracingSpec(Strict):
    collector: CollectorSpec
    samplePercent: float = Field(default=100.0, ge=0, le=100)


class MeshSpec(Strict):
    tracing: TracingSpec | None = None
    accessLog: AccessLogSpec = Field(default_factory=AccessLogSpec)
    telemetry: TelemetrySpec = Field(default_factory=TelemetrySpec)
    defaultRequestTimeout: str = "15s"
    connectTimeout: str = "1s"
    outboundTrafficPolicy: OutboundSpec = Field(default_factory=OutboundSpec)

    _durations = field_validator("defaultRequestTimeout", "connectTimeout")(check_duration)

    @field_validator("connectTimeout")
    @classmethod
    def _positive(cls, value: str) -> str:
        if ms(value) == 0:
            raise ValueError("connectTimeout must be longer than 0s")
        return value


class MeshDoc(Strict):
    """Mesh-wide settings. At most one per mesh; without one, the defaults apply."""

    apiVersion: Literal["gossamer.dev/v1alpha1"]
    kind: Literal["Mesh"]
    metadata: Metadata
    spec: MeshSpec = Field(default_factory=MeshSpec)

    def to_settings(self, origin: Origin) -> MeshSettings:
        s = self.spec
        return MeshSettings(
            default_request_timeout_ms=ms(s.defaultRequestTimeout) or 0,
            connect_timeout_ms=ms(s.connectTimeout) or 1000,
            outbound_policy=OutboundPolicy(s.outboundTrafficPolicy.mode),
            tracing=TracingSettings(
                s.tracing.collector.host, s.tracing.collector.port, s.tracing.samplePercent
            )
            if s.tracing
            else None,
            access_log=AccessLogSettings(
                enabled=s.accessLog.enabled,
                max_bytes=s.accessLog.maxSizeKB * 1024,
                max_files=s.accessLog.maxFiles,
                sample_percent=s.accessLog.samplePercent,
                sink=s.accessLog.sink.lower(),
            ),
            telemetry=TelemetrySettings(
                edge_metrics=s.telemetry.edgeMetrics,
                prometheus_url=s.telemetry.prometheus.url if s.telemetry.prometheus else "",
            ),
            origin=origin,
        )


class OriginateSpec(Strict):
    mode: Literal["Originate"] = "Originate"
    sni: Hostname | None = None
    caFile: str | None = None


class ExternalPortSpec(Strict):
    name: Name | None = None
    port: int = Field(ge=1, le=65535)
    protocol: Literal["http", "tcp"] = "http"
    targetPort: int | None = Field(default=None, ge=1, le=65535)
    tls: OriginateSpec | None = None


class ExternalServiceSpec(Strict):
    hosts: list[Hostname] = Field(min_length=1, max_length=16)
    ports: list[ExternalPortSpec] = Field(min_length=1, max_length=16)
    addresses: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("hosts")
    @classmethod
    def _no_wildcards(cls, hosts: list[str]) -> list[str]:
        if any(h.startswith("*") for h in hosts):
            raise ValueError("wildcard hosts are not supported for ExternalServices")
        return hosts

    @field_validator("addresses")
    @classmethod
    def _ips(cls, addresses: list[str]) -> list[str]:
        for a in addresses:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise ValueError(f"`{a}` is not an IP address") from None
        return addresses

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, ports: list[ExternalPortSpec]) -> list[ExternalPortSpec]:
        numbers = [p.port for p in ports]
        if len(set(numbers)) != len(numbers):
            raise ValueError("each port may be listed once")
        return ports


class ExternalServiceDoc(Strict):
    """A destination outside the mesh that apps reach by name through their sidecar."""

    apiVersion: Literal["gossamer.dev/v1alpha1"]
    kind: Literal["ExternalService"]
    metadata: Metadata
    spec: ExternalServiceSpec

    def to_model(self, origin: Origin, base_dir: str) -> ExternalService:
        return ExternalService(
            name=self.metadata.name,
            hosts=tuple(self.spec.hosts),
            ports=tuple(
                ExternalPort(
                    port=p.port,
                    protocol=Protocol(p.protocol),
                    target_port=p.targetPort or p.port,
                    tls=TLSOrigination(
                        sni=p.tls.sni or self.spec.hosts[0],
                        ca_file=relative_to(base_dir, p.tls.caFile or ""),
                    )
                    if p.tls
                    else None,
                )
                for p in self.spec.ports
            ),
            addresses=tuple(self.spec.addresses),
            origin=origin,
        )
