"""A real Prometheus (Debian's package) scraping `/metrics`, with the queries Flagger and
Kiali run, checked against the traffic the test generated."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from meshkit import ECHO, free_port, get_via, workload

FLAGGER_SUCCESS_RATE = (
    'sum(rate(istio_requests_total{reporter="destination",'
    'destination_workload_namespace="default",destination_workload=~"orders",'
    'response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total{reporter="destination",'
    'destination_workload_namespace="default",destination_workload=~"orders"}[1m])) * 100'
)
FLAGGER_DURATION = (
    "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{"
    'reporter="destination",destination_workload_namespace="default",'
    'destination_workload=~"orders"}[1m])) by (le))'
)
KIALI_GRAPH = (
    'sum(rate(istio_requests_total{reporter="destination"}[1m])) by '
    "(source_workload,source_workload_namespace,destination_service_name,"
    "destination_workload,response_code)"
)


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(promql)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        data = json.loads(r.read())
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def _wait(predicate: Any, within_s: float, what: str) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:  # Prometheus still starting
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


class Prometheus:
    """Debian's Prometheus on loopback, scraping one target every second."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def __call__(self, target: str, port: int | None = None) -> int:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed; `make test` installs Debian's package"
        tmp_path = self.tmp_path
        port = port or free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: gossamer\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.procs.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "prometheus.log").open("w"),
            )
        )
        return port

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path)
    yield server
    server.stop()


def test_flagger_and_kiali_queries_see_the_generated_traffic(
    mesh_factory: Any, prometheus: Any
) -> None:
    text = "\n---\n".join(
        [
            workload("client", port=None, command=["sleep", "100000"]),
            workload("orders", replicas=2, command=[sys.executable, str(ECHO)]),
        ]
    )
    mesh = mesh_factory(text + "\n", "--telemetry-interval", "1")
    port = prometheus(mesh.api.removeprefix("http://"))
    _wait(lambda: _query(port, 'up{job="gossamer"} == 1'), 30, "the first scrape")
    proxy = mesh.instance("client-0")["outbound_http_port"]
    # Paced over ~8 s, so Prometheus scrapes the counters while they grow (a rate needs
    # increases between samples, and a series' first sample carries none).
    for i in range(200):
        status, _ = get_via(proxy, "http://orders/status/503" if i % 10 == 3 else "http://orders/")
        assert status in (200, 503)
        time.sleep(0.04)

    def totals() -> dict[str, float] | None:
        rows = _query(port, 'sum by (response_code) (istio_requests_total{reporter="destination"})')
        found = {r["metric"]["response_code"]: float(r["value"][1]) for r in rows}
        return found if found == {"200": 180.0, "503": 20.0} else None

    _wait(totals, 30, "exact totals in Prometheus")
    [rate] = _wait(lambda: _query(port, FLAGGER_SUCCESS_RATE), 20, "Flagger's success rate")
    assert abs(float(rate["value"][1]) - 90.0) < 3.0
    [p99] = _wait(lambda: _query(port, FLAGGER_DURATION), 30, "Flagger's request duration")
    assert 0 < float(p99["value"][1]) < 1000  # milliseconds, loopback
    rows = _query(port, KIALI_GRAPH)
    by_code = {r["metric"]["response_code"]: float(r["value"][1]) for r in rows}
    assert {r["metric"]["source_workload"] for r in rows} == {"client"}
    assert {r["metric"]["destination_service_name"] for r in rows} == {"orders"}
    assert abs(by_code["200"] / by_code["503"] - 9.0) < 1.5


def _graph(mesh: Any, window: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"{mesh.api}/api/v1/graph?window={window}", timeout=20) as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


def _orders_edge(data: dict[str, Any]) -> dict[str, Any]:
    edges: list[dict[str, Any]] = [e for e in data["edges"] if e["destination"] == "orders"]
    [edge] = edges
    assert edge["source"] == "client", data
    return edge


def test_the_graph_reads_the_meshs_prometheus_and_falls_back_when_it_fails(
    mesh_factory: Any, prometheus: Prometheus
) -> None:
    prometheus_port = free_port()
    url = f"http://127.0.0.1:{prometheus_port}"
    mesh_doc = json.dumps(
        {
            "apiVersion": "gossamer.dev/v1alpha1",
            "kind": "Mesh",
            "metadata": {"name": "mesh"},
            "spec": {"telemetry": {"prometheus": {"url": url}}},
        }
    )
    text = "\n---\n".join(
        [
            mesh_doc,
            workload("client", port=None, command=["sleep", "100000"]),
            workload("orders", command=[sys.executable, str(ECHO)]),
        ]
    )
    mesh = mesh_factory(text + "\n", "--telemetry-interval", "1")
    prometheus(mesh.api.removeprefix("http://"), port=prometheus_port)
    _wait(lambda: _query(prometheus_port, 'up{job="gossamer"} == 1'), 30, "the first scrape")
    proxy = mesh.instance("client-0")["outbound_http_port"]

    # One request of each code first, and wait until Prometheus has their series (the
    # histogram's after Envoy's 5 s flush): increase() counts nothing in a first sample.
    assert get_via(proxy, "http://orders/")[0] == 200
    assert get_via(proxy, "http://orders/status/503")[0] == 503
    inf = 'istio_request_duration_milliseconds_bucket{reporter="destination",le="+Inf"}'

    def counts() -> tuple[dict[str, float], float]:
        rows = _query(prometheus_port, 'istio_requests_total{reporter="destination"}')
        buckets = _query(prometheus_port, inf)
        return (
            {r["metric"]["response_code"]: float(r["value"][1]) for r in rows},
            sum(float(r["value"][1]) for r in buckets),
        )

    _wait(lambda: counts() == ({"200": 1.0, "503": 1.0}, 2.0), 30, "the first series")
    # 100 requests, 10 of them 503, paced so Prometheus scrapes while the counters grow.
    for i in range(100):
        status, _ = get_via(proxy, "http://orders/status/503" if i % 10 == 3 else "http://orders/")
        assert status in (200, 503)
        time.sleep(0.04)
    _wait(lambda: counts() == ({"200": 91.0, "503": 11.0}, 102.0), 30, "the totals")

    data = _graph(mesh, 300)
    assert data["source"] == "prometheus" and "warning" not in data, data
    assert data["window_seconds"] == 300
    edge = _orders_edge(data)
    # increase() extrapolates a little past the last sample, alike for both codes.
    from_prometheus = edge["requests_per_second"] * data["window_seconds"]
    assert 98 <= from_prometheus <= 120, edge
    assert abs(edge["error_percent"] - 10.0) < 1.5, edge
    assert 0 < edge["p50_ms"] < 1000 and edge["health"] == "degraded", edge
    assert "service/orders" in {n["id"] for n in data["nodes"]}
    shown = mesh.cli("graph")
    assert shown.returncode == 0 and "from prometheus" in shown.stdout.splitlines()[0], shown
    top = mesh.cli("top", "--once")
    assert top.returncode == 0 and "from prometheus" in top.stdout, top

    # Prometheus gone: the embedded store answers, exact, and says why.
    prometheus.stop()
    data = _graph(mesh, 300)
    assert data["source"] == "embedded", data
    assert data["warning"] == (
        f"cannot connect to Prometheus at {url}: connection refused; showing the embedded store"
    )
    edge = _orders_edge(data)
    embedded = edge["requests_per_second"] * data["window_seconds"]
    assert abs(embedded - 102) < 0.5 and edge["error_percent"] == round(100 * 11 / 102, 3)
    assert embedded - 2 <= from_prometheus <= embedded * 1.2
    shown = mesh.cli("graph")
    first = shown.stdout.splitlines()[0]
    assert "from embedded (warning: cannot connect to Prometheus at" in first, shown
