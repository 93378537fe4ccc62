"""The xDS server against a real Envoy, in-process: ACKs, NACKs and no resend loop.

Envoy is real; the snapshot with a bad resource is made by hand (our own seam), because
translation never produces one on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from meshkit import canary_mesh, config_dump

from gossamer.api import Source, load_config
from gossamer.model import MeshState, place
from gossamer.runtime import PortAllocator
from gossamer.sidecar import bootstrap, envoy_command
from gossamer.translate import CLUSTER, LISTENER, Resource, Snapshot, translate
from gossamer.xds import SnapshotCache, StatusBook, XdsServer

NODE = "client-0"


def _state(weights: dict[str, int], first_port: int) -> MeshState:
    config, problems = load_config([Source("mesh.yaml", canary_mesh(weights))])
    assert config is not None, problems
    return MeshState(config, place(config, None, PortAllocator(first_port)))


def _with_broken_cluster(snapshot: Snapshot, name: str) -> Snapshot:
    by_type = {t: list(snapshot.of(t).values()) for t in snapshot.resources}
    by_type[CLUSTER] = [
        # Valid protobuf that Envoy's cluster manager refuses for an EDS cluster.
        Resource(r.name, {**r.body, "lb_policy": "CLUSTER_PROVIDED"}) if r.name == name else r
        for r in by_type[CLUSTER]
    ]
    return Snapshot.build(by_type)


def _lb_policies(admin_port: int) -> dict[str, str]:
    """Active clusters' load-balancing policy (proto3 JSON omits the ROUND_ROBIN default)."""
    out = {}
    for section in config_dump(admin_port)["configs"]:
        for entry in section.get("dynamic_active_clusters", []):
            cluster = entry["cluster"]
            out[cluster["name"]] = cluster.get("lb_policy", "ROUND_ROBIN")
    return out


async def _until(predicate: Any, within_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("api", ["sotw", "delta"])
async def test_nack_keeps_last_good_config_and_is_not_resent(api: str, tmp_path: Path) -> None:
    first_port = 24000 if api == "sotw" else 24200
    state = _state({"orders-v1": 1, "orders-v2": 0}, first_port)
    instance = state.instance(NODE)
    assert instance is not None
    cache = SnapshotCache()
    book = StatusBook(cache)
    server = XdsServer(cache, book)
    xds_port = await server.start("127.0.0.1", 0)
    good = translate(state, NODE)
    cache.set(NODE, good)
    config = tmp_path / "envoy.json"
    config.write_text(
        json.dumps(
            bootstrap(
                node_id=NODE,
                cluster="client",
                admin_port=instance.admin_port,
                xds_host="127.0.0.1",
                xds_port=xds_port,
                api=api,  # type: ignore[arg-type]
            )
        )
    )
    (tmp_path / "access").mkdir()  # access logs go to access/<node>.log, like under `up`
    envoy = await asyncio.create_subprocess_exec(
        *envoy_command(str(config)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        await _until(lambda: book.synced(NODE))
        proxy = book.proxy(NODE)
        assert proxy is not None and proxy.api == api
        listeners = [
            e["active_state"]["listener"]["name"]
            for s in config_dump(instance.admin_port)["configs"]
            for e in s.get("dynamic_listeners", [])
        ]
        assert "outbound|http" in listeners
        assert _lb_policies(instance.admin_port)["outbound|80||orders"] == "ROUND_ROBIN"

        bad = _with_broken_cluster(good, "outbound|80||orders")
        assert cache.set(NODE, bad)
        cds = proxy.types[CLUSTER]
        await _until(lambda: cds.nacked_version == bad.versions[CLUSTER])
        assert "outbound|80||orders" in cds.error
        assert cds.rejected_resources == ("outbound|80||orders",)
        summary = book.summary(NODE)
        assert summary["types"]["clusters"]["state"] == "NACKED"  # type: ignore[index]
        sends_after_nack = cds.sends
        await asyncio.sleep(1.5)
        # Not resent in a loop, and Envoy kept its last good cluster.
        assert cds.sends == sends_after_nack
        assert _lb_policies(instance.admin_port)["outbound|80||orders"] == "ROUND_ROBIN"
        assert not book.synced(NODE)

        # Listeners are independent of the rejected cluster and still applied.
        assert book.summary(NODE)["types"]["listeners"]["state"] == "SYNCED"  # type: ignore[index]
        assert LISTENER in proxy.types

        # A corrected model is sent and applied; the NACK clears.
        fixed = translate(_state({"orders-v1": 1, "orders-v2": 1}, first_port), NODE)
        assert cache.set(NODE, fixed)
        await _until(lambda: book.synced(NODE))
        assert cds.error == ""
        assert book.summary(NODE)["types"]["clusters"]["state"] == "SYNCED"  # type: ignore[index]
    finally:
        with contextlib.suppress(ProcessLookupError):
            envoy.terminate()
        await envoy.wait()
        await server.stop(0)
