"""The route simulator: Envoy's virtual host and route selection, without Envoy.

Hand-written route configurations pin each rule; the last tests run the simulator on the
real translator's output. tests/e2e/test_simulate_vs_envoy.py checks the same rules
against the Envoy binary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gossamer.api import Source, load_config
from gossamer.model import MeshState, place, sequential_ports
from gossamer.translate import ROUTE, _simulate, names, translate
from gossamer.translate._simulate import (
    HeaderToAdd,
    SimRequest,
    SimResult,
    SimulationError,
    simulate,
)

Json = dict[str, Any]


def dr(name: str, status: int = 200, **match: Any) -> Json:
    """A direct_response route named ``name`` with the given RouteMatch fields (default: /)."""
    match = match or {"prefix": "/"}
    return {"name": name, "match": match, "direct_response": {"status": status}}


def to(name: str, cluster: str = "c", **match: Any) -> Json:
    return {"name": name, "match": match, "route": {"cluster": cluster}}


def vh(name: str, domains: list[str], *routes: Json, **extra: Any) -> Json:
    return {"name": name, "domains": domains, "routes": list(routes), **extra}


def rc(*vhosts: Json, **extra: Any) -> Json:
    return {"name": "rc", "virtual_hosts": list(vhosts), **extra}


def one(*routes: Json, **vhost_extra: Any) -> Json:
    """A route configuration with one catch-all virtual host named ``v``."""
    return rc(vh("v", ["*"], *routes, **vhost_extra))


def sim(
    config: Json, path: str = "/", method: str = "GET", host: str = "h", **hdrs: str
) -> SimResult:
    headers = {k.replace("_", "-"): v for k, v in hdrs.items()}
    return simulate(config, SimRequest(host, path, method, headers))


def route_of(config: Json, path: str = "/", method: str = "GET", **hdrs: str) -> str | None:
    return sim(config, path, method, **hdrs).route


@pytest.fixture(params=["re2", "re"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a regex test with google-re2 (when installed) and with the ``re`` fallback."""
    if request.param == "re2":
        re2 = pytest.importorskip("re2")
        monkeypatch.setattr(_simulate, "_RE2", re2)
    else:
        monkeypatch.setattr(_simulate, "_RE2", None)
    return str(request.param)


# --- virtual hosts -----------------------------------------------------------------------

HOSTS = rc(
    vh("exact", ["www.foo.com", "orders:80", "orders"], dr("r")),
    vh("suffix-short", ["*.foo.com"], dr("r")),
    vh("suffix-long", ["*-bar.foo.com"], dr("r")),
    vh("prefix-short", ["foo.*"], dr("r")),
    vh("prefix-long", ["foo.bar.*"], dr("r")),
    vh("catch-all", ["*"], dr("r")),
)


@pytest.mark.parametrize(
    ("authority", "vhost"),
    [
        ("www.foo.com", "exact"),
        ("WWW.Foo.COM", "exact"),  # hosts are case-insensitive
        ("a.foo.com", "suffix-short"),
        ("baz-bar.foo.com", "suffix-long"),  # longest suffix first
        ("baz.bar.foo.com", "suffix-short"),
        ("-bar.foo.com", "suffix-short"),  # '*' never matches the empty string...
        (".foo.com", "catch-all"),  # ...so *.foo.com does not match .foo.com
        ("foo.x", "prefix-short"),
        ("foo.bar.x", "prefix-long"),  # longest prefix first
        ("foo.bar.", "prefix-short"),
        ("foo.", "catch-all"),
        ("foo.foo.com", "suffix-short"),  # suffix wildcards before prefix wildcards
        ("orders", "exact"),
        ("orders:80", "exact"),  # the port is part of the authority
        ("orders:8080", "catch-all"),
        ("www.foo.com:80", "catch-all"),  # no stripping: only "www.foo.com" is listed
        ("a.foo.com:80", "catch-all"),
        ("foo.x:80", "prefix-short"),  # a prefix wildcard swallows the port
        ("elsewhere", "catch-all"),
        ("", "catch-all"),
    ],
)
def test_virtual_host_selection(authority: str, vhost: str) -> None:
    assert simulate(HOSTS, SimRequest(authority)).virtual_host == vhost


def test_case_insensitive_domains() -> None:
    config = rc(vh("mixed", ["Orders.Example"], dr("r")))
    assert simulate(config, SimRequest("orders.EXAMPLE")).virtual_host == "mixed"
    assert simulate(config, SimRequest("*.Example")).virtual_host is None


def test_no_virtual_host_is_404_without_route() -> None:
    config = rc(vh("a", ["a"], dr("r")))
    assert simulate(config, SimRequest("b")) == SimResult(virtual_host=None, route=None, status=404)


def test_ignore_port_in_host_matching() -> None:
    config = rc(
        vh("a", ["a"], dr("r")),
        vh("b", ["b:80"], dr("r")),
        vh("v6", ["[::1]"], dr("r")),
        ignore_port_in_host_matching=True,
    )
    assert simulate(config, SimRequest("a:99")).virtual_host == "a"
    assert simulate(config, SimRequest("[::1]:80")).virtual_host == "v6"
    assert simulate(config, SimRequest("[::1]")).virtual_host == "v6"
    # The port is stripped from the request, never from the domains.
    assert simulate(config, SimRequest("b:80")).virtual_host is None


@pytest.mark.parametrize(
    "domains", [(["a"], ["A"]), (["*"], ["*"]), (["*.x"], ["*.X"]), (["x.*"], ["x.*"])]
)
def test_duplicate_domains_are_rejected(domains: tuple[list[str], list[str]]) -> None:
    config = rc(vh("one", domains[0], dr("r")), vh("two", domains[1], dr("r")))
    with pytest.raises(SimulationError):
        simulate(config, SimRequest("a"))


# --- route order and path matching ------------------------------------------------------


def test_first_matching_route_wins() -> None:
    config = one(dr("broad", prefix="/"), dr("narrow", path="/x"))
    assert route_of(config, "/x") == "broad"
    config = one(dr("narrow", path="/x"), dr("broad", prefix="/"))
    assert route_of(config, "/x") == "narrow"
    assert route_of(config, "/y") == "broad"


def test_no_route_is_404_with_the_virtual_host() -> None:
    result = sim(one(dr("api", prefix="/api")), "/web")
    assert result == SimResult(virtual_host="v", route=None, status=404)


def test_unnamed_route_matches_with_empty_name() -> None:
    result = sim(one({"match": {"prefix": "/"}, "direct_response": {"status": 418}}))
    assert (result.route, result.status, result.direct_response) == ("", 418, 418)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api", "prefix"),
        ("/apix", "prefix"),
        ("/Api", None),
        ("/ap", None),
        ("/ap?i", None),  # the query is not part of the path
    ],
)
def test_prefix(path: str, expected: str | None) -> None:
    assert route_of(one(dr("prefix", prefix="/api")), path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/api", "exact"), ("/api?x=1", "exact"), ("/api/", None), ("/ap", None), ("/API", None)],
)
def test_exact_path(path: str, expected: str | None) -> None:
    assert route_of(one(dr("exact", path="/api")), path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api", "psp"),
        ("/api/", "psp"),
        ("/api/x", "psp"),
        ("/api?q=1", "psp"),
        ("/api#frag", "psp"),
        ("/apix", None),
        ("/ap", None),
        ("/API/x", None),
    ],
)
def test_path_separated_prefix(path: str, expected: str | None) -> None:
    assert route_of(one(dr("psp", path_separated_prefix="/api")), path) == expected


def test_case_insensitive_path_matching() -> None:
    config = one(
        dr("prefix", prefix="/Pre", case_sensitive=False),
        dr("exact", path="/Ex", case_sensitive=False),
        dr("psp", path_separated_prefix="/Sep", case_sensitive=False),
    )
    assert route_of(config, "/pRE/x") == "prefix"
    assert route_of(config, "/eX") == "exact"
    assert route_of(config, "/SEP/x") == "psp"
    assert route_of(config, "/sepx") is None


def test_safe_regex_is_a_full_match_on_the_path_without_query(engine: str) -> None:
    config = one(dr("re", safe_regex={"regex": "/items/[0-9]+"}))
    assert route_of(config, "/items/42") == "re"
    assert route_of(config, "/items/42?page=2") == "re"
    assert route_of(config, "/items/42/x") is None  # no partial match at the end...
    assert route_of(config, "/v1/items/42") is None  # ...nor at the start
    assert route_of(config, "/items/") is None


def test_safe_regex_is_not_affected_by_case_sensitive(engine: str) -> None:
    config = one(dr("re", safe_regex={"regex": "/a"}, case_sensitive=False))
    assert route_of(config, "/A") is None
    config = one(dr("re", safe_regex={"regex": "(?i)/a"}))
    assert route_of(config, "/A") == "re"


def test_regex_digits_are_ascii_only_like_re2(engine: str) -> None:
    config = one(dr("re", safe_regex={"regex": "/[a-z]+/\\d+"}))
    assert route_of(config, "/x/12") == "re"
    assert route_of(config, "/x/\u0661\u0662") is None  # Arabic-Indic digits


def test_re2_syntax_is_translated_or_refused(engine: str) -> None:
    named = one(dr("re", safe_regex={"regex": "/(?<id>[0-9]+)\\z"}))
    assert route_of(named, "/7") == "re"
    for pattern in ["/(?=x)x", "/(a)\\1", "/(?P=a)"]:
        with pytest.raises(SimulationError):
            sim(one(dr("re", safe_regex={"regex": pattern})), "/x")
    with pytest.raises(SimulationError):
        sim(one(dr("re", safe_regex={"regex": "/("})), "/x")


def test_re_fallback_refuses_what_it_cannot_translate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_simulate, "_RE2", None)
    for pattern in ["/\\pL", "/\\Qa.b\\E", "/a\\Z"]:
        with pytest.raises(SimulationError):
            sim(one(dr("re", safe_regex={"regex": pattern})), "/x")
    # Inside a character class, brackets and group syntax are literals.
    config = one(dr("re", safe_regex={"regex": "/[](?=]+"}))
    assert route_of(config, "/(?=]") == "re"


def test_unsupported_route_match_raises() -> None:
    fraction = {"default_value": {"numerator": 50}, "runtime_key": "k"}
    with pytest.raises(SimulationError):
        sim(one(dr("r", prefix="/", runtime_fraction=fraction)))
    with pytest.raises(SimulationError):
        sim(one({"name": "r", "match": {"headers": []}, "direct_response": {"status": 200}}))


def test_routes_after_the_match_are_not_evaluated() -> None:
    unsupported = dr("later", prefix="/", runtime_fraction={"default_value": {}})
    assert route_of(one(dr("first", prefix="/"), unsupported)) == "first"


# --- header, query parameter and grpc matchers ------------------------------------------


def hdr(name: str, **spec: Any) -> Json:
    return {"name": name, **spec}


def h_route(*headers: Json) -> Json:
    return one(dr("hit", prefix="/", headers=list(headers)))


@pytest.mark.parametrize(
    ("string_match", "value", "hit"),
    [
        ({"exact": "abc"}, "abc", True),
        ({"exact": "abc"}, "abcd", False),
        ({"exact": "abc"}, "ABC", False),
        ({"exact": "abc", "ignore_case": True}, "ABC", True),
        ({"prefix": "ab"}, "abc", True),
        ({"prefix": "ab"}, "xab", False),
        ({"prefix": "AB", "ignore_case": True}, "abc", True),
        ({"suffix": "bc"}, "abc", True),
        ({"suffix": "bc"}, "bcx", False),
        ({"contains": "b"}, "abc", True),
        ({"contains": "B"}, "abc", False),
        ({"contains": "B", "ignore_case": True}, "abc", True),
        ({"safe_regex": {"regex": "a.c"}}, "abc", True),
        ({"safe_regex": {"regex": "a.c"}}, "abcd", False),  # full match only
        ({"safe_regex": {"regex": "b"}}, "abc", False),
        ({"exact": ""}, "", True),
    ],
)
def test_header_string_match(string_match: Json, value: str, hit: bool, engine: str) -> None:
    config = h_route(hdr("x-a", string_match=string_match))
    assert (route_of(config, **{"x_a": value}) == "hit") is hit


def test_header_absent_never_matches_a_value_matcher() -> None:
    assert route_of(h_route(hdr("x-a", string_match={"exact": ""}))) is None
    assert route_of(h_route(hdr("x-a", string_match={"prefix": ""}))) is None


def test_invert_match() -> None:
    config = h_route(hdr("x-a", string_match={"exact": "1"}, invert_match=True))
    assert route_of(config, x_a="2") == "hit"
    assert route_of(config, x_a="") == "hit"
    assert route_of(config, x_a="1") is None
    # Envoy: an absent header does not match an inverted value matcher.
    assert route_of(config) is None


def test_treat_missing_header_as_empty() -> None:
    spec = {"string_match": {"exact": "1"}, "treat_missing_header_as_empty": True}
    assert route_of(h_route(hdr("x-a", **spec, invert_match=True))) == "hit"
    assert route_of(h_route(hdr("x-a", **spec))) is None
    empty = {"string_match": {"exact": ""}, "treat_missing_header_as_empty": True}
    assert route_of(h_route(hdr("x-a", **empty))) == "hit"


@pytest.mark.parametrize(
    ("spec", "absent", "present"),
    [
        ({"present_match": True}, False, True),
        ({"present_match": False}, True, False),
        ({"present_match": True, "invert_match": True}, True, False),
        ({"present_match": False, "invert_match": True}, False, True),
        ({}, False, True),  # no value matcher: presence
    ],
)
def test_present_match(spec: Json, absent: bool, present: bool) -> None:
    config = h_route(hdr("x-a", **spec))
    assert (route_of(config) == "hit") is absent
    assert (route_of(config, x_a="") == "hit") is present
    assert (route_of(config, x_a="v") == "hit") is present


def test_legacy_header_matchers(engine: str) -> None:
    assert route_of(h_route(hdr("x-a", exact_match="v")), x_a="v") == "hit"
    assert route_of(h_route(hdr("x-a", exact_match="v")), x_a="V") is None
    assert route_of(h_route(hdr("x-a", safe_regex_match={"regex": "v+"})), x_a="vvv") == "hit"
    assert route_of(h_route(hdr("x-a", prefix_match="v")), x_a="vx") == "hit"
    assert route_of(h_route(hdr("x-a", suffix_match="v")), x_a="xv") == "hit"
    assert route_of(h_route(hdr("x-a", contains_match="v")), x_a="xvx") == "hit"


@pytest.mark.parametrize(
    ("value", "hit"),
    [
        ("1", True),
        ("9", True),
        ("+5", True),
        ("10", False),
        ("0", False),
        ("-1", False),
        ("5x", False),
        ("1_0", False),
        ("", False),
    ],
)
def test_range_match(value: str, hit: bool) -> None:
    config = h_route(hdr("x-n", range_match={"start": "1", "end": "10"}))
    assert (route_of(config, x_n=value) == "hit") is hit


def test_header_names_are_case_insensitive() -> None:
    config = h_route(hdr("X-Canary", string_match={"exact": "true"}))
    assert route_of(config, **{"x_canary": "true"}) == "hit"
    result = simulate(config, SimRequest("h", headers={"X-CANARY": "true"}))
    assert result.route == "hit"
    assert simulate(config, SimRequest("h", headers={"X-CANARY": "TRUE"})).route is None


def test_all_header_matchers_must_match() -> None:
    config = h_route(hdr("a", exact_match="1"), hdr("b", exact_match="2"))
    assert route_of(config, a="1", b="2") == "hit"
    assert route_of(config, a="1") is None
    assert route_of(config, a="1", b="3") is None


def test_method_matches_via_pseudo_header() -> None:
    config = one(
        dr("post", prefix="/", headers=[hdr(":method", string_match={"exact": "POST"})]),
        dr("other", prefix="/"),
    )
    assert route_of(config, method="POST") == "post"
    assert route_of(config, method="GET") == "other"
    assert route_of(config, method="post") == "other"


def test_authority_path_and_scheme_pseudo_headers() -> None:
    config = one(
        dr("auth", prefix="/", headers=[hdr(":authority", string_match={"exact": "h:80"})]),
        dr("host", prefix="/", headers=[hdr("host", string_match={"exact": "h:81"})]),
        dr("q", prefix="/", headers=[hdr(":path", string_match={"suffix": "?x=1"})]),
        dr("scheme", prefix="/s", headers=[hdr(":scheme", string_match={"exact": "http"})]),
    )
    assert simulate(config, SimRequest("h:80")).route == "auth"
    assert simulate(config, SimRequest("h:81")).route == "host"  # 'host' reads :authority
    assert simulate(config, SimRequest("h", "/p?x=1")).route == "q"  # :path keeps the query
    assert simulate(config, SimRequest("h", "/s")).route == "scheme"
    # The authority comes from SimRequest.authority, not from a Host header.
    assert simulate(config, SimRequest("h:82", headers={"Host": "h:80"})).route is None


def test_ignore_case_with_safe_regex_is_rejected(engine: str) -> None:
    config = h_route(hdr("x", string_match={"safe_regex": {"regex": "a"}, "ignore_case": True}))
    with pytest.raises(SimulationError):
        route_of(config, x="a")


def q_route(*params: Json) -> Json:
    return one(dr("hit", prefix="/", query_parameters=list(params)))


def test_query_parameter_matchers(engine: str) -> None:
    exact = q_route({"name": "k", "string_match": {"exact": "v"}})
    assert route_of(exact, "/?k=v") == "hit"
    assert route_of(exact, "/p?a=1&k=v&b=2") == "hit"
    assert route_of(exact, "/?k=vv") is None
    assert route_of(exact, "/?K=v") is None  # names are case-sensitive
    assert route_of(exact, "/") is None
    assert route_of(exact, "/?k=x&k=v") is None  # only the first value counts
    regex = q_route({"name": "k", "string_match": {"safe_regex": {"regex": "a.c"}}})
    assert route_of(regex, "/?k=abc") == "hit"
    assert route_of(regex, "/?k=abcd") is None
    present = q_route({"name": "k", "present_match": True})
    assert route_of(present, "/?k") == "hit"
    assert route_of(present, "/?k=") == "hit"
    assert route_of(present, "/?j=1") is None
    assert route_of(q_route({"name": "k"}), "/?k=1") == "hit"


def test_query_values_are_not_percent_decoded() -> None:
    config = q_route({"name": "k", "string_match": {"exact": "a%20b"}})
    assert route_of(config, "/?k=a%20b") == "hit"
    assert route_of(config, "/?k=a+b") is None
    assert route_of(q_route({"name": "k", "string_match": {"exact": "a b"}}), "/?k=a%20b") is None


def test_grpc_match() -> None:
    config = one(dr("grpc", prefix="/", grpc={}), dr("other", prefix="/"))
    assert route_of(config, content_type="application/grpc") == "grpc"
    assert route_of(config, content_type="application/grpc+proto") == "grpc"
    assert route_of(config, content_type="application/grpc-web") == "other"
    assert route_of(config) == "other"


# --- actions ----------------------------------------------------------------------------


def test_cluster_route() -> None:
    config = one(
        {
            "name": "r",
            "match": {"prefix": "/"},
            "route": {"cluster": "outbound|80||a", "timeout": "5s"},
        }
    )
    assert sim(config) == SimResult(
        virtual_host="v",
        route="r",
        clusters=(("outbound|80||a", 1),),
        timeout="5s",
        status=200,
    )


def test_weighted_clusters_drop_zero_weights() -> None:
    weighted = {
        "clusters": [
            {"name": "a", "weight": 90},
            {"name": "b", "weight": 0},
            {"name": "c", "weight": 10},
        ]
    }
    result = sim(
        one({"name": "r", "match": {"prefix": "/"}, "route": {"weighted_clusters": weighted}})
    )
    assert result.clusters == (("a", 90), ("c", 10))
    assert result.status == 200


def test_weighted_clusters_that_sum_to_zero_are_rejected() -> None:
    weighted = {"clusters": [{"name": "a", "weight": 0}]}
    with pytest.raises(SimulationError):
        sim(one({"name": "r", "match": {"prefix": "/"}, "route": {"weighted_clusters": weighted}}))


def test_cluster_header() -> None:
    config = one({"name": "r", "match": {"prefix": "/"}, "route": {"cluster_header": "X-To"}})
    assert sim(config, x_to="svc").clusters == (("svc", 1),)
    missing = sim(config)
    assert (missing.route, missing.clusters, missing.status) == ("r", (), 503)
    for code, status in [("NOT_FOUND", 404), ("INTERNAL_SERVER_ERROR", 500), (1, 404)]:
        config["virtual_hosts"][0]["routes"][0]["route"]["cluster_not_found_response_code"] = code
        assert sim(config).status == status


def test_retry_policy_route_level_replaces_virtual_host_level() -> None:
    vhost_policy = {"retry_on": "5xx", "num_retries": 3}
    route_policy = {"num_retries": 0, "per_try_timeout": "2s"}
    config = one(
        {
            "name": "own",
            "match": {"path": "/own"},
            "route": {"cluster": "c", "retry_policy": route_policy},
        },
        {"name": "inherit", "match": {"prefix": "/"}, "route": {"cluster": "c"}},
        dr("direct", path="/direct"),
        retry_policy=vhost_policy,
    )
    assert sim(config, "/own").retry_policy == route_policy
    assert sim(config, "/x").retry_policy == vhost_policy
    assert sim(one(to("r", prefix="/"))).retry_policy is None


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (None, 301),
        ("MOVED_PERMANENTLY", 301),
        ("FOUND", 302),
        ("SEE_OTHER", 303),
        ("TEMPORARY_REDIRECT", 307),
        ("PERMANENT_REDIRECT", 308),
        (0, 301),
        (1, 302),
        (4, 308),
    ],
)
def test_redirect_codes(code: str | int | None, status: int) -> None:
    redirect: Json = {"host_redirect": "example.com", "path_redirect": "/new"}
    if code is not None:
        redirect["response_code"] = code
    result = sim(one({"name": "r", "match": {"prefix": "/"}, "redirect": redirect}))
    assert (result.route, result.status, result.redirect) == ("r", status, redirect)
    assert result.clusters == ()
    assert result.rewritten_path is None


def test_unknown_redirect_code_is_rejected() -> None:
    redirect = {"response_code": "GONE"}
    with pytest.raises(SimulationError):
        sim(one({"name": "r", "match": {"prefix": "/"}, "redirect": redirect}))


def test_direct_response() -> None:
    body = {"inline_string": "teapot"}
    config = one(
        {"name": "r", "match": {"prefix": "/"}, "direct_response": {"status": 418, "body": body}}
    )
    assert sim(config) == SimResult(virtual_host="v", route="r", direct_response=418, status=418)


def rewrite_route(match: Json, **action: Any) -> Json:
    return one({"name": "r", "match": match, "route": {"cluster": "c", **action}})


@pytest.mark.parametrize(
    ("match", "rewrite", "path", "rewritten"),
    [
        ({"prefix": "/api/"}, "/", "/api/users?x=1", "/users?x=1"),
        ({"prefix": "/api"}, "/v2", "/api/users", "/v2/users"),
        ({"prefix": "/api"}, "/v2", "/apix", "/v2x"),
        ({"prefix": "/API", "case_sensitive": False}, "/v2", "/api/x", "/v2/x"),
        ({"path_separated_prefix": "/api"}, "/v2", "/api/x?y", "/v2/x?y"),
        ({"path_separated_prefix": "/api"}, "/v2", "/api", "/v2"),
        ({"path": "/old"}, "/new", "/old?q=1", "/new?q=1"),
        ({"safe_regex": {"regex": "/r/.*"}}, "/all", "/r/x?q", "/all?q"),
    ],
)
def test_prefix_rewrite(match: Json, rewrite: str, path: str, rewritten: str) -> None:
    assert sim(rewrite_route(match, prefix_rewrite=rewrite), path).rewritten_path == rewritten


@pytest.mark.parametrize(
    ("pattern", "substitution", "path", "rewritten"),
    [
        (
            "^/service/([^/]+)(/.*)$",
            "\\2/instance/\\1",
            "/service/foo/v1/api?q=1",
            "/v1/api/instance/foo?q=1",
        ),
        ("one", "two", "/xxx/one/yyy/one/zzz", "/xxx/two/yyy/two/zzz"),
        ("^/prefix", "", "/prefix/rest", "/rest"),
        ("x*", "-", "/abxd", "-/-a-b-d-"),  # RE2 skips an empty match right after a match
        ("(a)", "\\0\\\\\\1", "/a", "/a\\a"),
        ("nomatch", "z", "/path?nomatch", "/path?nomatch"),  # the query is never rewritten
    ],
)
def test_regex_rewrite(
    pattern: str, substitution: str, path: str, rewritten: str, engine: str
) -> None:
    regex_rewrite = {"pattern": {"regex": pattern}, "substitution": substitution}
    result = sim(rewrite_route({"prefix": "/"}, regex_rewrite=regex_rewrite), path)
    assert result.rewritten_path == rewritten


def test_bad_rewrites_are_rejected(engine: str) -> None:
    bad_escape = {"pattern": {"regex": "a"}, "substitution": "\\n"}
    with pytest.raises(SimulationError):
        sim(rewrite_route({"prefix": "/"}, regex_rewrite=bad_escape), "/a")
    both = {"pattern": {"regex": "a"}, "substitution": "b"}
    with pytest.raises(SimulationError):
        sim(rewrite_route({"prefix": "/"}, regex_rewrite=both, prefix_rewrite="/x"), "/a")


def test_no_rewrite_and_host_rewrite() -> None:
    result = sim(rewrite_route({"prefix": "/"}, host_rewrite_literal="api.internal"), "/a")
    assert result.rewritten_path is None
    assert result.host_rewrite == "api.internal"


def mirror(cluster: str, fraction: Json | None = None) -> Json:
    policy: Json = {"cluster": cluster}
    if fraction is not None:
        policy["runtime_fraction"] = fraction
    return policy


@pytest.mark.parametrize(
    ("fraction", "percent"),
    [
        (None, 100.0),
        ({"default_value": {"numerator": 25}}, 25.0),
        ({"default_value": {"numerator": 25, "denominator": "HUNDRED"}}, 25.0),
        ({"default_value": {"numerator": 2500, "denominator": "TEN_THOUSAND"}}, 25.0),
        ({"default_value": {"numerator": 5, "denominator": "TEN_THOUSAND"}}, 0.05),
        ({"default_value": {"numerator": 10, "denominator": "MILLION"}}, 0.001),
        ({"default_value": {"numerator": 10, "denominator": 2}}, 0.001),
        ({"default_value": {"numerator": 150}}, 100.0),
        ({"default_value": {}}, 0.0),
        ({"runtime_key": "k"}, 0.0),
    ],
)
def test_mirror_percent(fraction: Json | None, percent: float) -> None:
    config = rewrite_route({"prefix": "/"}, request_mirror_policies=[mirror("shadow", fraction)])
    ((cluster, got),) = sim(config).mirrors
    assert cluster == "shadow"
    assert got == pytest.approx(percent)


def test_mirrors_route_level_replaces_virtual_host_level() -> None:
    config = one(
        {
            "name": "own",
            "match": {"path": "/own"},
            "route": {"cluster": "c", "request_mirror_policies": [mirror("a"), mirror("b")]},
        },
        {"name": "inherit", "match": {"prefix": "/"}, "route": {"cluster": "c"}},
        request_mirror_policies=[mirror("vh")],
    )
    assert sim(config, "/own").mirrors == (("a", 100.0), ("b", 100.0))
    assert sim(config, "/x").mirrors == (("vh", 100.0),)


def mutations(prefix: str) -> Json:
    return {
        "request_headers_to_add": [{"header": {"key": f"X-{prefix}", "value": prefix}}],
        "response_headers_to_add": [
            {
                "header": {"key": f"x-{prefix}-resp", "value": "1"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
        "request_headers_to_remove": [f"x-{prefix}-gone"],
        "response_headers_to_remove": [f"X-{prefix}-Secret"],
    }


def test_header_mutations_merge_route_then_virtual_host_then_config() -> None:
    route = {"name": "r", "match": {"prefix": "/"}, "route": {"cluster": "c"}, **mutations("route")}
    config = rc(vh("v", ["*"], route, **mutations("vhost")), **mutations("config"))
    result = sim(config)
    append = "APPEND_IF_EXISTS_OR_ADD"
    assert result.request_headers_to_add == (
        HeaderToAdd("x-route", "route", append),
        HeaderToAdd("x-vhost", "vhost", append),
        HeaderToAdd("x-config", "config", append),
    )
    overwrite = "OVERWRITE_IF_EXISTS_OR_ADD"
    assert result.response_headers_to_add == (
        ("x-route-resp", "1", overwrite),
        ("x-vhost-resp", "1", overwrite),
        ("x-config-resp", "1", overwrite),
    )
    assert result.request_headers_to_remove == ("x-route-gone", "x-vhost-gone", "x-config-gone")
    assert result.response_headers_to_remove == (
        "x-route-secret",
        "x-vhost-secret",
        "x-config-secret",
    )
    config["most_specific_header_mutations_wins"] = True
    reversed_order = sim(config).request_headers_to_remove
    assert reversed_order == ("x-config-gone", "x-vhost-gone", "x-route-gone")


def test_header_mutations_only_with_a_route() -> None:
    config = rc(vh("v", ["*"], dr("r", path="/r")), **mutations("config"))
    assert sim(config, "/r").request_headers_to_add == (
        ("x-config", "config", "APPEND_IF_EXISTS_OR_ADD"),
    )
    assert sim(config, "/other").request_headers_to_add == ()


def test_header_append_forms() -> None:
    options = [
        {"header": {"key": "a", "value": "1"}, "append": True},
        {"header": {"key": "b", "value": "2"}, "append": False},
        {"header": {"key": "c", "value": "3"}, "append_action": 1},
        {"header": {"key": "d", "raw_value": "NA=="}, "append_action": "OVERWRITE_IF_EXISTS"},
    ]
    config = one(
        {
            "name": "r",
            "match": {"prefix": "/"},
            "route": {"cluster": "c"},
            "request_headers_to_add": options,
        }
    )
    assert sim(config).request_headers_to_add == (
        ("a", "1", "APPEND_IF_EXISTS_OR_ADD"),
        ("b", "2", "OVERWRITE_IF_EXISTS_OR_ADD"),
        ("c", "3", "ADD_IF_ABSENT"),
        ("d", "4", "OVERWRITE_IF_EXISTS"),
    )


def test_unsupported_actions_raise() -> None:
    with pytest.raises(SimulationError):
        sim(one({"name": "r", "match": {"prefix": "/"}, "non_forwarding_action": {}}))
    plugin = {"cluster_specifier_plugin": "p"}
    with pytest.raises(SimulationError):
        sim(one({"name": "r", "match": {"prefix": "/"}, "route": plugin}))
    with pytest.raises(SimulationError):
        sim(one(dr("r", prefix="/"), require_tls="ALL"))


def test_results_are_frozen() -> None:
    result = sim(one(dr("r", prefix="/")))
    with pytest.raises(AttributeError):
        result.status = 200  # type: ignore[misc]


# --- the real translator's output -------------------------------------------------------

CANARY = Path(__file__).parent / "testdata" / "in" / "canary.yaml"


@pytest.fixture(scope="module")
def canary_routes() -> Json:
    config, problems = load_config([Source("in/canary.yaml", CANARY.read_text(), "/srv/mesh")])
    assert config is not None, "\n".join(map(str, problems))
    state = MeshState(config, place(config, None, sequential_ports(20000)))
    cart = next(i.name for i in state.instances if i.name.startswith("cart"))
    body = translate(state, cart).of(ROUTE)[names.OUTBOUND_HTTP].body
    return dict(body)


def test_canary_header_rule_sends_to_v2(canary_routes: Json) -> None:
    for host in ["orders", "orders:80", "ORDERS"]:
        result = simulate(
            canary_routes, SimRequest(host, "/orders/1", headers={"X-Canary": "true"})
        )
        assert result.virtual_host == "orders:80"
        assert result.route == "orders-split/rule-1"
        assert result.clusters == (("outbound|80||orders-v2", 1),)
        assert result.status == 200
    on_prefix = simulate(
        canary_routes, SimRequest("orders", "/orders?id=1", headers={"x-canary": "true"})
    )
    assert on_prefix.route == "orders-split/rule-1"


def test_canary_rule_needs_the_header_and_a_whole_path_segment(canary_routes: Json) -> None:
    for request in [
        SimRequest("orders", "/orders1", headers={"x-canary": "true"}),
        SimRequest("orders", "/orders/1"),
        SimRequest("orders", "/orders/1", headers={"x-canary": "false"}),
        SimRequest("orders", "/orders/1", headers={"x-canary": "TRUE"}),
    ]:
        result = simulate(canary_routes, request)
        assert result.route == "orders-split/rule-0", request
        assert result.clusters == (("outbound|80||orders-v1", 90), ("outbound|80||orders-v2", 10))
        assert result.timeout == "5s"
        assert result.retry_policy == {
            "retry_on": "connect-failure,refused-stream",
            "num_retries": 2,
            "per_try_timeout": "2s",
        }


def test_canary_exact_path_goes_to_v1_only(canary_routes: Json) -> None:
    for path in ["/admin/health", "/admin/health?verbose=1"]:
        result = simulate(canary_routes, SimRequest("orders", path, headers={"x-canary": "true"}))
        assert result.route == "orders-admin/rule-0"
        assert result.clusters == (("outbound|80||orders-v1", 1),)
        assert result.timeout == "0s"
    assert (
        simulate(canary_routes, SimRequest("orders", "/admin/health/")).route
        == "orders-split/rule-0"
    )


def test_canary_other_services_and_unknown_hosts(canary_routes: Json) -> None:
    cart = simulate(canary_routes, SimRequest("cart", "/anything"))
    assert (cart.route, cart.clusters, cart.timeout) == (
        "cart:80/default",
        (("outbound|80||cart", 1),),
        "15s",
    )
    assert simulate(canary_routes, SimRequest("orders-v2:80")).clusters == (
        ("outbound|80||orders-v2", 1),
    )
    # The catch-all answers for hosts the mesh does not know: a 404 direct_response, or a
    # passthrough cluster, depending on the translator's policy. Either way, not orders.
    (catch_all,) = [v for v in canary_routes["virtual_hosts"] if "*" in v["domains"]]
    (fallback,) = catch_all["routes"]
    for host in ["payments", "orders:8080", "orders.default.svc"]:
        result = simulate(canary_routes, SimRequest(host, "/orders/1"))
        assert result.virtual_host == catch_all["name"]
        assert result.route == fallback.get("name", "")
        if "direct_response" in fallback:
            assert (result.direct_response, result.status, result.clusters) == (404, 404, ())
        else:
            assert result.status == 200
            assert result.clusters == ((fallback["route"]["cluster"], 1),)
