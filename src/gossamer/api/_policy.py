"""``TrafficPolicy`` (gossamer.dev/v1alpha1): resilience, load balancing, locality, health
checks and compression for a service, attached with ``targetRefs`` (Gateway API's policy
attachment). A policy on a Gateway may set only compression."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gossamer.api._common import Metadata, Name, Strict, check_duration, ms
from gossamer.model import (
    Algorithm,
    Compression,
    ConnectionPool,
    HashKey,
    HealthCheck,
    LoadBalancer,
    Locality,
    Origin,
    OutlierDetection,
    PolicyTargetKind,
    TrafficPolicy,
    ZoneShare,
)


class TargetRefSpec(Strict):
    group: Literal["", "core", "gateway.networking.k8s.io"] = ""
    kind: Literal["Service", "Gateway"] = "Service"
    name: Name

    @model_validator(mode="after")
    def _group_fits_kind(self) -> TargetRefSpec:
        if self.kind == "Gateway" and self.group != "gateway.networking.k8s.io":
            raise ValueError("a Gateway target needs group: gateway.networking.k8s.io")
        if self.kind == "Service" and self.group == "gateway.networking.k8s.io":
            raise ValueError('a Service target has group "" (the core API group)')
        return self


class ConnectionPoolSpec(Strict):
    maxConnections: int | None = Field(default=None, ge=1, le=1_000_000)
    maxPendingRequests: int | None = Field(default=None, ge=1, le=1_000_000)
    maxRequests: int | None = Field(default=None, ge=1, le=1_000_000)
    maxRetries: int | None = Field(default=None, ge=1, le=1_000_000)
    idleTimeout: str | None = None
    maxRequestsPerConnection: int | None = Field(default=None, ge=1)
    http2: bool = False

    _idle = field_validator("idleTimeout")(check_duration)

    def to_model(self) -> ConnectionPool:
        return ConnectionPool(
            max_connections=self.maxConnections,
            max_pending_requests=self.maxPendingRequests,
            max_requests=self.maxRequests,
            max_retries=self.maxRetries,
            idle_timeout_ms=ms(self.idleTimeout),
            max_requests_per_connection=self.maxRequestsPerConnection,
            http2=self.http2,
        )


class OutlierSpec(Strict):
    consecutive5xx: int | None = Field(default=5, ge=1, le=1000)
    consecutiveGatewayErrors: int | None = Field(default=None, ge=1, le=1000)
    interval: str = "10s"
    baseEjectionTime: str = "30s"
    maxEjectionPercent: int = Field(default=10, ge=1, le=100)

    _durations = field_validator("interval", "baseEjectionTime")(check_duration)

    @model_validator(mode="after")
    def _positive_times(self) -> OutlierSpec:
        if not ms(self.interval) or not ms(self.baseEjectionTime):
            raise ValueError("interval and baseEjectionTime must be longer than 0s")
        return self

    def to_model(self) -> OutlierDetection:
        return OutlierDetection(
            consecutive_5xx=self.consecutive5xx,
            consecutive_gateway_errors=self.consecutiveGatewayErrors,
            interval_ms=ms(self.interval) or 0,
            base_ejection_ms=ms(self.baseEjectionTime) or 0,
            max_ejection_percent=self.maxEjectionPercent,
        )


class CookieSpec(Strict):
    name: str = Field(min_length=1, max_length=256)
    ttl: str | None = None

    _ttl = field_validator("ttl")(check_duration)


class HashSpec(Strict):
    header: str | None = Field(default=None, min_length=1, max_length=256)
    cookie: CookieSpec | None = None
    sourceIP: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> HashSpec:
        chosen = [x for x in (self.header, self.cookie, self.sourceIP or None) if x]
        if len(chosen) != 1:
            raise ValueError("hash on exactly one of header, cookie or sourceIP")
        return self


class LoadBalancerSpec(Strict):
    type: Literal["RoundRobin", "LeastRequest", "Random", "RingHash", "Maglev"] = "RoundRobin"
    hash: HashSpec | None = None

    @model_validator(mode="after")
    def _hash_needs_hashing_lb(self) -> LoadBalancerSpec:
        hashing = LoadBalancer(self.type).hashes
        if self.hash is not None and not hashing:
            raise ValueError(
                f"a hash key needs a consistent-hash load balancer (RingHash or Maglev), "
                f"not {self.type}"
            )
        if hashing and self.hash is None:
            raise ValueError(f"{self.type} needs a `hash` (header, cookie or sourceIP)")
        return self


class ZoneShareSpec(Strict):
    from_: str = Field(alias="from", min_length=1)
    to: dict[str, int]

    @field_validator("to")
    @classmethod
    def _percentages(cls, to: dict[str, int]) -> dict[str, int]:
        if not to or any(v < 0 for v in to.values()) or sum(to.values()) != 100:
            raise ValueError("`to` maps zones to percentages that add up to 100")
        return to


class LocalitySpec(Strict):
    preferLocal: bool = True
    distribute: list[ZoneShareSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_mode(self) -> LocalitySpec:
        if self.distribute and self.preferLocal:
            raise ValueError("use preferLocal or distribute, not both (set preferLocal: false)")
        return self


class HTTPCheckSpec(Strict):
    path: str = Field(pattern=r"^/", max_length=1024)


class HealthCheckSpec(Strict):
    http: HTTPCheckSpec | None = None
    tcp: dict[str, object] | None = None
    interval: str = "5s"
    timeout: str = "1s"
    unhealthyThreshold: int = Field(default=2, ge=1, le=100)
    healthyThreshold: int = Field(default=1, ge=1, le=100)

    _durations = field_validator("interval", "timeout")(check_duration)

    @model_validator(mode="after")
    def _one_kind(self) -> HealthCheckSpec:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("a health check is either `http: {path: ...}` or `tcp: {}`")
        if self.tcp:
            raise ValueError("`tcp` takes no settings: write `tcp: {}`")
        if not ms(self.interval) or not ms(self.timeout):
            raise ValueError("interval and timeout must be longer than 0s")
        return self


AlgorithmName = Literal["gzip", "br", "zstd"]


def _gzip_only() -> list[AlgorithmName]:
    return ["gzip"]


class CompressionSpec(Strict):
    algorithms: list[AlgorithmName] = Field(default_factory=_gzip_only, min_length=1, max_length=3)
    minContentLength: int = Field(default=1024, ge=0)
    contentTypes: list[str] = Field(default_factory=list, max_length=32)
    decompressRequests: bool = False

    @field_validator("algorithms")
    @classmethod
    def _unique(cls, algorithms: list[str]) -> list[str]:
        if len(set(algorithms)) != len(algorithms):
            raise ValueError("each algorithm may be listed once")
        return algorithms


class TrafficPolicySpec(Strict):
    targetRefs: list[TargetRefSpec] = Field(min_length=1, max_length=16)
    connectionPool: ConnectionPoolSpec | None = None
    outlierDetection: OutlierSpec | None = None
    loadBalancer: LoadBalancerSpec | None = None
    locality: LocalitySpec | None = None
    healthCheck: HealthCheckSpec | None = None
    compression: CompressionSpec | None = None

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> TrafficPolicySpec:
        kinds = {t.kind for t in self.targetRefs}
        if len(kinds) > 1:
            raise ValueError("target either Services or Gateways, not both")
        names = [t.name for t in self.targetRefs]
        if len(set(names)) != len(names):
            raise ValueError("a target is listed twice")
        if kinds == {"Gateway"}:
            set_fields = [
                f
                for f in (
                    "connectionPool",
                    "outlierDetection",
                    "loadBalancer",
                    "locality",
                    "healthCheck",
                )
                if getattr(self, f) is not None
            ]
            if set_fields:
                raise ValueError(f"a policy on a Gateway sets compression only, not {set_fields}")
        return self


class TrafficPolicyDoc(Strict):
    apiVersion: Literal["gossamer.dev/v1alpha1"]
    kind: Literal["TrafficPolicy"]
    metadata: Metadata
    spec: TrafficPolicySpec

    def to_model(self, origin: Origin, base_dir: str) -> TrafficPolicy:
        del base_dir
        s = self.spec
        lb = s.loadBalancer
        hash_key = None
        if lb is not None and lb.hash is not None:
            h = lb.hash
            hash_key = HashKey(
                header=h.header.lower() if h.header else None,
                cookie=h.cookie.name if h.cookie else None,
                cookie_ttl_ms=ms(h.cookie.ttl) if h.cookie else None,
                source_ip=h.sourceIP,
            )
        hc = s.healthCheck
        comp = s.compression
        return TrafficPolicy(
            name=self.metadata.name,
            target_kind=PolicyTargetKind(s.targetRefs[0].kind),
            targets=tuple(t.name for t in s.targetRefs),
            connection_pool=s.connectionPool.to_model() if s.connectionPool else None,
            outlier_detection=s.outlierDetection.to_model() if s.outlierDetection else None,
            load_balancer=LoadBalancer(lb.type) if lb else None,
            hash_key=hash_key,
            locality=Locality(
                prefer_local=s.locality.preferLocal,
                distribute=tuple(
                    ZoneShare(d.from_, tuple(sorted(d.to.items()))) for d in s.locality.distribute
                ),
            )
            if s.locality
            else None,
            health_check=HealthCheck(
                http_path=hc.http.path if hc.http else None,
                interval_ms=ms(hc.interval) or 0,
                timeout_ms=ms(hc.timeout) or 0,
                unhealthy_threshold=hc.unhealthyThreshold,
                healthy_threshold=hc.healthyThreshold,
            )
            if hc
            else None,
            compression=Compression(
                algorithms=tuple(Algorithm(a) for a in comp.algorithms),
                min_content_length=comp.minContentLength,
                content_types=tuple(comp.contentTypes),
                decompress_requests=comp.decompressRequests,
            )
            if comp
            else None,
            origin=origin,
        )


__all__ = ["TrafficPolicyDoc"]
