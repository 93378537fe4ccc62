"""A tiny gRPC test server: no protobuf, raw bytes in and out.

Listens on 127.0.0.1:$PORT (plaintext HTTP/2). Every unary method of every service answers
with JSON naming the instance that served it (``$GOSSAMER_INSTANCE``), the full method
(``/shop.Orders/Get``) and the call's metadata. The mesh, not this server, decides which
methods exist: ``shop.Orders/Get`` and ``shop.Orders/List`` are the ones the tests route.
A request payload of ``sleep:MS`` makes the call wait MS milliseconds first.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc


def _identity(data: bytes) -> bytes:
    return data


class AnyMethod(grpc.GenericRpcHandler):  # type: ignore[misc]
    def service(self, details: Any) -> Any:
        method = details.method

        def answer(request: bytes, context: Any) -> bytes:
            if request.startswith(b"sleep:") and request[6:].isdigit():
                time.sleep(int(request[6:]) / 1000)
            return json.dumps(
                {
                    "instance": os.environ.get("GOSSAMER_INSTANCE", ""),
                    "method": method,
                    "metadata": {k: v for k, v in context.invocation_metadata()},
                }
            ).encode()

        return grpc.unary_unary_rpc_method_handler(
            answer, request_deserializer=_identity, response_serializer=_identity
        )


def main() -> int:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((AnyMethod(),))
    server.add_insecure_port(f"127.0.0.1:{os.environ['PORT']}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(0.5).wait(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
