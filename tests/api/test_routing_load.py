"""Loading the routing kinds: HTTPRoute filters and matches, GRPCRoute, Gateway,
ExternalService, Mesh, FaultInjection, RetryPolicy; and their problems."""

from __future__ import annotations

import textwrap

import pytest

from gossamer.api import Source, load_config
from gossamer.model import (
    MeshConfig,
    OutboundPolicy,
    ParentKind,
    PathMatchType,
    PathModifierType,
    Problem,
    RetryOn,
    Severity,
    ValueMatchType,
)

SERVICES = """
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: web}
spec:
  ports: [{port: 80}]
  command: [python3, app.py]
---
apiVersion: gossamer.dev/v1alpha1
kind: Workload
metadata: {name: api}
spec:
  ports: [{port: 80}]
  command: [python3, app.py]
"""


def load(*docs: str) -> tuple[MeshConfig | None, list[Problem]]:
    text = "\n---\n".join([SERVICES, *(textwrap.dedent(d) for d in docs)])
    return load_config([Source("mesh.yaml", text, "/srv")])


def route(rules: str, parents: str = "[{name: api, port: 80}]", extra: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(rules).strip("\n"), "    ")
    return (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
        f"spec:\n  parentRefs: {parents}\n{extra}  rules:\n{body}\n"
    )


def only_error(*docs: str) -> Problem:
    config, problems = load(*docs)
    assert config is None
    errors = [p for p in problems if p.severity is Severity.ERROR]
    assert len(errors) == 1, "\n".join(map(str, problems))
    return errors[0]


def test_every_match_type_and_filter_loads() -> None:
    config, problems = load(
        route(
            """
            - matches:
                - path: {type: RegularExpression, value: "/items/[0-9]+"}
                  headers: [{type: RegularExpression, name: X-User, value: "a.*"}]
                  queryParams: [{name: q, value: "1"}]
                  method: POST
              filters:
                - type: RequestHeaderModifier
                  requestHeaderModifier: {set: [{name: X-A, value: "1"}], remove: [x-b]}
                - type: URLRewrite
                  urlRewrite:
                    hostname: api.internal
                    path: {type: ReplaceFullPath, replaceFullPath: /x}
                - type: RequestMirror
                  requestMirror:
                    backendRef: {name: web, port: 80}
                    fraction: {numerator: 1, denominator: 4}
              backendRefs: [{name: api, port: 80}]
              retry: {attempts: 2, codes: [503], backoff: 100ms}
            """
        )
    )
    assert config is not None, problems
    [rule] = config.routes[0].rules
    [match] = rule.matches
    assert match.path.type is PathMatchType.REGULAR_EXPRESSION
    assert match.headers[0].name == "x-user"
    assert match.headers[0].type is ValueMatchType.REGULAR_EXPRESSION
    assert match.method == "POST"
    assert rule.request_headers is not None and rule.request_headers.set == (("x-a", "1"),)
    assert rule.rewrite is not None and rule.rewrite.path is not None
    assert rule.rewrite.path.type is PathModifierType.REPLACE_FULL_PATH
    assert rule.mirrors[0].percent == 25.0
    assert rule.retry is not None
    assert rule.retry.on == (RetryOn.CONNECT_FAILURE, RetryOn.RESET, RetryOn.RETRIABLE_STATUS_CODES)
    assert rule.retry.status_codes == (503,) and rule.retry.backoff_base_ms == 100


def test_extension_refs_resolve_and_unknown_ones_are_errors() -> None:
    fault = """
    apiVersion: gossamer.dev/v1alpha1
    kind: FaultInjection
    metadata: {name: chaos}
    spec: {abort: {httpStatus: 503, percent: 10}}
    """
    rules = """
    - filters:
        - type: ExtensionRef
          extensionRef: {group: gossamer.dev, kind: FaultInjection, name: %s}
      backendRefs: [{name: api, port: 80}]
    """
    config, problems = load(route(rules % "chaos"), fault)
    assert config is not None, problems
    assert config.routes[0].rules[0].fault is not None
    assert config.routes[0].rules[0].fault.abort_percent == 10
    problem = only_error(route(rules % "chaoss"), fault)
    assert problem.code == "GSM0113"
    assert problem.field == "spec.rules[0].filters[0].extensionRef.name"
    assert problem.hint == "did you mean `chaos`?"


BIG_ALTERNATION = "|".join(
    [
        "orders",
        "items",
        "carts",
        "users",
        "payments",
        "shipping",
        "returns",
        "reviews",
        "search",
        "catalog",
        "inventory",
        "pricing",
        "coupons",
        "wishlist",
        "accounts",
        "sessions",
        "tokens",
    ]
)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            """
            - matches: [{path: {type: RegularExpression, value: "/(?=x)"}}]
              backendRefs: [{name: api, port: 80}]
            """,
            "not a valid RE2 regular expression",
        ),
        (
            # Valid RE2, but over Envoy's program size limit: Envoy would NACK it.
            f"""
            - matches: [{{path: {{type: RegularExpression, value: "/({BIG_ALTERNATION})/x"}}}}]
              backendRefs: [{{name: api, port: 80}}]
            """,
            "too complex for Envoy: its RE2 program size is",
        ),
        (
            """
            - filters:
                - type: RequestRedirect
                  requestRedirect: {hostname: example.com}
                - type: URLRewrite
                  urlRewrite: {hostname: x.example.com}
            """,
            "RequestRedirect and URLRewrite cannot be combined",
        ),
        (
            """
            - matches: [{path: {type: Exact, value: /x}}]
              filters:
                - type: URLRewrite
                  urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /y}}
              backendRefs: [{name: api, port: 80}]
            """,
            "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
        ),
        (
            """
            - filters:
                - type: RequestHeaderModifier
                  responseHeaderModifier: {set: [{name: a, value: b}]}
              backendRefs: [{name: api, port: 80}]
            """,
            "takes `requestHeaderModifier` only",
        ),
        ("- matches: [{path: {value: /x}}]\n", "a rule needs backendRefs, or a RequestRedirect"),
    ],
)
def test_rule_level_errors(rules: str, message: str) -> None:
    problem = only_error(route(rules))
    assert problem.code == "GSM0005"
    assert problem.resource == "HTTPRoute/r"
    assert message in problem.message


def test_identical_matches_are_a_shadowing_warning() -> None:
    config, problems = load(
        route(
            """
            - matches: [{path: {value: /a}}]
              backendRefs: [{name: api, port: 80}]
            - matches: [{path: {value: /a}}]
              backendRefs: [{name: web, port: 80}]
            """
        )
    )
    assert config is not None
    [warning] = problems
    assert warning.code == "GSM0110" and warning.severity is Severity.WARNING
    assert warning.field == "spec.rules[1].matches[0]"


def test_retries_that_cannot_fit_in_the_timeout_are_a_warning() -> None:
    config, problems = load(
        route(
            """
            - backendRefs: [{name: api, port: 80}]
              timeouts: {request: 1s, backendRequest: 600ms}
              retry: {attempts: 2}
            """
        )
    )
    assert config is not None
    assert [p.code for p in problems] == ["GSM0114"]
    assert "3 tries of up to 600 ms need 1800 ms" in problems[0].message


GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  listeners:
    - {name: http, port: 8080, protocol: HTTP}
    - name: https
      port: 8443
      protocol: HTTPS
      hostname: shop.example
      tls: {options: {gossamer.dev/certificate-file: c.pem, gossamer.dev/private-key-file: k.pem}}
"""


def test_gateway_and_gateway_parents() -> None:
    gw_route = route(
        "- backendRefs: [{name: web, port: 80}]\n",
        parents="[{group: gateway.networking.k8s.io, kind: Gateway, name: edge, "
        "sectionName: https}]",
        extra="  hostnames: [shop.example]\n",
    )
    config, problems = load(GATEWAY, gw_route)
    assert config is not None, problems
    [gateway] = config.gateways
    assert gateway.node_id == "edge.gateway"
    assert gateway.listeners[1].certificate_file == "/srv/c.pem"
    parent = config.routes[0].parents[0]
    assert parent.kind is ParentKind.GATEWAY and parent.section == "https"
    bad = gw_route.replace("sectionName: https", "sectionName: admin")
    problem = only_error(GATEWAY, bad)
    assert problem.code == "GSM0109"
    assert "listeners: http (port 8080), https (port 8443)" in problem.hint
    missing = only_error(gw_route.replace("name: edge", "name: egde"))
    assert missing.code == "GSM0108"


@pytest.mark.parametrize(
    ("listeners", "message"),
    [
        ("[{name: a, port: 80, protocol: HTTPS}]", "an HTTPS listener needs `tls`"),
        (
            "[{name: a, port: 80, protocol: HTTP}, {name: a, port: 81, protocol: HTTP}]",
            "listener names must be unique",
        ),
        (
            "[{name: a, port: 80, protocol: HTTP}, {name: b, port: 80, protocol: HTTP}]",
            "two listeners share a port and hostname",
        ),
    ],
)
def test_gateway_listener_errors(listeners: str, message: str) -> None:
    doc = (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
        f"spec:\n  listeners: {listeners}\n"
    )
    problem = only_error(doc)
    assert message in problem.message


def test_mesh_settings_and_only_one_mesh() -> None:
    mesh = """
    apiVersion: gossamer.dev/v1alpha1
    kind: Mesh
    metadata: {name: mesh}
    spec:
      defaultRequestTimeout: 30s
      outboundTrafficPolicy: {mode: RegistryOnly}
    """
    config, problems = load(mesh)
    assert config is not None, problems
    assert config.settings.default_request_timeout_ms == 30_000
    assert config.settings.outbound_policy is OutboundPolicy.REGISTRY_ONLY
    assert config.settings.origin is not None
    problem = only_error(mesh, mesh.replace("name: mesh", "name: other"))
    assert problem.code == "GSM0023"


def test_external_service_loads_and_may_not_shadow_a_service() -> None:
    ext = """
    apiVersion: gossamer.dev/v1alpha1
    kind: ExternalService
    metadata: {name: payments}
    spec:
      hosts: [pay.example.com]
      ports: [{port: 80, targetPort: 443, tls: {caFile: ca.pem}}, {port: 5432, protocol: tcp}]
    """
    config, problems = load(ext)
    assert config is not None, problems
    [service] = config.external_services
    assert service.ports[0].tls is not None
    assert service.ports[0].tls.sni == "pay.example.com"
    assert service.ports[0].tls.ca_file == "/srv/ca.pem"
    problem = only_error(ext.replace("pay.example.com", "web"))
    assert problem.code == "GSM0111"
    assert problem.field == "spec.hosts[0]"


def test_grpc_route_becomes_path_matches() -> None:
    grpc = """
    apiVersion: gateway.networking.k8s.io/v1
    kind: GRPCRoute
    metadata: {name: g}
    spec:
      parentRefs: [{name: api, port: 80}]
      rules:
        - matches: [{method: {service: shop.Orders, method: Get}}, {method: {service: shop.Users}}]
          backendRefs: [{name: api, port: 80}]
    """
    config, problems = load(grpc)
    assert config is not None, problems
    paths = [(m.path.type, m.path.value) for m in config.routes[0].rules[0].matches]
    assert paths == [
        (PathMatchType.EXACT, "/shop.Orders/Get"),
        (PathMatchType.PATH_PREFIX, "/shop.Users"),
    ]
    assert config.routes[0].origin is not None and config.routes[0].origin.kind == "GRPCRoute"
    problem = only_error(grpc.replace("method: Get", "method: a.b"))
    assert "is not a gRPC service or method name" in problem.message


def test_grpc_rule_name_is_checked_like_an_http_rule_name() -> None:
    grpc = """
    apiVersion: gateway.networking.k8s.io/v1
    kind: GRPCRoute
    metadata: {name: g}
    spec:
      parentRefs: [{name: api, port: 80}]
      rules:
        - name: Bad_Name
          backendRefs: [{name: api, port: 80}]
    """
    problem = only_error(grpc)
    assert problem.field == "spec.rules[0].name"
    assert "is not a valid name" in problem.message


def test_external_service_may_not_share_a_service_name() -> None:
    ext = """
    apiVersion: gossamer.dev/v1alpha1
    kind: ExternalService
    metadata: {name: api}
    spec:
      hosts: [api.example.com]
      ports: [{port: 80}]
    """
    problem = only_error(ext)
    assert problem.code == "GSM0111" and problem.field == "metadata.name"


def test_duplicate_extension_resources_and_double_references_are_errors() -> None:
    fault = """
    apiVersion: gossamer.dev/v1alpha1
    kind: FaultInjection
    metadata: {name: chaos}
    spec: {abort: {httpStatus: 503}}
    """
    problem = only_error(fault, fault)
    assert problem.code == "GSM0020" and problem.resource == "FaultInjection/chaos"
    twice = route(
        """
        - filters:
            - type: ExtensionRef
              extensionRef: {group: gossamer.dev, kind: FaultInjection, name: chaos}
            - type: ExtensionRef
              extensionRef: {group: gossamer.dev, kind: FaultInjection, name: chaos}
          backendRefs: [{name: api, port: 80}]
        """
    )
    problem = only_error(twice, fault)
    assert "a rule may reference one FaultInjection" in problem.message


def test_services_of_one_workload_must_agree_on_compression() -> None:
    shared = """
    apiVersion: gossamer.dev/v1alpha1
    kind: Workload
    metadata: {name: shared}
    spec:
      services: [alpha, beta]
      ports: [{port: 80}]
      command: [python3, app.py]
    """
    policy = """
    apiVersion: gossamer.dev/v1alpha1
    kind: TrafficPolicy
    metadata: {name: alpha}
    spec:
      targetRefs: [{name: alpha}%s]
      compression: {algorithms: [br]}
    """
    problem = only_error(shared, policy % "")
    assert problem.code == "GSM0121"
    assert "backs `alpha` and `beta`" in problem.message
    config, problems = load(shared, policy % ", {name: beta}")
    assert config is not None, problems
