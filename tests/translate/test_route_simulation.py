"""Traffic simulation beside the goldens: describe a request and assert where the
generated config sends it, without starting Envoy (the simulator is itself checked
against a real Envoy in tests/e2e/test_simulate_vs_envoy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.api import Source, load_config
from gossamer.model import MeshState, place, place_gateways, sequential_ports
from gossamer.translate import ROUTE, SimRequest, SimResult, simulate, translate, translate_gateway

IN = Path(__file__).parent / "testdata" / "in"


def _state(case: str) -> MeshState:
    config, problems = load_config(
        [Source(f"in/{case}.yaml", (IN / f"{case}.yaml").read_text(), "testdata/in")]
    )
    assert config is not None, problems
    allocate = sequential_ports(20000)
    return MeshState(
        config,
        place(config, None, allocate),
        gateway_admin_ports=place_gateways(config, None, allocate),
    )


def _sidecar(case: str, request: SimRequest, proxy: str = "web-0") -> SimResult:
    snapshot = translate(_state(case), proxy)
    return simulate(snapshot.of(ROUTE)["outbound|http"].body, request)


@pytest.mark.parametrize(
    ("request_", "route", "clusters"),
    [
        (SimRequest("api", "/items/42"), "api/regex", (("outbound|80||api-v2", 1),)),
        # The regex matches whole paths only.
        (SimRequest("api", "/items/42/x"), "api/default", None),
        (SimRequest("api", "/orders/7"), "api/mirrored", (("outbound|80||api-v1", 1),)),
        # PathPrefix matches whole segments: /ordersx is not /orders.
        (SimRequest("api", "/ordersx"), "api/default", None),
        (
            SimRequest("api", "/anything?debug=1", "POST", {"x-user": "admin-ann"}),
            "api/methods-and-query",
            (("outbound|80||api-v2", 1),),
        ),
        # Every condition of a match must hold: GET does not take the POST rule.
        (
            SimRequest("api", "/anything?debug=1", "GET", {"x-user": "admin-ann"}),
            "api/default",
            None,
        ),
        (SimRequest("api:80", "/v1/things"), "api/headers", (("outbound|80||api-v1", 1),)),
        (
            SimRequest("api", "/"),
            "api/default",
            (("outbound|80||api-v1", 90), ("outbound|80||api-v2", 10)),
        ),
    ],
)
def test_mesh_routing(request_: SimRequest, route: str, clusters: object) -> None:
    result = _sidecar("routing", request_)
    assert result.route == route
    if clusters is not None:
        assert result.clusters == clusters


def test_redirect_and_rewrite() -> None:
    redirect = _sidecar("routing", SimRequest("api", "/old"))
    assert redirect.status == 301
    assert redirect.redirect is not None and redirect.redirect["path_redirect"] == "/new"
    rewritten = _sidecar("routing", SimRequest("api", "/v1/things?x=1"))
    assert rewritten.rewritten_path == "/things?x=1"  # the query string is kept
    assert rewritten.host_rewrite == "api.internal"


def test_grpc_route_methods() -> None:
    get = _sidecar("routing", SimRequest("rpc:9090", "/shop.Orders/Get", "POST"))
    listing = _sidecar("routing", SimRequest("rpc:9090", "/shop.Orders/List", "POST"))
    other = _sidecar("routing", SimRequest("rpc:9090", "/shop.Users/Get", "POST"))
    assert get.route == "rpc/rule-0" and get.timeout == "1s"
    assert listing.route == "rpc/rule-1" and listing.timeout == "30s"
    assert other.route is None and other.status == 404


def test_registry_only_refuses_unknown_hosts_and_serves_declared_ones() -> None:
    denied = _sidecar("egress", SimRequest("example.org", "/"), proxy="app-0")
    assert denied.direct_response == 502
    declared = _sidecar("egress", SimRequest("payments.example.com", "/pay"), proxy="app-0")
    assert declared.clusters == (("outbound|80||payments", 1),)
    assert declared.timeout == "20s"  # the Mesh resource's default request timeout


def test_gateway_routes_by_path_and_host() -> None:
    state = _state("gateway")
    snapshot = translate_gateway(state, "ingress")
    http = snapshot.of(ROUTE)["gateway|ingress|8080"].body
    api = simulate(http, SimRequest("anything.example", "/api/items"))
    assert api.clusters == (("outbound|80||api", 1),)
    assert api.rewritten_path == "/items"
    site = simulate(http, SimRequest("anything.example", "/about"))
    assert site.clusters == (("outbound|80||web", 1),)
    https = snapshot.of(ROUTE)["gateway|ingress|8443"].body
    admin = simulate(https, SimRequest("shop.example", "/admin"))
    assert admin.clusters == (("outbound|80||api", 1),)
    unknown = simulate(https, SimRequest("other.example", "/admin"))
    assert unknown.direct_response == 404
