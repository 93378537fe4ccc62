"""TrafficPolicy compression through real Envoy: responses compressed by the serving
sidecar (gzip, br, zstd) or by an ingress gateway, checked on the bytes a caller receives
(encoding, size, and the decoded body against the uncompressed one) and on the compressor
stats of the Envoy that did it; what must stay uncompressed (no Accept-Encoding, small or
unlisted responses, already encoded ones, services without a policy); and request
decompression.

One mesh serves the whole module:

- ``client``: no ports, a long ``sleep``; the test acts as its app, through its HTTP proxy;
- ``api`` (echo app): its TrafficPolicy compresses with [gzip, br, zstd], from 2048 bytes,
  for application/json and text/plain;
- ``plain`` (echo app): no policy;
- Gateway ``edge`` (HTTP, one listener): ``/api/...`` to ``api`` (prefix replaced by
  ``/``), everything else to ``plain``; its own TrafficPolicy compresses with [br, gzip].

The echo app's ``/big`` answers ~64 KiB of JSON, ``/precompressed`` the same gzipped (with
``Content-Encoding: gzip``), and ``?content-type=`` sets the response's type. Decoding br
needs the ``brotli`` module and zstd the ``zstandard`` module or the ``zstd`` program;
without them those checks are skipped (the encoding and size are still checked first).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from meshkit import ECHO, Mesh, admin_stats, free_port, shutdown, start_mesh

GSM = "gossamer.dev/v1alpha1"
GW = "gateway.networking.k8s.io/v1"
MIN_LENGTH = 2048
LIBRARY = {"gzip": "gzip", "br": "brotli", "zstd": "zstd"}
"""Accept-Encoding token -> the name in Envoy's stats."""
SERVER_STATS = "http.inbound|80.compressor"


# The xDS encoder (src/gossamer/xds/_encode.py) imports the gzip *compressor* proto but not
# the gzip *decompressor* one, so a listener with the decompressor filter cannot be
# encoded: the server sidecar's ADS stream fails on every attempt and it never gets the
# new config (`gossamer up` with the policy fails after --config-timeout; a live edit
# leaves the sidecar disconnected on the old config). `gossamer validate` accepts it.
# A sidecar's inbound listener serves every service of its workload, and
# `_inbound_listener` (translate/_translate.py) gives it the compression of the first of
# those services that has a policy. So a sibling service's own policy is ignored, and a
# sibling without a policy is compressed too; `gossamer validate` says nothing.
def _first_port() -> str:
    """Away from meshkit's default range (21000 up), which every pytest process starts
    from: two test runs at once on this machine must not race for the same ports."""
    return str(26100 + (os.getpid() % 25) * 200)


# -- the mesh ---------------------------------------------------------------------------------


def _doc(api: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _echo(name: str) -> dict[str, Any]:
    spec = {"ports": [{"port": 80, "protocol": "http"}], "command": [sys.executable, str(ECHO)]}
    return _doc(GSM, "Workload", name, spec)


def mesh_docs(gateway_port: int, decompress: bool = False) -> list[dict[str, Any]]:
    to_api = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
        "filters": [
            {
                "type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            }
        ],
        "backendRefs": [{"name": "api", "port": 80}],
    }
    return [
        _doc(GSM, "Workload", "client", {"command": ["sleep", "100000"]}),
        _echo("api"),
        _echo("plain"),
        _doc(
            GSM,
            "TrafficPolicy",
            "api-compression",
            {
                "targetRefs": [{"kind": "Service", "name": "api"}],
                "compression": {
                    "algorithms": ["gzip", "br", "zstd"],
                    "minContentLength": MIN_LENGTH,
                    "contentTypes": ["application/json", "text/plain"],
                    "decompressRequests": decompress,
                },
            },
        ),
        _doc(
            GW,
            "Gateway",
            "edge",
            {"listeners": [{"name": "http", "port": gateway_port, "protocol": "HTTP"}]},
        ),
        _doc(
            GW,
            "HTTPRoute",
            "edge",
            {
                "parentRefs": [
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}
                ],
                "rules": [to_api, {"backendRefs": [{"name": "plain", "port": 80}]}],
            },
        ),
        _doc(
            GSM,
            "TrafficPolicy",
            "edge-compression",
            {
                "targetRefs": [
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}
                ],
                "compression": {"algorithms": ["br", "gzip"]},
            },
        ),
    ]


def mesh_text(gateway_port: int, decompress: bool = False) -> str:
    return "\n---\n".join(json.dumps(d) for d in mesh_docs(gateway_port, decompress)) + "\n"


@dataclass
class Env:
    mesh: Mesh
    gateway_port: int
    proxy: int
    """The client's HTTP proxy port."""
    api_admin: int
    plain_admin: int
    gateway_admin: int

    @property
    def gateway_stats(self) -> str:
        return f"http.gateway_edge_{self.gateway_port}.compressor"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    port = free_port()
    mesh = start_mesh(
        tmp_path_factory.mktemp("compression"), mesh_text(port), "--first-port", _first_port()
    )
    try:
        status = mesh.status()
        by_name = {i["name"]: i for i in status["instances"]}
        gateway = next(g for g in status["gateways"] if g["name"] == "edge")
        mesh.pids_seen.add(gateway["envoy_pid"])
        yield Env(
            mesh,
            port,
            by_name["client-0"]["outbound_http_port"],
            by_name["api-0"]["admin_port"],
            by_name["plain-0"]["admin_port"],
            gateway["admin_port"],
        )
    finally:
        shutdown(mesh)


# -- requests and bodies ----------------------------------------------------------------------


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes
    """As received: still encoded."""

    @property
    def encoding(self) -> str | None:
        return self.headers.get("content-encoding")


def fetch(
    port: int,
    target: str,
    host: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Raw:
    """One request with exactly the given headers (http.client adds no Accept-Encoding);
    the body is returned as it came over the wire."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        headers_out = {k.lower(): v for k, v in resp.getheaders()}
        return Raw(resp.status, headers_out, data)
    finally:
        conn.close()


def via_client(env: Env, path: str, accept: str | None, service: str = "api") -> Raw:
    """A request from the client app to ``service`` through its sidecar."""
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    return fetch(env.proxy, f"http://{service}{path}", service, headers)


def via_gateway(env: Env, path: str, accept: str | None) -> Raw:
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    return fetch(env.gateway_port, path, "shop.example", headers)


def _zstd(data: bytes) -> bytes:
    try:
        import zstandard  # type: ignore[import-not-found]

        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    except ImportError:
        pass
    tool = shutil.which("zstd")
    if tool is None:
        pytest.skip(
            "cannot decode zstd here (neither the zstandard module nor `zstd`); its "
            "Content-Encoding, size and stats were checked"
        )
    done = subprocess.run([tool, "-d", "-c", "-q"], input=data, capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout


def decode(encoding: str, data: bytes) -> bytes:
    """The body without its Content-Encoding; skips the test if this machine can't."""
    if encoding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if encoding == "br":
        try:
            import brotli  # type: ignore[import-not-found]
        except ImportError:
            pytest.skip(
                "cannot decode br here (no brotli module); its Content-Encoding, size and "
                "stats were checked"
            )
        return bytes(brotli.decompress(data))
    if encoding == "zstd":
        return _zstd(data)
    raise AssertionError(f"unexpected Content-Encoding {encoding!r}")


def same_answer(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two echo answers to the same request, except for the request headers (Accept-Encoding
    and the request id differ by design)."""
    skip = {"headers", "header_lists"}
    assert {k: v for k, v in a.items() if k not in skip} == {
        k: v for k, v in b.items() if k not in skip
    }


def compressor(
    stats: dict[str, int], prefix: str, encoding: str, name: str, direction: str = "response"
) -> int:
    lib = LIBRARY[encoding]
    return stats[f"{prefix}.{lib}-compressor.{lib}.{direction}.{name}"]


def counters(admin_port: int, prefix: str) -> dict[str, int]:
    """The compressor stats under ``prefix`` (an HCM's ``http.<stat_prefix>.compressor``)."""
    return {k: v for k, v in admin_stats(admin_port).items() if k.startswith(prefix + ".")}


def settle_counters(admin_port: int, prefix: str, key: str, at_least: int) -> dict[str, int]:
    """Stats once ``key`` reached ``at_least`` (bounded: Envoy counts as the stream ends)."""
    deadline = time.monotonic() + 5
    stats = counters(admin_port, prefix)
    while stats.get(key, 0) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = counters(admin_port, prefix)
    return stats


# -- the service's sidecar compresses ---------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_the_accepted_algorithm_compresses_the_response(env: Env, encoding: str) -> None:
    plain = via_client(env, "/big", None)
    assert plain.status == 200 and plain.encoding is None
    reference = json.loads(plain.body)
    before = counters(env.api_admin, SERVER_STATS)

    reply = via_client(env, "/big", encoding)
    assert reply.status == 200
    assert reply.encoding == encoding
    assert "accept-encoding" in reply.headers.get("vary", "").lower()
    assert len(reply.body) < len(plain.body) // 10, (len(reply.body), len(plain.body))

    # The server's sidecar did it, and its stats show the bytes saved.
    key = f"{SERVER_STATS}.{LIBRARY[encoding]}-compressor.{LIBRARY[encoding]}.response.compressed"
    after = settle_counters(env.api_admin, SERVER_STATS, key, before[key] + 1)
    assert after[key] - before[key] == 1
    sent = compressor(after, SERVER_STATS, encoding, "total_compressed_bytes") - compressor(
        before, SERVER_STATS, encoding, "total_compressed_bytes"
    )
    original = compressor(after, SERVER_STATS, encoding, "total_uncompressed_bytes") - compressor(
        before, SERVER_STATS, encoding, "total_uncompressed_bytes"
    )
    assert sent == len(reply.body)
    assert original > 10 * sent

    decoded = decode(encoding, reply.body)
    assert original == len(decoded)
    same_answer(json.loads(decoded), reference)


def test_without_accept_encoding_nothing_is_compressed(env: Env) -> None:
    before = counters(env.api_admin, SERVER_STATS)
    for accept in (None, "identity", "gzip;q=0", "deflate"):
        reply = via_client(env, "/big", accept)
        assert reply.status == 200
        assert reply.encoding is None, accept
        assert int(reply.headers["content-length"]) == len(reply.body) > 65536
        assert json.loads(reply.body)["filler"] == "x" * 65536
    after = counters(env.api_admin, SERVER_STATS)
    for encoding in LIBRARY:
        assert compressor(after, SERVER_STATS, encoding, "compressed") == compressor(
            before, SERVER_STATS, encoding, "compressed"
        )


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip;q=0.2, br;q=0.8, zstd;q=0.5", "br"),
        ("gzip, zstd;q=0.5", "gzip"),
        ("deflate, zstd", "zstd"),
        ("br;q=0, gzip;q=0.1", "gzip"),
    ],
)
def test_the_best_accepted_algorithm_wins(env: Env, accept: str, chosen: str) -> None:
    reply = via_client(env, "/big", accept)
    assert reply.status == 200
    assert reply.encoding == chosen


def test_a_response_below_min_content_length_is_not_compressed(env: Env) -> None:
    key = f"{SERVER_STATS}.gzip-compressor.gzip.response.content_length_too_small"
    before = counters(env.api_admin, SERVER_STATS)
    reply = via_client(env, "/small", "gzip")
    assert reply.status == 200
    assert reply.encoding is None
    assert len(reply.body) < MIN_LENGTH
    assert json.loads(reply.body)["path"] == "/small"
    after = settle_counters(env.api_admin, SERVER_STATS, key, before[key] + 1)
    assert after[key] - before[key] == 1


@pytest.mark.parametrize(
    ("content_type", "compressed"),
    [
        ("text/plain", True),
        ("application/json; charset=utf-8", True),
        ("text/html", False),  # Envoy's default list has it; the policy's list does not
        ("application/octet-stream", False),
    ],
)
def test_only_listed_content_types_are_compressed(
    env: Env, content_type: str, compressed: bool
) -> None:
    reply = via_client(env, f"/big?content-type={quote(content_type)}", "gzip")
    assert reply.status == 200
    assert reply.headers["content-type"] == content_type
    assert reply.encoding == ("gzip" if compressed else None)
    body = decode("gzip", reply.body) if compressed else reply.body
    assert json.loads(body)["filler"] == "x" * 65536


@pytest.mark.parametrize("accept", ["gzip", "br", "gzip, br, zstd"])
def test_an_already_encoded_response_passes_through_untouched(env: Env, accept: str) -> None:
    reply = via_client(env, "/precompressed", accept)
    assert reply.status == 200
    assert reply.encoding == "gzip"  # not "gzip, br", not re-encoded
    assert hashlib.sha256(reply.body).hexdigest() == reply.headers["x-body-sha256"]
    assert json.loads(gzip.decompress(reply.body))["filler"] == "x" * 65536


def test_a_service_without_a_policy_is_not_compressed(env: Env) -> None:
    reply = via_client(env, "/big", "gzip, br, zstd", service="plain")
    assert reply.status == 200
    assert reply.encoding is None
    assert not any(
        v for k, v in admin_stats(env.plain_admin).items() if ".compressor." in k and v
    ), "the plain service's sidecar has a compressor"


# -- the gateway compresses -------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_gateway_policy_compresses_at_the_edge(env: Env, encoding: str) -> None:
    plain = via_gateway(env, "/big", None)
    assert plain.status == 200 and plain.encoding is None
    assert json.loads(plain.body)["workload"] == "plain"
    prefix = env.gateway_stats
    key = f"{prefix}.{LIBRARY[encoding]}-compressor.{LIBRARY[encoding]}.response.compressed"
    before = counters(env.gateway_admin, prefix)

    reply = via_gateway(env, "/big", encoding)
    assert reply.status == 200
    assert reply.encoding == encoding
    assert len(reply.body) < len(plain.body) // 10
    after = settle_counters(env.gateway_admin, prefix, key, before[key] + 1)
    assert after[key] - before[key] == 1
    sent = compressor(after, prefix, encoding, "total_compressed_bytes") - compressor(
        before, prefix, encoding, "total_compressed_bytes"
    )
    assert sent == len(reply.body)
    same_answer(json.loads(decode(encoding, reply.body)), json.loads(plain.body))


def test_the_gateway_offers_only_its_own_algorithms(env: Env) -> None:
    reply = via_gateway(env, "/big", "zstd")
    assert reply.status == 200
    assert reply.encoding is None
    assert json.loads(reply.body)["workload"] == "plain"


def test_a_response_compressed_behind_the_gateway_is_not_compressed_again(env: Env) -> None:
    prefix = env.gateway_stats
    key = f"{prefix}.gzip-compressor.gzip.response.compressed"
    gateway_before = counters(env.gateway_admin, prefix)[key]
    server_key = f"{SERVER_STATS}.gzip-compressor.gzip.response.compressed"
    server_before = counters(env.api_admin, SERVER_STATS)[server_key]

    reply = via_gateway(env, "/api/big", "gzip")
    assert reply.status == 200
    assert reply.encoding == "gzip"
    answer = json.loads(zlib.decompress(reply.body, 16 + zlib.MAX_WBITS))
    assert answer["workload"] == "api" and answer["path"] == "/big"
    server = settle_counters(env.api_admin, SERVER_STATS, server_key, server_before + 1)
    assert server[server_key] - server_before == 1  # api's sidecar compressed it ...
    assert counters(env.gateway_admin, prefix)[key] == gateway_before  # ... the edge did not


# -- request bodies ---------------------------------------------------------------------------


def _records() -> bytes:
    """~50 KB of JSON that compresses like real data (well under Envoy's 100:1 limit)."""
    rng = random.Random(42)
    rows = [
        {
            "id": i,
            "sku": f"SKU-{rng.randrange(10**8):08d}",
            "qty": rng.randrange(1, 100),
            "note": rng.choice(["express", "gift", "fragile", "standard"]),
        }
        for i in range(800)
    ]
    return json.dumps(rows).encode()


def _post_gzip(env: Env, raw: bytes) -> dict[str, Any]:
    packed = gzip.compress(raw)
    reply = fetch(
        env.proxy,
        "http://api/orders",
        "api",
        {"Content-Encoding": "gzip", "Content-Type": "application/json"},
        method="POST",
        body=packed,
    )
    assert reply.status == 200, reply.body[:300]
    answer: dict[str, Any] = json.loads(reply.body)
    return answer


def test_without_decompress_requests_the_app_gets_the_gzip_body(env: Env) -> None:
    raw = _records()
    answer = _post_gzip(env, raw)
    assert answer["body_bytes"] == len(gzip.compress(raw))
    assert answer["headers"].get("content-encoding") == "gzip"


def test_decompress_requests_gives_the_app_the_decoded_body(env: Env) -> None:
    """Turned on by a live edit, then off again. Last in the module."""
    mesh = env.mesh
    revision = mesh.edit(mesh_text(env.gateway_port, decompress=True))
    try:
        mesh.wait_for(lambda s: s["revision"] > revision, within_s=10, what="edit applied")
        mesh.wait_for(
            lambda s: all(i["proxy"]["synced"] for i in s["instances"]),
            within_s=5,
            what="every sidecar applied decompressRequests",
        )
        key = "http.inbound|80.decompressor.gzip-decompressor.gzip.request.decompressed"
        raw = _records()
        # A listener change applies to new connections; a kept-alive one from before the
        # edit finishes on the old config (Envoy drains it, closing it after a response).
        deadline = time.monotonic() + 10
        answer = _post_gzip(env, raw)
        while answer["body_bytes"] != len(raw) and time.monotonic() < deadline:
            time.sleep(0.2)
            answer = _post_gzip(env, raw)
        before = admin_stats(env.api_admin).get(key, 0)
        answer = _post_gzip(env, raw)
        assert answer["body_bytes"] == len(raw)
        assert answer["body_sha256"] == hashlib.sha256(raw).hexdigest()
        assert "content-encoding" not in answer["headers"]
        assert admin_stats(env.api_admin).get(key, 0) - before == 1
    finally:
        restored = mesh.edit(mesh_text(env.gateway_port))
        with contextlib.suppress(AssertionError):
            mesh.wait_for(
                lambda s: (
                    s["revision"] > restored and all(i["proxy"]["synced"] for i in s["instances"])
                ),
                within_s=10,
                what="edit reverted",
            )
