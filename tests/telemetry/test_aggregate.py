"""Telemetry's pure parts: parsing Envoy's text format, counter resets, quantiles, graph."""

from __future__ import annotations

import pytest

from gossamer.api import Source, load_config
from gossamer.telemetry import HealthThresholds, Totals, dot, exposition, graph, parse, quantile

MESH = """
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: client}
spec: {command: [sleep, "1"]}
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: orders}
spec: {ports: [{port: 80}], command: [sleep, "1"]}
"""


def test_parse_keeps_labels_and_counts_malformed_lines() -> None:
    text = (
        "# TYPE envoy_x counter\n"
        'envoy_vhost_vcluster_upstream_rq{envoy_response_code="200",'
        'envoy_virtual_cluster="client~orders",envoy_virtual_host="inbound"} 12\n'
        "not a metric line at all {\n"
        "envoy_y 1.5\n"
    )
    samples, bad = parse(text)
    assert bad == 1
    assert samples[0].labels["envoy_virtual_cluster"] == "client~orders"
    assert samples[0].value == 12 and samples[1].value == 1.5


def test_a_restarted_proxy_never_makes_a_counter_go_down() -> None:
    totals = Totals()
    key = ("istio_requests_total", (("response_code", "200"),))
    totals.add("orders-0", {key: 10})
    totals.add("orders-1", {key: 5})
    totals.add("orders-0", {key: 14})  # +4
    totals.add("orders-0", {key: 3})  # restarted: counts from 0 again, +3
    assert totals.series[key] == 10 + 5 + 4 + 3
    assert 'istio_requests_total{response_code="200"} 22' in exposition(totals)


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 6.25), (0.9, 15.0), (0.0, 0.0)],
)
def test_quantile_interpolates_like_prometheus(q: float, expected: float) -> None:
    buckets = [(5.0, 40.0), (10.0, 80.0), (20.0, 100.0), (float("inf"), 100.0)]
    assert quantile(q, buckets) == pytest.approx(expected)
    assert quantile(0.5, []) is None


def test_graph_edges_rates_errors_and_health() -> None:
    config, problems = load_config([Source("mesh.yaml", MESH)])
    assert config is not None, problems
    base = (
        ("destination_service", "orders"),
        ("reporter", "destination"),
        ("source_workload", "client"),
    )

    def series(ok: float, failed: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            ("istio_requests_total", (*base, ("response_code", "200"))): ok,
            ("istio_requests_total", (*base, ("response_code", "503"))): failed,
            ("istio_request_duration_milliseconds_bucket", (*base, ("le", "5"))): ok + failed,
            ("istio_request_duration_milliseconds_bucket", (*base, ("le", "+Inf"))): ok + failed,
        }

    data = graph(config, series(100, 0), series(563, 37), 10.0)
    [edge] = data["edges"]
    assert edge["source"] == "client" and edge["destination"] == "orders"
    assert edge["requests_per_second"] == 50.0
    assert edge["error_percent"] == 7.4
    assert edge["health"] == "degraded"
    assert edge["p50_ms"] == pytest.approx(2.5)
    orders = next(n for n in data["nodes"] if n["id"] == "service/orders")
    assert orders["health"] == "degraded"
    assert HealthThresholds().health(25.0, 10) == "failure"
    assert '"workload/client" -> "service/orders"' in dot(data)
    assert next(n for n in data["nodes"] if n["id"] == "workload/orders")["health"] == "idle"


def test_the_shipped_grafana_dashboard_queries_only_metrics_we_export() -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads(
        (Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text()
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) == 6
    used = {m for e in exprs for m in re.findall(r"\b(istio_[a-z_]+)", e)}
    exported = {
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
    }
    assert used <= exported


def test_a_new_process_epoch_counts_from_zero_even_above_the_old_value() -> None:
    totals = Totals()
    key = ("istio_requests_total", (("response_code", "200"),))
    totals.add("orders-0", {key: 50}, epoch=100)
    # Restarted (new pid) and already past 50 by its first scrape: all 60 are new.
    totals.add("orders-0", {key: 60}, epoch=200)
    assert totals.series[key] == 110
    totals.add("orders-0", {key: 65}, epoch=200)
    assert totals.series[key] == 115
