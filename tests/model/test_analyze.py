"""The analyzer: every code has a fixture that fails with it and one that passes, loaded
through the real file loader; findings carry their location; the docs list every code.

Fixtures live in ``testdata/analyze/<code>/{fail,pass}.yaml``. A failing fixture yields
that code and no other; a passing one (the fix) yields nothing at all, advisories
included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gossamer.api import load_config
from gossamer.model import (
    BackendRef,
    ExternalPort,
    ExternalService,
    HeaderMatch,
    HTTPRoute,
    Locality,
    MeshConfig,
    MeshSettings,
    Origin,
    ParentRef,
    PathMatch,
    PathMatchType,
    PolicyTargetKind,
    Port,
    Problem,
    Protocol,
    RouteMatch,
    RouteRule,
    Severity,
    Timeouts,
    TrafficPolicy,
    Workload,
    ZoneShare,
    analyze,
    validate,
)
from gossamer.sources import load_sources

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "testdata" / "analyze"
CODES_MD = ROOT / "docs" / "reference" / "codes.md"
CODES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())

ADVISORIES = {"GSM0122", "GSM0124"}
"""Reported by ``analyze`` only, never by an apply."""

# Where the first finding of each failing fixture points: (document, resource, field).
WHERE: dict[str, tuple[int, str, str]] = {
    "GSM0001": (1, "", ""),
    "GSM0002": (1, "", ""),
    "GSM0003": (1, "", "kind"),
    "GSM0004": (1, "Workload/web", "apiVersion"),
    "GSM0005": (1, "Workload/web", "spec.replica"),
    "GSM0020": (2, "Workload/web", "metadata.name"),
    "GSM0022": (2, "Workload/db-b", "spec.ports[0].protocol"),
    "GSM0023": (3, "Mesh/mesh-2", "kind"),
    "GSM0101": (2, "HTTPRoute/r", "spec.parentRefs[0].name"),
    "GSM0102": (2, "HTTPRoute/r", "spec.parentRefs[0].port"),
    "GSM0103": (3, "HTTPRoute/r", "spec.parentRefs[0].port"),
    "GSM0104": (2, "HTTPRoute/r", "spec.rules[0].backendRefs[0].name"),
    "GSM0105": (2, "HTTPRoute/r", "spec.rules[0].backendRefs[0].port"),
    "GSM0106": (2, "HTTPRoute/r", "spec.rules[0].backendRefs"),
    "GSM0107": (2, "HTTPRoute/r", "spec.rules[0].timeouts.backendRequest"),
    "GSM0108": (3, "HTTPRoute/r", "spec.parentRefs[0].name"),
    "GSM0109": (3, "HTTPRoute/r", "spec.parentRefs[0].sectionName"),
    "GSM0110": (3, "HTTPRoute/r", "spec.rules[1].matches[0]"),
    "GSM0111": (2, "ExternalService/payments", "spec.hosts[0]"),
    "GSM0112": (2, "Gateway/public", "spec.listeners[0].port"),
    "GSM0113": (3, "HTTPRoute/r", "spec.rules[0].filters[0].extensionRef.name"),
    "GSM0114": (2, "HTTPRoute/r", "spec.rules[0]"),
    "GSM0115": (2, "TrafficPolicy/p", "spec.targetRefs[0].name"),
    "GSM0116": (3, "TrafficPolicy/q", "spec.targetRefs[0].name"),
    "GSM0117": (2, "TrafficPolicy/p", "spec.outlierDetection.maxEjectionPercent"),
    "GSM0118": (3, "TrafficPolicy/p", "spec.locality"),
    "GSM0119": (2, "TrafficPolicy/p", "spec.compression.contentTypes"),
    "GSM0120": (2, "TrafficPolicy/p", "spec.healthCheck.http"),
    "GSM0121": (2, "TrafficPolicy/p", "spec.compression"),
    "GSM0122": (4, "HTTPRoute/b-beta", "spec.rules[0].matches[0].path"),
    "GSM0123": (3, "HTTPRoute/r", "spec.rules[1].matches[0]"),
    "GSM0124": (2, "HTTPRoute/r", "spec.rules[0].timeouts.request"),
    "GSM0125": (2, "Workload/db", "spec.ports[0].protocol"),
    "GSM0126": (3, "HTTPRoute/orders-canary", "spec.rules[0].backendRefs[1].weight"),
    "GSM0127": (3, "HTTPRoute/site", "spec.hostnames"),
    "GSM0128": (2, "HTTPRoute/r", "spec.rules[0].matches[0].path.value"),
    "GSM0129": (4, "TrafficPolicy/p", "spec.locality.distribute[0].from"),
    "GSM0130": (2, "Workload/web", "spec.calls[0]"),
}


def findings(path: Path) -> tuple[list[Problem], list[Problem]]:
    """What an apply reports (the loader and ``validate``) and what ``gossamer analyze
    PATH`` reports (that, plus the advisories)."""
    sources, problems = load_sources(path)
    config = None
    if sources:
        config, problems = load_config(sources)
    applied = list(problems)
    if config is not None:
        problems += [p for p in analyze(config) if p not in problems]
    return applied, problems


def test_there_are_at_least_20_analyzer_checks_beyond_reading_files() -> None:
    mesh_checks = [c for c in CODES if c >= "GSM0100"]
    assert len(mesh_checks) >= 20
    assert set(WHERE) == set(CODES)


@pytest.mark.parametrize("code", CODES)
def test_failing_fixture_yields_its_code_with_a_location(code: str) -> None:
    path = FIXTURES / code / "fail.yaml"
    applied, found = findings(path)
    assert found, f"{code}: fail.yaml yields nothing"
    assert {p.code for p in found} == {code}, "\n".join(map(str, found))
    document, resource, field = WHERE[code]
    first = found[0]
    assert (first.document, first.resource, first.field) == (document, resource, field)
    for p in found:
        assert Path(p.file).resolve() == path.resolve()
        assert p.message and p.hint, str(p)
        assert str(p).startswith(f"{p.severity.value} {code}: {p.file}, document {p.document}")
    if code in ADVISORIES:
        assert applied == [], "an advisory must not be reported by an apply"
    else:
        assert applied == found


@pytest.mark.parametrize("code", CODES)
def test_passing_fixture_yields_nothing(code: str) -> None:
    _, found = findings(FIXTURES / code / "pass.yaml")
    assert found == [], "\n".join(map(str, found))


# --- the docs ------------------------------------------------------------------------------


def _expand(text: str) -> set[str]:
    """Codes named in ``text``, with ``GSMa to GSMb`` ranges expanded."""
    codes = set(re.findall(r"GSM\d{4}", text))
    for a, b in re.findall(r"GSM(\d{4}) to GSM(\d{4})", text):
        codes |= {f"GSM{n:04d}" for n in range(int(a), int(b) + 1)}
    return codes


def _paragraph(text: str, start: str) -> str:
    at = text.index(start)
    return text[at : text.index("\n\n", at)]


def test_every_code_is_documented_and_every_documented_code_exists() -> None:
    docs = CODES_MD.read_text(encoding="utf-8")
    documented = set(re.findall(r"^### (GSM\d{4})$", docs, flags=re.MULTILINE))
    emitted = set()
    for source in (ROOT / "src" / "gossamer").rglob("*.py"):
        emitted |= set(re.findall(r"\"(GSM\d{4})\"", source.read_text(encoding="utf-8")))
    assert emitted - documented == set(), "codes without a section in docs/reference/codes.md"
    assert documented - emitted == set(), "documented codes that nothing reports"
    assert set(CODES) <= documented


def test_every_check_of_the_loader_and_the_model_has_fixtures() -> None:
    checked = set()
    for module in (
        *(ROOT / "src/gossamer/api").glob("*.py"),
        *(ROOT / "src/gossamer/model/_validate").glob("*.py"),
    ):
        checked |= set(re.findall(r"\"(GSM\d{4})\"", module.read_text(encoding="utf-8")))
    assert checked - set(CODES) == set()


def test_the_documented_severities_are_the_real_ones() -> None:
    docs = CODES_MD.read_text(encoding="utf-8")
    warnings = _expand(_paragraph(docs, "**Severity.**"))
    real = set()
    for code in CODES:
        _, found = findings(FIXTURES / code / "fail.yaml")
        if all(p.severity is Severity.WARNING for p in found):
            real.add(code)
    assert warnings == real
    advisories = _expand(_paragraph(docs, "**Advisories.**"))
    assert advisories == ADVISORIES


# --- the checks' edges, on the model directly ---------------------------------------------


def _wl(name: str, *ports: Port, **kw: object) -> Workload:
    services = kw.pop("services", (name,))
    return Workload(name, services, ports, ("app",), **kw)  # type: ignore[arg-type]


HTTP80 = Port("http-80", 80, Protocol.HTTP)


def _route(*rules: RouteRule, parent: str = "web", name: str = "r") -> HTTPRoute:
    return HTTPRoute(name, (ParentRef(parent, 80),), rules)


def _rule(path: PathMatch, backend: str = "web") -> RouteRule:
    return RouteRule((RouteMatch(path),), (BackendRef(backend, 80),), Timeouts(5000))


def codes(config: MeshConfig) -> list[str]:
    return [p.code for p in analyze(config)]


@pytest.mark.parametrize(
    ("regex", "never"),
    [
        ("api/.*", True),
        ("^api", True),
        ("a", True),
        ("/api/.*", False),
        ("^/api", False),
        (".*", False),
        ("a?/x", False),
        ("a*/x", False),
        ("a|/b", False),
        ("(a|/b)", False),
        ("[/a]x", False),
        ("\\/x", False),
    ],
)
def test_gsm0128_flags_only_expressions_that_cannot_start_with_a_slash(
    regex: str, never: bool
) -> None:
    rule = _rule(PathMatch(PathMatchType.REGULAR_EXPRESSION, regex))
    config = MeshConfig(workloads=(_wl("web", HTTP80),), routes=(_route(rule),))
    assert ("GSM0128" in codes(config)) is never


@pytest.mark.parametrize(
    ("first", "then", "shadowed"),
    [
        (("RegularExpression", "/.*"), ("PathPrefix", "/api"), True),
        (("RegularExpression", ".*"), ("Exact", "/x"), False),  # exact paths go first
        (("RegularExpression", "/api.*"), ("PathPrefix", "/api/v1"), True),
        (("RegularExpression", "/api/.*"), ("PathPrefix", "/web"), False),
        (("RegularExpression", "/api/.*"), ("RegularExpression", "/api/v1/x"), False),
        (("RegularExpression", "/a.*"), ("RegularExpression", "/ab"), True),
        (("RegularExpression", "/v[0-9]/.*"), ("PathPrefix", "/v1"), False),  # not a literal
        (("PathPrefix", "/"), ("PathPrefix", "/api"), False),  # longer prefixes go first
    ],
)
def test_gsm0123_a_broader_match_tried_first_shadows(
    first: tuple[str, str], then: tuple[str, str], shadowed: bool
) -> None:
    rules = (
        _rule(PathMatch(PathMatchType(first[0]), first[1])),
        _rule(PathMatch(PathMatchType(then[0]), then[1]), backend="api"),
    )
    config = MeshConfig(
        workloads=(_wl("web", HTTP80), _wl("api", HTTP80)), routes=(_route(*rules),)
    )
    assert ("GSM0123" in codes(config)) is shadowed, analyze(config)


def test_gsm0123_needs_the_broader_match_to_have_no_extra_condition() -> None:
    regex = RouteMatch(PathMatch(PathMatchType.REGULAR_EXPRESSION, "/.*"), method="GET")
    rules = (
        RouteRule((regex,), (BackendRef("web", 80),), Timeouts(5000)),
        _rule(PathMatch(PathMatchType.PATH_PREFIX, "/api"), backend="api"),
    )
    config = MeshConfig(
        workloads=(_wl("web", HTTP80), _wl("api", HTTP80)), routes=(_route(*rules),)
    )
    assert "GSM0123" not in codes(config)


def test_gsm0125_reads_port_names_and_external_services() -> None:
    named = _wl("db", Port("mysql-main", 9999, Protocol.HTTP))
    assert codes(MeshConfig(workloads=(named,))) == ["GSM0125"]
    tcp = _wl("db", Port("mysql", 3306, Protocol.TCP))
    assert codes(MeshConfig(workloads=(tcp,))) == []
    ext = ExternalService("rds", ("db.example.com",), (ExternalPort(3306, Protocol.HTTP, 3306),))
    [problem] = analyze(MeshConfig(external_services=(ext,)))
    assert (problem.code, problem.field) == ("GSM0125", "spec.ports[0].protocol")


def test_gsm0126_names_every_workload_and_the_share() -> None:
    workloads = (
        _wl("orders-v1", HTTP80, services=("orders-v1",)),
        _wl("orders-v2a", HTTP80, services=("orders-v2",), version="v2", replicas=0),
        _wl("orders-v2b", HTTP80, services=("orders-v2",), version="v2", replicas=0),
    )
    rule = RouteRule(
        (RouteMatch(),),
        (BackendRef("orders-v1", 80, 3), BackendRef("orders-v2", 80, 1)),
        Timeouts(5000),
    )
    config = MeshConfig(workloads=workloads, routes=(_route(rule, parent="orders-v1"),))
    [problem] = analyze(config)
    assert problem.code == "GSM0126" and problem.severity is Severity.ERROR
    assert "gets 25% of this rule's requests" in problem.message
    assert "orders-v2a (version v2), orders-v2b (version v2)" in problem.message
    one_up = (
        workloads[0],
        workloads[1],
        Workload("orders-v2b", ("orders-v2",), (HTTP80,), ("app",)),
    )
    assert codes(MeshConfig(workloads=one_up, routes=config.routes)) == []


def test_gsm0129_shares_to_zones_without_instances() -> None:
    workloads = (
        _wl("web", HTTP80, zone="zone-a"),
        _wl("web-b", HTTP80, services=("web",), zone="zone-b", replicas=0),
    )

    def policy(*to: tuple[str, int]) -> TrafficPolicy:
        locality = Locality(prefer_local=False, distribute=(ZoneShare("zone-a", to),))
        return TrafficPolicy("p", PolicyTargetKind.SERVICE, ("web",), locality=locality)

    some = MeshConfig(workloads=workloads, policies=(policy(("zone-a", 50), ("zone-b", 50)),))
    [problem] = analyze(some)
    assert problem.field == "spec.locality.distribute[0].to"
    assert "50% to zone `zone-b`, where `web` has no instance" in problem.message
    assert "those calls go to the other zones listed" in problem.message
    none = MeshConfig(workloads=workloads, policies=(policy(("zone-b", 100)),))
    [problem] = analyze(none)
    assert "callers in `zone-a` get no instance of `web` at all" in problem.message


def test_gsm0124_names_where_the_default_comes_from() -> None:
    rule = RouteRule((RouteMatch(),), (BackendRef("web", 80),))
    settings = MeshSettings(
        default_request_timeout_ms=10_000, origin=Origin("mesh.yaml", 9, "Mesh", "mesh")
    )
    config = MeshConfig(workloads=(_wl("web", HTTP80),), routes=(_route(rule),), settings=settings)
    [problem] = analyze(config)
    assert problem.code == "GSM0124"
    assert "10000 ms (the Mesh resource in mesh.yaml (document 9, Mesh/mesh))" in problem.message
    assert validate(config) == []
    no_backends = RouteRule((RouteMatch(),), ())
    assert codes(MeshConfig(workloads=(_wl("web", HTTP80),), routes=(_route(no_backends),))) == []


def test_gsm0122_ignores_disjoint_hosts_and_reports_each_pair_once() -> None:
    prefix = PathMatch(PathMatchType.PATH_PREFIX, "/")
    plain = RouteMatch(prefix)
    beta = RouteMatch(prefix, headers=(HeaderMatch("x-beta", "yes"),))
    a = HTTPRoute(
        "a", (ParentRef("web"),), (RouteRule((plain,), (BackendRef("web", 80),), Timeouts(1)),)
    )
    b = HTTPRoute(
        "b", (ParentRef("web"),), (RouteRule((beta,), (BackendRef("web", 80),), Timeouts(1)),)
    )
    two_ports = _wl("web", HTTP80, Port("http-81", 81, Protocol.HTTP))
    found = analyze(MeshConfig(workloads=(two_ports,), routes=(a, b)))
    assert [(p.code, p.resource) for p in found] == [("GSM0122", "")]  # no origin: no resource
    assert "service `web` port 80" in found[0].message


def test_gsm0110_compares_what_reaches_one_port_however_parents_are_written() -> None:
    rule = RouteRule((RouteMatch(),), (BackendRef("web", 80),), Timeouts(1000))
    every_port = HTTPRoute("a", (ParentRef("web"),), (rule,))
    port_80 = HTTPRoute("b", (ParentRef("web", 80),), (rule,))
    config = MeshConfig(workloads=(_wl("web", HTTP80),), routes=(every_port, port_80))
    [problem] = analyze(config)
    assert (problem.code, problem.field) == ("GSM0110", "spec.rules[0].matches[0]")
    assert "identical to one in a rule 0" in problem.message
