"""Sidecar scoping against a real mesh: `client` declares `calls: [orders]`; its sidecar
routes to orders, has no route or cluster for stock, and treats `stock` like any host the
mesh does not know (the outbound policy decides)."""

from __future__ import annotations

import json
import sys
from typing import Any

from meshkit import ECHO, Mesh, get_via, request_via, workload

from gossamer.translate import EGRESS_DENIED_HEADER, names


def _mesh(policy: str | None = None) -> str:
    client = json.loads(workload("client", port=None, command=["sleep", "100000"]))
    client["spec"]["calls"] = ["orders"]
    docs = [json.dumps(client), workload("orders"), workload("stock")]
    if policy:
        docs.append(
            json.dumps(
                {
                    "apiVersion": "gossamer.dev/v1alpha1",
                    "kind": "Mesh",
                    "metadata": {"name": "mesh"},
                    "spec": {"outboundTrafficPolicy": {"mode": policy}},
                }
            )
        )
    return "\n---\n".join(docs) + "\n"


def _synced(mesh: Mesh) -> None:
    mesh.wait_for(
        lambda s: all(i["proxy"]["synced"] for i in s["instances"]), what="every proxy synced"
    )


def _clusters(mesh: Mesh, proxy: str) -> set[str]:
    out = mesh.cli("proxy-config", proxy, "clusters", "-o", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["config"]["clusters"]
    return {c["cluster"]["name"] for c in data["dynamic_active_clusters"]}


def test_a_scoped_client_reaches_what_it_calls_and_nothing_else(mesh_factory: Any) -> None:
    mesh = mesh_factory(_mesh())
    _synced(mesh)
    proxy = mesh.instance("client-0")["outbound_http_port"]

    status, body = get_via(proxy, "http://orders/x")
    assert status == 200, body
    assert isinstance(body, dict) and body["instance"] == "orders-0"

    # Under AllowAny, `stock` is a host the client's sidecar does not know: it goes to the
    # passthrough, which asks DNS, where a mesh service name does not resolve.
    status, body = get_via(proxy, "http://stock/x")
    assert (status, body) == (503, "DNS resolution failure")

    assert _clusters(mesh, "client-0") & {
        names.outbound_cluster("stock", 80),
        names.outbound_cluster("orders", 80),
    } == {names.outbound_cluster("orders", 80)}
    # The other sidecars are not scoped: orders still has a cluster for stock.
    assert names.outbound_cluster("stock", 80) in _clusters(mesh, "orders-0")


def test_registry_only_refuses_an_uncalled_service(mesh_factory: Any) -> None:
    mesh = mesh_factory(_mesh("RegistryOnly"))
    _synced(mesh)
    proxy = mesh.instance("client-0")["outbound_http_port"]
    assert get_via(proxy, "http://orders/x")[0] == 200
    reply = request_via(proxy, "http://stock/x")
    assert reply.status == 502, reply
    assert reply.headers[EGRESS_DENIED_HEADER] == "denied; policy=RegistryOnly"


FIRST_CALL = """
import os, pathlib, urllib.request
proxy = urllib.request.ProxyHandler({"http": os.environ["HTTP_PROXY"]})
opener = urllib.request.build_opener(proxy)
try:
    status = opener.open("http://orders/first", timeout=10).status
except urllib.error.HTTPError as exc:
    status = exc.code
pathlib.Path("first-call").write_text(str(status))
import time; time.sleep(100000)
"""


def test_an_app_starts_once_what_it_calls_serves(mesh_factory: Any) -> None:
    """`orders` takes 2 s to listen; `client` calls it the moment it starts. With `calls`,
    `up` starts `client`'s app only once orders serves, so that first call succeeds."""
    slow = ["sh", "-c", f"sleep 2; exec {sys.executable} {ECHO}"]
    client = json.loads(workload("client", port=None, command=[sys.executable, "-c", FIRST_CALL]))
    client["spec"]["calls"] = ["orders"]
    mesh = mesh_factory("\n---\n".join([json.dumps(client), workload("orders", command=slow)]))
    first = mesh.dir / "first-call"
    mesh.wait_for(lambda _s: first.exists() and first.read_text(), 20, "client's first call")
    assert first.read_text() == "200"
