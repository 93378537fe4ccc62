"""The service graph's series from a Prometheus that scrapes the mesh (the Mesh resource's
``spec.telemetry.prometheus.url``) instead of the embedded store.

One PromQL instant query per metric the graph reads, each the series' increase over the
window summed down to the labels the graph keys on. The result has the shape of the
collected series, so ``graph(config, {}, increases, seconds)`` builds the same graph.
``increase()`` extrapolates to the window's edges, so counts are close, not exact."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import aiohttp

from gossamer.telemetry._aggregate import SeriesKey

TIMEOUT_S = 5.0
"""For all the queries of one graph together."""

_EDGE = "reporter, source_workload, destination_service"
QUERIES: Mapping[str, tuple[str, str]] = {
    # metric: (selector, extra label to keep)
    "istio_requests_total": ('reporter="destination"', "response_code"),
    "istio_request_duration_milliseconds_bucket": ('reporter="destination"', "le"),
    "istio_tcp_sent_bytes_total": ('reporter="source"', ""),
    "istio_tcp_received_bytes_total": ('reporter="source"', ""),
}
"""The reporters are the ones ``graph`` reads: receivers for HTTP, callers for TCP."""


class PrometheusError(Exception):
    """Prometheus could not answer; the message names its URL and what failed."""


def promql(metric: str, seconds: int) -> str:
    selector, extra = QUERIES[metric]
    labels = f"{_EDGE}, {extra}" if extra else _EDGE
    return f"sum by ({labels}) (increase({metric}{{{selector}}}[{seconds}s]))"


def series_of(metric: str, body: Any) -> dict[SeriesKey, float]:
    """One query's JSON answer (an instant vector) as ``{(metric, labels): value}``.
    Raises ValueError when it is not a successful vector answer; NaN values are left out."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise ValueError(f"query failed: {error}" if error else "not a Prometheus answer")
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise ValueError("the answer is not an instant vector")
    out: dict[SeriesKey, float] = {}
    for row in data.get("result") or []:
        try:
            labels = tuple(sorted((str(k), str(v)) for k, v in row["metric"].items()))
            value = float(row["value"][1])
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"malformed sample {row!r}") from exc
        if math.isfinite(value):
            out[(metric, labels)] = value
    return out


async def window_increases(
    url: str, seconds: int, timeout_s: float = TIMEOUT_S
) -> dict[SeriesKey, float]:
    """Every series ``graph`` reads, as its increase over the last ``seconds`` (a whole
    number, at least 1), from the Prometheus at base ``url``. Raises PrometheusError."""
    seconds = max(1, seconds)
    endpoint = url.rstrip("/") + "/api/v1/query"

    async def one(session: aiohttp.ClientSession, metric: str) -> dict[SeriesKey, float]:
        async with session.get(endpoint, params={"query": promql(metric, seconds)}) as r:
            try:
                body = await r.json(content_type=None)
            except ValueError:
                if r.status != 200:
                    raise PrometheusError(f"Prometheus at {url} answered HTTP {r.status}") from None
                raise PrometheusError(f"Prometheus at {url} did not answer JSON") from None
        try:
            return series_of(metric, body)
        except ValueError as exc:
            raise PrometheusError(f"Prometheus at {url} (HTTP {r.status}): {exc}") from None

    try:
        async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as session:
            tasks = [asyncio.ensure_future(one(session, metric)) for metric in QUERIES]
            try:
                parts = await asyncio.gather(*tasks)
            finally:  # one failed (or time ran out): the others are not needed
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    except TimeoutError:
        raise PrometheusError(
            f"Prometheus at {url} did not answer within {timeout_s:g} s"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        reason = "connection refused" if refused else exc.os_error.strerror or str(exc)
        raise PrometheusError(f"cannot connect to Prometheus at {url}: {reason}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise PrometheusError(f"Prometheus at {url} failed: {exc}") from None
    return {key: value for part in parts for key, value in part.items()}
