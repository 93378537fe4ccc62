"""proxy-status and proxy-config rendering and exit codes, against a loopback HTTP server
that answers as the admin API does (the e2e tests run them against a real mesh)."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from gossamer.cli import _proxy
from gossamer.cli._proxy import in_sync, render_config, status_text
from gossamer.cli.main import build_parser


def _types(**states: str) -> dict[str, dict[str, Any]]:
    return {
        name: {"state": states.get(name, "SYNCED"), "acked_version": "v1", "sends": 1}
        for name in ("clusters", "endpoints", "listeners", "routes")
    }


def _proxy_row(node: str, kind: str = "sidecar", **states: str) -> dict[str, Any]:
    return {"node": node, "kind": kind, "types": _types(**states)}


NACKED = _proxy_row("client-0", clusters="NACKED")
NACKED["types"]["clusters"].update(
    error="Error adding/updating cluster(s) outbound|80||orders: bad lb_policy",
    rejected_resources=["outbound|80||orders"],
    user_resources=[
        "mesh.yaml (document 2, Workload/orders)",
        "mesh.yaml (document 4, HTTPRoute/site)",
    ],
    nacks=2,
)


def test_the_table_has_a_column_per_type() -> None:
    text = status_text(
        [_proxy_row("client-0"), _proxy_row("ingress.gateway", "gateway", endpoints="NOT_SENT")]
    )
    assert text.splitlines() == [
        "PROXY            KIND     CDS     EDS       LDS     RDS",
        "client-0         sidecar  SYNCED  SYNCED    SYNCED  SYNCED",
        "ingress.gateway  gateway  SYNCED  NOT_SENT  SYNCED  SYNCED",
    ]


def test_a_nack_shows_envoys_message_and_the_users_resources() -> None:
    text = status_text([NACKED, _proxy_row("orders-0", routes="STALE")])
    lines = text.splitlines()
    assert lines[1].split() == ["client-0", "sidecar", "NACKED", "SYNCED", "SYNCED", "SYNCED"]
    assert lines[2].split() == ["orders-0", "sidecar", "SYNCED", "SYNCED", "SYNCED", "STALE"]
    assert lines[4:] == [
        "NACKED client-0 CDS (clusters), rejected 2 times; the proxy keeps its last good "
        "config (version v1)",
        "  envoy: Error adding/updating cluster(s) outbound|80||orders: bad lb_policy",
        "  rejected: outbound|80||orders",
        "  from mesh.yaml (document 2, Workload/orders)",
        "  from mesh.yaml (document 4, HTTPRoute/site)",
        "",
        "2 of 2 proxies not in sync: client-0, orders-0",
        "  STALE: sent, not applied yet; if it lasts, read the proxy's <node>.envoy.log in "
        "the log directory",
    ]


def test_a_nack_that_maps_to_nothing_says_so() -> None:
    row = _proxy_row("client-0", listeners="NACKED")
    row["types"]["listeners"].update(error="boom", rejected_resources=["x"], user_resources=[])
    assert "  (no resource of your config maps to these names)" in status_text([row])


def test_in_sync_means_synced_or_nothing_to_send() -> None:
    assert in_sync(_proxy_row("a", endpoints="NOT_SENT"))
    for state in ("STALE", "NACKED", "DISCONNECTED"):
        assert not in_sync(_proxy_row("a", routes=state))
    assert status_text([]) == "no proxies are running"


def test_yaml_and_json_output_carry_the_same_data() -> None:
    data = {"node": "client-0", "config": {"listeners": {"dynamic_listeners": [{"name": "a|b"}]}}}
    assert yaml.safe_load(render_config(data, "yaml")) == data
    assert json.loads(render_config(data, "json")) == data


# -- the commands, against a loopback server standing in for the admin API ---------------


@pytest.fixture
def api() -> Iterator[dict[str, Any]]:
    """Answers GET paths from ``routes`` (path -> (status, body))."""
    routes: dict[str, tuple[int, Any]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = routes.get(self.path, (404, {"error": "no route"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"routes": routes, "url": f"http://127.0.0.1:{server.server_address[1]}"}
    server.shutdown()
    server.server_close()


def _args(url: str, **extra: Any) -> argparse.Namespace:
    return argparse.Namespace(state_dir="/nonexistent", api=url, **extra)


def test_proxy_status_exits_0_only_when_every_proxy_is_in_sync(
    api: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    api["routes"]["/api/v1/proxies"] = (200, {"proxies": [_proxy_row("client-0")]})
    assert _proxy.proxy_status(_args(api["url"], output="text")) == 0
    assert "client-0" in capsys.readouterr().out
    api["routes"]["/api/v1/proxies"] = (200, {"proxies": [_proxy_row("client-0"), NACKED]})
    assert _proxy.proxy_status(_args(api["url"], output="json")) == 1
    assert json.loads(capsys.readouterr().out)["proxies"][1] == NACKED


def test_proxy_status_without_a_mesh_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert _proxy.proxy_status(_args(url, output="text")) == 3
    assert "is `gossamer up` running?" in capsys.readouterr().err


def test_proxy_config_prints_yaml_and_names_known_proxies_when_unknown(
    api: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {"node": "client-0", "section": "routes", "config": {"routes": {}}}
    api["routes"]["/api/v1/proxies/client-0/config?section=routes"] = (200, answer)
    assert (
        _proxy.proxy_config(_args(api["url"], proxy="client-0", section="routes", output="yaml"))
        == 0
    )
    assert yaml.safe_load(capsys.readouterr().out) == answer
    api["routes"]["/api/v1/proxies/nope/config?section=all"] = (
        404,
        {"error": "no proxy `nope`", "proxies": ["client-0", "orders-0"]},
    )
    assert _proxy.proxy_config(_args(api["url"], proxy="nope", section="all", output="json")) == 1
    assert capsys.readouterr().err.strip() == (
        "error: no proxy `nope` (proxies: client-0, orders-0)"
    )


def test_proxy_config_defaults_to_all_in_yaml_and_refuses_other_sections(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["proxy-config", "client-0"])
    assert (args.proxy, args.section, args.output) == ("client-0", "all", "yaml")
    assert build_parser().parse_args(["proxy-status"]).output == "text"
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["proxy-config", "client-0", "secrets"])
    assert exc.value.code == 2
    assert "invalid choice: 'secrets'" in capsys.readouterr().err
