"""Envoy's per-edge statistics to Istio's standard metrics. Pure: samples in, series out.

Counters from each proxy are turned into deltas before they are added up, so a restarted
Envoy (whose counters start again from zero) never makes a mesh-wide counter go down.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.model import MeshConfig, MeshState
from gossamer.translate import EDGE_SEPARATOR, ISTIO_BUCKETS_MS, SOURCE_HEADER

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]
"""(metric name, sorted labels)."""


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse(text: str) -> tuple[list[Sample], int]:
    """Prometheus text lines to samples; returns (samples, malformed lines skipped)."""
    samples, bad = [], 0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            bad += 1
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            bad += 1
            continue
        samples.append(Sample(name, dict(_LABEL.findall(labels or "")), number))
    return samples, bad


def _workload_labels(config: MeshConfig, workload: str, side: str) -> dict[str, str]:
    w = config.workload(workload)
    gateway = config.gateway(workload.removesuffix(".gateway")) if w is None else None
    name = gateway.name if gateway else workload
    canonical = w.services[0] if w and w.services else name
    return {
        f"{side}_workload": name,
        f"{side}_workload_namespace": "default",
        f"{side}_canonical_service": canonical,
        f"{side}_version": (w.version if w and w.version else "unknown"),
        f"{side}_principal": "unknown",
        f"{side}_app": canonical,
    }


def _destination_base(state: MeshState, workload: str, source: str, service: str) -> dict[str, str]:
    """Labels of a request to ``service``, received by ``workload``, reported by it."""
    return {
        "reporter": "destination",
        **_workload_labels(state.config, source, "source"),
        **_workload_labels(state.config, workload, "destination"),
        "destination_service": service,
        "destination_service_name": service,
        "destination_service_namespace": "default",
        "request_protocol": "http",
        "connection_security_policy": "none",
    }


def edge_series(state: MeshState, proxy: str, samples: Iterable[Sample]) -> dict[SeriesKey, float]:
    """One proxy's inbound edge statistics as Istio series (reporter="destination")."""
    instance = state.instance(proxy)
    if instance is None:
        return {}
    out: dict[SeriesKey, float] = {}
    for s in samples:
        edge = s.labels.get("envoy_virtual_cluster", "")
        if EDGE_SEPARATOR not in edge or s.labels.get("envoy_virtual_host") != "inbound":
            continue
        source, service = edge.split(EDGE_SEPARATOR, 1)
        base = _destination_base(state, instance.workload, source, service)
        _add_request_sample(out, s, "envoy_vhost_vcluster_upstream_rq", base)
    return out


def _add_request_sample(
    out: dict[SeriesKey, float], s: Sample, envoy_prefix: str, base: Mapping[str, str]
) -> None:
    """An Envoy request counter (by code) or latency histogram sample, as Istio's series."""
    if s.name == envoy_prefix and "envoy_response_code" in s.labels:
        labels = {**base, "response_code": s.labels["envoy_response_code"], "response_flags": "-"}
        out[("istio_requests_total", _key(labels))] = s.value
    elif s.name == f"{envoy_prefix}_time_bucket":
        labels = {**base, "le": s.labels.get("le", "")}
        out[("istio_request_duration_milliseconds_bucket", _key(labels))] = s.value
    elif s.name in (f"{envoy_prefix}_time_sum", f"{envoy_prefix}_time_count"):
        suffix = s.name.rsplit("_", 1)[1]
        out[(f"istio_request_duration_milliseconds_{suffix}", _key(base))] = s.value


def _source_workload(state: MeshState, proxy: str) -> str | None:
    """The workload (or gateway) name a proxy reports as source; None if unknown."""
    instance = state.instance(proxy) if proxy else None
    if instance is not None:
        return instance.workload
    if proxy and state.config.gateway(proxy.removesuffix(".gateway")) is not None:
        return proxy
    return None


def _source_base(state: MeshState, source: str, service: str) -> dict[str, str]:
    """Labels of a request from ``source`` to ``service``, reported by the caller. The
    destination workload is named when one workload backs the service, else "unknown"
    (the caller cannot tell which one answered)."""
    svc = next((s for s in state.config.services() if s.name == service), None)
    if svc is not None and len(svc.workloads) == 1:
        destination = _workload_labels(state.config, svc.workloads[0], "destination")
    else:
        destination = {
            "destination_workload": "unknown",
            "destination_workload_namespace": "default",
            "destination_canonical_service": service,
            "destination_version": "unknown",
            "destination_principal": "unknown",
            "destination_app": service,
        }
    return {
        "reporter": "source",
        **_workload_labels(state.config, source, "source"),
        **destination,
        "destination_service": service,
        "destination_service_name": service,
        "destination_service_namespace": "default",
        "request_protocol": "http",
        "connection_security_policy": "none",
    }


def _outbound_service(state: MeshState, cluster: str) -> str | None:
    """The HTTP service an outbound cluster (``outbound|<port>||<svc>``) leads to."""
    parts = cluster.split("|")
    if len(parts) != 4 or parts[0] != "outbound":
        return None
    if not any(s.name == parts[3] for s in state.config.services()):
        return None
    return None if _is_tcp(state, parts[3]) else parts[3]


def source_series(
    state: MeshState, proxy: str, samples: Iterable[Sample]
) -> dict[SeriesKey, float]:
    """One proxy's outbound HTTP statistics, per service it called, as Istio series with
    reporter="source"."""
    source = _source_workload(state, proxy)
    if source is None:
        return {}
    out: dict[SeriesKey, float] = {}
    for s in samples:
        service = _outbound_service(state, s.labels.get("envoy_cluster_name", ""))
        if service is not None:
            _add_request_sample(
                out, s, "envoy_cluster_upstream_rq", _source_base(state, source, service)
            )
    return out


PRE_ROUTER_FLAGS = frozenset({"NR", "FI", "RL", "UAEX", "RLSE", "IH", "DPE", "NFCF", "OM", "SI"})
"""Flags of requests answered before Envoy's router: its statistics never counted them."""


@dataclass(frozen=True, slots=True)
class FlaggedCounts:
    """Flagged requests from one batch of access-log entries, as ``istio_requests_total``
    series with their ``response_flags``. ``counted``: the router also counted these in
    its statistics (under ``response_flags="-"``), so they move out of that series;
    ``uncounted``: no statistic has them, so they are added."""

    counted: dict[SeriesKey, float] = field(default_factory=dict)
    uncounted: dict[SeriesKey, float] = field(default_factory=dict)


def flagged_counts(state: MeshState, entries: Iterable[Mapping[str, Any]]) -> FlaggedCounts:
    """Access-log entries (the ALS flag log's) to per-series counts."""
    out = FlaggedCounts()
    services = {s.name: s for s in state.config.services()}
    for e in entries:
        flags = str(e.get("response_flags") or "-")
        if flags == "-" or e.get("kind") != "http":
            continue
        code = int(e.get("response_code") or 0)
        counted = code != 0 and not PRE_ROUTER_FLAGS.intersection(flags.split(","))
        host = str(e.get("authority") or "").rsplit(":", 1)[0]
        node = str(e.get("node", ""))
        if e.get("direction") == "inbound":
            if not state.config.settings.telemetry.edge_metrics:
                continue  # no reporter="destination" series at all
            instance = state.instance(node)
            workload = state.config.workload(instance.workload) if instance else None
            source = dict(e.get("request_headers") or {}).get(SOURCE_HEADER)
            if workload is None or not workload.services or (counted and not source):
                continue
            own = workload.services
            service = own[0] if len(own) == 1 else host if host in own else None
            if service is None:
                continue
            base = _destination_base(state, workload.name, source or "unknown", service)
        else:
            caller = _source_workload(state, node)
            if caller is None:
                continue
            service = _outbound_service(state, str(e.get("upstream_cluster") or ""))
            if service is None and not counted:
                service = host if host in services and not _is_tcp(state, host) else "unknown"
            if service is None:
                continue
            base = _source_base(state, caller, service)
        key = (
            "istio_requests_total",
            _key({**base, "response_code": str(code), "response_flags": flags}),
        )
        target = out.counted if counted else out.uncounted
        target[key] = target.get(key, 0.0) + 1
    return out


_TCP = {
    "envoy_tcp_downstream_cx_rx_bytes_total": "istio_tcp_sent_bytes_total",
    "envoy_tcp_downstream_cx_tx_bytes_total": "istio_tcp_received_bytes_total",
    "envoy_tcp_downstream_cx_total": "istio_tcp_connections_opened_total",
}


def tcp_series(state: MeshState, proxy: str, samples: Iterable[Sample]) -> dict[SeriesKey, float]:
    """One proxy's outbound TCP statistics (per TCP service it calls) as Istio series,
    reporter="source": bytes the app sent and received, connections opened and closed."""
    instance = state.instance(proxy)
    if instance is None:
        return {}
    source = _workload_labels(state.config, instance.workload, "source")
    out: dict[SeriesKey, float] = {}
    for s in samples:
        if s.name in _TCP:
            prefix = s.labels.get("envoy_tcp_prefix", "")
            parts = prefix.split("|")  # outbound|<port>|tcp|<service>
            if len(parts) != 4 or parts[0] != "outbound":
                continue
            service, metric = parts[3], _TCP[s.name]
        elif s.name == "envoy_cluster_upstream_cx_destroy":
            parts = s.labels.get("envoy_cluster_name", "").split("|")  # outbound|<port>||<svc>
            if len(parts) != 4 or parts[0] != "outbound" or not _is_tcp(state, parts[3]):
                continue
            service, metric = parts[3], "istio_tcp_connections_closed_total"
        else:
            continue
        labels = {
            "reporter": "source",
            **source,
            "destination_service": service,
            "destination_service_name": service,
            "destination_service_namespace": "default",
            "destination_workload": service,
            "destination_workload_namespace": "default",
            "request_protocol": "tcp",
            "connection_security_policy": "none",
            "response_flags": "-",
        }
        key = (metric, _key(labels))
        out[key] = out.get(key, 0.0) + s.value
    return out


def _is_tcp(state: MeshState, service: str) -> bool:
    return any(
        not p.protocol.is_http
        for s in state.config.services()
        if s.name == service
        for p in s.ports
    ) or any(
        not p.protocol.is_http
        for e in state.config.external_services
        if e.name == service
        for p in e.ports
    )


def _unflagged(key: SeriesKey) -> SeriesKey:
    name, labels = key
    return name, tuple((k, "-" if k == "response_flags" else v) for k, v in labels)


def _key(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


@dataclass(slots=True)
class Totals:
    """Mesh-wide monotonic series, built from per-proxy counters that may reset."""

    series: dict[SeriesKey, float] = field(default_factory=dict)
    last: dict[tuple[str, SeriesKey], float] = field(default_factory=dict)
    malformed_lines: int = 0
    failed_scrapes: int = 0

    epochs: dict[str, int] = field(default_factory=dict)
    pending_flags: dict[SeriesKey, float] = field(default_factory=dict)
    """Flagged requests the statistics counted, not yet moved out of the "-" series."""
    settled: dict[SeriesKey, float] = field(default_factory=dict)
    """Each "-" series' value after the last settle: it never goes below this again."""

    def add(self, proxy: str, values: Mapping[SeriesKey, float], epoch: int = 0) -> None:
        """``epoch`` identifies the proxy process; a new one restarts its counters from
        zero even when the first values seen are already above the last ones."""
        if self.epochs.get(proxy, epoch) != epoch:
            self.last = {k: v for k, v in self.last.items() if k[0] != proxy}
        self.epochs[proxy] = epoch
        for key, value in values.items():
            previous = self.last.get((proxy, key), 0.0)
            delta = value - previous if value >= previous else value  # reset: starts at 0
            self.last[(proxy, key)] = value
            if delta:
                self.series[key] = self.series.get(key, 0.0) + delta
            else:
                self.series.setdefault(key, 0.0)

    def add_flagged(self, counts: FlaggedCounts) -> None:
        for key, n in counts.uncounted.items():
            self.series[key] = self.series.get(key, 0.0) + n
        for key, n in counts.counted.items():
            self.pending_flags[key] = self.pending_flags.get(key, 0.0) + n

    def settle(self) -> None:
        """Move flagged requests out of their "-" series, as far as the statistics have
        counted them since the last settle (so no exposed counter ever goes down)."""
        for key, n in list(self.pending_flags.items()):
            plain = _unflagged(key)
            room = self.series.get(plain, 0.0) - self.settled.get(plain, 0.0)
            moved = min(n, room)
            if moved <= 0:
                continue
            self.series[plain] -= moved
            self.series[key] = self.series.get(key, 0.0) + moved
            if moved == n:
                del self.pending_flags[key]
            else:
                self.pending_flags[key] = n - moved
        for key, value in self.series.items():
            if key[0] == "istio_requests_total":
                self.settled[key] = value


def exposition(totals: Totals) -> str:
    """Prometheus text format, one block per metric, series sorted for stable output."""
    helps = {
        "istio_requests_total": ("counter", "Requests, by source and destination."),
        "istio_request_duration_milliseconds": (
            "histogram",
            "Request duration in milliseconds, by source and destination.",
        ),
        "istio_tcp_sent_bytes_total": (
            "counter",
            "Bytes sent over TCP, by source and destination.",
        ),
        "istio_tcp_received_bytes_total": (
            "counter",
            "Bytes received over TCP, by source and destination.",
        ),
        "istio_tcp_connections_opened_total": ("counter", "TCP connections opened."),
        "istio_tcp_connections_closed_total": ("counter", "TCP connections closed."),
    }
    lines = []
    by_family: dict[str, list[tuple[SeriesKey, float]]] = {}
    for key, value in totals.series.items():
        family = key[0].removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        by_family.setdefault(family, []).append((key, value))
    for family in sorted(by_family):
        kind, text = helps.get(family, ("untyped", family))
        lines.append(f"# HELP {family} {text}")
        lines.append(f"# TYPE {family} {kind}")
        for (name, labels), value in sorted(by_family[family], key=_bucket_order):
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{rendered}}} {_number(value)}")
    lines.append(f"gossamer_telemetry_malformed_lines_total {totals.malformed_lines}")
    lines.append(f"gossamer_telemetry_failed_scrapes_total {totals.failed_scrapes}")
    return "\n".join(lines) + "\n"


def _bucket_order(item: tuple[SeriesKey, float]) -> tuple[object, ...]:
    (name, labels), _ = item
    le = dict(labels).get("le")
    rest = tuple((k, v) for k, v in labels if k != "le")
    bound = float("inf") if le in (None, "+Inf") else float(le)
    return (rest, name, bound)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


__all__ = [
    "ISTIO_BUCKETS_MS",
    "FlaggedCounts",
    "Sample",
    "Totals",
    "edge_series",
    "exposition",
    "flagged_counts",
    "parse",
    "source_series",
    "tcp_series",
]
