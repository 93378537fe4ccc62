"""A test app that answers every request with what it received, as JSON.

Listens on 127.0.0.1:$PORT. The response says which instance served it, and the method,
path, query and headers it saw, so tests can check what the mesh did to a request.
`/status/NNN` answers with that status; `/delay/MS` waits first; `/big` sends 64 KiB;
`/reset` closes the connection without an answer.
`/precompressed` sends ~64 KiB of JSON already gzipped (`Content-Encoding: gzip`), with
the SHA-256 of the bytes it sent in `x-body-sha256`. `?content-type=T` on any path sets
the response's Content-Type to T. Request bodies may be chunked; `body_bytes` and
`body_sha256` describe the body as the app received it.
`/flaky/KEY/N` answers 503 to the first N requests with that KEY, then 200 (the body's
`attempt` says which request this was). `/fail-if/NAME` answers 500 in the instance
named NAME ($GOSSAMER_INSTANCE) and 200 in every other one. Every request is recorded in
memory by path: `/_requests?path=/some/path` (never recorded itself) answers with how many
requests for that exact path arrived and the last few of them, so tests can see what
reached the app.

`/_fail?on=1` (never recorded) makes this instance answer 500 to every request until
`/_fail?on=0`; `/_fail?on=1&path=/healthz` fails only paths that start with `/healthz`
(a failing health check on an instance that still serves). Tests call it on the app's own
port, so it reaches exactly one instance.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_lock = threading.Lock()
_flaky: dict[str, int] = defaultdict(int)
_seen_count: dict[str, int] = defaultdict(int)
_seen_last: dict[str, list[dict[str, Any]]] = defaultdict(list)
_KEEP = 20
_failing: list[str | None] = [None]
"""The path prefix this instance fails (answers 500) while ``/_fail?on=1`` is in force."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # peer's delayed ACK add ~40 ms to every kept-alive response.
    disable_nagle_algorithm = True

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self) -> None:
        body_in = self._read_body()
        url = urlsplit(self.path)
        if url.path == "/_requests":
            self._report(parse_qs(url.query).get("path", [""])[0])
            return
        if url.path == "/_fail":
            self._toggle(parse_qs(url.query))
            return
        if url.path == "/reset":  # close the connection without answering
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status = 200
        attempt = 0
        parts = url.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "flaky" and parts[2].isdigit():
            with _lock:
                _flaky[parts[1]] += 1
                attempt = _flaky[parts[1]]
            status = 503 if attempt <= int(parts[2]) else 200
        if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
            status = int(parts[1])
        if len(parts) == 2 and parts[0] == "delay" and parts[1].isdigit():
            time.sleep(int(parts[1]) / 1000)
        if len(parts) == 2 and parts[0] == "fail-if":
            status = 500 if parts[1] == os.environ.get("GOSSAMER_INSTANCE", "") else 200
        failing = _failing[0]
        if failing is not None and url.path.startswith(failing):
            status = 500
        payload = {
            "instance": os.environ.get("GOSSAMER_INSTANCE", ""),
            "workload": os.environ.get("GOSSAMER_WORKLOAD", ""),
            "version": os.environ.get("GOSSAMER_VERSION", ""),
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_bytes": len(body_in),
            "body_sha256": hashlib.sha256(body_in).hexdigest(),
            # Every value of every header, in order (`headers` keeps only the last one).
            "header_lists": _header_lists(self.headers.items()),
        }
        if attempt:
            payload["attempt"] = attempt
        with _lock:
            _seen_count[url.path] += 1
            last = _seen_last[url.path]
            last.append({k: payload[k] for k in ("method", "path", "query", "headers")})
            last[:] = last[-_KEEP:]
        if url.path in ("/big", "/precompressed"):
            payload["filler"] = "x" * 65536
        body = json.dumps(payload).encode()
        content_type = parse_qs(url.query).get("content-type", ["application/json"])[0]
        self.send_response(status)
        if url.path == "/precompressed":
            body = gzip.compress(body)
            self.send_header("content-encoding", "gzip")
            self.send_header("x-body-sha256", hashlib.sha256(body).hexdigest())
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", payload["instance"])
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _toggle(self, query: dict[str, list[str]]) -> None:
        on = query.get("on", ["0"])[0] == "1"
        with _lock:
            _failing[0] = query.get("path", ["/"])[0] if on else None
            body = json.dumps(
                {"instance": os.environ.get("GOSSAMER_INSTANCE", ""), "failing": _failing[0]}
            ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _report(self, path: str) -> None:
        with _lock:
            report = {"count": _seen_count.get(path, 0), "requests": _seen_last.get(path, [])}
            body = json.dumps(report).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def _header_lists(items: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in items:
        out.setdefault(k.lower(), []).append(v)
    return out


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Python's default backlog is 5; when a mesh starts, every caller's sidecar may health
    # check this instance at once, and a full backlog drops connections (connect timeouts).
    request_queue_size = 128


def main() -> int:
    server = Server(("127.0.0.1", int(os.environ["PORT"])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
