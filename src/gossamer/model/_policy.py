"""Traffic policy: how callers treat a service's endpoints (circuit breaking, outlier
detection, load balancing, locality, health checks) and how its responses are compressed.
Attached to a service (or a gateway, for compression) by ``targetRefs``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gossamer.model._origin import Origin


class LoadBalancer(enum.Enum):
    """How a caller picks one of a service's endpoints."""

    ROUND_ROBIN = "RoundRobin"
    """Each endpoint in turn."""
    LEAST_REQUEST = "LeastRequest"
    """The one with fewer requests in flight, of two picked at random."""
    RANDOM = "Random"
    """Any, at random."""
    RING_HASH = "RingHash"
    """Consistent hashing on a ring: the same hash key goes to the same endpoint."""
    MAGLEV = "Maglev"
    """Consistent hashing with Maglev's table: faster, less stable on change."""

    @property
    def hashes(self) -> bool:
        return self in (LoadBalancer.RING_HASH, LoadBalancer.MAGLEV)


@dataclass(frozen=True, slots=True)
class HashKey:
    """What a consistent-hash load balancer hashes: one of these."""

    header: str | None = None
    cookie: str | None = None
    cookie_ttl_ms: int | None = None
    source_ip: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    """Limits (circuit breaking) and connection handling toward a service."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None
    idle_timeout_ms: int | None = None
    max_requests_per_connection: int | None = None
    http2: bool = False


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Eject endpoints that keep failing, for a while, then let them back."""

    consecutive_5xx: int | None = 5
    consecutive_gateway_errors: int | None = None
    interval_ms: int = 10_000
    base_ejection_ms: int = 30_000
    max_ejection_percent: int = 10


@dataclass(frozen=True, slots=True)
class ZoneShare:
    """From callers in ``from_zone``, send these percentages to these zones."""

    from_zone: str
    to: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Locality:
    prefer_local: bool = True
    """Callers use endpoints in their own zone; others only when the local ones fail."""
    distribute: tuple[ZoneShare, ...] = ()
    """Weighted spread over zones instead of strict preference, per caller zone."""


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active health checking by every caller; ``http_path`` None means a TCP connect."""

    http_path: str | None = None
    interval_ms: int = 5_000
    timeout_ms: int = 1_000
    unhealthy_threshold: int = 2
    healthy_threshold: int = 1


class Algorithm(enum.Enum):
    """Compression algorithms, by their Content-Encoding names."""

    GZIP = "gzip"
    """Universal."""
    BROTLI = "br"
    """Smaller than gzip for text; every current browser accepts it."""
    ZSTD = "zstd"
    """Fast at a similar ratio; newer clients."""


@dataclass(frozen=True, slots=True)
class Compression:
    algorithms: tuple[Algorithm, ...] = (Algorithm.GZIP,)
    min_content_length: int = 1024
    content_types: tuple[str, ...] = ()
    """Empty: Envoy's defaults (text, JSON, JavaScript, XML and the like)."""
    decompress_requests: bool = False


class PolicyTargetKind(enum.Enum):
    """What a TrafficPolicy attaches to."""

    SERVICE = "Service"
    """Everything callers do toward the service, and its sidecars' responses."""
    GATEWAY = "Gateway"
    """Response compression at an ingress gateway."""


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    name: str
    target_kind: PolicyTargetKind
    targets: tuple[str, ...]
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    load_balancer: LoadBalancer | None = None
    hash_key: HashKey | None = None
    locality: Locality | None = None
    health_check: HealthCheck | None = None
    compression: Compression | None = None
    origin: Origin | None = field(default=None, compare=False)
