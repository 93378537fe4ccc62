"""One small HTTP service that plays every part of the demo shop.

    python3 shop.py --name SERVICE [--calls URL ...] [--error-rate 0.0] [--latency-ms N]

Gossamer sets PORT (listen on 127.0.0.1 only) and HTTP_PROXY (the local sidecar), so a
downstream call to ``http://catalog/items`` goes through the mesh. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
)
CALL_TIMEOUT_S = 5.0

CATALOG = [
    {"sku": "tea-01", "name": "Green tea", "price": 4.5},
    {"sku": "mug-02", "name": "Blue mug", "price": 9.0},
    {"sku": "pot-03", "name": "Tea pot", "price": 24.0},
]


def service_data(name: str, version: str) -> dict[str, object]:
    """A little plausible content, so the demo's responses look like a shop."""
    if name == "catalog":
        return {"items": CATALOG}
    if name == "cart":
        return {"cart": {"items": [{"sku": "tea-01", "qty": 2}], "total": 9.0}}
    if name == "orders":
        status = "shipped" if version != "v2" else "shipped-express"
        return {"orders": [{"id": f"o-{random.randint(1000, 9999)}", "status": status}]}
    return {}


def call(url: str, headers: dict[str, str]) -> dict[str, object]:
    """GET ``url`` (through HTTP_PROXY when set); report status and parsed body or error."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad URL
        return {"url": url, "status": None, "body": f"{type(exc).__name__}: {exc}"}
    try:
        body: object = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")[:500]
    return {"url": url, "status": status, "body": body}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shop/1"
    opts: argparse.Namespace  # set in main()

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        self._handle(self._read_body())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self, body: bytes) -> None:
        if not self.path.startswith("/"):  # absolute-form, as sent to a proxy
            parts = urllib.parse.urlsplit(self.path)
            self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if self.path.split("?", 1)[0] == "/healthz":
            self._send(200, b"ok", "text/plain")
            return
        opts = self.opts
        version = os.environ.get("GOSSAMER_VERSION", "")
        reply: dict[str, object] = {
            "service": opts.name,
            "instance": os.environ.get("GOSSAMER_INSTANCE", ""),
            "workload": os.environ.get("GOSSAMER_WORKLOAD", ""),
            "version": version,
            "zone": os.environ.get("GOSSAMER_ZONE", ""),
            "path": self.path,
            "calls": [],
        }
        trace = {h: v for h in TRACE_HEADERS if (v := self.headers.get(h)) is not None}
        reply["trace"] = trace  # the trace headers received, forwarded on every call below
        if self.command == "POST":
            reply["request_bytes"] = len(body)
        if opts.latency_ms > 0:
            time.sleep(opts.latency_ms / 1000)
        if opts.error_rate > 0 and random.random() < opts.error_rate:
            reply["error"] = "injected failure (--error-rate)"
            self._send_json(503, reply)
            return
        calls = [call(url, trace) for url in opts.calls]
        reply["calls"] = calls
        if any(not isinstance(c["status"], int) or not 200 <= c["status"] < 300 for c in calls):
            reply["error"] = "a downstream call failed"
            self._send_json(502, reply)
            return
        reply.update(service_data(opts.name, version))
        self._send_json(200, reply)

    def _send_json(self, status: int, reply: dict[str, object]) -> None:
        self._send(status, json.dumps(reply).encode() + b"\n", "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        instance = os.environ.get("GOSSAMER_INSTANCE") or self.opts.name
        sys.stderr.write(f"{instance} {self.address_string()} {format % args}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the service this instance plays")
    parser.add_argument("--calls", nargs="+", action="extend", default=[], metavar="URL")
    parser.add_argument("--error-rate", type=float, default=0.0, help="0.0-1.0; answer 503")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every request")
    opts = parser.parse_args(argv)
    port = os.environ.get("PORT")
    if not port or not port.isdigit():
        parser.error("the PORT environment variable must be set to the port to listen on")
    Handler.opts = opts
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return, so it must not run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(f"{opts.name} listening on 127.0.0.1:{port}\n")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
