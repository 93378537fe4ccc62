"""The standby control plane serves exactly the snapshots `up` serves, from what `up`
recorded in its state directory."""

from __future__ import annotations

from pathlib import Path

from gossamer.api import Source
from gossamer.model import sequential_ports
from gossamer.runtime import ControlPlane, Proposal
from gossamer.runtime._leftovers import Leftovers, write_leftovers
from gossamer.runtime._replica import Replica, ReplicaOptions
from gossamer.runtime._store import ConfigStore

MESH = """
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: client}
spec: {command: [sleep, "1"]}
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: orders}
spec: {ports: [{port: 80}], command: [sleep, "1"], replicas: 2}
"""


def test_the_standby_serves_the_primarys_snapshots(tmp_path: Path) -> None:
    sources = [Source("mesh.yaml", MESH, str(tmp_path))]
    primary = ControlPlane(sequential_ports(30000))
    primary.attached = {"orders-run1": "orders"}  # one joined with `gossamer run`
    proposal = primary.propose(sources)
    assert isinstance(proposal, Proposal)
    primary.publish(proposal, 1)
    primary.set_serving("orders-0", True)
    primary.set_serving("client-0", True)  # orders-1 is still starting: no endpoint yet
    state = primary.state
    assert state is not None
    joined = state.instance("orders-run1")
    assert joined is not None
    store = ConfigStore(tmp_path / "config.db")
    store.commit(sources, author="t", message="m", changes={})
    replica = Replica(ReplicaOptions(tmp_path, 1, 2, 3))
    assert not replica.refresh()  # nothing recorded by `up` yet
    record = Leftovers(
        pid=1,
        revision=1,
        instances={i.name: i for i in state.instances if i.name != "orders-run1"},
        pids={},
        not_serving=sorted(state.not_serving),
        gateways={},
        joined={"orders-run1": joined},
    )
    write_leftovers(tmp_path, record)
    assert replica.refresh()
    assert "orders-run1" in replica.control.snapshots()
    for node, snapshot in primary.snapshots().items():
        mirrored = replica.control.cache.get(node)
        assert mirrored is not None and mirrored.version == snapshot.version, node
    assert not replica.refresh()  # unchanged
    # A record of a revision the store does not hold yet is not served.
    record.revision = 2
    record.not_serving = []
    write_leftovers(tmp_path, record)
    assert not replica.refresh()
    store.close()
    replica.store.close()
