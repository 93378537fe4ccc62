"""Tracing through a real OTLP/gRPC collector: both sidecars report spans of one trace."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc
from meshkit import ECHO, free_port, get_via, workload


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """Protobuf wire format, one level: (field number, bytes or varint). The OTLP classes
    bundled with xds-protos predate `scope_spans`, so the test reads the wire directly."""
    out: list[tuple[int, bytes | int]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            length = varint()
            out.append((number, data[i : i + length]))
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def _sub(data: bytes | int, number: int) -> list[bytes]:
    assert isinstance(data, bytes)
    return [v for n, v in _fields(data) if n == number and isinstance(v, bytes)]


class _Collector:
    """Just enough of an OpenTelemetry collector: it keeps every exported span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, bytes, bytes, bytes]] = []
        """(service.name, trace id, span id, parent span id)"""
        self.lock = threading.Lock()

    def export(self, request: bytes, _context: Any) -> bytes:
        # ExportTraceServiceRequest: resource_spans=1 {resource=1 {attributes=1 {key=1,
        # value=2 {string_value=1}}}, scope_spans=2 {spans=2 {trace_id=1, span_id=2,
        # parent_span_id=4}}}
        with self.lock:
            for rs in _sub(request, 1):
                service = ""
                for resource in _sub(rs, 1):
                    for attribute in _sub(resource, 1):
                        if _sub(attribute, 1) == [b"service.name"]:
                            service = _sub(_sub(attribute, 2)[0], 1)[0].decode()
                for scope in _sub(rs, 2):
                    for span in _sub(scope, 2):
                        parent = _sub(span, 4)
                        self.spans.append(
                            (
                                service,
                                _sub(span, 1)[0],
                                _sub(span, 2)[0],
                                parent[0] if parent else b"",
                            )
                        )
        return b""  # an empty ExportTraceServiceResponse


def test_both_sidecars_report_spans_of_the_same_trace(mesh_factory: Any) -> None:
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                collector.export,
                request_deserializer=None,
                response_serializer=None,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        mesh_doc = {
            "apiVersion": "gossamer.dev/v1alpha1",
            "kind": "Mesh",
            "metadata": {"name": "mesh"},
            "spec": {"tracing": {"collector": {"host": "127.0.0.1", "port": port}}},
        }
        text = "\n---\n".join(
            [
                workload("client", port=None, command=["sleep", "100000"]),
                workload("orders", command=[sys.executable, str(ECHO)]),
                json.dumps(mesh_doc),
            ]
        )
        mesh = mesh_factory(text + "\n")
        proxy = mesh.instance("client-0")["outbound_http_port"]
        status, body = get_via(proxy, "http://orders/traced")
        assert status == 200 and isinstance(body, dict)
        # The app received W3C trace context to forward on its own calls.
        assert "traceparent" in body["headers"]
        trace_id = bytes.fromhex(body["headers"]["traceparent"].split("-")[1])
        deadline = time.monotonic() + 15  # Envoy batches spans for up to 5 s
        while True:
            with collector.lock:
                mine = [s for s in collector.spans if s[1] == trace_id]
            if {s[0] for s in mine} >= {"client", "orders"}:
                break
            assert time.monotonic() < deadline, collector.spans
            time.sleep(0.2)
        client_span = next(s for s in mine if s[0] == "client")
        orders_span = next(s for s in mine if s[0] == "orders")
        assert orders_span[3] == client_span[2]  # the server's span is a child of the caller's
    finally:
        server.stop(0)
