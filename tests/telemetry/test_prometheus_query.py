"""The graph's series from Prometheus: the queries, their answers as series, the graph they
build, and one clear error for each way Prometheus can fail (against loopback servers)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from gossamer.model import MeshConfig
from gossamer.telemetry import PrometheusError, graph, window_increases
from gossamer.telemetry._prometheus import QUERIES, promql, series_of

EDGE = {"reporter": "destination", "source_workload": "client", "destination_service": "orders"}


def _vector(*rows: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1700000000.123, v]} for m, v in rows],
        },
    }


def test_queries_sum_each_metrics_increase_by_the_labels_the_graph_keys_on() -> None:
    assert promql("istio_requests_total", 60) == (
        "sum by (reporter, source_workload, destination_service, response_code) "
        '(increase(istio_requests_total{reporter="destination"}[60s]))'
    )
    assert promql("istio_request_duration_milliseconds_bucket", 5).endswith(
        '(increase(istio_request_duration_milliseconds_bucket{reporter="destination"}[5s]))'
    )
    assert "le)" in promql("istio_request_duration_milliseconds_bucket", 5)
    assert promql("istio_tcp_sent_bytes_total", 30) == (
        "sum by (reporter, source_workload, destination_service) "
        '(increase(istio_tcp_sent_bytes_total{reporter="source"}[30s]))'
    )
    assert set(QUERIES) == {
        "istio_requests_total",
        "istio_request_duration_milliseconds_bucket",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
    }


def test_an_answer_becomes_series_keyed_by_metric_and_sorted_labels() -> None:
    body = _vector(
        ({**EDGE, "response_code": "200"}, "90.5"),
        ({**EDGE, "response_code": "503"}, "10"),
        ({**EDGE, "response_code": "504"}, "NaN"),  # no data in part of the window
    )
    assert series_of("istio_requests_total", body) == {
        ("istio_requests_total", tuple(sorted({**EDGE, "response_code": "200"}.items()))): 90.5,
        ("istio_requests_total", tuple(sorted({**EDGE, "response_code": "503"}.items()))): 10.0,
    }
    assert series_of("istio_requests_total", _vector()) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "parse error"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "instant vector"),
        (["not", "an", "object"], "not a Prometheus answer"),
        (None, "not a Prometheus answer"),
        (_vector(({"le": "+Inf"}, "many")), "malformed sample"),
        ({"status": "success", "data": {"resultType": "vector", "result": [{}]}}, "malformed"),
    ],
)
def test_anything_but_a_successful_vector_is_a_value_error(body: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        series_of("istio_requests_total", body)


def test_the_increases_build_the_same_graph_as_the_embedded_series() -> None:
    http = {**EDGE, "response_code": "200"}
    errors = {**EDGE, "response_code": "503"}
    answers = {
        "istio_requests_total": _vector((http, "90"), (errors, "10")),
        "istio_request_duration_milliseconds_bucket": _vector(
            ({**EDGE, "le": "1"}, "0"),
            ({**EDGE, "le": "5"}, "100"),
            ({**EDGE, "le": "+Inf"}, "100"),
        ),
        "istio_tcp_sent_bytes_total": _vector(),
        "istio_tcp_received_bytes_total": _vector(),
    }
    increases = {k: v for m, body in answers.items() for k, v in series_of(m, body).items()}
    data = graph(MeshConfig(), {}, increases, 10)
    [edge] = data["edges"]
    assert edge["source"] == "client" and edge["destination"] == "orders"
    assert edge["requests_per_second"] == 10.0 and edge["error_percent"] == 10.0
    assert 1 < edge["p50_ms"] < 5 and edge["health"] == "degraded"
    assert data["window_seconds"] == 10


# -- against loopback servers ------------------------------------------------------------


Handler = Callable[[web.Request], Any]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Any]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/prom/api/v1/query", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/prom"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_every_query_is_asked_and_the_answers_merged(serve: Any) -> None:
    asked: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        asked.append(request.query["query"])
        code = "200" if "istio_requests_total" in request.query["query"] else "x"
        return web.json_response(_vector(({**EDGE, "response_code": code}, "3")))

    url = await serve(handler)
    series = await window_increases(url, 42)
    assert sorted(asked) == sorted(promql(m, 42) for m in QUERIES)
    assert {name for name, _ in series} == set(QUERIES)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(
        PrometheusError, match=f"cannot connect to Prometheus at {url}: connection refused"
    ):
        await window_increases(url, 60)


async def test_an_error_status_names_the_url_the_status_and_prometheus_error(serve: Any) -> None:
    async def handler(_request: web.Request) -> web.Response:
        body = {"status": "error", "errorType": "bad_data", "error": "1:2: parse error"}
        return web.json_response(body, status=400)

    url = await serve(handler)
    with pytest.raises(PrometheusError, match=r"/prom \(HTTP 400\): query failed: 1:2: parse"):
        await window_increases(url, 60)


async def test_not_json_is_an_error(serve: Any) -> None:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="<html>a login page</html>")

    async def unavailable(_request: web.Request) -> web.Response:
        return web.Response(text="upstream down", status=503)

    url = await serve(ok)
    with pytest.raises(PrometheusError, match=f"Prometheus at {url} did not answer JSON"):
        await window_increases(url, 60)
    url = await serve(unavailable)
    with pytest.raises(PrometheusError, match=f"Prometheus at {url} answered HTTP 503"):
        await window_increases(url, 60)


async def test_a_slow_prometheus_times_out(serve: Any) -> None:
    released = asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.wait_for(released.wait(), 10)
        return web.json_response(_vector())

    url = await serve(slow)
    with pytest.raises(PrometheusError, match=f"Prometheus at {url} did not answer within 0.2 s"):
        await window_increases(url, 60, timeout_s=0.2)
    released.set()
