"""Loading TrafficPolicy: what a valid policy becomes, schema errors (GSM0005) with their
field and message, and the mesh-level checks GSM0115 to GSM0120."""

from __future__ import annotations

import textwrap

import pytest

from gossamer.api import Source, load_config
from gossamer.model import (
    LoadBalancer,
    MeshConfig,
    MeshState,
    PolicyTargetKind,
    Problem,
    Severity,
    place,
    sequential_ports,
)
from gossamer.translate import CLUSTER, translate

WORKLOADS = """
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: web}
spec:
  zone: zone-a
  ports: [{port: 80}]
  command: [python3, app.py]
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: api}
spec:
  zone: zone-b
  ports: [{port: 80}]
  command: [python3, app.py]
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: db}
spec:
  ports: [{port: 5432, protocol: tcp}]
  command: [python3, app.py]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  listeners: [{name: http, port: 8080, protocol: HTTP}]
"""


def load(*docs: str) -> tuple[MeshConfig | None, list[Problem]]:
    text = "\n---\n".join([WORKLOADS, *(textwrap.dedent(d).strip("\n") for d in docs)])
    return load_config([Source("mesh.yaml", text, "/srv")])


def policy(spec: str, name: str = "p", targets: str = "[{name: web}]") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (
        f"apiVersion: gossamer.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: {name}}}\n"
        f"spec:\n  targetRefs: {targets}\n{body}\n"
    )


def only_error(*docs: str) -> Problem:
    config, problems = load(*docs)
    assert config is None
    errors = [p for p in problems if p.severity is Severity.ERROR]
    assert len(errors) == 1, "\n".join(map(str, problems))
    return errors[0]


def only_warning(*docs: str) -> Problem:
    config, problems = load(*docs)
    assert config is not None, "\n".join(map(str, problems))
    assert len(problems) == 1, "\n".join(map(str, problems))
    assert problems[0].severity is Severity.WARNING
    return problems[0]


# -- what a valid policy becomes --------------------------------------------------------------


def test_a_full_policy_loads_into_the_model() -> None:
    config, problems = load(
        policy(
            """
            connectionPool: {maxConnections: 10, maxPendingRequests: 5, maxRequests: 20,
                             maxRetries: 2, idleTimeout: 30s, maxRequestsPerConnection: 7,
                             http2: true}
            outlierDetection: {consecutive5xx: 3, consecutiveGatewayErrors: 2, interval: 1s,
                               baseEjectionTime: 3s, maxEjectionPercent: 50}
            loadBalancer: {type: RingHash, hash: {header: X-User}}
            healthCheck: {http: {path: /healthz}, interval: 2s, timeout: 500ms}
            """
        ),
        policy(
            "loadBalancer: {type: Maglev, hash: {cookie: {name: s, ttl: 1h}}}", "q", "[{name: api}]"
        ),
    )
    assert config is not None and problems == [], problems
    p = {x.name: x for x in config.policies}
    web = p["p"]
    assert web.target_kind is PolicyTargetKind.SERVICE and web.targets == ("web",)
    pool = web.connection_pool
    assert pool is not None
    assert (pool.max_connections, pool.max_pending_requests, pool.max_requests) == (10, 5, 20)
    assert (pool.max_retries, pool.idle_timeout_ms, pool.max_requests_per_connection) == (
        2,
        30_000,
        7,
    )
    assert pool.http2
    od = web.outlier_detection
    assert od is not None
    assert (od.consecutive_5xx, od.consecutive_gateway_errors) == (3, 2)
    assert (od.interval_ms, od.base_ejection_ms, od.max_ejection_percent) == (1000, 3000, 50)
    assert web.load_balancer is LoadBalancer.RING_HASH
    assert web.hash_key is not None and web.hash_key.header == "x-user"  # lower-cased
    hc = web.health_check
    assert hc is not None and (hc.http_path, hc.interval_ms, hc.timeout_ms) == (
        "/healthz",
        2000,
        500,
    )
    assert config.policy_for("web") is web
    api = p["q"].hash_key
    assert api is not None and (api.cookie, api.cookie_ttl_ms) == ("s", 3_600_000)


# -- schema errors (GSM0005) ------------------------------------------------------------------

GE1 = "Input should be greater than or equal to 1"


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        # Circuit-breaker limits are at least 1: zero or negative would refuse everything.
        ("connectionPool: {maxConnections: 0}", "spec.connectionPool.maxConnections", GE1),
        ("connectionPool: {maxPendingRequests: -1}", "spec.connectionPool.maxPendingRequests", GE1),
        ("connectionPool: {maxRequests: 0}", "spec.connectionPool.maxRequests", GE1),
        ("connectionPool: {maxRetries: -5}", "spec.connectionPool.maxRetries", GE1),
        (
            "connectionPool: {maxRequestsPerConnection: 0}",
            "spec.connectionPool.maxRequestsPerConnection",
            GE1,
        ),
        (
            "connectionPool: {idleTimeout: -1s}",
            "spec.connectionPool.idleTimeout",
            "`-1s` is not a duration",
        ),
        (
            "outlierDetection: {maxEjectionPercent: 101}",
            "spec.outlierDetection.maxEjectionPercent",
            "Input should be less than or equal to 100 (got `101`)",
        ),
        (
            "outlierDetection: {maxEjectionPercent: 0}",
            "spec.outlierDetection.maxEjectionPercent",
            GE1,
        ),
        ("outlierDetection: {consecutive5xx: 0}", "spec.outlierDetection.consecutive5xx", GE1),
        (
            "outlierDetection: {baseEjectionTime: 0s}",
            "spec.outlierDetection",
            "interval and baseEjectionTime must be longer than 0s",
        ),
        (
            "loadBalancer: {type: RoundRobin, hash: {header: x-user}}",
            "spec.loadBalancer",
            "a hash key needs a consistent-hash load balancer (RingHash or Maglev), not RoundRobin",
        ),
        (
            "loadBalancer: {hash: {sourceIP: true}}",  # RoundRobin is the default
            "spec.loadBalancer",
            "not RoundRobin",
        ),
        (
            "loadBalancer: {type: LeastRequest, hash: {cookie: {name: s}}}",
            "spec.loadBalancer",
            "not LeastRequest",
        ),
        (
            "loadBalancer: {type: RingHash}",
            "spec.loadBalancer",
            "RingHash needs a `hash` (header, cookie or sourceIP)",
        ),
        ("loadBalancer: {type: Maglev}", "spec.loadBalancer", "Maglev needs a `hash`"),
        (
            "loadBalancer: {type: RingHash, hash: {header: a, sourceIP: true}}",
            "spec.loadBalancer.hash",
            "hash on exactly one of header, cookie or sourceIP",
        ),
        (
            "loadBalancer: {type: RingHash, hash: {sourceIP: false}}",
            "spec.loadBalancer.hash",
            "hash on exactly one of header, cookie or sourceIP",
        ),
        (
            "locality: {preferLocal: false, distribute: [{from: a, to: {a: 50, b: 40}}]}",
            "spec.locality.distribute[0].to",
            "`to` maps zones to percentages that add up to 100",
        ),
        (
            "locality: {distribute: [{from: a, to: {a: 100}}]}",  # preferLocal defaults true
            "spec.locality",
            "use preferLocal or distribute, not both",
        ),
        (
            "healthCheck: {http: {path: /h}, tcp: {}}",
            "spec.healthCheck",
            "a health check is either `http: {path: ...}` or `tcp: {}`",
        ),
        ("healthCheck: {tcp: {port: 1}}", "spec.healthCheck", "`tcp` takes no settings"),
        ("healthCheck: {http: {path: healthz}}", "spec.healthCheck.http.path", "'^/'"),
        (
            "healthCheck: {tcp: {}, unhealthyThreshold: 0}",
            "spec.healthCheck.unhealthyThreshold",
            GE1,
        ),
        (
            "healthCheck: {tcp: {}, timeout: 0s}",
            "spec.healthCheck",
            "interval and timeout must be longer than 0s",
        ),
        (
            "compression: {algorithms: [gzip, gzip]}",
            "spec.compression.algorithms",
            "each algorithm may be listed once",
        ),
    ],
)
def test_schema_errors_name_the_field(spec: str, field: str, message: str) -> None:
    problem = only_error(policy(spec))
    assert problem.code == "GSM0005"
    assert problem.field == field
    assert message in problem.message
    assert problem.resource == "TrafficPolicy/p"


@pytest.mark.parametrize(
    ("targets", "spec", "field", "message"),
    [
        ("[{name: web}, {name: web}]", "", "spec", "a target is listed twice"),
        (
            "[{name: web}, {group: gateway.networking.k8s.io, kind: Gateway, name: edge}]",
            "",
            "spec",
            "target either Services or Gateways, not both",
        ),
        (
            "[{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]",
            "loadBalancer: {type: Random}",
            "spec",
            "a policy on a Gateway sets compression only, not ['loadBalancer']",
        ),
        (
            "[{kind: Gateway, name: edge}]",
            "compression: {}",
            "spec.targetRefs[0]",
            "a Gateway target needs group: gateway.networking.k8s.io",
        ),
    ],
)
def test_target_errors(targets: str, spec: str, field: str, message: str) -> None:
    problem = only_error(policy(spec, targets=targets))
    assert (problem.code, problem.field) == ("GSM0005", field)
    assert message in problem.message


# -- mesh-level checks ------------------------------------------------------------------------


def test_a_missing_target_is_gsm0115_with_a_suggestion() -> None:
    problem = only_error(policy("loadBalancer: {type: Random}", targets="[{name: wbe}]"))
    assert problem.code == "GSM0115"
    assert problem.field == "spec.targetRefs[0].name"
    assert problem.message == "target service `wbe` does not exist"
    assert problem.hint == "did you mean `web`?"
    gateway = only_error(
        policy(
            "compression: {}",
            targets="[{group: gateway.networking.k8s.io, kind: Gateway, name: egde}]",
        )
    )
    assert gateway.code == "GSM0115" and gateway.message == "target gateway `egde` does not exist"
    # The second target of a list is named by its index.
    second = only_error(policy("", targets="[{name: web}, {name: nope}]"))
    assert (second.code, second.field) == ("GSM0115", "spec.targetRefs[1].name")


def test_two_policies_on_one_service_is_gsm0116_on_the_second() -> None:
    problem = only_error(
        policy("loadBalancer: {type: Random}", "first"),
        policy(
            "connectionPool: {maxConnections: 5}", "second", targets="[{name: api}, {name: web}]"
        ),
    )
    assert problem.code == "GSM0116"
    assert problem.resource == "TrafficPolicy/second"
    assert problem.field == "spec.targetRefs[1].name"
    assert problem.message == (
        "Service `web` already has TrafficPolicy `first`; two policies would disagree"
    )
    assert problem.hint == "merge them into one TrafficPolicy"


def test_an_http_health_check_on_a_tcp_only_service_is_gsm0120() -> None:
    problem = only_error(policy("healthCheck: {http: {path: /healthz}}", targets="[{name: db}]"))
    assert problem.code == "GSM0120"
    assert problem.field == "spec.healthCheck.http"
    assert problem.message == "an HTTP health check on `db`, which has only tcp ports"
    assert problem.hint == "use `tcp: {}` for tcp services"
    config, problems = load(policy("healthCheck: {tcp: {}}", targets="[{name: db}]"))
    assert config is not None and problems == []


def test_max_ejection_percent_100_is_a_gsm0117_warning() -> None:
    warning = only_warning(policy("outlierDetection: {maxEjectionPercent: 100}"))
    assert warning.code == "GSM0117"
    assert warning.field == "spec.outlierDetection.maxEjectionPercent"
    assert "may eject every endpoint (maxEjectionPercent 100)" in warning.message
    config, problems = load(policy("outlierDetection: {maxEjectionPercent: 99}"))
    assert config is not None and problems == []


def test_locality_over_zoneless_workloads_is_a_gsm0118_warning() -> None:
    docs = [
        "apiVersion: gossamer.dev/v1alpha1\nkind: Workload\nmetadata: {name: web-z}\n"
        "spec: {services: [web], ports: [{port: 80}], command: [python3, app.py]}",
        policy("locality: {preferLocal: true}"),
    ]
    warning = only_warning(*docs)
    assert warning.code == "GSM0118"
    assert warning.field == "spec.locality"
    assert warning.message == ("locality routing for `web`, but workload(s) web-z declare no zone")
    assert warning.hint == "set spec.zone on every workload backing the service"
    # Every workload of `web` has a zone: nothing to say.
    config, problems = load(policy("locality: {preferLocal: true}"))
    assert config is not None and problems == []


def test_compressing_already_compressed_types_is_a_gsm0119_warning() -> None:
    warning = only_warning(policy("compression: {contentTypes: [text/html, image/png]}"))
    assert warning.code == "GSM0119"
    assert warning.field == "spec.compression.contentTypes"
    assert warning.message == "compressing content that is already compressed: ['image/png']"
    config, problems = load(policy("compression: {contentTypes: [text/html, application/json]}"))
    assert config is not None and problems == []


# -- what an HTTP health check on a service with an http and a tcp port becomes --------------


def test_an_http_health_check_is_not_sent_to_a_tcp_port() -> None:
    """GSM0120 catches tcp-only services; a service with both kinds of port passes it, and
    its tcp port must not be probed with HTTP requests (a database would fail them all)."""
    mixed = (
        "apiVersion: gossamer.dev/v1alpha1\nkind: Workload\nmetadata: {name: mixed}\n"
        "spec: {ports: [{port: 80}, {port: 5432, protocol: tcp}], command: [python3, app.py]}"
    )
    config, problems = load(
        mixed, policy("healthCheck: {http: {path: /healthz}}", targets="[{name: mixed}]")
    )
    assert config is not None and problems == [], problems
    state = MeshState(config, place(config, None, sequential_ports(20000)))
    clusters = translate(state, "web-0").of(CLUSTER)
    http_checks = clusters["outbound|80||mixed"].body["health_checks"]
    assert http_checks[0]["http_health_check"]["path"] == "/healthz"
    tcp_checks = clusters["outbound|5432||mixed"].body.get("health_checks", [])
    assert all("http_health_check" not in check for check in tcp_checks), tcp_checks
