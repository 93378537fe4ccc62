"""`gossamer proxy-status` and `gossamer proxy-config` against a real mesh: a client, two
orders instances and an ingress gateway, each with its real Envoy.

One mesh serves the module (starting it is the expensive part); every test only reads.
A NACK cannot be provoked through `up` (translation never produces a rejected resource
on purpose); tests/xds and tests/e2e/test_ads.py provoke one with a hand-made snapshot,
and tests/runtime/test_proxies.py and tests/cli/test_proxy.py cover how it is mapped and
shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from meshkit import Mesh, free_port, shutdown, start_mesh, workload

from gossamer.translate import names

PROXIES = ["client-0", "orders-0", "orders-1", "shop.gateway"]


def _mesh_text(gateway_port: int) -> str:
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "shop"},
        "spec": {"listeners": [{"name": "http", "port": gateway_port, "protocol": "HTTP"}]},
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "site"},
        "spec": {
            "parentRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "shop"}
            ],
            "rules": [
                {"backendRefs": [{"name": "orders", "port": 80}], "timeouts": {"request": "5s"}}
            ],
        },
    }
    docs = [
        workload("client", port=None, command=["sleep", "100000"]),
        workload("orders", replicas=2),
        json.dumps(gateway),
        json.dumps(route),
    ]
    return "\n---\n".join(docs) + "\n"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    started = start_mesh(tmp_path_factory.mktemp("proxy") / "mesh", _mesh_text(free_port()))
    try:
        status = started.wait_for(
            lambda s: (
                all(i["proxy"]["synced"] for i in s["instances"])
                and all(g["proxy"]["synced"] for g in s["gateways"])
                and len(s["instances"]) == 3
                and len(s["gateways"]) == 1
                and s
            ),
            what="every proxy synced",
        )
        started.pids_seen |= {g["envoy_pid"] for g in status["gateways"] if g["envoy_pid"]}
        yield started
    finally:
        shutdown(started)


def _config(mesh: Mesh, proxy: str, section: str) -> dict[str, Any]:
    out = mesh.cli("proxy-config", proxy, section, "-o", "json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    assert data["node"] == proxy and data["section"] == section
    return data["config"]


def test_proxy_status_shows_every_proxy_synced_for_every_type(mesh: Mesh) -> None:
    out = mesh.cli("proxy-status")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["PROXY", "KIND", "CDS", "EDS", "LDS", "RDS"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert sorted(rows) == PROXIES
    for proxy, (kind, *states) in rows.items():
        assert kind == ("gateway" if proxy.endswith(".gateway") else "sidecar")
        assert states == ["SYNCED"] * 4, proxy

    out = mesh.cli("proxy-status", "-o", "json")
    assert out.returncode == 0, out.stderr
    proxies = json.loads(out.stdout)["proxies"]
    assert [p["node"] for p in proxies] == PROXIES
    for p in proxies:
        assert p["connected"] and p["synced"]
        for t in p["types"].values():
            assert t["state"] == "SYNCED"
            assert t["acked_version"] == t["desired_version"] != ""
            assert t["acked_at"] > 0
    assert proxies[0]["workload"] == "client" and proxies[3]["gateway"] == "shop"


def test_listeners_are_the_translators(mesh: Mesh) -> None:
    listeners = _config(mesh, "client-0", "listeners")["listeners"]
    assert [lst["name"] for lst in listeners["dynamic_listeners"]] == [names.OUTBOUND_HTTP]
    orders = _config(mesh, "orders-0", "listeners")["listeners"]
    assert names.inbound_listener(80) in {lst["name"] for lst in orders["dynamic_listeners"]}


def test_clusters_and_endpoints_are_envoys_own(mesh: Mesh) -> None:
    clusters = _config(mesh, "client-0", "clusters")["clusters"]
    dynamic = {c["cluster"]["name"] for c in clusters["dynamic_active_clusters"]}
    assert names.outbound_cluster("orders", 80) in dynamic

    endpoints = _config(mesh, "client-0", "endpoints")["endpoints"]
    assignment = next(
        e["endpoint_config"]
        for e in endpoints["dynamic_endpoint_configs"]
        if e["endpoint_config"]["cluster_name"] == names.outbound_cluster("orders", 80)
    )
    addresses = {
        (
            lb["endpoint"]["address"]["socket_address"]["address"],
            lb["endpoint"]["address"]["socket_address"]["port_value"],
        )
        for locality in assignment["endpoints"]
        for lb in locality["lb_endpoints"]
    }
    expected = {
        ("127.0.0.1", mesh.instance(name)["inbound_ports"]["80"])
        for name in ("orders-0", "orders-1")
    }
    assert addresses == expected


def test_all_sections_in_yaml_by_default_also_for_a_gateway(mesh: Mesh) -> None:
    out = mesh.cli("proxy-config", "shop.gateway")
    assert out.returncode == 0, out.stderr
    data = yaml.safe_load(out.stdout)
    assert data["kind"] == "gateway" and data["section"] == "all"
    config = data["config"]
    assert list(config) == ["listeners", "routes", "clusters", "endpoints"]
    (listener,) = config["listeners"]["dynamic_listeners"]
    port = listener["active_state"]["listener"]["address"]["socket_address"]["port_value"]
    assert listener["name"] == names.gateway_listener("shop", port)
    assert [r["route_config"]["name"] for r in config["routes"]["dynamic_route_configs"]] == [
        names.gateway_route_config("shop", port)
    ]
    dynamic = {c["cluster"]["name"] for c in config["clusters"]["dynamic_active_clusters"]}
    assert names.outbound_cluster("orders", 80) in dynamic


def test_an_unknown_proxy_exits_1_naming_the_known_ones(mesh: Mesh) -> None:
    out = mesh.cli("proxy-config", "nope-0", "clusters")
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip() == f"error: no proxy `nope-0` (proxies: {', '.join(PROXIES)})"
