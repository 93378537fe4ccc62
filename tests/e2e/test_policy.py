"""TrafficPolicy through real Envoy: circuit breaking, outlier detection, locality,
consistent hashing, health checks and upstream protocol options, each checked on real
traffic from a client's sidecar (which instance answered, with what status and headers)
and on that sidecar's admin interface (stats, ``/clusters`` health flags, config dump).

One mesh serves the whole module. The client is in zone-a and has no ports; every other
workload runs the echo app, which says which instance answered and can be made to fail at
runtime (``/_fail?on=1``, called on the app's own port so it reaches one instance):

- ``plain`` (1 instance) backs ``cb`` (connection limits of 1), ``h2`` (HTTP/2 between
  sidecars) and ``idle`` (short idle timeout, 2 requests per connection);
- ``od`` (2 instances): outlier detection;
- ``loc-a`` (zone-a) and ``loc-b`` (zone-b), 2 instances each, back ``loc`` (preferLocal
  with outlier detection) and ``loch`` (preferLocal with an HTTP health check);
- ``dist-a`` (zone-a) and ``dist-b`` (zone-b) back ``dist``: 70/30 from zone-a;
- ``hashed`` (3 instances) backs ``ring`` (RingHash on a header), ``mag`` (Maglev on a
  cookie), ``sticky`` (RingHash on a cookie with a TTL, which Envoy issues) and ``src``
  (RingHash on the source IP);
- ``hc`` (2 instances): an HTTP health check on ``/healthz``;
- ``db`` (1 instance, tcp port 5432): a TCP health check.

Outlier detection and health-check state is per caller sidecar, and only the client sends
traffic (but for a few requests from other instances' sidecars, as callers in zone-b or in
no zone), so each test's counters and ejections are its own; tests that make an instance
fail turn the failure off again.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from meshkit import ECHO, Mesh, Reply, admin_stats, app_requests, request_via, shutdown, start_mesh

GSM = "gossamer.dev/v1alpha1"
HOSTS = {"cb": 1, "h2": 1, "idle": 1, "od": 2, "loc": 4, "loch": 4, "dist": 2}
HOSTS |= {"ring": 3, "mag": 3, "sticky": 3, "src": 3, "hc": 2}

# Envoy sends its health checks with the cluster name as the Host header; the receiving
# sidecar answers `outbound|80||hc` with 400 (`|` is not allowed in an authority), so no
# HTTP health check ever passes (the app never sees one) and every host is
# failed_active_hc; traffic still flows because Envoy then balances in panic mode.
# Without `no_traffic_interval`, Envoy checks a cluster that has had no traffic yet only
# every 60 s; the first check runs before any traffic can, so the next one is 60 s later
# whatever `interval` says.
# -- the mesh ---------------------------------------------------------------------------------


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": GSM, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _echo(
    name: str,
    services: list[str],
    *,
    replicas: int = 1,
    zone: str = "",
    port: int = 80,
    protocol: str = "http",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "services": services,
        "replicas": replicas,
        "ports": [{"port": port, "protocol": protocol}],
        "command": [sys.executable, str(ECHO)],
    }
    if zone:
        spec["zone"] = zone
    return _doc("Workload", name, spec)


def _policy(service: str, **spec: Any) -> dict[str, Any]:
    return _doc("TrafficPolicy", service, {"targetRefs": [{"name": service}], **spec})


def mesh_docs() -> list[dict[str, Any]]:
    http_check = {"http": {"path": "/healthz"}, "interval": "1s", "timeout": "500ms"}
    return [
        _doc("Mesh", "mesh", {"defaultRequestTimeout": "5s"}),
        _doc("Workload", "client", {"zone": "zone-a", "command": ["sleep", "100000"]}),
        _echo("plain", ["cb", "h2", "idle"]),
        _echo("od", ["od"], replicas=2),
        _echo("loc-a", ["loc", "loch"], replicas=2, zone="zone-a"),
        _echo("loc-b", ["loc", "loch"], replicas=2, zone="zone-b"),
        _echo("dist-a", ["dist"], zone="zone-a"),
        _echo("dist-b", ["dist"], zone="zone-b"),
        _echo("hashed", ["ring", "mag", "sticky", "src"], replicas=3),
        _echo("hc", ["hc"], replicas=2),
        _echo("db", ["db"], port=5432, protocol="tcp"),
        _policy(
            "cb", connectionPool={"maxConnections": 1, "maxPendingRequests": 1, "maxRequests": 1}
        ),
        _policy("h2", connectionPool={"http2": True}),
        _policy("idle", connectionPool={"idleTimeout": "500ms", "maxRequestsPerConnection": 2}),
        _policy(
            "od",
            outlierDetection={
                "consecutive5xx": 3,
                "interval": "1s",
                "baseEjectionTime": "3s",
                "maxEjectionPercent": 50,
            },
        ),
        _policy(
            "loc",
            locality={"preferLocal": True},
            outlierDetection={
                "consecutive5xx": 2,
                "interval": "1s",
                "baseEjectionTime": "5s",
                "maxEjectionPercent": 50,
            },
        ),
        _policy("loch", locality={"preferLocal": True}, healthCheck=http_check),
        _policy(
            "dist",
            locality={
                "preferLocal": False,
                "distribute": [{"from": "zone-a", "to": {"zone-a": 70, "zone-b": 30}}],
            },
        ),
        _policy("ring", loadBalancer={"type": "RingHash", "hash": {"header": "x-user"}}),
        _policy("mag", loadBalancer={"type": "Maglev", "hash": {"cookie": {"name": "session"}}}),
        _policy(
            "sticky",
            loadBalancer={"type": "RingHash", "hash": {"cookie": {"name": "sticky", "ttl": "1h"}}},
        ),
        _policy("src", loadBalancer={"type": "RingHash", "hash": {"sourceIP": True}}),
        _policy("hc", healthCheck=http_check),
        _policy("db", healthCheck={"tcp": {}, "interval": "1s", "timeout": "500ms"}),
    ]


@dataclass
class Policies:
    mesh: Mesh
    proxy: int
    client_admin: int
    tcp: dict[str, int]
    """The client sidecar's local port for each tcp service."""
    app: dict[str, int]
    """Each echo instance's app port, by instance."""
    inbound: dict[str, int]
    """Each echo instance's sidecar (inbound) port, by instance: its address as an endpoint."""
    admin: dict[str, int]
    """Each instance's sidecar admin port, by instance."""
    outbound: dict[str, int]
    """Each instance's sidecar HTTP proxy port, by instance: to call as another caller."""
    started: float
    """When the mesh was up (time.monotonic())."""

    def send(self, url: str, **kw: Any) -> Reply:
        return request_via(self.proxy, url, **kw)

    def served_by(self, url: str, n: int, headers: dict[str, str] | None = None) -> Counter[str]:
        """Which instance answered each of ``n`` requests (the status, if one failed)."""
        seen: Counter[str] = Counter()
        for _ in range(n):
            reply = self.send(url, headers=headers)
            seen[_who(reply)] += 1
        return seen

    def stat(self, name: str) -> int:
        return admin_stats(self.client_admin).get(name, 0)

    def fail(self, instance: str, on: bool, path: str = "/") -> None:
        """Make one instance's app answer 500 (to paths under ``path``), or stop it."""
        query = f"on={int(on)}&path={path}"
        url = f"http://127.0.0.1:{self.app[instance]}/_fail?{query}"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert json.loads(r.read())["failing"] == (path if on else None)

    def health(self, cluster: str) -> dict[str, str]:
        """The client sidecar's health flags for each host of ``cluster``, by instance."""
        by_port = {port: name for name, port in self.inbound.items()}
        url = f"http://127.0.0.1:{self.client_admin}/clusters"
        with urllib.request.urlopen(url, timeout=5) as r:
            lines = r.read().decode().splitlines()
        out = {}
        for line in lines:
            name, _, rest = line.partition("::")
            host, _, rest = rest.partition("::")
            if name == cluster and rest.startswith("health_flags::"):
                out[by_port.get(int(host.rpartition(":")[2]), host)] = rest.split("::")[1]
        return out

    def cluster_config(self, cluster: str) -> dict[str, Any]:
        """The client sidecar's running config for one cluster (from its config dump)."""
        url = f"http://127.0.0.1:{self.client_admin}/config_dump?resource=dynamic_active_clusters"
        with urllib.request.urlopen(url, timeout=5) as r:
            dump = json.loads(r.read())
        found: dict[str, Any] = next(
            c["cluster"] for c in dump["configs"] if c["cluster"]["name"] == cluster
        )
        return found


def _who(reply: Reply) -> str:
    if reply.status == 200 and isinstance(reply.body, dict):
        return str(reply.body["instance"])
    return str(reply.status)


def _zone(instance: str) -> str:
    return instance.split("-")[1] if instance.startswith(("loc-", "dist-")) else ""


def _wait(check: Any, within_s: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"timed out after {within_s}s waiting for {what}"
            return value
        time.sleep(every)


@pytest.fixture(scope="module")
def pol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Policies]:
    text = "\n---\n".join(json.dumps(d) for d in mesh_docs()) + "\n"
    mesh = start_mesh(tmp_path_factory.mktemp("policy"), text)
    try:
        mesh.wait_for(
            lambda s: all(i["proxy"]["synced"] and i["state"] == "running" for i in s["instances"]),
            within_s=30,
            what="proxies synced and apps running",
        )
        instances = mesh.status()["instances"]
        by_name = {i["name"]: i for i in instances}
        client = by_name["client-0"]
        echo = [i for i in instances if i["app_ports"]]
        policies = Policies(
            mesh=mesh,
            proxy=int(client["outbound_http_port"]),
            client_admin=int(client["admin_port"]),
            tcp={t["service"]: int(t["local_port"]) for t in client["outbound_tcp_ports"]},
            app={i["name"]: int(next(iter(i["app_ports"].values()))) for i in echo},
            inbound={i["name"]: int(next(iter(i["inbound_ports"].values()))) for i in echo},
            admin={i["name"]: int(i["admin_port"]) for i in instances},
            outbound={i["name"]: int(i["outbound_http_port"]) for i in instances},
            started=time.monotonic(),
        )
        # Instances join callers' endpoints once their apps are ready: wait for all of them.
        _wait(
            lambda: all(
                len(policies.health(f"outbound|80||{svc}")) == n for svc, n in HOSTS.items()
            ),
            20,
            "every endpoint in the client's clusters",
        )
        yield policies
    finally:
        shutdown(mesh)


def _tcp_exchange(port: int, data: bytes) -> bytes:
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError as exc:
            raise AssertionError(f"reset after {got!r}") from exc
    return got


# -- health checks ----------------------------------------------------------------------------
# First in the module: the interval check needs the mesh to be younger than Envoy's 60 s.


def test_tcp_health_check_finds_the_host_healthy_and_tcp_traffic_flows(pol: Policies) -> None:
    cluster = "outbound|5432||db"
    _wait(lambda: pol.stat(f"cluster.{cluster}.health_check.success") >= 1, 5, "a tcp check")
    # (A tcp check connects to the instance's sidecar, which accepts whether the app does
    # or not: it shows the sidecar is up, not the app.)
    assert pol.health(cluster) == {"db-0": "healthy"}
    assert pol.stat(f"cluster.{cluster}.health_check.failure") == 0
    # The tcp port carries any bytes: an HTTP request to the echo app, through the sidecars.
    data = _tcp_exchange(
        pol.tcp["db"], b"GET /over-tcp HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n"
    )
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert b'"instance": "db-0"' in data


def test_health_checks_repeat_at_the_configured_interval(pol: Policies) -> None:
    if time.monotonic() - pol.started > 50:
        pytest.skip("the mesh is older than Envoy's 60 s no-traffic interval")
    cluster = "outbound|5432||db"
    # Traffic first: Envoy checks a cluster that has never had any at no_traffic_interval.
    _tcp_exchange(pol.tcp["db"], b"GET /warm HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n")
    before = pol.stat(f"cluster.{cluster}.health_check.attempt")
    time.sleep(3.5)
    after = pol.stat(f"cluster.{cluster}.health_check.attempt")
    # interval: 1s, so at least 2 more checks in 3.5 s (jitter is a fraction of the interval).
    assert after - before >= 2, f"{after - before} health checks in 3.5 s at interval 1s"


def test_http_health_checks_reach_the_app_and_pass(pol: Policies) -> None:
    pol.send("http://hc/warm")
    _wait(
        lambda: app_requests(pol.app["hc-0"], "/healthz")["count"] >= 1,
        3,
        "a health check at hc-0's app",
    )
    assert pol.health("outbound|80||hc") == {"hc-0": "healthy", "hc-1": "healthy"}


def test_failing_http_health_check_removes_the_instance(pol: Policies) -> None:
    cluster = "outbound|80||hc"
    pol.send("http://hc/warm")
    _wait(lambda: set(pol.health(cluster).values()) == {"healthy"}, 3, "both hc hosts healthy")
    pol.fail("hc-0", True, path="/healthz")
    try:
        flags = _wait(
            lambda: (h := pol.health(cluster))["hc-0"] == "/failed_active_hc" and h,
            6,
            "hc-0 failing its health checks",
        )
        assert flags["hc-1"] == "healthy"
        # hc-0 still serves everything but /healthz; the caller avoids it all the same.
        assert pol.served_by("http://hc/after", 20) == {"hc-1": 20}
    finally:
        pol.fail("hc-0", False)


# -- circuit breaking -------------------------------------------------------------------------

OVERFLOW = "cluster.outbound|80||cb.upstream_rq_pending_overflow"


def test_requests_within_the_limits_never_overflow(pol: Policies) -> None:
    before = pol.stat(OVERFLOW)
    replies = [pol.send("http://cb/delay/20") for _ in range(10)]
    assert [r.status for r in replies] == [200] * 10
    assert not any("x-envoy-overloaded" in r.headers for r in replies)
    assert pol.stat(OVERFLOW) == before


def test_concurrent_requests_over_the_limits_are_refused_with_503_uo(pol: Policies) -> None:
    n = 20
    path = "/delay/300"
    before, reached_before = pol.stat(OVERFLOW), app_requests(pol.app["plain-0"], path)["count"]
    replies: list[Reply] = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one() -> None:
        start.wait(timeout=10)
        reply = pol.send(f"http://cb{path}", timeout=10)
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert len(replies) == n
    overflowed = [
        r for r in replies if r.status == 503 and r.headers.get("x-envoy-overloaded") == "true"
    ]
    served = [r for r in replies if r.status == 200]
    assert len(overflowed) + len(served) == n, Counter(r.status for r in replies)
    # One request in flight and one pending at a time: most of the burst overflows at once.
    assert len(overflowed) >= n // 2, (len(overflowed), len(served))
    assert len(served) >= 2
    assert all("overflow" in str(r.body) for r in overflowed)
    # Refused at once: faster than any request that was served (each waited 300 ms or more).
    assert max(r.elapsed for r in overflowed) < min(r.elapsed for r in served)
    assert pol.stat(OVERFLOW) - before == len(overflowed)
    # What overflowed never reached the app.
    assert app_requests(pol.app["plain-0"], path)["count"] - reached_before == len(served)


# -- outlier detection ------------------------------------------------------------------------


def test_outlier_detection_ejects_a_failing_instance_and_lets_it_back(pol: Policies) -> None:
    cluster = "outbound|80||od"
    ejections = f"cluster.{cluster}.outlier_detection.ejections_enforced_total"
    before = pol.stat(ejections)
    # /fail-if/od-0 answers 500 in od-0 and 200 in od-1.
    seen: list[str] = []
    run = 0
    while run < 30 and len(seen) < 80:
        who = _who(pol.send("http://od/fail-if/od-0"))
        seen.append(who)
        run = run + 1 if who == "od-1" else 0
    failed_at = time.monotonic()
    assert run == 30, seen
    assert set(seen) == {"od-1", "500"}, seen
    # Ejected on the 3rd 5xx in a row (a request or two may pass while the ejection, made
    # on Envoy's main thread, reaches the worker).
    assert 3 <= seen.count("500") <= 5, seen
    assert pol.stat(ejections) - before == 1
    assert pol.health(cluster)["od-0"] == "/failed_outlier_check"
    # The failure stops (a path that od-0 serves): after baseEjectionTime (3 s, checked
    # every interval of 1 s) od-0 is back in rotation.
    back: Counter[str] = Counter()
    deadline = time.monotonic() + 10
    while back["od-0"] == 0 and time.monotonic() < deadline:
        back[_who(pol.send("http://od/fail-if/nobody"))] += 1
        time.sleep(0.05)
    assert back["od-0"] >= 1, back
    assert time.monotonic() - failed_at >= 2, "back before the ejection time passed"
    assert set(back) <= {"od-0", "od-1"}, back
    after = pol.served_by("http://od/after", 10)
    assert after["od-0"] >= 4 and after["od-1"] >= 4, after  # round robin over both again


# -- locality ---------------------------------------------------------------------------------


def _failed_over(pol: Policies, url: str) -> Counter[str]:
    """Send requests until 10 in a row come from zone-b (at most 5 s); what answered.

    Envoy merges host health changes for 1 s (``update_merge_window``) after the first one
    has applied, so the last zone-a instance leaves the balancer up to 1 s after its
    ejection or failed check."""
    seen: Counter[str] = Counter()
    run = 0
    deadline = time.monotonic() + 5
    while run < 10 and time.monotonic() < deadline:
        who = _who(pol.send(url))
        seen[who] += 1
        run = run + 1 if _zone(who) == "b" else 0
    assert run == 10, seen
    return seen


def test_prefer_local_keeps_traffic_in_the_callers_zone(pol: Policies) -> None:
    seen = pol.served_by("http://loc/local", 200)
    zones = Counter(_zone(who) for who in seen.elements())
    assert zones["a"] >= 190, seen
    assert seen["loc-a-0"] > 50 and seen["loc-a-1"] > 50, seen  # both local instances


def test_prefer_local_is_relative_to_each_caller(pol: Policies) -> None:
    # loc-b-0's sidecar is a caller in zone-b; plain-0's has no zone and sees all zones alike.
    from_b = Counter(_who(request_via(pol.outbound["loc-b-0"], "http://loc/b")) for _ in range(100))
    assert sum(n for who, n in from_b.items() if _zone(who) == "b") >= 95, from_b
    zoneless = Counter(
        _who(request_via(pol.outbound["plain-0"], "http://loc/z")) for _ in range(100)
    )
    assert set(zoneless) == {"loc-a-0", "loc-a-1", "loc-b-0", "loc-b-1"}, zoneless


def test_prefer_local_fails_over_when_the_local_zone_is_ejected(pol: Policies) -> None:
    ejections = "cluster.outbound|80||loc.outlier_detection.ejections_enforced_total"
    before = pol.stat(ejections)
    for inst in ("loc-a-0", "loc-a-1"):
        pol.fail(inst, True)
    try:
        # Each zone-a instance answers 500 twice in a row and is ejected. The first
        # ejection leaves zone-a half healthy (70% of the load, with Envoy's
        # overprovisioning factor of 1.4); after the second, zone-b takes everything.
        seen = _failed_over(pol, "http://loc/failover")
        assert set(seen) <= {"500", "loc-b-0", "loc-b-1"}, seen
        assert pol.stat(ejections) - before == 2
        after = pol.served_by("http://loc/failover", 100)
        assert sum(n for who, n in after.items() if _zone(who) == "b") >= 95, after
        assert after["loc-b-0"] > 20 and after["loc-b-1"] > 20, after
    finally:
        for inst in ("loc-a-0", "loc-a-1"):
            pol.fail(inst, False)


def test_prefer_local_fails_over_when_local_health_checks_fail(pol: Policies) -> None:
    cluster = "outbound|80||loch"
    pol.send("http://loch/warm")
    _wait(lambda: set(pol.health(cluster).values()) == {"healthy"}, 3, "all loch hosts healthy")
    for inst in ("loc-a-0", "loc-a-1"):
        pol.fail(inst, True, path="/healthz")
    try:
        _wait(
            lambda: all(
                flags == "/failed_active_hc"
                for who, flags in pol.health(cluster).items()
                if _zone(who) == "a"
            ),
            6,
            "zone-a failing its health checks",
        )
        _failed_over(pol, "http://loch/failover")
        seen = pol.served_by("http://loch/failover", 100)
        assert sum(n for who, n in seen.items() if _zone(who) == "b") >= 95, seen
    finally:
        for inst in ("loc-a-0", "loc-a-1"):
            pol.fail(inst, False)


def test_distribute_splits_a_zones_traffic_by_weight(pol: Policies) -> None:
    n = 300
    seen = pol.served_by("http://dist/share", n)
    assert set(seen) == {"dist-a-0", "dist-b-0"}, seen
    assert abs(seen["dist-a-0"] / n - 0.7) <= 0.1, seen


def test_distribute_leaves_callers_from_other_zones_even(pol: Policies) -> None:
    # Only zone-a has a `from` entry: a zone-b caller and a zoneless one split evenly.
    for caller in ("loc-b-0", "plain-0"):
        seen = Counter(
            _who(request_via(pol.outbound[caller], "http://dist/other")) for _ in range(100)
        )
        assert set(seen) == {"dist-a-0", "dist-b-0"}, (caller, seen)
        assert abs(seen["dist-a-0"] / 100 - 0.5) <= 0.15, (caller, seen)


# -- consistent hashing -----------------------------------------------------------------------

KEYS = [f"user-{i}" for i in range(8)]


def _pinned(pol: Policies, url: str, headers_for: Any) -> dict[str, str]:
    """For each key, the one instance that answered all 20 of its requests."""
    owners = {}
    for key in KEYS:
        seen = pol.served_by(url, 20, headers=headers_for(key))
        assert len(seen) == 1, (key, seen)
        owners[key] = next(iter(seen))
    assert all(o.startswith("hashed-") for o in owners.values()), owners
    assert len(set(owners.values())) > 1, owners
    return owners


def test_ring_hash_on_a_header_pins_each_value_to_one_instance(pol: Policies) -> None:
    owners = _pinned(pol, "http://ring/h", lambda key: {"x-user": key})
    # The same keys land on the same instances again; header names are case-insensitive.
    assert owners == _pinned(pol, "http://ring/again", lambda key: {"X-User": key})


def test_maglev_on_a_cookie_pins_each_value_to_one_instance(pol: Policies) -> None:
    _pinned(pol, "http://mag/c", lambda key: {"cookie": f"other=1; session={key}"})


def test_a_cookie_hash_with_a_ttl_issues_the_cookie_and_sticks_to_it(pol: Policies) -> None:
    first = pol.send("http://sticky/new")
    assert first.status == 200
    cookie = first.headers.get("set-cookie", "")
    assert cookie.startswith("sticky=") and "Max-Age=3600" in cookie, first.headers
    value = cookie.split(";")[0]
    seen = pol.served_by("http://sticky/again", 20, headers={"cookie": value})
    assert seen == {first.body["instance"]: 20}, (first.body["instance"], seen)


def test_source_ip_hash_pins_one_caller_to_one_instance(pol: Policies) -> None:
    seen = pol.served_by("http://src/ip", 20)
    assert len(seen) == 1 and next(iter(seen)).startswith("hashed-"), seen


# -- upstream protocol options ----------------------------------------------------------------


def _http_options(cluster: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    return options


def test_http2_between_sidecars_is_configured_and_works(pol: Policies) -> None:
    options = _http_options(pol.cluster_config("outbound|80||h2"))
    assert "http2_protocol_options" in options["explicit_http_config"]
    h2_in = "http.inbound|80.downstream_rq_http2_total"
    before = admin_stats(pol.admin["plain-0"]).get(h2_in, 0)
    reply = pol.send("http://h2/over-h2")
    assert reply.status == 200 and reply.body["instance"] == "plain-0", reply
    # The service's sidecar received HTTP/2 and spoke HTTP/1.1 to the app.
    assert admin_stats(pol.admin["plain-0"]).get(h2_in, 0) - before == 1
    assert reply.body["headers"]["host"] == "h2"


def test_plain_http1_services_keep_http1_and_the_default_idle_timeout(pol: Policies) -> None:
    options = _http_options(pol.cluster_config("outbound|80||cb"))
    assert "http_protocol_options" in options["explicit_http_config"]
    assert options["common_http_protocol_options"]["idle_timeout"] == "60s"
    idle = _http_options(pol.cluster_config("outbound|80||idle"))
    assert idle["common_http_protocol_options"] == {
        "idle_timeout": "0.500s",
        "max_requests_per_connection": 2,
    }
    assert pol.send("http://cb/basic").status == 200


def test_idle_timeout_and_requests_per_connection_take_effect(pol: Policies) -> None:
    prefix = "cluster.outbound|80||idle"
    opened, timed_out = (
        pol.stat(f"{prefix}.upstream_cx_total"),
        pol.stat(f"{prefix}.upstream_cx_idle_timeout"),
    )
    assert [pol.send("http://idle/x").status for _ in range(5)] == [200] * 5
    # 2 requests per connection: 5 sequential requests open 3 connections.
    assert pol.stat(f"{prefix}.upstream_cx_total") - opened == 3
    # The last connection (1 request) closes after 500 ms idle.
    _wait(
        lambda: pol.stat(f"{prefix}.upstream_cx_idle_timeout") - timed_out == 1,
        3,
        "an idle timeout",
    )
    assert pol.send("http://idle/again").status == 200
