"""What Envoy would do with one request, given a RouteConfiguration: no Envoy needed.

Istio's ``pilot/pkg/simulation`` idea for our translator's output. The input is a
``RouteConfiguration`` as a proto3-JSON-shaped mapping (snake_case field names, as
:func:`gossamer.translate.translate` emits); the answer names the virtual host and route
Envoy selects and what that route does. The rules follow Envoy 1.40's ``RouteMatcher``
(``source/common/router/config_impl.cc``); ``tests/e2e/test_simulate_vs_envoy.py`` checks
them against the real binary. Where our reading of Envoy and the docs differed, Envoy won:

* virtual hosts: the lower-cased authority, port included, is looked up as an exact domain,
  then against suffix wildcards (``*.foo.com``), then prefix wildcards (``foo.*``), each
  longest first and never matching the empty string, then ``*``. Only
  ``ignore_port_in_host_matching`` strips the port (the HCM's ``strip_*_host_port`` options
  live outside the route configuration and are not modelled);
* paths are matched without the query string; ``safe_regex`` must match the whole path;
  ``path_separated_prefix`` needs ``/`` or the end of the path after the prefix;
* a header matcher on an absent header never matches, even with ``invert_match``, unless
  it is a presence matcher (``present_match: false`` matches absence) or
  ``treat_missing_header_as_empty`` is set. A matcher with no value matches presence. The
  name ``host`` reads ``:authority``;
* query parameters are compared raw (not percent-decoded), first value of a name only;
* a route whose cluster does not resolve (``cluster_header`` absent) answers
  ``cluster_not_found_response_code``, 503 by default, not the 404 the docs promise.

A configuration Envoy would reject, or a feature this module does not model (runtime
fractions, TLS requirements, matcher trees, cluster-specifier plugins, ...), raises
:class:`SimulationError` rather than guessing.
"""

from __future__ import annotations

import base64
import functools
import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = ["HeaderToAdd", "SimRequest", "SimResult", "SimulationError", "simulate"]


class SimulationError(ValueError):
    """The configuration is one Envoy would reject, or uses a feature not simulated."""


class HeaderToAdd(NamedTuple):
    """One ``HeaderValueOption``: lower-cased name, value, and its ``append_action``."""

    key: str
    value: str
    append_action: str


@dataclass(frozen=True)
class SimRequest:
    """A described HTTP request: no body, plain HTTP (``:scheme`` is ``http``)."""

    authority: str
    """The Host header, e.g. ``orders`` or ``orders:80``."""
    path: str = "/"
    """The request target; may carry a ``?query``."""
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers; names are case-insensitive."""


@dataclass(frozen=True)
class SimResult:
    """What Envoy does with the request; a 404 with no route when nothing matched."""

    virtual_host: str | None = None
    """The matched virtual host's name; None when no domain matched (404 NR)."""
    route: str | None = None
    """The matched route's ``name`` ("" for an unnamed route); None when none matched."""
    clusters: tuple[tuple[str, int], ...] = ()
    """(cluster, weight): a plain ``cluster`` has weight 1; zero weights are left out."""
    direct_response: int | None = None
    redirect: Mapping[str, object] | None = None
    timeout: str | None = None
    rewritten_path: str | None = None
    """The upstream path after ``prefix_rewrite``/``regex_rewrite``; None without one."""
    host_rewrite: str | None = None
    request_headers_to_add: tuple[HeaderToAdd, ...] = ()
    response_headers_to_add: tuple[HeaderToAdd, ...] = ()
    request_headers_to_remove: tuple[str, ...] = ()
    response_headers_to_remove: tuple[str, ...] = ()
    mirrors: tuple[tuple[str, float], ...] = ()
    """(cluster, percent of requests mirrored): the route's policies, else the virtual host's."""
    retry_policy: Mapping[str, object] | None = None
    """The route's retry policy, else the virtual host's (Envoy does not merge them)."""
    status: int = 404
    """What the client gets, assuming a cluster route's upstream answers 200. (To a gRPC
    request Envoy sends its local replies as HTTP 200 with a grpc-status: 404 becomes 12.)"""


_REDIRECT_CODES = {
    "MOVED_PERMANENTLY": 301,
    "FOUND": 302,
    "SEE_OTHER": 303,
    "TEMPORARY_REDIRECT": 307,
    "PERMANENT_REDIRECT": 308,
}
_REDIRECT_CODE_BY_NUMBER = dict(enumerate(_REDIRECT_CODES.values()))
_NOT_FOUND_CODES = {"SERVICE_UNAVAILABLE": 503, "NOT_FOUND": 404, "INTERNAL_SERVER_ERROR": 500}
_NOT_FOUND_CODE_BY_NUMBER = dict(enumerate(_NOT_FOUND_CODES.values()))
_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}
_DENOMINATOR_BY_NUMBER = dict(enumerate(_DENOMINATORS.values()))
_APPEND_ACTIONS = (
    "APPEND_IF_EXISTS_OR_ADD",
    "ADD_IF_ABSENT",
    "OVERWRITE_IF_EXISTS_OR_ADD",
    "OVERWRITE_IF_EXISTS",
)
_ROUTE_MATCH_UNSUPPORTED = (
    "runtime_fraction",
    "tls_context",
    "dynamic_metadata",
    "filter_state",
)
_RANGE_VALUE = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_GRPC = "application/grpc"


def simulate(route_config: Mapping[str, Any], request: SimRequest) -> SimResult:
    """The virtual host, route and action Envoy selects for ``request``."""
    vhost = _find_virtual_host(route_config, request.authority)
    if vhost is None:
        return SimResult()
    if vhost.get("matcher") is not None:
        raise SimulationError(f"virtual host {vhost.get('name')!r}: matcher trees not simulated")
    if vhost.get("require_tls", "NONE") not in ("NONE", 0):
        raise SimulationError(f"virtual host {vhost.get('name')!r}: require_tls not simulated")
    vhost_name = str(vhost.get("name", ""))
    headers = _request_headers(request)
    path = _strip_query(request.path)
    for route in vhost.get("routes", ()):
        matched = _match_route(route.get("match", {}), request, headers, path)
        if matched is not None:
            return _act(route_config, vhost, route, request, headers, matched)
    return SimResult(virtual_host=vhost_name)


# --- virtual hosts ---------------------------------------------------------------------


def _find_virtual_host(config: Mapping[str, Any], authority: str) -> Mapping[str, Any] | None:
    exact: dict[str, Mapping[str, Any]] = {}
    suffixes: dict[str, Mapping[str, Any]] = {}
    prefixes: dict[str, Mapping[str, Any]] = {}
    default: Mapping[str, Any] | None = None
    for vhost in config.get("virtual_hosts", ()):
        for raw in vhost.get("domains", ()):
            domain = _ascii_lower(str(raw))
            if domain == "*":
                if default is not None:
                    raise SimulationError("only one virtual host may have the domain '*'")
                default = vhost
                continue
            if len(domain) > 1 and domain.startswith("*"):
                table, key = suffixes, domain[1:]
            elif len(domain) > 1 and domain.endswith("*"):
                table, key = prefixes, domain[:-1]
            else:
                table, key = exact, domain
            if key in table:
                raise SimulationError(f"domain {raw!r} appears in more than one virtual host")
            table[key] = vhost
    host = _ascii_lower(authority)
    if config.get("ignore_port_in_host_matching"):
        host = _strip_port(host)
    if host in exact:
        return exact[host]
    # Longest wildcard first; a wildcard must match at least one character.
    for suffix in sorted(suffixes, key=len, reverse=True):
        if len(host) > len(suffix) and host.endswith(suffix):
            return suffixes[suffix]
    for prefix in sorted(prefixes, key=len, reverse=True):
        if len(host) > len(prefix) and host.startswith(prefix):
            return prefixes[prefix]
    return default


def _strip_port(host: str) -> str:
    """Envoy's ``HeaderUtility::getPortStart``: a port after the last ':' outside ``[v6]``."""
    colon = host.rfind(":")
    if colon < 0 or host.rfind("]") > colon:
        return host
    return host[:colon]


# --- route matching --------------------------------------------------------------------


@dataclass(frozen=True)
class _Matched:
    """The part of the path a route matched on, for ``prefix_rewrite``."""

    prefix: str


def _match_route(
    match: Mapping[str, Any], request: SimRequest, headers: Mapping[str, str], path: str
) -> _Matched | None:
    for key in _ROUTE_MATCH_UNSUPPORTED:
        if key in match:
            raise SimulationError(f"route match on {key} not simulated")
    case_sensitive = bool(match.get("case_sensitive", True))
    matched: _Matched | None
    if "prefix" in match:
        prefix = str(match["prefix"])
        ok = _starts_with(path, prefix, case_sensitive)
        matched = _Matched(prefix) if ok else None
    elif "path" in match:
        exact = str(match["path"])
        ok = path == exact if case_sensitive else _ascii_lower(path) == _ascii_lower(exact)
        matched = _Matched(exact) if ok else None
    elif "safe_regex" in match:
        ok = _regex(match["safe_regex"]).fullmatch(path) is not None
        matched = _Matched(path) if ok else None
    elif "path_separated_prefix" in match:
        prefix = str(match["path_separated_prefix"])
        ok = _starts_with(path, prefix, case_sensitive) and (
            len(path) == len(prefix) or path[len(prefix)] == "/"
        )
        matched = _Matched(prefix) if ok else None
    elif "connect_matcher" in match or "path_match_policy" in match:
        raise SimulationError("connect_matcher and path_match_policy are not simulated")
    else:
        raise SimulationError(f"route match without a path specifier: {dict(match)!r}")
    if matched is None:
        return None
    if "grpc" in match and not _is_grpc(headers):
        return None
    if not all(_header_matches(h, headers) for h in match.get("headers", ())):
        return None
    if match.get("query_parameters"):
        params = _query_params(request.path)
        if not all(_query_matches(q, params) for q in match["query_parameters"]):
            return None
    return matched


def _request_headers(request: SimRequest) -> dict[str, str]:
    headers = {_ascii_lower(k): v for k, v in request.headers.items()}
    headers.pop("host", None)
    headers[":authority"] = request.authority
    headers[":path"] = request.path
    headers[":method"] = request.method
    headers.setdefault(":scheme", "http")
    return headers


def _lookup(headers: Mapping[str, str], name: str) -> str | None:
    name = _ascii_lower(name)
    return headers.get(":authority" if name == "host" else name)


def _header_matches(matcher: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    value = _lookup(headers, str(matcher.get("name", "")))
    invert = bool(matcher.get("invert_match", False))
    presence_only = not any(
        k in matcher
        for k in (
            "string_match",
            "exact_match",
            "safe_regex_match",
            "prefix_match",
            "suffix_match",
            "contains_match",
            "range_match",
        )
    )
    if presence_only:
        want_present = bool(matcher.get("present_match", True))
        return ((value is not None) == want_present) != invert
    if value is None:
        if not matcher.get("treat_missing_header_as_empty", False):
            return False
        value = ""
    return _header_value_matches(matcher, value) != invert


def _header_value_matches(matcher: Mapping[str, Any], value: str) -> bool:
    if "string_match" in matcher:
        return _string_matches(matcher["string_match"], value)
    if "exact_match" in matcher:
        return value == str(matcher["exact_match"])
    if "safe_regex_match" in matcher:
        return _regex(matcher["safe_regex_match"]).fullmatch(value) is not None
    if "prefix_match" in matcher:
        return value.startswith(str(matcher["prefix_match"]))
    if "suffix_match" in matcher:
        return value.endswith(str(matcher["suffix_match"]))
    if "contains_match" in matcher:
        return str(matcher["contains_match"]) in value
    # range_match: [start, end) over a base-10 int64, as absl::SimpleAtoi reads it.
    bounds = matcher["range_match"]
    if _RANGE_VALUE.fullmatch(value) is None:
        return False
    number = int(value)
    return int(bounds.get("start", 0)) <= number < int(bounds.get("end", 0))


def _string_matches(matcher: Mapping[str, Any], value: str) -> bool:
    """``type.matcher.v3.StringMatcher``; ``ignore_case`` folds ASCII only, like absl."""
    ignore_case = bool(matcher.get("ignore_case", False))
    if "safe_regex" in matcher:
        if ignore_case:
            raise SimulationError("ignore_case has no effect for safe_regex (Envoy rejects it)")
        return _regex(matcher["safe_regex"]).fullmatch(value) is not None
    fold = _ascii_lower if ignore_case else _identity
    subject = fold(value)
    if "exact" in matcher:
        return subject == fold(str(matcher["exact"]))
    if "prefix" in matcher:
        return subject.startswith(fold(str(matcher["prefix"])))
    if "suffix" in matcher:
        return subject.endswith(fold(str(matcher["suffix"])))
    if "contains" in matcher:
        return fold(str(matcher["contains"])) in subject
    raise SimulationError(f"string matcher not simulated: {dict(matcher)!r}")


def _query_params(path: str) -> dict[str, str]:
    """Envoy's ``parseQueryString``: raw (undecoded) values, the first one per name wins."""
    query = path.partition("?")[2].partition("#")[0]
    params: dict[str, str] = {}
    if not query:
        return params
    for part in query.split("&"):
        name, _, value = part.partition("=")
        params.setdefault(name, value)
    return params


def _query_matches(matcher: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    value = params.get(str(matcher.get("name", "")))
    if value is None:
        return False
    if matcher.get("present_match") or "string_match" not in matcher:
        return True
    return _string_matches(matcher["string_match"], value)


def _is_grpc(headers: Mapping[str, str]) -> bool:
    content_type = headers.get("content-type", "")
    return content_type.startswith(_GRPC) and (
        len(content_type) == len(_GRPC) or content_type[len(_GRPC)] == "+"
    )


# --- the matched route's action ----------------------------------------------------------


def _act(
    config: Mapping[str, Any],
    vhost: Mapping[str, Any],
    route: Mapping[str, Any],
    request: SimRequest,
    headers: Mapping[str, str],
    matched: _Matched,
) -> SimResult:
    common: dict[str, Any] = {
        "virtual_host": str(vhost.get("name", "")),
        "route": str(route.get("name", "")),
        **_header_mutations(config, vhost, route),
    }
    if "direct_response" in route:
        status = int(route["direct_response"]["status"])
        return SimResult(**common, direct_response=status, status=status)
    if "redirect" in route:
        redirect = route["redirect"]
        code = _enum(redirect.get("response_code", 0), _REDIRECT_CODES, _REDIRECT_CODE_BY_NUMBER)
        return SimResult(**common, redirect=MappingProxyType(dict(redirect)), status=code)
    if "route" not in route:
        kinds = sorted(set(route) - {"name", "match"})
        raise SimulationError(f"route {route.get('name')!r}: action {kinds} not simulated")
    action = route["route"]
    clusters = _clusters(action, headers)
    retry = action.get("retry_policy", vhost.get("retry_policy"))
    mirror_policies = action.get("request_mirror_policies") or vhost.get(
        "request_mirror_policies", ()
    )
    timeout = action.get("timeout")
    host_rewrite = action.get("host_rewrite_literal")
    return SimResult(
        **common,
        clusters=clusters,
        timeout=None if timeout is None else str(timeout),
        rewritten_path=_rewrite(action, request.path, matched),
        host_rewrite=None if host_rewrite is None else str(host_rewrite),
        mirrors=tuple(_mirrors(mirror_policies, headers)),
        retry_policy=None if retry is None else MappingProxyType(dict(retry)),
        status=200 if clusters else _not_found_status(action),
    )


def _clusters(action: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    if "cluster" in action:
        return ((str(action["cluster"]), 1),)
    if "cluster_header" in action:
        # Without the header there is no cluster: see _not_found_status.
        value = _lookup(headers, str(action["cluster_header"]))
        return () if not value else ((value, 1),)
    if "weighted_clusters" in action:
        entries = action["weighted_clusters"].get("clusters", ())
        weighted: list[tuple[str, int]] = []
        for entry in entries:
            if "weight" not in entry:
                raise SimulationError(f"weighted cluster {entry.get('name')!r} has no weight")
            weighted.append((str(entry["name"]), int(entry["weight"])))
        if sum(w for _, w in weighted) <= 0:
            raise SimulationError("sum of weights in weighted_clusters must be greater than 0")
        return tuple((name, w) for name, w in weighted if w > 0)
    raise SimulationError(f"cluster specifier not simulated: {sorted(action)}")


def _not_found_status(action: Mapping[str, Any]) -> int:
    """``cluster_not_found_response_code``: 503 unless configured (the docs' 404 for a
    missing ``cluster_header`` is not what Envoy 1.40 does)."""
    return _enum(
        action.get("cluster_not_found_response_code", 0),
        _NOT_FOUND_CODES,
        _NOT_FOUND_CODE_BY_NUMBER,
    )


def _rewrite(action: Mapping[str, Any], path: str, matched: _Matched) -> str | None:
    """``RouteEntryImplBase::rewritePathByPrefixOrRegex``; the query string is kept."""
    prefix_rewrite = action.get("prefix_rewrite", "")
    regex_rewrite = action.get("regex_rewrite")
    if "path_rewrite_policy" in action:
        raise SimulationError("path_rewrite_policy not simulated")
    if prefix_rewrite and regex_rewrite:
        raise SimulationError("cannot specify both prefix_rewrite and regex_rewrite")
    if prefix_rewrite:
        return str(prefix_rewrite) + path[len(matched.prefix) :]
    if regex_rewrite:
        just_path = _strip_query(path)
        pattern = _regex(regex_rewrite["pattern"])
        new = _global_replace(pattern, just_path, str(regex_rewrite.get("substitution", "")))
        return new + path[len(just_path) :]
    return None


def _mirrors(
    policies: Sequence[Mapping[str, Any]], headers: Mapping[str, str]
) -> list[tuple[str, float]]:
    mirrors = []
    for policy in policies:
        if "cluster" in policy:
            cluster: str | None = str(policy["cluster"])
        else:
            cluster = _lookup(headers, str(policy.get("cluster_header", "")))
        if not cluster:
            continue
        fraction = policy.get("runtime_fraction")
        if fraction is None:
            percent = 100.0
        else:
            value = fraction.get("default_value", {})
            denominator = _enum(value.get("denominator", 0), _DENOMINATORS, _DENOMINATOR_BY_NUMBER)
            percent = min(100.0, int(value.get("numerator", 0)) * 100 / denominator)
        mirrors.append((cluster, percent))
    return mirrors


def _header_mutations(
    config: Mapping[str, Any], vhost: Mapping[str, Any], route: Mapping[str, Any]
) -> dict[str, Any]:
    """Route, then virtual host, then route configuration (reversed when
    ``most_specific_header_mutations_wins``), as Envoy evaluates them."""
    levels = [route, vhost, config]
    if config.get("most_specific_header_mutations_wins"):
        levels.reverse()
    return {
        "request_headers_to_add": tuple(
            _header_option(o) for lv in levels for o in lv.get("request_headers_to_add", ())
        ),
        "response_headers_to_add": tuple(
            _header_option(o) for lv in levels for o in lv.get("response_headers_to_add", ())
        ),
        "request_headers_to_remove": tuple(
            _ascii_lower(str(n)) for lv in levels for n in lv.get("request_headers_to_remove", ())
        ),
        "response_headers_to_remove": tuple(
            _ascii_lower(str(n)) for lv in levels for n in lv.get("response_headers_to_remove", ())
        ),
    }


def _header_option(option: Mapping[str, Any]) -> HeaderToAdd:
    header = option.get("header", {})
    if "raw_value" in header:
        value = base64.b64decode(header["raw_value"]).decode("utf-8", "replace")
    else:
        value = str(header.get("value", ""))
    if "append" in option:
        if "append_action" in option:
            raise SimulationError("append and append_action are mutually exclusive")
        action = "APPEND_IF_EXISTS_OR_ADD" if option["append"] else "OVERWRITE_IF_EXISTS_OR_ADD"
    else:
        raw = option.get("append_action", 0)
        action = _APPEND_ACTIONS[raw] if isinstance(raw, int) else str(raw)
        if action not in _APPEND_ACTIONS:
            raise SimulationError(f"unknown append_action {raw!r}")
    return HeaderToAdd(_ascii_lower(str(header.get("key", ""))), value, action)


# --- helpers ---------------------------------------------------------------------------


def _enum(value: object, by_name: Mapping[str, int], by_number: Mapping[int, int]) -> int:
    """A proto3-JSON enum, given by name or by number, mapped to what it stands for."""
    if isinstance(value, int) and value in by_number:
        return by_number[value]
    if isinstance(value, str) and value in by_name:
        return by_name[value]
    raise SimulationError(f"unknown enum value {value!r}")


def _strip_query(path: str) -> str:
    """``Http::PathUtil::removeQueryAndFragment``."""
    for i, ch in enumerate(path):
        if ch in "?#":
            return path[:i]
    return path


def _starts_with(path: str, prefix: str, case_sensitive: bool) -> bool:
    if case_sensitive:
        return path.startswith(prefix)
    return _ascii_lower(path).startswith(_ascii_lower(prefix))


_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    """``absl::AsciiStrToLower``: only A-Z fold, unlike ``str.lower``."""
    return text.translate(_UPPER)


def _identity(text: str) -> str:
    return text


# --- RE2 -------------------------------------------------------------------------------


def _re2_module() -> Any:
    """google-re2 when installed (Envoy's own engine); otherwise ``re`` on translated syntax."""
    try:
        return importlib.import_module("re2")
    except ImportError:
        return None


_RE2 = _re2_module()


def _regex(matcher: Mapping[str, Any]) -> Any:
    """A compiled ``type.matcher.v3.RegexMatcher``; ``fullmatch``/``search`` as in ``re``."""
    return _compile(str(matcher.get("regex", "")), _RE2)


@functools.lru_cache(maxsize=512)
def _compile(pattern: str, re2: Any) -> Any:
    try:
        if re2 is not None:
            options = re2.Options()
            options.log_errors = False
            return re2.compile(pattern, options)
        return re.compile(_re2_to_python(pattern), re.ASCII)
    except SimulationError:
        raise
    except Exception as e:  # re.error, or re2's error type
        raise SimulationError(f"invalid regex {pattern!r}: {e}") from e


_UNSUPPORTED_GROUPS = ("(?=", "(?!", "(?<=", "(?<!", "(?P=", "(?>", "(?(", "(?#")


def _re2_to_python(pattern: str) -> str:
    """RE2 syntax for ``re``: ``\\z`` and ``(?<name>`` translated; what RE2 rejects
    (lookaround, backreferences) or ``re`` lacks (``\\p``, ``\\Q``) raises."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "123456789" and not in_class:
                raise SimulationError(f"RE2 has no backreferences: {pattern!r}")
            if nxt in "pPQEC" or (nxt == "Z" and not in_class):
                raise SimulationError(f"regex escape \\{nxt} not simulated: {pattern!r}")
            out.append("\\Z" if nxt == "z" and not in_class else pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            # A ']' first in the class (after an optional '^') is a literal.
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):
                out.append("]")
                i += 1
            continue
        elif ch == "(" and pattern.startswith(_UNSUPPORTED_GROUPS, i):
            raise SimulationError(f"RE2 does not support this group: {pattern!r}")
        elif ch == "(" and pattern.startswith("(?<", i):
            out.append("(?P<")
            i += 3
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _global_replace(regex: Any, text: str, rewrite: str) -> str:
    """``RE2::GlobalReplace``: an empty match right after a match is skipped, and the
    rewrite knows only ``\\0``-``\\9`` and ``\\\\``."""
    out: list[str] = []
    pos, last_end, count = 0, -1, 0
    while pos <= len(text):
        m = regex.search(text, pos)
        if m is None:
            break
        start, end = int(m.start()), int(m.end())
        out.append(text[pos:start])
        if start == end and start == last_end:
            out.append(text[pos : pos + 1])
            pos += 1
            continue
        out.append(_expand(m, rewrite))
        pos = last_end = end
        count += 1
    if count == 0:
        return text
    out.append(text[pos:])
    return "".join(out)


def _expand(match: Any, rewrite: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(rewrite):
        ch = rewrite[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = rewrite[i + 1] if i + 1 < len(rewrite) else ""
        if nxt.isdigit() and nxt.isascii():
            group = match.group(int(nxt))
            out.append("" if group is None else str(group))
        elif nxt == "\\":
            out.append("\\")
        else:
            raise SimulationError(f"invalid rewrite {rewrite!r}: bad escape after '\\'")
        i += 2
    return "".join(out)
