"""GRPCRoute through real Envoy: gRPC calls from a client's sidecar, routed by service,
method, regular expression and metadata to two versions of a gRPC app, with timeouts.

The client calls its sidecar's outbound HTTP port with plaintext HTTP/2 and the authority
``rpc:9090``; Envoy picks the service by authority and the rule by the ``:path``
(``/shop.Orders/Get``). The app (grpc_app.py) answers any method, so a call that the mesh
does not route can only be refused by the mesh.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from meshkit import Mesh, admin_stats, shutdown, start_mesh

GW = "gateway.networking.k8s.io/v1"
GSM = "gossamer.dev/v1alpha1"
GRPC_APP = Path(__file__).resolve().with_name("grpc_app.py")


def _doc(api: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _rpc(name: str, services: list[str]) -> dict[str, Any]:
    spec = {
        "services": services,
        "ports": [{"port": 9090, "protocol": "grpc"}],
        "command": [sys.executable, str(GRPC_APP)],
    }
    return _doc(GSM, "Workload", name, spec)


def _rule(
    backend: str, *matches: dict[str, Any], request: str = "2s", **extra: Any
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "backendRefs": [{"name": backend, "port": 9090}],
        "timeouts": {"request": request},
        **extra,
    }
    if matches:
        rule["matches"] = list(matches)
    return rule


def _grpc_route(name: str, parent: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    spec = {"parentRefs": [{"name": parent, "port": 9090}], "rules": rules}
    return _doc(GW, "GRPCRoute", name, spec)


def mesh_docs() -> list[dict[str, Any]]:
    orders = {"service": "shop.Orders"}
    return [
        _doc(GSM, "Workload", "client", {"command": ["sleep", "100000"]}),
        _rpc("rpc-v1", ["rpc", "rpc-v1", "rpc-re"]),
        _rpc("rpc-v2", ["rpc", "rpc-v2"]),
        _grpc_route(
            "rpc",
            "rpc",
            [
                # The rest of shop.Orders, with a short timeout; declared first on purpose:
                # the exact method below must still win.
                _rule("rpc-v1", {"method": orders}, request="500ms"),
                _rule("rpc-v2", {"method": {**orders, "method": "Get"}}),
                _rule(
                    "rpc-v2", {"method": orders, "headers": [{"name": "x-canary", "value": "yes"}]}
                ),
                # A method of any service.
                _rule(
                    "rpc-v2",
                    {"method": {"method": "Ping"}},
                    filters=[
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {
                                "set": [{"name": "x-via", "value": "ping-rule"}]
                            },
                        }
                    ],
                ),
            ],
        ),
        _grpc_route(
            "rpc-re",
            "rpc-re",
            [
                _rule(
                    "rpc-v2",
                    {
                        "method": {
                            "type": "RegularExpression",
                            "service": r"shop\.Inv[a-z]+",
                            "method": "Li.*",
                        }
                    },
                ),
                _rule(
                    "rpc-v2",
                    {
                        "method": {
                            "type": "RegularExpression",
                            "service": r"shop\.Carts|shop\.Orders",
                            "method": "Get",
                        }
                    },
                ),
                _rule(
                    "rpc-v2",
                    {
                        "method": {
                            "type": "RegularExpression",
                            "service": r"shop\.Pay",
                            "method": "Get|List",
                        }
                    },
                ),
                # Everything else.
                _rule("rpc-v1"),
            ],
        ),
    ]


@dataclass
class Rpc:
    mesh: Mesh
    proxy: int
    client_admin: int
    channels: dict[str, grpc.Channel]

    def call(
        self,
        method: str,
        payload: bytes = b"x",
        *,
        authority: str = "rpc:9090",
        metadata: tuple[tuple[str, str], ...] = (),
        timeout: float = 5,
    ) -> dict[str, Any]:
        if authority not in self.channels:
            self.channels[authority] = grpc.insecure_channel(
                f"127.0.0.1:{self.proxy}",
                options=[("grpc.default_authority", authority), ("grpc.enable_http_proxy", 0)],
            )
        stub = self.channels[authority].unary_unary(method)
        answer: dict[str, Any] = json.loads(stub(payload, timeout=timeout, metadata=metadata))
        return answer


@pytest.fixture(scope="module")
def rpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rpc]:
    text = "\n---\n".join(json.dumps(d) for d in mesh_docs()) + "\n"
    mesh = start_mesh(tmp_path_factory.mktemp("grpc"), text)
    client = Rpc(mesh, 0, 0, {})
    try:
        mesh.wait_for(
            lambda s: all(i["proxy"]["synced"] for i in s["instances"]), what="proxies synced"
        )
        inst = mesh.instance("client-0")
        client.proxy = int(inst["outbound_http_port"])
        client.client_admin = int(inst["admin_port"])
        yield client
    finally:
        for channel in client.channels.values():
            channel.close()
        shutdown(mesh)


def test_exact_method_goes_to_v2_and_the_rest_of_the_service_to_v1(rpc: Rpc) -> None:
    for _ in range(5):
        got = rpc.call("/shop.Orders/Get")
        assert (got["instance"], got["method"]) == ("rpc-v2-0", "/shop.Orders/Get")
        got = rpc.call("/shop.Orders/List")
        assert (got["instance"], got["method"]) == ("rpc-v1-0", "/shop.Orders/List")
    # It went out through the client's sidecar, to the clusters the route names.
    stats = admin_stats(rpc.client_admin)
    assert stats["cluster.outbound|9090||rpc-v2.upstream_rq_200"] >= 5
    assert stats["cluster.outbound|9090||rpc-v1.upstream_rq_200"] >= 5


def test_metadata_match_picks_the_canary(rpc: Rpc) -> None:
    got = rpc.call("/shop.Orders/List", metadata=(("x-canary", "yes"),))
    assert got["instance"] == "rpc-v2-0"
    assert got["metadata"]["x-canary"] == "yes"
    assert rpc.call("/shop.Orders/List", metadata=(("x-canary", "no"),))["instance"] == "rpc-v1-0"


def test_method_of_any_service_with_a_header_filter(rpc: Rpc) -> None:
    for method in ("/shop.Orders/Ping", "/shop.Health/Ping"):
        got = rpc.call(method)
        assert (got["instance"], got["method"]) == ("rpc-v2-0", method)
        assert got["metadata"]["x-via"] == "ping-rule"


def test_unrouted_service_is_refused_by_the_mesh(rpc: Rpc) -> None:
    # The app answers any method: UNIMPLEMENTED can only be Envoy's 404 (no rule matched).
    with pytest.raises(grpc.RpcError) as err:
        rpc.call("/shop.Other/Get")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # A service whose name merely starts with shop.Orders is another service.
    with pytest.raises(grpc.RpcError) as err:
        rpc.call("/shop.OrdersX/Get")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_route_timeout_ends_a_slow_call(rpc: Rpc) -> None:
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        rpc.call("/shop.Orders/List", b"sleep:1500")
    elapsed = time.monotonic() - start
    # Envoy's 504 "upstream request timeout", as gRPC status UNAVAILABLE.
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    assert "upstream request timeout" in (err.value.details() or "")
    assert 0.45 <= elapsed < 1.4, elapsed  # the rule's 500 ms, not the app's 1.5 s
    # The same delay fits in the Get rule's 2 s.
    got = rpc.call("/shop.Orders/Get", b"sleep:600")
    assert got["instance"] == "rpc-v2-0"


def test_regular_expression_method_match(rpc: Rpc) -> None:
    got = rpc.call("/shop.Inventory/List", authority="rpc-re:9090")
    assert got["instance"] == "rpc-v2-0"
    got = rpc.call("/shop.Inventory/Get", authority="rpc-re:9090")
    assert got["instance"] == "rpc-v1-0"
    # The first alternative of a `method` alternation; the others are checked below.
    assert rpc.call("/shop.Pay/Get", authority="rpc-re:9090")["instance"] == "rpc-v2-0"


@pytest.mark.parametrize("method", ["/shop.Orders/Get", "/shop.Carts/Get", "/shop.Pay/List"])
def test_regular_expression_with_alternation(rpc: Rpc, method: str) -> None:
    assert rpc.call(method, authority="rpc-re:9090")["instance"] == "rpc-v2-0"
