"""The YAML loader: multi-document files into a MeshConfig, and every error it can report.

Each error test pins what a user needs to act on: the code, the file, the document, the
resource (``Kind/name``), the field path and the hint; and that no config comes back.
"""

from __future__ import annotations

import textwrap

import pytest

from gossamer.api import Source, load_config, parse_duration_ms
from gossamer.model import (
    BackendRef,
    MeshConfig,
    MeshSettings,
    Origin,
    ParentRef,
    PathMatch,
    PathMatchType,
    Port,
    Problem,
    Protocol,
    Timeouts,
)

FILE = "mesh.yaml"


def doc(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


def workload(
    name: str,
    *,
    ports: str = "[{port: 80}]",
    services: str | None = None,
    extra: str = "",
) -> str:
    lines = [
        "apiVersion: gossamer.dev/v1alpha1",
        "kind: Workload",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  ports: {ports}",
        "  command: [python3, app.py]",
    ]
    if services is not None:
        lines.append(f"  services: {services}")
    if extra:
        lines += ["  " + line for line in textwrap.dedent(extra).strip("\n").splitlines()]
    return "\n".join(lines) + "\n"


def route(name: str, spec: str) -> str:
    head = doc(
        f"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata:
          name: {name}
        spec:
        """
    )
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return head + body + "\n"


def join(*docs: str) -> str:
    return "---\n".join(docs)


def load(text: str, *, base_dir: str = "") -> tuple[MeshConfig | None, list[Problem]]:
    return load_config([Source(FILE, text, base_dir)])


def only_problem(text: str) -> Problem:
    config, problems = load(text)
    assert config is None
    assert len(problems) == 1, problems
    return problems[0]


def route_to(
    backends: str,
    *,
    timeouts: str = "{}",
    parent: str = "{name: orders, port: 80}",
    matches: str = "[{}]",
) -> str:
    """A valid mesh (orders, orders-v1, orders-v2, db) plus one route to check."""
    return join(
        workload("orders-v1", services="[orders, orders-v1]"),
        workload("orders-v2", services="[orders, orders-v2]"),
        workload("db", ports="[{port: 5432, protocol: tcp}]"),
        route(
            "split",
            f"""
            parentRefs: [{parent}]
            rules:
              - matches: {matches}
                backendRefs: {backends}
                timeouts: {timeouts}
            """,
        ),
    )


# --- valid configs -------------------------------------------------------------------------


SHOP = join(
    workload("web", extra="replicas: 2\nzone: zone-a\nenv: {B: '2', A: '1'}"),
    workload("orders-v1", services="[orders, orders-v1]", extra="version: v1"),
    workload("loadgen", ports="[]"),
    workload("orders-v2", services="[orders, orders-v2]", ports="[{port: 80, protocol: http}]"),
    workload("db", ports="[{port: 5432, protocol: tcp, name: sql}]"),
    route(
        "orders-canary",
        """
        parentRefs:
          - {kind: Service, name: orders, port: 80}
        rules:
          - matches:
              - path: {type: Exact, value: /orders}
                headers: [{name: X-Canary, value: "yes"}]
            backendRefs:
              - {name: orders-v1, port: 80, weight: 90}
              - {name: orders-v2, port: 80, weight: 10}
            timeouts: {request: 1h30m, backendRequest: 250ms}
        """,
    ),
)


def test_valid_multi_document_load_has_no_problems_and_sorted_workloads() -> None:
    config, problems = load(SHOP)

    assert problems == []
    assert config is not None
    assert [w.name for w in config.workloads] == ["db", "loadgen", "orders-v1", "orders-v2", "web"]
    assert [r.name for r in config.routes] == ["orders-canary"]
    assert config.settings == MeshSettings()


def test_services_default_to_the_workload_name_only_when_it_has_ports() -> None:
    config, _ = load(SHOP)
    assert config is not None
    by_name = {w.name: w for w in config.workloads}

    assert by_name["web"].services == ("web",)
    assert by_name["db"].services == ("db",)
    assert by_name["loadgen"].services == ()
    assert by_name["loadgen"].ports == ()
    assert by_name["orders-v1"].services == ("orders", "orders-v1")


def test_explicit_empty_services_list_is_kept_even_with_ports() -> None:
    config, problems = load(workload("worker", services="[]"))
    assert problems == []
    assert config is not None
    assert config.workloads[0].services == ()
    assert config.services() == ()


def test_services_are_derived_from_workloads() -> None:
    config, _ = load(SHOP)
    assert config is not None
    services = {s.name: s for s in config.services()}

    assert list(services) == ["db", "orders", "orders-v1", "orders-v2", "web"]
    assert services["orders"].workloads == ("orders-v1", "orders-v2")
    assert services["orders"].ports == (Port("http-80", 80, Protocol.HTTP),)
    assert services["db"].ports == (Port("sql", 5432, Protocol.TCP),)


def test_workload_fields_are_converted() -> None:
    config, _ = load(SHOP)
    assert config is not None
    web = config.workload("web")
    assert web is not None

    assert web.replicas == 2
    assert web.zone == "zone-a"
    assert web.command == ("python3", "app.py")
    assert web.env == (("A", "1"), ("B", "2"))
    assert web.origin == Origin(FILE, 1, "Workload", "web")
    orders_v1 = config.workload("orders-v1")
    assert orders_v1 is not None
    assert orders_v1.version == "v1"
    assert orders_v1.origin == Origin(FILE, 2, "Workload", "orders-v1")


def test_route_fields_are_converted() -> None:
    config, _ = load(SHOP)
    assert config is not None
    (canary,) = config.routes

    assert canary.origin == Origin(FILE, 6, "HTTPRoute", "orders-canary")
    assert canary.parents == (ParentRef("orders", 80),)
    (rule,) = canary.rules
    assert rule.backends == (BackendRef("orders-v1", 80, 90), BackendRef("orders-v2", 80, 10))
    assert rule.timeouts == Timeouts(request_ms=5_400_000, backend_request_ms=250)
    (match,) = rule.matches
    assert match.path == PathMatch(PathMatchType.EXACT, "/orders")
    # Header names are case-insensitive in HTTP; the model keeps them lower-case.
    assert [(h.name, h.value) for h in match.headers] == [("x-canary", "yes")]


def test_route_defaults_match_every_path_with_weight_one() -> None:
    config, problems = load(route_to("[{name: orders-v1, port: 80}]"))
    assert problems == []
    assert config is not None
    (rule,) = config.routes[0].rules

    assert [m.path for m in rule.matches] == [PathMatch(PathMatchType.PATH_PREFIX, "/")]
    assert rule.backends == (BackendRef("orders-v1", 80, 1),)
    assert rule.timeouts == Timeouts(None, None)


def test_sources_are_combined_and_each_resource_remembers_its_file() -> None:
    config, problems = load_config(
        [
            Source("b.yaml", workload("beta")),
            Source("a.yaml", join(workload("zeta"), workload("alpha"))),
        ]
    )
    assert problems == []
    assert config is not None
    assert [(w.name, w.origin) for w in config.workloads] == [
        ("alpha", Origin("a.yaml", 2, "Workload", "alpha")),
        ("beta", Origin("b.yaml", 1, "Workload", "beta")),
        ("zeta", Origin("a.yaml", 1, "Workload", "zeta")),
    ]


def test_empty_documents_and_comments_are_skipped() -> None:
    config, problems = load("# just a comment\n---\n---\n" + workload("web") + "---\n")
    assert problems == []
    assert config is not None
    assert [w.name for w in config.workloads] == ["web"]


@pytest.mark.parametrize(
    ("base_dir", "working_dir", "expected"),
    [
        ("/srv/shop", None, "/srv/shop"),
        ("/srv/shop", ".", "/srv/shop"),
        ("/srv/shop", "sub/dir", "/srv/shop/sub/dir"),
        ("/srv/shop/", "sub", "/srv/shop/sub"),
        ("/srv/shop", "/opt/app", "/opt/app"),
        ("", None, "."),
        ("", "sub", "sub"),
    ],
)
def test_working_dir_is_relative_to_base_dir(
    base_dir: str, working_dir: str | None, expected: str
) -> None:
    extra = f"workingDir: {working_dir}" if working_dir is not None else ""
    config, problems = load(workload("web", extra=extra), base_dir=base_dir)
    assert problems == []
    assert config is not None
    assert config.workloads[0].working_dir == expected


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1h30m", 5_400_000),
        ("250ms", 250),
        ("0s", 0),
        ("10s", 10_000),
        ("1m30s", 90_000),
        ("1h", 3_600_000),
        ("1s500ms", 1_500),
        ("99999ms", 99_999),
    ],
)
def test_parse_duration_ms(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(
    "text", ["", "10", "1.5s", "-1s", "1d", "10 s", "1s ", "s", "100000s", "1h1m1s1ms1s"]
)
def test_parse_duration_ms_rejects_non_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration_ms(text)


# --- one document's problems ---------------------------------------------------------------


def test_malformed_yaml_names_the_line_and_document() -> None:
    text = workload("web") + "---\nkind: Workload\nmetadata:\n  name: [oops\nspec: {}\n"
    problem = only_problem(text)

    assert problem.code == "GSM0001"
    assert problem.file == FILE
    assert problem.document == 2
    assert problem.message.startswith("malformed YAML at line ")
    line = int(problem.message.split("line ")[1].split(",")[0])
    first_line_of_doc_2 = len(workload("web").splitlines()) + 2
    assert line > first_line_of_doc_2
    assert "indentation" in problem.hint


def test_malformed_yaml_bad_indent_reports_its_exact_line() -> None:
    problem = only_problem("kind: Workload\nmetadata:\n  name: a\n bad: 1\n")
    assert problem.code == "GSM0001"
    assert problem.document == 1
    assert "at line 4," in problem.message


@pytest.mark.parametrize(("text", "type_name"), [("- a\n- b\n", "list"), ("hello\n", "str")])
def test_non_mapping_document(text: str, type_name: str) -> None:
    problem = only_problem(workload("web") + "---\n" + text)

    assert problem.code == "GSM0002"
    assert problem.file == FILE
    assert problem.document == 2
    assert problem.message.endswith(f"got {type_name}")
    start = len(workload("web").splitlines()) + 2
    assert problem.hint == f"the document starts at {FILE}:{start}"


@pytest.mark.parametrize(
    ("kind", "suggestion"), [("Workoad", "Workload"), ("HTTPRoutes", "HTTPRoute")]
)
def test_unknown_kind_suggests_the_closest(kind: str, suggestion: str) -> None:
    problem = only_problem(workload("web").replace("kind: Workload", f"kind: {kind}"))

    assert problem.code == "GSM0003"
    assert problem.document == 1
    assert problem.field == "kind"
    assert problem.message == f"unknown kind `{kind}`"
    assert problem.hint == f"did you mean `{suggestion}`?"


def test_missing_or_unrelated_kind_lists_supported_kinds() -> None:
    problem = only_problem(workload("web").replace("kind: Workload\n", ""))
    assert problem.code == "GSM0003"
    assert problem.message == "the document has no `kind`"
    assert problem.hint == (
        "supported kinds: ExternalService, FaultInjection, GRPCRoute, Gateway, HTTPRoute, "
        "Mesh, RetryPolicy, TrafficPolicy, Workload"
    )

    problem = only_problem(workload("web").replace("kind: Workload", "kind: Deployment"))
    assert problem.code == "GSM0003"
    assert problem.hint == (
        "supported kinds: ExternalService, FaultInjection, GRPCRoute, Gateway, HTTPRoute, "
        "Mesh, RetryPolicy, TrafficPolicy, Workload"
    )


def test_wrong_api_version() -> None:
    text = route_to("[{name: orders-v1, port: 80}]").replace(
        "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"
    )
    problem = only_problem(text)

    assert problem.code == "GSM0004"
    assert problem.file == FILE
    assert problem.document == 4
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "apiVersion"
    assert "gateway.networking.k8s.io/v1beta1" in problem.message
    assert problem.hint == "set apiVersion: gateway.networking.k8s.io/v1"


def test_unknown_field_suggests_the_closest_field() -> None:
    text = route_to("[{name: orders-v1, port: 80}]").replace("timeouts: {}", "timout: {}")
    problem = only_problem(text)

    assert problem.code == "GSM0005"
    assert problem.document == 4
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.rules[0].timout"
    assert problem.message == "unknown field `timout`"
    assert problem.hint == "did you mean `timeouts`?"


def test_unknown_field_in_workload_spec() -> None:
    problem = only_problem(workload("web", extra="replica: 2"))
    assert problem.resource == "Workload/web"
    assert problem.field == "spec.replica"
    assert problem.hint == "did you mean `replicas`?"


def test_unknown_field_without_a_close_match_lists_allowed_fields() -> None:
    problem = only_problem(workload("web", ports="[{port: 80, zzz: 1}]"))
    assert problem.field == "spec.ports[0].zzz"
    assert problem.hint == "allowed fields here: name, port, protocol"


def test_missing_required_field() -> None:
    problem = only_problem(workload("web").replace("  command: [python3, app.py]\n", ""))
    assert problem.code == "GSM0005"
    assert problem.document == 1
    assert problem.resource == "Workload/web"
    assert problem.field == "spec.command"
    assert problem.message == "this field is required"
    assert problem.hint


def test_missing_required_field_in_a_list_item() -> None:
    text = route_to("[{name: orders-v1, port: 80}]").replace(
        "backendRefs: [{name: orders-v1, port: 80}]", "backendRefs: [{name: orders-v1}]"
    )
    problem = only_problem(text)
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.rules[0].backendRefs[0].port"
    assert problem.message == "this field is required"


@pytest.mark.parametrize(
    ("port", "bound"), [(0, "greater than or equal to 1"), (70000, "less than")]
)
def test_invalid_workload_port(port: int, bound: str) -> None:
    problem = only_problem(workload("web", ports=f"[{{port: 80}}, {{port: {port}}}]"))
    assert problem.code == "GSM0005"
    assert problem.resource == "Workload/web"
    assert problem.field == "spec.ports[1].port"
    assert bound in problem.message
    assert f"(got `{port}`)" in problem.message


@pytest.mark.parametrize("port", [0, 70000])
def test_invalid_backend_port_names_the_exact_list_item(port: int) -> None:
    problem = only_problem(
        route_to(f"[{{name: orders-v1, port: 80}}, {{name: orders-v2, port: {port}}}]")
    )
    assert problem.document == 4
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.rules[0].backendRefs[1].port"
    assert f"`{port}`" in problem.message


@pytest.mark.parametrize("name", ["Web", "web_app", "1web", "web-", "a" * 64])
def test_invalid_name(name: str) -> None:
    problem = only_problem(workload(name))
    assert problem.code == "GSM0005"
    assert problem.resource == f"Workload/{name}"
    assert problem.field == "metadata.name"
    if len(name) <= 63:
        assert problem.message == f"`{name}` is not a valid name"
        assert "RFC 1035" in problem.hint


def test_invalid_service_name_in_services_list() -> None:
    problem = only_problem(workload("web", services="[web, Bad]"))
    assert problem.field == "spec.services[1]"


def test_invalid_duration() -> None:
    problem = only_problem(route_to("[{name: orders-v1, port: 80}]", timeouts="{request: 5x}"))
    assert problem.code == "GSM0005"
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.rules[0].timeouts.request"
    assert problem.message.startswith("`5x` is not a duration")
    assert not problem.message.startswith("Value error")


def test_path_without_leading_slash() -> None:
    problem = only_problem(
        route_to(
            "[{name: orders-v1, port: 80}]", matches="[{path: {value: /ok}}, {path: {value: api}}]"
        )
    )
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.rules[0].matches[1].path.value"
    assert problem.message == "path `api` must start with `/`"


def test_duplicate_port_in_a_workload() -> None:
    problem = only_problem(workload("web", ports="[{port: 80}, {port: 80, protocol: tcp}]"))
    assert problem.code == "GSM0005"
    assert problem.resource == "Workload/web"
    assert problem.field == "spec.ports"
    assert problem.message == "port 80 is listed twice (entries 0 and 1)"


def test_literal_error_names_the_allowed_values() -> None:
    problem = only_problem(workload("web", ports="[{port: 80, protocol: udp}]"))
    assert problem.field == "spec.ports[0].protocol"
    assert problem.message.startswith("`udp` is not allowed; expected ")
    assert "'tcp'" in problem.message


def test_every_problem_of_every_document_is_reported() -> None:
    text = join(
        workload("web", ports="[{port: 0}]"),
        workload("ok"),
        workload("api", extra="replica: 2"),
        "- not a mapping\n",
    )
    config, problems = load(text)
    assert config is None
    assert [(p.document, p.field) for p in problems] == [
        (1, "spec.ports[0].port"),
        (3, "spec.replica"),
        (4, ""),
    ]


# --- cross-resource problems (validate) ----------------------------------------------------


def test_duplicate_names() -> None:
    problem = only_problem(join(workload("web"), workload("web", extra="replicas: 2")))
    assert problem.code == "GSM0020"
    assert problem.document == 2
    assert problem.resource == "Workload/web"
    assert problem.field == "metadata.name"
    assert f"{FILE} (document 1, Workload/web)" in problem.message


def test_same_name_of_different_kinds_is_allowed() -> None:
    config, problems = load(join(route_to("[{name: orders-v1, port: 80}]"), workload("split")))
    assert problems == []
    assert config is not None


def test_port_protocol_conflict_between_workloads_of_one_service() -> None:
    text = join(
        workload("db-b", services="[db]", ports="[{port: 5432, protocol: http}]"),
        workload("db-a", services="[db]", ports="[{port: 9000}, {port: 5432, protocol: tcp}]"),
    )
    problem = only_problem(text)
    assert problem.code == "GSM0022"
    # Workloads are checked in name order: db-a declares first, db-b conflicts.
    assert problem.document == 1
    assert problem.resource == "Workload/db-b"
    assert problem.field == "spec.ports[0].protocol"
    assert "`http` here but `tcp` in workload `db-a`" in problem.message


def test_unknown_parent_service_suggests_the_closest() -> None:
    problem = only_problem(route_to("[{name: orders-v1, port: 80}]", parent="{name: ordrs}"))
    assert problem.code == "GSM0101"
    assert problem.document == 4
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.parentRefs[0].name"
    assert problem.hint == "did you mean `orders`?"


def test_unknown_parent_service_without_close_match_lists_known() -> None:
    problem = only_problem(route_to("[{name: orders-v1, port: 80}]", parent="{name: zzz}"))
    assert problem.code == "GSM0101"
    assert problem.hint == "known: db, orders, orders-v1, orders-v2"


def test_unknown_parent_port() -> None:
    problem = only_problem(
        route_to("[{name: orders-v1, port: 80}]", parent="{name: orders, port: 81}")
    )
    assert problem.code == "GSM0102"
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.parentRefs[0].port"
    assert problem.hint == "ports of `orders`: 80"


def test_route_attached_to_tcp_port() -> None:
    problem = only_problem(
        route_to("[{name: orders-v1, port: 80}]", parent="{name: db, port: 5432}")
    )
    assert problem.code == "GSM0103"
    assert problem.field == "spec.parentRefs[0].port"
    assert "`tcp`" in problem.message


def test_route_attached_to_tcp_only_service_without_port() -> None:
    problem = only_problem(route_to("[{name: orders-v1, port: 80}]", parent="{name: db}"))
    assert problem.code == "GSM0103"
    assert problem.field == "spec.parentRefs[0].name"


def test_unknown_backend_suggests_the_closest() -> None:
    problem = only_problem(route_to("[{name: orders-v1, port: 80}, {name: ordres-v2, port: 80}]"))
    assert problem.code == "GSM0104"
    assert problem.document == 4
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.rules[0].backendRefs[1].name"
    assert problem.hint == "did you mean `orders-v2`?"


def test_unknown_backend_port() -> None:
    problem = only_problem(route_to("[{name: orders-v1, port: 8080}]"))
    assert problem.code == "GSM0105"
    assert problem.field == "spec.rules[0].backendRefs[0].port"
    assert problem.hint == "ports of `orders-v1`: 80"


def test_all_weights_zero() -> None:
    problem = only_problem(
        route_to("[{name: orders-v1, port: 80, weight: 0}, {name: orders-v2, port: 80, weight: 0}]")
    )
    assert problem.code == "GSM0106"
    assert problem.field == "spec.rules[0].backendRefs"


def test_some_weights_zero_is_fine() -> None:
    config, problems = load(
        route_to("[{name: orders-v1, port: 80, weight: 0}, {name: orders-v2, port: 80}]")
    )
    assert problems == []
    assert config is not None


def test_backend_request_longer_than_request() -> None:
    problem = only_problem(
        route_to("[{name: orders-v1, port: 80}]", timeouts="{request: 5s, backendRequest: 10s}")
    )
    assert problem.code == "GSM0107"
    assert problem.resource == "HTTPRoute/split"
    assert problem.field == "spec.rules[0].timeouts.backendRequest"
    assert "10000 ms" in problem.message
    assert "5000 ms" in problem.message


def test_backend_request_longer_than_the_default_request_timeout() -> None:
    problem = only_problem(
        route_to("[{name: orders-v1, port: 80}]", timeouts="{backendRequest: 20s}")
    )
    assert problem.code == "GSM0107"
    assert "mesh default request timeout (15000 ms)" in problem.message
    assert "set timeouts.request explicitly" in problem.hint


def test_duplicate_yaml_key_is_an_error_not_last_one_wins() -> None:
    problem = only_problem(workload("web", extra="replicas: 2\nreplicas: 5"))
    assert problem.code == "GSM0001"
    assert "duplicate key `replicas`" in problem.message
    assert "line 9" in problem.message


@pytest.mark.parametrize(
    "timeouts",
    [
        "{request: 10s, backendRequest: 10s}",
        "{request: 0s, backendRequest: 10s}",  # 0s disables the request timeout
        "{request: 10s, backendRequest: 2s}",
    ],
)
def test_backend_request_within_request_is_fine(timeouts: str) -> None:
    config, problems = load(route_to("[{name: orders-v1, port: 80}]", timeouts=timeouts))
    assert problems == []
    assert config is not None


def test_config_is_none_when_schema_and_cross_resource_problems_mix() -> None:
    # A schema error stops the load before cross-resource checks run.
    text = join(route_to("[{name: nope, port: 80}]"), workload("bad", ports="[{port: 0}]"))
    config, problems = load(text)
    assert config is None
    assert [p.code for p in problems] == ["GSM0005"]

    config, problems = load(route_to("[{name: nope, port: 80}, {name: orders-v1, port: 1}]"))
    assert config is None
    assert [p.code for p in problems] == ["GSM0104", "GSM0105"]
