"""Ingress gateways under a real `gossamer up`: a Gateway's Envoy on loopback ports, HTTP
and HTTPS listeners, path, host and TLS routing into echo apps, live route edits, a
rejected listener edit, and a clean stop.

One mesh serves the whole module (starting it is the expensive part). The tests run in
file order: the read-only checks first, then the edits (each restores the config), then
the stop.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from meshkit import Mesh, free_port, pid_alive, start_mesh

from gossamer.api import load_config
from gossamer.model import OutboundPolicy
from gossamer.sources import read_sources

ROOT = Path(__file__).resolve().parents[2]
ECHO = Path(__file__).resolve().parent / "echo_app.py"
CERTS = ROOT / "tests" / "translate" / "testdata" / "in" / "certs"
SHOP_YAML = ROOT / "examples" / "shop" / "mesh.yaml"
GATEWAY_API = "gateway.networking.k8s.io/v1"


# -- the mesh under test -------------------------------------------------------------------


def _echo(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gossamer.dev/v1alpha1",
        "kind": "Workload",
        "metadata": {"name": name},
        "spec": {
            "ports": [{"port": 80, "protocol": "http"}],
            "command": [sys.executable, str(ECHO)],
        },
    }


@dataclass
class Ports:
    http: int
    https: int
    https_any: int


def _tls(protocol_listener: dict[str, Any]) -> dict[str, Any]:
    protocol_listener["tls"] = {
        "mode": "Terminate",
        "options": {
            # Relative to mesh.yaml: the files are copied next to it.
            "gossamer.dev/certificate-file": "tls.crt",
            "gossamer.dev/private-key-file": "tls.key",
        },
    }
    return protocol_listener


def _gateway(ports: Ports, extra: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": {"name": "ingress"},
        "spec": {
            "listeners": [
                {"name": "http", "port": ports.http, "protocol": "HTTP"},
                # HTTPS for shop.example: a filter chain selected by SNI.
                _tls(
                    {
                        "name": "https",
                        "port": ports.https,
                        "protocol": "HTTPS",
                        "hostname": "shop.example",
                    }
                ),
                # HTTPS without a hostname: one filter chain for every SNI.
                _tls({"name": "https-any", "port": ports.https_any, "protocol": "HTTPS"}),
                *extra,
            ]
        },
    }


def _route(
    name: str, sections: list[str], rules: list[dict[str, Any]], hostnames: list[str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "ingress",
                "sectionName": section,
            }
            for section in sections
        ],
        "rules": rules,
    }
    if hostnames:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": spec,
    }


def _to(backend: str, prefix: str = "/", rewrite: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
        "backendRefs": [{"name": backend, "port": 80}],
        "timeouts": {"request": "5s"},
    }
    if rewrite is not None:
        rule["filters"] = [
            {
                "type": "URLRewrite",
                "urlRewrite": {
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": rewrite}
                },
            }
        ]
    return rule


def mesh_text(
    ports: Ports,
    *,
    site_default: str = "web",
    extra_listeners: list[dict[str, Any]] | None = None,
) -> str:
    docs = [
        _gateway(ports, extra_listeners or []),
        _echo("web"),
        _echo("api"),
        # Path routing on the HTTP listener for shop.example: /api/... to api, with /api
        # stripped; the rest to web.
        _route(
            "site",
            ["http"],
            [_to("api", "/api", rewrite="/"), _to(site_default)],
            hostnames=["shop.example"],
        ),
        # Host routing on the same listener: admin.shop.example goes to api, path as is.
        _route("admin", ["http"], [_to("api")], hostnames=["admin.shop.example"]),
        # The HTTPS listeners have their own route.
        _route(
            "secure",
            ["https", "https-any"],
            [_to("api", "/secure", rewrite="/checkout"), _to("web")],
            hostnames=["shop.example"],
        ),
    ]
    return "\n---\n".join(json.dumps(d) for d in docs) + "\n"


@dataclass
class Env:
    mesh: Mesh
    ports: Ports


def _gateway_pids(mesh: Mesh) -> set[int]:
    return {g["envoy_pid"] for g in mesh.status()["gateways"] if g["envoy_pid"]}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("gateway") / "mesh"
    base.mkdir()
    for name in ("tls.crt", "tls.key"):
        shutil.copy(CERTS / name, base / name)
    ports = Ports(free_port(), free_port(), free_port())
    mesh = start_mesh(base, mesh_text(ports))
    try:
        yield Env(mesh, ports)
    finally:
        with contextlib.suppress(Exception):
            mesh.pids_seen |= _gateway_pids(mesh)
        with contextlib.suppress(Exception):
            mesh.stop(signal.SIGTERM)
        for pid in mesh.pids_seen:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


# -- clients -------------------------------------------------------------------------------


def _json(status: int, body: str) -> tuple[int, Any]:
    with contextlib.suppress(ValueError):
        return status, json.loads(body)
    return status, body


def http_get(port: int, path: str, host: str) -> tuple[int, Any]:
    """A plain request to the gateway on 127.0.0.1 with the given Host header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return _json(resp.status, resp.read().decode())
    finally:
        conn.close()


def https_get(
    port: int, path: str, sni: str = "shop.example", host: str | None = None
) -> tuple[int, Any, bytes]:
    """An HTTPS request to 127.0.0.1 with SNI ``sni``, verified against the test cert (its
    hostname checked against ``sni``). The Host header is ``host`` (default: sni:port).
    Returns status, body and the certificate the gateway presented (DER)."""
    ctx = ssl.create_default_context(cafile=str(CERTS / "tls.crt"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        tls = ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise
    cert = tls.getpeercert(binary_form=True)
    assert cert is not None
    conn = http.client.HTTPConnection(sni, port, timeout=10)
    conn.sock = tls  # already connected and verified
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        resp = conn.getresponse()
        status, body = _json(resp.status, resp.read().decode())
    finally:
        conn.close()
    return status, body, cert


def served(status_body: tuple[int, Any]) -> tuple[int, str, str]:
    """(status, which app, the path it saw)."""
    status, body = status_body
    assert isinstance(body, dict), (status, body)
    return status, body["workload"], body["path"]


TEST_CERT = ssl.PEM_cert_to_DER_cert((CERTS / "tls.crt").read_text())


# -- read-only checks ------------------------------------------------------------------------


def test_path_routing_with_prefix_rewrite(env: Env) -> None:
    port = env.ports.http
    assert served(http_get(port, "/", "shop.example")) == (200, "web", "/")
    assert served(http_get(port, "/products/7", "shop.example")) == (200, "web", "/products/7")
    # ReplacePrefixMatch /api -> / strips the prefix on whole path elements.
    assert served(http_get(port, "/api/items", "shop.example")) == (200, "api", "/items")
    assert served(http_get(port, "/api", "shop.example")) == (200, "api", "/")
    # /apix is not under /api.
    assert served(http_get(port, "/apix", "shop.example")) == (200, "web", "/apix")
    # The query string survives the rewrite; a Host header with the port matches too.
    status, body = http_get(port, "/api/items?x=1", f"shop.example:{port}")
    assert (status, body["workload"], body["path"], body["query"]) == (200, "api", "/items", "x=1")


def test_host_header_selects_the_host_route(env: Env) -> None:
    port = env.ports.http
    assert served(http_get(port, "/users", "admin.shop.example")) == (200, "api", "/users")
    # The admin route has no rewrite: /api/... arrives unchanged.
    assert served(http_get(port, "/api/x", "admin.shop.example")) == (200, "api", "/api/x")
    assert served(http_get(port, "/users", f"admin.shop.example:{port}")) == (
        200,
        "api",
        "/users",
    )
    # The same path on shop.example is the site route's.
    assert served(http_get(port, "/users", "shop.example")) == (200, "web", "/users")


def test_unknown_host_gets_the_gateway_404(env: Env) -> None:
    for host in ("unknown.example", "www.shop.example", "127.0.0.1"):
        status, body = http_get(env.ports.http, "/", host)
        assert status == 404, (host, body)
        assert body == "gossamer: gateway ingress has no route for this host\n"
    status, body, _ = https_get(env.ports.https_any, "/", host="unknown.example")
    assert status == 404
    assert "gateway ingress has no route for this host" in body


def test_https_terminates_tls_with_the_test_certificate(env: Env) -> None:
    """The listener without a hostname: one filter chain, whatever the SNI."""
    status, body, cert = https_get(env.ports.https_any, "/secure/42")
    assert cert == TEST_CERT
    assert status == 200, body
    assert (body["workload"], body["path"]) == ("api", "/checkout/42")
    assert body["headers"]["x-forwarded-proto"] == "https"
    status, body, _ = https_get(env.ports.https_any, "/home")
    assert (status, body["workload"], body["path"]) == (200, "web", "/home")
    # The certificate also covers *.shop.example; that host has no route here.
    assert https_get(env.ports.https_any, "/", sni="a.shop.example")[0] == 404


def test_https_listener_with_hostname_selects_its_chain_by_sni(env: Env) -> None:
    status, body, cert = https_get(env.ports.https, "/secure/42", sni="shop.example")
    assert cert == TEST_CERT
    assert status == 200, body
    assert (body["workload"], body["path"]) == ("api", "/checkout/42")
    # Another name gets no filter chain on this listener: no TLS at all.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(env.ports.https, "/", sni="localhost")


def test_status_shows_the_gateway_running_and_synced(env: Env) -> None:
    out = env.mesh.cli("status", "-o", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    [gateway] = json.loads(out.stdout)["gateways"]
    assert gateway["name"] == "ingress"
    assert gateway["state"] == "running"
    assert gateway["proxy"]["synced"] is True
    assert gateway["proxy"]["connected"] is True
    assert pid_alive(gateway["envoy_pid"])
    assert [(lst["name"], lst["port"], lst["protocol"]) for lst in gateway["listeners"]] == [
        ("http", env.ports.http, "HTTP"),
        ("https", env.ports.https, "HTTPS"),
        ("https-any", env.ports.https_any, "HTTPS"),
    ]
    table = env.mesh.cli("status")
    row = next(line for line in table.stdout.splitlines() if "ingress.gateway" in line)
    assert f"http {env.ports.http}" in row and "running" in row


# -- edits -----------------------------------------------------------------------------------


def _wait_applied(mesh: Mesh, revision: int) -> None:
    mesh.wait_for(lambda s: s["revision"] > revision, what=f"revision > {revision}")
    mesh.wait_for(
        lambda s: (
            all(g["proxy"]["synced"] for g in s["gateways"])
            and all(i["proxy"]["synced"] for i in s["instances"])
        ),
        what="every proxy synced",
    )


def test_route_edit_reroutes_live_without_restarting_the_gateway(env: Env) -> None:
    mesh, port = env.mesh, env.ports.http
    [before] = mesh.status()["gateways"]
    assert served(http_get(port, "/page", "shop.example"))[1] == "web"

    revision = mesh.edit(mesh_text(env.ports, site_default="api"))
    _wait_applied(mesh, revision)
    assert served(http_get(port, "/page", "shop.example")) == (200, "api", "/page")
    [after] = mesh.status()["gateways"]
    assert after["envoy_pid"] == before["envoy_pid"]
    assert after["envoy_restarts"] == before["envoy_restarts"]

    revision = mesh.edit(mesh_text(env.ports))
    _wait_applied(mesh, revision)
    assert served(http_get(port, "/page", "shop.example")) == (200, "web", "/page")
    assert mesh.status()["gateways"][0]["envoy_pid"] == before["envoy_pid"]


def test_listener_on_a_port_in_use_is_rejected_and_the_gateway_keeps_serving(env: Env) -> None:
    mesh = env.mesh
    revision = mesh.status()["revision"]
    pid = mesh.status()["gateways"][0]["envoy_pid"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        extra = [{"name": "extra", "port": busy, "protocol": "HTTP"}]
        mesh.config.write_text(mesh_text(env.ports, extra_listeners=extra))
        rejected = mesh.wait_for(lambda s: s["rejected"], what="rejection")
        [problem] = rejected["problems"]
        assert problem["code"] == "GSM0206"
        assert problem["resource"] == "Gateway/ingress"
        assert problem["field"] == "spec.listeners[3].port"
        assert str(busy) in problem["message"]
        assert problem["file"].endswith("mesh.yaml")
        # Nothing changed: same revision, same Envoy, same routing.
        st = mesh.status()
        assert st["revision"] == revision
        assert st["gateways"][0]["envoy_pid"] == pid
        listeners = [lst["name"] for lst in st["gateways"][0]["listeners"]]
        assert listeners == ["http", "https", "https-any"]
        assert served(http_get(env.ports.http, "/api/a", "shop.example")) == (200, "api", "/a")
        assert https_get(env.ports.https_any, "/x")[0] == 200
    # Restore the good config (the same as the running one: no new revision needed).
    mesh.config.write_text(mesh_text(env.ports))
    mesh.wait_for(lambda s: s["rejected"] is None, what="rejection cleared")


# -- stop (last: it ends the module's mesh) -------------------------------------------------


def test_sigterm_leaves_no_gateway_envoy_running(env: Env) -> None:
    mesh = env.mesh
    gateway_pids = _gateway_pids(mesh)
    mesh.pids_seen |= gateway_pids
    assert len(gateway_pids) == 1
    assert all(pid_alive(p) for p in gateway_pids)
    assert mesh.stop(signal.SIGTERM) == 0
    assert [p for p in mesh.pids_seen if pid_alive(p)] == []
    with socket.socket() as s:  # the listener ports are free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", env.ports.http))


# -- the demo's config (no processes) -------------------------------------------------------


def test_shop_example_declares_the_gateway_and_registry_only() -> None:
    config, problems = load_config(read_sources(SHOP_YAML))
    assert config is not None, problems
    assert [p for p in problems if p.severity.value == "error"] == []
    [gateway] = config.gateways
    assert gateway.name == "shop"
    assert [(lst.port, lst.protocol.value) for lst in gateway.listeners] == [(8080, "HTTP")]
    assert config.settings.outbound_policy is OutboundPolicy.REGISTRY_ONLY
    assert config.settings.default_request_timeout_ms == 10_000
    [route] = [r for r in config.routes if any(p.name == "shop" for p in r.parents)]
    targets = {
        rule.matches[0].path.value: (
            rule.backends[0].service,
            rule.rewrite.path.value if rule.rewrite and rule.rewrite.path else None,
            rule.timeouts.request_ms,
        )
        for rule in route.rules
    }
    assert targets["/api/catalog"][:2] == ("catalog", "/items")
    assert targets["/api/cart"][:2] == ("cart", "/cart")
    assert targets["/"][:2] == ("web", None)
    assert all(t[2] is not None for t in targets.values())  # explicit timeouts
