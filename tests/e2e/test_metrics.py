"""Istio-compatible request metrics from real traffic: exact counts on /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

from meshkit import ECHO, free_port, get_via, workload

from gossamer.api import Source, load_config
from gossamer.model import MeshState, place, sequential_ports
from gossamer.telemetry import Totals, collect_once, exposition


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
    source_edge = {**edge, "reporter": "source"}
    deadline = time.monotonic() + 20  # Envoy flushes histograms every 5 s
    while True:
        text = _metrics(mesh.api)
        seen = [
            (
                {
                    code: _value(text, "istio_requests_total", response_code=code, **labels)
                    for code in ("200", "503")
                },
                _value(text, "istio_request_duration_milliseconds_count", **labels),
            )
            for labels in (edge, source_edge)
        ]
        # Both reporters: the receiving sidecar's and the calling sidecar's.
        if seen == [({"200": 463, "503": 37}, 500)] * 2:
            break
        assert time.monotonic() < deadline, (seen, text[-2000:])
        time.sleep(0.5)
    # Istio's millisecond buckets, cumulative, ending at +Inf with every request.
    assert 'le="1"' in text and 'le="3600000"' in text
    assert _value(text, "istio_request_duration_milliseconds_bucket", le="+Inf", **edge) == 500
    assert "# TYPE istio_requests_total counter" in text
    assert _value(text, "gossamer_telemetry_failed_scrapes_total") == 0
    # The service graph shows the edge with its error share (37 of 500).
    graph = mesh.cli("graph", "-o", "json", "--window", "600")
    assert graph.returncode == 0, graph.stderr
    [edge] = [e for e in json.loads(graph.stdout)["edges"] if e["destination"] == "orders"]
    assert edge["source"] == "client" and edge["error_percent"] == 7.4
    assert edge["requests_per_second"] > 0 and edge["health"] == "degraded"
    assert edge["p50_ms"] is not None
    dot = mesh.cli("graph", "-o", "dot")
    assert '"workload/client" -> "service/orders"' in dot.stdout
    top = mesh.cli("top", "--once", "--window", "600")
    assert top.returncode == 0 and "client" in top.stdout and "7.4" in top.stdout


def _admin_stat(admin_port: int, name: str) -> int:
    query = urllib.parse.quote(f"^{re.escape(name)}$")
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter={query}") as r:
        line = r.read().decode().strip()
    return int(line.rsplit(": ", 1)[1])


def test_database_bytes_are_attributed_to_the_calling_workload(mesh_factory: Any) -> None:
    postgres = json.dumps(
        {
            "apiVersion": "gossamer.dev/v1alpha1",
            "kind": "ExternalService",
            "metadata": {"name": "postgres"},
            "spec": {
                "hosts": ["db.internal"],
                "addresses": ["127.0.0.1"],
                "ports": [{"port": 5432, "protocol": "tcp"}],
            },
        }
    )
    text = "\n---\n".join(
        [
            workload("orders", port=None, command=["sleep", "100000"]),
            workload("billing", port=None, command=["sleep", "100000"]),
            postgres,
        ]
    )
    mesh = mesh_factory(text + "\n", "--telemetry-interval", "1")
    orders = mesh.instance("orders-0")
    [local] = [t["local_port"] for t in orders["outbound_tcp_ports"] if t["service"] == "postgres"]
    for i in range(3):
        out = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(local),
                "-U",
                "postgres",
                "-d",
                "test",
                "-Atc",
                f"select repeat('x', {1000 * (i + 1)})",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "x" * (1000 * (i + 1))
    prefix = "tcp.outbound|5432|tcp|postgres."
    sent = _admin_stat(orders["admin_port"], prefix + "downstream_cx_rx_bytes_total")
    received = _admin_stat(orders["admin_port"], prefix + "downstream_cx_tx_bytes_total")
    assert received > 6000  # the three answers alone are 6000 bytes of x
    edge = {"reporter": "source", "source_workload": "orders", "destination_service": "postgres"}
    deadline = time.monotonic() + 20
    while True:
        text = _metrics(mesh.api)
        seen = (
            _value(text, "istio_tcp_sent_bytes_total", **edge),
            _value(text, "istio_tcp_received_bytes_total", **edge),
            _value(text, "istio_tcp_connections_opened_total", **edge),
            _value(text, "istio_tcp_connections_closed_total", **edge),
        )
        if seen == (sent, received, 3, 3):
            break
        assert time.monotonic() < deadline, (seen, sent, received)
        time.sleep(0.5)
    # billing made no call: nothing is attributed to it.
    assert _value(text, "istio_tcp_sent_bytes_total", source_workload="billing") == 0


def test_a_restarted_sidecar_neither_loses_nor_repeats_counts(mesh_factory: Any) -> None:
    echo = [sys.executable, str(ECHO)]
    text = "\n---\n".join(
        [
            workload("client", port=None, command=["sleep", "100000"]),
            workload("orders", replicas=2, command=echo),
        ]
    )
    mesh = mesh_factory(text + "\n", "--telemetry-interval", "1")
    proxy = mesh.instance("client-0")["outbound_http_port"]
    edge = {"reporter": "destination", "source_workload": "client", "response_code": "200"}

    def total_after(expected: float) -> str:
        deadline = time.monotonic() + 20
        while True:
            text = _metrics(mesh.api)
            if _value(text, "istio_requests_total", **edge) == expected:
                return text
            assert time.monotonic() < deadline, _value(text, "istio_requests_total", **edge)
            time.sleep(0.3)

    for _ in range(100):
        assert get_via(proxy, "http://orders/")[0] == 200
    total_after(100)
    # One serving sidecar dies; the supervisor restarts it with its counters at zero.
    victim = mesh.instance("orders-0")
    os.kill(victim["envoy_pid"], signal.SIGKILL)
    mesh.wait_for(
        lambda s: any(
            i["name"] == "orders-0" and i["envoy_restarts"] == 1 and i["proxy"]["synced"]
            for i in s["instances"]
        ),
        what="orders-0's sidecar back",
    )
    sent = 0
    deadline = time.monotonic() + 30
    while sent < 100:  # calls that hit the restarting sidecar are retried by the test
        assert time.monotonic() < deadline
        if get_via(proxy, "http://orders/")[0] == 200:
            sent += 1
    text = total_after(200)
    assert _value(text, "istio_requests_total", **edge) == 200


def test_a_failed_scrape_is_counted_and_drops_no_other_proxys_data(mesh_factory: Any) -> None:
    echo = [sys.executable, str(ECHO)]
    text = (
        "\n---\n".join(
            [
                workload("client", port=None, command=["sleep", "100000"]),
                workload("orders", command=echo),
            ]
        )
        + "\n"
    )
    mesh = mesh_factory(text)
    proxy = mesh.instance("client-0")["outbound_http_port"]
    for _ in range(10):
        assert get_via(proxy, "http://orders/")[0] == 200
    config, problems = load_config([Source("mesh.yaml", text)])
    assert config is not None, problems
    state = MeshState(config, place(config, None, sequential_ports(40000)))
    orders = mesh.instance("orders-0")
    totals = Totals()
    dead_port = free_port()  # nothing listens there: a proxy that disappeared
    asyncio.run(
        collect_once(
            state,
            {"orders-0": (orders["admin_port"], orders["envoy_pid"]), "client-0": (dead_port, 1)},
            totals,
        )
    )
    assert totals.failed_scrapes == 1
    out = exposition(totals)
    assert (
        _value(out, "istio_requests_total", reporter="destination", source_workload="client") == 10
    )
    assert "gossamer_telemetry_failed_scrapes_total 1" in out


def test_response_flags_come_from_envoy_and_split_the_counts(mesh_factory: Any) -> None:
    """Envoy's statistics carry no response flags: flagged requests reach the control
    plane over the access log service and move into their own series, exactly."""
    echo = [sys.executable, str(ECHO)]
    fault = {
        "apiVersion": "gossamer.dev/v1alpha1",
        "kind": "FaultInjection",
        "metadata": {"name": "abort"},
        "spec": {"abort": {"httpStatus": 503, "percent": 100}},
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "orders"},
        "spec": {
            "parentRefs": [{"kind": "Service", "group": "", "name": "orders", "port": 80}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/fault"}}],
                    "filters": [
                        {
                            "type": "ExtensionRef",
                            "extensionRef": {
                                "group": "gossamer.dev",
                                "kind": "FaultInjection",
                                "name": "abort",
                            },
                        }
                    ],
                    "backendRefs": [{"name": "orders", "port": 80}],
                },
                {"backendRefs": [{"name": "orders", "port": 80}]},
            ],
        },
    }
    text = "\n---\n".join(
        [
            workload("client", port=None, command=["sleep", "100000"]),
            workload("orders", version="v1", command=echo),
            json.dumps(route),
            json.dumps(fault),
        ]
    )
    mesh = mesh_factory(text + "\n", "--telemetry-interval", "1")
    proxy = mesh.instance("client-0")["outbound_http_port"]
    sent: dict[tuple[str, int], int] = {}
    for i in range(60):
        path = ("/ok", "/fault", "/reset")[i % 3]
        status, _ = get_via(proxy, f"http://orders{path}")
        sent[(path, status)] = sent.get((path, status), 0) + 1
    assert sent == {("/ok", 200): 20, ("/fault", 503): 20, ("/reset", 503): 20}, sent
    edge = {"source_workload": "client", "destination_service": "orders"}
    want = {
        # The caller's fault filter answered: no statistic counted these.
        ("source", "503", "FI"): 20,
        # The receiving sidecar saw the app close the connection (upstream
        # connection termination); the caller only saw a 503 from it.
        ("destination", "503", "UC"): 20,
        ("source", "503", "-"): 20,
        ("destination", "503", "-"): 0,
        ("source", "200", "-"): 20,
        ("destination", "200", "-"): 20,
    }
    deadline = time.monotonic() + 20
    while True:
        text = _metrics(mesh.api)
        seen = {
            (reporter, code, flags): _value(
                text,
                "istio_requests_total",
                reporter=reporter,
                response_code=code,
                response_flags=flags,
                **edge,
            )
            for reporter, code, flags in want
        }
        if seen == want:
            break
        assert time.monotonic() < deadline, (seen, text[-3000:])
        time.sleep(0.5)
