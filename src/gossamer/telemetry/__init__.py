"""Telemetry: Envoy statistics scraped from every proxy, turned into Istio's metrics."""

from gossamer.telemetry._aggregate import (
    FlaggedCounts,
    Sample,
    Totals,
    edge_series,
    exposition,
    flagged_counts,
    parse,
)
from gossamer.telemetry._collect import collect_once
from gossamer.telemetry._graph import HealthThresholds, dot, graph, quantile
from gossamer.telemetry._prometheus import PrometheusError, window_increases
from gossamer.telemetry._store import Store

__all__ = [
    "FlaggedCounts",
    "HealthThresholds",
    "PrometheusError",
    "Sample",
    "Store",
    "Totals",
    "collect_once",
    "dot",
    "edge_series",
    "exposition",
    "flagged_counts",
    "graph",
    "parse",
    "quantile",
    "window_increases",
]
