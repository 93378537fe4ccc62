"""The route simulator agrees with the real Envoy on which route a request takes.

One Envoy, two listeners, route configurations made only of direct responses (each route
answers with its own name) and redirects, so no upstream is needed. Every described
request goes to Envoy and to ``simulate``; the status, the route (by body) and, for
redirects, the rewritten path in ``Location`` must agree.
"""

from __future__ import annotations

import copy
import http.client
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gossamer.sidecar import envoy_path
from gossamer.translate import LISTENER, ROUTE, Resource, Snapshot, _simulate, static_bootstrap
from gossamer.translate._simulate import SimRequest, simulate

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def dr(name: str, **match: Any) -> Json:
    body = {"inline_string": name}
    return {"name": name, "match": match, "direct_response": {"status": 200, "body": body}}


def redirect(name: str, redirect: Json, **match: Any) -> Json:
    return {"name": name, "match": match, "redirect": redirect}


def vh(name: str, domains: list[str], *routes: Json) -> Json:
    return {"name": name, "domains": domains, "routes": list(routes)}


def hdr(name: str, **spec: Any) -> Json:
    return {"name": name, **spec}


MAIN: Json = {
    "name": "main",
    "virtual_hosts": [
        vh(
            "exact",
            ["www.foo.com", "api:80", "api"],
            dr("exact/path", path="/exact"),
            dr("exact/psp", path_separated_prefix="/api"),
            dr("exact/ci", prefix="/CI", case_sensitive=False),
            dr("exact/regex", safe_regex={"regex": "/items/[0-9]+"}),
            dr("exact/method", prefix="/m", headers=[hdr(":method", exact_match="POST")]),
            dr("exact/h-regex", prefix="/h1", headers=[
                hdr("x-ver", string_match={"safe_regex": {"regex": "v[0-9]+"}})]),
            dr("exact/h-invert", prefix="/h2", headers=[
                hdr("x-env", string_match={"exact": "prod"}, invert_match=True)]),
            dr("exact/h-absent", prefix="/h3", headers=[hdr("x-debug", present_match=False)]),
            dr("exact/h-icase", prefix="/h4", headers=[
                hdr("X-Team", string_match={"prefix": "pay", "ignore_case": True})]),
            dr("exact/h-range", prefix="/h5", headers=[
                hdr("x-n", range_match={"start": "1", "end": "10"})]),
            dr("exact/h-host", prefix="/h6", headers=[hdr("host", string_match={"exact": "api"})]),
            dr("exact/h-missing-empty", prefix="/h7", headers=[
                hdr("x-a", string_match={"exact": "1"}, invert_match=True,
                    treat_missing_header_as_empty=True)]),
            dr("exact/query", prefix="/q", query_parameters=[
                {"name": "k", "string_match": {"exact": "a%20b"}}]),
            dr("exact/query-present", prefix="/q", query_parameters=[
                {"name": "flag", "present_match": True}]),
            dr("exact/grpc", prefix="/g", grpc={}),
            {"name": "exact/by-header", "match": {"prefix": "/ch"},
             "route": {"cluster_header": "x-cluster"}},
            {"name": "exact/by-header-404", "match": {"prefix": "/cx"},
             "route": {"cluster_header": "x-cluster",
                       "cluster_not_found_response_code": "NOT_FOUND"}},
            redirect("exact/redirect-301", {"path_redirect": "/moved"}, path="/r0"),
            redirect("exact/redirect-302", {"prefix_rewrite": "/new", "response_code": "FOUND"},
                     prefix="/r1"),
            redirect("exact/redirect-303", {"response_code": "SEE_OTHER", "regex_rewrite": {
                "pattern": {"regex": "^/r3/([^/]+)/(.*)$"}, "substitution": "/\\2/\\1"}},
                     prefix="/r3"),
            redirect("exact/redirect-307", {"response_code": "TEMPORARY_REDIRECT",
                                            "regex_rewrite": {"pattern": {"regex": "z*"},
                                                              "substitution": "/"}},
                     prefix="/zz"),
            redirect("exact/redirect-308", {"response_code": "PERMANENT_REDIRECT",
                                            "prefix_rewrite": "/v2"},
                     path_separated_prefix="/r8"),
        ),
        vh("suffix-short", ["*.foo.com"], dr("suffix-short/all", prefix="/")),
        vh("suffix-long", ["*-bar.foo.com"], dr("suffix-long/all", prefix="/")),
        vh("prefix-short", ["foo.*"], dr("prefix-short/all", prefix="/")),
        vh("prefix-long", ["foo.bar.*"], dr("prefix-long/all", prefix="/")),
        vh("catch-all", ["*"], dr("catch-all/root", path="/")),
    ],
}  # fmt: skip

STRICT: Json = {
    "name": "strict",
    "ignore_port_in_host_matching": True,
    "virtual_hosts": [vh("only", ["only.example"], dr("only/all", prefix="/"))],
}


@dataclass(frozen=True)
class Case:
    config: Json
    request: SimRequest


def case(
    authority: str, path: str = "/", method: str = "GET", config: Json = MAIN, **headers: str
) -> Case:
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return Case(config, SimRequest(authority, path, method, hdrs))


CASES = [
    # Virtual hosts: exact, wildcards longest first, catch-all, ports, case.
    case("www.foo.com", "/exact"),
    case("WWW.FOO.com", "/exact"),
    case("api:80", "/exact"),
    case("api:8080", "/"),
    case("www.foo.com:80", "/"),
    case("a.foo.com"),
    case("baz-bar.foo.com"),
    case("-bar.foo.com"),
    case(".foo.com", "/"),
    case("foo.x"),
    case("foo.bar.x"),
    case("foo.x:80"),
    case("a.foo.com:80", "/"),
    case("elsewhere", "/"),
    case("elsewhere", "/nothing"),
    case("only.example", config=STRICT),
    case("only.example:123", "/x", config=STRICT),
    case("other", config=STRICT),
    # Paths.
    case("api", "/exact?x=1"),
    case("api", "/exact/"),
    case("api", "/api"),
    case("api", "/api/x?y=1"),
    case("api", "/apix"),
    case("api", "/ci/deep"),
    case("api", "/items/42"),
    case("api", "/items/42?page=2"),
    case("api", "/items/42/x"),
    # Headers, method, query, grpc.
    case("api", "/m", "POST"),
    case("api", "/m", "GET"),
    case("api", "/h1", x_ver="v12"),
    case("api", "/h1", x_ver="v12x"),
    case("api", "/h2", x_env="dev"),
    case("api", "/h2", x_env="prod"),
    case("api", "/h2"),
    case("api", "/h3"),
    case("api", "/h3", x_debug="1"),
    case("api", "/h4", x_team="PAYMENTS"),
    case("api", "/h5", x_n="9"),
    case("api", "/h5", x_n="10"),
    case("api", "/h6"),
    case("api:80", "/h6"),
    case("api", "/h7"),
    case("api", "/h7", x_a="1"),
    case("api", "/q?k=a%20b"),
    case("api", "/q?k=a+b"),
    case("api", "/q?k=x&k=a%20b"),
    case("api", "/q?flag"),
    case("api", "/q?other=1"),
    case("api", "/g", "POST", content_type="application/grpc"),
    case("api", "/g", "POST", content_type="application/grpc-web"),
    case("api", "/nothing", "POST", content_type="application/grpc"),
    case("api", "/ch"),  # cluster_header without the header: 503...
    case("api", "/cx"),  # ...or cluster_not_found_response_code
    # Redirects: codes and rewritten paths.
    case("api", "/r0?x"),
    case("api", "/r1/a?q=1"),
    case("api", "/r3/one/two/three?q"),
    case("api", "/zz"),
    case("api", "/r8/x"),
    case("api", "/r8x"),
]


def as_route_action(config: Json) -> Json:
    """The same configuration with every redirect turned into a route with its rewrite."""
    copied = copy.deepcopy(config)
    for vhost in copied["virtual_hosts"]:
        for route in vhost["routes"]:
            if "redirect" in route:
                rewrite = {
                    k: v
                    for k, v in route.pop("redirect").items()
                    if k in ("prefix_rewrite", "regex_rewrite")
                }
                route["route"] = {"cluster": "c", **rewrite}
    return copied


def listener(name: str, route_config: str) -> Resource:
    rds = {"route_config_name": route_config, "config_source": {"ads": {}}}
    hcm = {
        "@type": HCM,
        "stat_prefix": name,
        "rds": rds,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    filters = [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    body = {"name": name, "address": address, "filter_chains": [{"filters": filters}]}
    return Resource(name, body)  # fmt: skip


@pytest.fixture(scope="module")
def envoy_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Start Envoy; yield the listener port for each route configuration's name."""
    snapshot = Snapshot.build(
        {
            LISTENER: [listener("main", "main"), listener("strict", "strict")],
            ROUTE: [Resource("main", MAIN), Resource("strict", STRICT)],
        }
    )
    bootstrap = static_bootstrap(snapshot, "simulate-vs-envoy")
    bootstrap["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    tmp = tmp_path_factory.mktemp("envoy")
    config_path, admin_path = tmp / "bootstrap.json", tmp / "admin.txt"
    config_path.write_text(json.dumps(bootstrap))
    log = (tmp / "envoy.log").open("w")
    proc = subprocess.Popen(
        [envoy_path(), "-c", str(config_path), "--disable-hot-restart", "--concurrency", "1",
         "--admin-address-path", str(admin_path), "-l", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield _wait_for_listeners(proc, admin_path, tmp / "envoy.log")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for_listeners(
    proc: subprocess.Popen[bytes], admin_path: Path, log: Path
) -> dict[str, int]:
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"envoy exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if admin_path.exists() and admin_path.read_text().strip():
            admin = admin_path.read_text().strip()
            try:
                with urllib.request.urlopen(f"http://{admin}/ready", timeout=1) as r:
                    ready = r.read().strip() == b"LIVE"
                if ready:
                    with urllib.request.urlopen(
                        f"http://{admin}/listeners?format=json", timeout=1
                    ) as r:
                        statuses = json.load(r)["listener_statuses"]
                    return {
                        s["name"]: int(s["local_address"]["socket_address"]["port_value"])
                        for s in statuses
                    }
            except OSError:
                pass
        time.sleep(0.05)
    pytest.fail(f"envoy did not become ready:\n{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    location: str | None


def send(port: int, request: SimRequest) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", request.authority)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        if request.method == "POST":
            conn.putheader("Content-Length", "0")
        conn.endheaders()
        response = conn.getresponse()
        status, body = response.status, response.read().decode()
        if response.getheader("content-type") == "application/grpc":
            # Envoy turns a local reply to a gRPC request into HTTP 200 with grpc-status
            # (404 becomes 12, UNIMPLEMENTED) and puts the body in grpc-message.
            body = response.getheader("grpc-message", "")
            status = 404 if response.getheader("grpc-status") == "12" else status
        return Answer(status, body, response.getheader("location"))
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ["re2", "re"])
def test_simulator_agrees_with_envoy(
    envoy_ports: dict[str, int], engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With google-re2 (when installed) and with the ``re`` fallback."""
    monkeypatch.setattr(_simulate, "_RE2", pytest.importorskip("re2") if engine == "re2" else None)
    disagreements = []
    for c in CASES:
        got = send(envoy_ports[c.config["name"]], c.request)
        sim = simulate(c.config, c.request)
        problems = []
        if got.status != sim.status:
            problems.append(f"status: envoy {got.status}, simulate {sim.status}")
        if sim.direct_response is not None and got.body != sim.route:
            problems.append(f"route: envoy {got.body!r}, simulate {sim.route!r}")
        if sim.route is None and got.body != "":
            problems.append(f"route: envoy {got.body!r}, simulate none")
        if sim.redirect is not None:
            rewritten = simulate(as_route_action(c.config), c.request).rewritten_path
            if rewritten is not None:
                parts = urlsplit(got.location or "")
                location_path = parts.path + (f"?{parts.query}" if parts.query else "")
                if location_path != rewritten:
                    problems.append(f"rewrite: envoy {got.location!r}, simulate {rewritten!r}")
        if problems:
            disagreements.append(f"{c.request}: {'; '.join(problems)}")
    assert not disagreements, "\n".join(disagreements)


def test_cases_cover_every_outcome() -> None:
    """The comparison is only as good as its cases: each route and a 404 of each kind."""
    results = [simulate(c.config, c.request) for c in CASES]
    taken = {r.route for r in results}
    declared = {
        r["name"] for cfg in (MAIN, STRICT) for v in cfg["virtual_hosts"] for r in v["routes"]
    }
    assert declared <= taken, declared - taken
    assert any(r.virtual_host is None for r in results)  # no virtual host
    assert any(r.virtual_host and r.route is None for r in results)  # no route
