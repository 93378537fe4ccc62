"""Telemetry: Envoy statistics scraped from every proxy, turned into Istio's metrics."""

from gossamer.telemetry._aggregate import Sample, Totals, edge_series, exposition, parse
from gossamer.telemetry._collect import collect_once

__all__ = ["Sample", "Totals", "collect_once", "edge_series", "exposition", "parse"]
