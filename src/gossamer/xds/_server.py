"""The aggregated discovery service over gRPC: it only moves snapshots to streams.

State-of-the-world and delta ADS share the cache and the status book; the protocol rules
live in the sans-IO stream machines. A stream waits on at most one pending wake-up, so a
slow proxy never makes the producer queue work for it (DESIGN style rule 8).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy.service.accesslog.v3 import als_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from gossamer.translate import Snapshot
from gossamer.xds._als import AccessLogServicer, EntrySink
from gossamer.xds._cache import SnapshotCache, StatusBook
from gossamer.xds._encode import Encoder
from gossamer.xds._stream import DeltaStream, Request, Response, SotwStream

log = logging.getLogger("gossamer.xds")


def _error(req: Any) -> str | None:
    if req.HasField("error_detail"):
        return str(req.error_detail.message) or f"code {req.error_detail.code}"
    return None


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, cache: SnapshotCache, book: StatusBook) -> None:
        self._cache = cache
        self._book = book
        self._encoder = Encoder()

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        machine = SotwStream()

        def parse(req: Any) -> Request:
            return Request(
                type_url=req.type_url,
                nonce=req.response_nonce,
                version_info=req.version_info,
                resource_names=tuple(req.resource_names),
                error=_error(req),
            )

        def encode(resp: Response) -> Any:
            return discovery_pb2.DiscoveryResponse(
                version_info=resp.version,
                type_url=resp.type_url,
                nonce=resp.nonce,
                resources=[self._encoder.encode(resp.type_url, r) for r in resp.resources],
            )

        async for out in self._run("sotw", machine, request_iterator, parse, encode):
            yield out

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        machine = DeltaStream()

        def parse(req: Any) -> Request:
            return Request(
                type_url=req.type_url,
                nonce=req.response_nonce,
                resource_names=tuple(req.resource_names_subscribe),
                unsubscribe=tuple(req.resource_names_unsubscribe),
                initial_versions=dict(req.initial_resource_versions),
                error=_error(req),
            )

        def encode(resp: Response) -> Any:
            return discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=resp.version,
                type_url=resp.type_url,
                nonce=resp.nonce,
                removed_resources=list(resp.removed),
                resources=[
                    discovery_pb2.Resource(
                        name=r.name,
                        version=r.version,
                        resource=self._encoder.encode(resp.type_url, r),
                    )
                    for r in resp.resources
                ],
            )

        async for out in self._run("delta", machine, request_iterator, parse, encode):
            yield out

    async def _run(
        self,
        api: str,
        machine: SotwStream | DeltaStream,
        requests: AsyncIterator[Any],
        parse: Callable[[Any], Request],
        encode: Callable[[Response], Any],
    ) -> AsyncIterator[Any]:
        node_id = ""
        wake = asyncio.Event()
        cancel_watch: Callable[[], None] | None = None
        iterator = requests.__aiter__()
        next_request: asyncio.Future[Any] = asyncio.ensure_future(anext(iterator))
        try:
            while True:
                waiter = asyncio.ensure_future(wake.wait())
                done, _ = await asyncio.wait(
                    {next_request, waiter}, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                responses: list[Response] = []
                if next_request in done:
                    try:
                        raw = next_request.result()
                    except StopAsyncIteration:
                        return
                    if not node_id:
                        node_id = raw.node.id
                        if not node_id:
                            log.warning("xDS stream without node id; closing it")
                            return
                        cancel_watch = self._cache.watch(node_id, lambda _s: wake.set())
                        self._book.connected(node_id, api)
                        log.info("proxy %s connected (%s)", node_id, api)
                    responses += machine.on_request(parse(raw), self._cache.get(node_id))
                    next_request = asyncio.ensure_future(anext(iterator))
                if wake.is_set():
                    wake.clear()
                    snapshot: Snapshot | None = self._cache.get(node_id)
                    if snapshot is not None:
                        responses += machine.on_snapshot(snapshot)
                self._book.record(node_id, machine.drain_reports())
                for resp in responses:
                    yield encode(resp)
        finally:
            next_request.cancel()
            if cancel_watch is not None:
                cancel_watch()
            if node_id:
                self._book.disconnected(node_id)
                log.info("proxy %s disconnected", node_id)


class XdsServer:
    """A grpc.aio server exposing ADS (and, with ``access_logs``, Envoy's access log
    service) on one address."""

    def __init__(
        self, cache: SnapshotCache, book: StatusBook, access_logs: EntrySink | None = None
    ) -> None:
        self._server = grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.so_reuseport", 0),
            ]
        )
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
            _Servicer(cache, book), self._server
        )
        if access_logs is not None:
            als_pb2_grpc.add_AccessLogServiceServicer_to_server(
                AccessLogServicer(access_logs), self._server
            )
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        bound: int = self._server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"cannot listen for xDS on {host}:{port}: address in use?")
        await self._server.start()
        self.port = bound
        return bound

    async def stop(self, grace: float = 1.0) -> None:
        await self._server.stop(grace)
