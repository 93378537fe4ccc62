"""Scraping every proxy's Envoy statistics over its admin port (loopback only).

Scraping was chosen over Envoy's metrics push service: it needs no extra listener in the
control plane, a failed or slow proxy is simply skipped for one round, and the filter
keeps each response to the per-edge series (a few KiB per sidecar)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import aiohttp

from gossamer.model import MeshState
from gossamer.telemetry._aggregate import (
    SeriesKey,
    Totals,
    edge_series,
    parse,
    source_series,
    tcp_series,
)

log = logging.getLogger("gossamer.telemetry")

STATS_PATH = "/stats/prometheus?usedonly&filter=" + quote(
    r"^(vhost\.inbound\.vcluster\.|tcp\.outbound\|"
    r"|cluster\.outbound\|.*\.(upstream_cx_destroy|upstream_rq_[0-9]+|upstream_rq_time)$)"
)
"""Only the series telemetry needs: per-edge inbound HTTP, outbound TCP, and per-cluster
outbound requests, times and closed connections."""


async def fetch(session: aiohttp.ClientSession, admin_port: int) -> str:
    async with session.get(f"http://127.0.0.1:{admin_port}{STATS_PATH}") as response:
        if response.status != 200:
            raise OSError(f"admin answered {response.status}")
        return await response.text()


async def collect_once(
    state: MeshState,
    proxies: dict[str, tuple[int, int]],
    totals: Totals,
    settle_after_s: float = 0.0,
) -> None:
    """One round: every proxy, concurrently; a failure costs only that proxy's round.
    ``proxies``: node id -> (admin port, process epoch, e.g. the Envoy's pid).

    The round is added ``settle_after_s`` after the scrape, at once with the flagged
    requests that arrived by then over the access log service (Envoy sends those within
    half a second), so a request's flags are known when its count is first shown."""

    async def one(
        session: aiohttp.ClientSession, node: str, port: int, epoch: int
    ) -> tuple[str, dict[SeriesKey, float], int] | None:
        try:
            text = await fetch(session, port)
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            totals.failed_scrapes += 1
            log.debug("scrape of %s failed: %s", node, exc)
            return None
        samples, bad = parse(text)
        totals.malformed_lines += bad
        series = edge_series(state, node, samples)
        series.update(source_series(state, node, samples))
        series.update(tcp_series(state, node, samples))
        return node, series, epoch

    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        scraped = await asyncio.gather(
            *(one(session, node, port, epoch) for node, (port, epoch) in proxies.items())
        )
    if settle_after_s:
        await asyncio.sleep(settle_after_s)
    for result in scraped:
        if result is not None:
            totals.add(*result)
    totals.settle()
