"""Istio-compatible request metrics from real traffic: exact counts on /metrics."""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from typing import Any

from meshkit import ECHO, get_via, workload


def _metrics(api: str) -> str:
    with urllib.request.urlopen(api + "/metrics", timeout=10) as r:
        return r.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_request_counts_and_durations_are_exact(mesh_factory: Any) -> None:
    echo = [sys.executable, str(ECHO)]
    text = "\n---\n".join(
        [
            workload("client", port=None, command=["sleep", "100000"]),
            workload("orders", replicas=2, version="v1", command=echo),
        ]
    )
    mesh = mesh_factory(text + "\n", "--telemetry-interval", "1")
    proxy = mesh.instance("client-0")["outbound_http_port"]
    sent = {"200": 0, "503": 0}
    for i in range(500):
        path = "/status/503" if i % 13 == 5 and sent["503"] < 37 else "/ok"
        status, _ = get_via(proxy, f"http://orders{path}")
        sent[str(status)] += 1
    assert sent == {"200": 463, "503": 37}
    edge = {
        "reporter": "destination",
        "source_workload": "client",
        "destination_service": "orders",
        "destination_workload": "orders",
        "destination_version": "v1",
    }
    deadline = time.monotonic() + 20  # Envoy flushes histograms every 5 s
    while True:
        text = _metrics(mesh.api)
        counts = {
            code: _value(text, "istio_requests_total", response_code=code, **edge)
            for code in ("200", "503")
        }
        histogram = _value(text, "istio_request_duration_milliseconds_count", **edge)
        if counts == {"200": 463, "503": 37} and histogram == 500:
            break
        assert time.monotonic() < deadline, (counts, histogram, text[-2000:])
        time.sleep(0.5)
    # Istio's millisecond buckets, cumulative, ending at +Inf with every request.
    assert 'le="1"' in text and 'le="3600000"' in text
    assert _value(text, "istio_request_duration_milliseconds_bucket", le="+Inf", **edge) == 500
    assert "# TYPE istio_requests_total counter" in text
    assert _value(text, "gossamer_telemetry_failed_scrapes_total") == 0
