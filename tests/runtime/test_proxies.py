"""proxy-status and proxy-config on the control plane's side: selecting config dump
sections, each proxy's sync state with NACKs mapped to the user's YAML, and the two admin
API routes against a real HTTP server standing in for an Envoy admin."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gossamer.api import Source
from gossamer.model import sequential_ports
from gossamer.runtime import ControlPlane, LocalMesh, LocalOptions, Proposal
from gossamer.runtime._api import make_app
from gossamer.runtime._proxies import (
    DUMP_TYPES,
    NOT_SENT,
    SECTIONS,
    ProxyUnreachable,
    UnknownSection,
    config_dump_path,
    fetch_config_dump,
    proxy_entry,
    select_sections,
    wanted_sections,
)
from gossamer.translate import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE
from gossamer.xds import Event, Report

MESH = """\
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: client}
spec:
  command: [sleep, "1"]
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: orders}
spec:
  ports: [{port: 80}]
  command: [sleep, "1"]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress}
spec:
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: site}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: ingress}]
  rules:
    - backendRefs: [{name: orders, port: 80}]
      timeouts: {request: 10s}
"""

LONE_CLIENT = MESH.split("---")[0]

DUMP: dict[str, Any] = {
    "configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": {}},
        {
            "@type": DUMP_TYPES["clusters"],
            "static_clusters": [{"cluster": {"name": "gossamer-xds"}}],
            "dynamic_active_clusters": [{"cluster": {"name": "outbound|80||orders"}}],
        },
        {"@type": DUMP_TYPES["listeners"], "dynamic_listeners": [{"name": "outbound|http"}]},
        {
            "@type": DUMP_TYPES["routes"],
            "dynamic_route_configs": [{"route_config": {"name": "outbound|http"}}],
        },
        {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"},
        {
            "@type": DUMP_TYPES["endpoints"],
            "dynamic_endpoint_configs": [
                {"endpoint_config": {"cluster_name": "outbound|80||orders"}}
            ],
        },
    ]
}


# -- the pure part --------------------------------------------------------------------


def test_sections_are_one_of_four_or_all() -> None:
    assert wanted_sections("all") == SECTIONS == ("listeners", "routes", "clusters", "endpoints")
    for s in SECTIONS:
        assert wanted_sections(s) == (s,)
    with pytest.raises(UnknownSection, match="unknown section `secrets`: expected one of"):
        wanted_sections("secrets")


def test_select_keeps_envoys_sections_as_they_are_and_nothing_else() -> None:
    picked = select_sections(DUMP, ["listeners"])
    assert picked == {"listeners": DUMP["configs"][2]}
    everything = select_sections(DUMP, SECTIONS)
    assert list(everything) == list(SECTIONS)
    assert everything["clusters"]["dynamic_active_clusters"][0]["cluster"]["name"] == (
        "outbound|80||orders"
    )
    # Bootstrap and secrets are never shown.
    assert all("bootstrap" not in v for v in everything.values())


def test_a_section_missing_from_the_dump_is_empty() -> None:
    without_eds = {"configs": [c for c in DUMP["configs"] if c["@type"] != DUMP_TYPES["endpoints"]]}
    assert select_sections(without_eds, ["endpoints", "listeners"])["endpoints"] == {}
    assert select_sections({}, SECTIONS) == {s: {} for s in SECTIONS}
    assert select_sections({"configs": "nonsense"}, ["routes"]) == {"routes": {}}


def test_endpoints_are_asked_for_only_when_wanted() -> None:
    assert config_dump_path(["endpoints"]) == "/config_dump?include_eds"
    assert config_dump_path(SECTIONS) == "/config_dump?include_eds"
    assert config_dump_path(["listeners", "routes"]) == "/config_dump"


# -- sync state and NACK mapping ------------------------------------------------------


def _control(text: str) -> ControlPlane:
    control = ControlPlane(sequential_ports(30000))
    proposal = control.propose([Source("mesh.yaml", text)])
    assert isinstance(proposal, Proposal), proposal
    control.publish(proposal)
    return control


def _ack(control: ControlPlane, node: str, types: tuple[str, ...]) -> None:
    snapshot = control.cache.get(node)
    assert snapshot is not None
    control.book.connected(node, "sotw")
    for t in types:
        names = tuple(snapshot.of(t))
        control.book.record(
            node,
            [
                Report(Event.SENT, t, snapshot.versions[t], names),
                Report(Event.ACK, t, snapshot.versions[t], names),
            ],
        )


def test_a_synced_proxy_has_every_type_synced_with_its_resource_count() -> None:
    control = _control(MESH)
    _ack(control, "client-0", PUSH_ORDER)
    entry = proxy_entry(control, "client-0", "sidecar", 30003, workload="client")
    assert entry["node"] == "client-0" and entry["kind"] == "sidecar"
    assert entry["workload"] == "client" and entry["gateway"] is None
    assert entry["admin_port"] == 30003 and entry["connected"] and entry["synced"]
    types = entry["types"]
    assert list(types) == ["clusters", "endpoints", "listeners", "routes"]
    assert {t["state"] for t in types.values()} == {"SYNCED"}
    assert types["clusters"]["resources"] >= 1
    assert all(t["acked_at"] > 0 for t in types.values())


def test_a_nack_carries_envoys_message_and_the_users_resources() -> None:
    control = _control(MESH)
    _ack(control, "client-0", (ENDPOINT, LISTENER, ROUTE))
    snapshot = control.cache.get("client-0")
    assert snapshot is not None
    version, names = snapshot.versions[CLUSTER], tuple(snapshot.of(CLUSTER))
    error = "Error adding/updating cluster(s) outbound|80||orders: bad lb_policy"
    control.book.record(
        "client-0",
        [
            Report(Event.SENT, CLUSTER, version, names),
            Report(Event.NACK, CLUSTER, version, names, error),
        ],
    )
    entry = proxy_entry(control, "client-0", "sidecar", 30003, workload="client")
    clusters = entry["types"]["clusters"]
    assert clusters["state"] == "NACKED" and not entry["synced"]
    assert clusters["error"] == error
    assert clusters["rejected_resources"] == ["outbound|80||orders"]
    assert clusters["user_resources"] == [
        "mesh.yaml (document 2, Workload/orders)",
        "mesh.yaml (document 4, HTTPRoute/site)",
    ]
    assert entry["types"]["listeners"]["state"] == "SYNCED"


def test_a_gateways_nack_maps_to_the_gateway_and_its_routes() -> None:
    control = _control(MESH)
    node = "ingress.gateway"
    _ack(control, node, (CLUSTER, ENDPOINT, LISTENER))
    snapshot = control.cache.get(node)
    assert snapshot is not None
    version, names = snapshot.versions[ROUTE], tuple(snapshot.of(ROUTE))
    assert names == ("gateway|ingress|8080",)
    control.book.record(
        node, [Report(Event.NACK, ROUTE, version, names, "gateway|ingress|8080: bad regex")]
    )
    entry = proxy_entry(control, node, "gateway", 30010, gateway="ingress")
    assert entry["kind"] == "gateway" and entry["gateway"] == "ingress"
    assert entry["workload"] is None
    assert entry["types"]["routes"]["user_resources"] == [
        "mesh.yaml (document 3, Gateway/ingress)",
        "mesh.yaml (document 4, HTTPRoute/site)",
    ]


def test_a_type_the_proxy_has_none_of_and_was_never_sent_is_not_stale() -> None:
    control = _control(LONE_CLIENT)
    _ack(control, "client-0", (CLUSTER, LISTENER, ROUTE))
    entry = proxy_entry(control, "client-0", "sidecar", 30003, workload="client")
    assert entry["types"]["endpoints"]["resources"] == 0
    assert entry["types"]["endpoints"]["state"] == NOT_SENT
    assert entry["synced"]


def test_a_disconnected_proxy_says_so() -> None:
    control = _control(MESH)
    entry = proxy_entry(control, "orders-0", "sidecar", 30005, workload="orders")
    assert not entry["connected"]
    assert {t["state"] for t in entry["types"].values()} == {"DISCONNECTED"}


# -- fetching a config dump, and the API routes ----------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def admin() -> AsyncIterator[dict[str, Any]]:
    """A loopback HTTP server answering like an Envoy admin; ``answer`` makes its reply."""
    seen: dict[str, Any] = {"answer": lambda: web.json_response(DUMP), "paths": []}

    async def config_dump(request: web.Request) -> web.StreamResponse:
        seen["paths"].append(request.path_qs)
        answer: web.StreamResponse = seen["answer"]()
        return answer

    app = web.Application()
    app.router.add_get("/config_dump", config_dump)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    seen["port"] = runner.addresses[0][1]
    yield seen
    await runner.cleanup()


async def test_fetch_returns_the_dump_and_asks_for_endpoints_when_wanted(
    admin: dict[str, Any],
) -> None:
    assert await fetch_config_dump(admin["port"], ["endpoints"]) == DUMP
    assert admin["paths"] == ["/config_dump?include_eds"]


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (lambda: web.Response(status=503, text="no"), "answered 503"),
        (lambda: web.Response(text="not json"), "did not answer JSON"),
        (lambda: web.json_response([1, 2]), "did not answer a config dump"),
    ],
)
async def test_fetch_says_why_a_proxy_gave_no_dump(
    admin: dict[str, Any], answer: Callable[[], web.Response], said: str
) -> None:
    admin["answer"] = answer
    with pytest.raises(ProxyUnreachable, match=said):
        await fetch_config_dump(admin["port"], SECTIONS)


async def test_fetch_from_a_closed_port_is_unreachable() -> None:
    with pytest.raises(ProxyUnreachable, match="did not answer"):
        await fetch_config_dump(_closed_port(), SECTIONS, timeout_s=2)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], LocalMesh]]:
    """The admin API of a mesh that was published but runs no processes: proxies are
    put in by each test, standing in for ``up``'s runners."""
    (tmp_path / "mesh.yaml").write_text(MESH)
    mesh = LocalMesh(LocalOptions(config_path=tmp_path / "mesh.yaml", state_dir=tmp_path / "st"))
    proposal = mesh.control.propose([Source("mesh.yaml", MESH)])
    assert isinstance(proposal, Proposal), proposal
    mesh.control.publish(proposal)
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(mesh)))
    await client.start_server()
    yield client, mesh
    await client.close()
    mesh.store.close()
    mesh.config_store.close()


def _sidecar(mesh: LocalMesh, name: str, workload: str, admin_port: int) -> None:
    instance = SimpleNamespace(name=name, workload=workload, admin_port=admin_port)
    mesh.runners[name] = SimpleNamespace(instance=instance)  # type: ignore[assignment]


async def test_the_api_lists_every_proxy(api: tuple[TestClient[Any, Any], LocalMesh]) -> None:
    client, mesh = api
    _sidecar(mesh, "orders-0", "orders", 1)
    _sidecar(mesh, "client-0", "client", 2)
    _ack(mesh.control, "client-0", PUSH_ORDER)
    reply = await client.get("/api/v1/proxies")
    assert reply.status == 200
    proxies = (await reply.json())["proxies"]
    assert [p["node"] for p in proxies] == ["client-0", "orders-0"]
    assert proxies[0]["synced"] and not proxies[1]["connected"]


async def test_the_api_serves_a_proxys_config_sections(
    api: tuple[TestClient[Any, Any], LocalMesh], admin: dict[str, Any]
) -> None:
    client, mesh = api
    _sidecar(mesh, "client-0", "client", admin["port"])
    reply = await client.get("/api/v1/proxies/client-0/config?section=clusters")
    assert reply.status == 200
    data = await reply.json()
    assert data["node"] == "client-0" and data["kind"] == "sidecar"
    assert data["section"] == "clusters" and list(data["config"]) == ["clusters"]
    assert admin["paths"] == ["/config_dump"]
    reply = await client.get("/api/v1/proxies/client-0/config")
    assert list((await reply.json())["config"]) == list(SECTIONS)


async def test_the_api_names_known_proxies_for_an_unknown_one(
    api: tuple[TestClient[Any, Any], LocalMesh],
) -> None:
    client, mesh = api
    _sidecar(mesh, "client-0", "client", 1)
    reply = await client.get("/api/v1/proxies/nope-0/config")
    assert reply.status == 404
    assert await reply.json() == {"error": "no proxy `nope-0`", "proxies": ["client-0"]}
    reply = await client.get("/api/v1/proxies/client-0/config?section=secrets")
    assert reply.status == 400
    assert "unknown section" in (await reply.json())["error"]


async def test_the_api_answers_502_for_an_unreachable_proxy(
    api: tuple[TestClient[Any, Any], LocalMesh],
) -> None:
    client, mesh = api
    port = _closed_port()
    _sidecar(mesh, "client-0", "client", port)
    reply = await client.get("/api/v1/proxies/client-0/config?section=listeners")
    assert reply.status == 502
    data = await reply.json()
    assert data["admin_port"] == port
    assert data["error"].startswith("proxy `client-0` is unreachable: its Envoy admin at")
