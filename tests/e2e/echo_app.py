"""A test app that answers every request with what it received, as JSON.

Listens on 127.0.0.1:$PORT. The response says which instance served it, and the method,
path, query and headers it saw, so tests can check what the mesh did to a request.
`/status/NNN` answers with that status; `/delay/MS` waits first; `/big` sends 64 KiB.
`/flaky/KEY/N` answers 503 to the first N requests with that KEY, then 200 (the body's
`attempt` says which request this was). Every request is recorded in memory by path:
`/_requests?path=/some/path` (never recorded itself) answers with how many requests for
that exact path arrived and the last few of them, so tests can see what reached the app.
"""

from __future__ import annotations

import json
import os
import signal
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # peer's delayed ACK add ~40 ms to every kept-alive response.
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body_in = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        if url.path == "/_requests":
            self._report(parse_qs(url.query).get("path", [""])[0])
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
        payload = {
            "instance": os.environ.get("GOSSAMER_INSTANCE", ""),
            "workload": os.environ.get("GOSSAMER_WORKLOAD", ""),
            "version": os.environ.get("GOSSAMER_VERSION", ""),
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_bytes": len(body_in),
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
        if url.path == "/big":
            payload["filler"] = "x" * 65536
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-served-by", payload["instance"])
        self.end_headers()
        if self.command != "HEAD":
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


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
