"""Telemetry: Envoy statistics scraped from every proxy, turned into Istio's metrics."""

from gossamer.telemetry._aggregate import Sample, Totals, edge_series, exposition, parse
from gossamer.telemetry._collect import collect_once
from gossamer.telemetry._graph import HealthThresholds, dot, graph, quantile
from gossamer.telemetry._store import Store

__all__ = [
    "HealthThresholds",
    "Sample",
    "Store",
    "Totals",
    "collect_once",
    "dot",
    "edge_series",
    "exposition",
    "graph",
    "parse",
    "quantile",
]
