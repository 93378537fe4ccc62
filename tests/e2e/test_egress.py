"""Egress: declared external services, and the mesh-wide policy for undeclared hosts."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from meshkit import canary_mesh, get_via

from gossamer.translate import EGRESS_DENIED_HEADER


def _mesh(policy: str | None, app_port: int | None = None) -> str:
    docs = [canary_mesh({"orders-v1": 1, "orders-v2": 0})]
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
    if app_port:
        docs.append(
            json.dumps(
                {
                    "apiVersion": "gossamer.dev/v1alpha1",
                    "kind": "ExternalService",
                    "metadata": {"name": "payments"},
                    "spec": {
                        "hosts": ["payments.example"],
                        "addresses": ["127.0.0.1"],
                        "ports": [{"port": 80, "protocol": "http", "targetPort": app_port}],
                    },
                }
            )
        )
    return "\n---\n".join(docs) + "\n"


def _outside(mesh: Any) -> int:
    """A server the mesh does not know by name: orders-v1-0's app port, called directly."""
    return int(mesh.instance("orders-v1-0")["app_ports"]["80"])


def test_allow_any_forwards_undeclared_hosts(mesh_factory: Any) -> None:
    mesh = mesh_factory(_mesh(None))
    proxy = mesh.instance("client-0")["outbound_http_port"]
    status, body = get_via(proxy, f"http://localhost:{_outside(mesh)}/x")
    assert status == 200, body
    assert isinstance(body, dict) and body["instance"] == "orders-v1-0"


def test_registry_only_denies_undeclared_hosts_and_allows_declared_ones(
    mesh_factory: Any,
) -> None:
    mesh = mesh_factory(_mesh("RegistryOnly"))
    proxy = mesh.instance("client-0")["outbound_http_port"]
    outside = _outside(mesh)
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy}"})
    )
    try:
        opener.open(f"http://localhost:{outside}/x", timeout=10)
        raise AssertionError("an undeclared host was reachable under RegistryOnly")
    except urllib.error.HTTPError as exc:
        assert exc.code == 502
        assert exc.headers[EGRESS_DENIED_HEADER] == "denied; policy=RegistryOnly"
        assert "egress denied" in exc.read().decode()
    # Mesh services still work.
    assert get_via(proxy, "http://orders/")[0] == 200
    # Declaring the destination makes it reachable by its name, live.
    revision = mesh.edit(_mesh("RegistryOnly", outside))
    mesh.wait_for(lambda s: s["revision"] > revision, what="ExternalService applied")
    mesh.wait_for(lambda s: all(i["proxy"]["synced"] for i in s["instances"]), what="synced")
    status, body = get_via(proxy, "http://payments.example/pay")
    assert status == 200, body
    assert isinstance(body, dict) and body["path"] == "/pay"


CERTS = Path(__file__).resolve().parents[1] / "translate" / "testdata" / "in" / "certs"


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"tls": True, "path": self.path, "host": self.headers["host"]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _tls_server() -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERTS / "tls.crt", CERTS / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def _tls_external(port: int, ca_file: Path) -> str:
    return json.dumps(
        {
            "apiVersion": "gossamer.dev/v1alpha1",
            "kind": "ExternalService",
            "metadata": {"name": "secure"},
            "spec": {
                "hosts": ["shop.example"],
                "addresses": ["127.0.0.1"],
                "ports": [
                    {
                        "port": 80,
                        "protocol": "http",
                        "targetPort": port,
                        "tls": {"mode": "Originate", "caFile": str(ca_file)},
                    }
                ],
            },
        }
    )


def test_tls_origination_to_an_external_service(mesh_factory: Any, tmp_path: Path) -> None:
    server, port = _tls_server()
    try:
        mesh = mesh_factory(
            _mesh("RegistryOnly") + "---\n" + _tls_external(port, CERTS / "tls.crt")
        )
        proxy = mesh.instance("client-0")["outbound_http_port"]
        # The app speaks plain HTTP to its sidecar; the sidecar speaks TLS (SNI and
        # certificate checked against the CA file) to the external service.
        status, body = get_via(proxy, "http://shop.example/secure")
        assert status == 200, body
        assert isinstance(body, dict) and body["tls"] is True and body["path"] == "/secure"
        # With a CA that did not sign the server's certificate, nothing gets through.
        other_ca = tmp_path / "other-ca.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(tmp_path / "k.pem"),
                "-out",
                str(other_ca),
                "-days",
                "1",
                "-subj",
                "/CN=other",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        revision = mesh.edit(_mesh("RegistryOnly") + "---\n" + _tls_external(port, other_ca))
        mesh.wait_for(lambda s: s["revision"] > revision, what="new CA applied")
        mesh.wait_for(lambda s: all(i["proxy"]["synced"] for i in s["instances"]), what="synced")
        status, _ = get_via(proxy, "http://shop.example/secure")
        assert status == 503
    finally:
        server.shutdown()
