"""Sidecar scoping (``Workload.spec.calls``) on the golden case ``scoped.yaml``: a workload
with ``calls`` gets outbound config for the names listed only; one without gets every
service and ExternalService, with its port allocation unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gossamer.api import Source, load_config
from gossamer.model import MeshConfig, MeshState, place, sequential_ports
from gossamer.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot, translate

CASE = Path(__file__).parent / "testdata" / "in" / "scoped.yaml"


def _config() -> MeshConfig:
    config, problems = load_config([Source(CASE.name, CASE.read_text(), str(CASE.parent))])
    assert config is not None, "\n".join(map(str, problems))
    return config


def _snapshots(config: MeshConfig) -> tuple[MeshState, dict[str, Snapshot]]:
    state = MeshState(config, place(config, None, sequential_ports(20000)))
    return state, {i.name: translate(state, i.name) for i in state.instances}


def _virtual_hosts(snapshot: Snapshot) -> set[str]:
    (routes,) = snapshot.of(ROUTE).values()
    return {vh["name"] for vh in routes.body["virtual_hosts"]}


def test_a_scoped_sidecar_has_nothing_for_an_uncalled_service() -> None:
    _, snapshots = _snapshots(_config())
    client = snapshots["client-0"]
    assert set(client.of(CLUSTER)) == {"outbound|80||orders", "outbound|passthrough"}
    assert set(client.of(ENDPOINT)) == {"outbound|80||orders"}
    assert set(client.of(LISTENER)) == {"outbound|http"}
    assert _virtual_hosts(client) == {"orders:80", "unknown"}


def test_an_unscoped_sidecar_has_every_service() -> None:
    _, snapshots = _snapshots(_config())
    audit = snapshots["audit-0"]
    clusters = set(audit.of(CLUSTER))
    assert {"outbound|80||orders", "outbound|80||stock", "outbound|6379||stock"} <= clusters
    assert "outbound|80||payments" in clusters
    assert "outbound|6379|tcp|stock" in audit.of(LISTENER)
    assert {"orders:80", "stock:80", "payments:80"} <= _virtual_hosts(audit)


def test_only_called_tcp_services_get_a_local_port() -> None:
    state, _ = _snapshots(_config())
    ports = {i.name: [(s, p) for s, p, _ in i.outbound_tcp_ports] for i in state.instances}
    assert ports["client-0"] == []
    assert ports["audit-0"] == [("stock", 6379)]


def test_calling_everything_equals_no_calls() -> None:
    """Listing every name gives the sidecar the same config as not scoping at all."""
    config = _config()
    everything = ("orders", "payments", "stock")
    workloads = tuple(
        dataclasses.replace(w, calls=everything) if w.name == "client" else w
        for w in config.workloads
    )
    _, scoped = _snapshots(dataclasses.replace(config, workloads=workloads))
    unscoped_workloads = tuple(
        dataclasses.replace(w, calls=None) if w.name == "client" else w for w in config.workloads
    )
    _, unscoped = _snapshots(dataclasses.replace(config, workloads=unscoped_workloads))
    for type_url in (CLUSTER, ENDPOINT, ROUTE):
        assert scoped["client-0"].of(type_url) == unscoped["client-0"].of(type_url)
    assert set(scoped["client-0"].of(LISTENER)) == set(unscoped["client-0"].of(LISTENER))


SPLIT = """
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: cart}
spec: {ports: [{port: 80}], command: [app], calls: [orders]}
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: orders-v1}
spec: {ports: [{port: 80}], command: [app], services: [orders, orders-v1]}
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: orders-v2}
spec: {ports: [{port: 80}], command: [app], services: [orders, orders-v2]}
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: stock}
spec: {ports: [{port: 80}], command: [app]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders-canary}
spec:
  parentRefs: [{kind: Service, group: "", name: orders, port: 80}]
  rules:
    - backendRefs:
        - {name: orders-v1, port: 80, weight: 90}
        - {name: orders-v2, port: 80, weight: 10}
      timeouts: {request: 5s}
"""


def test_the_backends_of_a_called_services_routes_come_with_it() -> None:
    """`cart` calls `orders`, whose route splits to orders-v1 and orders-v2: their clusters
    are part of what cart's requests reach (else the route would name missing clusters)."""
    config, problems = load_config([Source("split.yaml", SPLIT)])
    assert config is not None, problems
    _, snapshots = _snapshots(config)
    cart = snapshots["cart-0"]
    outbound = {c for c in cart.of(CLUSTER) if c.startswith("outbound|80||")}
    assert outbound == {"outbound|80||orders", "outbound|80||orders-v1", "outbound|80||orders-v2"}
    assert _virtual_hosts(cart) == {"orders:80", "unknown"}
