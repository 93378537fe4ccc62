"""The control plane's apply contract, without processes: all-or-nothing, and only the
proxies whose config changed are notified."""

from __future__ import annotations

from gossamer.api import Source
from gossamer.model import sequential_ports
from gossamer.runtime import ControlPlane, Proposal


def _mesh(weights: tuple[int, int], replicas: int = 1, extra: str = "") -> list[Source]:
    text = f"""
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: client}}
spec:
  command: [sleep, "1"]
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: orders-v1}}
spec:
  services: [orders, orders-v1]
  replicas: {replicas}
  ports: [{{port: 80}}]
  command: [sleep, "1"]
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {{name: orders-v2}}
spec:
  services: [orders, orders-v2]
  ports: [{{port: 80}}]
  command: [sleep, "1"]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: split}}
spec:
  parentRefs: [{{name: orders, port: 80}}]
  rules:
    - backendRefs:
        - {{name: orders-v1, port: 80, weight: {weights[0]}}}
        - {{name: orders-v2, port: 80, weight: {weights[1]}}}
      timeouts: {{request: 5s}}
{extra}"""
    return [Source("mesh.yaml", text)]


def _publish(control: ControlPlane, sources: list[Source]) -> list[str]:
    proposal = control.propose(sources)
    assert isinstance(proposal, Proposal), proposal
    return sorted(control.publish(proposal))


def test_first_publish_reaches_every_proxy_and_an_identical_one_reaches_none() -> None:
    control = ControlPlane(sequential_ports(30000))
    assert _publish(control, _mesh((90, 10))) == ["client-0", "orders-v1-0", "orders-v2-0"]
    assert control.revision.number == 1
    assert _publish(control, _mesh((90, 10))) == []
    assert control.revision.number == 2


def test_new_instances_get_no_traffic_until_they_serve() -> None:
    control = ControlPlane(sequential_ports(30000))
    _publish(control, _mesh((90, 10)))
    assert control.state is not None
    assert control.state.not_serving == {"client-0", "orders-v1-0", "orders-v2-0"}
    changed = control.set_serving("orders-v1-0", True)
    # Every proxy has the orders endpoints, so all of them learn about the new one ...
    assert sorted(changed) == ["client-0", "orders-v1-0", "orders-v2-0"]
    # ... and serving twice changes nothing.
    assert control.set_serving("orders-v1-0", True) == []
    # A scale-up keeps the serving instance serving and adds the new one as not serving.
    _publish(control, _mesh((90, 10), replicas=2))
    assert "orders-v1-0" not in control.state.not_serving
    assert "orders-v1-1" in control.state.not_serving


def test_rejected_change_leaves_state_and_snapshots_untouched() -> None:
    control = ControlPlane(sequential_ports(30000))
    _publish(control, _mesh((90, 10)))
    before = {n: control.cache.get(n) for n in control.cache.nodes()}
    state = control.state
    proposal = control.propose(_mesh((0, 0)))  # all weights zero: GSM0106
    assert not isinstance(proposal, Proposal)
    assert [p.code for p in proposal] == ["GSM0106"]
    control.reject(proposal)
    assert control.state is state
    assert {n: control.cache.get(n) for n in control.cache.nodes()} == before
    assert control.rejection is not None and control.rejection.problems[0].code == "GSM0106"
    # The next good change clears the rejection.
    _publish(control, _mesh((50, 50)))
    assert control.rejection is None


def test_removed_instances_lose_their_snapshot() -> None:
    control = ControlPlane(sequential_ports(30000))
    _publish(control, _mesh((90, 10), replicas=2))
    assert "orders-v1-1" in control.cache.nodes()
    _publish(control, _mesh((90, 10), replicas=1))
    assert "orders-v1-1" not in control.cache.nodes()


def test_nack_maps_back_to_the_users_resources() -> None:
    control = ControlPlane(sequential_ports(30000))
    _publish(control, _mesh((90, 10)))
    origins = control.nack_origins(["outbound|80||orders-v2"])
    assert origins == [
        "mesh.yaml (document 3, Workload/orders-v2)",
        "mesh.yaml (document 4, HTTPRoute/split)",
    ]
