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


@pytest.fixture
def prometheus(tmp_path: Path) -> Any:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed; `make test` installs Debian's package"
    procs: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> int:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: gossamer\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        procs.append(
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

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


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
